//! The HLK audio tests' rules, and one function per HLK test method in [`methods`].
//!
//! Written from what Microsoft's published test
//! sources assert (Windows-driver-samples `audio/tests/wavetest` and
//! `audio/tests/KSPosTst`; facts only, no code taken), and the per-method
//! runs in [`methods`] (one function per HLK test method; `docs/hlk-methods.md`
//! lists each assertion and where it comes from).
//!
//! * `WaveTest` (`pintest.cpp`): 100 ms after RUN, ten position reads 50 ms
//!   apart must each differ from the one before; in PAUSE they must all be
//!   equal; after STOP every read is 0.
//! * KS position test (`KSPosTst/pintest.cpp`, `locallimits.h`): after
//!   100 ms of RUN, up to 100 position reads one engine period apart; a read
//!   counts if its position is non-zero, it took under 1 ms and its
//!   timestamp differs from the previous one; at least 30 are needed (none
//!   within 1 s of RUN ends the collection); the least-squares rate must be
//!   within 1 % of nominal; against the nominal-rate line through the fitted
//!   offset the mean error must truncate to 0 or 1 ms, the largest error be
//!   under 4 ms and the standard deviation under 1 ms. `Latency`: the first
//!   non-zero position, read every 1 ms after RUN, compared with the time in
//!   RUN: within 20 ms, and not ahead of the time in RUN by more than 1 ms
//!   (the HLK warns today and says these become errors; the emulator fails).
//!
//! The rule functions take position traces, so each can be shown to fail
//! on a deliberately bad trace; the `run_*` functions drive a real stream
//! through the engine and apply them.

pub mod methods;

// The KS position test's rules live in wavert-analysis, shared with the
// Windows setup tool's `check` (the same analysis on a real machine's reads).
use wavert_analysis::position::PositionRead;
pub use wavert_analysis::position::{
    KsPositionReport, KS_DATA_POINTS, KS_MIN_POINTS, MAX_JITTER_MS, MAX_JITTER_STD_MS,
    MAX_MEAN_ERROR_MS, MAX_RATE_ERROR_PERCENT, MAX_READ_MS, MAX_START_MS,
};

use std::mem::{offset_of, size_of};
use std::sync::Arc;

use portcls_sys::{
    IMiniportWaveRT, GUID, KSDATAFORMAT_SUBTYPE_IEEE_FLOAT, KSDATARANGE_AUDIO, KSSTATE_PAUSE,
    KSSTATE_RUN, PCFILTER_DESCRIPTOR,
};
use wavert_com::ComPtr;

use crate::engine::{data_ranges, pins, EngineError, FormatRequest, PositionSample, Stream};
use crate::machine::{Machine, QPC_FREQUENCY, QPC_PER_MS};

/// Time between two `WaveTest` position reads (`pintest.cpp`: `Sleep(50)`);
/// the position must not stand still that long in RUN.
pub const MAX_STILL_MS: f64 = 50.0;
/// `WaveTest`'s wait after each state change before the first read.
pub const SETTLE_MS: u64 = 100;
/// `WaveTest`'s reads per state.
pub const READS_PER_STATE: usize = 10;
/// The audio engine's default period (`PropertyHelper.h`
/// `kSystemDefaultPeriod`, 10 ms; Learn, `PKEY_AudioEngine_OEMPeriod`).
pub const ENGINE_PERIOD_MS: u64 = 10;
/// `Latency`: how long the first non-zero position is waited for.
pub const LATENCY_WAIT_MS: u64 = 500;
/// `Latency`: largest start latency (`LATENCY_THRESHOLD`).
pub const MAX_START_LATENCY_MS: f64 = 20.0;

#[allow(
    clippy::cast_precision_loss,
    reason = "QPC ticks to milliseconds for reports"
)]
fn ms(qpc: u64) -> f64 {
    qpc as f64 * 1000.0 / QPC_FREQUENCY as f64
}

