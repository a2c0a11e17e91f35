//! The KS position test's rules (Windows HLK `KSPosTst`), over position
//! reads from any source: the emulator's engine or a WASAPI stream.
//!
//! Written from what Microsoft's published test sources assert
//! (Windows-driver-samples `audio/tests/KSPosTst`: `pintest.cpp`,
//! `locallimits.h`, `PreComp.h`; facts only, no code taken); the rules are
//! listed in the emulator's `hlk` module and `docs/hlk-methods.md`.

/// One position read: the clock just before and just after it, and the
/// unwrapped byte position it returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PositionRead {
    /// Performance counter just before the call.
    pub qpc_before: u64,
    /// Performance counter just after it.
    pub qpc_after: u64,
    /// Unwrapped (linear) byte position.
    pub linear_bytes: u64,
    /// Whether the stream was running (the test uses RUN reads only).
    pub running: bool,
}

/// KS position test: position reads wanted (`PreComp.h` `DATA_POINTS`).
pub const KS_DATA_POINTS: usize = 100;
/// KS position test: fewest usable reads (`CollectSampleData`).
pub const KS_MIN_POINTS: usize = 30;
/// KS position test: the largest mean error that passes, truncated to whole
/// milliseconds (`CalculateJitter`).
pub const MAX_MEAN_ERROR_MS: f64 = 2.0;
/// Largest relative sample-rate error, in percent (`SAMPLERATE_THRESHOLD`).
pub const MAX_RATE_ERROR_PERCENT: f64 = 1.0;
/// Largest jitter standard deviation (`JITTER_STD_THRESHOLD`).
pub const MAX_JITTER_STD_MS: f64 = 1.0;
/// Largest single jitter (`JITTER_MAX_THRESHOLD`).
pub const MAX_JITTER_MS: f64 = 4.0;
/// Reads that took this long or longer are discarded.
pub const MAX_READ_MS: f64 = 1.0;
/// The KS position test stops collecting when the position is still 0 this
/// long after RUN.
pub const MAX_START_MS: f64 = 1000.0;

/// What the KS position test (`DriftAndJitter`) measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KsPositionReport {
    /// Reads used for the fit.
    pub used: usize,
    /// Reads discarded: slow (took [`MAX_READ_MS`] or more) or stamped at
    /// the same time as the read before.
    pub discarded: usize,
    /// Sample rate from the fit (frames per second).
    pub measured_rate: f64,
    /// Its error against nominal, in percent.
    pub rate_error_percent: f64,
    /// Mean error against the nominal-rate line through the fitted offset, in ms.
    pub mean_error_ms: f64,
    /// Standard deviation of that error, in ms.
    pub jitter_std_ms: f64,
    /// Largest absolute error, in ms.
    pub jitter_max_ms: f64,
    /// Time from RUN to the first non-zero position, in ms.
    pub first_nonzero_ms: Option<f64>,
    /// Rules broken, each starting with the rule's name.
    pub failures: Vec<String>,
}

impl KsPositionReport {
    /// No rule broken.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The report's one-line text, as the emulator's main job and the setup
    /// tool's `check` print it.
    #[must_use]
    pub fn summary(&self) -> String {
        format!(
            "{} (rate {:.2} Hz, {:.4} % off; error mean {:.4} ms, std-dev {:.4} ms, max {:.4} ms; first move {:.1} ms; {} samples)",
            if self.passed() {
                "pass".to_owned()
            } else {
                format!("FAIL: {}", self.failures.join("; "))
            },
            self.measured_rate,
            self.rate_error_percent,
            self.mean_error_ms,
            self.jitter_std_ms,
            self.jitter_max_ms,
            self.first_nonzero_ms.unwrap_or(f64::NAN),
            self.used,
        )
    }
}

