//! `check`'s analysis of a loopback run through the cable.
//!
//! It reports in the emulator main job's terms (bit-exactness, latency,
//! glitches, the KS position test), computed by the same code
//! (wavert-analysis).

use wavert_analysis::position::{ks_position_check, KsPositionReport, PositionRead};
use wavert_analysis::signal::{find_alignment, mismatched_frames};
use wavert_core::format::AudioFormat;

use crate::cli::ShareMode;

/// What one `WASAPI` loopback run recorded.
#[derive(Clone, Debug)]
pub struct LoopbackRun {
    /// Shared or exclusive.
    pub mode: ShareMode,
    /// The format both streams ran in.
    pub format: AudioFormat,
    /// Every byte written to the render endpoint, in order.
    pub rendered: Vec<u8>,
    /// Every byte read from the capture endpoint, in order, silence
    /// (`AUDCLNT_BUFFERFLAGS_SILENT`) written out as zeros.
    pub captured: Vec<u8>,
    /// The capture buffer's size in bytes (bounds the search for the lag,
    /// as the emulator's main job bounds it).
    pub capture_buffer_bytes: u64,
    /// The render stream's position reads (`IAudioClock::GetPosition`,
    /// converted to bytes), with the performance counter around each.
    pub render_reads: Vec<PositionRead>,
    /// The capture stream's.
    pub capture_reads: Vec<PositionRead>,
    /// The performance counter when each stream was started.
    pub render_start_qpc: u64,
    /// See `render_start_qpc`.
    pub capture_start_qpc: u64,
    /// `QueryPerformanceFrequency`.
    pub qpc_frequency: u64,
    /// Render periods whose event came after the endpoint buffer had run
    /// empty (padding 0 when the event arrived): an underrun.
    pub render_glitches: u64,
    /// Capture packets flagged `AUDCLNT_BUFFERFLAGS_DATA_DISCONTINUITY`.
    pub capture_glitches: u64,
    /// `IAudioClient::GetStreamLatency` of the two streams, in 100 ns units.
    pub reported_latency_hns: (i64, i64),
}

/// The analysis of one run.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// Shared or exclusive.
    pub mode: ShareMode,
    /// The frames the capture lags the render by, if it repeats it at all.
    pub lag_frames: Option<usize>,
    /// Rendered frames that did not come back at the lag, and the first.
    pub mismatches: (usize, Option<usize>),
    /// Frames rendered.
    pub rendered_frames: usize,
    /// Render underruns and capture discontinuities.
    pub glitches: (u64, u64),
    /// The KS position test on each stream's reads.
    pub ks_render: KsPositionReport,
    /// See `ks_render`.
    pub ks_capture: KsPositionReport,
    /// The sample rate, for the latency in ms.
    pub sample_rate: u32,
    /// The streams' reported latencies, in 100 ns units.
    pub reported_latency_hns: (i64, i64),
}

/// Analyses a run as the emulator's main job analyses its session.
#[must_use]
pub fn analyse(run: &LoopbackRun) -> CheckReport {
    let block = run.format.block_align() as usize;
    // The emulator main job's bound (cli/run.rs): four capture buffers plus
    // 100 ms at 48 kHz.
    let max_lag = usize::try_from(run.capture_buffer_bytes).unwrap_or(0) / block.max(1) * 4 + 4800;
    let lag_frames = find_alignment(&run.rendered, &run.captured, block, max_lag);
    let rendered_frames = run.rendered.len() / block.max(1);
    let mismatches = lag_frames.map_or((rendered_frames, Some(0)), |lag| {
        mismatched_frames(&run.rendered, &run.captured, block, lag)
    });
    let rate = run.format.sample_rate();
    let ks = |reads: &[PositionRead], start| {
        ks_position_check(
            reads,
            start,
            run.qpc_frequency,
            rate,
            run.format.block_align(),
        )
    };
    CheckReport {
        mode: run.mode,
        lag_frames,
        mismatches,
        rendered_frames,
        glitches: (run.render_glitches, run.capture_glitches),
        ks_render: ks(&run.render_reads, run.render_start_qpc),
        ks_capture: ks(&run.capture_reads, run.capture_start_qpc),
        sample_rate: rate,
        reported_latency_hns: run.reported_latency_hns,
    }
}

impl CheckReport {
    /// Every rendered frame came back unchanged.
    #[must_use]
    pub const fn bit_exact(&self) -> bool {
        self.lag_frames.is_some() && self.mismatches.0 == 0
    }

    /// Whether the run passed. Shared mode goes through the audio engine's
    /// mixer and whatever effects the endpoints have, so bit-exactness is
    /// required in exclusive mode only; glitches and the position test
    /// count in both.
    #[must_use]
    pub fn passed(&self) -> bool {
        (self.bit_exact() || self.mode == ShareMode::Shared)
            && self.lag_frames.is_some()
            && self.glitches == (0, 0)
            && self.ks_render.passed()
            && self.ks_capture.passed()
    }

