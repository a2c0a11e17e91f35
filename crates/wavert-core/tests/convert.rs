//! The converter measured: sample codecs, channel maps and the resampler's
//! quality (THD+N, passband, aliases) against issue 16's targets, and the
//! rate phase's exactness over a virtual day. Analysis uses f64 here only.
#![allow(
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::many_single_char_names,
    clippy::suboptimal_flops,
    clippy::imprecise_flops,
    clippy::needless_range_loop,
    reason = "test-side analysis in f64 over small counts"
)]

use wavert_core::convert::resample::RatePhase;
use wavert_core::convert::Converter;
use wavert_core::format::{AudioFormat, SampleType};

fn pcm32(rate: u32, channels: u16) -> AudioFormat {
    AudioFormat::extensible(SampleType::Pcm, channels, rate, 32, 32).expect("valid format")
}

fn converter(from: &AudioFormat, to: &AudioFormat) -> Converter<Vec<i32>> {
    let storage = vec![0; Converter::<Vec<i32>>::storage_len(from, to)];
    Converter::new(from, to, storage).expect("converter")
}

/// `frames` of a mono sine at `freq` Hz and `dbfs`, 32-bit PCM bytes.
fn sine(rate: u32, freq: f64, dbfs: f64, frames: usize) -> Vec<u8> {
    let amplitude = 10f64.powf(dbfs / 20.0) * 2_147_483_647.0;
    (0..frames)
        .flat_map(|n| {
            let x =
                amplitude * (2.0 * std::f64::consts::PI * freq * n as f64 / f64::from(rate)).sin();
            (x.round() as i32).to_le_bytes()
        })
        .collect()
}

fn samples(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(4)
        .map(|b| f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])) / 2_147_483_648.0)
        .collect()
}

/// Least-squares fit of `a sin + b cos + c` at `freq`: (tone amplitude,
/// residual RMS).
fn fit(x: &[f64], rate: f64, freq: f64) -> (f64, f64) {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let mut m = [[0f64; 3]; 3];
    let mut v = [0f64; 3];
    for (n, &y) in x.iter().enumerate() {
        let basis = [(w * n as f64).sin(), (w * n as f64).cos(), 1.0];
        for i in 0..3 {
            v[i] += basis[i] * y;
            for j in 0..3 {
                m[i][j] += basis[i] * basis[j];
            }
        }
    }
    let p = solve3(m, v);
    let mut residual = 0.0;
    for (n, &y) in x.iter().enumerate() {
        let model = p[0] * (w * n as f64).sin() + p[1] * (w * n as f64).cos() + p[2];
        residual += (y - model).powi(2);
    }
    (
        (p[0] * p[0] + p[1] * p[1]).sqrt(),
        (residual / x.len() as f64).sqrt(),
    )
}

fn solve3(mut m: [[f64; 3]; 3], mut v: [f64; 3]) -> [f64; 3] {
    for col in 0..3 {
        let pivot = (col..3)
            .max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))
            .unwrap_or(col);
        m.swap(col, pivot);
        v.swap(col, pivot);
        for row in 0..3 {
            if row != col {
                let f = m[row][col] / m[col][col];
                for k in 0..3 {
                    m[row][k] -= f * m[col][k];
                }
                v[row] -= f * v[col];
            }
        }
    }
    [v[0] / m[0][0], v[1] / m[1][1], v[2] / m[2][2]]
}

/// Converts 0.2 s of a tone and returns the steady part of the output.
fn through(from_rate: u32, to_rate: u32, freq: f64, dbfs: f64) -> Vec<f64> {
    let (from, to) = (pcm32(from_rate, 1), pcm32(to_rate, 1));
    let mut c = converter(&from, &to);
    let input = sine(from_rate, freq, dbfs, from_rate as usize / 5);
    let mut output = vec![0u8; to_rate as usize / 5 * 4];
    let done = c.convert(&input, &mut output);
    assert!(done.outputs > to_rate as usize / 6, "made {done:?}");
    let y = samples(&output[..done.outputs * 4]);
    // Skip the filter's start (the silent history) and stop before the end.
    let skip = 2_000;
    y[skip..done.outputs - 100].to_vec()
}

fn db(x: f64) -> f64 {
    20.0 * x.log10()
}

