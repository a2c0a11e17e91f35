//! Back-ends that misbehave on purpose.
//!
//! The product's virtual cable ([`FaultyCable`]) and AC'97
//! ([`FaultyAc97`]) behind [`Backend`] decorators that inject one fault
//! each, so the emulator's own checks can be seen to fail when a device
//! breaks a rule.
//!
//! It goes through the real shared stream, wave miniport, topology miniport
//! and adapter (`wavert_miniport::adapter::register_subdevices`): only the
//! fault is different from the product.

use std::sync::{Arc, Mutex};

use portcls_sys::{
    AUDIO_SIGNALPROCESSINGMODE_DEFAULT, GUID, INTERFACE_TYPE, KSAUDIO_POSITION,
    KSRTAUDIO_HWLATENCY, KSSTATE, KSSTATE_ACQUIRE, KSSTATE_PAUSE, KSSTATE_RUN, KSSTATE_STOP,
    PCFILTER_DESCRIPTOR, PMDL,
};
use wavert_com::{KernelEvent, NtResult, NtStatus};
use wavert_core::format::AudioFormat;
use wavert_core::negotiate::DeviceLimits;
use wavert_core::range::DeviceRange;
use wavert_core::sg::SgProfile;
use wavert_core::state::KsState;
use wavert_miniport::ac97::{Ac97Device, PortIo};
use wavert_miniport::adapter::{register_subdevices, SUBDEVICES};
use wavert_miniport::filters::RuntimeWaveFilter;
use wavert_miniport::memory::Mapping;
use wavert_miniport::modes::PacketSizeConstraints;
use wavert_miniport::stream::{DeviceMemoryRequest, DmaBuffer};
use wavert_miniport::topology::TopologyMiniport;
use wavert_miniport::{
    Backend, Direction, DmaMode, PerDirection, Platform, SpinLock, VirtualCable,
};

use crate::cable::{
    finish_start, new_cable, CableAdapter, CableOptions, EmuLock, EmuPlatform, EmuPortCls,
};
use crate::machine::{lock, Machine};

/// The fault a [`FaultyCable`] injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No fault: the control every fault test runs first, so that the
    /// check's failure is the fault's doing.
    None,
    /// The capture DMA walks its descriptors in reverse order (a page-order
    /// bug): the capture holds the right bytes in the wrong places.
    ReversedCaptureDescriptors,
    /// Event registration is accepted, but no event is ever signalled.
    NoNotifications,
    /// A freed buffer's pages, MDL and mapping are never given back.
    LeakBuffer,
    /// RUN -> PAUSE is answered with success but the position keeps moving.
    RunInPause,
    /// The default format is the corner of the ranges (8 channels, 32-bit,
    /// 192 kHz), so a wildcard intersection and `PROPOSEDATAFORMAT2` pick
    /// it: what the cable's intersection did before it had a default.
    MaxCornerDefault,
    /// The reported position runs `percent` % faster than the sample rate
    /// (a drifting clock).
    FastClock {
        /// How much faster, in percent.
        percent: u32,
    },
    /// The reported position moves in steps of `ms` milliseconds (a coarse
    /// DMA counter): jitter.
    CoarsePosition {
        /// The step, in milliseconds of audio.
        ms: u32,
    },
    /// The reported position only starts counting `ms` milliseconds after
    /// RUN (start latency).
    LateStart {
        /// The delay, in milliseconds.
        ms: u32,
    },
    /// A buffer smaller than `bytes` never moves (a device that cannot
    /// service short periods, granted anyway).
    StallBelow {
        /// The smallest buffer that moves.
        bytes: u32,
    },
    /// A buffer larger than `bytes` never moves (beyond the DMA's reach,
    /// granted anyway).
    StallAbove {
        /// The largest buffer that moves.
        bytes: u32,
    },
    /// Streams at `rate` are advertised and proposed but the engine will
    /// not open them (`NewStream` fails; on the capture side only, or on
    /// both).
    RefuseRate {
        /// The refused sample rate.
        rate: u32,
        /// Only the capture side refuses.
        capture_only: bool,
    },
    /// The packet-size constraints cap packets at 1 KiB, under the 10 ms
    /// of the largest format ksmedia asks `MaxPacketSizeInBytes` to hold.
    ShortMaxPacket,
    /// The host pins offer DEFAULT only, while the packet-size constraints
    /// still name RAW.
    NoRawMode,
    /// Every `every`-th position read answers one frame behind the answer
    /// before it (a position register read torn against the DMA).
    PositionBackwards {
        /// How often.
        every: u32,
    },
    /// An unregistered event is kept and signalled once more when its
    /// buffer is freed (an event list copied out of the lock).
    SignalAfterUnregister,
    /// The buffer's kernel view is written once more when the stream is
    /// released, after the buffer was unmapped and freed (a DMA engine
    /// nobody detached).
    TouchAfterFree,
    /// `GetPosition` builds a small `Vec` while holding the driver's spin
    /// lock (an allocation at `DISPATCH_LEVEL`).
    AllocateUnderLock,
    /// `GetPosition` never returns (a driver spinning on a register that
    /// never changes, or a deadlock).
    NeverReturns,
}

