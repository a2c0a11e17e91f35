//! The virtual cable: the shared state of one render and one capture
//! stream, and the virtual DMA engines that move render audio into the
//! capture buffer.
//!
//! Everything here runs under the platform's spinlock and may run at
//! `DISPATCH_LEVEL` (timer callback, `GetPosition`): no allocation (every
//! `Vec` is made at buffer allocation, at `PASSIVE_LEVEL`, and moved in),
//! no blocking, no panic, no floating point.
//!
//! Data path per service (timer tick or position query), at QPC `now`:
//! 1. the render engine moves what the render clock says it has consumed
//!    since the last service (nominal rate);
//! 2. the capture engine moves what the capture clock says, and each piece
//!    it moves is filled from the render buffer (one copy, render mapping to
//!    capture mapping, split at the pages of both buffers), converted when
//!    the formats differ ([`convert`]), or with silence where there is
//!    nothing to take: no render stream, render paused, render frames not
//!    played yet or already overwritten;
//! 3. notification events fall due at packet ends and are signalled, the
//!    render ones only after the copy: a client woken by its event rewrites
//!    the packet just played, which the copy must have read first (on a
//!    multi-processor machine the client runs while the service is still
//!    going).
//!
//! The cable is a wire with no delay: what plays at time `t` is what is
//! recorded at time `t`. While both streams run, capture frame `n` holds
//! render frame `n - lead`, where `lead` is how many frames the capture
//! clock is ahead of the render clock, rounded up
//! ([`QpcClock::lead_frames`]), fixed at the first service that sees both
//! running and kept until either changes state. Started in either order,
//! the capture is silence up to the render's first frame and then the render
//! signal, frame for frame: never a gap or a repeat later. Two streams
//! started at the same QPC have a lead of 0 (the bit-exact tests rely on it).

mod convert;
pub mod endpoints;
pub mod engine;
pub mod filters;
pub mod volume;

use alloc::sync::Arc;

use portcls_sys::{
    PNPBus, AUDIO_SIGNALPROCESSINGMODE_DEFAULT, AUDIO_SIGNALPROCESSINGMODE_RAW,
    FILE_BYTE_ALIGNMENT, GUID, INTERFACE_TYPE, KSAUDIO_POSITION, KSRTAUDIO_HWLATENCY, KSSTATE,
    PCFILTER_DESCRIPTOR, PMDL,
};
use wavert_com::{KernelEvent, NtResult, NtStatus};
use wavert_core::convert::channels::MAX_CHANNELS;
use wavert_core::convert::gain::{scale_q31, ChannelGains};
use wavert_core::convert::sample::Encoding;
use wavert_core::format::AudioFormat;
use wavert_core::geometry::CyclicBuffer;
use wavert_core::negotiate::DeviceLimits;
use wavert_core::notify::NotificationSchedule;
use wavert_core::position::QpcClock;
use wavert_core::range::DeviceRange;
use wavert_core::sg::SgProfile;
use wavert_core::state::{transition, KsState, StreamPosition, TimedStream, Transition};

use self::convert::{codec_delay_100ns, convert_into, Conversion, RenderSide};
use self::engine::{DmaMode, Engine};
use self::filters::{DEFAULT_FORMAT, HOST_RANGES, WAVE_CAPTURE_FILTER, WAVE_RENDER_FILTER};
use self::volume::{CableVolume, Gains};
use crate::direction::{Direction, PerDirection};
use crate::memory::{Mapping, NotificationEvents};
use crate::modes::{PacketSizeConstraints, DEFAULT_AND_RAW};
use crate::platform::{Platform, SpinLock};
use crate::power::{DevicePower, PowerBackend};
use crate::stream::{same_format, Backend, DmaBuffer, PacketClock, WaveRtStream};
use crate::topology::PeakMeter;
use crate::wave::WaveMiniport;

/// The virtual device's buffer limits.
///
/// Requests above the maximum are clamped to it (a request is a wish, and the audio engine never asks for
/// megabytes); the minimum keeps a buffer longer than a few timer ticks at
/// the lowest rates.
pub const BUFFER_LIMITS: DeviceLimits = DeviceLimits {
    min_bytes: 512,
    max_bytes: 2 * 1024 * 1024,
    granularity_bytes: 1,
};

/// The shortest packet period the cable claims: 2 ms, in 100 ns units.
///
/// Where the figure comes from: the engine's one-shot timer fires at each
/// packet end, so in virtual time every event comes exactly on time and
/// 2 ms packets stream bit-exact in every DMA mode
/// (`the_minimum_packet_period_streams_bit_exact`); what bounds the period
/// is real time, where an event is as late as the timer and the scheduler
/// make it. The real-time search of `cargo xtask bench` on the 2-core Linux
/// machine the emulator runs on passes 5 ms for 60 s and fails at 3 ms, where
/// the same run saw the host stall the engine's thread for 2.8 ms
/// (`docs/performance.md`): most likely a limit of the emulator's scheduling
/// there, not of the driver. 2 ms stays the claim until a
/// measurement of Windows' high-resolution timer settles it.
pub const MIN_PACKET_PERIOD_HNS: u32 = 20_000;

/// One constraint per mode of the host pins: each at the device minimum.
static MODE_PACKETS: [(GUID, u32); 2] = [
    (AUDIO_SIGNALPROCESSINGMODE_DEFAULT, MIN_PACKET_PERIOD_HNS),
    (AUDIO_SIGNALPROCESSINGMODE_RAW, MIN_PACKET_PERIOD_HNS),
];

/// The cable's `DEVPKEY_KsAudio_PacketSize_Constraints2`, both directions.
///
/// Packets of any byte size (the engine copies byte ranges), at
/// most a whole buffer ([`BUFFER_LIMITS`]: 2 MiB, against 61 440 bytes for
/// 10 ms of the largest format, 192 kHz, 8 channels of 32 bits).
pub const PACKET_SIZE_CONSTRAINTS: PacketSizeConstraints = PacketSizeConstraints {
    min_packet_period_hns: MIN_PACKET_PERIOD_HNS,
    packet_size_alignment: FILE_BYTE_ALIGNMENT,
    max_packet_bytes: BUFFER_LIMITS.max_bytes,
    mode_packet_hns: &MODE_PACKETS,
};

