//! The two endpoints' jacks from the pin complexes' configuration defaults.
//!
//! (HDA spec 7.3.3.31, `Get Configuration Default`), read by the codec
//! walk: port connectivity (bits 31:30), location (29:24: gross 29:28,
//! geometric 27:24), connection type (19:16), colour (15:12).
//!
//! `KSJACK_DESCRIPTION`'s enumerations (Learn, `KSJACK_DESCRIPTION`) follow
//! the same fields: `EPcxConnectionType` numbers connection types as the
//! HDA spec does (0 unknown to 0xA RJ-11, then combination), so the map is
//! the identity there; `EPcxGeoLocation` starts at rear = 1 as the spec's
//! geometric location does; `EPcxGenLocation` numbers the gross locations
//! alike (primary chassis, internal, separate, other).

use portcls_sys::{
    eConnTypeUnknown, eGenLocPrimaryBox, eGeoLocRear, ePortConnBothIntegratedAndJack,
    ePortConnIntegratedDevice, ePortConnJack, KSAUDIO_SPEAKER_MONO, KSAUDIO_SPEAKER_STEREO,
    KSJACK_DESCRIPTION,
};
use wavert_core::hda::codec::Pin;

use crate::topology::{jack_rgb, Endpoint};

/// The colour code's RGB (HDA spec 7.3.3.31, table 110): unknown reads
/// as black, "other" as grey.
#[must_use]
pub const fn color(code: u8) -> u32 {
    match code {
        2 | 0xF => jack_rgb(128, 128, 128),
        3 => jack_rgb(0, 0, 255),
        4 => jack_rgb(0, 255, 0),
        5 => jack_rgb(255, 0, 0),
        6 => jack_rgb(255, 128, 0),
        7 => jack_rgb(255, 255, 0),
        8 => jack_rgb(128, 0, 128),
        9 => jack_rgb(255, 128, 192),
        0xE => jack_rgb(255, 255, 255),
        _ => jack_rgb(0, 0, 0),
    }
}

/// The jack a pin complex's configuration default describes, mapping
/// `channels` (1 or 2) of the endpoint.
#[must_use]
#[allow(
    clippy::cast_possible_wrap,
    reason = "every field is masked to 4 bits or fewer"
)]
pub const fn jack(config_default: u32, channels: u16) -> KSJACK_DESCRIPTION {
    let connectivity = config_default >> 30;
    let gross = (config_default >> 28) & 0x3;
    let geometric = (config_default >> 24) & 0xF;
    let connection = (config_default >> 16) & 0xF;
    #[allow(clippy::cast_possible_truncation, reason = "masked to 4 bits")]
    let colour = ((config_default >> 12) & 0xF) as u8;
    KSJACK_DESCRIPTION {
        ChannelMapping: if channels >= 2 {
            KSAUDIO_SPEAKER_STEREO
        } else {
            KSAUDIO_SPEAKER_MONO
        },
        Color: color(colour),
        ConnectionType: if connection <= 0xB {
            connection as i32
        } else {
            eConnTypeUnknown
        },
        // Geometric 0 is "not applicable": the rear panel, where a desktop
        // codec's jacks are, stands in (QEMU's pins say 0).
        GeoLocation: if geometric >= 1 && geometric <= 6 {
            geometric as i32
        } else {
            eGeoLocRear
        },
        GenLocation: if gross == 0 {
            eGenLocPrimaryBox
        } else {
            gross as i32
        },
        PortConnection: match connectivity {
            2 => ePortConnIntegratedDevice,
            3 => ePortConnBothIntegratedAndJack,
            _ => ePortConnJack,
        },
        // Connectivity 1: no physical connection. Without presence
        // detection a jack counts as connected (Learn, KSJACK_DESCRIPTION2).
        IsConnected: (connectivity != 1) as i32,
    }
}

/// Port connectivity "no physical connection" (bits 31:30 = 1): the jack
/// of a direction the codec has no path for.
pub const NO_CONNECTION: u32 = 1 << 30;

/// The endpoint a path ends at: two channels through the nodes, the jack
/// from its pin (`None`: no path, a jack that is not connected).
#[must_use]
pub const fn endpoint(pin: Option<Pin>) -> Endpoint {
    let config = match pin {
        Some(pin) => pin.config_default,
        None => NO_CONNECTION,
    };
    Endpoint::new(2, jack(config, 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcls_sys::{eConnType3Point5mm, eGenLocInternal, eGeoLocFront};

    #[test]
    fn qemu_pin_defaults_become_green_and_red_rear_jacks() {
        // hda-duplex: line out green, line in red, jack, location N/A.
        let out = jack((4 << 12) | 0x10, 2);
        assert_eq!(out.Color, jack_rgb(0, 255, 0));
        assert_eq!(out.PortConnection, ePortConnJack);
        assert_eq!(out.GeoLocation, eGeoLocRear);
        assert_eq!(out.IsConnected, 1);
        let line_in = jack((8 << 20) | (5 << 12) | 0x20, 2);
        assert_eq!(line_in.Color, jack_rgb(255, 0, 0));
    }

    #[test]
    fn every_field_is_read_from_its_bits() {
        // Integrated (2), internal (gross 1), front (2), 1/8" (1), blue.
        let config = (2 << 30) | (1 << 28) | (2 << 24) | (1 << 16) | (3 << 12);
        let j = jack(config, 1);
        assert_eq!(j.PortConnection, ePortConnIntegratedDevice);
        assert_eq!(j.GenLocation, eGenLocInternal);
        assert_eq!(j.GeoLocation, eGeoLocFront);
        assert_eq!(j.ConnectionType, eConnType3Point5mm);
        assert_eq!(j.Color, jack_rgb(0, 0, 255));
        assert_eq!(j.ChannelMapping, KSAUDIO_SPEAKER_MONO);
        assert_eq!(endpoint(None).jack().IsConnected, 0);
    }
}