/// The corner [`Fault::MaxCornerDefault`] makes the default.
fn max_corner() -> AudioFormat {
    AudioFormat::extensible(wavert_core::format::SampleType::Pcm, 8, 192_000, 32, 32)
        .unwrap_or(wavert_miniport::cable::filters::DEFAULT_FORMAT)
}

/// What the position faults need to know of one side: its buffer and rate,
/// and the position it has moved since RUN, unwrapped.
#[derive(Clone, Copy, Debug, Default)]
struct Track {
    size: u32,
    bytes_per_second: u32,
    block_align: u32,
    last_offset: u32,
    linear: u64,
}

/// DEFAULT alone, for [`Fault::NoRawMode`].
static DEFAULT_ONLY: [GUID; 1] = [AUDIO_SIGNALPROCESSINGMODE_DEFAULT];

/// The cable with one fault.
pub struct FaultyCable {
    cable: Arc<VirtualCable<EmuPlatform>>,
    fault: Fault,
    /// Per direction: the state the cable itself is in, and whether the
    /// client was told PAUSE while it still runs.
    states: Mutex<PerDirection<(KSSTATE, bool)>>,
    /// Per direction: the position the faults transform.
    tracks: Mutex<PerDirection<Track>>,
    /// Per direction, for [`Fault::PositionBackwards`]: reads so far and
    /// the last offset answered.
    reads: Mutex<PerDirection<(u32, u64)>>,
    /// Per direction, for [`Fault::SignalAfterUnregister`]: the event kept.
    kept_events: Mutex<PerDirection<Option<KernelEvent>>>,
    /// Per direction, for [`Fault::TouchAfterFree`]: the address of the
    /// last freed buffer's kernel view.
    stale_views: Mutex<PerDirection<Option<usize>>>,
    /// A spin lock of the driver's own, for [`Fault::AllocateUnderLock`].
    own_lock: EmuLock<()>,
}

impl FaultyCable {
    /// A cable of its own over `machine`, with `fault`, registered
    /// nowhere: the back-end alone, for a test that builds its own
    /// miniport around it ([`start_faulty_cable`] registers the product's
    /// four subdevices around one).
    #[must_use]
    pub fn new(machine: &Arc<Machine>, fault: Fault) -> Arc<Self> {
        let cable = new_cable(machine, DmaMode::Looping);
        let own_lock = cable.platform().new_lock(());
        Arc::new(Self {
            cable,
            fault,
            states: Mutex::new(PerDirection::new_with(|_| (KSSTATE_STOP, false))),
            tracks: Mutex::new(PerDirection::new_with(|_| Track::default())),
            reads: Mutex::new(PerDirection::new_with(|_| (0, 0))),
            kept_events: Mutex::new(PerDirection::new_with(|_| None)),
            stale_views: Mutex::new(PerDirection::new_with(|_| None)),
            own_lock,
        })
    }

    fn pretending(&self, direction: Direction) -> bool {
        lock(&self.states)[direction].1
    }

    fn set_pretending(&self, direction: Direction, value: bool) {
        lock(&self.states)[direction].1 = value;
    }

    fn running(&self, direction: Direction) -> bool {
        lock(&self.states)[direction].0 == KSSTATE_RUN
    }

    /// Whether this fault rewrites the position.
    const fn moves_position(&self) -> bool {
        matches!(
            self.fault,
            Fault::FastClock { .. }
                | Fault::CoarsePosition { .. }
                | Fault::LateStart { .. }
                | Fault::StallBelow { .. }
                | Fault::StallAbove { .. }
        )
    }

