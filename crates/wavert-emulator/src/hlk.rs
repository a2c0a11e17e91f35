//! Position rules of the HLK audio tests, written from their published
//! rules (not from Microsoft's code).
//!
//! * `WaveTest`: in RUN the position changes at least every 50 ms; in PAUSE it
//!   stays put; after STOP it is 0; every advertised format opens and
//!   streams; the smallest and largest periods work.
//! * KS position test: about 100 QPC-stamped samples; measured sample rate
//!   within 1 % of nominal; jitter standard deviation below 1 ms and maximum
//!   below 4 ms (reads that took over 1 ms are discarded); first non-zero
//!   position within 1 s of RUN; a latency over 20 ms is a warning.
//!
//! The rule functions take position traces, so each can be shown to fail
//! on a deliberately bad trace; the `run_*` functions drive a real stream
//! through the engine and apply them.

use std::mem::{offset_of, size_of};
use std::sync::Arc;

use portcls_sys::{
    IMiniportWaveRT, GUID, KSDATAFORMAT_SUBTYPE_IEEE_FLOAT, KSDATARANGE_AUDIO, KSSTATE_PAUSE,
    KSSTATE_RUN, PCFILTER_DESCRIPTOR,
};
use wavert_com::ComPtr;

use crate::engine::{data_ranges, pins, EngineError, FormatRequest, PositionSample, Stream};
use crate::machine::{Machine, QPC_FREQUENCY, QPC_PER_MS};

/// Most time the position may stand still in RUN.
pub const MAX_STILL_MS: f64 = 50.0;
/// Largest relative sample-rate error, in percent.
pub const MAX_RATE_ERROR_PERCENT: f64 = 1.0;
/// Largest jitter standard deviation.
pub const MAX_JITTER_STD_MS: f64 = 1.0;
/// Largest single jitter.
pub const MAX_JITTER_MS: f64 = 4.0;
/// Reads slower than this are discarded.
pub const MAX_READ_MS: f64 = 1.0;
/// The position must leave 0 within this time after RUN.
pub const MAX_START_MS: f64 = 1000.0;
/// Latency above this is a warning.
pub const LATENCY_WARNING_MS: f64 = 20.0;

#[allow(
    clippy::cast_precision_loss,
    reason = "QPC ticks to milliseconds for reports"
)]
fn ms(qpc: u64) -> f64 {
    qpc as f64 * 1000.0 / QPC_FREQUENCY as f64
}

