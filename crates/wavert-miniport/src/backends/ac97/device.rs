//! [`Ac97Device`]: the card as every filter and stream of it sees it.
//!
//! Two kinds of state, two locks, as on Windows:
//!
//! * **Interrupt-lock state** (`HwState`): each channel's
//!   `wavert_core::ac97::Channel`, its segment list and the mapping of its
//!   descriptor list. The ISR owns it while it runs (PortCls holds the
//!   interrupt spin lock around service routines); everything else reaches
//!   it only through `IInterruptSync::CallSynchronizedRoutine`
//!   ([`InterruptSync::synchronized`]), at DIRQL. Nothing in there
//!   allocates or frees: vectors and mappings are moved in and out, and
//!   dropped or unmapped by the caller at `PASSIVE_LEVEL`.
//! * **Spin-lock state** (`SoftState`, the platform's `DISPATCH_LEVEL` lock):
//!   stream states, notification events and packet counters, touched by
//!   the property paths and the deferred step.
//!
//! The ISR passes the deferred step its results through atomics (completed
//! bytes per channel) and asks the platform for a DPC
//! ([`Platform::queue_dpc`]); the DPC ([`Ac97Device::on_dpc`], at
//! `DISPATCH_LEVEL`) signals the events of every packet end crossed. Events
//! are never signalled from the ISR: `KeSetEvent` is not callable at DIRQL.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use portcls_sys::windows_abi;

use alloc::sync::Arc;

use portcls_sys::{
    IInterruptSync, MmNonCached, PCIBus, GUID, INTERFACE_TYPE, KSAUDIO_POSITION,
    KSRTAUDIO_HWLATENCY, KSSTATE, NTSTATUS, PCFILTER_DESCRIPTOR, PMDL, STATUS_SUCCESS,
    STATUS_UNSUCCESSFUL,
};
use wavert_com::{KernelEvent, NtResult, NtStatus};
use wavert_core::ac97::{nam, Ac97Error, Channel, ChannelKind, ChannelStats, Codec, MAX_RATE};
use wavert_core::format::AudioFormat;
use wavert_core::geometry::PAGE_SIZE;
use wavert_core::negotiate::DeviceLimits;
use wavert_core::range::DeviceRange;
use wavert_core::sg::{Descriptor, SgProfile};
use wavert_core::state::{transition, KsState, Transition};

use super::filters::{
    AC97_RANGE, AC97_WAVE_CAPTURE_FILTER, AC97_WAVE_RENDER_FILTER, CHANNELS, DEFAULT_FORMAT,
};
use super::resources::Ac97Resources;
use super::stream::{hw_latency, BUFFER_LIMITS, MAX_PHYSICAL, PACKET_SIZE_CONSTRAINTS};
use super::{PortIo, Window};
use crate::direction::{Direction, PerDirection};
use crate::interrupt::{InterruptLocked, InterruptSync};
use crate::memory::{NotificationEvents, PhysicalView};
use crate::modes::{PacketSizeConstraints, DEFAULT_AND_RAW};
use crate::platform::{LogLevel, Platform, SpinLock};
use crate::power::{DevicePower, PowerBackend};
use crate::stream::{cyclic_position, Backend, DeviceMemoryRequest, DmaBuffer};
use crate::topology::{TopologyHardware, VolumeRange};

const fn kind(direction: Direction) -> ChannelKind {
    match direction {
        Direction::Render => ChannelKind::PcmOut,
        Direction::Capture => ChannelKind::PcmIn,
    }
}

/// One bus-master channel's interrupt-lock state.
#[derive(Debug, Default)]
struct HwChannel {
    channel: Option<Channel>,
    /// The installed buffer: its segment list and, as its device memory,
    /// the descriptor list the bus master reads.
    buffer: Option<DmaBuffer>,
    last_position: u64,
    /// Where a started channel stood when the device left D0: its
    /// registers are gone, so the next RUN restarts it there
    /// ([`Channel::resume_at`]) and positions read it until then.
    held_at: Option<u64>,
}

impl HwChannel {
    /// The running channel with its segments and descriptor list.
    fn parts(&mut self) -> Option<(&mut Channel, &[Descriptor], PhysicalView<'_>, u32)> {
        let buffer = self.buffer.as_ref()?;
        let list = buffer.device_memory.as_ref()?;
        let channel = self.channel.as_mut()?;
        Some((
            channel,
            &buffer.descriptors,
            PhysicalView {
                mapping: &list.mapping,
                physical: list.physical,
            },
            buffer.size,
        ))
    }
}

#[derive(Debug, Default)]
struct HwState {
    channels: PerDirection<HwChannel>,
}