// ksmedia: MaxPacketSizeInBytes holds at least 10 ms of any format the pin
// supports; the largest is MAX_RATE x MAX_CHANNELS x 4-byte samples.
const _: () = assert!(
    PACKET_SIZE_CONSTRAINTS.max_packet_bytes as u64
        >= self::filters::MAX_RATE as u64 * self::filters::MAX_CHANNELS as u64 * 4 / 100
);

/// What the virtual device reports for `KSPROPERTY_RTAUDIO_HWLATENCY`.
///
/// * `FifoSize` 0: the engine never reads ahead of the reported position
///   (a position query services the engine first), so no audio sits in a
///   device FIFO between the buffer and the "converter".
/// * `ChipsetDelay` 0: there is no bus between memory and the device.
/// * `CodecDelay` 0: render bytes reach the capture buffer in the same
///   service that consumes them. A capture side converted from a render
///   side at another rate reports the resampler's delay instead
///   ([`convert`]'s module docs).
pub const HW_LATENCY: KSRTAUDIO_HWLATENCY = KSRTAUDIO_HWLATENCY {
    FifoSize: 0,
    ChipsetDelay: 0,
    CodecDelay: 0,
};

/// The wave miniport of one side of the cable.
pub type CableWave<P> = WaveMiniport<VirtualCable<P>>;

/// A stream of the cable: the shared WaveRT stream over the cable.
pub type CableStream<P> = WaveRtStream<VirtualCable<P>>;

/// A stream's cyclic buffer as the engine sees it.
#[derive(Debug)]
pub struct Buffer {
    /// The buffer the shared stream built.
    pub dma: DmaBuffer,
    /// State, clock and notification schedule.
    pub timed: TimedStream,
    /// The virtual DMA engine.
    pub engine: Engine,
    /// Linear bytes the engine has moved since STOP.
    pub moved: u64,
    /// Capture: linear bytes the volume has been applied to (whole frames
    /// after a service with a gain; every byte moved at unity).
    pub gained: u64,
    /// Linear bytes (whole frames) the side's peak meter has looked at:
    /// render, played; capture, written and scaled.
    pub metered: u64,
    /// The linear byte up to which the peak meter measures (it was read
    /// recently: [`crate::topology::PeakMeter::take_wanted`]).
    pub meter_until: u64,
    /// Whether the engine runs (first RUN after STOP until STOP).
    pub started: bool,
    /// The stream is in RUN but its clock is held paused because the
    /// device is out of D0 ([`crate::power`]); D0 runs it again.
    pub held: bool,
    /// Registered events.
    pub events: NotificationEvents,
    /// Render packet mode: the render linear byte from which capture gets
    /// silence (the OS's last packet ended there). Cleared at STOP.
    pub end_of_stream: Option<u64>,
}

#[derive(Debug)]
struct End {
    format: Option<AudioFormat>,
    state: KsState,
    buffer: Option<Buffer>,
}

impl End {
    const fn closed() -> Self {
        Self {
            format: None,
            state: KsState::Stop,
            buffer: None,
        }
    }
}

/// Counters for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CableStats {
    /// Capture bytes filled with silence.
    pub silence_bytes: u64,
    /// Capture bytes copied from render.
    pub copied_bytes: u64,
    /// Capture bytes converted from render audio (formats differ).
    pub converted_bytes: u64,
    /// Bytes skipped because a service came more than a buffer late.
    pub skipped_bytes: u64,
    /// Engine failures (each treated as an underrun).
    pub dma_errors: u64,
    /// Notification events signalled.
    pub signals: u64,
}

/// The cable's lock-protected state.
#[derive(Debug)]
pub struct CableState {
    ends: PerDirection<End>,
    /// Capture frames minus render frames while both run
    /// ([`QpcClock::lead_frames`]); `None` until a service sees both running.
    capture_lead: Option<i64>,
    /// The render -> capture conversion when the formats differ (made at
    /// buffer installation, `PASSIVE_LEVEL`).
    conversion: Option<Conversion>,
    running: u32,
    /// The device is out of D0: nothing moves, nothing opens or allocates.
    powered_down: bool,
    /// The volume nodes' factors as the service last read them.
    gains: Gains,
    stats: CableStats,
}

/// A virtual loopback cable: what is rendered comes out of capture.
///
/// Shared (in an `Arc`) by the wave miniports, their streams and the
/// driver's timer. The platform comes first so that it is dropped first:
/// the driver's platform deletes its timer there, before the state goes.
pub struct VirtualCable<P: Platform> {
    platform: P,
    mode: DmaMode,
    state: P::Lock<CableState>,
    /// What each side's volume and mute nodes set ([`volume`]).
    volume: PerDirection<Arc<CableVolume>>,
}

impl<P: Platform> VirtualCable<P> {
    /// A cable with no stream open. IRQL: `PASSIVE_LEVEL`.
    pub fn new(platform: P, mode: DmaMode) -> Self {
        let state = platform.new_lock(CableState {
            ends: PerDirection {
                render: End::closed(),
                capture: End::closed(),
            },
            capture_lead: None,
            conversion: None,
            running: 0,
            powered_down: false,
            gains: Gains::default(),
            stats: CableStats::default(),
        });
        Self {
            platform,
            mode,
            state,
            volume: PerDirection {
                render: Arc::new(CableVolume::new()),
                capture: Arc::new(CableVolume::new()),
            },
        }
    }

    /// What `direction`'s volume and mute nodes act on: the cable's gain
    /// stage ([`volume`]), for that side's topology miniport.
    pub fn volume(&self, direction: Direction) -> Arc<CableVolume> {
        self.volume[direction].clone()
    }

    /// One service of both engines at `now`, with the volume nodes'
    /// latest factors. Under the cable lock.
    fn service(&self, s: &mut CableState, now: u64) {
        s.gains.refresh(&self.volume.render, &self.volume.capture);
        service(s, &self.platform, now);
        let render_gains = s.gains.render;
        meter(
            &mut s.ends.render,
            self.volume.render.meter(),
            MeterTap::Played(&render_gains),
        );
        meter(
            &mut s.ends.capture,
            self.volume.capture.meter(),
            MeterTap::Captured,
        );
    }

    /// The platform.
    pub const fn platform(&self) -> &P {
        &self.platform
    }

    /// The DMA mode chosen at construction.
    pub const fn mode(&self) -> DmaMode {
        self.mode
    }

