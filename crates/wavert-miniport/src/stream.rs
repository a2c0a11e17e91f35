//! The one WaveRT stream every device shares, generic over a [`Backend`].
//!
//! What every device does the same way lives here once: format checks,
//! buffer negotiation (whole frames, notification packets, the device's
//! limits) and allocation through `IPortWaveRTStream` with the closest-size
//! fallback, the page list and the scatter/gather descriptors, the kernel
//! mapping, device memory next to the buffer (e.g. a descriptor list),
//! zeroing, and freeing it all again exactly once. What really differs per
//! device is the [`Backend`]: its limits, DMA reach and descriptor profile,
//! its latency, and what happens when a buffer is installed, the state
//! changes, the position is read or an event is registered.
//!
//! IRQL of each method (as PortCls calls them): `GetPosition` at
//! `<= DISPATCH_LEVEL`; everything else at `PASSIVE_LEVEL`. Only the buffer
//! allocation allocates memory.

use alloc::sync::Arc;
use alloc::vec::Vec;

use portcls_sys::{
    IPortWaveRTStream, MmCached, GUID, INTERFACE_TYPE, KSAUDIO_POSITION,
    KSAUDIO_PRESENTATION_POSITION, KSRTAUDIO_HWLATENCY, KSRTAUDIO_HWREGISTER, KSSTATE,
    MEMORY_CACHING_TYPE, PCFILTER_DESCRIPTOR, PMDL,
};
use wavert_com::{
    AudioBuffer, ComPtr, KernelEvent, MiniportWaveRtStream, NtResult, NtStatus, PacketMode,
    ReadPacket,
};
use wavert_core::format::AudioFormat;
use wavert_core::geometry::CyclicBuffer;
use wavert_core::negotiate::{negotiate, BufferPlan, BufferRequest, DeviceLimits};
use wavert_core::packet::{check_write_flags, PacketProgress, WriteError};
use wavert_core::position::ClockReading;
use wavert_core::range::{parse_client_request, ClientRequest, DeviceRange};
use wavert_core::sg::{self, Descriptor, SgProfile};
use wavert_core::state::KsState;

use crate::direction::Direction;
use crate::filters::RuntimeWaveFilter;
use crate::memory::{Mapping, Mdl, PortStream};
use crate::modes::PacketSizeConstraints;
use crate::platform::{LogLevel, Platform, SpinLock};

/// Parses a `KSDATAFORMAT` + `WAVEFORMATEX(TENSIBLE)` the port passes.
///
/// # Errors
///
/// `STATUS_INVALID_PARAMETER` when malformed or a range rather than a format.
pub fn parse_format(bytes: &[u8]) -> NtResult<AudioFormat> {
    match parse_client_request(bytes) {
        Ok(ClientRequest::Format(f)) => Ok(f),
        _ => Err(NtStatus::INVALID_PARAMETER),
    }
}

/// Whether two formats describe the same stream (the channel mask and the
/// WAVEFORMATEX/EXTENSIBLE encoding aside).
#[must_use]
pub fn same_format(a: &AudioFormat, b: &AudioFormat) -> bool {
    a.sample_type() == b.sample_type()
        && a.channels() == b.channels()
        && a.sample_rate() == b.sample_rate()
        && a.container_bits() == b.container_bits()
        && a.valid_bits() == b.valid_bits()
}

/// The `KSAUDIO_POSITION` of a hardware stream at linear byte `linear` of
/// a `size`-byte cyclic buffer (play and write offset alike: the DMA
/// engine's own position); zeros without a buffer (`size` 0).
#[must_use]
pub fn cyclic_position(linear: u64, size: u32) -> KSAUDIO_POSITION {
    if size == 0 {
        return KSAUDIO_POSITION::default();
    }
    let offset = linear % u64::from(size);
    KSAUDIO_POSITION {
        PlayOffset: offset,
        WriteOffset: offset,
    }
}

/// Memory a device needs beside the cyclic buffer (e.g. the AC'97's
/// descriptor list): one physically contiguous block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceMemoryRequest {
    /// Its size.
    pub bytes: u32,
    /// The highest physical address the device reaches.
    pub max_physical: u64,
    /// How it is mapped (uncached when the device reads it while the
    /// driver writes it).
    pub cache: MEMORY_CACHING_TYPE,
}