    /// The cable's position as the fault reports it: the cable's offset
    /// unwrapped (read often enough by the engine), transformed, wrapped.
    fn faulty_position(&self, direction: Direction, real: KSAUDIO_POSITION) -> KSAUDIO_POSITION {
        let mut tracks = lock(&self.tracks);
        let t = &mut tracks[direction];
        if t.size == 0 {
            return real;
        }
        let offset = u32::try_from(real.PlayOffset % u64::from(t.size)).unwrap_or(0);
        t.linear += u64::from((offset + t.size - t.last_offset) % t.size);
        t.last_offset = offset;
        let t = *t;
        drop(tracks);
        let per_ms = u64::from(t.bytes_per_second) / 1000;
        let block = u64::from(t.block_align.max(1));
        let reported = match self.fault {
            Fault::FastClock { percent } => t.linear * (100 + u64::from(percent)) / 100,
            Fault::CoarsePosition { ms } => {
                let step = (per_ms * u64::from(ms)).max(1);
                t.linear / step * step
            }
            Fault::LateStart { ms } => t.linear.saturating_sub(per_ms * u64::from(ms)),
            Fault::StallBelow { bytes } if t.size < bytes => 0,
            Fault::StallAbove { bytes } if t.size > bytes => 0,
            _ => t.linear,
        };
        let wrapped = reported / block * block % u64::from(t.size);
        KSAUDIO_POSITION {
            PlayOffset: wrapped,
            WriteOffset: wrapped,
        }
    }

    /// [`Fault::PositionBackwards`]: the cable's answer, or every
    /// `every`-th read one frame behind the answer before.
    fn backwards(
        &self,
        direction: Direction,
        real: KSAUDIO_POSITION,
        every: u32,
    ) -> KSAUDIO_POSITION {
        let (size, block) = {
            let tracks = lock(&self.tracks);
            (
                u64::from(tracks[direction].size),
                u64::from(tracks[direction].block_align),
            )
        };
        let mut reads = lock(&self.reads);
        let (count, last) = &mut reads[direction];
        *count = count.wrapping_add(1);
        let offset = if size > 0 && *count % every.max(1) == 0 {
            (*last + size - block % size) % size
        } else {
            real.PlayOffset
        };
        *last = offset;
        drop(reads);
        KSAUDIO_POSITION {
            PlayOffset: offset,
            WriteOffset: offset,
        }
    }

    /// Forwards a state change to the cable, remembering where it is.
    fn forward_state(&self, direction: Direction, state: KSSTATE) -> NtResult<()> {
        self.cable.set_state(direction, state)?;
        lock(&self.states)[direction].0 = state;
        if state == KSSTATE_STOP {
            // The cable's position is back at 0.
            let mut tracks = lock(&self.tracks);
            tracks[direction].linear = 0;
            tracks[direction].last_offset = 0;
        }
        Ok(())
    }
}

impl Backend for FaultyCable {
    // The cable's shapes; the registered descriptors get this type's own
    // format-property handlers.
    const WAVE_RENDER_FILTER: PCFILTER_DESCRIPTOR =
        wavert_miniport::cable::filters::WAVE_RENDER_FILTER;
    const WAVE_CAPTURE_FILTER: PCFILTER_DESCRIPTOR =
        wavert_miniport::cable::filters::WAVE_CAPTURE_FILTER;

    type Platform = EmuPlatform;

    fn platform(&self) -> &EmuPlatform {
        self.cable.platform()
    }

    fn buffer_limits(&self) -> DeviceLimits {
        self.cable.buffer_limits()
    }

    fn dma_reach(&self) -> u64 {
        self.cable.dma_reach()
    }

    fn descriptor_profile(&self) -> SgProfile {
        self.cable.descriptor_profile()
    }

    fn hw_latency(&self, format: &AudioFormat) -> KSRTAUDIO_HWLATENCY {
        self.cable.hw_latency(format)
    }

    fn open(&self, direction: Direction, format: &AudioFormat) -> NtResult<()> {
        // Accepted by the format rule (intersection, PROPOSEDATAFORMAT), but
        // the engine cannot open it.
        if let Fault::RefuseRate { rate, capture_only } = self.fault {
            if format.sample_rate() == rate && (!capture_only || direction == Direction::Capture) {
                return Err(NtStatus::NOT_SUPPORTED);
            }
        }
        self.cable.open(direction, format)?;
        lock(&self.tracks)[direction] = Track {
            bytes_per_second: format.bytes_per_second(),
            block_align: format.block_align(),
            ..Track::default()
        };
        Ok(())
    }