    /// The timer routine: services both engines at QPC `now` (moves data,
    /// signals events). IRQL: `<= DISPATCH_LEVEL` (the timer callback runs
    /// at DISPATCH).
    pub fn on_timer(&self, now: u64) {
        self.state.with(|s| {
            self.service(s, now);
            self.arm(s, now);
        });
    }

    /// Diagnostics counters.
    pub fn stats(&self) -> CableStats {
        self.state.with(|s| s.stats)
    }

    /// Streams in RUN (the timer runs while this is not 0).
    pub fn running_streams(&self) -> u32 {
        self.state.with(|s| s.running)
    }

    /// Keeps the one-shot timer set for the next moment something falls due
    /// (the earliest next packet end of a running stream; half a buffer on
    /// for a stream without events), or stops it when nothing runs. Called
    /// under the cable lock, in the critical section that counted the
    /// running streams: two processors changing state at once then set and
    /// stop the timer in the order they counted (the stress in
    /// `wavert_emulator::concurrency` found a capture stream left in RUN
    /// without its timer when the render side's stop was applied after the
    /// capture side's start), and from the timer's callback after its
    /// service. `ExSetTimer` and `ExCancelTimer` (without a wait) are
    /// callable at `DISPATCH_LEVEL`.
    fn arm(&self, s: &CableState, now: u64) {
        if s.running == 0 {
            self.platform.stop_timer();
            return;
        }
        let due = [&s.ends.render, &s.ends.capture]
            .into_iter()
            .filter_map(|end| end.buffer.as_ref())
            .filter(|b| b.started && b.timed.state() == KsState::Run)
            .filter_map(|b| b.timed.next_due_qpc(b.dma.notification_count != 0))
            .min();
        // A running stream always has a next due time; none would only mean
        // a clock past u64, so look again in a millisecond.
        let delta = due.map_or_else(
            || self.platform.qpc_frequency() / 1_000,
            |due| due.saturating_sub(now),
        );
        self.platform
            .set_timer(qpc_to_100ns(delta, self.platform.qpc_frequency()));
    }

    /// The full position of one side as of now (after servicing the
    /// engines), `None` without a buffer. IRQL: `<= DISPATCH_LEVEL`.
    pub fn stream_position(&self, direction: Direction) -> Option<StreamPosition> {
        let now = self.platform.qpc();
        self.state.with(|s| {
            self.service(s, now);
            let b = s.ends[direction].buffer.as_mut()?;
            Some(b.timed.position(now))
        })
    }

    /// The conversion between the two open sides' formats (its FIFO sized
    /// for a render buffer of `render_bytes`), allocated here
    /// (`PASSIVE_LEVEL`) when they differ and the state has none for them
    /// yet; `None` otherwise (or when the converter refuses the pair: the
    /// capture then hears silence, as before conversion existed).
    fn new_conversion(&self, render_bytes: Option<u32>) -> Option<Conversion> {
        let (render, capture, have) = self.state.with(|s| {
            let (r, c) = (s.ends.render.format, s.ends.capture.format);
            let have = match (&s.conversion, &r, &c) {
                (Some(conv), Some(r), Some(c)) => conv.converts(r, c),
                _ => false,
            };
            (r, c, have)
        });
        match (render, capture, render_bytes) {
            (Some(r), Some(c), Some(bytes)) if !have && !same_format(&r, &c) => {
                Conversion::new(&r, &c, bytes).ok()
            }
            _ => None,
        }
    }

    /// A buffer built for `format` as this cable's engine needs it.
    fn engine_buffer(
        &self,
        format: &AudioFormat,
        dma: DmaBuffer,
    ) -> Result<Buffer, (DmaBuffer, NtStatus)> {
        let segments = u32::try_from(dma.descriptors.len()).unwrap_or(u32::MAX);
        let Ok(engine) = Engine::new(self.mode, segments) else {
            return Err((dma, NtStatus::UNSUCCESSFUL));
        };
        let clock = QpcClock::new(
            self.platform.qpc_frequency(),
            format.sample_rate(),
            format.block_align(),
            dma.size,
            dma.packet_bytes,
        );
        let schedule = NotificationSchedule::new(dma.size, dma.notification_count.max(1));
        let (Ok(clock), Ok(schedule)) = (clock, schedule) else {
            return Err((dma, NtStatus::INVALID_PARAMETER));
        };
        Ok(Buffer {
            dma,
            timed: TimedStream::new(clock, schedule),
            engine,
            moved: 0,
            gained: 0,
            metered: 0,
            meter_until: 0,
            started: false,
            held: false,
            events: NotificationEvents::new(),
            end_of_stream: None,
        })
    }
}

impl<P: Platform> Backend for VirtualCable<P> {
    const WAVE_RENDER_FILTER: PCFILTER_DESCRIPTOR = WAVE_RENDER_FILTER;
    const WAVE_CAPTURE_FILTER: PCFILTER_DESCRIPTOR = WAVE_CAPTURE_FILTER;

    type Platform = P;

    fn platform(&self) -> &P {
        &self.platform
    }

    fn buffer_limits(&self) -> DeviceLimits {
        BUFFER_LIMITS
    }

    fn dma_reach(&self) -> u64 {
        u64::MAX
    }

    fn descriptor_profile(&self) -> SgProfile {
        self.mode.profile()
    }

    /// [`HW_LATENCY`], plus the resampler's delay on a capture side
    /// converted from a render side at another rate.
    fn hw_latency(&self, format: &AudioFormat) -> KSRTAUDIO_HWLATENCY {
        let formats = self
            .state
            .with(|s| (s.ends.render.format, s.ends.capture.format));
        match formats {
            (Some(render), Some(capture))
                if capture == *format && !same_format(&render, &capture) =>
            {
                KSRTAUDIO_HWLATENCY {
                    CodecDelay: codec_delay_100ns(&render, &capture),
                    ..HW_LATENCY
                }
            }
            _ => HW_LATENCY,
        }
    }

    /// Opens one side for a stream of `format`. IRQL: `PASSIVE_LEVEL`.
    fn open(&self, direction: Direction, format: &AudioFormat) -> NtResult<()> {
        self.state.with(|s| {
            if s.powered_down {
                return Err(NtStatus::DEVICE_NOT_READY);
            }
            let end = &mut s.ends[direction];
            if end.format.is_some() {
                return Err(NtStatus::INSUFFICIENT_RESOURCES);
            }
            *end = End {
                format: Some(*format),
                state: KsState::Stop,
                buffer: None,
            };
            Ok(())
        })
    }