/// One channel's spin-lock state.
#[derive(Debug)]
struct SoftChannel {
    open: bool,
    state: KsState,
    has_buffer: bool,
    /// Notifications per cycle of the installed buffer (0: none).
    notifications: u32,
    started: bool,
    packet_bytes: u64,
    notified_packets: u64,
    events: NotificationEvents,
}

impl SoftChannel {
    const fn closed() -> Self {
        Self {
            open: false,
            state: KsState::Stop,
            has_buffer: false,
            notifications: 0,
            started: false,
            packet_bytes: 0,
            notified_packets: 0,
            events: NotificationEvents::new(),
        }
    }
}

#[derive(Debug)]
struct SoftState {
    channels: PerDirection<SoftChannel>,
    signals: u64,
}

/// The codec and the mixer values the topology asked for.
#[derive(Debug)]
struct MixerState {
    codec: Codec,
    master: u16,
    record_gain: u16,
}

/// Counters for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ac97Stats {
    /// Interrupts the ISR claimed.
    pub interrupts: u64,
    /// Interrupts that were not the card's (shared line).
    pub not_mine: u64,
    /// ISR channel services that failed (bookkeeping disagreed with CIV).
    pub service_errors: u64,
    /// DPCs queued through the platform.
    pub dpcs_queued: u64,
    /// Deferred steps run (queued DPCs and the fallback).
    pub deferred_runs: u64,
    /// Notification events signalled.
    pub signals: u64,
}

/// The AC'97 card: codec, both channels, ISR and deferred step.
///
/// Shared (in an `Arc`) by the wave and topology miniports and the streams.
/// The interrupt sync's context pointer is this object's address; it is
/// disconnected in `Drop` before anything else goes.
pub struct Ac97Device<P: Platform, IO: PortIo> {
    platform: P,
    io: IO,
    resources: Ac97Resources,
    /// The interrupt object and the state only the interrupt lock guards.
    hw: InterruptLocked<HwState>,
    soft: P::Lock<SoftState>,
    mixer: P::Lock<MixerState>,
    completed_bytes: PerDirection<AtomicU64>,
    deferred_pending: AtomicBool,
    interrupts: AtomicU64,
    not_mine: AtomicU64,
    service_errors: AtomicU64,
    dpcs_queued: AtomicU64,
    deferred_runs: AtomicU64,
    /// Out of D0: no register is touched (Learn: no hardware access while
    /// the device is not in D0), the ISR claims nothing, nothing opens.
    powered_down: AtomicBool,
}

/// The service routine registered with `IInterruptSync` (at DIRQL, under
/// the interrupt lock): `STATUS_SUCCESS` when the interrupt was the card's.
///
/// # Safety
///
/// `context` is the address of a live `Ac97Device<P, IO>` that stays alive
/// until the interrupt is disconnected (its `Drop` disconnects first).
#[windows_abi]
pub unsafe extern "system" fn service_routine<P: Platform, IO: PortIo>(
    _sync: *mut IInterruptSync,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: see the function's contract.
    let device = unsafe { &*context.cast::<Ac97Device<P, IO>>() };
    // SAFETY: PortCls runs service routines under the interrupt lock.
    if unsafe { device.service_interrupt() } {
        STATUS_SUCCESS
    } else {
        STATUS_UNSUCCESSFUL
    }
}

const fn hw_error(e: Ac97Error) -> NtStatus {
    match e {
        Ac97Error::CodecNotReady | Ac97Error::NoVariableRate => NtStatus::DEVICE_NOT_READY,
        Ac97Error::RateOutOfRange(_) | Ac97Error::RateNotTaken { .. } => NtStatus::NOT_SUPPORTED,
        _ => NtStatus::UNSUCCESSFUL,
    }
}

/// Linear byte position at the start of segment number `done` (counted
/// from the start of the stream).
fn completed_bytes(done: u64, segments: &[Descriptor], size: u32) -> u64 {
    let count = segments.len() as u64;
    if count == 0 {
        return 0;
    }
    let offset = usize::try_from(done % count)
        .ok()
        .and_then(|i| segments.get(i))
        .map_or(0, |s| s.buffer_offset);
    done / count * u64::from(size) + u64::from(offset)
}