    fn close(&self, direction: Direction) -> Option<DmaBuffer> {
        lock(&self.states)[direction] = (KSSTATE_STOP, false);
        let stale = lock(&self.stale_views)[direction].take();
        if let Some(stale) = stale {
            let view = std::ptr::with_exposed_provenance_mut::<u8>(stale);
            // SAFETY: not sound, on purpose: this is the use after free the
            // emulator must catch. The memory model keeps the unmapped view
            // reserved and inaccessible, so the write faults into its
            // handler (which records it and backs the page with fresh
            // memory) and never reaches anyone else's memory.
            unsafe { view.write_volatile(0x5A) };
        }
        self.cable.close(direction)
    }

    fn can_allocate(&self, direction: Direction) -> NtResult<()> {
        self.cable.can_allocate(direction)
    }

    fn install_buffer(
        &self,
        direction: Direction,
        mut buffer: DmaBuffer,
    ) -> Result<(), (DmaBuffer, NtStatus)> {
        if self.fault == Fault::ReversedCaptureDescriptors && direction == Direction::Capture {
            buffer.descriptors.reverse();
        }
        let size = buffer.size;
        self.cable.install_buffer(direction, buffer)?;
        lock(&self.tracks)[direction].size = size;
        Ok(())
    }

    fn take_buffer(&self, direction: Direction, mdl: PMDL) -> Option<DmaBuffer> {
        let buffer = self.cable.take_buffer(direction, mdl)?;
        match self.fault {
            Fault::LeakBuffer => {
                // Lost: nobody unmaps or frees it (the emulator must notice).
                std::mem::forget(buffer);
                return None;
            }
            Fault::SignalAfterUnregister => {
                let kept = lock(&self.kept_events)[direction].take();
                if let Some(event) = kept {
                    self.cable.platform().signal_event(event);
                }
            }
            Fault::TouchAfterFree => {
                // The view's address, kept for after the stream unmapped it.
                let DmaBuffer {
                    mdl,
                    mapping,
                    pages,
                    descriptors,
                    size,
                    packet_bytes,
                    notification_count,
                    device_memory,
                } = buffer;
                let len = mapping.len();
                let base = mapping.into_base();
                lock(&self.stale_views)[direction] = Some(base.as_ptr().expose_provenance());
                // SAFETY: the same view, wrapped again at once; it stays
                // mapped until the stream unmaps it after this returns.
                let mapping = unsafe { Mapping::new(base, len) };
                return Some(DmaBuffer {
                    mdl,
                    mapping,
                    pages,
                    descriptors,
                    size,
                    packet_bytes,
                    notification_count,
                    device_memory,
                });
            }
            _ => {}
        }
        Some(buffer)
    }

    fn set_state(&self, direction: Direction, state: KSSTATE) -> NtResult<()> {
        if self.fault != Fault::RunInPause {
            return self.forward_state(direction, state);
        }
        match (self.pretending(direction), state) {
            // Claim PAUSE, keep running.
            (false, KSSTATE_PAUSE) if self.running(direction) => {
                self.set_pretending(direction, true);
                Ok(())
            }
            // Back to RUN: it never stopped.
            (true, KSSTATE_RUN) => {
                self.set_pretending(direction, false);
                Ok(())
            }
            // Down from the pretended PAUSE: pause for real first.
            (true, KSSTATE_ACQUIRE) => {
                self.set_pretending(direction, false);
                self.forward_state(direction, KSSTATE_PAUSE)?;
                self.forward_state(direction, state)
            }
            _ => self.forward_state(direction, state),
        }
    }

    /// The state claimed: PAUSE while pretending, else the cable's own.
    fn state(&self, direction: Direction) -> KsState {
        if self.pretending(direction) {
            KsState::Pause
        } else {
            self.cable.state(direction)
        }
    }

    fn position(&self, direction: Direction) -> KSAUDIO_POSITION {
        let real = self.cable.position(direction);
        match self.fault {
            Fault::PositionBackwards { every } => self.backwards(direction, real, every),
            Fault::NeverReturns => loop {
                std::thread::park();
            },
            Fault::AllocateUnderLock => {
                self.own_lock
                    .with(|()| drop(std::hint::black_box(Vec::<u8>::with_capacity(32))));
                real
            }
            _ if self.moves_position() => self.faulty_position(direction, real),
            _ => real,
        }
    }