    /// Closes one side (stream release) and hands back its buffer, if any,
    /// for the stream to free. IRQL: `PASSIVE_LEVEL`.
    fn close(&self, direction: Direction) -> Option<DmaBuffer> {
        let (buffer, conversion) = self.state.with(|s| {
            let now = self.platform.qpc();
            self.service(s, now);
            let end = core::mem::replace(&mut s.ends[direction], End::closed());
            s.capture_lead = None;
            // A held stream was taken off the running count at power-down.
            if end.state == KsState::Run && !end.buffer.as_ref().is_some_and(|b| b.held) {
                s.running = s.running.saturating_sub(1);
            }
            self.arm(s, now);
            // The formats it converted between are gone with this side.
            (end.buffer, s.conversion.take())
        });
        // Freed here, outside the lock.
        drop(conversion);
        buffer.map(|b| b.dma)
    }

    /// Whether a buffer may be allocated now: side open, in STOP, no buffer.
    fn can_allocate(&self, direction: Direction) -> NtResult<()> {
        self.state.with(|s| {
            let end = &s.ends[direction];
            if s.powered_down {
                Err(NtStatus::DEVICE_NOT_READY)
            } else if end.buffer.is_some() {
                Err(NtStatus::INVALID_DEVICE_REQUEST)
            } else if end.state != KsState::Stop {
                Err(NtStatus::INVALID_DEVICE_STATE)
            } else {
                Ok(())
            }
        })
    }

    /// Installs a new buffer; gives it back if one appeared meanwhile.
    fn install_buffer(
        &self,
        direction: Direction,
        dma: DmaBuffer,
    ) -> Result<(), (DmaBuffer, NtStatus)> {
        let format = self.state.with(|s| s.ends[direction].format);
        let Some(format) = format else {
            return Err((dma, NtStatus::INVALID_DEVICE_STATE));
        };
        let buffer = self.engine_buffer(&format, dma)?;
        // The conversion's FIFO holds a render buffer: made once both
        // buffers exist (this one, or the other side's).
        let render_bytes = match direction {
            Direction::Render => Some(buffer.dma.size),
            Direction::Capture => self
                .state
                .with(|s| s.ends.render.buffer.as_ref().map(|b| b.dma.size)),
        };
        let other_has_buffer = self
            .state
            .with(|s| s.ends[direction.other()].buffer.is_some());
        let conversion = if other_has_buffer {
            self.new_conversion(render_bytes)
        } else {
            None
        };
        let (result, unused) = self.state.with(|s| {
            // A power-down between `can_allocate` and here wins: the
            // buffer goes back to be freed and the client is told why.
            if s.powered_down {
                return (Err((buffer.dma, NtStatus::DEVICE_NOT_READY)), conversion);
            }
            let end = &mut s.ends[direction];
            if end.buffer.is_none() && end.state == KsState::Stop {
                end.buffer = Some(buffer);
                (Ok(()), install_conversion(s, conversion))
            } else {
                (
                    Err((buffer.dma, NtStatus::INVALID_DEVICE_REQUEST)),
                    conversion,
                )
            }
        });
        // A conversion the state did not take is freed here, outside the lock.
        drop(unused);
        result
    }

    /// Takes the buffer out if its MDL is `mdl` (a free of anything else,
    /// e.g. a second free, gets `None`).
    fn take_buffer(&self, direction: Direction, mdl: PMDL) -> Option<DmaBuffer> {
        self.state.with(|s| {
            let now = self.platform.qpc();
            self.service(s, now);
            forget_mapping(s);
            let end = &mut s.ends[direction];
            if end
                .buffer
                .as_ref()
                .is_some_and(|b| b.dma.mdl.as_raw() == mdl)
            {
                end.buffer.take().map(|b| b.dma)
            } else {
                None
            }
        })
    }

    /// `SetState`: one step at a time. IRQL: `PASSIVE_LEVEL`.
    fn set_state(&self, direction: Direction, raw: KSSTATE) -> NtResult<()> {
        let now = self.platform.qpc();
        self.state.with(|s| {
            self.service(s, now);
            change_state(s, direction, raw, now)?;
            self.arm(s, now);
            Ok(())
        })
    }

    fn state(&self, direction: Direction) -> KsState {
        self.state.with(|s| s.ends[direction].state)
    }

    /// `GetPosition`: services the engines up to now first, so the position
    /// never runs ahead of the data. IRQL: `<= DISPATCH_LEVEL`.
    fn position(&self, direction: Direction) -> KSAUDIO_POSITION {
        let now = self.platform.qpc();
        self.state.with(|s| {
            self.service(s, now);
            s.ends[direction]
                .buffer
                .as_mut()
                .map_or_else(KSAUDIO_POSITION::default, |b| {
                    let offset = u64::from(b.timed.cyclic_offset_at(now));
                    KSAUDIO_POSITION {
                        PlayOffset: offset,
                        WriteOffset: offset,
                    }
                })
        })
    }

    /// `RegisterNotificationEvent`. IRQL: `PASSIVE_LEVEL`.
    fn register_event(&self, direction: Direction, event: KernelEvent) -> NtResult<()> {
        self.state.with(|s| {
            s.ends[direction]
                .buffer
                .as_mut()
                .filter(|b| b.dma.notification_count != 0)
                .ok_or(NtStatus::INVALID_DEVICE_STATE)?
                .events
                .register(event)
        })
    }

    /// `UnregisterNotificationEvent`. IRQL: `PASSIVE_LEVEL`.
    ///
    /// Without a buffer there is nothing to unregister: the registrations
    /// went with the buffer, which a port may free first (ReactOS's close
    /// frees the buffer, then unregisters), so that is a success.
    fn unregister_event(&self, direction: Direction, event: KernelEvent) -> NtResult<()> {
        self.state.with(|s| {
            s.ends[direction]
                .buffer
                .as_mut()
                .map_or(Ok(()), |b| b.events.unregister(event))
        })
    }

