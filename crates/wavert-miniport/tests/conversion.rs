//! The cable converting: a capture format that differs from the render
//! format hears the render audio converted (not silence), with the delay
//! it reports as `CodecDelay`; a sample-type change at one rate is exact.
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    clippy::float_arithmetic,
    clippy::suboptimal_flops,
    clippy::many_single_char_names,
    clippy::suspicious_operation_groupings,
    clippy::cast_sign_loss,
    reason = "test code: signal analysis in f64, offsets far below 2^32"
)]

mod common;

use common::{ks_format, FakePortStream, Rig, QPC_FREQUENCY};
use portcls_sys::{
    KSRTAUDIO_HWLATENCY, KSSTATE_ACQUIRE, KSSTATE_PAUSE, KSSTATE_RUN, STATUS_SUCCESS,
};
use wavert_core::convert::sample::Encoding;
use wavert_core::format::{AudioFormat, SampleType};
use wavert_miniport::{Direction, DmaMode};

struct Side {
    float: bool,
    channels: u16,
    rate: u32,
    container: u16,
    valid: u16,
}

impl Side {
    fn format(&self) -> AudioFormat {
        let t = if self.float {
            SampleType::Float
        } else {
            SampleType::Pcm
        };
        AudioFormat::extensible(t, self.channels, self.rate, self.container, self.valid).unwrap()
    }
}

/// The render client's sample at render frame `m`, channel `ch`: a
/// -1 dBFS 997 Hz tone on every channel (16-bit values, as Q31).
fn tone(m: u64, rate: u32) -> i32 {
    let x = 0.891 * (2.0 * std::f64::consts::PI * 997.0 * m as f64 / f64::from(rate)).sin();
    i32::from((x * 32767.0).round() as i16) << 16
}

fn write_frame(format: &AudioFormat, m: u64, out: &mut [u8]) {
    let e = Encoding::of(format);
    let value = tone(m, format.sample_rate());
    for sample in out.chunks_exact_mut(e.bytes()) {
        e.encode(value, sample);
    }
}

/// Streams ~0.3 s with irregular ticks; returns the captured bytes and the
/// capture side's reported latency.
fn stream(render_side: &Side, capture_side: &Side) -> (Vec<u8>, KSRTAUDIO_HWLATENCY) {
    let rig = Rig::new(DmaMode::Looping);
    let (rf, cf) = (render_side.format(), capture_side.format());
    let rformat = ks_format(
        render_side.float,
        rf.channels(),
        rf.sample_rate(),
        rf.container_bits(),
        rf.valid_bits(),
    );
    let cformat = ks_format(
        capture_side.float,
        cf.channels(),
        cf.sample_rate(),
        cf.container_bits(),
        cf.valid_bits(),
    );
    let (render_port, capture_port) = (FakePortStream::new(), FakePortStream::new());
    let render = rig
        .new_stream(Direction::Render, &render_port, 0, &rformat)
        .unwrap();
    let capture = rig
        .new_stream(Direction::Capture, &capture_port, 0, &cformat)
        .unwrap();
    let ra = render.allocate(Some(2), 16_384).unwrap();
    let ca = capture.allocate(Some(2), 12_000).unwrap();
    let mut latency = KSRTAUDIO_HWLATENCY {
        FifoSize: 9,
        ChipsetDelay: 9,
        CodecDelay: 9,
    };
    // SAFETY: live stream, writable latency.
    unsafe { (capture.0.vtbl().base__.GetHWLatency)(capture.0.this(), &raw mut latency) };
    let (rmem, cmem) = (render_port.memory(ra.mdl), capture_port.memory(ca.mdl));
    let (rblock, cblock) = (u64::from(rf.block_align()), u64::from(cf.block_align()));
    let (rsize, csize) = (u64::from(ra.size), u64::from(ca.size));
    let mut frame = vec![0u8; rblock as usize];
    let mut fill = |from: u64, to: u64| {
        // Render linear bytes [from, to), written as whole frames.
        for m in from / rblock..to / rblock {
            write_frame(&rf, m, &mut frame);
            for (j, b) in frame.iter().enumerate() {
                let k = (m * rblock + j as u64) % rsize;
                // SAFETY: inside the fake's buffer.
                unsafe { rmem.wrapping_add(k as usize).write(*b) };
            }
        }
    };
    fill(0, rsize);
    for s in [KSSTATE_ACQUIRE, KSSTATE_PAUSE, KSSTATE_RUN] {
        assert_eq!(render.set_state(s), STATUS_SUCCESS);
        assert_eq!(capture.set_state(s), STATUS_SUCCESS);
    }
    let ticks = [3_000u64, 10_000, 29_000, 7_700, 15_001, 4_321];
    let (mut rlin, mut clin, mut rlast, mut clast) = (0u64, 0u64, 0u64, 0u64);
    let mut captured = Vec::new();
    let start = rig.log.now();
    let mut i = 0;
    while rig.log.now() - start < QPC_FREQUENCY * 3 / 10 {
        let now = rig.log.advance(ticks[i % ticks.len()]);
        i += 1;
        rig.cable.on_timer(now);
        let rp = render.position().PlayOffset;
        let cp = capture.position().PlayOffset;
        let rdelta = (rp + rsize - rlast) % rsize;
        let cdelta = (cp + csize - clast) % csize;
        (rlast, clast) = (rp, cp);
        fill(rlin + rsize, rlin + rdelta + rsize);
        rlin += rdelta;
        for k in clin..clin + cdelta {
            // SAFETY: inside the fake's buffer.
            captured.push(unsafe { cmem.wrapping_add((k % csize) as usize).read() });
        }
        clin += cdelta;
    }
    assert_eq!(clin % cblock, 0);
    render.stop();
    capture.stop();
    render.free(true, ra.mdl, ra.size);
    capture.free(true, ca.mdl, ca.size);
    (captured, latency)
}