    fn register_event(&self, direction: Direction, event: KernelEvent) -> NtResult<()> {
        if self.fault == Fault::NoNotifications {
            return Ok(());
        }
        self.cable.register_event(direction, event)
    }

    fn unregister_event(&self, direction: Direction, event: KernelEvent) -> NtResult<()> {
        if self.fault == Fault::NoNotifications {
            return Ok(());
        }
        self.cable.unregister_event(direction, event)?;
        if self.fault == Fault::SignalAfterUnregister {
            lock(&self.kept_events)[direction] = Some(event);
        }
        Ok(())
    }

    fn host_ranges(&self, direction: Direction) -> &[DeviceRange] {
        self.cable.host_ranges(direction)
    }

    fn runtime_wave_filter(&self, direction: Direction) -> Option<&RuntimeWaveFilter> {
        self.cable.runtime_wave_filter(direction)
    }

    fn default_format(&self, direction: Direction) -> AudioFormat {
        if self.fault == Fault::MaxCornerDefault {
            return max_corner();
        }
        self.cable.default_format(direction)
    }

    fn accepts(&self, direction: Direction, format: &AudioFormat) -> bool {
        self.cable.accepts(direction, format)
    }

    fn bus(&self) -> INTERFACE_TYPE {
        self.cable.bus()
    }

    fn signal_processing_modes(&self, direction: Direction) -> &'static [GUID] {
        if self.fault == Fault::NoRawMode {
            return &DEFAULT_ONLY;
        }
        self.cable.signal_processing_modes(direction)
    }

    fn packet_size_constraints(&self, direction: Direction) -> PacketSizeConstraints {
        let constraints = self.cable.packet_size_constraints(direction);
        if self.fault == Fault::ShortMaxPacket {
            return PacketSizeConstraints {
                max_packet_bytes: 1024,
                ..constraints
            };
        }
        constraints
    }
}

/// `StartDevice` of the cable with `fault`: the same four subdevices and
/// connections as the product, registered through the same adapter code.
///
/// # Errors
///
/// A failing PortCls call's status.
pub fn start_faulty_cable(machine: &Arc<Machine>, fault: Fault) -> Result<CableAdapter, NtStatus> {
    let faulty = FaultyCable::new(machine, fault);
    let cable = Arc::clone(&faulty.cable);
    machine.set_device_stopped(false);
    let services = EmuPortCls::new(Arc::clone(machine), None);
    let installed = register_subdevices(&services, &faulty, &SUBDEVICES, &|_, direction| {
        TopologyMiniport::with_hardware(
            direction,
            wavert_miniport::cable::endpoints::endpoint(direction),
            cable.volume(direction),
        )
    });
    finish_start(
        machine,
        services,
        vec![cable],
        installed,
        CableOptions::default(),
    )
}

// ---- the AC'97 with a fault ---------------------------------------------

/// The fault a [`FaultyAc97`] injects: each one forgets the ICH's 32-bit
/// bus-master limit in its own way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ac97Fault {
    /// No fault: the control.
    None,
    /// Asks `AllocatePagesForMdl` and `AllocateContiguousPagesForMdl` for
    /// pages anywhere (`HighAddress` all ones) instead of below 4 GiB. The
    /// shared stream's descriptor builder still refuses a page the AC'97
    /// profile cannot address, so a buffer with a page above 4 GiB is not
    /// granted.
    NoAddressLimit,
    /// As [`Ac97Fault::NoAddressLimit`], and hands the device each page
    /// address cut to its low 32 bits, as C code that programs
    /// `PHYSICAL_ADDRESS.LowPart` does: the engine moves other pages than
    /// the buffer's.
    TruncatedAddresses,
}

/// The AC'97 back-end with one [`Ac97Fault`]. It goes through the real
/// shared stream, wave miniport and adapter (`install_ac97_as`); the
/// device underneath keeps its interrupt, codec and mixer.
pub struct FaultyAc97<P: Platform, IO: PortIo> {
    device: Arc<Ac97Device<P, IO>>,
    fault: Ac97Fault,
}

impl<P: Platform, IO: PortIo> FaultyAc97<P, IO> {
    /// `device` behind `fault`.
    #[must_use]
    pub const fn new(device: Arc<Ac97Device<P, IO>>, fault: Ac97Fault) -> Self {
        Self { device, fault }
    }

    /// Whether the fault drops the 32-bit limit.
    fn unlimited(&self) -> bool {
        self.fault != Ac97Fault::None
    }
}