impl<P: Platform, IO: PortIo> Ac97Device<P, IO> {
    /// Brings the codec up (cold reset, variable rate audio, 48 kHz both
    /// ways, unity gain) and makes the device. The interrupt is not
    /// connected yet: call [`Self::connect`] once the device is in its
    /// `Arc`. IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    ///
    /// `STATUS_DEVICE_NOT_READY` when the codec does not come up.
    pub fn new(
        platform: P,
        io: IO,
        resources: Ac97Resources,
        interrupt: InterruptSync,
    ) -> NtResult<Self> {
        let codec = Codec::bring_up(
            &mut Window::new(&io, resources.mixer_port),
            &mut Window::new(&io, resources.bus_master_port),
            MAX_RATE,
            MAX_RATE,
            &mut |us| io.stall_us(us),
        )
        .map_err(hw_error)?;
        let soft = platform.new_lock(SoftState {
            channels: PerDirection::new_with(|_| SoftChannel::closed()),
            signals: 0,
        });
        let mixer = platform.new_lock(MixerState {
            codec,
            master: nam::UNITY_GAIN,
            record_gain: nam::UNITY_GAIN,
        });
        Ok(Self {
            platform,
            io,
            resources,
            hw: InterruptLocked::new(interrupt, HwState::default()),
            soft,
            mixer,
            completed_bytes: PerDirection::new_with(|_| AtomicU64::new(0)),
            deferred_pending: AtomicBool::new(false),
            interrupts: AtomicU64::new(0),
            not_mine: AtomicU64::new(0),
            service_errors: AtomicU64::new(0),
            dpcs_queued: AtomicU64::new(0),
            deferred_runs: AtomicU64::new(0),
            powered_down: AtomicBool::new(false),
        })
    }

    /// Registers [`service_routine`] with this device as its context and
    /// connects the interrupt. IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    ///
    /// PortCls' status.
    pub fn connect(self: &Arc<Self>) -> NtResult<()> {
        let context = Arc::as_ptr(self).cast_mut().cast::<c_void>();
        // SAFETY: the context is this device, which disconnects in `Drop`
        // before its memory goes.
        unsafe {
            self.hw
                .sync()
                .register(Some(service_routine::<P, IO>), context)?;
        }
        self.hw.sync().connect()
    }

    /// The platform.
    pub const fn platform(&self) -> &P {
        &self.platform
    }

    /// The I/O windows.
    pub const fn resources(&self) -> Ac97Resources {
        self.resources
    }

    /// Writes a log line through the platform.
    pub fn log(&self, level: LogLevel, message: core::fmt::Arguments<'_>) {
        self.platform.log(level, message);
    }

