//! The report of a session, line by line, and its verdict.

use wavert_core::format::{AudioFormat, SampleType};
use wavert_emulator::engine::StreamStats;
use wavert_emulator::hlk::methods::MethodReport;
use wavert_emulator::hlk::Finding;
use wavert_emulator::memory::{HIGH_RAM_BASE, PAGE_SIZE};
use wavert_emulator::personality::summarise;
use wavert_emulator::signal;
use wavert_emulator::timing::position_error;
use wavert_miniport::DmaMode;

use super::run::{
    CableCheck, ConversionCheck, DriverCounters, MeterCheck, Outcome, VirtualOutcome,
};

impl Outcome {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        match self {
            Self::Virtual(outcome) => outcome.passed(),
            Self::Card(outcome) => {
                outcome.session.passed() && outcome.hlk.iter().all(|(_, r)| r.passed())
            }
        }
    }

    /// The report, one line per item.
    pub fn report_lines(&self) -> Vec<String> {
        match self {
            Self::Virtual(outcome) => outcome.report_lines(),
            Self::Card(outcome) => {
                let report = &outcome.session;
                let mut lines = report.lines();
                lines.push(format!(
                    "buffer pages     : {}",
                    describe_pages(&report.buffer_pages)
                ));
                for (endpoint, hlk) in &outcome.hlk {
                    lines.extend(hlk_lines(endpoint, &hlk.methods));
                    lines.push(format!(
                        "ks topology      : {endpoint:<16} {}",
                        topology_text(&hlk.ks_topology)
                    ));
                    lines.push(format!(
                        "ks formats       : {endpoint:<16} {}",
                        topology_text(&hlk.ks_formats)
                    ));
                    if !hlk.violations.is_empty() {
                        lines.push(format!(
                            "hlk violations   : {endpoint:<8} {}",
                            hlk.violations.join("; ")
                        ));
                    }
                }
                lines
            }
        }
    }
}

/// Pages as physical frame numbers, and how many steps between them are
/// to the adjacent page.
/// What a late engine thread cost (real time): render wakes that found the
/// engine caught up already, and position reads a buffer or more apart
/// whose missed wraps the nominal clock supplied. Empty when neither
/// happened.
fn late_engine(render: &StreamStats, capture: &StreamStats) -> String {
    let coalesced = render.coalesced;
    let laps = render.laps_missed + capture.laps_missed;
    if coalesced == 0 && laps == 0 {
        return String::new();
    }
    format!(
        " (engine thread late: {coalesced} render notifications coalesced into earlier wakes, \
         {laps} buffer wraps between two position reads counted from the nominal clock)"
    )
}

fn describe_pages(pages: &[u64]) -> String {
    let page = PAGE_SIZE as u64;
    let frames: Vec<String> = pages.iter().map(|p| format!("{:#x}", p / page)).collect();
    let contiguous = pages.windows(2).filter(|w| w[1] == w[0] + page).count();
    format!(
        "frames [{}], {} of {} page steps contiguous",
        frames.join(", "),
        contiguous,
        pages.len().saturating_sub(1)
    )
}

/// How many of `pages` are at or above 4 GiB.
fn above_4g(pages: &[u64]) -> usize {
    pages.iter().filter(|&&p| p >= HIGH_RAM_BASE).count()
}

/// `pass (N rules)` or the failed rules.
fn topology_text(findings: &[Finding]) -> String {
    let failed: Vec<String> = findings
        .iter()
        .filter_map(|f| f.outcome.as_ref().err().map(|e| format!("{}: {e}", f.rule)))
        .collect();
    if failed.is_empty() && !findings.is_empty() {
        format!("pass ({} rules)", findings.len())
    } else {
        format!("FAIL: {}", failed.join("; "))
    }
}

/// One line per HLK method on one endpoint.
fn hlk_lines(endpoint: &str, methods: &[MethodReport]) -> Vec<String> {
    methods
        .iter()
        .map(|m| {
            format!(
                "hlk method       : {endpoint:<8} {:<38} {}",
                m.method.name(),
                m.summary()
            )
        })
        .collect()
}

impl VirtualOutcome {
    /// Whether the capture repeats the render data at the reported latency.
    /// Whether the capture repeats the render at the reported latency
    /// (within one frame, after the start offset of the two RUNs).
    fn lag_as_reported(&self) -> bool {
        self.lag
            .is_some_and(|l| self.session.lag_is_reported_latency(l as u64))
    }

    /// Whether every rendered frame came back, unchanged, at the reported
    /// latency.
    fn bit_exact(&self) -> bool {
        self.lag_as_reported() && self.mismatches.0 == 0
    }

    /// The capture pin ran the render's format.
    fn same_format(&self) -> bool {
        self.session.capture_format == self.session.format
    }

