//! A whole loopback session: play a signal through the render endpoint in
//! event-driven mode while recording the capture endpoint.

use std::cell::Cell;
use std::sync::Arc;

use portcls_sys::{IMiniportWaveRT, KSSTATE_RUN, PCFILTER_DESCRIPTOR};
use wavert_com::ComPtr;
use wavert_core::format::AudioFormat;

use crate::engine::{
    negotiate_format, streaming_pin, EngineError, FormatRequest, PositionSample, Stream,
    StreamStats,
};
use crate::machine::{Machine, QPC_PER_MS};
use crate::timing::{notification_lateness, Lateness, StreamClock};

/// How to run a loopback session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopbackConfig {
    /// Requested format.
    pub format: FormatRequest,
    /// Engine period (one packet) in milliseconds.
    pub period_ms: u32,
    /// Notifications per buffer (1 or 2).
    pub notification_count: u32,
    /// How often the engine wakes to read positions, in QPC ticks.
    pub poll_qpc: u64,
    /// Render packet mode: the signal's last packet goes out with the end
    /// of stream flag, and the capture after it must be silence (the
    /// buffer still holds older packets, and the last one stale bytes
    /// after its valid length).
    pub end_of_stream: bool,
}

impl Default for LoopbackConfig {
    fn default() -> Self {
        Self {
            format: FormatRequest::default(),
            period_ms: 20,
            notification_count: 2,
            poll_qpc: QPC_PER_MS,
            end_of_stream: false,
        }
    }
}

/// What a loopback session produced.
#[derive(Debug)]
pub struct LoopbackResult {
    /// The negotiated format.
    pub format: AudioFormat,
    /// Granted render buffer bytes.
    pub render_buffer: u32,
    /// Granted capture buffer bytes.
    pub capture_buffer: u32,
    /// Pages of RAM in use at the peak.
    pub peak_pages: usize,
    /// Render counters.
    pub render: StreamStats,
    /// Capture counters.
    pub capture: StreamStats,
    /// Which side streamed in packet mode.
    pub packet_mode: PacketModeUse,
    /// Render linear byte at which the end of stream was set, if it was.
    pub end_of_stream_at: Option<u64>,
    /// Everything captured, in order.
    pub captured: Vec<u8>,
    /// Physical page addresses of the render buffer, in buffer order.
    pub render_pages: Vec<u64>,
    /// Physical page addresses of the capture buffer, in buffer order.
    pub capture_pages: Vec<u64>,
    /// Render position reads.
    pub render_trace: Vec<PositionSample>,
    /// QPC at which render entered RUN.
    pub render_run_qpc: u64,
    /// Capture position reads.
    pub capture_trace: Vec<PositionSample>,
    /// QPC at which capture entered RUN.
    pub capture_run_qpc: u64,
    /// Hardware latency the render stream reported (FIFO, chipset and
    /// codec delay), in milliseconds.
    pub reported_latency_ms: f64,
    /// The same in whole frames (rounded down): where the capture should
    /// repeat the render data.
    pub reported_latency_frames: u64,
    /// The render stream's ideal clock.
    pub render_clock: StreamClock,
    /// The QPC of each render notification.
    pub render_signals: Vec<u64>,
    /// The capture stream's ideal clock.
    pub capture_clock: StreamClock,
    /// The QPC of each capture notification.
    pub capture_signals: Vec<u64>,
}

impl LoopbackResult {
    /// A result with nothing in it (48 kHz 16-bit stereo), for tests that
    /// fill in the parts they look at.
    #[cfg(test)]
    pub(crate) fn empty() -> Self {
        let clock = StreamClock {
            run_qpc: 0,
            rate: 48_000,
            block_align: 4,
            packet_frames: 1,
        };
        Self {
            format: wavert_core::format::AudioFormat::extensible(
                wavert_core::format::SampleType::Pcm,
                2,
                48_000,
                16,
                16,
            )
            .unwrap_or_else(|_| unreachable!("48 kHz 16-bit stereo is a format")),
            render_buffer: 0,
            capture_buffer: 0,
            peak_pages: 0,
            render: StreamStats::default(),
            capture: StreamStats::default(),
            packet_mode: PacketModeUse::default(),
            end_of_stream_at: None,
            captured: Vec::new(),
            render_pages: Vec::new(),
            capture_pages: Vec::new(),
            render_trace: Vec::new(),
            render_run_qpc: 0,
            capture_trace: Vec::new(),
            capture_run_qpc: 0,
            reported_latency_ms: 0.0,
            reported_latency_frames: 0,
            render_clock: clock,
            render_signals: Vec::new(),
            capture_clock: clock,
            capture_signals: Vec::new(),
        }
    }