    /// One range per depth ([`HOST_RANGES`]), the same both directions.
    fn host_ranges(&self, _direction: Direction) -> &'static [DeviceRange] {
        &HOST_RANGES
    }

    fn default_format(&self, _direction: Direction) -> AudioFormat {
        DEFAULT_FORMAT
    }

    fn accepts(&self, _direction: Direction, format: &AudioFormat) -> bool {
        HOST_RANGES.iter().any(|range| range.contains(format))
    }

    /// Root-enumerated.
    fn bus(&self) -> INTERFACE_TYPE {
        PNPBus
    }

    /// DEFAULT and RAW: the cable copies bytes, it processes nothing.
    fn signal_processing_modes(&self, _direction: Direction) -> &'static [GUID] {
        &DEFAULT_AND_RAW
    }

    fn packet_size_constraints(&self, _direction: Direction) -> PacketSizeConstraints {
        PACKET_SIZE_CONSTRAINTS
    }

    /// Both sides: the clocks are QPC-paced, so the packet counters keep
    /// the nominal rate whatever the client does, and the capture side can
    /// be fed silence after render's last packet.
    fn offers_packets(&self, _direction: Direction) -> bool {
        true
    }

    /// The side's clock after servicing the engines up to now (as
    /// `GetPosition`). IRQL: `<= DISPATCH_LEVEL`.
    fn packet_clock(&self, direction: Direction) -> Option<PacketClock> {
        let now = self.platform.qpc();
        self.state.with(|s| {
            self.service(s, now);
            let end = &mut s.ends[direction];
            let block_align = end.format?.block_align();
            let b = end.buffer.as_mut()?;
            let _ = b.timed.position(now);
            Some(PacketClock {
                reading: b.timed.clock().reading(),
                read_at: now,
                block_align,
                packet_bytes: b.dma.packet_bytes,
                notification_count: b.dma.notification_count,
                state: end.state,
                end_of_stream: b.end_of_stream,
            })
        })
    }

    /// Render's last packet: capture reads silence from render byte `end`
    /// on ([`service`] stops the copy there). IRQL: `<= DISPATCH_LEVEL`.
    fn set_end_of_stream(&self, direction: Direction, end: u64) -> NtResult<()> {
        self.state.with(|s| {
            let b = s.ends[direction]
                .buffer
                .as_mut()
                .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
            b.end_of_stream = Some(end);
            Ok(())
        })
    }
}

fn change_state(s: &mut CableState, direction: Direction, raw: KSSTATE, now: u64) -> NtResult<()> {
    let end = &mut s.ends[direction];
    let to = KsState::from_raw(u32::from_ne_bytes(raw.to_ne_bytes()))
        .map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let step = transition(end.state, to).map_err(|_| NtStatus::INVALID_DEVICE_STATE)?;
    if to == KsState::Run && end.buffer.is_none() {
        return Err(NtStatus::INVALID_DEVICE_STATE);
    }
    if let Some(b) = end.buffer.as_mut() {
        // Out of D0 a RUN is recorded but its clock stays held until D0,
        // and a held stream leaves RUN without its (already paused) clock
        // noticing; the running count left it at power-down.
        match step {
            Transition::Run if s.powered_down => {
                b.held = true;
                end.state = to;
                return Ok(());
            }
            Transition::PauseFromRun if b.held => {
                b.held = false;
                end.state = to;
                return Ok(());
            }
            _ => {}
        }
    }
    if let Some(b) = end.buffer.as_mut() {
        // Same machine, same state: this cannot fail after `transition` did not.
        b.timed
            .set_state(u32::from_ne_bytes(raw.to_ne_bytes()), now)
            .map_err(|_| NtStatus::INVALID_DEVICE_STATE)?;
        match step {
            Transition::Run if !b.started => {
                b.engine.start(&b.dma.descriptors);
                b.started = true;
            }
            Transition::Stop => {
                b.engine.stop();
                b.started = false;
                b.moved = 0;
                b.gained = 0;
                b.metered = 0;
                b.meter_until = 0;
                b.end_of_stream = None;
            }
            _ => {}
        }
    }
    end.state = to;
    if step != Transition::None {
        // The mapping holds while both run unchanged; the next service that
        // sees both running fixes it afresh.
        forget_mapping(s);
    }
    match step {
        Transition::Run => s.running = s.running.saturating_add(1),
        Transition::PauseFromRun => s.running = s.running.saturating_sub(1),
        _ => {}
    }
    Ok(())
}

impl<P: Platform> PowerBackend for VirtualCable<P> {
    type Platform = P;

    fn power_platform(&self) -> &P {
        &self.platform
    }

    /// Holds every running stream's clock where it is (after a last service
    /// up to now, so what was due is moved and signalled) and stops the
    /// timer. The cable has no hardware to power down.
    fn power_down(&self, _to: DevicePower) {
        let now = self.platform.qpc();
        self.state.with(|s| {
            self.service(s, now);
            s.powered_down = true;
            for end in [&mut s.ends.render, &mut s.ends.capture] {
                let Some(b) = end.buffer.as_mut() else {
                    continue;
                };
                if end.state == KsState::Run && !b.held {
                    // RUN -> PAUSE on the clock alone: the same machine,
                    // so this cannot fail.
                    let _ = b.timed.set_state(KSSTATE_PAUSE_RAW, now);
                    b.held = true;
                    s.running = s.running.saturating_sub(1);
                }
            }
            self.arm(s, now);
        });
    }

    /// Runs every held stream's clock again from its held position (both
    /// sides at the same instant, so the capture side's lead over render is
    /// unchanged) and re-arms the timer. Nothing to re-initialise: the
    /// cable's state is all in memory.
    fn power_up(&self, _from: DevicePower, _system: Option<portcls_sys::SYSTEM_POWER_STATE>) {
        let now = self.platform.qpc();
        self.state.with(|s| {
            s.powered_down = false;
            for end in [&mut s.ends.render, &mut s.ends.capture] {
                let Some(b) = end.buffer.as_mut() else {
                    continue;
                };
                if b.held {
                    let _ = b.timed.set_state(KSSTATE_RUN_RAW, now);
                    if !b.started {
                        b.engine.start(&b.dma.descriptors);
                        b.started = true;
                    }
                    b.held = false;
                    s.running = s.running.saturating_add(1);
                }
            }
            self.arm(s, now);
        });
    }
}