/// `WaveTest`: in RUN, the position never stands still for
/// [`MAX_STILL_MS`] or longer (so each of reads 50 ms apart differs from
/// the one before).
///
/// # Errors
///
/// A description of the first stall.
pub fn position_moves_in_run(samples: &[PositionSample]) -> Result<(), String> {
    let mut since: Option<(u64, u64)> = None;
    for s in samples.iter().filter(|s| s.state == KSSTATE_RUN) {
        match since {
            Some((pos, at)) if pos == s.linear_bytes => {
                let still = ms(s.qpc_before.saturating_sub(at));
                if still >= MAX_STILL_MS {
                    return Err(format!("position stood at {pos} for {still:.1} ms in RUN"));
                }
            }
            _ => since = Some((s.linear_bytes, s.qpc_before)),
        }
    }
    Ok(())
}

/// `WaveTest`: in PAUSE, the position does not move.
///
/// # Errors
///
/// The first move seen.
pub fn position_frozen_in_pause(samples: &[PositionSample]) -> Result<(), String> {
    let mut first: Option<u64> = None;
    for s in samples.iter().filter(|s| s.state == KSSTATE_PAUSE) {
        match first {
            Some(p) if p != s.linear_bytes => {
                return Err(format!(
                    "position moved from {p} to {} in PAUSE",
                    s.linear_bytes
                ));
            }
            _ => first = first.or(Some(s.linear_bytes)),
        }
    }
    Ok(())
}

/// `WaveTest`: after STOP the position is 0.
///
/// # Errors
///
/// The non-zero position.
pub fn position_zero_after_stop(play_offset: u64) -> Result<(), String> {
    if play_offset == 0 {
        Ok(())
    } else {
        Err(format!("position {play_offset} after STOP"))
    }
}

/// The KS position test's rules over the reads of an emulated RUN trace
/// ([`wavert_analysis::position::ks_position_check`] on the machine's clock).
#[must_use]
pub fn ks_position_check(
    samples: &[PositionSample],
    run_qpc: u64,
    nominal_rate: u32,
    block_align: u32,
) -> KsPositionReport {
    let reads: Vec<PositionRead> = samples
        .iter()
        .map(|s| PositionRead {
            qpc_before: s.qpc_before,
            qpc_after: s.qpc_after,
            linear_bytes: s.linear_bytes,
            running: s.state == KSSTATE_RUN,
        })
        .collect();
    wavert_analysis::position::ks_position_check(
        &reads,
        run_qpc,
        QPC_FREQUENCY,
        nominal_rate,
        block_align,
    )
}

/// What the `Latency` method measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyReport {
    /// Start latency: the time in RUN against the first non-zero position, in ms.
    pub latency_ms: Option<f64>,
    /// The first non-zero position, in ms of audio, corrected to the read's time.
    pub position_ms: Option<f64>,
    /// The longest the stream can have been in RUN at that read, in ms.
    pub run_ms: Option<f64>,
    /// Rules broken, each starting with the rule's name.
    pub failures: Vec<String>,
}