    const fn bus_master(&self) -> Window<'_, IO> {
        Window::new(&self.io, self.resources.bus_master_port)
    }

    const fn mixer_window(&self) -> Window<'_, IO> {
        Window::new(&self.io, self.resources.mixer_port)
    }

    /// Runs `f` on the interrupt-lock state, under the interrupt lock.
    fn with_hw<R>(&self, f: impl FnOnce(&mut HwState, &mut Window<'_, IO>) -> R) -> NtResult<R> {
        self.hw.with(|hw| f(hw, &mut self.bus_master()))
    }

    /// The interrupt service: services every started channel (three
    /// register accesses each when it has status), refills its ring, and
    /// queues the deferred step. Returns whether the interrupt was ours.
    /// IRQL: DIRQL.
    ///
    /// # Safety
    ///
    /// Only with the interrupt lock held (PortCls' service routine call).
    pub unsafe fn service_interrupt(&self) -> bool {
        // A powered-down card raises nothing: a shared line's interrupt is
        // another device's, and its registers are not read.
        if self.powered_down.load(Ordering::Acquire) {
            self.not_mine.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // SAFETY: the caller holds the interrupt lock (contract); the
        // reference ends with this call.
        let hw = unsafe { self.hw.in_isr() };
        let mut bus = self.bus_master();
        let mut claimed = false;
        for direction in Direction::BOTH {
            let done = &self.completed_bytes[direction];
            let Some((channel, segments, mut memory, size)) = hw.channels[direction].parts() else {
                continue;
            };
            if !channel.is_running() {
                continue;
            }
            match channel.service_interrupt(&mut bus, &mut memory, segments) {
                Ok(report) if report.acknowledged != 0 => {
                    claimed = true;
                    let bytes = completed_bytes(report.completed_segments, segments, size);
                    done.store(bytes, Ordering::Release);
                }
                Ok(_) => {}
                Err(_) => {
                    // The status was acknowledged; the ring is refilled at
                    // the next interrupt.
                    claimed = true;
                    self.service_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if claimed {
            self.interrupts.fetch_add(1, Ordering::Relaxed);
            if self.platform.queue_dpc() {
                self.dpcs_queued.fetch_add(1, Ordering::Relaxed);
            } else {
                self.deferred_pending.store(true, Ordering::Release);
            }
        } else {
            self.not_mine.fetch_add(1, Ordering::Relaxed);
        }
        claimed
    }

    /// The deferred step (the DPC routine's body): signals the events of
    /// every running stream that crossed a packet end since the last run.
    /// IRQL: `<= DISPATCH_LEVEL`; no allocation.
    pub fn on_dpc(&self) {
        self.deferred_pending.store(false, Ordering::Release);
        self.deferred_runs.fetch_add(1, Ordering::Relaxed);
        self.soft.with(|s| {
            let mut signals = 0;
            for direction in Direction::BOTH {
                let channel = &mut s.channels[direction];
                let done = &self.completed_bytes[direction];
                if channel.state != KsState::Run || channel.packet_bytes == 0 {
                    continue;
                }
                let packets = done.load(Ordering::Acquire) / channel.packet_bytes;
                if packets <= channel.notified_packets {
                    continue;
                }
                channel.notified_packets = packets;
                for event in channel.events.iter() {
                    self.platform.signal_event(event);
                    signals += 1;
                }
            }
            s.signals += signals;
        });
    }

    /// Runs a deferred step the platform could not queue as a DPC.
    fn run_deferred(&self) {
        if self.deferred_pending.load(Ordering::Acquire) {
            self.on_dpc();
        }
    }

    /// Counters.
    pub fn stats(&self) -> Ac97Stats {
        Ac97Stats {
            interrupts: self.interrupts.load(Ordering::Relaxed),
            not_mine: self.not_mine.load(Ordering::Relaxed),
            service_errors: self.service_errors.load(Ordering::Relaxed),
            dpcs_queued: self.dpcs_queued.load(Ordering::Relaxed),
            deferred_runs: self.deferred_runs.load(Ordering::Relaxed),
            signals: self.soft.with(|s| s.signals),
        }
    }

    /// The back-end's counters of one channel (`None` without a buffer).
    /// IRQL: `<= DISPATCH_LEVEL`.
    pub fn channel_stats(&self, direction: Direction) -> Option<ChannelStats> {
        self.with_hw(|hw, _| hw.channels[direction].channel.as_ref().map(Channel::stats))
            .ok()
            .flatten()
    }

    // ---- streams ------------------------------------------------------

    fn set_rate(&self, direction: Direction, rate: u32) -> NtResult<()> {
        self.mixer.with(|m| {
            let mut mixer = self.mixer_window();
            match direction {
                Direction::Render if m.codec.render_rate() != rate => {
                    m.codec
                        .set_render_rate(&mut mixer, rate)
                        .map_err(hw_error)?;
                    // The back-end rewrote unity gain (a rate change may
                    // reset the volume on some codecs): restore the
                    // topology's choice.
                    wavert_core::ac97::RegisterBus::write16(
                        &mut mixer,
                        nam::MASTER_VOLUME,
                        m.master,
                    );
                }
                Direction::Capture if m.codec.capture_rate() != rate => {
                    m.codec
                        .set_capture_rate(&mut mixer, rate)
                        .map_err(hw_error)?;
                    wavert_core::ac97::RegisterBus::write16(
                        &mut mixer,
                        nam::RECORD_GAIN,
                        m.record_gain,
                    );
                }
                _ => {}
            }
            Ok(())
        })
    }

    /// Writes a mixer volume register (master or record gain).
    fn set_mixer(&self, direction: Direction, value: u16) {
        self.mixer.with(|m| {
            let register = match direction {
                Direction::Render => {
                    m.master = value;
                    nam::MASTER_VOLUME
                }
                Direction::Capture => {
                    m.record_gain = value;
                    nam::RECORD_GAIN
                }
            };
            // Out of D0 the value is kept for the re-initialisation at D0.
            if !self.powered_down.load(Ordering::Acquire) {
                wavert_core::ac97::RegisterBus::write16(&mut self.mixer_window(), register, value);
            }
        });
    }

    /// Reads a codec register (16-bit). IRQL: `<= DISPATCH_LEVEL`.
    pub fn read_mixer(&self, register: u16) -> u16 {
        self.mixer
            .with(|_| wavert_core::ac97::RegisterBus::read16(&mut self.mixer_window(), register))
    }

    /// Takes the buffer back (stopping the engine if it runs), for the
    /// stream to unmap and free at `PASSIVE_LEVEL`. Events registered on it
    /// are forgotten.
    fn take_installed(&self, direction: Direction) -> Option<DmaBuffer> {
        let powered_down = self.powered_down.load(Ordering::Acquire);
        let taken = self
            .with_hw(|hw, bus| {
                let slot = &mut hw.channels[direction];
                if let Some(mut channel) = slot.channel.take() {
                    if channel.is_running() && !powered_down && slot.held_at.is_none() {
                        channel.stop(bus);
                    }
                }
                slot.held_at = None;
                slot.buffer.take()
            })
            .ok()
            .flatten();
        self.completed_bytes[direction].store(0, Ordering::Release);
        self.update(direction, |c| {
            c.has_buffer = false;
            c.notifications = 0;
            c.started = false;
            c.packet_bytes = 0;
            c.notified_packets = 0;
            c.events = NotificationEvents::default();
        });
        taken
    }

    fn update(&self, direction: Direction, f: impl FnOnce(&mut SoftChannel)) {
        self.soft.with(|s| f(&mut s.channels[direction]));
    }

    /// The engine's linear byte position: CIV and PICB read as a
    /// consistent pair under the interrupt lock (0 when stopped), and the
    /// buffer size. Runs a pending deferred step first.
    /// IRQL: `<= DISPATCH_LEVEL`.
    fn linear_position(&self, direction: Direction) -> (u64, u32) {
        self.run_deferred();
        self.with_hw(|hw, bus| {
            let slot = &mut hw.channels[direction];
            let HwChannel {
                channel,
                buffer,
                last_position,
                held_at,
            } = slot;
            let Some(buffer) = buffer.as_ref() else {
                return (0, 0);
            };
            if let Some(held) = *held_at {
                return (held, buffer.size);
            }
            match channel.as_mut() {
                Some(channel) if channel.is_running() => {
                    // A read that never settles keeps the last good one.
                    if let Ok(position) = channel.position(bus, &buffer.descriptors, buffer.size) {
                        *last_position = position;
                    }
                    (*last_position, buffer.size)
                }
                _ => (0, buffer.size),
            }
        })
        .unwrap_or((0, 0))
    }
}

impl<P: Platform, IO: PortIo> Backend for Ac97Device<P, IO> {
    const WAVE_RENDER_FILTER: PCFILTER_DESCRIPTOR = AC97_WAVE_RENDER_FILTER;
    const WAVE_CAPTURE_FILTER: PCFILTER_DESCRIPTOR = AC97_WAVE_CAPTURE_FILTER;

    type Platform = P;

    fn platform(&self) -> &P {
        &self.platform
    }

    fn buffer_limits(&self) -> DeviceLimits {
        BUFFER_LIMITS
    }

    /// The ICH takes 32-bit buffer and list addresses.
    fn dma_reach(&self) -> u64 {
        MAX_PHYSICAL
    }

    /// One segment per page piece, split at packet ends, lengths in 16-bit
    /// samples, an interrupt on every segment.
    fn descriptor_profile(&self) -> SgProfile {
        SgProfile::AC97
    }

    /// The channel's 32-entry descriptor list (256 bytes) in one physically
    /// contiguous page below 4 GiB, uncached (the bus master reads it while
    /// the ISR writes it).
    fn device_memory(&self) -> Option<DeviceMemoryRequest> {
        Some(DeviceMemoryRequest {
            bytes: PAGE_SIZE,
            max_physical: MAX_PHYSICAL,
            cache: MmNonCached,
        })
    }

    fn hw_latency(&self, format: &AudioFormat) -> KSRTAUDIO_HWLATENCY {
        hw_latency(format.sample_rate())
    }

    /// Opens one direction for a stream (sets the converter rate).
    /// IRQL: `PASSIVE_LEVEL`.
    fn open(&self, direction: Direction, format: &AudioFormat) -> NtResult<()> {
        if self.powered_down.load(Ordering::Acquire) {
            return Err(NtStatus::DEVICE_NOT_READY);
        }
        self.soft.with(|s| {
            let channel = &mut s.channels[direction];
            if channel.open {
                return Err(NtStatus::INSUFFICIENT_RESOURCES);
            }
            channel.open = true;
            Ok(())
        })?;
        let result = self.set_rate(direction, format.sample_rate());
        if result.is_err() {
            self.update(direction, |c| *c = SoftChannel::closed());
        }
        result
    }

    /// Closes one direction, taking its buffer back. `PASSIVE_LEVEL`.
    fn close(&self, direction: Direction) -> Option<DmaBuffer> {
        let buffer = self.take_installed(direction);
        self.update(direction, |c| *c = SoftChannel::closed());
        buffer
    }

    fn can_allocate(&self, direction: Direction) -> NtResult<()> {
        let (open, has_buffer) = self
            .soft
            .with(|s| (s.channels[direction].open, s.channels[direction].has_buffer));
        if self.powered_down.load(Ordering::Acquire) {
            Err(NtStatus::DEVICE_NOT_READY)
        } else if has_buffer || !open {
            Err(NtStatus::INVALID_DEVICE_REQUEST)
        } else {
            Ok(())
        }
    }

    /// Hands a built buffer to the channel: its segment list and the
    /// descriptor list (its device memory). IRQL: `PASSIVE_LEVEL`.
    fn install_buffer(
        &self,
        direction: Direction,
        buffer: DmaBuffer,
    ) -> Result<(), (DmaBuffer, NtStatus)> {
        let Some(list_physical) = buffer.device_memory.as_ref().map(|m| m.physical) else {
            return Err((buffer, NtStatus::UNSUCCESSFUL));
        };
        let channel = match Channel::new(kind(direction), list_physical) {
            Ok(c) => c,
            Err(e) => return Err((buffer, hw_error(e))),
        };
        if let Err(status) = self.can_allocate(direction) {
            return Err((buffer, status));
        }
        let notifications = buffer.notification_count;
        let packet_bytes = if notifications == 0 {
            0
        } else {
            buffer.packet_bytes
        };
        let mut parts = Some(buffer);
        let installed = self.with_hw(|hw, _| {
            let slot = &mut hw.channels[direction];
            slot.channel = Some(channel);
            slot.buffer = parts.take();
            slot.last_position = 0;
            slot.held_at = None;
        });
        if let Err(status) = installed {
            // `None`: installed after all (the routine ran): keep it.
            return parts.map_or(Ok(()), |buffer| Err((buffer, status)));
        }
        self.update(direction, |c| {
            c.has_buffer = true;
            c.notifications = notifications;
            c.packet_bytes = u64::from(packet_bytes);
            c.notified_packets = 0;
        });
        self.log(
            LogLevel::Info,
            format_args!("AC'97 {direction:?}: descriptor list at {list_physical:#x}"),
        );
        Ok(())
    }

    fn take_buffer(&self, direction: Direction, mdl: PMDL) -> Option<DmaBuffer> {
        let ours = self
            .with_hw(|hw, _| {
                hw.channels[direction]
                    .buffer
                    .as_ref()
                    .is_some_and(|b| b.mdl.as_raw() == mdl)
            })
            .unwrap_or(false);
        if ours {
            self.take_installed(direction)
        } else {
            None
        }
    }

    /// `SetState`: RUN starts the engine (first time after STOP) or
    /// resumes it; RUN -> PAUSE clears the run bit (position kept);
    /// ACQUIRE -> STOP resets the channel (position back to 0).
    /// IRQL: `PASSIVE_LEVEL`.
    fn set_state(&self, direction: Direction, state: KSSTATE) -> NtResult<()> {
        let raw = u32::try_from(state).unwrap_or(u32::MAX);
        let to = KsState::from_raw(raw).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let (from, has_buffer, started) = self.soft.with(|s| {
            let c = &s.channels[direction];
            (c.state, c.has_buffer, c.started)
        });
        let change = transition(from, to).map_err(|_| NtStatus::INVALID_DEVICE_STATE)?;
        match change {
            Transition::Run => {
                if !has_buffer {
                    return Err(NtStatus::INVALID_DEVICE_STATE);
                }
                // Events count packets from the start of this run of DMA.
                self.update(direction, |c| c.state = KsState::Run);
                if self.powered_down.load(Ordering::Acquire) {
                    // Recorded; the engine starts at D0 (power_up).
                    self.log(
                        LogLevel::Info,
                        format_args!("AC'97 {direction:?}: RUN held until D0"),
                    );
                    return Ok(());
                }
                let result = self.with_hw(|hw, bus| {
                    let slot = &mut hw.channels[direction];
                    let held = slot.held_at.take();
                    let Some((channel, segments, mut memory, size)) = slot.parts() else {
                        return Err(Ac97Error::NotRunning);
                    };
                    match held {
                        Some(at) => channel.resume_at(bus, &mut memory, segments, size, at),
                        None if started => channel.resume(bus),
                        None => channel.start(bus, &mut memory, segments),
                    }
                })?;
                if let Err(e) = result {
                    self.update(direction, |c| c.state = KsState::Pause);
                    return Err(hw_error(e));
                }
                self.update(direction, |c| c.started = true);
            }
            Transition::PauseFromRun => {
                self.update(direction, |c| c.state = KsState::Pause);
                let powered_down = self.powered_down.load(Ordering::Acquire);
                self.with_hw(|hw, bus| {
                    let slot = &mut hw.channels[direction];
                    // A held channel is stopped already (and out of D0 its
                    // registers are not touched).
                    if slot.held_at.is_none() && !powered_down {
                        if let Some(channel) = slot.channel.as_mut() {
                            let _ = channel.pause(bus);
                        }
                    }
                })?;
            }
            Transition::Stop => {
                let powered_down = self.powered_down.load(Ordering::Acquire);
                self.with_hw(|hw, bus| {
                    let slot = &mut hw.channels[direction];
                    if let Some(channel) = slot.channel.as_mut() {
                        if powered_down || slot.held_at.is_some() {
                            // Its registers went with the power (or come
                            // back reset at D0): only the bookkeeping goes.
                            channel.forget();
                        } else if channel.is_running() {
                            channel.stop(bus);
                        }
                    }
                    slot.last_position = 0;
                    slot.held_at = None;
                })?;
                self.completed_bytes[direction].store(0, Ordering::Release);
                self.update(direction, |c| {
                    c.state = KsState::Stop;
                    c.started = false;
                    c.notified_packets = 0;
                });
            }
            _ => self.update(direction, |c| c.state = to),
        }
        self.log(
            LogLevel::Info,
            format_args!("AC'97 {direction:?}: {from:?} -> {to:?}"),
        );
        Ok(())
    }

    fn state(&self, direction: Direction) -> KsState {
        self.soft.with(|s| s.channels[direction].state)
    }

    fn position(&self, direction: Direction) -> KSAUDIO_POSITION {
        let (linear, size) = self.linear_position(direction);
        cyclic_position(linear, size)
    }

    /// `RegisterNotificationEvent`. IRQL: `PASSIVE_LEVEL`.
    fn register_event(&self, direction: Direction, event: KernelEvent) -> NtResult<()> {
        self.soft.with(|s| {
            let c = &mut s.channels[direction];
            c.events
                .register_on_buffer(c.has_buffer, c.notifications, event)
        })
    }

    /// `UnregisterNotificationEvent`. IRQL: `PASSIVE_LEVEL`.
    ///
    /// Without a buffer there is nothing to unregister: freeing it dropped
    /// the registrations (ReactOS's close frees the buffer first), so that
    /// is a success.
    fn unregister_event(&self, direction: Direction, event: KernelEvent) -> NtResult<()> {
        self.soft.with(|s| {
            let c = &mut s.channels[direction];
            c.events.unregister_on_buffer(c.has_buffer, event)
        })
    }

    fn log_prefix(&self) -> &'static str {
        "AC'97 "
    }

    /// One range, both directions.
    fn host_ranges(&self, _direction: Direction) -> &'static [DeviceRange] {
        core::slice::from_ref(&AC97_RANGE)
    }

    fn default_format(&self, _direction: Direction) -> AudioFormat {
        DEFAULT_FORMAT
    }

    /// The range, and two channels only: a mono client is mixed up by the
    /// audio engine, never handed to the device (the engines run two
    /// channels), though a `KSDATARANGE_AUDIO` cannot say "at least two".
    fn accepts(&self, _direction: Direction, format: &AudioFormat) -> bool {
        AC97_RANGE.contains(format) && format.channels() == CHANNELS
    }

    /// A PCI function.
    fn bus(&self) -> INTERFACE_TYPE {
        PCIBus
    }

    /// DEFAULT and RAW: the driver applies no processing (see
    /// [`DEFAULT_AND_RAW`] for the codec's part).
    fn signal_processing_modes(&self, _direction: Direction) -> &'static [GUID] {
        &DEFAULT_AND_RAW
    }

    fn packet_size_constraints(&self, _direction: Direction) -> PacketSizeConstraints {
        PACKET_SIZE_CONSTRAINTS
    }
}

impl<P: Platform, IO: PortIo> Ac97Device<P, IO> {
    /// The cold reset and codec set-up of D0 (as at start), then the rates
    /// of the open streams and the topology's volumes again, in the order
    /// the codec needs (volumes after rates: QEMU's model forgets them on
    /// a rate change).
    fn reinitialise_codec(&self) -> NtResult<()> {
        self.mixer.with(|m| {
            let mut mixer = self.mixer_window();
            // bring_up sets both rates (render last) and leaves unity gain:
            // the topology's choices go back on top.
            m.codec = Codec::bring_up(
                &mut mixer,
                &mut self.bus_master(),
                m.codec.render_rate(),
                m.codec.capture_rate(),
                &mut |us| self.io.stall_us(us),
            )
            .map_err(hw_error)?;
            wavert_core::ac97::RegisterBus::write16(&mut mixer, nam::MASTER_VOLUME, m.master);
            wavert_core::ac97::RegisterBus::write16(&mut mixer, nam::RECORD_GAIN, m.record_gain);
            Ok(())
        })
    }
}

impl<P: Platform, IO: PortIo> PowerBackend for Ac97Device<P, IO> {
    type Platform = P;

    fn power_platform(&self) -> &P {
        &self.platform
    }

    fn power_log_prefix(&self) -> &'static str {
        "AC'97 "
    }

    /// Pauses every started channel and keeps where it stood (its
    /// registers may not survive), then powers the codec down through its
    /// powerdown register (26h): converters, mixer, Vref and the AC-link
    /// for D3; the converters only for D1/D2 (AC'97 2.3, 5.8.3).
    fn power_down(&self, to: DevicePower) {
        let running = self
            .soft
            .with(|s| PerDirection::new_with(|d| s.channels[d].state == KsState::Run));
        let _ = self.with_hw(|hw, bus| {
            for direction in Direction::BOTH {
                let slot = &mut hw.channels[direction];
                if slot.held_at.is_some() {
                    continue;
                }
                let last = slot.last_position;
                let Some((channel, segments, _, size)) = slot.parts() else {
                    continue;
                };
                if !channel.is_running() {
                    continue;
                }
                if running[direction] {
                    let _ = channel.pause(bus);
                }
                let at = channel.paused_position(bus, segments, size).unwrap_or(last);
                slot.held_at = Some(at);
                slot.last_position = at;
            }
        });
        let value = if to == DevicePower::D3 {
            nam::POWERDOWN_D3
        } else {
            nam::POWERDOWN_CONVERTERS
        };
        self.mixer.with(|_| {
            wavert_core::ac97::RegisterBus::write16(
                &mut self.mixer_window(),
                nam::POWERDOWN,
                value,
            );
        });
        self.powered_down.store(true, Ordering::Release);
    }

    /// Cold-resets the link and sets the codec up from scratch (rates,
    /// volumes), then restarts every channel in RUN at the byte it was held
    /// at, its descriptor list and registers programmed afresh.
    fn power_up(&self, from: DevicePower, _system: Option<portcls_sys::SYSTEM_POWER_STATE>) {
        let codec = self.reinitialise_codec();
        self.powered_down.store(false, Ordering::Release);
        if let Err(status) = codec {
            self.log(
                LogLevel::Error,
                format_args!(
                    "AC'97 power: the codec did not come back from {from:?}: {:#x}",
                    status.code()
                ),
            );
            return;
        }
        let running = self
            .soft
            .with(|s| PerDirection::new_with(|d| s.channels[d].state == KsState::Run));
        for direction in Direction::BOTH {
            if !running[direction] {
                continue;
            }
            let resumed = self.with_hw(|hw, bus| {
                let slot = &mut hw.channels[direction];
                let Some(at) = slot.held_at.take() else {
                    return Ok(());
                };
                let Some((channel, segments, mut memory, size)) = slot.parts() else {
                    return Ok(());
                };
                channel.resume_at(bus, &mut memory, segments, size, at)
            });
            if let Ok(Err(e)) = resumed {
                self.log(
                    LogLevel::Error,
                    format_args!("AC'97 {direction:?}: no resume after {from:?}: {e:?}"),
                );
            }
        }
    }
}