/// `KSSTATE_PAUSE` and `KSSTATE_RUN` as [`TimedStream::set_state`] takes them.
const KSSTATE_PAUSE_RAW: u32 = KsState::Pause as u32;
const KSSTATE_RUN_RAW: u32 = KsState::Run as u32;

/// Forgets how capture frames map to render frames (the lead, and a
/// conversion's anchor): the next service that sees both running fixes it
/// afresh.
const fn forget_mapping(s: &mut CableState) {
    s.capture_lead = None;
    if let Some(conversion) = s.conversion.as_mut() {
        conversion.unanchor();
    }
}

/// Puts `conversion` in the state if it converts between the formats open
/// now; returns what the state did not keep (to free outside the lock).
fn install_conversion(s: &mut CableState, conversion: Option<Conversion>) -> Option<Conversion> {
    let fits = match (&conversion, &s.ends.render.format, &s.ends.capture.format) {
        (Some(conv), Some(r), Some(c)) => conv.converts(r, c),
        _ => false,
    };
    if fits {
        core::mem::replace(&mut s.conversion, conversion)
    } else {
        conversion
    }
}

/// QPC ticks as 100 ns units, rounded up: a timer set for them is never
/// early.
fn qpc_to_100ns(ticks: u64, frequency: u64) -> u64 {
    // A due time is a buffer away at most: u64 holds it (one division).
    if let Some(units) = ticks.checked_mul(10_000_000) {
        return units.div_ceil(frequency.max(1));
    }
    let units = u128::from(ticks) * 10_000_000;
    u64::try_from(units.div_ceil(u128::from(frequency.max(1)))).unwrap_or(u64::MAX)
}

/// Bytes the engine must move now, after skipping whole buffer cycles when
/// the service came more than a buffer late (the engine's place in the
/// buffer is the same after whole cycles, so the walk stays consistent).
fn due_bytes(b: &mut Buffer, now: u64, stats: &mut CableStats) -> u32 {
    if !b.started {
        return 0;
    }
    let target = b.timed.linear_bytes_at(now);
    let mut need = target.saturating_sub(b.moved);
    let size = u64::from(b.dma.size);
    if need > size {
        let whole = (need / size).saturating_sub(1).saturating_mul(size);
        b.moved = b.moved.saturating_add(whole);
        stats.skipped_bytes = stats.skipped_bytes.saturating_add(whole);
        need -= whole;
    }
    // need < 2 * size <= 2 * 2 MiB fits in u32.
    u32::try_from(need).unwrap_or(0)
}

/// Where the capture side reads render data: the render buffer and the
/// render linear bytes it still holds (played, not yet rewritten).
struct Source<'a> {
    mapping: &'a Mapping,
    geometry: CyclicBuffer<'a>,
    /// Render linear byte the capture's next byte maps to (may be negative:
    /// before the render's first frame).
    next: i128,
    /// Oldest render byte still in the buffer.
    oldest: u64,
    /// Render bytes played so far.
    end: u64,
}

/// Signals the buffer's events when a packet end passed since the last poll
/// (once, however many passed: the event is a level, not a counter).
fn signal<P: Platform>(b: &mut Buffer, platform: &P, now: u64, stats: &mut CableStats) {
    let due = b.timed.poll_notifications(now);
    if due.count == 0 || b.dma.notification_count == 0 {
        return;
    }
    for event in b.events.iter() {
        platform.signal_event(event);
        stats.signals = stats.signals.saturating_add(1);
    }
}

/// Bytes to account for an engine step: what it moved, or (when the engine
/// broke down) the whole step, so that the position keeps the nominal rate
/// and the next step starts clean.
fn account(
    moved: Result<u32, wavert_core::dma::DmaError>,
    need: u32,
    stats: &mut CableStats,
) -> u32 {
    moved.unwrap_or_else(|_| {
        stats.dma_errors = stats.dma_errors.saturating_add(1);
        need
    })
}