    fn passed(&self) -> bool {
        (if self.same_format() {
            self.bit_exact()
        } else {
            self.cables.first().is_some_and(CableCheck::passed)
        }) && self.power_cycles.len() == self.power_cycles_asked as usize
            && self.meters.as_ref().is_none_or(MeterCheck::passed)
            && self.cables.iter().all(CableCheck::passed)
            && self.session.render.glitches == 0
            && self.session.capture.glitches == 0
            && self.ks_render.passed()
            && self.ks_capture.passed()
            && self
                .hlk
                .iter()
                .flat_map(|(_, methods)| methods)
                .all(|m| !m.failed())
            && self
                .ks_topology
                .iter()
                .chain(&self.ks_formats)
                .flat_map(|(_, findings)| findings)
                .all(|f| f.outcome.is_ok())
            && self
                .ks_topology
                .iter()
                .chain(&self.ks_formats)
                .all(|(_, findings)| !findings.is_empty())
            && self.leaked_pages == 0
            && self.live_objects == 0
            && self.running_timers == 0
            && self.violations.is_empty()
    }

    #[allow(clippy::too_many_lines, reason = "the report, in order")]
    fn report_lines(&self) -> Vec<String> {
        let session = &self.session;
        let format = session.format;
        let block = format.block_align() as usize;
        let kind = match format.sample_type() {
            SampleType::Float => "float",
            SampleType::Pcm => "PCM",
        };
        let frames_lag = self.lag.unwrap_or(0);
        #[allow(clippy::cast_precision_loss, reason = "report")]
        let lag_ms = frames_lag as f64 * 1000.0 / f64::from(format.sample_rate());
        let reported_frames = session.reported_latency_frames;
        let (mismatches, first_bad) = self.mismatches;

        let mut lines = vec![
            format!("build            : {}", self.build),
            format!(
                "device           : virtual loopback cable (wavert-miniport, {} DMA) through the emulated PortCls, {} clock",
                match self.dma {
                    DmaMode::Looping => "looping",
                    DmaMode::Refill => "refill",
                },
                if self.real_time { "real-time" } else { "virtual" }
            ),
            format!(
                "port             : {} personality; {}",
                self.personality,
                summarise(&self.orders)
            ),
            format!(
                "subdevices       : {}",
                self.registrations
                    .subdevices
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "cables           : {} streamed at once",
                self.cables.len()
            ),
        ];
        lines.extend(self.cables.iter().map(|cable| {
            let [wave_render, topology_render, wave_capture, topology_capture] = cable.subdevices;
            format!(
                "cable {:<2}         : {} - {wave_render} -> {wave_capture} (topology {topology_render}, {topology_capture}): {} frames, lag {} frames{}, {} mismatched: {}",
                cable.number,
                cable.name.as_deref().map_or_else(|| "(INF name)".to_owned(), |n| format!("\"{n}\"")),
                cable.frames,
                cable.lag.map_or_else(|| "none".to_owned(), |l| l.to_string()),
                if cable.lag_as_reported { " as reported" } else { " NOT as reported" },
                cable.mismatches.0,
                match (cable.passed(), cable.conversion.is_some(), self.volume.is_some()) {
                    (true, true, _) => "the tone came through the conversion",
                    (true, false, false) => "bit-exact",
                    (true, false, true) => "as rendered at the set volume",
                    (false, ..) => "FAIL",
                },
            )
        }));
        lines.extend([
            format!(
                "connections      : {}",
                self.registrations
                    .connections
                    .iter()
                    .map(|c| format!("{} pin {} -> {} pin {}", c.from, c.from_pin, c.to, c.to_pin))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            format!(
                "format           : {} Hz, {} bit ({} in {}) {kind}, {} ch, {} bytes/frame",
                format.sample_rate(),
                format.valid_bits(),
                format.valid_bits(),
                format.container_bits(),
                format.channels(),
                block
            ),
            format!(
                "input            : {}",
                self.input
                    .as_deref()
                    .unwrap_or("the generated test signal")
            ),
            format!(
                "buffers          : render {} bytes ({} pages), capture {} bytes ({} pages), {} notifications each, peak {} pages in use",
                session.render_buffer,
                (session.render_buffer as usize).div_ceil(PAGE_SIZE),
                session.capture_buffer,
                (session.capture_buffer as usize).div_ceil(PAGE_SIZE),
                self.notifications,
                session.peak_pages
            ),
            format!(
                "memory           : {}; buffer pages above 4 GiB: render {} of {}, capture {} of {}",
                self.memory,
                above_4g(&session.render_pages),
                session.render_pages.len(),
                above_4g(&session.capture_pages),
                session.capture_pages.len()
            ),
            format!("render pages     : {}", describe_pages(&session.render_pages)),
            format!("capture pages    : {}", describe_pages(&session.capture_pages)),
            format!(
                "notifications    : render {}, capture {}",
                session.render.notifications, session.capture.notifications
            ),
            format!(
                "packets          : render {}, capture {} (packet mode: render {}, capture {}; {} packet answers checked, {} late writes, {} dropped reads)",
                session.render.packets,
                session.capture.packets,
                if session.packet_mode.render { "yes" } else { "no" },
                if session.packet_mode.capture { "yes" } else { "no" },
                session.render.packet_calls + session.capture.packet_calls,
                session.render.late_writes,
                session.capture.dropped_packets
            ),
            format!(
                "glitches         : render {}, capture {}{}",
                session.render.glitches,
                session.capture.glitches,
                late_engine(&session.render, &session.capture)
            ),
        ]);
        match &self.counters {
            DriverCounters::Image {
                kernel: c,
                verifier_violations,
            } => {
                lines.push(format!(
                    "kernel           : {} pool allocations, {} frees, {} timer callbacks, {} DPCs, {} events signalled, {} spinlock acquisitions, {} debug prints",
                    c.pool_allocations,
                    c.pool_frees,
                    c.timer_callbacks,
                    c.dpcs_run,
                    c.events_signalled,
                    c.spinlock_acquisitions,
                    c.debug_prints
                ));
                lines.push(format!(
                    "driver verifier  : {verifier_violations} violation(s) by the image (IRQL, pool, spinlock, timer, DPC, unload rules)"
                ));
            }
            DriverCounters::Host(stats) => lines.push(format!(
                "cable            : {} bytes copied, {} bytes of silence, {} skipped, {} DMA errors, {} events signalled",
                stats.copied_bytes,
                stats.silence_bytes,
                stats.skipped_bytes,
                stats.dma_errors,
                stats.signals
            )),
        }
        #[allow(clippy::cast_precision_loss, reason = "report")]
        let offset_us = session.start_offset_ticks() as f64 / 10.0;
        lines.push(format!(
            "latency          : capture {frames_lag} frames ({lag_ms:.3} ms) behind render; render entered RUN {offset_us:.1} us after capture, so the cable's delay is {:.2} frames; reported {:.3} ms ({reported_frames} frames)",
            session.delay_frames(frames_lag as u64),
            session.reported_latency_ms
        ));
        if let Some(priority) = &session.engine_priority {
            lines.push(format!("engine thread    : {priority}"));
        }
        lines.push(format!(
            "event lateness   : render  {}",
            session.render_lateness().summary()
        ));
        lines.push(format!(
            "event lateness   : capture {}",
            session.capture_lateness().summary()
        ));
        for (side, trace, clock) in [
            ("render ", &session.render_trace, &session.render_clock),
            ("capture", &session.capture_trace, &session.capture_clock),
        ] {
            let errors = position_error(trace, clock);
            let (low, high) = errors
                .iter()
                .fold((0, 0), |(lo, hi), &(_, e)| (e.min(lo), e.max(hi)));
            lines.push(format!(
                "position error   : {side} {low} .. +{high} frames against the ideal clock over {} reads",
                errors.len()
            ));
        }
        if let Some(volume) = &self.volume {
            lines.push(format!(
                "volume           : render {:.1} dB asked, node at {:.1} dB (level {}): the capture must be the render x {:.6}, each sample within the format's rounding",
                volume.asked_db,
                f64::from(volume.level) / 65_536.0,
                volume.level,
                volume.gain
            ));
        }
        if let Some(meters) = &self.meters {
            lines.push(meter_line(meters));
        }
        for conversion in self.cables.iter().filter_map(|c| c.conversion.as_ref()) {
            lines.push(conversion_line(conversion));
        }
        // Bytes are not compared across a conversion: the line above is
        // the check then.
        if self.same_format() {
            lines.push(format!(
                "{}: {} ({} of {} frames differ{}{})",
                if self.volume.is_some() {
                    "as scaled       "
                } else {
                    "bit-exact       "
                },
                if self.bit_exact() { "yes" } else { "NO" },
                mismatches,
                self.rendered_frames,
                first_bad.map_or_else(String::new, |f| format!(", first at frame {f}")),
                if self.lag.is_some() && !self.lag_as_reported() {
                    ", measured latency differs from the reported one"
                } else {
                    ""
                }
            ));
        }
        if self.power_cycles_asked != 0 {
            let phases: Vec<String> = self
                .power_cycles
                .iter()
                .map(|c| c.render_phase.to_string())
                .collect();
            let held_ms: u64 = self
                .power_cycles
                .iter()
                .map(|c| (c.up_qpc - c.down_qpc) / 10_000)
                .sum();
            lines.push(format!(
                "power cycles     : {} of {} D0 -> D3 -> D0 during playback ({held_ms} ms out of D0 \
                 in all; render buffer phases {}); out of D0 every poll saw both positions held and \
                 no event, and the capture stayed bit-exact across every resume (the position \
                 error above counts the time out of D0)",
                self.power_cycles.len(),
                self.power_cycles_asked,
                phases.join(", ")
            ));
        }
        for (endpoint, methods) in &self.hlk {
            lines.extend(hlk_lines(endpoint, methods));
        }
        lines.push(format!(
            "ks position      : session render   {}",
            self.ks_render.summary()
        ));
        lines.push(format!(
            "ks position      : session capture  {}",
            self.ks_capture.summary()
        ));
        for (filter, findings) in &self.ks_topology {
            lines.push(format!(
                "ks topology      : {filter:<16} {}",
                topology_text(findings)
            ));
        }
        for (filter, findings) in &self.ks_formats {
            lines.push(format!(
                "ks formats       : {filter:<16} {}",
                topology_text(findings)
            ));
        }
        lines.push(format!(
            "leaks            : {} pages, {} MDLs, {} port objects alive, {} timers running",
            self.leaked_pages, self.live_mdls, self.live_objects, self.running_timers
        ));
        for line in &self.driver_log {
            lines.push(format!("driver log       : {line}"));
        }
        if self.hlk_log_lines > 0 {
            lines.push(format!(
                "driver log       : ({} more lines during the HLK methods, not shown)",
                self.hlk_log_lines
            ));
        }
        lines.push(format!(
            "violations       : {}",
            if self.violations.is_empty() {
                "none".to_owned()
            } else {
                self.violations.join("; ")
            }
        ));
        lines.push(format!(
            "output           : {}, {}",
            self.wav_path.display(),
            self.plot_path.display()
        ));
        lines
    }
}

/// `conversion       : 48000 Hz 16-bit 2 ch -> 44100 Hz float 6 ch: tone at
/// -6.02 dBFS (-6.02 expected), THD+N 96.1 dB (at least 86.3), 997.0000 Hz
/// (+0.01 ppm): passed`.
fn conversion_line(c: &ConversionCheck) -> String {
    let side = |f: &AudioFormat| {
        format!(
            "{} Hz {}-bit{} {} ch",
            f.sample_rate(),
            f.valid_bits(),
            if f.sample_type() == SampleType::Float {
                " float"
            } else {
                ""
            },
            f.channels()
        )
    };
    let heard = c.fit.map_or_else(
        || "no tone to fit in the capture".to_owned(),
        |f| {
            format!(
                "tone at {:.2} dBFS ({:.2} expected), THD+N {:.1} dB (at least {:.1}), {:.4} Hz ({:+.2} ppm)",
                f.level_dbfs,
                c.expected_dbfs,
                f.snr_db,
                c.min_snr_db,
                f.measured_hz,
                f.pitch_error_ppm(signal::TONE_HZ)
            )
        },
    );
    format!(
        "conversion       : {} -> {}: {heard}: {}",
        side(&c.from),
        side(&c.to),
        if c.passed() { "passed" } else { "FAILED" }
    )
}

/// A peak-meter reading in dBFS (full scale `i32::MAX`; silence as -inf).
fn meter_dbfs(value: f64) -> String {
    if value <= 0.0 {
        return "-inf".to_owned();
    }
    format!("{:.2}", 20.0 * (value / f64::from(i32::MAX)).log10())
}

/// `peak meters     : render -6.02 0.00 dBFS (played x volume -6.02
/// 0.00), capture ... over 1081 polls: passed`: the stream's channels (the
/// verdict also holds the meters' other channels to 0).
fn meter_line(m: &MeterCheck) -> String {
    let [render_channels, capture_channels] = m.format_channels;
    let levels = |values: &mut dyn Iterator<Item = f64>, channels: usize| {
        values
            .take(channels)
            .map(meter_dbfs)
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "peak meters      : render {} dBFS (played x volume {}), capture {} dBFS (captured {}), largest reading per channel over {} polls: {}",
        levels(&mut m.render.iter().map(|&v| f64::from(v)), render_channels),
        levels(&mut m.render_expected.iter().copied(), render_channels),
        levels(&mut m.capture.iter().map(|&v| f64::from(v)), capture_channels),
        levels(
            &mut m.capture_expected.iter().map(|&v| f64::from(v)),
            capture_channels
        ),
        m.polls,
        if m.passed() { "passed" } else { "FAILED" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_described_by_frame_number_and_adjacency() {
        let page = PAGE_SIZE as u64;
        assert_eq!(
            describe_pages(&[5 * page, 6 * page, 9 * page]),
            "frames [0x5, 0x6, 0x9], 1 of 2 page steps contiguous"
        );
        assert_eq!(
            describe_pages(&[]),
            "frames [], 0 of 0 page steps contiguous"
        );
    }
}