impl<P: Platform, IO: PortIo> Drop for Ac97Device<P, IO> {
    fn drop(&mut self) {
        // No ISR may run on a device being dropped.
        self.hw.sync().disconnect();
    }
}

// ---- topology ---------------------------------------------------------------

/// 1.5 dB in 1/65536 dB: the step of every AC'97 volume register (AC'97
/// 2.3 specification, registers 02h and 1Ch).
pub const MIXER_STEP: i32 = 98_304;
/// Master volume: 5-bit attenuation per side (0 = 0 dB .. 31 = -46.5 dB).
const MASTER_STEPS: i32 = 31;
/// Record gain: 4-bit gain per side (0 = 0 dB .. 15 = +22.5 dB).
const RECORD_STEPS: i32 = 15;

/// A topology filter's volume and mute nodes on the codec.
///
/// Render drives the master volume register (02h), capture the record gain
/// register (1Ch); the PCM-out register (18h) stays at the back-end's unity
/// setting.
pub struct MixerNode<P: Platform, IO: PortIo> {
    device: Arc<Ac97Device<P, IO>>,
    direction: Direction,
}

impl<P: Platform, IO: PortIo> MixerNode<P, IO> {
    /// The node for `direction` of `device`.
    #[must_use]
    pub const fn new(device: Arc<Ac97Device<P, IO>>, direction: Direction) -> Self {
        Self { device, direction }
    }
}

