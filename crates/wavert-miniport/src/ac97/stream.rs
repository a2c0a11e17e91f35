//! A WaveRT stream on one AC'97 channel.
//!
//! The cyclic buffer is non-contiguous pages below 4 GiB from
//! `AllocatePagesForMdl` (the ICH takes 32-bit addresses); the channel's
//! 32-entry descriptor list (256 bytes) lives in one physically contiguous
//! page from `AllocateContiguousPagesForMdl`. The segment list comes from
//! `wavert_core::sg` with the AC'97 profile: one segment per page piece,
//! split at packet ends, lengths in 16-bit samples, an interrupt on every
//! segment; the ISR writes 31 of them ahead into the ring.
//!
//! IRQL of each method (as PortCls calls them): `GetPosition` at
//! `<= DISPATCH_LEVEL`; everything else at `PASSIVE_LEVEL`. Only the buffer
//! allocation allocates memory.

use alloc::sync::Arc;
use alloc::vec::Vec;

use portcls_sys::{
    IPortWaveRTStream, MmCached, MmNonCached, KSAUDIO_POSITION, KSRTAUDIO_HWLATENCY, KSSTATE,
    PKEVENT, PMDL,
};
use wavert_com::{AudioBuffer, ComPtr, MiniportWaveRtStream, NtResult, NtStatus, PacketMode};
use wavert_core::ac97::BDL_BYTES;
use wavert_core::format::AudioFormat;
use wavert_core::geometry::{CyclicBuffer, PAGE_SIZE};
use wavert_core::negotiate::{negotiate, BufferPlan, BufferRequest, DeviceLimits};
use wavert_core::sg::{self, Descriptor, SgProfile};

use super::device::Ac97Device;
use super::PortIo;
use crate::cable::Direction;
use crate::memory::{Mapping, Mdl, PortStream};
use crate::platform::{LogLevel, Platform, SpinLock};
use crate::stream::{parse_format, same_format};

/// Highest physical address the ICH bus master reaches (32-bit BDBAR and
/// buffer pointers).
pub const MAX_PHYSICAL: u64 = 0xFFFF_FFFF;

/// The AC'97 buffer limits: at least 64 frames, at most 1 MiB (far more
/// than the audio engine asks for; each segment stays under the 65534-sample
/// descriptor limit because segments never cross a page).
pub const BUFFER_LIMITS: DeviceLimits = DeviceLimits {
    min_bytes: 256,
    max_bytes: 1024 * 1024,
    granularity_bytes: 4,
};

/// The ICH's PCM FIFO, in bytes, for `KSRTAUDIO_HWLATENCY::FifoSize`.
///
/// PICB counts samples "not yet read from memory" for output and "not yet
/// written to memory" for input, whatever has crossed the AC-link (Intel
/// 82801DB ICH4 datasheet, 14.2.5 `x_PICB`), so the reported position runs
/// ahead of the converter by what sits in the controller's FIFO. Intel
/// does not publish the AC'97 engines' FIFO depth; 64 bytes (16 stereo
/// 16-bit frames, the size of the prefetch a descriptor fetch triggers) is
/// our estimate, bounded by the smallest output FIFO Intel documents for
/// its audio DMA engines (ICH6 HD Audio `SDFIFOS`, 16 to 256 bytes). QEMU's
/// model has no FIFO.
pub const FIFO_BYTES: u32 = 64;

/// Codec group delay in frames.
///
/// The DAC's and the ADC's interpolation and decimation filters. The AC'97 2.3 specification leaves it to the codec;
/// sigma-delta AC'97 codecs typically state about 12 to 20 sample periods
/// in their datasheets. We report 16 frames at the stream's rate.
pub const CODEC_DELAY_FRAMES: u32 = 16;

/// `KSRTAUDIO_HWLATENCY` for a stream at `rate`: the FIFO, no chipset
/// delay beyond it, and the codec's group delay in 100 ns units.
#[must_use]
pub fn hw_latency(rate: u32) -> KSRTAUDIO_HWLATENCY {
    let delay = u64::from(CODEC_DELAY_FRAMES) * 10_000_000 / u64::from(rate.max(1));
    KSRTAUDIO_HWLATENCY {
        FifoSize: FIFO_BYTES,
        ChipsetDelay: 0,
        CodecDelay: u32::try_from(delay).unwrap_or(u32::MAX),
    }
}

