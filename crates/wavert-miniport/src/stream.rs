//! A WaveRT stream on one side of the cable.
//!
//! IRQL of each method (as PortCls calls them): `GetPosition` at
//! `<= DISPATCH_LEVEL`; everything else at `PASSIVE_LEVEL`. Only the buffer
//! allocation allocates memory.

use alloc::sync::Arc;
use alloc::vec::Vec;

use portcls_sys::{
    IPortWaveRTStream, MmCached, KSAUDIO_POSITION, KSRTAUDIO_HWLATENCY, KSSTATE, PKEVENT, PMDL,
};
use wavert_com::{AudioBuffer, ComPtr, MiniportWaveRtStream, NtResult, NtStatus, PacketMode};
use wavert_core::format::AudioFormat;
use wavert_core::geometry::CyclicBuffer;
use wavert_core::negotiate::{negotiate, BufferPlan, BufferRequest, DeviceLimits};
use wavert_core::notify::NotificationSchedule;
use wavert_core::position::QpcClock;
use wavert_core::range::{parse_client_request, ClientRequest};
use wavert_core::sg::{self, Descriptor};
use wavert_core::state::TimedStream;

use crate::cable::{Buffer, Direction, VirtualCable, MAX_EVENTS};
use crate::engine::Engine;
use crate::memory::{Mapping, Mdl, PortStream};
use crate::platform::{LogLevel, Platform};

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

/// What the virtual device reports for `KSPROPERTY_RTAUDIO_HWLATENCY`.
///
/// * `FifoSize` 0: the engine never reads ahead of the reported position
///   (a position query services the engine first), so no audio sits in a
///   device FIFO between the buffer and the "converter".
/// * `ChipsetDelay` 0: there is no bus between memory and the device.
/// * `CodecDelay` 0: render bytes reach the capture buffer in the same
///   service that consumes them; there is no converter.
pub const HW_LATENCY: KSRTAUDIO_HWLATENCY = KSRTAUDIO_HWLATENCY {
    FifoSize: 0,
    ChipsetDelay: 0,
    CodecDelay: 0,
};

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

/// A stream of the cable (the value inside the COM stream object).
pub struct CableStream<P: Platform> {
    cable: Arc<VirtualCable<P>>,
    direction: Direction,
    port_stream: ComPtr<IPortWaveRTStream>,
    format: AudioFormat,
}

