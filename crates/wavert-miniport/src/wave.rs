//! The wave miniport (one per direction) every back-end shares: its filter,
//! intersection, stream acceptance and bus come from the [`Backend`].
//!
//! IRQL: every method at `PASSIVE_LEVEL`.

use alloc::sync::Arc;

use portcls_sys::{
    IPortWaveRT, IPortWaveRTStream, IResourceList, IUnknown, Width32Bits, DEVICE_DESCRIPTION,
    DEVICE_DESCRIPTION_VERSION, PCFILTER_DESCRIPTOR,
};
use wavert_com::{ComPtr, Miniport, MiniportWaveRt, NtResult, NtStatus};
use wavert_core::range::{ks_data_format_len, write_ks_data_format};

use crate::direction::Direction;
use crate::filters::WAVE_HOST_PIN;
use crate::platform::LogLevel;
use crate::stream::{parse_format, Backend, WaveRtStream};

/// The wave miniport of one direction of a device, for every back-end.
pub struct WaveMiniport<B: Backend> {
    backend: Arc<B>,
    direction: Direction,
}

impl<B: Backend> WaveMiniport<B> {
    /// The wave miniport for `direction` of `backend`.
    #[must_use]
    pub const fn new(backend: Arc<B>, direction: Direction) -> Self {
        Self { backend, direction }
    }
}

impl<B: Backend> Miniport for WaveMiniport<B> {
    fn description(&self) -> &'static PCFILTER_DESCRIPTOR {
        self.backend.wave_filter(self.direction)
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
            return Err(NtStatus::NOT_IMPLEMENTED);
        }
        let format = self
            .backend
            .intersect(self.direction, data_range, matching_range)?;
        write_intersection(&format, result, result_len)
    }
}

impl<B: Backend> MiniportWaveRt for WaveMiniport<B> {
    type Stream = WaveRtStream<B>;

    fn init(
        &self,
        _adapter: Option<ComPtr<IUnknown>>,
        _resources: Option<ComPtr<IResourceList>>,
        _port: ComPtr<IPortWaveRT>,
    ) -> NtResult<()> {
        // The adapter already claimed whatever resources the device has (it
        // is shared by four filters); the port reference is not needed (no
        // port events to generate), so it is released right away.
        self.backend.log(
            LogLevel::Info,
            format_args!(
                "{}{:?} wave miniport initialised",
                self.backend.log_prefix(),
                self.direction
            ),
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
        if !self.backend.accepts(self.direction, &format) {
            return Err(NtStatus::NOT_SUPPORTED);
        }
        WaveRtStream::new(self.backend.clone(), self.direction, port_stream, format)
    }

    fn device_description(&self, description: &mut DEVICE_DESCRIPTION) -> NtResult<()> {
        // A scatter/gather bus master: PortCls only uses this to bound the
        // pages it allocates for the buffer.
        *description = DEVICE_DESCRIPTION {
            Version: DEVICE_DESCRIPTION_VERSION,
            Master: 1,
            ScatterGather: 1,
            Dma32BitAddresses: 1,
            Dma64BitAddresses: u8::from(self.backend.dma_reach() > u64::from(u32::MAX)),
            InterfaceType: self.backend.bus(),
            DmaWidth: Width32Bits,
            MaximumLength: self.backend.buffer_limits().max_bytes,
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
