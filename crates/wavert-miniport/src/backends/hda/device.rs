//! [`HdaDevice`]: the HD Audio controller as every filter and stream of it
//! sees it.
//!
//! Three locks, all the platform's `DISPATCH_LEVEL` spin locks:
//!
//! * the **control lock**, outermost, taken by every entry point that
//!   changes what the hardware is doing (open, close, buffer installation,
//!   state changes, both power transitions), so a power transition and a
//!   state change or allocation are serialised, never interleaved;
//! * the **codec lock**: the [`Controller`] (CORB/RIRB state, verbs) and
//!   the amplifier values the topology asked for;
//! * the **stream lock** (`SoftState`): per direction the stream
//!   descriptor (`wavert_core::hda::stream::Stream`, with its position
//!   tracker), the installed buffer, the KS state and the events.
//!
//! The ISR needs neither: it reads INTSTS and writes each interrupting
//! stream's status byte ([`hda::acknowledge_interrupt`]: 2 register
//! accesses for one stream, 3 when both streams interrupt at once), hands
//! the stream bits to the deferred step through an atomic and queues the
//! DPC ([`Platform::queue_dpc`]). The DPC ([`HdaDevice::on_dpc`]) reads
//! each running stream's position from the DMA position buffer (memory,
//! no register access) and signals the events of a packet end crossed.
//! Events are never signalled from the ISR (`KeSetEvent` is not callable
//! at DIRQL).
//!
//! Memory: one page from [`Mmio::allocate_common`] at start holds the CORB
//! (1 KiB at 0), the RIRB (2 KiB at 0x400) and the DMA position buffer (8
//! bytes per stream descriptor at 0xC00), all 128-byte aligned (HDA spec
//! 3.3.18, 3.3.25, 3.3.32). Each buffer's descriptor list is its own device
//! memory, from the port stream.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use alloc::sync::Arc;
use portcls_sys::{
    windows_abi, IInterruptSync, MmNonCached, PCIBus, GUID, INTERFACE_TYPE, KSAUDIO_POSITION,
    KSRTAUDIO_HWLATENCY, KSRTAUDIO_HWREGISTER, KSSTATE, NTSTATUS, PCFILTER_DESCRIPTOR, PMDL,
    STATUS_SUCCESS, STATUS_UNSUCCESSFUL,
};
use wavert_com::{KernelEvent, NtResult, NtStatus};
use wavert_core::format::AudioFormat;
use wavert_core::geometry::PAGE_SIZE;
use wavert_core::hda::codec::{self, AmpCaps, AudioPath, CodecInfo, PcmFormat, Verb};
use wavert_core::hda::stream::{self as hw, resume_list, Stream, StreamProgram, StreamStats};
use wavert_core::hda::{
    self, reg, Capabilities, Controller, ControllerStats, HdaError, HwLatency, RingMemory,
    Transport, CORB_BYTES, REGISTER_WIDTH_BITS, WALL_CLOCK_HZ,
};
use wavert_core::negotiate::DeviceLimits;
use wavert_core::range::DeviceRange;
use wavert_core::sg::{encode, Descriptor, SgProfile};
use wavert_core::state::{transition, KsState, Transition};

use super::filters::{
    codec_wave_filter, CHANNELS, DEFAULT_FORMAT, HDA_RANGE, HDA_WAVE_CAPTURE_FILTER,
    HDA_WAVE_RENDER_FILTER,
};
use super::resources::HdaResources;
use super::stream::{BUFFER_LIMITS, PACKET_SIZE_CONSTRAINTS};
use super::{Bar, CommonBuffer, Mmio};
use crate::direction::{Direction, PerDirection};
use crate::filters::RuntimeWaveFilter;
use crate::interrupt::InterruptSync;
use crate::memory::{NotificationEvents, PhysicalView};
use crate::modes::{PacketSizeConstraints, DEFAULT_AND_RAW};
use crate::platform::{LogLevel, Platform, SpinLock};
use crate::power::{DevicePower, PowerBackend};
use crate::stream::{cyclic_position, Backend, DeviceMemory, DeviceMemoryRequest, DmaBuffer};
use crate::topology::{TopologyHardware, VolumeRange};

/// Bytes of the controller's common page.
pub const COMMON_BYTES: u32 = PAGE_SIZE;
/// The CORB's offset in the common page.
const CORB_OFFSET: u32 = 0;
/// The RIRB's offset (after the CORB's 1 KiB).
const RIRB_OFFSET: u32 = CORB_BYTES;
/// The DMA position buffer's offset (after the RIRB's 2 KiB).
pub const POSITIONS_OFFSET: u32 = 0xC00;
/// Entries of the BDL a buffer may have (one page of 16-byte entries: the
/// controller's 256).
const MAX_BDL_ENTRIES: usize = 256;

/// The stream tag of each direction's stream (1..=15; output and input
/// streams have their own tag spaces, HDA spec 3.3.35, but distinct tags
/// keep a log readable).
const fn tag(direction: Direction) -> u8 {
    match direction {
        Direction::Render => 1,
        Direction::Capture => 2,
    }
}

const fn hw_direction(direction: Direction) -> hw::Direction {
    match direction {
        Direction::Render => hw::Direction::Render,
        Direction::Capture => hw::Direction::Capture,
    }
}

const fn hw_error(e: HdaError) -> NtStatus {
    match e {
        HdaError::ResetTimeout { .. }
        | HdaError::NoCodec
        | HdaError::RingTimeout
        | HdaError::VerbTimeout { .. }
        | HdaError::StreamResetTimeout => NtStatus::DEVICE_NOT_READY,
        HdaError::UnsupportedFormat | HdaError::NoPath | HdaError::NoStreamDescriptor => {
            NtStatus::NOT_SUPPORTED
        }
        HdaError::BadAddress(_) => NtStatus::INSUFFICIENT_RESOURCES,
        _ => NtStatus::UNSUCCESSFUL,
    }
}

/// The stream format word's sample size for `format`: the valid bits in
/// their container (16 in 16, 20/24/32 in 32: HDA spec 3.7.1).
fn pcm_format(format: &AudioFormat) -> Option<PcmFormat> {
    let valid = format.valid_bits();
    let container_ok = match valid {
        16 => format.container_bits() == 16,
        20 | 24 | 32 => format.container_bits() == 32,
        _ => false,
    };
    container_ok.then(|| PcmFormat {
        rate: format.sample_rate(),
        bits: valid,
        channels: format.channels(),
    })
}

