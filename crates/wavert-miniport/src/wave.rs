//! The wave miniports (one per direction) of the cable.
//!
//! IRQL: every method at `PASSIVE_LEVEL`.

use alloc::sync::Arc;

use portcls_sys::{
    IPortWaveRT, IPortWaveRTStream, IResourceList, IUnknown, Width32Bits, DEVICE_DESCRIPTION,
    DEVICE_DESCRIPTION_VERSION, PCFILTER_DESCRIPTOR,
};
use wavert_com::{ComPtr, Miniport, MiniportWaveRt, NtResult, NtStatus};
use wavert_core::range::{
    intersect, ks_data_format_len, parse_client_request, write_ks_data_format, ClientRequest,
    DeviceRange,
};

use crate::cable::VirtualCable;
use crate::cable::BUFFER_LIMITS;
use crate::direction::Direction;
use crate::filters::{HOST_RANGES, WAVE_CAPTURE_FILTER, WAVE_HOST_PIN, WAVE_RENDER_FILTER};
use crate::platform::{LogLevel, Platform};
use crate::stream::parse_format;
use crate::stream::Backend as _;
use crate::CableStream;

/// The wave miniport of one side of the cable.
pub struct CableWave<P: Platform> {
    cable: Arc<VirtualCable<P>>,
    direction: Direction,
}

impl<P: Platform> CableWave<P> {
    /// The wave miniport for `direction` of `cable`.
    #[must_use]
    pub const fn new(cable: Arc<VirtualCable<P>>, direction: Direction) -> Self {
        Self { cable, direction }
    }
}

/// The host pin's device range a matching range (one of our own data
/// ranges, as the port passes it) stands for.
fn device_range_of(matching: &[u8]) -> Option<DeviceRange> {
    match parse_client_request(matching) {
        Ok(ClientRequest::Range(range)) => HOST_RANGES
            .iter()
            .copied()
            .find(|d| range.sample_type == Some(d.sample_type)),
        _ => None,
    }
}

impl<P: Platform> Miniport for CableWave<P> {
    fn description(&self) -> &'static PCFILTER_DESCRIPTOR {
        match self.direction {
            Direction::Render => &WAVE_RENDER_FILTER,
            Direction::Capture => &WAVE_CAPTURE_FILTER,
        }
    }

    fn data_range_intersection(
        &self,
        pin_id: u32,
        data_range: &[u8],
        matching_range: &[u8],
        result: &mut [u8],
        result_len: &mut u32,
    ) -> NtResult<()> {
        if pin_id != WAVE_HOST_PIN {
            // Bridge pins carry analog audio: the port's own intersection.
            return Err(NtStatus(portcls_sys::STATUS_NOT_IMPLEMENTED));
        }
        let device = device_range_of(matching_range).ok_or(NtStatus::NO_MATCH)?;
        let format = intersect(data_range, &device).map_err(|_| NtStatus::NO_MATCH)?;
        write_intersection(&format, result, result_len)
    }
}

impl<P: Platform> MiniportWaveRt for CableWave<P> {
    type Stream = CableStream<P>;

    fn init(
        &self,
        _adapter: Option<ComPtr<IUnknown>>,
        _resources: Option<ComPtr<IResourceList>>,
        _port: ComPtr<IPortWaveRT>,
    ) -> NtResult<()> {
        // A virtual device has no resources to claim; the port reference is
        // not needed (no events to generate), so it is released right away.
        self.cable.log(
            LogLevel::Info,
            format_args!("{:?} wave miniport initialised", self.direction),
        );
        Ok(())
    }

    fn new_stream(
        &self,
        port_stream: ComPtr<IPortWaveRTStream>,
        pin: u32,
        capture: bool,
        format: &[u8],
    ) -> NtResult<Self::Stream> {
        if pin != WAVE_HOST_PIN || capture != (self.direction == Direction::Capture) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let format = parse_format(format)?;
        if !HOST_RANGES.iter().any(|range| range.contains(&format)) {
            return Err(NtStatus::NOT_SUPPORTED);
        }
        CableStream::new(self.cable.clone(), self.direction, port_stream, format)
    }

    fn device_description(&self, description: &mut DEVICE_DESCRIPTION) -> NtResult<()> {
        // A bus master that can reach any page: PortCls only uses this to
        // bound the pages it allocates for the buffer.
        *description = DEVICE_DESCRIPTION {
            Version: DEVICE_DESCRIPTION_VERSION,
            Master: 1,
            ScatterGather: 1,
            Dma32BitAddresses: 1,
            Dma64BitAddresses: 1,
            InterfaceType: portcls_sys::PNPBus,
            DmaWidth: Width32Bits,
            MaximumLength: BUFFER_LIMITS.max_bytes,
            ..DEVICE_DESCRIPTION::default()
        };
        Ok(())
    }
}

/// Answers `DataRangeIntersection` with `format` as a `KSDATAFORMAT` +
/// `WAVEFORMATEX(TENSIBLE)` (at most 104 bytes), following PortCls's size
/// protocol: an empty `result` is a size query (`STATUS_BUFFER_OVERFLOW` with
/// `*result_len` = the size needed), a short one is `STATUS_BUFFER_TOO_SMALL`.
pub(crate) fn write_intersection(
    format: &wavert_core::format::AudioFormat,
    result: &mut [u8],
    result_len: &mut u32,
) -> NtResult<()> {
    let needed = u32::try_from(ks_data_format_len(format)).unwrap_or(u32::MAX);
    *result_len = needed;
    if result.is_empty() {
        return Err(NtStatus::BUFFER_OVERFLOW);
    }
    let written = write_ks_data_format(format, result).map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
    *result_len = u32::try_from(written).unwrap_or(needed);
    Ok(())
}