/// The device memory of a buffer, allocated and mapped (and zeroed).
#[derive(Debug)]
pub struct DeviceMemory {
    /// Its MDL (from `AllocateContiguousPagesForMdl`).
    pub mdl: Mdl,
    /// The kernel mapping.
    pub mapping: Mapping,
    /// Its physical address.
    pub physical: u64,
}

/// A stream's cyclic buffer as the shared stream built it.
///
/// Handed to the back-end by [`Backend::install_buffer`], handed back by
/// [`Backend::take_buffer`] or [`Backend::close`] for the stream to unmap
/// and free, at `PASSIVE_LEVEL`.
#[derive(Debug)]
pub struct DmaBuffer {
    /// The MDL from `AllocatePagesForMdl`.
    pub mdl: Mdl,
    /// The kernel mapping.
    pub mapping: Mapping,
    /// Physical address of each page, in buffer order.
    pub pages: Vec<u64>,
    /// The scatter/gather list, in the back-end's descriptor profile.
    pub descriptors: Vec<Descriptor>,
    /// Buffer size in bytes.
    pub size: u32,
    /// Bytes per notification packet (the whole buffer without
    /// notifications).
    pub packet_bytes: u32,
    /// Notifications per cycle (0: allocated without notification).
    pub notification_count: u32,
    /// The back-end's own memory for this buffer, if it asked for any.
    pub device_memory: Option<DeviceMemory>,
}

/// One side's stream as packet mode sees it, read at one instant
/// ([`Backend::packet_clock`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketClock {
    /// The device's clock: frames moved since STOP and the instant they
    /// refer to (its last update: frozen while paused).
    pub reading: ClockReading,
    /// The QPC at which the back-end read its clock (the instant a
    /// presentation position is taken at).
    pub read_at: u64,
    /// Bytes per frame.
    pub block_align: u32,
    /// Bytes per packet (the buffer divided by the notification count).
    pub packet_bytes: u32,
    /// Packets per buffer: the notification count (0 for a buffer
    /// allocated without notification).
    pub notification_count: u32,
    /// The stream's state.
    pub state: KsState,
    /// Render: the linear byte from which the device plays silence, once
    /// the OS has sent its last packet (cleared at STOP).
    pub end_of_stream: Option<u64>,
}