/// The KS position test's rules (`CollectSampleData`, `CalculateSampleRate`,
/// `CalculateJitter`) over the reads of a RUN trace.
///
/// A read's position time is the middle of the call (the audio clock's
/// QPC stamp), its test time the QPC after it. The fit is bytes against
/// position time; the jitter of a read is how far its position (at the
/// nominal rate) is from the fitted offset line, corrected by the time
/// between its stamp and the test's clock read.
#[must_use]
#[allow(
    clippy::cast_precision_loss,
    reason = "statistics over positions in floating point, as the HLK computes them"
)]
#[allow(
    clippy::too_many_lines,
    reason = "the HLK's collection, fit and jitter rules in their order"
)]
pub fn ks_position_check(
    samples: &[PositionRead],
    run_qpc: u64,
    qpc_frequency: u64,
    nominal_rate: u32,
    block_align: u32,
) -> KsPositionReport {
    let ms = |qpc: u64| qpc as f64 * 1000.0 / qpc_frequency.max(1) as f64;
    let mut report = KsPositionReport::default();
    let run: Vec<&PositionRead> = samples.iter().filter(|s| s.running).collect();
    report.first_nonzero_ms = run
        .iter()
        .find(|s| s.linear_bytes != 0)
        .map(|s| ms(s.qpc_after.saturating_sub(run_qpc)));
    match report.first_nonzero_ms {
        None => report
            .failures
            .push("first non-zero position: the position never left 0".to_owned()),
        Some(t) if t > MAX_START_MS => report.failures.push(format!(
            "first non-zero position {t:.1} ms after RUN (the HLK stops collecting at {MAX_START_MS} ms)"
        )),
        Some(_) => {}
    }
    // (position time ms, test time ms, bytes) of each usable read.
    let mut points: Vec<(f64, f64, f64)> = Vec::new();
    let mut last_stamp: Option<u64> = None;
    for s in run.iter().filter(|s| s.linear_bytes != 0) {
        if points.len() == KS_DATA_POINTS {
            break;
        }
        if ms(s.qpc_after.saturating_sub(s.qpc_before)) >= MAX_READ_MS {
            report.discarded += 1;
            continue;
        }
        let stamp_qpc = s.qpc_before / 2 + s.qpc_after / 2;
        if last_stamp == Some(stamp_qpc) {
            report.discarded += 1;
            continue;
        }
        last_stamp = Some(stamp_qpc);
        let stamp = ms(stamp_qpc.saturating_sub(run_qpc));
        points.push((
            stamp,
            ms(s.qpc_after.saturating_sub(run_qpc)),
            s.linear_bytes as f64,
        ));
    }
    report.used = points.len();
    if points.len() < KS_MIN_POINTS {
        report.failures.push(format!(
            "enough samples: only {} usable position reads (the HLK needs {KS_MIN_POINTS})",
            points.len()
        ));
        return report;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_b = points.iter().map(|p| p.2).sum::<f64>() / n;
    let var_t = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum::<f64>();
    let cov = points
        .iter()
        .map(|p| (p.0 - mean_t) * (p.2 - mean_b))
        .sum::<f64>();
    // Bytes per millisecond, and the bytes at time 0.
    let slope = if var_t > 0.0 { cov / var_t } else { 0.0 };
    let intercept = mean_b - slope * mean_t;
    let nominal_bps = f64::from(nominal_rate.max(1)) * f64::from(block_align.max(1));
    let measured_bps = slope * 1000.0;
    report.measured_rate = measured_bps / f64::from(block_align.max(1));
    report.rate_error_percent = (measured_bps - nominal_bps) / nominal_bps * 100.0;
    let offset_ms = if measured_bps > 0.0 {
        intercept / measured_bps * 1000.0
    } else {
        0.0
    };
    let errors: Vec<f64> = points
        .iter()
        .map(|&(stamp, test, bytes)| {
            let reported_ms = bytes / nominal_bps * 1000.0;
            let compensated = reported_ms - offset_ms + (test - stamp);
            test - compensated
        })
        .collect();
    report.mean_error_ms = errors.iter().sum::<f64>() / n;
    report.jitter_max_ms = errors.iter().fold(0.0, |m, e| m.max(e.abs()));
    report.jitter_std_ms = (errors
        .iter()
        .map(|e| (e - report.mean_error_ms).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    if report.rate_error_percent.abs() > MAX_RATE_ERROR_PERCENT {
        report.failures.push(format!(
            "sample rate: measured rate {:.1} Hz is {:.2} % off {nominal_rate} Hz (limit {MAX_RATE_ERROR_PERCENT} %)",
            report.measured_rate, report.rate_error_percent
        ));
    }
    // The HLK truncates the mean to whole milliseconds as an unsigned
    // number: a mean at or below -1 ms wraps to a huge value and fails too.
    if report.mean_error_ms <= -1.0 || report.mean_error_ms >= MAX_MEAN_ERROR_MS {
        report.failures.push(format!(
            "mean error: {:.3} ms (must truncate to 0 or 1 ms)",
            report.mean_error_ms
        ));
    }
    if report.jitter_max_ms >= MAX_JITTER_MS {
        report.failures.push(format!(
            "jitter max: {:.3} ms (limit {MAX_JITTER_MS} ms)",
            report.jitter_max_ms
        ));
    }
    if report.jitter_std_ms >= MAX_JITTER_STD_MS {
        report.failures.push(format!(
            "jitter std-dev: {:.3} ms (limit {MAX_JITTER_STD_MS} ms)",
            report.jitter_std_ms
        ));
    }
    report
}

/// The reads of an ideal stream, for tests and examples of the rules.
///
/// One read every 10 ms from 100 ms on, `reads` of them, the clock running at
/// `speed` times the nominal `rate` (frames of `block_align` bytes), each read
/// taking 3 us: at `speed` 1.0 every rule passes.
#[must_use]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "a synthetic trace"
)]
pub fn steady_reads(
    qpc_frequency: u64,
    rate: u32,
    block_align: u32,
    speed: f64,
    reads: u64,
) -> Vec<PositionRead> {
    (10..10 + reads)
        .map(|period| {
            let qpc = period * qpc_frequency / 100;
            let frames = (qpc as f64 / qpc_frequency as f64 * f64::from(rate) * speed) as u64;
            PositionRead {
                qpc_before: qpc,
                qpc_after: qpc + qpc_frequency / 333_333,
                linear_bytes: frames * u64::from(block_align),
                running: true,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const QPC_HZ: u64 = 10_000_000;

    fn trace(speed: f64) -> Vec<PositionRead> {
        steady_reads(QPC_HZ, 48_000, 4, speed, 140)
    }

    #[test]
    fn a_stream_at_its_nominal_rate_passes() {
        let report = ks_position_check(&trace(1.0), 0, QPC_HZ, 48_000, 4);
        assert!(report.passed(), "{:?}", report.failures);
        assert_eq!(report.used, KS_DATA_POINTS);
        assert!((report.measured_rate - 48_000.0).abs() < 1.0, "{report:?}");
    }

    #[test]
    fn a_stream_two_percent_fast_fails_the_rate_rule() {
        let report = ks_position_check(&trace(1.02), 0, QPC_HZ, 48_000, 4);
        assert!(
            report.failures.iter().any(|f| f.starts_with("sample rate")),
            "{:?}",
            report.failures
        );
    }

    #[test]
    fn reads_outside_run_are_not_used() {
        let stopped: Vec<PositionRead> = trace(1.0)
            .into_iter()
            .map(|read| PositionRead {
                running: false,
                ..read
            })
            .collect();
        let report = ks_position_check(&stopped, 0, QPC_HZ, 48_000, 4);
        assert_eq!(report.used, 0);
        assert!(!report.passed());
    }
}