/// Writes BDL entry `index` of `entry` into `list` (IOC only when the
/// buffer has notifications). Returns whether it fit.
fn write_list_entry(
    list: &DeviceMemory,
    index: usize,
    entry: &Descriptor,
    notifications: u32,
) -> bool {
    let mut entry = *entry;
    entry.interrupt_on_completion &= notifications != 0;
    let mut bytes = [0u8; 16];
    let Ok(offset) = u32::try_from(index * 16) else {
        return false;
    };
    encode(&SgProfile::HDA, core::slice::from_ref(&entry), &mut bytes).is_ok()
        && list.mapping.write(offset, &bytes)
}

/// One direction's stream-lock state.
#[derive(Debug)]
struct SoftStream {
    /// The stream descriptor (`None`: the controller has none for this
    /// direction, or the codec no path).
    hw: Option<Stream>,
    open: bool,
    state: KsState,
    /// The open stream's format (its word for the stream descriptor, the
    /// rest for the converter when the codec is set up again).
    pcm: Option<PcmFormat>,
    format_word: u16,
    buffer: Option<DmaBuffer>,
    /// Notifications per cycle of the installed buffer (0: none).
    notifications: u32,
    /// Programmed and started since STOP.
    started: bool,
    /// The linear byte a started stream goes on from at its next start:
    /// set by PAUSE and by a power-down (the descriptor's registers are
    /// reprogrammed then, see [`HdaDevice::start_at`]).
    resume_at: Option<u64>,
    packet_bytes: u64,
    notified_packets: u64,
    events: NotificationEvents,
}

impl SoftStream {
    /// The linear byte its next start begins at: 0 after STOP, else where
    /// a PAUSE or power-down held it.
    fn start_position(&self) -> u64 {
        if self.started {
            self.resume_at
                .unwrap_or_else(|| self.hw.as_ref().map_or(0, Stream::last_position))
        } else {
            0
        }
    }

    const fn closed(hw: Option<Stream>) -> Self {
        Self {
            hw,
            open: false,
            state: KsState::Stop,
            pcm: None,
            format_word: 0,
            buffer: None,
            notifications: 0,
            started: false,
            resume_at: None,
            packet_bytes: 0,
            notified_packets: 0,
            events: NotificationEvents::new(),
        }
    }
}

#[derive(Debug)]
struct SoftState {
    streams: PerDirection<SoftStream>,
    signals: u64,
}

/// The codec lock's state.
#[derive(Debug)]
struct CodecState {
    controller: Controller,
    /// The amplifier payloads the topology last set (left, right), sent
    /// again after a stream's path set-up (which sets 0 dB).
    amps: PerDirection<Option<[u16; 2]>>,
}

/// Counters for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HdaStats {
    /// Interrupts the ISR claimed.
    pub interrupts: u64,
    /// Interrupts that were not the controller's (shared line).
    pub not_mine: u64,
    /// Register accesses the ISR made, claimed or not.
    pub isr_register_accesses: u64,
    /// Most register accesses one ISR call made.
    pub isr_max_register_accesses: u32,
    /// DPCs queued through the platform.
    pub dpcs_queued: u64,
    /// Deferred steps run (queued DPCs and the fallback).
    pub deferred_runs: u64,
    /// Notification events signalled.
    pub signals: u64,
    /// The controller's counters (verbs, transport fallbacks).
    pub controller: ControllerStats,
}

/// The HD Audio controller and its codec, both streams, ISR and DPC.
///
/// Shared (in an `Arc`) by the wave and topology miniports and the
/// streams. The interrupt sync's context pointer is this object's address;
/// it is disconnected in `Drop` before anything else goes.
pub struct HdaDevice<P: Platform, M: Mmio> {
    platform: P,
    mmio: M,
    resources: HdaResources,
    sync: InterruptSync,
    /// The rings and the position buffer (`None` only while dropping).
    common: Option<CommonBuffer>,
    caps: Capabilities,
    info: CodecInfo,
    /// Each direction's wave filter with the codec's formats (`None`: no
    /// path in that direction; the static filter, which opens nothing).
    filters: PerDirection<Option<RuntimeWaveFilter>>,
    fifo_bytes: PerDirection<u16>,
    codec: P::Lock<CodecState>,
    soft: P::Lock<SoftState>,
    control: P::Lock<()>,
    /// Out of D0 (from `power_down` to `power_up`): no register is touched.
    powered_down: AtomicBool,
    /// Stream descriptor bits the ISR acknowledged, for the deferred step.
    pending: AtomicU32,
    deferred_pending: AtomicBool,
    interrupts: AtomicU64,
    not_mine: AtomicU64,
    isr_accesses: AtomicU64,
    isr_max_accesses: AtomicU32,
    dpcs_queued: AtomicU64,
    deferred_runs: AtomicU64,
}

/// The service routine registered with `IInterruptSync` (at DIRQL):
/// `STATUS_SUCCESS` when the interrupt was the controller's.
///
/// # Safety
///
/// `context` is the address of a live `HdaDevice<P, M>` that stays alive
/// until the interrupt is disconnected (its `Drop` disconnects first).
#[windows_abi]
pub unsafe extern "system" fn service_routine<P: Platform, M: Mmio>(
    _sync: *mut IInterruptSync,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: see the function's contract.
    let device = unsafe { &*context.cast::<HdaDevice<P, M>>() };
    if device.service_interrupt() {
        STATUS_SUCCESS
    } else {
        STATUS_UNSUCCESSFUL
    }
}

