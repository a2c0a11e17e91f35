//! GUIDs as they appear in KS structures, and the few this crate compares against.
//!
//! Values were checked against `ks.h` / `ksmedia.h` of MinGW-w64.

/// A GUID in its logical form. On the wire (Windows, little-endian) `data1`,
/// `data2` and `data3` are little-endian and `data4` is a plain byte array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Guid {
    /// First 32 bits.
    pub data1: u32,
    /// Next 16 bits.
    pub data2: u16,
    /// Next 16 bits.
    pub data3: u16,
    /// Last 64 bits, in byte order.
    pub data4: [u8; 8],
}

/// Size of a GUID on the wire.
pub const GUID_SIZE: usize = 16;

impl Guid {
    /// The all-zero GUID; KS uses it as the wildcard for major format,
    /// sub-format and specifier.
    pub const NULL: Self = Self::new(0, 0, 0, [0; 8]);

    /// Builds a GUID from its logical parts.
    #[must_use]
    pub const fn new(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> Self {
        Self {
            data1,
            data2,
            data3,
            data4,
        }
    }

    /// The GUID `DEFINE_WAVEFORMATEX_GUID(tag)` produces: a format tag embedded in
    /// the audio base GUID `xxxxxxxx-0000-0010-8000-00aa00389b71`.
    #[must_use]
    pub const fn from_wave_format_tag(tag: u16) -> Self {
        Self::new(
            tag as u32,
            0x0000,
            0x0010,
            [0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71],
        )
    }

    /// Reads a GUID from its 16-byte wire form.
    #[must_use]
    pub const fn from_le_bytes(b: [u8; GUID_SIZE]) -> Self {
        Self {
            data1: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            data2: u16::from_le_bytes([b[4], b[5]]),
            data3: u16::from_le_bytes([b[6], b[7]]),
            data4: [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]],
        }
    }

    /// Writes the 16-byte wire form.
    #[must_use]
    pub const fn to_le_bytes(self) -> [u8; GUID_SIZE] {
        let a = self.data1.to_le_bytes();
        let b = self.data2.to_le_bytes();
        let c = self.data3.to_le_bytes();
        let d = self.data4;
        [
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ]
    }

    /// True for the all-zero wildcard GUID.
    #[must_use]
    pub fn is_null(self) -> bool {
        self == Self::NULL
    }
}

/// `KSDATAFORMAT_TYPE_AUDIO` ('auds').
pub const KSDATAFORMAT_TYPE_AUDIO: Guid = Guid::new(
    0x7364_7561,
    0x0000,
    0x0010,
    [0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71],
);
/// `KSDATAFORMAT_SUBTYPE_PCM`.
pub const KSDATAFORMAT_SUBTYPE_PCM: Guid =
    Guid::from_wave_format_tag(crate::format::WAVE_FORMAT_PCM);
/// `KSDATAFORMAT_SUBTYPE_IEEE_FLOAT`.
pub const KSDATAFORMAT_SUBTYPE_IEEE_FLOAT: Guid =
    Guid::from_wave_format_tag(crate::format::WAVE_FORMAT_IEEE_FLOAT);
/// `KSDATAFORMAT_SPECIFIER_WAVEFORMATEX`: a WAVEFORMATEX follows the KSDATAFORMAT.
pub const KSDATAFORMAT_SPECIFIER_WAVEFORMATEX: Guid = Guid::new(
    0x0558_9f81,
    0xc356,
    0x11ce,
    [0xbf, 0x01, 0x00, 0xaa, 0x00, 0x55, 0x59, 0x5a],
);
/// `KSDATAFORMAT_SPECIFIER_NONE`.
pub const KSDATAFORMAT_SPECIFIER_NONE: Guid = Guid::new(
    0x0f64_17d6,
    0xc318,
    0x11d0,
    [0xa4, 0x3f, 0x00, 0xa0, 0xc9, 0x22, 0x31, 0x96],
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_round_trips_and_is_mixed_endian() {
        let bytes = KSDATAFORMAT_SUBTYPE_PCM.to_le_bytes();
        // Data1 = 1 little-endian, then 0000, 1000 (0x0010 LE), then 80 00 00 aa ...
        assert_eq!(&bytes[..8], &[1, 0, 0, 0, 0, 0, 0x10, 0]);
        assert_eq!(Guid::from_le_bytes(bytes), KSDATAFORMAT_SUBTYPE_PCM);
        assert!(Guid::NULL.is_null());
        assert!(!KSDATAFORMAT_TYPE_AUDIO.is_null());
    }
}