/// `WaveTest`: in RUN, the position changes at least every [`MAX_STILL_MS`].
///
/// # Errors
///
/// A description of the longest stall.
pub fn position_moves_in_run(samples: &[PositionSample]) -> Result<(), String> {
    let mut since: Option<(u64, u64)> = None;
    for s in samples.iter().filter(|s| s.state == KSSTATE_RUN) {
        match since {
            Some((pos, at)) if pos == s.linear_bytes => {
                let still = ms(s.qpc_before.saturating_sub(at));
                if still > MAX_STILL_MS {
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

/// What the KS position test measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KsPositionReport {
    /// Samples used for the fit.
    pub used: usize,
    /// Samples discarded (slow reads).
    pub discarded: usize,
    /// Sample rate from the fit (frames per second).
    pub measured_rate: f64,
    /// Its error against nominal, in percent.
    pub rate_error_percent: f64,
    /// Standard deviation of the position's deviation from the fit, in ms.
    pub jitter_std_ms: f64,
    /// Largest deviation from the fit, in ms.
    pub jitter_max_ms: f64,
    /// Time from RUN to the first non-zero position, in ms.
    pub first_nonzero_ms: Option<f64>,
    /// Rules broken.
    pub failures: Vec<String>,
    /// Warnings (latency).
    pub warnings: Vec<String>,
}

impl KsPositionReport {
    /// No rule broken.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// KS position test rules over a RUN trace.
#[must_use]
#[allow(
    clippy::cast_precision_loss,
    reason = "statistics over positions in floating point"
)]
pub fn ks_position_check(
    samples: &[PositionSample],
    run_qpc: u64,
    nominal_rate: u32,
    block_align: u32,
    latency_ms: Option<f64>,
) -> KsPositionReport {
    let mut report = KsPositionReport::default();
    let run: Vec<&PositionSample> = samples.iter().filter(|s| s.state == KSSTATE_RUN).collect();
    report.first_nonzero_ms = run
        .iter()
        .find(|s| s.linear_bytes != 0)
        .map(|s| ms(s.qpc_after.saturating_sub(run_qpc)));
    match report.first_nonzero_ms {
        None => report.failures.push("position never left 0".to_owned()),
        Some(t) if t > MAX_START_MS => report.failures.push(format!(
            "first non-zero position {t:.1} ms after RUN (limit {MAX_START_MS} ms)"
        )),
        Some(_) => {}
    }
    let points: Vec<(f64, f64)> = run
        .iter()
        .filter(|s| {
            let slow = ms(s.qpc_after.saturating_sub(s.qpc_before)) > MAX_READ_MS;
            if slow {
                report.discarded += 1;
            }
            !slow && s.linear_bytes != 0
        })
        .map(|s| {
            let mid = s.qpc_before / 2 + s.qpc_after / 2;
            (
                mid.saturating_sub(run_qpc) as f64 / QPC_FREQUENCY as f64,
                (s.linear_bytes / u64::from(block_align.max(1))) as f64,
            )
        })
        .collect();
    report.used = points.len();
    if points.len() < 10 {
        report
            .failures
            .push(format!("only {} usable position samples", points.len()));
        return report;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_p = points.iter().map(|p| p.1).sum::<f64>() / n;
    let var_t = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum::<f64>();
    let cov = points
        .iter()
        .map(|p| (p.0 - mean_t) * (p.1 - mean_p))
        .sum::<f64>();
    let slope = if var_t > 0.0 { cov / var_t } else { 0.0 };
    let intercept = mean_p - slope * mean_t;
    let nominal = f64::from(nominal_rate.max(1));
    report.measured_rate = slope;
    report.rate_error_percent = (slope - nominal).abs() / nominal * 100.0;
    let residuals: Vec<f64> = points
        .iter()
        .map(|p| (p.1 - (intercept + slope * p.0)) / nominal * 1000.0)
        .collect();
    report.jitter_std_ms = (residuals.iter().map(|r| r * r).sum::<f64>() / n).sqrt();
    report.jitter_max_ms = residuals.iter().fold(0.0, |m, r| m.max(r.abs()));
    if report.rate_error_percent > MAX_RATE_ERROR_PERCENT {
        report.failures.push(format!(
            "measured rate {slope:.1} Hz is {:.2} % off {nominal_rate} Hz",
            report.rate_error_percent
        ));
    }
    if report.jitter_std_ms >= MAX_JITTER_STD_MS {
        report
            .failures
            .push(format!("jitter std-dev {:.3} ms", report.jitter_std_ms));
    }
    if report.jitter_max_ms >= MAX_JITTER_MS {
        report
            .failures
            .push(format!("jitter max {:.3} ms", report.jitter_max_ms));
    }
    if let Some(l) = latency_ms.filter(|l| *l > LATENCY_WARNING_MS) {
        report
            .warnings
            .push(format!("latency {l:.1} ms over {LATENCY_WARNING_MS} ms"));
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

/// Polls the stream's position every `step_ms` for `duration_ms`.
fn poll(
    machine: &Machine,
    stream: &mut Stream,
    duration_ms: u64,
    step_ms: u64,
) -> Result<(), EngineError> {
    for _ in 0..duration_ms / step_ms.max(1) {
        machine.advance(step_ms * QPC_PER_MS);
        stream.position()?;
        // Handle notifications so a render stream keeps its data flowing.
        let _ = stream.take_notifications();
    }
    Ok(())
}

/// The `WaveTest` position rules on one stream: RUN 300 ms, PAUSE 100 ms,
/// RUN 100 ms, STOP.
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
    stream.set_state(KSSTATE_RUN)?;
    poll(machine, &mut stream, 300, 5)?;
    stream.set_state(KSSTATE_PAUSE)?;
    poll(machine, &mut stream, 100, 5)?;
    stream.set_state(KSSTATE_RUN)?;
    poll(machine, &mut stream, 100, 5)?;
    stream.set_state(portcls_sys::KSSTATE_STOP)?;
    let after_stop = stream.raw_position()?.PlayOffset;
    let findings = vec![
        finding(
            "position moves in RUN",
            position_moves_in_run(&stream.trace),
        ),
        finding(
            "position frozen in PAUSE",
            position_frozen_in_pause(&stream.trace),
        ),
        finding(
            "position 0 after STOP",
            position_zero_after_stop(after_stop),
        ),
    ];
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

/// `WaveTest`: every advertised format opens and streams (position moves
/// within 50 ms of RUN), and the smallest and largest buffers work.
///
/// # Errors
///
/// Never for a format (failures are findings); only for setup errors.
pub fn run_wavetest_formats(
    machine: &Arc<Machine>,
    wave: &ComPtr<IMiniportWaveRT>,
    description: &'static PCFILTER_DESCRIPTOR,
    pin: u32,
    capture: bool,
) -> Result<Vec<Finding>, EngineError> {
    let mut findings = Vec::new();
    let formats = advertised_formats(description, pin);
    if formats.is_empty() {
        findings.push(finding(
            "pin advertises formats",
            Err("no audio data range".to_owned()),
        ));
    }
    let stream_one = |request: &FormatRequest, buffer: u32| -> Result<(), String> {
        let (format, bytes) = crate::engine::negotiate_format(wave, description, pin, request)
            .map_err(|e| e.to_string())?;
        let mut stream =
            Stream::open(machine, wave, pin, capture, &bytes).map_err(|e| e.to_string())?;
        let granted = stream
            .allocate(buffer, Some(2))
            .map_err(|e| e.to_string())?;
        stream.register_event().map_err(|e| e.to_string())?;
        stream.set_state(KSSTATE_RUN).map_err(|e| e.to_string())?;
        // Three buffer cycles, at least 60 ms.
        let cycle_ms = u64::from(granted) * 1000 / u64::from(format.bytes_per_second().max(1));
        poll(machine, &mut stream, (3 * cycle_ms).max(60), 1).map_err(|e| e.to_string())?;
        let moved = position_moves_in_run(&stream.trace);
        let notified = stream.stats.notifications;
        stream.close().map_err(|e| e.to_string())?;
        moved?;
        if notified == 0 {
            return Err("no notification in three buffer cycles".to_owned());
        }
        Ok(())
    };
    for request in &formats {
        let rule = format!(
            "format {} Hz {} bit{}{} x{} streams",
            request.rate,
            request.bits,
            if request.container_bits > request.bits {
                format!(" in {}", request.container_bits)
            } else {
                String::new()
            },
            if request.float { " float" } else { "" },
            request.channels
        );
        findings.push(finding(rule, stream_one(request, 4800 * 4)));
    }
    let base = FormatRequest::default();
    findings.push(finding("smallest period streams", stream_one(&base, 1)));
    findings.push(finding(
        "largest period streams",
        stream_one(&base, u32::MAX / 2),
    ));
    Ok(findings)
}

/// The KS position test: ~100 samples, one per 10 ms engine period.
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
    stream.allocate(format.bytes_per_second() / 50, Some(2))?;
    stream.register_event()?;
    let latency = stream.hw_latency()?;
    stream.set_state(KSSTATE_RUN)?;
    poll(machine, &mut stream, 1000, 10)?;
    let latency_ms = f64::from(latency.ChipsetDelay + latency.CodecDelay) / 10_000.0
        + f64::from(latency.FifoSize) * 1000.0 / f64::from(format.bytes_per_second().max(1));
    let report = ks_position_check(
        &stream.trace,
        stream.run_qpc,
        format.sample_rate(),
        format.block_align(),
        Some(latency_ms),
    );
    stream.close()?;
    Ok(report)
}