/// The `Latency` method's rules on its first non-zero read.
///
/// `Latency` (`Test_Latency_Main`): `first` is the first read that was not 0
/// (or `None` after [`LATENCY_WAIT_MS`]), `run_before` and `run_after` the QPC
/// around the RUN call. The HLK only warns on each of these today (its
/// messages say they will become errors); the emulator fails on them.
#[must_use]
#[allow(
    clippy::cast_precision_loss,
    reason = "times in milliseconds, as the HLK computes them"
)]
pub fn latency_check(
    first: Option<&PositionSample>,
    run_before: u64,
    run_after: u64,
    bytes_per_second: u32,
) -> LatencyReport {
    let mut report = LatencyReport::default();
    let Some(first) = first else {
        report.failures.push(format!(
            "position leaves 0: still 0 {LATENCY_WAIT_MS} ms after RUN"
        ));
        return report;
    };
    let t_max = ms(first.qpc_after.saturating_sub(run_before));
    let t_min = ms(first.qpc_before.saturating_sub(run_after));
    let t_ave = f64::midpoint(t_max, t_min);
    let stamp = first.qpc_before / 2 + first.qpc_after / 2;
    let offset = first.linear_bytes as f64 * 1000.0 / f64::from(bytes_per_second.max(1))
        + ms(first.qpc_after.saturating_sub(stamp));
    let latency = (t_ave - offset).abs();
    report.latency_ms = Some(latency);
    report.position_ms = Some(offset);
    report.run_ms = Some(t_max);
    if offset > t_max + MAX_JITTER_STD_MS {
        report.failures.push(format!(
            "position not ahead of time: {offset:.3} ms of audio after at most {t_max:.3} ms in RUN"
        ));
    }
    if latency > MAX_START_LATENCY_MS {
        report.failures.push(format!(
            "start latency: {latency:.3} ms (limit {MAX_START_LATENCY_MS} ms)"
        ));
    }
    report
}

/// One rule's outcome on a real stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The rule.
    pub rule: String,
    /// `Ok` or what went wrong.
    pub outcome: Result<(), String>,
}

fn finding(rule: impl Into<String>, outcome: Result<(), String>) -> Finding {
    Finding {
        rule: rule.into(),
        outcome,
    }
}

/// Lets time pass with the streams serviced as the audio engine does.
///
/// Lets `duration_ms` of (virtual or real) time pass the way the audio
/// engine lives through it: each stream's position is read several times
/// per buffer cycle (so the cyclic offset unwraps without aliasing, as the
/// engine's own position tracking does) and its notifications handled.
///
/// # Errors
///
/// A failing position read.
pub fn engine_wait(
    machine: &Machine,
    streams: &mut [&mut Stream],
    duration_ms: u64,
) -> Result<(), EngineError> {
    let step = streams
        .iter()
        .map(|s| {
            let cycle = u64::from(s.buffer_size()) * QPC_FREQUENCY
                / u64::from(s.format().bytes_per_second().max(1));
            (cycle / 4).clamp(QPC_PER_MS / 10, 5 * QPC_PER_MS)
        })
        .min()
        .unwrap_or(5 * QPC_PER_MS);
    let end = machine.qpc() + duration_ms * QPC_PER_MS;
    while machine.qpc() < end {
        machine.advance(step.min(end - machine.qpc()));
        for stream in streams.iter_mut() {
            stream.position()?;
            let _ = stream.take_notifications();
        }
    }
    Ok(())
}

/// One position read as the test makes it (recorded in the trace too).
fn read(stream: &mut Stream) -> Result<PositionSample, EngineError> {
    stream.position()?;
    stream
        .trace
        .last()
        .copied()
        .ok_or_else(|| EngineError::Protocol("a position read left no trace".to_owned()))
}

/// `WaveTest`'s reads in one state: [`SETTLE_MS`], one read, then
/// [`READS_PER_STATE`] reads [`MAX_STILL_MS`] apart.
fn reads_in_state(
    machine: &Machine,
    streams: &mut [&mut Stream],
) -> Result<Vec<Vec<PositionSample>>, EngineError> {
    engine_wait(machine, streams, SETTLE_MS)?;
    let mut reads: Vec<Vec<PositionSample>> = vec![Vec::new(); streams.len()];
    for i in 0..=READS_PER_STATE {
        if i > 0 {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "50"
            )]
            engine_wait(machine, streams, MAX_STILL_MS as u64)?;
        }
        for (stream, out) in streams.iter_mut().zip(reads.iter_mut()) {
            out.push(read(stream)?);
        }
    }
    Ok(reads)
}