/// Level in 1/65536 dB to a register step count (attenuation for master,
/// gain for record), clamped.
const fn steps(level: i32, direction: Direction) -> u16 {
    let (raw, max) = match direction {
        Direction::Render => (-(level / MIXER_STEP), MASTER_STEPS),
        Direction::Capture => (level / MIXER_STEP, RECORD_STEPS),
    };
    let clamped = if raw < 0 {
        0
    } else if raw > max {
        max
    } else {
        raw
    };
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "clamped to 0..=31 above"
    )]
    let s = clamped as u16;
    s
}

/// The register value for left/right levels and mute.
#[must_use]
pub const fn mixer_value(direction: Direction, left: i32, right: i32, muted: bool) -> u16 {
    let mute = if muted { nam::MUTE } else { 0 };
    mute | steps(left, direction) << 8 | steps(right, direction)
}

impl<P: Platform, IO: PortIo> TopologyHardware for MixerNode<P, IO> {
    fn volume_range(&self) -> VolumeRange {
        match self.direction {
            Direction::Render => VolumeRange {
                min: -MASTER_STEPS * MIXER_STEP,
                max: 0,
                step: MIXER_STEP,
            },
            Direction::Capture => VolumeRange {
                min: 0,
                max: RECORD_STEPS * MIXER_STEP,
                step: MIXER_STEP,
            },
        }
    }

    fn apply(&self, left: i32, right: i32, muted: bool) {
        self.device.set_mixer(
            self.direction,
            mixer_value(self.direction, left, right, muted),
        );
    }
}