/// What a device back-end provides to the shared [`WaveRtStream`].
///
/// A new back-end (HD Audio, say) implements this trait, describes its
/// filters, and registers its subdevices through the adapter; everything
/// about buffers, the page list, mappings and freeing comes from the stream.
/// Methods that take a [`Direction`] act on that side's stream.
pub trait Backend: Send + Sync + 'static {
    /// The kernel services.
    type Platform: Platform;

    /// The platform (QPC, locks, events, logging).
    fn platform(&self) -> &Self::Platform;

    /// Buffer size limits and granularity.
    fn buffer_limits(&self) -> DeviceLimits;

    /// The highest physical address the DMA engine reaches (`u64::MAX`:
    /// all memory).
    fn dma_reach(&self) -> u64;

    /// How descriptors are laid out for this DMA engine.
    fn descriptor_profile(&self) -> SgProfile;

    /// Memory the device needs beside each buffer (none by default).
    fn device_memory(&self) -> Option<DeviceMemoryRequest> {
        None
    }

    /// `KSPROPERTY_RTAUDIO_HWLATENCY` for a stream of `format`.
    fn hw_latency(&self, format: &AudioFormat) -> KSRTAUDIO_HWLATENCY;

    /// `KSPROPERTY_RTAUDIO_HWLATENCY` for a stream of `format` on
    /// `direction` (what the stream asks): [`Backend::hw_latency`] unless
    /// the two directions' hardware differ (HD Audio: each stream
    /// descriptor has its own FIFO, each converter its own delay).
    fn hw_latency_of(&self, direction: Direction, format: &AudioFormat) -> KSRTAUDIO_HWLATENCY {
        let _ = direction;
        self.hw_latency(format)
    }

    /// `GetPositionRegister`: a register holding `direction`'s position
    /// (a byte offset in the cyclic buffer, wrapping) that the port maps
    /// to the client. IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    ///
    /// `STATUS_NOT_SUPPORTED` (the default) without one;
    /// `STATUS_INVALID_DEVICE_STATE` before a buffer exists.
    fn position_register(&self, direction: Direction) -> NtResult<KSRTAUDIO_HWREGISTER> {
        let _ = direction;
        Err(NtStatus::NOT_SUPPORTED)
    }

    /// `GetClockRegister`: a counter derived from the sample clock that the
    /// port maps to the client, with its rate. IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    ///
    /// `STATUS_NOT_SUPPORTED` (the default) without one.
    fn clock_register(&self, direction: Direction) -> NtResult<KSRTAUDIO_HWREGISTER> {
        let _ = direction;
        Err(NtStatus::NOT_SUPPORTED)
    }

    /// Opens `direction` for a stream of `format` (pin creation).
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES` when that side already has a
    /// stream, or the device's own refusal of the format.
    fn open(&self, direction: Direction, format: &AudioFormat) -> NtResult<()>;

    /// Closes `direction` (stream release), stopping its DMA, and hands
    /// back its buffer if one is still installed.
    fn close(&self, direction: Direction) -> Option<DmaBuffer>;

    /// Whether a buffer may be allocated now (checked before allocating).
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_REQUEST` when one is installed,
    /// `STATUS_INVALID_DEVICE_STATE` outside STOP.
    fn can_allocate(&self, direction: Direction) -> NtResult<()>;

    /// Takes ownership of a built buffer. On failure it comes back with the
    /// reason, for the stream to free.
    ///
    /// # Errors
    ///
    /// The buffer and why it was refused.
    fn install_buffer(
        &self,
        direction: Direction,
        buffer: DmaBuffer,
    ) -> Result<(), (DmaBuffer, NtStatus)>;

    /// Hands the buffer back if its MDL is `mdl` (a free of anything else,
    /// e.g. a second free, gets `None`).
    fn take_buffer(&self, direction: Direction, mdl: PMDL) -> Option<DmaBuffer>;

    /// `SetState`, one step at a time.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` for a jump or a RUN without a buffer.
    fn set_state(&self, direction: Direction, state: KSSTATE) -> NtResult<()>;

    /// The state `direction`'s stream is in (STOP when none is open).
    fn state(&self, direction: Direction) -> KsState;

    /// `GetPosition` (`<= DISPATCH_LEVEL`): offsets inside the buffer.
    fn position(&self, direction: Direction) -> KSAUDIO_POSITION;

    /// `RegisterNotificationEvent`.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` without a buffer allocated with
    /// notification; the event set's own errors.
    fn register_event(&self, direction: Direction, event: KernelEvent) -> NtResult<()>;

    /// `UnregisterNotificationEvent`. Without a buffer it succeeds: the
    /// registrations went with the buffer, which ReactOS's port frees before
    /// it unregisters.
    ///
    /// # Errors
    ///
    /// `STATUS_NOT_FOUND` for an event that is not registered on the
    /// stream's buffer.
    fn unregister_event(&self, direction: Direction, event: KernelEvent) -> NtResult<()>;

    /// Whether `direction`'s streams offer Windows 10 packet mode
    /// (`IMiniportWaveRTOutputStream` for render,
    /// `IMiniportWaveRTInputStream` for capture): the device can tell, at
    /// any instant, how far it has moved (its packet counter keeps the
    /// nominal rate) and, for render, can play silence after a last packet.
    /// None by default.
    fn offers_packets(&self, direction: Direction) -> bool {
        let _ = direction;
        false
    }

    /// `direction`'s stream for packet mode, as of now (`None` without a
    /// buffer, or without packet mode). IRQL: `PASSIVE_LEVEL` (every packet
    /// method is called there), no allocation.
    fn packet_clock(&self, direction: Direction) -> Option<PacketClock> {
        let _ = direction;
        None
    }

    /// Render packet mode, end of stream: from linear byte `end` on the
    /// device plays silence, and keeps counting packets. Cleared at STOP.
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_DEVICE_STATE` without a buffer;
    /// `STATUS_NOT_SUPPORTED` (the default) without packet mode.
    fn set_end_of_stream(&self, direction: Direction, end: u64) -> NtResult<()> {
        let _ = (direction, end);
        Err(NtStatus::NOT_SUPPORTED)
    }

    /// A line for the driver log.
    fn log(&self, level: LogLevel, message: core::fmt::Arguments<'_>) {
        self.platform().log(level, message);
    }

    /// How the device names itself in the log (`""` or `"AC'97 "`).
    fn log_prefix(&self) -> &'static str {
        ""
    }

    /// The wave render filter's pins, nodes, connections and categories.
    /// The descriptor the miniport registers ([`crate::wave::wave_filter`])
    /// adds the format properties for this very back-end type, so that no
    /// back-end (a decorator, say) can hand out handlers of another type.
    const WAVE_RENDER_FILTER: PCFILTER_DESCRIPTOR;

    /// The wave capture filter's shape, as [`Backend::WAVE_RENDER_FILTER`].
    const WAVE_CAPTURE_FILTER: PCFILTER_DESCRIPTOR;

    /// The device ranges of `direction`'s host pin, in the order of its
    /// data-range table (whose `KSDATARANGE_AUDIO` entries are built from
    /// them). `DataRangeIntersection` finds the one the port passes as the
    /// matching range here.
    fn host_ranges(&self, direction: Direction) -> &[DeviceRange];

    /// `direction`'s wave filter when its host pin's ranges are the
    /// hardware's, known only at run time (an HD Audio codec's converter
    /// formats); `None` (the default): the static
    /// [`Backend::WAVE_RENDER_FILTER`] / [`Backend::WAVE_CAPTURE_FILTER`].
    /// Its ranges must be [`Backend::host_ranges`], in order.
    fn runtime_wave_filter(&self, direction: Direction) -> Option<&RuntimeWaveFilter> {
        let _ = direction;
        None
    }

    /// The default format of `direction`'s endpoint: what
    /// `KSPROPERTY_PIN_PROPOSEDATAFORMAT2` answers, what an intersection
    /// with a wildcard client resolves toward, and what the INF's
    /// `PKEY_AudioEngine_OEMFormat` holds. [`Backend::accepts`] must accept it.
    fn default_format(&self, direction: Direction) -> AudioFormat;

    /// Whether a stream of `format` may open on `direction`'s host pin: the
    /// one rule `NewStream`, `KSPROPERTY_PIN_PROPOSEDATAFORMAT` and
    /// `DataRangeIntersection` answer by (through
    /// [`crate::WaveMiniport::stream_format`]).
    fn accepts(&self, direction: Direction, format: &AudioFormat) -> bool;

    /// The bus the device sits on, for `GetDeviceDescription`.
    fn bus(&self) -> INTERFACE_TYPE;

    /// The signal-processing modes of `direction`'s host pin
    /// (`IMiniportAudioSignalProcessing::GetModes`); a stream opens only in
    /// one of them. Empty: the pin is not mode-aware.
    fn signal_processing_modes(&self, direction: Direction) -> &'static [GUID];

    /// `DEVPKEY_KsAudio_PacketSize_Constraints2` of `direction`'s wave
    /// filter: the shortest packet period the device sustains and the
    /// largest packet, per mode of [`Backend::signal_processing_modes`].
    fn packet_size_constraints(&self, direction: Direction) -> PacketSizeConstraints;
}

/// A WaveRT stream of one direction of a device (the value inside the COM
/// stream object).
pub struct WaveRtStream<B: Backend> {
    backend: Arc<B>,
    direction: Direction,
    port_stream: ComPtr<IPortWaveRTStream>,
    format: AudioFormat,
    /// Capture packet mode: the last packet the OS read since STOP.
    last_read_packet: <B::Platform as Platform>::Lock<Option<u64>>,
}

/// The low 32 bits of a packet number (the interfaces' `ULONG`s wrap).
fn low_32(packet: u64) -> u32 {
    u32::try_from(packet & u64::from(u32::MAX)).unwrap_or(0)
}

impl<B: Backend> WaveRtStream<B> {
    /// Opens `direction` of `backend` for a stream of `format`.
    ///
    /// # Errors
    ///
    /// What [`Backend::open`] refuses.
    pub fn new(
        backend: Arc<B>,
        direction: Direction,
        port_stream: ComPtr<IPortWaveRTStream>,
        format: AudioFormat,
    ) -> NtResult<Self> {
        backend.open(direction, &format)?;
        Ok(Self {
            backend,
            direction,
            port_stream,
            format,
            last_read_packet: SpinLock::new(None),
        })
    }

    /// The packet clock of this stream's side, for the packet methods:
    /// only for a buffer with notifications (packet mode is event-driven;
    /// SYSVAD answers the same).
    ///
    /// # Errors
    ///
    /// `STATUS_NOT_SUPPORTED` for the other direction's interface or a
    /// buffer without notifications; `STATUS_INVALID_DEVICE_STATE` without
    /// a buffer.
    fn packet_clock(&self, direction: Direction) -> NtResult<PacketClock> {
        if direction != self.direction || !self.backend.offers_packets(direction) {
            return Err(NtStatus::NOT_SUPPORTED);
        }
        let clock = self
            .backend
            .packet_clock(direction)
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        if clock.notification_count == 0 {
            return Err(NtStatus::NOT_SUPPORTED);
        }
        Ok(clock)
    }

    /// Where the packets stand on `clock`.
    fn progress(clock: &PacketClock) -> NtResult<PacketProgress> {
        let linear = clock
            .reading
            .frames
            .saturating_mul(u64::from(clock.block_align));
        PacketProgress::from_linear(
            linear,
            clock.packet_bytes,
            clock.notification_count,
            clock.state == KsState::Run,
        )
        .ok_or(NtStatus::INVALID_DEVICE_STATE)
    }

    /// The reported hardware latency in frames (FIFO plus delays), what
    /// separates the frames moved from the frames presented.
    fn latency_frames(&self) -> u64 {
        let latency = self.backend.hw_latency_of(self.direction, &self.format);
        let fifo = u64::from(latency.FifoSize) / u64::from(self.format.block_align().max(1));
        let delay_100ns = u64::from(latency.ChipsetDelay) + u64::from(latency.CodecDelay);
        // Below 2^33 x 2^32: no overflow in 128 bits.
        let delay = u128::from(delay_100ns) * u128::from(self.format.sample_rate()) / 10_000_000;
        fifo.saturating_add(u64::try_from(delay).unwrap_or(u64::MAX))
    }

    const fn port(&self) -> PortStream<'_> {
        PortStream(&self.port_stream)
    }

    /// Gets pages within the back-end's DMA reach for `plan`, settling for
    /// fewer when the port gives fewer or fails (halving the wish each
    /// time), as the negotiation rules say.
    fn allocate_pages(&self, mut plan: BufferPlan) -> NtResult<(Mdl, BufferPlan)> {
        let reach = self.backend.dma_reach();
        loop {
            let mdl = if reach == u64::MAX {
                self.port().allocate_pages(plan.size_bytes)
            } else {
                self.port().allocate_pages_below(reach, plan.size_bytes)
            };
            if let Some(mdl) = mdl {
                let got = self.port().page_count(&mdl);
                if got >= plan.pages() {
                    return Ok((mdl, plan));
                }
                if let Ok(smaller) = plan.shrink_to_pages(got) {
                    return Ok((mdl, smaller));
                }
                self.port().free_pages(mdl);
                return Err(NtStatus::INSUFFICIENT_RESOURCES);
            }
            let half = plan.pages() / 2;
            plan = plan
                .shrink_to_pages(half)
                .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        }
    }

    /// The page list and the descriptors of a buffer.
    fn page_list(&self, mdl: &Mdl, plan: &BufferPlan) -> NtResult<(Vec<u64>, Vec<Descriptor>)> {
        let no_memory = NtStatus::INSUFFICIENT_RESOURCES;
        let mut pages: Vec<u64> = Vec::new();
        pages
            .try_reserve_exact(plan.pages() as usize)
            .map_err(|_| no_memory)?;
        for index in 0..plan.pages() {
            pages.push(self.port().page_address(mdl, index));
        }
        // The port handed out unaligned or too few pages.
        let geometry =
            CyclicBuffer::new(&pages, 0, plan.size_bytes).map_err(|_| NtStatus::UNSUCCESSFUL)?;
        let profile = self.backend.descriptor_profile();
        let capacity = sg::max_entries_for(plan.size_bytes, 0, plan.notification_count, &profile);
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        let mut descriptors: Vec<Descriptor> = Vec::new();
        descriptors
            .try_reserve_exact(capacity)
            .map_err(|_| no_memory)?;
        descriptors.resize(capacity, Descriptor::default());
        let count = sg::build(&geometry, &profile, plan.packet_bytes, &mut descriptors)
            .map_err(|_| NtStatus::UNSUCCESSFUL)?;
        descriptors.truncate(count);
        Ok((pages, descriptors))
    }

    /// The back-end's device memory: contiguous, within its reach, mapped
    /// and zeroed.
    fn allocate_device_memory(&self, request: DeviceMemoryRequest) -> NtResult<DeviceMemory> {
        let mdl = self
            .port()
            .allocate_contiguous(0, request.max_physical, request.bytes)
            .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        let Some(base) = self.port().map(&mdl, request.cache) else {
            self.port().free_pages(mdl);
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        };
        // SAFETY: `base` maps the MDL's pages, at least `request.bytes`; it
        // stays mapped until `release` unmaps it after taking this back.
        let mapping = unsafe { Mapping::new(base, request.bytes) };
        let physical = self.port().page_address(&mdl, 0);
        let _zeroed = mapping.zero(0, request.bytes);
        Ok(DeviceMemory {
            mdl,
            mapping,
            physical,
        })
    }

    /// Allocation shared by both `Allocate...` methods; `notifications` 0
    /// means none.
    ///
    /// Without notification the buffer is never smaller than the request:
    /// `AllocateAudioBuffer`'s page says the audio engine will not use a
    /// smaller one and stream creation fails, so a request the device
    /// cannot meet (above its cap, or more pages than the port gives) fails
    /// here with `STATUS_INSUFFICIENT_RESOURCES` rather than succeeding with
    /// a buffer nobody can use. With notification a smaller buffer is
    /// allowed (`KSPROPERTY_RTAUDIO_BUFFER_WITH_NOTIFICATION`), so the
    /// request is capped and page shortages shrink it.
    fn allocate(&self, notifications: u32, requested: u32) -> NtResult<AudioBuffer> {
        if notifications > 2 || requested == 0 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        self.backend.can_allocate(self.direction)?;
        let limits = self.backend.buffer_limits();
        let at_least_requested = notifications == 0;
        if at_least_requested && requested > limits.max_bytes {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        let request = BufferRequest {
            requested_bytes: requested.min(limits.max_bytes),
            notification_count: notifications.max(1),
            block_align: self.format.block_align(),
        };
        let plan = negotiate(&request, &limits).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let (mdl, plan) = self.allocate_pages(plan)?;
        if at_least_requested && plan.size_bytes < requested {
            self.port().free_pages(mdl);
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        let Some(base) = self.port().map(&mdl, MmCached) else {
            self.port().free_pages(mdl);
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        };
        // SAFETY: `base` maps the MDL's pages, at least `plan.pages()` pages,
        // so `size_bytes` bytes; it stays mapped until `release` unmaps it
        // after the buffer comes back from the back-end.
        let mapping = unsafe { Mapping::new(base, plan.size_bytes) };
        let parts = self.page_list(&mdl, &plan).and_then(|lists| {
            let memory = self
                .backend
                .device_memory()
                .map(|request| self.allocate_device_memory(request))
                .transpose()?;
            Ok((lists, memory))
        });
        let ((pages, descriptors), device_memory) = match parts {
            Ok(parts) => parts,
            Err(status) => {
                self.port().unmap(mapping.into_base(), &mdl);
                self.port().free_pages(mdl);
                return Err(status);
            }
        };
        // Silence until the first byte moves (capture), and no stale data
        // from whoever had these pages before (both sides): the format's
        // silence (0x80 for unsigned 8-bit PCM, zero bytes otherwise).
        let silence = wavert_core::convert::sample::Encoding::of(&self.format).silence();
        let _silenced = mapping.fill(0, plan.size_bytes, silence);
        let raw_mdl = mdl.as_raw();
        let buffer = DmaBuffer {
            mdl,
            mapping,
            pages,
            descriptors,
            size: plan.size_bytes,
            packet_bytes: plan.packet_bytes,
            notification_count: notifications,
            device_memory,
        };
        match self.backend.install_buffer(self.direction, buffer) {
            Ok(()) => {
                self.last_read_packet.with(|last| *last = None);
                self.backend.log(
                    LogLevel::Info,
                    format_args!(
                        "{:?}: buffer {} bytes, {} notifications",
                        self.direction, plan.size_bytes, notifications
                    ),
                );
                Ok(AudioBuffer {
                    mdl: raw_mdl,
                    actual_size: plan.size_bytes,
                    offset_from_first_page: 0,
                    cache_type: MmCached,
                })
            }
            Err((buffer, status)) => {
                self.release(buffer);
                Err(status)
            }
        }
    }

    /// Unmaps and frees a buffer the back-end handed back (`PASSIVE_LEVEL`).
    fn release(&self, buffer: DmaBuffer) {
        // The page and descriptor lists drop here (PASSIVE_LEVEL); the
        // mappings are consumed by the unmaps.
        let DmaBuffer {
            mdl,
            mapping,
            device_memory,
            ..
        } = buffer;
        if let Some(memory) = device_memory {
            self.port().unmap(memory.mapping.into_base(), &memory.mdl);
            self.port().free_pages(memory.mdl);
        }
        self.port().unmap(mapping.into_base(), &mdl);
        self.port().free_pages(mdl);
    }

    fn free(&self, mdl: PMDL, size: u32) {
        match self.backend.take_buffer(self.direction, mdl) {
            Some(buffer) => self.release(buffer),
            None => self.backend.log(
                LogLevel::Error,
                format_args!(
                    "{:?}: free of an unknown buffer ({size} bytes) ignored",
                    self.direction
                ),
            ),
        }
    }
}

impl<B: Backend> Drop for WaveRtStream<B> {
    fn drop(&mut self) {
        // The port releases a stream at PASSIVE_LEVEL; a buffer it never
        // freed is freed here, so nothing leaks.
        if let Some(buffer) = self.backend.close(self.direction) {
            self.release(buffer);
        }
    }
}

impl<B: Backend> MiniportWaveRtStream for WaveRtStream<B> {
    /// The packet interface of the stream's direction, when the back-end
    /// offers packet mode (see [`Backend::offers_packets`]).
    fn packet_mode(&self) -> PacketMode {
        if !self.backend.offers_packets(self.direction) {
            return PacketMode::None;
        }
        match self.direction {
            Direction::Render => PacketMode::Output,
            Direction::Capture => PacketMode::Input,
        }
    }

    fn set_format(&self, format: &[u8]) -> NtResult<()> {
        let format = parse_format(format)?;
        if same_format(&format, &self.format) {
            Ok(())
        } else {
            Err(NtStatus::NOT_SUPPORTED)
        }
    }

    /// Windows' port steps one state at a time (`SetState`'s page); ReactOS
    /// passes the client's target straight through (STOP to RUN in one
    /// call). A jump is walked here, one step at a time through the states
    /// between, so every back-end sees only steps. A step that fails is the
    /// answer, and the steps already taken are walked back, so a refused
    /// jump leaves the stream where it was (where the port, which updates
    /// its state only on success, believes it is).
    fn set_state(&self, state: KSSTATE) -> NtResult<()> {
        let target = u32::try_from(state)
            .ok()
            .and_then(|raw| KsState::from_raw(raw).ok())
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        let start = self.backend.state(self.direction);
        let mut now = start;
        while now != target {
            let next = if target > now { now.up() } else { now.down() };
            if let Err(status) = self.backend.set_state(self.direction, next.raw()) {
                while now != start {
                    let back = if start > now { now.up() } else { now.down() };
                    // Back along steps just taken: each is the reverse of
                    // one that succeeded.
                    let _ = self.backend.set_state(self.direction, back.raw());
                    now = back;
                }
                return Err(status);
            }
            now = next;
        }
        if target == KsState::Stop {
            // GetReadPacket's numbers start again from 0.
            self.last_read_packet.with(|last| *last = None);
        }
        Ok(())
    }

    fn position(&self) -> NtResult<KSAUDIO_POSITION> {
        Ok(self.backend.position(self.direction))
    }

    fn allocate_audio_buffer(&self, requested_size: u32) -> NtResult<AudioBuffer> {
        self.allocate(0, requested_size)
    }

    fn free_audio_buffer(&self, mdl: PMDL, size: u32) {
        self.free(mdl, size);
    }

    fn hw_latency(&self) -> KSRTAUDIO_HWLATENCY {
        self.backend.hw_latency_of(self.direction, &self.format)
    }

    fn position_register(&self) -> NtResult<KSRTAUDIO_HWREGISTER> {
        self.backend.position_register(self.direction)
    }

    fn clock_register(&self) -> NtResult<KSRTAUDIO_HWREGISTER> {
        self.backend.clock_register(self.direction)
    }

    fn allocate_buffer_with_notification(
        &self,
        notification_count: u32,
        requested_size: u32,
    ) -> NtResult<AudioBuffer> {
        if !matches!(notification_count, 1 | 2) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        self.allocate(notification_count, requested_size)
    }

    fn free_buffer_with_notification(&self, mdl: PMDL, size: u32) {
        self.free(mdl, size);
    }

    fn register_notification_event(&self, event: KernelEvent) -> NtResult<()> {
        self.backend.register_event(self.direction, event)
    }

    fn unregister_notification_event(&self, event: KernelEvent) -> NtResult<()> {
        self.backend.unregister_event(self.direction, event)
    }

    /// `SetWritePacket` (Learn): after an end of stream
    /// `STATUS_INVALID_DEVICE_STATE`; another flag, or an end-of-stream
    /// length that is no whole number of frames within the packet,
    /// `STATUS_INVALID_PARAMETER`; a packet already transferred or in
    /// transfer `STATUS_DATA_LATE_ERROR`; one the buffer cannot hold yet
    /// `STATUS_DATA_OVERRUN` ([`PacketProgress::check_write`]). The
    /// counter runs on at the nominal rate whatever the answer. An
    /// end-of-stream packet of `length` bytes has the device play silence
    /// from its `length`-th byte on.
    fn set_write_packet(&self, packet_number: u32, flags: u32, eos_length: u32) -> NtResult<()> {
        let clock = self.packet_clock(Direction::Render)?;
        if clock.end_of_stream.is_some() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        let end_of_stream =
            check_write_flags(flags, eos_length, clock.packet_bytes, clock.block_align)
                .map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let packet = Self::progress(&clock)?
            .check_write(packet_number)
            .map_err(|e| match e {
                WriteError::Late => NtStatus::DATA_LATE_ERROR,
                WriteError::Overrun => NtStatus::DATA_OVERRUN,
            })?;
        if let Some(length) = end_of_stream {
            let end = packet
                .saturating_mul(u64::from(clock.packet_bytes))
                .saturating_add(u64::from(length));
            self.backend.set_end_of_stream(Direction::Render, end)?;
        }
        Ok(())
    }

    /// `GetOutputStreamPresentationPosition`: the frames moved less the
    /// reported latency (FIFO, chipset and codec delay) are what has been
    /// presented, taken at the QPC the device was read at; block 0 is the
    /// first sample of packet 0.
    fn presentation_position(&self) -> NtResult<KSAUDIO_PRESENTATION_POSITION> {
        let clock = self.packet_clock(Direction::Render)?;
        Ok(KSAUDIO_PRESENTATION_POSITION {
            u64PositionInBlocks: clock.reading.frames.saturating_sub(self.latency_frames()),
            u64QPCPosition: clock.read_at,
        })
    }

    /// `GetPacketCount`: packets completely transferred since STOP (low 32
    /// bits).
    fn packet_count(&self) -> NtResult<u32> {
        let clock = self.packet_clock(Direction::Render)?;
        Ok(low_32(Self::progress(&clock)?.completed))
    }

    /// `GetReadPacket`: outside PAUSE and RUN `STATUS_INVALID_DEVICE_STATE`
    /// (as SYSVAD); with no packet completed since the last one read
    /// `STATUS_DEVICE_NOT_READY`; otherwise the next packet for the OS
    /// ([`PacketProgress::next_read`]: the one after the last read, or the
    /// oldest the device has not begun to overwrite), the QPC of its first
    /// sample at the nominal rate, and whether a newer one is complete.
    fn read_packet(&self) -> NtResult<ReadPacket> {
        let clock = self.packet_clock(Direction::Capture)?;
        if clock.state < KsState::Pause {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        let progress = Self::progress(&clock)?;
        let choice = self
            .last_read_packet
            .with(|last| {
                let choice = progress.next_read(*last)?;
                *last = Some(choice.packet);
                Ok(choice)
            })
            .map_err(|_: wavert_core::packet::NotReady| NtStatus::DEVICE_NOT_READY)?;
        if choice.dropped != 0 {
            self.backend.log(
                LogLevel::Error,
                format_args!(
                    "Capture: {} packet(s) overwritten before the OS read them",
                    choice.dropped
                ),
            );
        }
        let first_frame = choice.packet.saturating_mul(u64::from(clock.packet_bytes))
            / u64::from(clock.block_align.max(1));
        let performance_counter = clock
            .reading
            .qpc_of_frame(first_frame)
            .ok_or(NtStatus::UNSUCCESSFUL)?;
        Ok(ReadPacket {
            packet_number: low_32(choice.packet),
            flags: 0,
            performance_counter,
            more_data: choice.more,
        })
    }
}