/// `WaveTest`'s check that running streams move at every read.
///
/// `WaveTest`'s check of a running stream (`Test_StreamBufferSize`,
/// `Test_StreamDifferentFormat`): after [`SETTLE_MS`] in RUN, each of
/// [`READS_PER_STATE`] reads [`MAX_STILL_MS`] apart differs from the one
/// before. Each stream must already be in RUN.
///
/// # Errors
///
/// A failing engine call.
pub fn moving_reads(
    machine: &Machine,
    streams: &mut [&mut Stream],
) -> Result<Vec<Result<(), String>>, EngineError> {
    Ok(reads_in_state(machine, streams)?
        .iter()
        .map(|reads| position_moves_in_run(reads))
        .collect())
}

/// `Test_StreamStateControl` on an open stream with its buffer and event:
///
/// RUN (reads move), PAUSE (reads equal), STOP (every read 0), then RUN
/// again and PAUSE, as the test's `StartEndpoint` / `StopStream` end it.
///
/// # Errors
///
/// An engine error that stopped the sequence.
pub fn state_control_sequence(
    machine: &Machine,
    stream: &mut Stream,
) -> Result<Vec<Finding>, EngineError> {
    stream.set_state(KSSTATE_RUN)?;
    let run = reads_in_state(machine, &mut [&mut *stream])?;
    stream.set_state(KSSTATE_PAUSE)?;
    let pause = reads_in_state(machine, &mut [&mut *stream])?;
    stream.set_state(portcls_sys::KSSTATE_STOP)?;
    let stop = reads_in_state(machine, &mut [&mut *stream])?;
    let zero = stop[0]
        .iter()
        .skip(1)
        .map(|s| position_zero_after_stop(s.linear_bytes))
        .find(Result::is_err)
        .unwrap_or(Ok(()));
    let restart = stream
        .set_state(KSSTATE_RUN)
        .and_then(|()| engine_wait(machine, &mut [&mut *stream], SETTLE_MS))
        .and_then(|()| stream.set_state(KSSTATE_PAUSE))
        .map_err(|e| e.to_string());
    Ok(vec![
        finding("position moves in RUN", position_moves_in_run(&run[0])),
        finding(
            "position frozen in PAUSE",
            position_frozen_in_pause(&pause[0]),
        ),
        finding("position 0 after STOP", zero),
        finding("RUN again after STOP", restart),
    ])
}

/// The `WaveTest` state rules on one stream (`Test_StreamStateControl`),
/// with a buffer of `buffer_bytes` and two notifications.
///
/// # Errors
///
/// An engine error that stopped the sequence.
pub fn run_wavetest_positions(
    machine: &Arc<Machine>,
    wave: &ComPtr<IMiniportWaveRT>,
    pin: u32,
    capture: bool,
    format_bytes: &[u8],
    buffer_bytes: u32,
) -> Result<Vec<Finding>, EngineError> {
    let mut stream = Stream::open(machine, wave, pin, capture, format_bytes)?;
    stream.allocate(buffer_bytes, Some(2))?;
    stream.register_event()?;
    let findings = state_control_sequence(machine, &mut stream)?;
    stream.close()?;
    Ok(findings)
}