    /// The report, with the emulator main job's labels.
    #[must_use]
    #[allow(clippy::cast_precision_loss, reason = "report")]
    pub fn lines(&self) -> Vec<String> {
        let mode = self.mode.name();
        let lag = self.lag_frames.unwrap_or(0);
        let lag_ms = lag as f64 * 1000.0 / f64::from(self.sample_rate.max(1));
        let (render_hns, capture_hns) = self.reported_latency_hns;
        let (mismatches, first_bad) = self.mismatches;
        vec![
            format!(
                "latency          : {mode:<9} capture {} behind render; reported {:.3} ms render + {:.3} ms capture",
                if self.lag_frames.is_some() {
                    format!("{lag} frames ({lag_ms:.3} ms)")
                } else {
                    "NOT FOUND (the capture never repeats the render data)".to_owned()
                },
                render_hns as f64 / 10_000.0,
                capture_hns as f64 / 10_000.0
            ),
            format!(
                "glitches         : {mode:<9} render {}, capture {}",
                self.glitches.0, self.glitches.1
            ),
            format!(
                "bit-exact        : {mode:<9} {} ({} of {} frames differ{}){}",
                if self.bit_exact() { "yes" } else { "NO" },
                mismatches,
                self.rendered_frames,
                first_bad.map_or_else(String::new, |f| format!(", first at frame {f}")),
                if self.mode == ShareMode::Shared && !self.bit_exact() {
                    " (shared mode mixes through the audio engine: not required)"
                } else {
                    ""
                }
            ),
            format!(
                "ks position      : {mode:<9} render   {}",
                self.ks_render.summary()
            ),
            format!(
                "ks position      : {mode:<9} capture  {}",
                self.ks_capture.summary()
            ),
            format!(
                "verdict          : {mode:<9} {}",
                if self.passed() { "PASS" } else { "FAIL" }
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wavert_analysis::position::steady_reads;
    use wavert_analysis::signal::test_signal;
    use wavert_core::format::SampleType;

    const QPC_HZ: u64 = 10_000_000;

    fn format() -> AudioFormat {
        AudioFormat::extensible(SampleType::Pcm, 2, 48_000, 16, 16).expect("a valid format")
    }

    /// Reads 10 ms apart of a clock at `speed` times nominal.
    fn reads(speed: f64) -> Vec<PositionRead> {
        steady_reads(QPC_HZ, 48_000, 4, speed, 150)
    }

    /// A perfect cable: the capture is the render 480 frames (10 ms) late.
    fn perfect(mode: ShareMode) -> LoopbackRun {
        let format = format();
        let rendered = test_signal(&format, 1.0);
        let mut captured = vec![0; 480 * 4];
        captured.extend_from_slice(&rendered);
        LoopbackRun {
            mode,
            format,
            rendered,
            captured,
            capture_buffer_bytes: 1920 * 2,
            render_reads: reads(1.0),
            capture_reads: reads(1.0),
            render_start_qpc: 0,
            capture_start_qpc: 0,
            qpc_frequency: QPC_HZ,
            render_glitches: 0,
            capture_glitches: 0,
            reported_latency_hns: (100_000, 100_000),
        }
    }

    #[test]
    fn a_perfect_cable_passes_and_says_so() {
        let report = analyse(&perfect(ShareMode::Exclusive));
        assert_eq!(report.lag_frames, Some(480));
        assert!(
            report.bit_exact() && report.passed(),
            "{:#?}",
            report.lines()
        );
        let lines = report.lines();
        assert!(lines[0].contains("480 frames (10.000 ms)"), "{}", lines[0]);
        assert!(lines[2].contains("bit-exact        : exclusive yes (0 of 48000"));
        assert!(lines[3].starts_with("ks position      : exclusive render   pass"));
        assert!(lines[5].ends_with("PASS"));
    }

    #[test]
    fn a_changed_sample_fails_exclusive_but_not_shared() {
        let mut run = perfect(ShareMode::Exclusive);
        run.captured[(480 + 1000) * 4] ^= 0x40;
        let report = analyse(&run);
        assert_eq!(report.mismatches, (1, Some(1000)));
        assert!(!report.passed());
        assert!(report.lines()[5].ends_with("FAIL"));
        run.mode = ShareMode::Shared;
        let shared = analyse(&run);
        assert!(shared.passed(), "{:#?}", shared.lines());
        assert!(shared.lines()[2].contains("not required"));
    }

    #[test]
    fn glitches_a_fast_clock_and_a_silent_capture_each_fail() {
        let mut glitched = perfect(ShareMode::Exclusive);
        glitched.capture_glitches = 2;
        assert!(!analyse(&glitched).passed());

        let mut fast = perfect(ShareMode::Exclusive);
        fast.render_reads = reads(1.02);
        let report = analyse(&fast);
        assert!(!report.passed());
        assert!(
            report.lines()[3].contains("FAIL: sample rate"),
            "{}",
            report.lines()[3]
        );

        let mut silent = perfect(ShareMode::Shared);
        silent.captured = vec![0; silent.captured.len()];
        let report = analyse(&silent);
        assert_eq!(report.lag_frames, None);
        assert!(!report.passed());
        assert!(report.lines()[0].contains("NOT FOUND"));
    }
}