impl<P: Platform, M: Mmio> HdaDevice<P, M> {
    /// Brings the controller up (reset, codec discovery, CORB/RIRB with the
    /// immediate interface as fallback, the position buffer), walks the
    /// codec to its render and capture paths and reads both stream
    /// descriptors' FIFO sizes. The interrupt is not connected yet: call
    /// [`Self::connect`] once the device is in its `Arc`.
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES` without memory for the rings,
    /// `STATUS_DEVICE_NOT_READY` when the controller or codec does not
    /// answer, `STATUS_NOT_SUPPORTED` for a codec without a usable path.
    pub fn new(
        platform: P,
        mmio: M,
        resources: HdaResources,
        interrupt: InterruptSync,
    ) -> NtResult<Self> {
        let caps = Capabilities::from_gcap(mmio.read16(reg::GCAP));
        let common = mmio
            .allocate_common(COMMON_BYTES, caps.max_address())
            .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        let brought = Self::bring_up(&mmio, &common);
        let (controller, info) = match brought {
            Ok(parts) => parts,
            Err(status) => {
                mmio.free_common(common);
                return Err(status);
            }
        };
        let caps = controller.capabilities();
        let mut filters = PerDirection::new_with(|_| None);
        for direction in Direction::BOTH {
            let path = match direction {
                Direction::Render => info.render,
                Direction::Capture => info.capture,
            };
            if let Some(path) = path {
                match codec_wave_filter(direction, path.converter.pcm) {
                    Ok(filter) => filters[direction] = Some(filter),
                    Err(status) => {
                        mmio.free_common(common);
                        return Err(status);
                    }
                }
            }
        }
        let hw_streams = PerDirection::new_with(|direction| {
            let index = match direction {
                Direction::Render => caps.output_descriptor(0).filter(|_| info.render.is_some()),
                Direction::Capture => caps.input_descriptor(0).filter(|_| info.capture.is_some()),
            };
            index.map(|index| Stream::new(index, hw_direction(direction)))
        });
        let fifo_bytes = PerDirection::new_with(|direction| {
            hw_streams[direction].map_or(0, |s| s.fifo_bytes(&mut Bar(&mmio)))
        });
        let soft = platform.new_lock(SoftState {
            streams: PerDirection::new_with(|d| SoftStream::closed(hw_streams[d])),
            signals: 0,
        });
        let control = platform.new_lock(());
        let codec = platform.new_lock(CodecState {
            controller,
            amps: PerDirection::new_with(|_| None),
        });
        Ok(Self {
            platform,
            mmio,
            resources,
            sync: interrupt,
            common: Some(common),
            caps,
            info,
            filters,
            fifo_bytes,
            codec,
            soft,
            control,
            powered_down: AtomicBool::new(false),
            pending: AtomicU32::new(0),
            deferred_pending: AtomicBool::new(false),
            interrupts: AtomicU64::new(0),
            not_mine: AtomicU64::new(0),
            isr_accesses: AtomicU64::new(0),
            isr_max_accesses: AtomicU32::new(0),
            dpcs_queued: AtomicU64::new(0),
            deferred_runs: AtomicU64::new(0),
        })
    }

    fn bring_up(mmio: &M, common: &CommonBuffer) -> NtResult<(Controller, CodecInfo)> {
        let mut bus = Bar(mmio);
        let mut memory = PhysicalView {
            mapping: &common.mapping,
            physical: common.physical,
        };
        let rings = RingMemory {
            corb: common.physical + u64::from(CORB_OFFSET),
            rirb: common.physical + u64::from(RIRB_OFFSET),
        };
        let mut stall = |us| mmio.stall_us(us);
        let mut controller =
            Controller::bring_up(&mut bus, &mut memory, rings, Transport::Rings, &mut stall)
                .map_err(hw_error)?;
        let address = controller.first_codec();
        let info = codec::walk(address, &mut |verb| {
            controller.command(&mut bus, &mut memory, verb, &mut stall)
        })
        .map_err(hw_error)?;
        controller
            .enable_position_buffer(&mut bus, common.physical + u64::from(POSITIONS_OFFSET))
            .map_err(hw_error)?;
        Ok((controller, info))
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
            self.sync.register(Some(service_routine::<P, M>), context)?;
        }
        self.sync.connect()
    }

    /// The platform.
    pub const fn platform(&self) -> &P {
        &self.platform
    }

    /// The register block.
    pub const fn resources(&self) -> HdaResources {
        self.resources
    }

    /// What the codec walk found.
    pub const fn codec_info(&self) -> CodecInfo {
        self.info
    }

    /// The path of `direction`, if the codec has one.
    pub const fn path(&self, direction: Direction) -> Option<AudioPath> {
        match direction {
            Direction::Render => self.info.render,
            Direction::Capture => self.info.capture,
        }
    }

    /// Writes a log line through the platform.
    pub fn log(&self, level: LogLevel, message: core::fmt::Arguments<'_>) {
        self.platform.log(level, message);
    }

    fn view(&self) -> Option<PhysicalView<'_>> {
        self.common.as_ref().map(|c| PhysicalView {
            mapping: &c.mapping,
            physical: c.physical,
        })
    }

    /// Sends `verbs` in order, under the codec lock. IRQL: `PASSIVE_LEVEL`.
    fn send(&self, verbs: &[Verb]) -> NtResult<()> {
        let mut memory = self.view().ok_or(NtStatus::DEVICE_NOT_READY)?;
        self.codec.with(|c| {
            for verb in verbs {
                c.controller
                    .command(&mut Bar(&self.mmio), &mut memory, *verb, &mut |us| {
                        self.mmio.stall_us(us);
                    })
                    .map_err(hw_error)?;
            }
            Ok(())
        })
    }

    /// The interrupt service: acknowledges every interrupting stream (one
    /// INTSTS read, one status write each), passes their bits on and
    /// queues the deferred step. Returns whether the interrupt was ours.
    /// IRQL: DIRQL; touches only registers and atomics.
    pub fn service_interrupt(&self) -> bool {
        // A powered-down controller raises nothing: on a shared line the
        // interrupt is another device's, and its registers are not read.
        if self.powered_down.load(Ordering::Acquire) {
            return false;
        }
        let report = hda::acknowledge_interrupt(&mut Bar(&self.mmio));
        self.isr_accesses
            .fetch_add(u64::from(report.register_accesses), Ordering::Relaxed);
        self.isr_max_accesses
            .fetch_max(report.register_accesses, Ordering::Relaxed);
        if !report.claimed() {
            self.not_mine.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.interrupts.fetch_add(1, Ordering::Relaxed);
        self.pending.fetch_or(report.streams, Ordering::AcqRel);
        if self.platform.queue_dpc() {
            self.dpcs_queued.fetch_add(1, Ordering::Relaxed);
        } else {
            self.deferred_pending.store(true, Ordering::Release);
        }
        true
    }

    /// The deferred step (the DPC routine's body): for every running
    /// stream with notifications, its position from the position buffer,
    /// and its events signalled if a packet end was crossed since the last
    /// run. IRQL: `<= DISPATCH_LEVEL`; no allocation, no register access.
    pub fn on_dpc(&self) {
        self.deferred_pending.store(false, Ordering::Release);
        self.deferred_runs.fetch_add(1, Ordering::Relaxed);
        let _bits = self.pending.swap(0, Ordering::AcqRel);
        self.soft.with(|s| {
            let mut signals = 0;
            for direction in Direction::BOTH {
                let c = &mut s.streams[direction];
                if c.state != KsState::Run || c.packet_bytes == 0 {
                    continue;
                }
                let linear = self.update_position(c);
                let packets = linear / c.packet_bytes;
                if packets <= c.notified_packets {
                    continue;
                }
                c.notified_packets = packets;
                for event in c.events.iter() {
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

    /// The position buffer entry of `stream` (memory the controller writes).
    fn position_entry(&self, stream: &Stream) -> u32 {
        let mut word = [0u8; 4];
        if let Some(common) = self.common.as_ref() {
            let offset = u32::try_from(stream.position_buffer_offset())
                .ok()
                .and_then(|o| o.checked_add(POSITIONS_OFFSET));
            if let Some(offset) = offset {
                let _read = common.mapping.read(offset, &mut word);
            }
        }
        u32::from_le_bytes(word)
    }

    /// Folds the stream's position buffer entry into its linear position
    /// while it runs; the last one otherwise (0 after STOP).
    fn update_position(&self, c: &mut SoftStream) -> u64 {
        let Some(stream) = c.hw.as_mut() else {
            return 0;
        };
        if !stream.is_running() {
            return stream.last_position();
        }
        let entry = self.position_entry(stream);
        // An entry beyond the buffer (a corrupt write) keeps the last one.
        stream
            .position_from_buffer(entry)
            .unwrap_or_else(|_| stream.last_position())
    }

    /// Counters.
    pub fn stats(&self) -> HdaStats {
        HdaStats {
            interrupts: self.interrupts.load(Ordering::Relaxed),
            not_mine: self.not_mine.load(Ordering::Relaxed),
            isr_register_accesses: self.isr_accesses.load(Ordering::Relaxed),
            isr_max_register_accesses: self.isr_max_accesses.load(Ordering::Relaxed),
            dpcs_queued: self.dpcs_queued.load(Ordering::Relaxed),
            deferred_runs: self.deferred_runs.load(Ordering::Relaxed),
            signals: self.soft.with(|s| s.signals),
            controller: self.codec.with(|c| c.controller.stats()),
        }
    }

    /// The stream descriptor's counters of `direction` (`None` without
    /// one). IRQL: `<= DISPATCH_LEVEL`.
    pub fn stream_stats(&self, direction: Direction) -> Option<StreamStats> {
        self.soft
            .with(|s| s.streams[direction].hw.as_ref().map(Stream::stats))
    }

    fn update(&self, direction: Direction, f: impl FnOnce(&mut SoftStream)) {
        self.soft.with(|s| f(&mut s.streams[direction]));
    }

    /// Turns the stream descriptor's interrupt on or off (INTCTL, under the
    /// codec lock so both directions' read-modify-writes never interleave).
    fn stream_interrupt(&self, direction: Direction, enabled: bool) {
        let index = self
            .soft
            .with(|s| s.streams[direction].hw.map(|h| h.index()));
        if let Some(index) = index {
            self.codec.with(|c| {
                c.controller
                    .set_stream_interrupt(&mut Bar(&self.mmio), index, enabled);
            });
        }
    }

    /// Takes the buffer back (stopping the stream if it runs), for the
    /// stream to unmap and free at `PASSIVE_LEVEL`. Events registered on it
    /// are forgotten.
    fn take_installed(&self, direction: Direction) -> Option<DmaBuffer> {
        let powered = !self.powered_down.load(Ordering::Acquire);
        let (buffer, was_started) = self.soft.with(|s| {
            let c = &mut s.streams[direction];
            let was_started = c.started;
            if let Some(stream) = c.hw.as_mut().filter(|_| c.started) {
                if powered {
                    let _stopped = stream.stop(&mut Bar(&self.mmio), &mut |us| {
                        self.mmio.stall_us(us);
                    });
                } else {
                    stream.forget();
                }
            }
            c.started = false;
            c.resume_at = None;
            c.notifications = 0;
            c.packet_bytes = 0;
            c.notified_packets = 0;
            c.events = NotificationEvents::default();
            (c.buffer.take(), was_started)
        });
        if was_started && powered {
            self.stream_interrupt(direction, false);
        }
        buffer
    }

    /// Linear position of `direction` and its buffer size (0, 0 without a
    /// buffer). Runs a pending deferred step first. IRQL:
    /// `<= DISPATCH_LEVEL`; no register access.
    fn linear_position(&self, direction: Direction) -> (u64, u32) {
        self.run_deferred();
        self.soft.with(|s| {
            let c = &mut s.streams[direction];
            let Some(size) = c.buffer.as_ref().map(|b| b.size) else {
                return (0, 0);
            };
            (self.update_position(c), size)
        })
    }

    /// Programs the stream from its buffer and starts it at linear byte
    /// `linear` (0 at the first RUN after STOP; the held byte after PAUSE or
    /// a power loss): resets the descriptor, writes the buffer's list
    /// rotated to start at the first 128-byte boundary at or after that
    /// byte ([`resume_list`]), CBL, LVI, format, BDL address and tag, zeroes
    /// its position buffer entry and starts it.
    ///
    /// Why every start reprograms: after a power loss the registers are
    /// gone, and after a plain PAUSE a controller may start again from the
    /// top of its list (QEMU's parses the list and zeroes LPIB at every RUN,
    /// `intel_hda_parse_bdl`); the spec does not say it goes on. The bytes
    /// between the held byte and the boundary (under 128) are skipped: a
    /// render stream does not play them, a capture stream gets them as
    /// silence.
    fn start_at(&self, direction: Direction, linear: u64) -> NtResult<()> {
        let common = self.common.as_ref().ok_or(NtStatus::DEVICE_NOT_READY)?;
        self.stream_interrupt(direction, true);
        let result = self.soft.with(|s| {
            let c = &mut s.streams[direction];
            let (Some(stream), Some(buffer)) = (c.hw.as_mut(), c.buffer.as_ref()) else {
                return Err(NtStatus::INVALID_DEVICE_STATE);
            };
            let list = buffer
                .device_memory
                .as_ref()
                .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
            let size = buffer.size;
            let offset = u32::try_from(linear % u64::from(size.max(1)))
                .map_err(|_| NtStatus::UNSUCCESSFUL)?;
            let notifications = c.notifications;
            let point = resume_list(
                &buffer.descriptors,
                size,
                offset,
                MAX_BDL_ENTRIES,
                &mut |index, entry| write_list_entry(list, index, entry, notifications),
            )
            .map_err(hw_error)?;
            if direction == Direction::Capture && point.skipped > 0 {
                // Not recorded: the client reads silence there, not the
                // last cycle's bytes (every HD Audio format is signed).
                let first = point.skipped.min(size - offset);
                let _ = buffer.mapping.zero(offset, first);
                let _ = buffer.mapping.zero(0, point.skipped - first);
            }
            let program = StreamProgram {
                bdl_physical: list.physical,
                entries: point.entries,
                cyclic_bytes: size,
                format: c.format_word,
                tag: tag(direction),
            };
            let mut bus = Bar(&self.mmio);
            stream
                .program_resuming(
                    &mut bus,
                    program,
                    linear + u64::from(point.skipped),
                    &mut |us| self.mmio.stall_us(us),
                )
                .map_err(hw_error)?;
            // The controller writes the entry only once data moves: a
            // stale value from an earlier run must not read as progress.
            let entry = u32::try_from(stream.position_buffer_offset())
                .ok()
                .and_then(|o| o.checked_add(POSITIONS_OFFSET))
                .ok_or(NtStatus::UNSUCCESSFUL)?;
            let _zeroed = common.mapping.zero(entry, 4);
            stream.start(&mut bus).map_err(hw_error)?;
            c.started = true;
            c.resume_at = None;
            Ok(())
        });
        if result.is_err() {
            self.stream_interrupt(direction, false);
        }
        result
    }

    /// Powers and enables `direction`'s path, gives the converter the
    /// stream's tag and `pcm`, and restores the topology's amplifier
    /// setting (at open, and again after a power loss).
    fn set_up_path(&self, direction: Direction, pcm: PcmFormat) -> NtResult<()> {
        let path = self.path(direction).ok_or(NtStatus::NOT_SUPPORTED)?;
        let mut verbs = [Verb::decode(0); 7];
        let n = codec::path_setup_verbs(
            &self.info,
            &path,
            direction == Direction::Render,
            tag(direction),
            &pcm,
            &mut verbs,
        )
        .map_err(hw_error)?;
        self.send(verbs.get(..n).unwrap_or(&[]))?;
        let amps = self.codec.with(|c| c.amps[direction]);
        amps.map_or(Ok(()), |payloads| {
            self.send(&payloads.map(|p| {
                Verb::short_id(
                    self.info.address,
                    path.converter.node,
                    codec::id::SET_AMP_GAIN_MUTE,
                    p,
                )
            }))
        })
    }

    /// Stops a started stream where it stands (PAUSE, a power-down): its
    /// position read last, its run bit cleared if `powered` and it runs,
    /// and the byte kept for its next start (a stream already held keeps
    /// the byte it was held at). Under the stream lock.
    fn hold(&self, c: &mut SoftStream, powered: bool) {
        if !c.started {
            return;
        }
        let held = self.update_position(c);
        if let Some(h) = c.hw.as_mut().filter(|h| powered && h.is_running()) {
            let _halted = h.halt(&mut Bar(&self.mmio), &mut |us| self.mmio.stall_us(us));
        }
        c.resume_at.get_or_insert(held);
    }

    /// The state change of [`Backend::set_state`], under the control lock.
    /// Returns the state changed from.
    fn change_state(&self, direction: Direction, to: KsState) -> NtResult<KsState> {
        let (from, has_buffer) = self.soft.with(|s| {
            let c = &s.streams[direction];
            (c.state, c.buffer.is_some())
        });
        let change = transition(from, to).map_err(|_| NtStatus::INVALID_DEVICE_STATE)?;
        let powered = !self.powered_down.load(Ordering::Acquire);
        let mut bus = Bar(&self.mmio);
        match change {
            Transition::Run => {
                if !has_buffer {
                    return Err(NtStatus::INVALID_DEVICE_STATE);
                }
                if powered {
                    let at = self.soft.with(|s| s.streams[direction].start_position());
                    self.start_at(direction, at)?;
                }
                self.update(direction, |c| c.state = KsState::Run);
            }
            Transition::PauseFromRun => {
                // The position is read last before the run bit goes, so a
                // pause freezes where the stream stood.
                self.soft.with(|s| {
                    let c = &mut s.streams[direction];
                    c.state = KsState::Pause;
                    self.hold(c, powered);
                });
            }
            Transition::Stop => {
                let was_started = self.soft.with(|s| {
                    let c = &mut s.streams[direction];
                    let was_started = c.started;
                    if let Some(h) = c.hw.as_mut().filter(|_| was_started) {
                        if powered {
                            let _stopped = h.stop(&mut bus, &mut |us| self.mmio.stall_us(us));
                        } else {
                            h.forget();
                        }
                    }
                    c.state = KsState::Stop;
                    c.started = false;
                    c.resume_at = None;
                    c.notified_packets = 0;
                    was_started
                });
                if was_started && powered {
                    self.stream_interrupt(direction, false);
                }
            }
            _ => self.update(direction, |c| c.state = to),
        }
        Ok(from)
    }

    /// Sets a converter amplifier (the topology's volume and mute).
    fn set_amplifier(&self, direction: Direction, payloads: [u16; 2]) {
        let Some(path) = self.path(direction) else {
            return;
        };
        self.codec.with(|c| c.amps[direction] = Some(payloads));
        // Out of D0 the setting is kept for the path's set-up at D0.
        if self.powered_down.load(Ordering::Acquire) {
            return;
        }
        let node = path.converter.node;
        let verbs = payloads
            .map(|p| Verb::short_id(self.info.address, node, codec::id::SET_AMP_GAIN_MUTE, p));
        if let Err(status) = self.send(&verbs) {
            self.log(
                LogLevel::Error,
                format_args!(
                    "HD Audio {direction:?}: amplifier not set: {:#x}",
                    status.code()
                ),
            );
        }
    }
}

impl<P: Platform, M: Mmio> Backend for HdaDevice<P, M> {
    const WAVE_RENDER_FILTER: PCFILTER_DESCRIPTOR = HDA_WAVE_RENDER_FILTER;
    const WAVE_CAPTURE_FILTER: PCFILTER_DESCRIPTOR = HDA_WAVE_CAPTURE_FILTER;

    type Platform = P;

    fn platform(&self) -> &P {
        &self.platform
    }

    fn buffer_limits(&self) -> DeviceLimits {
        BUFFER_LIMITS
    }

    /// 64-bit buffer addresses when GCAP says so, else 32-bit.
    fn dma_reach(&self) -> u64 {
        self.caps.max_address()
    }

    /// One entry per contiguous piece, split at packet ends, IOC at packet
    /// ends, 128-byte aligned list.
    fn descriptor_profile(&self) -> SgProfile {
        SgProfile::HDA
    }

    /// The buffer descriptor list: one page (256 entries), contiguous,
    /// uncached, within the controller's reach.
    fn device_memory(&self) -> Option<DeviceMemoryRequest> {
        Some(DeviceMemoryRequest {
            bytes: PAGE_SIZE,
            max_physical: self.caps.max_address(),
            cache: MmNonCached,
        })
    }

    /// The render side's figures (see [`Backend::hw_latency_of`]).
    fn hw_latency(&self, format: &AudioFormat) -> KSRTAUDIO_HWLATENCY {
        self.hw_latency_of(Direction::Render, format)
    }

    /// The stream descriptor's FIFO (`SDnFIFOS`, read at start) and the
    /// path's widget delays (converter and pin, audio widget capabilities
    /// bits 19:16) at the stream's rate; no chipset delay beyond the FIFO.
    fn hw_latency_of(&self, direction: Direction, format: &AudioFormat) -> KSRTAUDIO_HWLATENCY {
        let delay = self.path(direction).map_or(0, |p| p.delay_samples());
        let figures = HwLatency::new(self.fifo_bytes[direction], delay, format.sample_rate());
        KSRTAUDIO_HWLATENCY {
            FifoSize: figures.fifo_bytes,
            ChipsetDelay: figures.chipset_delay_hns,
            CodecDelay: figures.codec_delay_hns,
        }
    }

    /// Opens `direction`: powers and enables the path, gives the converter
    /// the stream's tag and format word, and restores the topology's
    /// amplifier setting. IRQL: `PASSIVE_LEVEL`.
    fn open(&self, direction: Direction, format: &AudioFormat) -> NtResult<()> {
        self.path(direction).ok_or(NtStatus::NOT_SUPPORTED)?;
        let pcm = pcm_format(format).ok_or(NtStatus::NOT_SUPPORTED)?;
        let word = pcm.encode().map_err(hw_error)?;
        self.control.with(|()| {
            if self.powered_down.load(Ordering::Acquire) {
                return Err(NtStatus::DEVICE_NOT_READY);
            }
            self.soft.with(|s| {
                let c = &mut s.streams[direction];
                if c.hw.is_none() {
                    return Err(NtStatus::NOT_SUPPORTED);
                }
                if c.open {
                    return Err(NtStatus::INSUFFICIENT_RESOURCES);
                }
                c.open = true;
                c.pcm = Some(pcm);
                c.format_word = word;
                Ok(())
            })?;
            let result = self.set_up_path(direction, pcm);
            if result.is_err() {
                self.update(direction, |c| *c = SoftStream::closed(c.hw));
            }
            result
        })
    }

    /// Closes `direction` (detaching the converter from its stream tag),
    /// taking its buffer back. IRQL: `PASSIVE_LEVEL`.
    fn close(&self, direction: Direction) -> Option<DmaBuffer> {
        self.control.with(|()| {
            let buffer = self.take_installed(direction);
            let was_open = self.soft.with(|s| {
                let c = &mut s.streams[direction];
                let was_open = c.open;
                *c = SoftStream::closed(c.hw);
                was_open
            });
            let powered = !self.powered_down.load(Ordering::Acquire);
            if let Some(path) = self.path(direction).filter(|_| was_open && powered) {
                let _ = self.send(&[codec::path_release_verb(&self.info, &path)]);
            }
            buffer
        })
    }

    fn can_allocate(&self, direction: Direction) -> NtResult<()> {
        if self.powered_down.load(Ordering::Acquire) {
            return Err(NtStatus::DEVICE_NOT_READY);
        }
        self.soft.with(|s| {
            let c = &s.streams[direction];
            if c.buffer.is_some() || !c.open {
                Err(NtStatus::INVALID_DEVICE_REQUEST)
            } else if c.state != KsState::Stop {
                Err(NtStatus::INVALID_DEVICE_STATE)
            } else {
                Ok(())
            }
        })
    }

    /// Checks the buffer's descriptor list against the controller's (at
    /// most 256 entries, device memory for it) and keeps the buffer; the
    /// list is written and the stream programmed at each start
    /// ([`HdaDevice::start_at`]). IRQL: `PASSIVE_LEVEL`.
    fn install_buffer(
        &self,
        direction: Direction,
        buffer: DmaBuffer,
    ) -> Result<(), (DmaBuffer, NtStatus)> {
        self.control.with(|()| {
            if let Err(status) = self.can_allocate(direction) {
                return Err((buffer, status));
            }
            let Some(list_physical) = buffer.device_memory.as_ref().map(|l| l.physical) else {
                return Err((buffer, NtStatus::UNSUCCESSFUL));
            };
            if buffer.descriptors.is_empty() || buffer.descriptors.len() > MAX_BDL_ENTRIES {
                return Err((buffer, NtStatus::INSUFFICIENT_RESOURCES));
            }
            let notifications = buffer.notification_count;
            let packet_bytes = if notifications == 0 {
                0
            } else {
                u64::from(buffer.packet_bytes)
            };
            let mut parts = Some(buffer);
            self.update(direction, |c| {
                c.buffer = parts.take();
                c.notifications = notifications;
                c.packet_bytes = packet_bytes;
                c.notified_packets = 0;
                c.started = false;
                c.resume_at = None;
            });
            self.log(
                LogLevel::Info,
                format_args!("HD Audio {direction:?}: BDL at {list_physical:#x}"),
            );
            Ok(())
        })
    }

    fn take_buffer(&self, direction: Direction, mdl: PMDL) -> Option<DmaBuffer> {
        self.control.with(|()| {
            let ours = self.soft.with(|s| {
                s.streams[direction]
                    .buffer
                    .as_ref()
                    .is_some_and(|b| b.mdl.as_raw() == mdl)
            });
            if ours {
                self.take_installed(direction)
            } else {
                None
            }
        })
    }

    /// `SetState`: RUN programs and starts the stream descriptor at the
    /// position it stands at (0 after STOP, the held byte after PAUSE:
    /// [`HdaDevice::start_at`]); RUN -> PAUSE clears its run bit and holds
    /// the position; ACQUIRE -> STOP resets it (position back to 0). Out of
    /// D0 the state is recorded and no register is touched: a RUN starts at
    /// D0. IRQL: `PASSIVE_LEVEL`.
    fn set_state(&self, direction: Direction, state: KSSTATE) -> NtResult<()> {
        let raw = u32::try_from(state).unwrap_or(u32::MAX);
        let to = KsState::from_raw(raw).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let from = self.control.with(|()| self.change_state(direction, to))?;
        self.log(
            LogLevel::Info,
            format_args!("HD Audio {direction:?}: {from:?} -> {to:?}"),
        );
        Ok(())
    }

    fn state(&self, direction: Direction) -> KsState {
        self.soft.with(|s| s.streams[direction].state)
    }

    /// From the DMA position buffer (memory): no register access.
    fn position(&self, direction: Direction) -> KSAUDIO_POSITION {
        let (linear, size) = self.linear_position(direction);
        cyclic_position(linear, size)
    }

    fn register_event(&self, direction: Direction, event: KernelEvent) -> NtResult<()> {
        self.soft.with(|s| {
            let c = &mut s.streams[direction];
            c.events
                .register_on_buffer(c.buffer.is_some(), c.notifications, event)
        })
    }

    /// Without a buffer there is nothing to unregister (freeing it dropped
    /// the registrations), so that is a success.
    fn unregister_event(&self, direction: Direction, event: KernelEvent) -> NtResult<()> {
        self.soft.with(|s| {
            let c = &mut s.streams[direction];
            c.events.unregister_on_buffer(c.buffer.is_some(), event)
        })
    }

    /// The stream descriptor's DMA position buffer entry (HDA spec 3.6.1):
    /// 32 bits, the controller's LPIB (a byte offset in the cyclic buffer,
    /// wrapping at CBL), written by the controller as data moves; accuracy
    /// the descriptor's FIFO (`SDnFIFOS`). Only with a buffer.
    fn position_register(&self, direction: Direction) -> NtResult<KSRTAUDIO_HWREGISTER> {
        let common = self.common.as_ref().ok_or(NtStatus::DEVICE_NOT_READY)?;
        let offset = self.soft.with(|s| {
            let c = &s.streams[direction];
            if c.buffer.is_none() {
                return Err(NtStatus::INVALID_DEVICE_STATE);
            }
            c.hw.as_ref()
                .and_then(|h| u32::try_from(h.position_buffer_offset()).ok())
                .and_then(|o| o.checked_add(POSITIONS_OFFSET))
                .ok_or(NtStatus::NOT_SUPPORTED)
        })?;
        let register = common
            .mapping
            .address_of(offset, 4)
            .ok_or(NtStatus::UNSUCCESSFUL)?;
        Ok(KSRTAUDIO_HWREGISTER {
            Register: register.as_ptr().cast::<c_void>(),
            Width: REGISTER_WIDTH_BITS,
            Numerator: 0,
            Denominator: 0,
            Accuracy: u32::from(self.fifo_bytes[direction]),
        })
    }

    /// WALCLK (HDA spec 3.3.16): 32 bits at 24 MHz, when the BAR is mapped
    /// memory ([`Mmio::register_address`]).
    fn clock_register(&self, _direction: Direction) -> NtResult<KSRTAUDIO_HWREGISTER> {
        let register = self
            .mmio
            .register_address(reg::WALCLK)
            .ok_or(NtStatus::NOT_SUPPORTED)?;
        let (numerator, denominator) = WALL_CLOCK_HZ;
        Ok(KSRTAUDIO_HWREGISTER {
            Register: register.as_ptr().cast::<c_void>(),
            Width: REGISTER_WIDTH_BITS,
            Numerator: u64::from(numerator),
            Denominator: u64::from(denominator),
            Accuracy: 1,
        })
    }

    fn log_prefix(&self) -> &'static str {
        "HD Audio "
    }

    /// The codec's formats ([`super::filters::codec_ranges`]), or the static envelope for
    /// a direction without a path.
    fn host_ranges(&self, direction: Direction) -> &[DeviceRange] {
        self.filters[direction].as_ref().map_or(
            core::slice::from_ref(&HDA_RANGE),
            RuntimeWaveFilter::device_ranges,
        )
    }

    fn runtime_wave_filter(&self, direction: Direction) -> Option<&RuntimeWaveFilter> {
        self.filters[direction].as_ref()
    }

    fn default_format(&self, _direction: Direction) -> AudioFormat {
        DEFAULT_FORMAT
    }

    /// Within the range, stereo, and a rate and sample size the path's
    /// converter lists (its PCM parameter).
    fn accepts(&self, direction: Direction, format: &AudioFormat) -> bool {
        let Some(path) = self.path(direction) else {
            return false;
        };
        let Some(pcm) = pcm_format(format) else {
            return false;
        };
        format.channels() == CHANNELS
            && self
                .host_ranges(direction)
                .iter()
                .any(|r| r.contains(format))
            && path.converter.pcm.has_rate(pcm.rate)
            && path.converter.pcm.has_bits(pcm.bits)
            && pcm.encode().is_ok()
    }

    /// A PCI function.
    fn bus(&self) -> INTERFACE_TYPE {
        PCIBus
    }

    /// DEFAULT and RAW: the driver applies no processing.
    fn signal_processing_modes(&self, _direction: Direction) -> &'static [GUID] {
        &DEFAULT_AND_RAW
    }

    fn packet_size_constraints(&self, _direction: Direction) -> PacketSizeConstraints {
        PACKET_SIZE_CONSTRAINTS
    }
}

impl<P: Platform, M: Mmio> PowerBackend for HdaDevice<P, M> {
    type Platform = P;

    fn power_platform(&self) -> &P {
        &self.platform
    }

    fn power_log_prefix(&self) -> &'static str {
        "HD Audio "
    }

    /// Halts every started stream and keeps the byte it stood at (its
    /// registers may not survive), then sends the audio function group to
    /// `to` (`Set Power State`, HDA spec 7.3.3.10: PS-Set 1..3). From here
    /// on no register is touched until [`Self::power_up`].
    fn power_down(&self, to: DevicePower) {
        self.control.with(|()| {
            self.soft.with(|s| {
                for direction in Direction::BOTH {
                    self.hold(&mut s.streams[direction], true);
                }
            });
            let state = match to {
                DevicePower::D0 => 0,
                DevicePower::D1 => 1,
                DevicePower::D2 => 2,
                DevicePower::D3 => 3,
            };
            let verb = Verb::long_id(
                self.info.address,
                self.info.function_group,
                codec::id::SET_POWER_STATE,
                state,
            );
            if let Err(status) = self.send(&[verb]) {
                self.log(
                    LogLevel::Error,
                    format_args!(
                        "HD Audio power: the codec did not take {to:?}: {:#x}",
                        status.code()
                    ),
                );
            }
            self.powered_down.store(true, Ordering::Release);
        });
    }

    /// Brings the controller up from scratch as at start (controller reset,
    /// which resets the link and the codec; CORB/RIRB; the position
    /// buffer), sets every open stream's path up again (power, pin,
    /// converter format and tag, the topology's amplifier setting), then
    /// starts every stream in RUN at the byte it was held at
    /// ([`HdaDevice::start_at`]). A paused stream goes on at its next RUN.
    /// If the controller does not come back, the device stays as in D3 (no
    /// register touched, positions held) and the failure is logged.
    fn power_up(&self, from: DevicePower, _system: Option<portcls_sys::SYSTEM_POWER_STATE>) {
        self.control.with(|()| {
            let Some(common) = self.common.as_ref() else {
                return;
            };
            match Self::bring_up(&self.mmio, common) {
                Ok((controller, _info)) => self.codec.with(|c| c.controller = controller),
                Err(status) => {
                    self.log(
                        LogLevel::Error,
                        format_args!(
                            "HD Audio power: the controller did not come back from {from:?}: \
                             {:#x}",
                            status.code()
                        ),
                    );
                    return;
                }
            }
            self.powered_down.store(false, Ordering::Release);
            for direction in Direction::BOTH {
                let (pcm, run) = self.soft.with(|s| {
                    let c = &s.streams[direction];
                    let pcm = c.pcm.filter(|_| c.open);
                    let run =
                        (c.state == KsState::Run && c.buffer.is_some()).then(|| c.start_position());
                    (pcm, run)
                });
                let Some(pcm) = pcm else {
                    continue;
                };
                let resumed = self
                    .set_up_path(direction, pcm)
                    .and_then(|()| run.map_or(Ok(()), |at| self.start_at(direction, at)));
                if let Err(status) = resumed {
                    self.log(
                        LogLevel::Error,
                        format_args!(
                            "HD Audio {direction:?}: no resume after {from:?}: {:#x}",
                            status.code()
                        ),
                    );
                }
            }
        });
    }
}

impl<P: Platform, M: Mmio> Drop for HdaDevice<P, M> {
    fn drop(&mut self) {
        // No ISR may run on a device being dropped.
        self.sync.disconnect();
        // The controller stops writing the position buffer and the RIRB
        // before their page goes (out of D0 it writes nothing, and its
        // registers are not touched).
        if !self.powered_down.load(Ordering::Acquire) {
            let mut bus = Bar(&self.mmio);
            self.codec
                .with(|c| c.controller.disable_position_buffer(&mut bus));
            wavert_core::bus::RegisterBus::write8(&mut bus, reg::CORBCTL, 0);
            wavert_core::bus::RegisterBus::write8(&mut bus, reg::RIRBCTL, 0);
        }
        if let Some(common) = self.common.take() {
            self.mmio.free_common(common);
        }
    }
}

// ---- topology ---------------------------------------------------------------

/// A topology filter's volume and mute on the path's converter amplifier.
///
/// The DAC's output amplifier or the ADC's input amplifier, over the
/// amplifier's own step range (its capabilities parameter, HDA spec
/// 7.3.4.10: offset, steps, step size in 0.25 dB, mute).
pub struct AmplifierNode<P: Platform, M: Mmio> {
    device: Arc<HdaDevice<P, M>>,
    direction: Direction,
    amp: AmpCaps,
}

impl<P: Platform, M: Mmio> AmplifierNode<P, M> {
    /// The node for `direction`, if its converter has an amplifier.
    #[must_use]
    pub fn new(device: Arc<HdaDevice<P, M>>, direction: Direction) -> Option<Self> {
        let amp = device.path(direction)?.converter.amp?;
        Some(Self {
            device,
            direction,
            amp,
        })
    }
}

/// The gain step for `level` (1/65536 dB) on `amp`, clamped to its range.
#[must_use]
pub const fn gain_step(amp: AmpCaps, level: i32) -> u16 {
    let (min, _, step) = amp.range_db_fixed();
    let raw = if step <= 0 {
        0
    } else {
        (level.saturating_sub(min)) / step
    };
    let steps = amp.steps() as i32;
    let clamped = if raw < 0 {
        0
    } else if raw > steps {
        steps
    } else {
        raw
    };
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "clamped to 0..=127 above"
    )]
    let s = clamped as u16;
    s
}

/// The `Set Amplifier Gain/Mute` payloads (left, right) for `direction`'s
/// converter (HDA spec 7.3.3.7).
#[must_use]
pub const fn amp_payloads(
    direction: Direction,
    amp: AmpCaps,
    left: i32,
    right: i32,
    muted: bool,
) -> [u16; 2] {
    let side = match direction {
        Direction::Render => codec::id::AMP_SET_OUTPUT,
        Direction::Capture => codec::id::AMP_SET_INPUT,
    };
    let mute = if muted && amp.can_mute() {
        codec::id::AMP_MUTE
    } else {
        0
    };
    [
        side | codec::id::AMP_SET_LEFT | mute | gain_step(amp, left),
        side | codec::id::AMP_SET_RIGHT | mute | gain_step(amp, right),
    ]
}

impl<P: Platform, M: Mmio> TopologyHardware for AmplifierNode<P, M> {
    fn volume_range(&self) -> VolumeRange {
        let (min, max, step) = self.amp.range_db_fixed();
        VolumeRange { min, max, step }
    }

    fn apply(&self, left: i32, right: i32, muted: bool) {
        self.device.set_amplifier(
            self.direction,
            amp_payloads(self.direction, self.amp, left, right, muted),
        );
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]
mod tests {
    use super::*;

    /// QEMU's amplifier: 0x4A steps of 1 dB, 0 dB at the top, mute.
    const QEMU_AMP: AmpCaps = AmpCaps((1 << 31) | (3 << 16) | (0x4A << 8) | 0x4A);

    #[test]
    fn levels_map_onto_the_amplifier_steps() {
        let (min, max, step) = QEMU_AMP.range_db_fixed();
        assert_eq!((min, max, step), (-74 * 65536, 0, 65536));
        assert_eq!(gain_step(QEMU_AMP, 0), 0x4A);
        assert_eq!(gain_step(QEMU_AMP, -65536), 0x49);
        assert_eq!(gain_step(QEMU_AMP, i32::MIN), 0);
        assert_eq!(gain_step(QEMU_AMP, 10 * 65536), 0x4A, "clamped at the top");
        let [left, right] = amp_payloads(Direction::Render, QEMU_AMP, 0, -74 * 65536, true);
        assert_eq!(left, 0xA000 | 0x80 | 0x4A);
        assert_eq!(right, 0x9000 | 0x80);
    }

    #[test]
    fn formats_need_their_container() {
        let ok = AudioFormat::extensible(wavert_core::format::SampleType::Pcm, 2, 48_000, 32, 24)
            .unwrap();
        assert_eq!(pcm_format(&ok).map(|f| f.bits), Some(24));
        let packed =
            AudioFormat::extensible(wavert_core::format::SampleType::Pcm, 2, 48_000, 24, 24)
                .unwrap();
        assert_eq!(pcm_format(&packed), None);
    }
}