    /// The render stream's start after the capture's, in QPC ticks
    /// (negative: render started first).
    #[must_use]
    pub fn start_offset_ticks(&self) -> i128 {
        i128::from(self.render_run_qpc) - i128::from(self.capture_run_qpc)
    }

    /// The cable's own delay, in frames, that a capture repeating the render
    /// `lag` frames late means: the lag less the start offset (a capture that
    /// entered RUN first holds silence for as long as the render was not yet
    /// playing).
    #[must_use]
    pub fn delay_frames(&self, lag: u64) -> f64 {
        #[allow(
            clippy::cast_precision_loss,
            reason = "a report figure: offsets are far below 2^52 ticks"
        )]
        let offset = self.start_offset_ticks() as f64 * f64::from(self.format.sample_rate())
            / crate::machine::QPC_FREQUENCY as f64;
        #[allow(clippy::cast_precision_loss, reason = "a frame count far below 2^52")]
        let lag = lag as f64;
        lag - offset
    }

    /// Whether a capture `lag` frames behind the render is the reported
    /// latency, within one frame, once the start offset is taken off (exact
    /// integer arithmetic: |(lag - reported) x f - offset x rate| <= f).
    #[must_use]
    pub fn lag_is_reported_latency(&self, lag: u64) -> bool {
        let f = i128::from(crate::machine::QPC_FREQUENCY);
        let extra = i128::from(lag) - i128::from(self.reported_latency_frames);
        let offset = self.start_offset_ticks() * i128::from(self.format.sample_rate());
        (extra * f - offset).abs() <= f
    }

    /// How late the render events came.
    #[must_use]
    pub fn render_lateness(&self) -> Lateness {
        notification_lateness(&self.render_signals, &self.render_clock)
    }

    /// How late the capture events came.
    #[must_use]
    pub fn capture_lateness(&self) -> Lateness {
        notification_lateness(&self.capture_signals, &self.capture_clock)
    }
}

/// Which side of a session streamed in packet mode
/// ([`Stream::uses_packets`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketModeUse {
    /// Render: `GetPacketCount`, `SetWritePacket`, presentation position.
    pub render: bool,
    /// Capture: `GetReadPacket`.
    pub capture: bool,
}

/// The wave filter to stream through.
#[derive(Clone, Copy)]
pub struct WaveFilter<'a> {
    /// The wave miniport.
    pub miniport: &'a ComPtr<IMiniportWaveRT>,
    /// Its descriptor.
    pub description: &'static PCFILTER_DESCRIPTOR,
}