impl<P: Platform> CableStream<P> {
    /// Opens `direction` of `cable` for a stream of `format`.
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES` when that side already has a stream.
    pub fn new(
        cable: Arc<VirtualCable<P>>,
        direction: Direction,
        port_stream: ComPtr<IPortWaveRTStream>,
        format: AudioFormat,
    ) -> NtResult<Self> {
        cable.open(direction, format)?;
        Ok(Self {
            cable,
            direction,
            port_stream,
            format,
        })
    }

    const fn port(&self) -> PortStream<'_> {
        PortStream(&self.port_stream)
    }

    /// Gets pages for `plan`, settling for fewer when the port gives fewer
    /// or fails (halving the wish each time), as the negotiation rules say.
    fn allocate_pages(&self, mut plan: BufferPlan) -> NtResult<(Mdl, BufferPlan)> {
        loop {
            if let Some(mdl) = self.port().allocate_pages(plan.size_bytes) {
                let got = self.port().page_count(mdl);
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

    /// Allocation shared by both `Allocate...` methods; `notifications` 0
    /// means none.
    fn allocate(&self, notifications: u32, requested: u32) -> NtResult<AudioBuffer> {
        if notifications > 2 || requested == 0 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        self.cable.check_can_allocate(self.direction)?;
        let request = BufferRequest {
            requested_bytes: requested.min(BUFFER_LIMITS.max_bytes),
            notification_count: notifications.max(1),
            block_align: self.format.block_align(),
        };
        let plan = negotiate(&request, &BUFFER_LIMITS).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let (mdl, plan) = self.allocate_pages(plan)?;
        let Some(base) = self.port().map(mdl, MmCached) else {
            self.port().free_pages(mdl);
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        };
        // SAFETY: `base` maps the MDL's pages, at least `plan.pages()` pages,
        // so `size_bytes` bytes; it stays mapped until `release` unmaps it
        // after dropping every `Mapping` of it.
        let mapping = unsafe { Mapping::new(base, plan.size_bytes) };
        match self.build_buffer(mdl, mapping, &plan, notifications) {
            Ok(buffer) => match self.cable.install_buffer(self.direction, buffer) {
                Ok(()) => {
                    self.cable.log(
                        LogLevel::Info,
                        format_args!(
                            "{:?}: buffer {} bytes, {} notifications",
                            self.direction, plan.size_bytes, notifications
                        ),
                    );
                    Ok(AudioBuffer {
                        mdl: mdl.as_raw(),
                        actual_size: plan.size_bytes,
                        offset_from_first_page: 0,
                        cache_type: MmCached,
                    })
                }
                Err(buffer) => {
                    self.release(buffer);
                    Err(NtStatus(portcls_sys::STATUS_INVALID_DEVICE_REQUEST))
                }
            },
            Err((mapping, status)) => {
                self.port().unmap(mapping.into_base(), mdl);
                self.port().free_pages(mdl);
                Err(status)
            }
        }
    }

    /// Page list, descriptors, clock and engine for a mapped buffer. On
    /// failure the mapping comes back for the caller to release.
    fn build_buffer(
        &self,
        mdl: Mdl,
        mapping: Mapping,
        plan: &BufferPlan,
        notifications: u32,
    ) -> Result<Buffer, (Mapping, NtStatus)> {
        let no_memory = NtStatus::INSUFFICIENT_RESOURCES;
        let mut pages: Vec<u64> = Vec::new();
        if pages.try_reserve_exact(plan.pages() as usize).is_err() {
            return Err((mapping, no_memory));
        }
        for index in 0..plan.pages() {
            pages.push(self.port().page_address(mdl, index));
        }
        let Ok(geometry) = CyclicBuffer::new(&pages, 0, plan.size_bytes) else {
            // The port handed out unaligned or too few pages.
            return Err((mapping, NtStatus(portcls_sys::STATUS_UNSUCCESSFUL)));
        };
        let profile = self.cable.mode().profile();
        let capacity = sg::max_entries_for(plan.size_bytes, 0, plan.notification_count, &profile);
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        let mut descriptors: Vec<Descriptor> = Vec::new();
        if descriptors.try_reserve_exact(capacity).is_err() {
            return Err((mapping, no_memory));
        }
        descriptors.resize(capacity, Descriptor::default());
        let Ok(count) = sg::build(&geometry, &profile, plan.packet_bytes, &mut descriptors) else {
            return Err((mapping, NtStatus(portcls_sys::STATUS_UNSUCCESSFUL)));
        };
        descriptors.truncate(count);
        let segments = u32::try_from(count).unwrap_or(u32::MAX);
        let Ok(engine) = Engine::new(self.cable.mode(), segments) else {
            return Err((mapping, NtStatus(portcls_sys::STATUS_UNSUCCESSFUL)));
        };
        let frequency = self.cable.platform().qpc_frequency();
        let clock = QpcClock::new(
            frequency,
            self.format.sample_rate(),
            self.format.block_align(),
            plan.size_bytes,
            plan.packet_bytes,
        );
        let schedule = NotificationSchedule::new(plan.size_bytes, plan.notification_count);
        let (Ok(clock), Ok(schedule)) = (clock, schedule) else {
            return Err((mapping, NtStatus::INVALID_PARAMETER));
        };
        // Silence until the first byte moves (capture), and no stale data
        // from whoever had these pages before (both sides).
        let _zeroed = mapping.zero(0, plan.size_bytes);
        Ok(Buffer {
            mdl,
            mapping,
            pages,
            descriptors,
            size: plan.size_bytes,
            notification_count: notifications,
            timed: TimedStream::new(clock, schedule),
            engine,
            moved: 0,
            started: false,
            events: [None; MAX_EVENTS],
        })
    }

    /// Unmaps and frees a buffer taken out of the cable (`PASSIVE_LEVEL`).
    fn release(&self, buffer: Buffer) {
        // The engine, page and descriptor lists drop here (PASSIVE_LEVEL);
        // the mapping is consumed by the unmap.
        let Buffer { mdl, mapping, .. } = buffer;
        self.port().unmap(mapping.into_base(), mdl);
        self.port().free_pages(mdl);
    }

    fn free(&self, mdl: PMDL, size: u32) {
        match self.cable.take_buffer(self.direction, mdl) {
            Some(buffer) => self.release(buffer),
            None => self.cable.log(
                LogLevel::Error,
                format_args!(
                    "{:?}: free of an unknown buffer ({size} bytes) ignored",
                    self.direction
                ),
            ),
        }
    }
}

impl<P: Platform> Drop for CableStream<P> {
    fn drop(&mut self) {
        // The port releases a stream at PASSIVE_LEVEL; a buffer it never
        // freed is freed here, so nothing leaks.
        if let Some(buffer) = self.cable.close(self.direction) {
            self.release(buffer);
        }
    }
}

impl<P: Platform> MiniportWaveRtStream for CableStream<P> {
    fn packet_mode(&self) -> PacketMode {
        // Packet mode (Windows 10 IMiniportWaveRTOutputStream/InputStream)
        // is not offered yet: the port then drives the stream in plain
        // event-driven mode. See docs/architecture.md.
        PacketMode::None
    }

    fn set_format(&self, format: &[u8]) -> NtResult<()> {
        let format = parse_format(format)?;
        if same_format(&format, &self.format) {
            Ok(())
        } else {
            Err(NtStatus::NOT_SUPPORTED)
        }
    }

    fn set_state(&self, state: KSSTATE) -> NtResult<()> {
        self.cable.set_state(self.direction, state)
    }

    fn position(&self) -> NtResult<KSAUDIO_POSITION> {
        Ok(self.cable.position(self.direction))
    }

    fn allocate_audio_buffer(&self, requested_size: u32) -> NtResult<AudioBuffer> {
        self.allocate(0, requested_size)
    }

    fn free_audio_buffer(&self, mdl: PMDL, size: u32) {
        self.free(mdl, size);
    }

    fn hw_latency(&self) -> KSRTAUDIO_HWLATENCY {
        HW_LATENCY
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

    fn register_notification_event(&self, event: PKEVENT) -> NtResult<()> {
        self.cable.register_event(self.direction, event)
    }

    fn unregister_notification_event(&self, event: PKEVENT) -> NtResult<()> {
        self.cable.unregister_event(self.direction, event)
    }
}