/// THD+N of `freq` through `from -> to`, in dB below the tone.
fn snr(from: u32, to: u32, freq: f64, dbfs: f64) -> (f64, f64) {
    let y = through(from, to, freq, dbfs);
    let (amplitude, residual) = fit(&y, f64::from(to), freq);
    (
        db(amplitude / residual),
        db(amplitude) - dbfs + 3.0103 - 3.0103,
    )
}

const PAIRS: [(u32, u32); 2] = [(44_100, 48_000), (48_000, 44_100)];

#[test]
fn a_997_hz_tone_at_minus_1_dbfs_keeps_90_db_of_snr_both_ways() {
    for (from, to) in PAIRS {
        let (snr_db, _) = snr(from, to, 997.0, -1.0);
        println!("THD+N {from} -> {to}: SNR {snr_db:.1} dB");
        assert!(snr_db >= 90.0, "{from} -> {to}: {snr_db:.1} dB");
    }
}

#[test]
fn the_passband_is_flat_to_20_khz_and_every_image_is_90_db_down() {
    for (from, to) in PAIRS {
        let mut worst_gain = 0f64;
        let mut worst_snr = f64::MAX;
        for freq in [
            20.0, 100.0, 1_000.0, 5_000.0, 10_000.0, 15_000.0, 18_000.0, 19_500.0, 20_000.0,
        ] {
            let (snr_db, gain_db) = snr(from, to, freq, -1.0);
            let gain_db = gain_db + 1.0 - 1.0;
            worst_gain = if gain_db.abs() > worst_gain.abs() {
                gain_db
            } else {
                worst_gain
            };
            worst_snr = worst_snr.min(snr_db);
        }
        println!("{from} -> {to}: passband worst {worst_gain:+.4} dB, worst THD+N/images {worst_snr:.1} dB");
        assert!(worst_gain.abs() <= 0.1, "{from} -> {to}: {worst_gain} dB");
        assert!(worst_snr >= 90.0, "{from} -> {to}: {worst_snr} dB");
    }
}

#[test]
fn a_reset_converter_converts_as_a_new_one() {
    // Reset keeps what construction computed (the precomputed phases of
    // 44.1 -> 48 kHz): the same input gives the same output after it.
    let (from, to) = (pcm32(44_100, 2), pcm32(48_000, 2));
    let input: Vec<u8> = sine(44_100, 997.0, -1.0, 4_410)
        .chunks_exact(4)
        .flat_map(|s| [s, s].concat())
        .collect();
    let mut c = converter(&from, &to);
    let mut first = vec![0u8; 4_000 * 8];
    let made = c.convert(&input, &mut first);
    c.reset(0);
    let mut second = vec![0u8; 4_000 * 8];
    assert_eq!(c.convert(&input, &mut second), made);
    assert!(first == second && first.iter().any(|&b| b != 0));
}

#[test]
fn content_above_the_output_band_is_stopped_90_db_down() {
    // 96 kHz -> 44.1 kHz: 30 and 40 kHz would alias to 14.1 and 4.1 kHz.
    for freq in [30_000.0, 40_000.0] {
        let y = through(96_000, 44_100, freq, -1.0);
        let rms = (y.iter().map(|v| v * v).sum::<f64>() / y.len() as f64).sqrt();
        let tone_rms = 10f64.powf(-1.0 / 20.0) / 2f64.sqrt();
        let down = db(tone_rms / rms);
        println!("96000 -> 44100: {freq} Hz alias {down:.1} dB down");
        assert!(down >= 90.0, "{freq}: {down}");
    }
}

#[test]
fn the_measurement_fires_on_a_degraded_signal() {
    // Control for the analysis: a tone with added noise at -80 dB must fail
    // the 90 dB bar, and the clean tone pass it.
    let rate = 48_000;
    let clean = samples(&sine(rate, 997.0, -1.0, 20_000));
    let mut seed = 1u64;
    let noisy: Vec<f64> = clean
        .iter()
        .map(|x| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            x + ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0 * 1.7e-4
        })
        .collect();
    let (a, r) = fit(&clean, f64::from(rate), 997.0);
    assert!(db(a / r) > 120.0);
    let (a, r) = fit(&noisy, f64::from(rate), 997.0);
    assert!(db(a / r) < 90.0, "{}", db(a / r));
}