/// Plays a signal through the render pin and records the capture pin.
///
/// The signal (whole frames of the negotiated format) comes from
/// `make_signal` once the format is known; recording goes on until the
/// signal plus two buffers have come back. `progress` gets the fraction
/// done now and then.
///
/// # Errors
///
/// The first engine error.
#[allow(clippy::too_many_lines, reason = "one sequence, read top to bottom")]
pub fn run_loopback(
    machine: &Arc<Machine>,
    render_filter: WaveFilter<'_>,
    capture_filter: WaveFilter<'_>,
    config: &LoopbackConfig,
    make_signal: &mut dyn FnMut(&AudioFormat) -> Vec<u8>,
    progress: &mut dyn FnMut(f64),
) -> Result<LoopbackResult, EngineError> {
    let no_pin = |what| EngineError::Protocol(format!("no {what} streaming pin"));
    let render_pin =
        streaming_pin(render_filter.description, false).ok_or_else(|| no_pin("render"))?;
    let capture_pin =
        streaming_pin(capture_filter.description, true).ok_or_else(|| no_pin("capture"))?;
    let (format, render_bytes) = negotiate_format(
        render_filter.miniport,
        render_filter.description,
        render_pin,
        &config.format,
    )?;
    let (_, capture_bytes) = negotiate_format(
        capture_filter.miniport,
        capture_filter.description,
        capture_pin,
        &config.format,
    )?;
    let signal = make_signal(&format);
    let block = format.block_align();
    let period_frames = u64::from(format.sample_rate()) * u64::from(config.period_ms) / 1000;
    let requested = u32::try_from(period_frames * u64::from(block) * 2).unwrap_or(u32::MAX);

    let mut capture = Stream::open(
        machine,
        capture_filter.miniport,
        capture_pin,
        true,
        &capture_bytes,
    )?;
    let mut render = Stream::open(
        machine,
        render_filter.miniport,
        render_pin,
        false,
        &render_bytes,
    )?;
    let render_buffer = render.allocate(requested, Some(config.notification_count))?;
    let capture_buffer = capture.allocate(requested, Some(config.notification_count))?;
    let packet_mode = PacketModeUse {
        render: render.uses_packets(),
        capture: capture.uses_packets(),
    };
    if config.end_of_stream && !packet_mode.render {
        return Err(EngineError::Protocol(
            "an end of stream needs render packet mode".to_owned(),
        ));
    }
    render.register_event()?;
    capture.register_event()?;
    let latency = render.hw_latency()?;
    let reported_latency_ms = f64::from(latency.FifoSize) * 1000.0
        / f64::from(format.bytes_per_second().max(1))
        + f64::from(latency.ChipsetDelay + latency.CodecDelay) / 10_000.0;
    let reported_latency_frames = u64::from(latency.FifoSize) / u64::from(block.max(1))
        + (u64::from(latency.ChipsetDelay) + u64::from(latency.CodecDelay))
            * u64::from(format.sample_rate())
            / 10_000_000;

    let source_at = Cell::new(0usize);
    let mut source = |out: &mut [u8]| {
        for byte in out.iter_mut() {
            *byte = signal.get(source_at.get()).copied().unwrap_or(0);
            source_at.set(source_at.get() + 1);
        }
    };
    render.prefill(&mut source)?;
    let mut end_of_stream_at = None;
    capture.set_state(KSSTATE_RUN)?;
    render.set_state(KSSTATE_RUN)?;

    let target = signal.len() as u64 + u64::from(render_buffer) * 2;
    let mut captured = Vec::with_capacity(usize::try_from(target).unwrap_or(0));
    let mut last_report = 0.0;
    // A stuck device must not hang the session: give up after twice the time.
    let deadline = machine.qpc()
        + 2 * target * crate::machine::QPC_FREQUENCY / u64::from(format.bytes_per_second().max(1))
        + crate::machine::QPC_FREQUENCY;
    while (captured.len() as u64) < target {
        if machine.qpc() > deadline {
            return Err(EngineError::Protocol(format!(
                "capture stalled: {} of {target} bytes after the deadline",
                captured.len()
            )));
        }
        machine.advance(config.poll_qpc);
        let play = render.position()?;
        for _ in 0..render.take_notifications() {
            let play = render.position()?;
            let left = signal.len().saturating_sub(source_at.get());
            let last = u32::try_from(left)
                .ok()
                .filter(|&left| left <= render.packet_bytes());
            match last {
                Some(valid) if config.end_of_stream && end_of_stream_at.is_none() => {
                    end_of_stream_at = Some(signal.len() as u64);
                    render.end_stream(play, valid, &mut source)?;
                }
                _ => render.write_packet(play, &mut source)?,
            }
        }
        let recorded = capture.position()?;
        for _ in 0..capture.take_notifications() {
            capture.read_packet(recorded, &mut captured)?;
        }
        let _ = play;
        #[allow(
            clippy::cast_precision_loss,
            reason = "a progress fraction: 52 bits of mantissa are plenty"
        )]
        let done = captured.len() as f64 / target as f64;
        if done - last_report >= 0.01 {
            progress(done.min(1.0));
            last_report = done;
        }
    }
    let peak_pages = machine.memory.peak_pages_in_use();
    let render_pages = render.buffer_pages();
    let capture_pages = capture.buffer_pages();
    let (render_clock, render_signals) = (render.clock(), render.signal_times());
    let (capture_clock, capture_signals) = (capture.clock(), capture.signal_times());
    let render_trace = std::mem::take(&mut render.trace);
    let render_run_qpc = render.run_qpc;
    let capture_trace = std::mem::take(&mut capture.trace);
    let capture_run_qpc = capture.run_qpc;
    let render_stats = render.close()?;
    let capture_stats = capture.close()?;
    if let Some(end) = end_of_stream_at {
        // At the reported latency, capture byte `end` is render byte `end`.
        let at = end + reported_latency_frames * u64::from(block);
        let tail = captured
            .get(usize::try_from(at).unwrap_or(usize::MAX)..)
            .unwrap_or_default();
        if let Some((offset, byte)) = tail.iter().enumerate().find(|(_, &b)| b != 0) {
            return Err(EngineError::Protocol(format!(
                "capture after the end of stream (render byte {end}) is not silence: byte {} \
                 is {byte:#04x}",
                at + offset as u64
            )));
        }
    }
    Ok(LoopbackResult {
        format,
        render_buffer,
        capture_buffer,
        peak_pages,
        render: render_stats,
        capture: capture_stats,
        packet_mode,
        end_of_stream_at,
        captured,
        render_pages,
        capture_pages,
        render_trace,
        render_run_qpc,
        capture_trace,
        capture_run_qpc,
        reported_latency_ms,
        reported_latency_frames,
        render_clock,
        render_signals,
        capture_clock,
        capture_signals,
    })
}