/// What the stream keeps of its buffer to free it.
#[derive(Debug)]
struct StreamBuffer {
    mdl: Mdl,
    mapping: Mapping,
    list_mdl: Mdl,
    size: u32,
    notifications: u32,
}

/// A stream of the AC'97 (the value inside the COM stream object).
pub struct Ac97Stream<P: Platform, IO: PortIo> {
    device: Arc<Ac97Device<P, IO>>,
    direction: Direction,
    port_stream: ComPtr<IPortWaveRTStream>,
    format: AudioFormat,
    buffer: P::Lock<Option<StreamBuffer>>,
}

impl<P: Platform, IO: PortIo> Ac97Stream<P, IO> {
    /// Opens `direction` of `device` for `format` (sets the codec rate).
    ///
    /// # Errors
    ///
    /// `STATUS_INSUFFICIENT_RESOURCES` when the channel already has a
    /// stream; `STATUS_NOT_SUPPORTED` when the codec refuses the rate.
    pub fn new(
        device: Arc<Ac97Device<P, IO>>,
        direction: Direction,
        port_stream: ComPtr<IPortWaveRTStream>,
        format: AudioFormat,
    ) -> NtResult<Self> {
        device.open(direction, format.sample_rate())?;
        Ok(Self {
            device,
            direction,
            port_stream,
            format,
            buffer: P::Lock::new(None),
        })
    }