/// 24 h of the cable's arithmetic, services every 100 ms, with the
/// converter's phase stepping `phase_in` -> `capture` input frames per
/// output while the render plays at `render`: (lowest, highest occupancy,
/// input frames the phase moved, frames the render played).
fn virtual_day(render: u32, capture: u32, phase_in: u32) -> (i64, i64, u64, u64) {
    // The capture side makes as many frames as its clock says, the
    // converter takes input frames as its exact phase says, the render side
    // plays as its clock says; render frames played but not yet taken must
    // stay bounded and never go negative (the converter never reads
    // unplayed audio).
    let look_ahead =
        wavert_core::convert::resample::Resampler::<Vec<i32>>::half_window(render, capture) as i64;
    let delay = look_ahead + 2;
    let mut phase = RatePhase::new(phase_in, capture);
    let mut made = 0u64;
    let (mut low, mut high) = (i64::MAX, i64::MIN);
    let day_ms = 24 * 3_600 * 1_000u64;
    let mut played = 0;
    for ms in (100..=day_ms).step_by(100) {
        let captured = ms * u64::from(capture) / 1_000;
        played = ms * u64::from(render) / 1_000;
        phase.advance(captured - made);
        made = captured;
        // The converter's input frame 0 is render frame -delay (the cable
        // anchors it so); by now it has taken input through the window of
        // the next output instant at most.
        let taken_through = phase.whole() as i64 + look_ahead - delay;
        let occupancy = played as i64 - (taken_through + 1);
        low = low.min(occupancy);
        high = high.max(occupancy);
    }
    assert_eq!(made, day_ms / 1_000 * u64::from(capture));
    assert_eq!(phase.numerator(), 0);
    (low, high, phase.whole(), played)
}

#[test]
fn a_virtual_day_moves_exactly_the_expected_frames_with_bounded_occupancy() {
    for (render, capture) in
        PAIRS
            .into_iter()
            .chain([(8_000, 384_000), (384_000, 8_000), (44_100, 44_101)])
    {
        let (low, high, taken, played) = virtual_day(render, capture, render);
        println!("{render} -> {capture}: occupancy {low}..={high} frames over 24 h");
        assert_eq!(taken, played, "{render} -> {capture}");
        assert!(
            low >= 0 && high <= 2 + i64::from(render.div_ceil(capture)) + 1,
            "{low}..{high}"
        );
    }
}

#[test]
fn a_phase_one_hertz_off_is_caught_drifting() {
    // Fault variant: a converter that believed 44 101 Hz would take 86 400
    // frames too many in a day and read audio not yet played.
    let (low, _, taken, played) = virtual_day(44_100, 48_000, 44_101);
    assert_ne!(taken, played);
    assert!(low < 0, "{low}");
}

/// Every (render, capture) encoding pair at one rate: a -1 dBFS 997 Hz
/// tone comes through with the SNR the narrower depth allows.
#[test]
fn every_encoding_pair_converts_with_the_narrower_depths_quality() {
    // (type, container, valid bits, SNR floor, significant bits). Float
    // carries 24 significant bits (more near silence, so nothing narrows
    // into float's place exactly but float itself).
    let formats = [
        (SampleType::Pcm, 8, 8, 40.0, 8),
        (SampleType::Pcm, 16, 16, 88.0, 16),
        (SampleType::Pcm, 24, 24, 130.0, 24),
        (SampleType::Pcm, 32, 24, 130.0, 24),
        (SampleType::Pcm, 32, 32, 130.0, 32),
        (SampleType::Float, 32, 32, 130.0, 24),
    ];
    for &(from_type, from_bits, from_valid, from_snr, from_depth) in &formats {
        for &(to_type, to_bits, to_valid, to_snr, to_depth) in &formats {
            let from =
                AudioFormat::extensible(from_type, 2, 48_000, from_bits, from_valid).expect("from");
            let to = AudioFormat::extensible(to_type, 2, 48_000, to_bits, to_valid).expect("to");
            // The tone in the source format, through a 32-bit converter.
            let tone = sine(48_000, 997.0, -1.0, 4_800);
            let stereo: Vec<u8> = tone.chunks_exact(4).flat_map(|s| [s, s].concat()).collect();
            let mut source = vec![0u8; 4_800 * from.block_align() as usize];
            converter(&pcm32(48_000, 2), &from).convert(&stereo, &mut source);
            let mut out = vec![0u8; 4_800 * to.block_align() as usize];
            let done = converter(&from, &to).convert(&source, &mut out);
            assert_eq!(done.outputs, 4_800);
            let mut back = vec![0u8; 4_800 * 8];
            converter(&to, &pcm32(48_000, 2)).convert(&out, &mut back);
            let left: Vec<f64> = samples(&back).into_iter().step_by(2).collect();
            let (a, r) = fit(&left, 48_000.0, 997.0);
            let want = f64::min(from_snr, to_snr);
            assert!(db(a / r) >= want, "{from_bits}/{from_valid} {from_type:?} -> {to_bits}/{to_valid} {to_type:?}: {:.1} dB", db(a / r));
            // Widening from the source is exact: converting back to the source
            // format gives the source bytes.
            let widening = from_depth <= to_depth
                && (from_type == SampleType::Pcm || to_type == SampleType::Float)
                && !(from_depth == 32 && to_type == SampleType::Float);
            if widening {
                let mut round = vec![0u8; source.len()];
                converter(&to, &from).convert(&out, &mut round);
                assert!(round == source, "{from_bits}/{from_valid} {from_type:?} -> {to_bits}/{to_valid} {to_type:?} -> back differs");
            }
        }
    }
}

