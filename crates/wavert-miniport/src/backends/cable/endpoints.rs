//! The cable's two endpoints as their topology filters describe them: node
//! channels and jack.
//!
//! The cable is a virtual device built into the machine, so its jacks are
//! described as simpleaudiosample describes its virtual speaker
//! (`speakertoptable.h`): an integrated device (`ePortConnIntegratedDevice`)
//! on the primary box, no physical connector (`eConnTypeUnknown`), always
//! connected (no presence detection: `IsConnected` must then be TRUE,
//! Learn `KSJACK_DESCRIPTION2`). Both sides carry every channel the cable
//! offers, in the speaker layout its intersection picks for that many.

use portcls_sys::{
    eConnTypeUnknown, eGenLocPrimaryBox, eGeoLocFront, ePortConnIntegratedDevice, BOOL,
    KSJACK_DESCRIPTION,
};
use wavert_core::format::default_channel_mask;

use crate::direction::Direction;
use crate::topology::{jack_rgb, Endpoint};

use super::filters::MAX_CHANNELS;

/// A jack of the cable, in `color`.
const fn jack(color: u32) -> KSJACK_DESCRIPTION {
    KSJACK_DESCRIPTION {
        ChannelMapping: default_channel_mask(MAX_CHANNELS),
        Color: color,
        ConnectionType: eConnTypeUnknown,
        GeoLocation: eGeoLocFront,
        GenLocation: eGenLocPrimaryBox,
        PortConnection: ePortConnIntegratedDevice,
        IsConnected: 1 as BOOL,
    }
}

/// The cable's output: line-out green (the samples' speaker colour).
pub const RENDER: Endpoint = Endpoint::new(channel_count(), jack(jack_rgb(179, 201, 140)));
/// The cable's input: microphone pink.
pub const CAPTURE: Endpoint = Endpoint::new(channel_count(), jack(jack_rgb(255, 128, 192)));

/// [`MAX_CHANNELS`] as the node channel count.
const fn channel_count() -> u8 {
    // MAX_CHANNELS is 16.
    #[allow(clippy::cast_possible_truncation, reason = "16 channels")]
    let count = MAX_CHANNELS as u8;
    count
}

/// The endpoint of `direction`.
#[must_use]
pub const fn endpoint(direction: Direction) -> Endpoint {
    match direction {
        Direction::Render => RENDER,
        Direction::Capture => CAPTURE,
    }
}
