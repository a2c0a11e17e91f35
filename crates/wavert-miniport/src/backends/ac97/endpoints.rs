//! The AC'97's two endpoints as their topology filters describe them: node
//! channels and jack.
//!
//! A real card with real 3.5 mm jacks on the back of the machine
//! (`ePortConnJack`, `eGeoLocRear`, `eGenLocPrimaryBox`), without jack
//! presence detection, so `IsConnected` is TRUE (Learn,
//! `KSJACK_DESCRIPTION2`). Both mixer paths are stereo (master volume and
//! record gain have a left and a right field, AC'97 2.3 section 5.7), so
//! both nodes have two channels; the microphone input itself is mono
//! (register 0Eh, recorded on both ADC channels), so its jack maps one
//! channel, as SYSVAD's microphone jack does (`micintoptable.h`).

use portcls_sys::{
    eConnType3Point5mm, eGenLocPrimaryBox, eGeoLocRear, ePortConnJack, BOOL, KSAUDIO_SPEAKER_MONO,
    KSAUDIO_SPEAKER_STEREO, KSJACK_DESCRIPTION,
};

use crate::direction::Direction;
use crate::topology::{jack_rgb, Endpoint};

/// A rear-panel 3.5 mm jack mapping `channels`, in `color`.
const fn jack(channels: u32, color: u32) -> KSJACK_DESCRIPTION {
    KSJACK_DESCRIPTION {
        ChannelMapping: channels,
        Color: color,
        ConnectionType: eConnType3Point5mm,
        GeoLocation: eGeoLocRear,
        GenLocation: eGenLocPrimaryBox,
        PortConnection: ePortConnJack,
        IsConnected: 1 as BOOL,
    }
}

/// Line out: stereo, green (the samples' speaker colour).
pub const RENDER: Endpoint =
    Endpoint::new(2, jack(KSAUDIO_SPEAKER_STEREO, jack_rgb(179, 201, 140)));
/// Microphone in: mono jack, pink; stereo record gain.
pub const CAPTURE: Endpoint = Endpoint::new(2, jack(KSAUDIO_SPEAKER_MONO, jack_rgb(255, 128, 192)));

/// The endpoint of `direction`.
#[must_use]
pub const fn endpoint(direction: Direction) -> Endpoint {
    match direction {
        Direction::Render => RENDER,
        Direction::Capture => CAPTURE,
    }
}