/// One service of both engines at `now` (see the module docs).
fn service<P: Platform>(s: &mut CableState, platform: &P, now: u64) {
    let CableState {
        ends,
        capture_lead,
        conversion,
        gains,
        stats,
        ..
    } = s;
    let PerDirection { render, capture } = ends;

    // 1. Render: the engine consumes what the clock says. Frames played
    // before this service may be rewritten by the client already.
    let render_trusted_from = render.buffer.as_ref().map_or(0, |rb| rb.moved);
    if let Some(rb) = render.buffer.as_mut() {
        let need = due_bytes(rb, now, stats);
        if need > 0 {
            let moved = rb.engine.advance(need, &rb.dma.descriptors, &mut |_, _| {});
            rb.moved = rb
                .moved
                .saturating_add(u64::from(account(moved, need, stats)));
        }
    }

    // 2. Capture: filled from the render buffer, or with silence.
    if let Some(cb) = capture.buffer.as_mut() {
        let mut need = due_bytes(cb, now, stats);
        let block = match (&render.format, &capture.format) {
            (Some(r), Some(c)) if same_format(r, c) => Some(i128::from(r.block_align())),
            _ => None,
        };
        let running = |b: &Buffer| b.started && b.timed.state() == KsState::Run;
        let mut source = match (render.buffer.as_ref(), block) {
            (Some(rb), Some(block)) if running(rb) && running(cb) => {
                if capture_lead.is_none() {
                    *capture_lead = cb.timed.clock().lead_frames(rb.timed.clock());
                }
                let geometry = CyclicBuffer::new(&rb.dma.pages, 0, rb.dma.size).ok();
                match (*capture_lead, geometry) {
                    (Some(lead), Some(geometry)) => Some(Source {
                        mapping: &rb.dma.mapping,
                        geometry,
                        next: i128::from(cb.moved) - i128::from(lead) * block,
                        oldest: rb.moved.saturating_sub(u64::from(rb.dma.size)),
                        // After the OS's last packet only silence.
                        end: rb.end_of_stream.map_or(rb.moved, |eos| rb.moved.min(eos)),
                    }),
                    _ => None,
                }
            }
            _ => None,
        };
        if let (Some(src), Some(block)) = (&source, block) {
            // The render frames played so far map at most one frame past the
            // capture clock (the lead is rounded up): take that frame now,
            // before the render client may rewrite it. The capture engine
            // then runs that frame ahead of its clock, into bytes the client
            // read a buffer ago.
            let played = i128::from(src.end) - src.next;
            let ahead = (played - i128::from(need)).clamp(0, block);
            need = need.saturating_add(u32::try_from(ahead).unwrap_or(0));
        }
        // Formats that differ: the render side converted (one call per
        // piece, `convert::convert_into`), where a plain copy would be.
        let mut converted = match (render.buffer.as_ref(), block, conversion.as_mut()) {
            (Some(rb), None, Some(conv)) if running(rb) && running(cb) => {
                anchor_conversion(conv, capture_lead, rb, cb, need, render_trusted_from);
                conv.set_gains(gains.render, gains.capture);
                conv.tap(&RenderSide {
                    mapping: &rb.dma.mapping,
                    size: rb.dma.size,
                    oldest: rb.moved.saturating_sub(u64::from(rb.dma.size)),
                    end: rb.end_of_stream.map_or(rb.moved, |eos| rb.moved.min(eos)),
                });
                Some(conv)
            }
            _ => None,
        };
        if need > 0 {
            let capture_map = &cb.dma.mapping;
            let silence = silence_of(capture.format.as_ref());
            let mut fill = |offset: u32, len: u32| {
                let copied = match (source.as_mut(), converted.as_mut()) {
                    (Some(src), _) => {
                        copy_from_render(src, capture_map, offset, len, silence, stats)
                    }
                    (None, Some(conv)) => convert_piece(conv, capture_map, offset, len, stats),
                    (None, None) => {
                        // In bounds: the engine's pieces lie inside the buffer.
                        let _silenced = capture_map.fill(offset, len, silence);
                        0
                    }
                };
                stats.silence_bytes = stats.silence_bytes.saturating_add(u64::from(len - copied));
            };
            let moved = cb.engine.advance(need, &cb.dma.descriptors, &mut fill);
            cb.moved = cb
                .moved
                .saturating_add(u64::from(account(moved, need, stats)));
        }
        // The plain copy moved bytes; the volume scales the frames it
        // wrote (a converter scaled its own).
        let copied = source.is_some();
        match (&capture.format, copied) {
            (Some(format), true) => apply_volume(cb, format, gains.through()),
            _ => cb.gained = cb.moved,
        }
    }

    // 3. Events, render after the copy that read what it announces.
    for b in [render.buffer.as_mut(), capture.buffer.as_mut()]
        .into_iter()
        .flatten()
    {
        signal(b, platform, now, stats);
    }
}

/// [`convert_into`] for one piece of the capture engine's walk, counted.
fn convert_piece(
    conversion: &mut Conversion,
    capture: &Mapping,
    offset: u32,
    len: u32,
    stats: &mut CableStats,
) -> u32 {
    let made = convert_into(conversion, capture, offset, len);
    stats.converted_bytes = stats.converted_bytes.saturating_add(u64::from(made));
    made
}

/// What a byte of `format` without audio holds: 0x80 for unsigned 8-bit
/// PCM, else 0 (no format yet: 0).
fn silence_of(format: Option<&AudioFormat>) -> u8 {
    format.map_or(0, |format| Encoding::of(format).silence())
}

/// Bytes of whole frames the service copies out of a buffer at a time to
/// scale or measure them (a stack copy).
const FRAME_CHUNK: usize = 768;

/// Hands the whole frames of linear bytes `start..end` of `buffer` to
/// `visit`, a stack copy of at most [`FRAME_CHUNK`] bytes at a time with its
/// offset in the buffer (frames more than a buffer before `end` are gone
/// and are left out). Stops at the first piece the mapping cannot read, or
/// that `visit` refuses (returns false). Bounded by a buffer per call.
fn visit_frames(
    buffer: &DmaBuffer,
    block: u64,
    start: u64,
    end: u64,
    visit: &mut dyn FnMut(u32, &mut [u8]) -> bool,
) {
    let size = u64::from(buffer.size);
    let chunk_len = FRAME_CHUNK as u64 / block.max(1) * block;
    if block == 0 || size % block != 0 || chunk_len == 0 {
        return;
    }
    let mut chunk = [0u8; FRAME_CHUNK];
    let mut at = start.max(end.saturating_sub(size));
    while at < end {
        let offset = at % size;
        let len = (end - at).min(size - offset).min(chunk_len);
        // offset < size and len <= FRAME_CHUNK: both fit their types.
        let (Ok(offset), Some(bytes)) = (
            u32::try_from(offset),
            chunk.get_mut(..usize::try_from(len).unwrap_or(0)),
        ) else {
            return;
        };
        if !buffer.mapping.read(offset, bytes) || !visit(offset, bytes) {
            return;
        }
        at += len;
    }
}

/// Scales the capture frames written since the last service (whole frames
/// only: a frame the engine wrote in part is scaled once it is whole) by
/// `gains`, in place in the capture buffer. Nothing is scaled at unity.
fn apply_volume(cb: &mut Buffer, format: &AudioFormat, gains: &ChannelGains) {
    if gains.is_unity() {
        // Nothing to scale (and no division on the common path); a frame
        // written in part now is scaled whole by the first service with a
        // gain, which starts at the frame's beginning.
        cb.gained = cb.moved;
        return;
    }
    let block = u64::from(format.block_align().max(1));
    let end = cb.moved / block * block;
    let start = cb.gained / block * block;
    cb.gained = end;
    let encoding = Encoding::of(format);
    let channels = usize::from(format.channels());
    let mapping = &cb.dma.mapping;
    visit_frames(&cb.dma, block, start, end, &mut |offset, bytes| {
        gains.scale_encoded(encoding, bytes, channels);
        mapping.write(offset, bytes)
    });
}

/// How long a side's peak meter goes on measuring after its last read.
const METER_HOLD_SECONDS: u64 = 2;

/// Which frames of a side a peak meter measures.
#[derive(Clone, Copy)]
enum MeterTap<'a> {
    /// Render: the frames played, scaled by the render volume and mute
    /// (the meter sits after them; the capture side applies them later).
    Played(&'a ChannelGains),
    /// Capture: the frames written and already scaled.
    Captured,
}