/// The formats a pin advertises, sampled at the corners a format sweep uses.
///
/// 1, 2 and the most channels; each standard bit depth and rate in
/// range; and, as a `KSDATARANGE_AUDIO` names valid bits but no container,
/// every container that depth may come in (24 bits: packed in three bytes
/// and in 32, the common exclusive-mode format). Each is a specific
/// format ([`FormatRequest::container_bits`] set), proposed as is.
#[must_use]
pub fn advertised_formats(
    description: &'static PCFILTER_DESCRIPTOR,
    pin: u32,
) -> Vec<FormatRequest> {
    const RATES: [u32; 11] = [
        8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000, 176_400, 192_000,
    ];
    let Some(pin) = pins(description).get(pin as usize) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for range in data_ranges(pin) {
        // Up to the last field (84 bytes; `sizeof` adds 4 of padding).
        if range.len() < offset_of!(KSDATARANGE_AUDIO, MaximumSampleFrequency) + size_of::<u32>() {
            continue;
        }
        let field = |at: usize| u32::from_le_bytes(range[at..at + 4].try_into().unwrap_or([0; 4]));
        let sub_format = offset_of!(KSDATARANGE_AUDIO, DataRange.SubFormat);
        let float = range[sub_format..sub_format + size_of::<GUID>()]
            == KSDATAFORMAT_SUBTYPE_IEEE_FLOAT.to_bytes();
        let (max_ch, min_bits, max_bits, min_rate, max_rate) = (
            field(offset_of!(KSDATARANGE_AUDIO, MaximumChannels)),
            field(offset_of!(KSDATARANGE_AUDIO, MinimumBitsPerSample)),
            field(offset_of!(KSDATARANGE_AUDIO, MaximumBitsPerSample)),
            field(offset_of!(KSDATARANGE_AUDIO, MinimumSampleFrequency)),
            field(offset_of!(KSDATARANGE_AUDIO, MaximumSampleFrequency)),
        );
        let mut channels = vec![1, 2, max_ch];
        channels.dedup();
        for &ch in channels.iter().filter(|&&c| c >= 1 && c <= max_ch) {
            for bits in [8u16, 16, 24, 32]
                .into_iter()
                .filter(|&b| (min_bits..=max_bits).contains(&u32::from(b)))
            {
                let containers: &[u16] = if bits == 24 && !float {
                    &[24, 32]
                } else {
                    &[bits]
                };
                for &container_bits in containers {
                    for rate in RATES
                        .into_iter()
                        .filter(|r| (min_rate..=max_rate).contains(r))
                    {
                        out.push(FormatRequest {
                            rate,
                            bits,
                            channels: u16::try_from(ch).unwrap_or(2),
                            float,
                            container_bits,
                        });
                    }
                }
            }
        }
    }
    out
}

/// The KS position test (`DriftAndJitter`) on one stream.
///
/// The KS position test's collection (`CollectSampleData`) at the engine's
/// default period: a buffer of two 10 ms packets, RUN, 100 ms to
/// stabilise, then one read per period until [`KS_DATA_POINTS`] usable
/// reads (or none non-zero [`MAX_START_MS`] after RUN), then the rules of
/// [`ks_position_check`].
///
/// # Errors
///
/// An engine error that stopped the sequence.
pub fn run_ks_position_test(
    machine: &Arc<Machine>,
    wave: &ComPtr<IMiniportWaveRT>,
    pin: u32,
    capture: bool,
    format_bytes: &[u8],
) -> Result<KsPositionReport, EngineError> {
    let mut stream = Stream::open(machine, wave, pin, capture, format_bytes)?;
    let format = *stream.format();
    #[allow(clippy::cast_possible_truncation, reason = "10 ms")]
    let period_bytes = format.bytes_per_second() / 1000 * ENGINE_PERIOD_MS as u32;
    stream.allocate(2 * period_bytes, Some(2))?;
    stream.register_event()?;
    stream.set_state(KSSTATE_RUN)?;
    engine_wait(machine, &mut [&mut stream], SETTLE_MS)?;
    let mut reads = Vec::new();
    let mut usable = 0;
    // Bounded: the HLK loops until it has its points; a device whose reads
    // are all discarded would keep it forever.
    for _ in 0..4 * KS_DATA_POINTS {
        engine_wait(machine, &mut [&mut stream], ENGINE_PERIOD_MS)?;
        let sample = read(&mut stream)?;
        reads.push(sample);
        if sample.linear_bytes != 0 {
            usable += 1;
        } else if ms(sample.qpc_after.saturating_sub(stream.run_qpc)) > MAX_START_MS {
            break;
        }
        if usable == KS_DATA_POINTS {
            break;
        }
    }
    let report = ks_position_check(
        &reads,
        stream.run_qpc,
        format.sample_rate(),
        format.block_align(),
    );
    stream.close()?;
    Ok(report)
}