/// The low 32 bits of an address, as a `ULONG` cast keeps them.
const fn low_part(address: u64) -> u64 {
    address & 0xFFFF_FFFF
}

impl<P: Platform, IO: PortIo> Backend for FaultyAc97<P, IO> {
    const WAVE_RENDER_FILTER: PCFILTER_DESCRIPTOR =
        <Ac97Device<P, IO> as Backend>::WAVE_RENDER_FILTER;
    const WAVE_CAPTURE_FILTER: PCFILTER_DESCRIPTOR =
        <Ac97Device<P, IO> as Backend>::WAVE_CAPTURE_FILTER;

    type Platform = P;

    fn platform(&self) -> &P {
        self.device.platform()
    }

    fn buffer_limits(&self) -> DeviceLimits {
        self.device.buffer_limits()
    }

    fn dma_reach(&self) -> u64 {
        if self.unlimited() {
            u64::MAX
        } else {
            self.device.dma_reach()
        }
    }

    fn descriptor_profile(&self) -> SgProfile {
        let profile = self.device.descriptor_profile();
        if self.fault == Ac97Fault::TruncatedAddresses {
            // The builder takes any address; the cut comes at install.
            return SgProfile {
                max_address: u64::MAX,
                ..profile
            };
        }
        profile
    }

    fn device_memory(&self) -> Option<DeviceMemoryRequest> {
        let request = self.device.device_memory()?;
        Some(if self.unlimited() {
            DeviceMemoryRequest {
                max_physical: u64::MAX,
                ..request
            }
        } else {
            request
        })
    }

    fn hw_latency(&self, format: &AudioFormat) -> KSRTAUDIO_HWLATENCY {
        self.device.hw_latency(format)
    }

    fn open(&self, direction: Direction, format: &AudioFormat) -> NtResult<()> {
        self.device.open(direction, format)
    }

    fn close(&self, direction: Direction) -> Option<DmaBuffer> {
        self.device.close(direction)
    }

    fn can_allocate(&self, direction: Direction) -> NtResult<()> {
        self.device.can_allocate(direction)
    }

    fn install_buffer(
        &self,
        direction: Direction,
        mut buffer: DmaBuffer,
    ) -> Result<(), (DmaBuffer, NtStatus)> {
        if self.fault == Ac97Fault::TruncatedAddresses {
            for page in &mut buffer.pages {
                *page = low_part(*page);
            }
            for descriptor in &mut buffer.descriptors {
                descriptor.address = low_part(descriptor.address);
            }
            if let Some(list) = buffer.device_memory.as_mut() {
                list.physical = low_part(list.physical);
            }
        }
        self.device.install_buffer(direction, buffer)
    }

    fn take_buffer(&self, direction: Direction, mdl: PMDL) -> Option<DmaBuffer> {
        self.device.take_buffer(direction, mdl)
    }

    fn set_state(&self, direction: Direction, state: KSSTATE) -> NtResult<()> {
        self.device.set_state(direction, state)
    }

    fn state(&self, direction: Direction) -> KsState {
        self.device.state(direction)
    }

    fn position(&self, direction: Direction) -> KSAUDIO_POSITION {
        self.device.position(direction)
    }

    fn register_event(&self, direction: Direction, event: KernelEvent) -> NtResult<()> {
        self.device.register_event(direction, event)
    }

    fn unregister_event(&self, direction: Direction, event: KernelEvent) -> NtResult<()> {
        self.device.unregister_event(direction, event)
    }

    fn log_prefix(&self) -> &'static str {
        self.device.log_prefix()
    }

    fn host_ranges(&self, direction: Direction) -> &[DeviceRange] {
        self.device.host_ranges(direction)
    }

    fn runtime_wave_filter(&self, direction: Direction) -> Option<&RuntimeWaveFilter> {
        self.device.runtime_wave_filter(direction)
    }

    fn default_format(&self, direction: Direction) -> AudioFormat {
        self.device.default_format(direction)
    }

    fn accepts(&self, direction: Direction, format: &AudioFormat) -> bool {
        self.device.accepts(direction, format)
    }

    fn bus(&self) -> INTERFACE_TYPE {
        self.device.bus()
    }

    fn signal_processing_modes(&self, direction: Direction) -> &'static [GUID] {
        self.device.signal_processing_modes(direction)
    }

    fn packet_size_constraints(&self, direction: Direction) -> PacketSizeConstraints {
        self.device.packet_size_constraints(direction)
    }
}