/// Raises `meter` to the peaks of the frames `end` finished since the last
/// service, as `tap` says. Only while the meter is wanted
/// (read within [`METER_HOLD_SECONDS`] of audio); otherwise the frames are
/// passed over unread, and a meter read again starts with the frames the
/// next service finishes.
fn meter(end: &mut End, meter: &PeakMeter, tap: MeterTap<'_>) {
    let (Some(format), Some(b)) = (end.format.as_ref(), end.buffer.as_mut()) else {
        // A read before the stream has a buffer stays wanted until it does.
        return;
    };
    let wanted = meter.take_wanted();
    let measuring = b.metered < b.meter_until;
    if !wanted && !measuring {
        // Nobody reads the meter: the service pays one load for it.
        return;
    }
    let block = u64::from(format.block_align().max(1));
    // Capture frames count once the volume has scaled them.
    let done = match tap {
        MeterTap::Played(_) => b.moved,
        MeterTap::Captured => b.gained,
    };
    let finished = done / block * block;
    // A meter that starts measuring starts with the frames still to come.
    let start = if measuring { b.metered } else { finished };
    b.metered = finished;
    if wanted {
        let hold = u64::from(format.bytes_per_second()).saturating_mul(METER_HOLD_SECONDS);
        b.meter_until = finished.saturating_add(hold);
    }
    let until = finished.min(b.meter_until);
    if start >= until {
        return;
    }
    let encoding = Encoding::of(format);
    let channels = usize::from(format.channels());
    let mut peaks = [0u32; MAX_CHANNELS];
    visit_frames(&b.dma, block, start, until, &mut |_, bytes| {
        encoding.raise_peaks(bytes, channels, &mut peaks);
        true
    });
    if let MeterTap::Played(gains) = tap {
        for (channel, peak) in peaks.iter_mut().enumerate() {
            // A peak is at most i32::MAX (peak_magnitude).
            let sample = i32::try_from(*peak).unwrap_or(i32::MAX);
            *peak = scale_q31(sample, gains.get(channel)).unsigned_abs();
        }
    }
    meter.raise(&peaks);
}

/// Fixes a conversion's mapping at the first service that sees both sides
/// running (render frames from `render_trusted_from`, the bytes played
/// before this service, are the first the conversion takes): the capture frame the engine writes next maps to the render
/// frame at the same instant. Without a rate change that is the lead of a
/// plain copy; with one, the render frame playing now less the capture
/// frames due now (`need` bytes) converted to render frames.
fn anchor_conversion(
    conversion: &mut Conversion,
    capture_lead: &mut Option<i64>,
    rb: &Buffer,
    cb: &Buffer,
    need: u32,
    render_trusted_from: u64,
) {
    if conversion.is_anchored() {
        return;
    }
    let (render_block, capture_block) = conversion.block_aligns();
    let next_capture = i128::from(cb.moved / capture_block);
    let playing = i128::from(rb.moved / render_block);
    let trusted = i128::from(render_trusted_from.div_ceil(render_block));
    if let Some(lead) = cb.timed.clock().lead_frames(rb.timed.clock()) {
        *capture_lead = Some(lead);
        conversion.anchor(next_capture - i128::from(lead), 0, trusted);
    } else {
        let due = u64::from(need) / capture_block;
        let (whole, fraction) = conversion.render_frames_for(due);
        conversion.anchor(playing - whole, fraction, trusted);
    }
}

/// Fills `capture[offset..offset + len]` with the render bytes it maps to,
/// silence where the render has none (not played yet, before its first
/// frame, or already rewritten), split at the render buffer's page ends.
/// Returns the bytes copied (the rest is silence).
fn copy_from_render(
    src: &mut Source<'_>,
    capture: &Mapping,
    offset: u32,
    len: u32,
    silence: u8,
    stats: &mut CableStats,
) -> u32 {
    let size = u64::from(src.geometry.size());
    let mut copied = 0u32;
    let mut done = 0u32;
    while done < len {
        let at = src.next + i128::from(done);
        let left = len - done;
        // Render bytes this piece maps to that the buffer holds.
        let (take, silent) = if at < i128::from(src.oldest) {
            let gap = i128::from(src.oldest) - at;
            let silent = u32::try_from(gap.min(i128::from(left))).unwrap_or(left);
            if at >= 0 {
                stats.skipped_bytes = stats.skipped_bytes.saturating_add(u64::from(silent));
            }
            (0, silent)
        } else if at >= i128::from(src.end) {
            (0, left)
        } else {
            let available = i128::from(src.end) - at;
            (
                u32::try_from(available.min(i128::from(left))).unwrap_or(0),
                0,
            )
        };
        if silent > 0 {
            // In bounds: the engine's pieces lie inside the buffer.
            let _silenced = capture.fill(offset + done, silent, silence);
            done += silent;
            continue;
        }
        // `at` lies in [oldest, end): non-negative, and its offset in the
        // buffer is below the size, itself a u32.
        let start = u32::try_from(u64::try_from(at).unwrap_or(0) % size).unwrap_or(0);
        let Ok(runs) = src.geometry.runs(start, take) else {
            break;
        };
        for run in runs {
            if !src
                .mapping
                .copy_to(run.buffer_offset, capture, offset + done, run.len)
            {
                let _silenced = capture.fill(offset + done, len - done, silence);
                src.next += i128::from(len);
                return copied;
            }
            done += run.len;
            copied += run.len;
        }
    }
    src.next += i128::from(len);
    stats.copied_bytes = stats.copied_bytes.saturating_add(u64::from(copied));
    copied
}

#[cfg(test)]
mod tests {
    use super::qpc_to_100ns;

    #[test]
    fn due_times_round_up_to_100ns_on_both_paths() {
        // 10 MHz: the same unit.
        assert_eq!(qpc_to_100ns(12_345, 10_000_000), 12_345);
        // 3 MHz (a common TSC-derived QPC): 1 tick = 3.33 units, rounded up.
        assert_eq!(qpc_to_100ns(1, 3_000_000), 4);
        assert_eq!(qpc_to_100ns(3, 3_000_000), 10);
        // Past u64 in the product: the wide path, still exact and rounded up.
        let ticks = u64::MAX / 1_000;
        let exact = (u128::from(ticks) * 10_000_000).div_ceil(24_000_000);
        assert_eq!(u128::from(qpc_to_100ns(ticks, 24_000_000)), exact);
        // A zero frequency never divides by zero.
        assert_eq!(qpc_to_100ns(5, 0), 50_000_000);
    }
}
