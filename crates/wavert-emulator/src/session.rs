//! A whole loopback session: play a signal through the render endpoint in
//! event-driven mode while recording the capture endpoint.

use std::sync::Arc;

use portcls_sys::{IMiniportWaveRT, KSSTATE_RUN, PCFILTER_DESCRIPTOR};
use wavert_com::ComPtr;
use wavert_core::format::AudioFormat;

use crate::engine::{
    negotiate_format, streaming_pin, EngineError, FormatRequest, PositionSample, Stream,
    StreamStats,
};
use crate::machine::{ClockMode, Machine, QPC_PER_MS};
use crate::realtime::{Grant, ProAudioPriority};
use crate::timing::{notification_lateness, Lateness, StreamClock};

/// How to run a loopback session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopbackConfig {
    /// Requested format (of both pins, unless `capture_format` is set).
    pub format: FormatRequest,
    /// The capture pin's own format, when it differs (the cable converts).
    pub capture_format: Option<FormatRequest>,
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
            capture_format: None,
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
    /// The negotiated format (the render pin's).
    pub format: AudioFormat,
    /// The capture pin's negotiated format (`format` unless asked
    /// otherwise).
    pub capture_format: AudioFormat,
    /// The engine thread's priority in real time (`None` in virtual time).
    pub engine_priority: Option<Grant>,
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
        let format = wavert_core::format::AudioFormat::extensible(
            wavert_core::format::SampleType::Pcm,
            2,
            48_000,
            16,
            16,
        )
        .unwrap_or_else(|_| unreachable!("48 kHz 16-bit stereo is a format"));
        Self {
            engine_priority: None,
            format,
            capture_format: format,
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
pub fn run_loopback(
    machine: &Arc<Machine>,
    render_filter: WaveFilter<'_>,
    capture_filter: WaveFilter<'_>,
    config: &LoopbackConfig,
    make_signal: &mut dyn FnMut(&AudioFormat) -> Vec<u8>,
    progress: &mut dyn FnMut(f64),
) -> Result<LoopbackResult, EngineError> {
    run_loopback_with(
        machine,
        render_filter,
        capture_filter,
        config,
        make_signal,
        progress,
        &mut |_, _| Ok(()),
    )
}

/// What a session does between two polls, with the render and the capture
/// stream (e.g. a device power cycle, [`crate::power`]). Called after the
/// poll's notifications were served.
pub type BetweenPolls<'a> = dyn FnMut(&mut Stream, &mut Stream) -> Result<(), EngineError> + 'a;

/// [`run_loopback`] with `between` run after every poll.
///
/// # Errors
///
/// The first engine error, or the first error `between` returns.
pub fn run_loopback_with(
    machine: &Arc<Machine>,
    render_filter: WaveFilter<'_>,
    capture_filter: WaveFilter<'_>,
    config: &LoopbackConfig,
    make_signal: &mut dyn FnMut(&AudioFormat) -> Vec<u8>,
    progress: &mut dyn FnMut(f64),
    between: &mut BetweenPolls<'_>,
) -> Result<LoopbackResult, EngineError> {
    let session = PairSession::open(machine, render_filter, capture_filter, config, make_signal)?;
    let results = drive(
        machine,
        vec![session],
        config,
        progress,
        &mut |_, session: &mut PairSession| between(&mut session.render, &mut session.capture),
    )?;
    results
        .into_iter()
        .next()
        .ok_or_else(|| EngineError::Protocol("no loopback result".to_owned()))
}

/// [`run_loopback`] over several render/capture pairs at once (one per
/// cable).
///
/// Every pair is opened and set to RUN before time starts, then
/// each engine wake serves every pair in turn, as the audio engine serves
/// several endpoints from one clock. `make_signal(pair, format)` gives each
/// pair its own signal. The results come back in `pairs` order.
///
/// # Errors
///
/// The first engine error of any pair.
pub fn run_loopbacks(
    machine: &Arc<Machine>,
    pairs: &[(WaveFilter<'_>, WaveFilter<'_>)],
    config: &LoopbackConfig,
    make_signal: &mut dyn FnMut(usize, &AudioFormat) -> Vec<u8>,
    progress: &mut dyn FnMut(f64),
) -> Result<Vec<LoopbackResult>, EngineError> {
    run_loopbacks_with(
        machine,
        pairs,
        config,
        make_signal,
        progress,
        &mut |_, _| Ok(()),
    )
}

/// [`run_loopbacks`] with `between` run after every poll on the first pair.
///
/// `between` gets the first pair's streams: a device-wide event (a power
/// cycle) told to the engine once. A caller that changes the device's power
/// must drive one pair.
///
/// # Errors
///
/// The first engine error of any pair, or the first error `between`
/// returns.
pub fn run_loopbacks_with(
    machine: &Arc<Machine>,
    pairs: &[(WaveFilter<'_>, WaveFilter<'_>)],
    config: &LoopbackConfig,
    make_signal: &mut dyn FnMut(usize, &AudioFormat) -> Vec<u8>,
    progress: &mut dyn FnMut(f64),
    between: &mut BetweenPolls<'_>,
) -> Result<Vec<LoopbackResult>, EngineError> {
    let mut sessions = Vec::with_capacity(pairs.len());
    for (index, (render, capture)) in pairs.iter().enumerate() {
        sessions.push(PairSession::open(
            machine,
            *render,
            *capture,
            config,
            &mut |format| make_signal(index, format),
        )?);
    }
    drive(
        machine,
        sessions,
        config,
        progress,
        &mut |index, session| {
            if index == 0 {
                between(&mut session.render, &mut session.capture)
            } else {
                Ok(())
            }
        },
    )
}

/// Runs open pairs to the end: RUN, then every engine wake serves each pair
/// and calls `between` on it, until every pair has recorded its target.
fn drive(
    machine: &Arc<Machine>,
    mut sessions: Vec<PairSession>,
    config: &LoopbackConfig,
    progress: &mut dyn FnMut(f64),
    between: &mut dyn FnMut(usize, &mut PairSession) -> Result<(), EngineError>,
) -> Result<Vec<LoopbackResult>, EngineError> {
    // The engine's streaming thread at the priority Windows gives it, for
    // the session's length.
    let priority = (machine.clock_mode() == ClockMode::RealTime).then(ProAudioPriority::enter);
    for session in &mut sessions {
        session.run()?;
    }
    // A stuck device must not hang the session: give up after twice the
    // longest pair's time.
    let deadline = machine.qpc()
        + sessions
            .iter()
            .map(PairSession::time_allowed)
            .max()
            .unwrap_or(0)
        + crate::machine::QPC_FREQUENCY;
    let mut last_report = 0.0;
    while sessions.iter().any(|s| !s.done()) {
        if machine.qpc() > deadline {
            let stalled = sessions.iter().find(|s| !s.done());
            return Err(EngineError::Protocol(format!(
                "capture stalled: {} of {} bytes after the deadline",
                stalled.map_or(0, |s| s.captured.len()),
                stalled.map_or(0, |s| s.target)
            )));
        }
        machine.advance_until_timer(config.poll_qpc);
        for (index, session) in sessions.iter_mut().enumerate() {
            session.serve(config)?;
            between(index, session)?;
        }
        let done = sessions
            .iter()
            .map(PairSession::fraction_done)
            .fold(1.0, f64::min);
        if done - last_report >= 0.01 {
            progress(done.min(1.0));
            last_report = done;
        }
    }
    let engine_priority = priority.as_ref().map(|p| p.grant().clone());
    drop(priority);
    let peak_pages = machine.memory.peak_pages_in_use();
    sessions
        .into_iter()
        .map(|session| session.finish(peak_pages, engine_priority.clone()))
        .collect()
}

/// One render/capture pair of a loopback session, between its opening and
/// its close.
struct PairSession {
    format: AudioFormat,
    capture_format: AudioFormat,
    render: Stream,
    capture: Stream,
    render_buffer: u32,
    capture_buffer: u32,
    packet_mode: PacketModeUse,
    reported_latency_ms: f64,
    reported_latency_frames: u64,
    signal: Vec<u8>,
    /// The next signal byte to play.
    source_at: usize,
    end_of_stream_at: Option<u64>,
    target: u64,
    captured: Vec<u8>,
}

impl PairSession {
    /// Negotiates the format, opens both pins, allocates their buffers,
    /// registers their events and prefills the render buffer.
    fn open(
        machine: &Arc<Machine>,
        render_filter: WaveFilter<'_>,
        capture_filter: WaveFilter<'_>,
        config: &LoopbackConfig,
        make_signal: &mut dyn FnMut(&AudioFormat) -> Vec<u8>,
    ) -> Result<Self, EngineError> {
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
        let (capture_format, capture_bytes) = negotiate_format(
            capture_filter.miniport,
            capture_filter.description,
            capture_pin,
            config.capture_format.as_ref().unwrap_or(&config.format),
        )?;
        let signal = make_signal(&format);
        let block = format.block_align();
        // Both buffers hold two periods of their own format.
        let two_periods = |f: &AudioFormat| {
            let frames = u64::from(f.sample_rate()) * u64::from(config.period_ms) / 1000;
            u32::try_from(frames * u64::from(f.block_align()) * 2).unwrap_or(u32::MAX)
        };
        let requested = two_periods(&format);

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
        let capture_buffer = capture.allocate(
            two_periods(&capture_format),
            Some(config.notification_count),
        )?;
        let packet_mode = PacketModeUse {
            render: render.uses_packets(),
            capture: capture.uses_packets(),
        };
        if config.end_of_stream && capture_format != format {
            return Err(EngineError::Protocol(
                "the end-of-stream check compares bytes: both pins need one format".to_owned(),
            ));
        }
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
        // The signal and two render buffers after it, as capture bytes.
        let render_frames = (signal.len() as u64 + u64::from(render_buffer) * 2) / u64::from(block);
        let target = render_frames * u64::from(capture_format.sample_rate())
            / u64::from(format.sample_rate())
            * u64::from(capture_format.block_align());
        let mut session = Self {
            format,
            capture_format,
            render,
            capture,
            render_buffer,
            capture_buffer,
            packet_mode,
            reported_latency_ms,
            reported_latency_frames,
            signal,
            source_at: 0,
            end_of_stream_at: None,
            target,
            captured: Vec::with_capacity(usize::try_from(target).unwrap_or(0)),
        };
        let (signal, at) = (&session.signal, &mut session.source_at);
        let silence = silence_of(&session.format);
        session
            .render
            .prefill(&mut source_of(signal, at, silence))?;
        Ok(session)
    }

    /// Both pins to RUN, capture first.
    fn run(&mut self) -> Result<(), EngineError> {
        self.capture.set_state(KSSTATE_RUN)?;
        self.render.set_state(KSSTATE_RUN)
    }

    /// The longest this pair may take, in QPC ticks (twice its nominal time).
    fn time_allowed(&self) -> u64 {
        2 * self.target * crate::machine::QPC_FREQUENCY
            / u64::from(self.capture_format.bytes_per_second().max(1))
    }

    fn done(&self) -> bool {
        self.captured.len() as u64 >= self.target
    }

    #[allow(
        clippy::cast_precision_loss,
        reason = "a progress fraction: 52 bits of mantissa are plenty"
    )]
    fn fraction_done(&self) -> f64 {
        (self.captured.len() as f64 / self.target.max(1) as f64).min(1.0)
    }

    /// One engine wake: the render packets the notifications ask for, the
    /// capture packets that are ready. A finished pair keeps streaming
    /// (its pins stay in RUN until all pairs are done), recording nothing.
    fn serve(&mut self, config: &LoopbackConfig) -> Result<(), EngineError> {
        let _ = self.render.position()?;
        let signal_len = self.signal.len();
        for _ in 0..self.render.take_notifications() {
            let play = self.render.position()?;
            if self.render.caught_up(play) {
                // Signals that piled up while the engine was late: one wake.
                self.render.stats.coalesced += 1;
                continue;
            }
            let left = signal_len.saturating_sub(self.source_at);
            let last = u32::try_from(left)
                .ok()
                .filter(|&left| left <= self.render.packet_bytes());
            let (signal, at) = (&self.signal, &mut self.source_at);
            let mut source = source_of(signal, at, silence_of(&self.format));
            match last {
                Some(valid) if config.end_of_stream && self.end_of_stream_at.is_none() => {
                    self.end_of_stream_at = Some(signal_len as u64);
                    self.render.end_stream(play, valid, &mut source)?;
                }
                _ => self.render.write_packet(play, &mut source)?,
            }
        }
        let recorded = self.capture.position()?;
        for _ in 0..self.capture.take_notifications() {
            if self.done() {
                let mut ignored = Vec::new();
                self.capture.read_packet(recorded, &mut ignored)?;
            } else {
                self.capture.read_packet(recorded, &mut self.captured)?;
            }
        }
        Ok(())
    }

    /// Closes both pins and checks the end of stream.
    fn finish(
        mut self,
        peak_pages: usize,
        engine_priority: Option<Grant>,
    ) -> Result<LoopbackResult, EngineError> {
        let (render, capture) = (&mut self.render, &mut self.capture);
        let render_pages = render.buffer_pages();
        let capture_pages = capture.buffer_pages();
        let (render_clock, render_signals) = (render.clock(), render.signal_times());
        let (capture_clock, capture_signals) = (capture.clock(), capture.signal_times());
        let render_trace = std::mem::take(&mut render.trace);
        let render_run_qpc = render.run_qpc;
        let capture_trace = std::mem::take(&mut capture.trace);
        let capture_run_qpc = capture.run_qpc;
        let render_stats = self.render.close()?;
        let capture_stats = self.capture.close()?;
        let block = self.format.block_align();
        if let Some(end) = self.end_of_stream_at {
            // At the reported latency, capture byte `end` is render byte `end`.
            let at = end + self.reported_latency_frames * u64::from(block);
            let tail = self
                .captured
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
            format: self.format,
            capture_format: self.capture_format,
            engine_priority,
            render_buffer: self.render_buffer,
            capture_buffer: self.capture_buffer,
            peak_pages,
            render: render_stats,
            capture: capture_stats,
            packet_mode: self.packet_mode,
            end_of_stream_at: self.end_of_stream_at,
            captured: self.captured,
            render_pages,
            capture_pages,
            render_trace,
            render_run_qpc,
            capture_trace,
            capture_run_qpc,
            reported_latency_ms: self.reported_latency_ms,
            reported_latency_frames: self.reported_latency_frames,
            render_clock,
            render_signals,
            capture_clock,
            capture_signals,
        })
    }
}

/// The render source over `signal` from byte `*at` (`silence` bytes after
/// its end).
fn source_of<'a>(signal: &'a [u8], at: &'a mut usize, silence: u8) -> impl FnMut(&mut [u8]) + 'a {
    move |out: &mut [u8]| {
        for byte in out.iter_mut() {
            *byte = signal.get(*at).copied().unwrap_or(silence);
            *at += 1;
        }
    }
}

/// A silent byte of `format`: 0x80 for unsigned 8-bit PCM, else 0.
const fn silence_of(format: &AudioFormat) -> u8 {
    wavert_core::convert::sample::Encoding::of(format).silence()
}