/// The converter's volume: the render side's gain per render channel
/// before the channel map, the capture side's per capture channel after
/// it. Stereo to 5.1 at the same rate copies FL and FR, so output left is
/// input left times render-left and capture-left; through a rate change the
/// tone's amplitude drops by the gain and its SNR stays.
#[test]
fn gains_scale_render_channels_before_the_map_and_capture_channels_after() {
    use wavert_core::convert::gain::ChannelGains;
    const DB: i32 = 65_536;
    let from = pcm32(48_000, 2);
    let to = AudioFormat::extensible(SampleType::Pcm, 6, 48_000, 32, 32).expect("5.1");
    let mut c = converter(&from, &to);
    c.set_gains(
        ChannelGains::from_levels(&[-6 * DB, 0], false),
        ChannelGains::from_levels(&[0, -12 * DB, -20 * DB], false),
    );
    let input: Vec<u8> = [1_000_000_000i32, -1_000_000_000]
        .iter()
        .cycle()
        .take(64)
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let mut output = vec![0u8; 32 * 24];
    let done = c.convert(&input, &mut output);
    assert_eq!(done.outputs, 32);
    let out = samples(&output);
    let (left, right) = (out[0] * 2_147_483_648.0, out[1] * 2_147_483_648.0);
    assert!(
        (left - 1e9 * 10f64.powf(-6.0 / 20.0)).abs() <= 1.0,
        "{left}"
    );
    assert!(
        (right + 1e9 * 10f64.powf(-12.0 / 20.0)).abs() <= 1.0,
        "{right}"
    );
    assert!(
        out[2..6].iter().all(|&s| s == 0.0),
        "unmapped speakers silent"
    );

    // Through 44.1 -> 48 kHz at -6 dB on both sides: -12 dB of tone.
    let from = pcm32(44_100, 1);
    let to = pcm32(48_000, 1);
    let mut c = converter(&from, &to);
    c.set_gains(
        ChannelGains::from_levels(&[-6 * DB], false),
        ChannelGains::from_levels(&[-6 * DB], false),
    );
    let input = sine(44_100, 997.0, -1.0, 44_100);
    let mut output = vec![0u8; 4 * 48_000];
    let made = c.convert(&input, &mut output).outputs;
    let out = samples(&output[..made * 4]);
    let settled = &out[1_000..made - 1_000];
    let (amplitude, residual) = fit(settled, 48_000.0, 997.0);
    let level = db(amplitude);
    assert!((level - -13.0).abs() < 0.01, "tone at {level:.3} dBFS");
    assert!(
        db(amplitude / residual) > 90.0,
        "SNR {:.1}",
        db(amplitude / residual)
    );

    // A muted capture side is silence at once; a muted render side once
    // the resampler's window has passed the last unmuted input.
    c.set_gains(ChannelGains::UNITY, ChannelGains::from_levels(&[0], true));
    let made = c.convert(&input, &mut output).outputs;
    assert!(made > 0 && output[..made * 4].iter().all(|&b| b == 0));
    c.set_gains(ChannelGains::from_levels(&[0], true), ChannelGains::UNITY);
    let made = c.convert(&input, &mut output).outputs;
    // The window in input frames, as output frames.
    let window = ((2 * c.look_ahead() + 2) * 48_000).div_ceil(44_100);
    assert!(
        output[..4 * window].iter().any(|&b| b != 0),
        "the tail plays out"
    );
    let last = output[..made * 4]
        .iter()
        .rposition(|&b| b != 0)
        .unwrap_or(0)
        / 4;
    assert!(last < window, "last sound at frame {last}, window {window}");
}