fn decode(format: &AudioFormat, bytes: &[u8], channel: usize) -> Vec<i32> {
    let e = Encoding::of(format);
    bytes
        .chunks_exact(format.block_align() as usize)
        .map(|f| e.decode(&f[channel * e.bytes()..]))
        .collect()
}

#[test]
fn a_sample_type_change_at_one_rate_is_exact_frame_for_frame() {
    // 16-bit stereo into float stereo: widening, so every captured sample
    // is the rendered one exactly (lead 0: both start at the same QPC).
    let r = Side {
        float: false,
        channels: 2,
        rate: 48_000,
        container: 16,
        valid: 16,
    };
    let c = Side {
        float: true,
        channels: 2,
        rate: 48_000,
        container: 32,
        valid: 32,
    };
    let (captured, latency) = stream(&r, &c);
    assert_eq!(latency.CodecDelay, 0);
    let cf = c.format();
    for ch in 0..2 {
        let got = decode(&cf, &captured, ch);
        assert!(got.len() > 14_000);
        for (n, &x) in got.iter().enumerate() {
            assert_eq!(x, tone(n as u64, 48_000), "frame {n} channel {ch}");
        }
    }
}

#[test]
fn a_rate_change_carries_the_tone_with_the_delay_it_reports() {
    let cases = [
        (
            Side {
                float: false,
                channels: 2,
                rate: 44_100,
                container: 16,
                valid: 16,
            },
            Side {
                float: false,
                channels: 2,
                rate: 48_000,
                container: 32,
                valid: 24,
            },
        ),
        (
            Side {
                float: false,
                channels: 2,
                rate: 48_000,
                container: 16,
                valid: 16,
            },
            Side {
                float: true,
                channels: 6,
                rate: 44_100,
                container: 32,
                valid: 32,
            },
        ),
    ];
    for (r, c) in &cases {
        let (captured, latency) = stream(r, c);
        let cf = c.format();
        let delay_s = f64::from(latency.CodecDelay) * 1e-7;
        assert!(latency.CodecDelay > 0);
        let y: Vec<f64> = decode(&cf, &captured, 0)
            .iter()
            .map(|&v| f64::from(v) / 2_147_483_648.0)
            .collect();
        // Past the start (silence, then the filter filling).
        let skip = (2.0 * delay_s * f64::from(c.rate)) as usize + 64;
        let w = 2.0 * std::f64::consts::PI * 997.0;
        // THD+N with a free phase (wavert-analysis' least-squares fit), and
        // the lag that phase implies.
        let fit = wavert_analysis::tone::fit_tone(&y, c.rate, 997.0, skip).expect("a tone to fit");
        let snr = fit.snr_db;
        let period = 1.0 / 997.0;
        let lag = (-fit.phase_rad / w).rem_euclid(period);
        let lag_error = (lag - delay_s.rem_euclid(period)).abs();
        println!(
            "{} -> {}: THD+N {snr:.1} dB, lag {:.2} us, reported {:.2} us",
            r.rate,
            c.rate,
            lag * 1e6,
            delay_s * 1e6
        );
        // 16-bit source: about 97 dB at most.
        assert!(snr >= 90.0, "{snr}");
        // The anchor holds to within a render frame (the clocks count whole
        // frames), plus the 100 ns rounding of the report.
        assert!(lag_error <= 1.0 / f64::from(r.rate) + 1e-7, "{lag_error}");
    }
}