    const fn port(&self) -> PortStream<'_> {
        PortStream(&self.port_stream)
    }

    /// Pages below 4 GiB for `plan`, settling for fewer when the port gives
    /// fewer or fails (halving the wish each time).
    fn allocate_pages(&self, mut plan: BufferPlan) -> NtResult<(Mdl, BufferPlan)> {
        loop {
            if let Some(mdl) = self
                .port()
                .allocate_pages_below(MAX_PHYSICAL, plan.size_bytes)
            {
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

    /// The segment list of a mapped buffer.
    fn segments(&self, mdl: Mdl, plan: &BufferPlan) -> NtResult<Vec<Descriptor>> {
        let no_memory = NtStatus::INSUFFICIENT_RESOURCES;
        let mut pages: Vec<u64> = Vec::new();
        pages
            .try_reserve_exact(plan.pages() as usize)
            .map_err(|_| no_memory)?;
        for index in 0..plan.pages() {
            pages.push(self.port().page_address(mdl, index));
        }
        let geometry = CyclicBuffer::new(&pages, 0, plan.size_bytes)
            .map_err(|_| NtStatus(portcls_sys::STATUS_UNSUCCESSFUL))?;
        let profile = SgProfile::AC97;
        let capacity = sg::max_entries_for(plan.size_bytes, 0, plan.notification_count, &profile);
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        let mut segments: Vec<Descriptor> = Vec::new();
        segments
            .try_reserve_exact(capacity)
            .map_err(|_| no_memory)?;
        segments.resize(capacity, Descriptor::default());
        let count = sg::build(&geometry, &profile, plan.packet_bytes, &mut segments)
            .map_err(|_| NtStatus(portcls_sys::STATUS_UNSUCCESSFUL))?;
        segments.truncate(count);
        Ok(segments)
    }

    /// The descriptor list: one contiguous page below 4 GiB, mapped
    /// uncached (the device reads it while we write it).
    fn allocate_list(&self) -> NtResult<(Mdl, Mapping, u64)> {
        let mdl = self
            .port()
            .allocate_contiguous(0, MAX_PHYSICAL, PAGE_SIZE)
            .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        let Some(base) = self.port().map(mdl, MmNonCached) else {
            self.port().free_pages(mdl);
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        };
        // SAFETY: `base` maps the MDL's one page (>= BDL_BYTES); it stays
        // mapped until `release` unmaps it after taking this `Mapping` back.
        let mapping = unsafe { Mapping::new(base, BDL_BYTES) };
        let physical = self.port().page_address(mdl, 0);
        let _zeroed = mapping.zero(0, BDL_BYTES);
        Ok((mdl, mapping, physical))
    }

    fn allocate(&self, notifications: u32, requested: u32) -> NtResult<AudioBuffer> {
        if notifications > 2 || requested == 0 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if self.buffer.with(|b| b.is_some()) {
            return Err(NtStatus(portcls_sys::STATUS_INVALID_DEVICE_REQUEST));
        }
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
        // SAFETY: `base` maps the MDL's pages, at least `size_bytes`; it
        // stays mapped until `release` unmaps it after dropping this.
        let mapping = unsafe { Mapping::new(base, plan.size_bytes) };
        let fail = |mapping: Mapping, status: NtStatus| {
            self.port().unmap(mapping.into_base(), mdl);
            self.port().free_pages(mdl);
            Err(status)
        };
        let segments = match self.segments(mdl, &plan) {
            Ok(s) => s,
            Err(status) => return fail(mapping, status),
        };
        let (list_mdl, list, list_physical) = match self.allocate_list() {
            Ok(l) => l,
            Err(status) => return fail(mapping, status),
        };
        // Silence until the client writes (render) or the device does
        // (capture), and no stale data from the pages' last owner.
        let _zeroed = mapping.zero(0, plan.size_bytes);
        if let Err((_segments, list, status)) = self.device.install_buffer(
            self.direction,
            segments,
            list,
            list_physical,
            plan.size_bytes,
            if notifications == 0 {
                0
            } else {
                plan.packet_bytes
            },
        ) {
            self.port().unmap(list.into_base(), list_mdl);
            self.port().free_pages(list_mdl);
            return fail(mapping, status);
        }
        self.buffer.with(|b| {
            *b = Some(StreamBuffer {
                mdl,
                mapping,
                list_mdl,
                size: plan.size_bytes,
                notifications,
            });
        });
        self.device.log(
            LogLevel::Info,
            format_args!(
                "AC'97 {:?}: buffer {} bytes, {} notifications, list at {list_physical:#x}",
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

    /// Takes the buffer back from the device and frees it (`PASSIVE_LEVEL`).
    fn release(&self) -> bool {
        let Some(buffer) = self.buffer.with(Option::take) else {
            return false;
        };
        if let Some((segments, list)) = self.device.take_buffer(self.direction) {
            drop(segments);
            self.port().unmap(list.into_base(), buffer.list_mdl);
        }
        self.port().free_pages(buffer.list_mdl);
        self.port().unmap(buffer.mapping.into_base(), buffer.mdl);
        self.port().free_pages(buffer.mdl);
        true
    }

    fn free(&self, mdl: PMDL, size: u32) {
        let ours = self
            .buffer
            .with(|b| b.as_ref().is_some_and(|b| b.mdl.as_raw() == mdl));
        if !ours || !self.release() {
            self.device.log(
                LogLevel::Error,
                format_args!(
                    "AC'97 {:?}: free of an unknown buffer ({size} bytes) ignored",
                    self.direction
                ),
            );
        }
    }
}

impl<P: Platform, IO: PortIo> Drop for Ac97Stream<P, IO> {
    fn drop(&mut self) {
        // PortCls releases a stream at PASSIVE_LEVEL: a buffer it never
        // freed is freed here.
        let _ = self.release();
        self.device.close(self.direction);
    }
}

impl<P: Platform, IO: PortIo> MiniportWaveRtStream for Ac97Stream<P, IO> {
    fn packet_mode(&self) -> PacketMode {
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
        self.device
            .set_state(self.direction, u32::try_from(state).unwrap_or(u32::MAX))
    }

    fn position(&self) -> NtResult<KSAUDIO_POSITION> {
        let size = self.buffer.with(|b| b.as_ref().map_or(0, |b| b.size));
        if size == 0 {
            return Ok(KSAUDIO_POSITION::default());
        }
        let linear = self.device.position(self.direction);
        let offset = linear % u64::from(size);
        Ok(KSAUDIO_POSITION {
            PlayOffset: offset,
            WriteOffset: offset,
        })
    }

    fn allocate_audio_buffer(&self, requested_size: u32) -> NtResult<AudioBuffer> {
        self.allocate(0, requested_size)
    }

    fn free_audio_buffer(&self, mdl: PMDL, size: u32) {
        self.free(mdl, size);
    }

    fn hw_latency(&self) -> KSRTAUDIO_HWLATENCY {
        hw_latency(self.format.sample_rate())
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
        let with_notification = self
            .buffer
            .with(|b| b.as_ref().is_some_and(|b| b.notifications > 0));
        self.device
            .register_event(self.direction, event, with_notification)
    }

    fn unregister_notification_event(&self, event: PKEVENT) -> NtResult<()> {
        self.device.unregister_event(self.direction, event)
    }
}
