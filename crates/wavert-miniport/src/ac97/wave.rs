//! The AC'97 wave miniports (render on PCM out, capture on PCM in).
//!
//! IRQL: every method at `PASSIVE_LEVEL`.

use alloc::sync::Arc;

use portcls_sys::{
    IPortWaveRT, IPortWaveRTStream, IResourceList, IUnknown, Width32Bits, DEVICE_DESCRIPTION,
    DEVICE_DESCRIPTION_VERSION, PCFILTER_DESCRIPTOR,
};
use wavert_com::{ComPtr, Miniport, MiniportWaveRt, NtResult, NtStatus};
use wavert_core::range::{intersect, parse_client_request, ClientRequest};

use super::device::Ac97Device;
use super::filters::{AC97_RANGE, AC97_WAVE_CAPTURE_FILTER, AC97_WAVE_RENDER_FILTER, CHANNELS};
use super::stream::{Ac97Stream, BUFFER_LIMITS};
use super::PortIo;
use crate::direction::Direction;
use crate::filters::WAVE_HOST_PIN;
use crate::platform::{LogLevel, Platform};
use crate::stream::parse_format;

/// The wave miniport of one AC'97 channel.
pub struct Ac97Wave<P: Platform, IO: PortIo> {
    device: Arc<Ac97Device<P, IO>>,
    direction: Direction,
}

impl<P: Platform, IO: PortIo> Ac97Wave<P, IO> {
    /// The wave miniport for `direction` of `device`.
    #[must_use]
    pub const fn new(device: Arc<Ac97Device<P, IO>>, direction: Direction) -> Self {
        Self { device, direction }
    }
}

impl<P: Platform, IO: PortIo> Miniport for Ac97Wave<P, IO> {
    fn description(&self) -> &'static PCFILTER_DESCRIPTOR {
        match self.direction {
            Direction::Render => &AC97_WAVE_RENDER_FILTER,
            Direction::Capture => &AC97_WAVE_CAPTURE_FILTER,
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
            return Err(NtStatus(portcls_sys::STATUS_NOT_IMPLEMENTED));
        }
        // The port passes our one range as the matching range.
        if !matches!(
            parse_client_request(matching_range),
            Ok(ClientRequest::Range(_))
        ) {
            return Err(NtStatus::NO_MATCH);
        }
        let format = intersect(data_range, &AC97_RANGE).map_err(|_| NtStatus::NO_MATCH)?;
        if format.channels() != CHANNELS {
            // The engines run two channels; a mono client is mixed up by
            // the audio engine, never handed to the device.
            return Err(NtStatus::NO_MATCH);
        }
        crate::wave::write_intersection(&format, result, result_len)
    }
}

impl<P: Platform, IO: PortIo> MiniportWaveRt for Ac97Wave<P, IO> {
    type Stream = Ac97Stream<P, IO>;

    fn init(
        &self,
        _adapter: Option<ComPtr<IUnknown>>,
        _resources: Option<ComPtr<IResourceList>>,
        _port: ComPtr<IPortWaveRT>,
    ) -> NtResult<()> {
        // The adapter already claimed the resources and brought the codec
        // up (the device is shared by four filters).
        self.device.log(
            LogLevel::Info,
            format_args!("AC'97 {:?} wave miniport initialised", self.direction),
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
        if !AC97_RANGE.contains(&format) || format.channels() != CHANNELS {
            return Err(NtStatus::NOT_SUPPORTED);
        }
        Ac97Stream::new(self.device.clone(), self.direction, port_stream, format)
    }

    fn device_description(&self, description: &mut DEVICE_DESCRIPTION) -> NtResult<()> {
        // A 32-bit scatter/gather bus master (BDBAR and the descriptors'
        // buffer pointers are 32 bits wide).
        *description = DEVICE_DESCRIPTION {
            Version: DEVICE_DESCRIPTION_VERSION,
            Master: 1,
            ScatterGather: 1,
            Dma32BitAddresses: 1,
            Dma64BitAddresses: 0,
            InterfaceType: portcls_sys::PCIBus,
            DmaWidth: Width32Bits,
            MaximumLength: BUFFER_LIMITS.max_bytes,
            ..DEVICE_DESCRIPTION::default()
        };
        Ok(())
    }
}
