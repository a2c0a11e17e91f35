//! WAVEFORMATEX / WAVEFORMATEXTENSIBLE: parsing hostile bytes into a checked
//! [`AudioFormat`], and writing a format back out.
//!
//! Supported matrix (anything else is rejected with a specific [`FormatError`]):
//!
//! | sample type | container bits | valid bits | tags |
//! |---|---|---|---|
//! | PCM integer | 8, 16, 24, 32 | equal to the container, or 24 in a 32-bit container | `WAVE_FORMAT_PCM`, `WAVE_FORMAT_EXTENSIBLE` + `KSDATAFORMAT_SUBTYPE_PCM` |
//! | IEEE float | 32 | 32 | `WAVE_FORMAT_IEEE_FLOAT`, `WAVE_FORMAT_EXTENSIBLE` + `KSDATAFORMAT_SUBTYPE_IEEE_FLOAT` |
//!
//! 1 to 16 channels, 8 kHz to 384 kHz. For WAVEFORMATEXTENSIBLE the channel mask
//! must name exactly as many speakers as there are channels, or be
//! `KSAUDIO_SPEAKER_DIRECTOUT` (0, no positions). Plain WAVEFORMATEX carries no
//! mask; the default `KSAUDIO_SPEAKER_*` layout for the channel count is assumed.

use crate::guid::{Guid, GUID_SIZE, KSDATAFORMAT_SUBTYPE_IEEE_FLOAT, KSDATAFORMAT_SUBTYPE_PCM};

/// `WAVE_FORMAT_PCM`.
pub const WAVE_FORMAT_PCM: u16 = 0x0001;
/// `WAVE_FORMAT_IEEE_FLOAT`.
pub const WAVE_FORMAT_IEEE_FLOAT: u16 = 0x0003;
/// `WAVE_FORMAT_EXTENSIBLE`.
pub const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Size of WAVEFORMATEX including `cbSize`.
pub const WAVEFORMATEX_SIZE: usize = 18;
/// Size of WAVEFORMATEXTENSIBLE.
pub const WAVEFORMATEXTENSIBLE_SIZE: usize = 40;
/// The `cbSize` a WAVEFORMATEXTENSIBLE needs at least (40 - 18).
pub const EXTENSIBLE_CB_SIZE: u16 = 22;

/// Lowest supported sample rate in Hz.
pub const MIN_SAMPLE_RATE: u32 = 8_000;
/// Highest supported sample rate in Hz.
pub const MAX_SAMPLE_RATE: u32 = 384_000;
/// Highest supported channel count (9.1.6; 7.1.4 is 12).
pub const MAX_CHANNELS: u16 = 16;

/// `SPEAKER_*` bits defined by Windows (front left 0x1 ... top back right 0x20000).
pub const SPEAKER_POSITION_BITS: u32 = 0x0003_FFFF;
/// `KSAUDIO_SPEAKER_DIRECTOUT`: channels without speaker positions.
pub const KSAUDIO_SPEAKER_DIRECTOUT: u32 = 0;
/// `KSAUDIO_SPEAKER_MONO` (front center).
pub const KSAUDIO_SPEAKER_MONO: u32 = 0x4;
/// `KSAUDIO_SPEAKER_STEREO`.
pub const KSAUDIO_SPEAKER_STEREO: u32 = 0x3;
/// Front left, front right, front center (no ksmedia name; the natural 3.0).
pub const SPEAKER_LAYOUT_3POINT0: u32 = 0x7;
/// `KSAUDIO_SPEAKER_QUAD`.
pub const KSAUDIO_SPEAKER_QUAD: u32 = 0x33;
/// `KSAUDIO_SPEAKER_SURROUND` (FL FR FC BC).
pub const KSAUDIO_SPEAKER_SURROUND: u32 = 0x107;
/// 5.0: FL FR FC BL BR (no ksmedia name).
pub const SPEAKER_LAYOUT_5POINT0: u32 = 0x37;
/// `KSAUDIO_SPEAKER_5POINT1`.
pub const KSAUDIO_SPEAKER_5POINT1: u32 = 0x3F;
/// `KSAUDIO_SPEAKER_5POINT1_SURROUND`.
pub const KSAUDIO_SPEAKER_5POINT1_SURROUND: u32 = 0x60F;
/// 6.1: 5.1 plus back center (no ksmedia name).
pub const SPEAKER_LAYOUT_6POINT1: u32 = 0x13F;
/// `KSAUDIO_SPEAKER_7POINT1` (with front left/right of center).
pub const KSAUDIO_SPEAKER_7POINT1: u32 = 0xFF;
/// `KSAUDIO_SPEAKER_7POINT1_SURROUND` (with side speakers).
pub const KSAUDIO_SPEAKER_7POINT1_SURROUND: u32 = 0x63F;
/// 7.1.4: 7.1 surround plus top front left/right and top back left/right
/// (no ksmedia name; the height layout people ask a cable for).
pub const SPEAKER_LAYOUT_7POINT1POINT4: u32 = 0x2_D63F;

/// The speakers [`default_channel_mask`] adds to 7.1 surround for 9 to 16
/// channels, in order: the top front pair (7.1.2), the top back pair
/// (7.1.4), front left/right of center (9.1.4), top front and top back
/// center (9.1.6). Windows names no layout above 7.1; this order keeps the
/// even counts the common height layouts.
const fn above_7point1(extra: u16) -> u32 {
    /// Each count's speaker: TFL, TFR, TBL, TBR, FLC, FRC, TFC, TBC.
    const ORDER: [u32; 8] = [
        0x1000, 0x4000, 0x8000, 0x2_0000, 0x40, 0x80, 0x2000, 0x1_0000,
    ];
    let mut mask = 0;
    let mut rest: &[u32] = &ORDER;
    let mut left = extra;
    while let [speaker, tail @ ..] = rest {
        if left == 0 {
            break;
        }
        mask |= *speaker;
        rest = tail;
        left -= 1;
    }
    mask
}

/// The layout assumed for a channel count when no mask is given.
#[must_use]
pub const fn default_channel_mask(channels: u16) -> u32 {
    match channels {
        1 => KSAUDIO_SPEAKER_MONO,
        2 => KSAUDIO_SPEAKER_STEREO,
        3 => SPEAKER_LAYOUT_3POINT0,
        4 => KSAUDIO_SPEAKER_QUAD,
        5 => SPEAKER_LAYOUT_5POINT0,
        6 => KSAUDIO_SPEAKER_5POINT1,
        7 => SPEAKER_LAYOUT_6POINT1,
        8 => KSAUDIO_SPEAKER_7POINT1_SURROUND,
        9..=16 => KSAUDIO_SPEAKER_7POINT1_SURROUND | above_7point1(channels - 8),
        _ => KSAUDIO_SPEAKER_DIRECTOUT,
    }
}

/// How samples are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleType {
    /// Signed integer PCM (8-bit is unsigned, as WAVE defines it).
    Pcm,
    /// IEEE 754 binary32.
    Float,
}

impl SampleType {
    /// The KS sub-format GUID of this sample type.
    #[must_use]
    pub const fn sub_format(self) -> Guid {
        match self {
            Self::Pcm => KSDATAFORMAT_SUBTYPE_PCM,
            Self::Float => KSDATAFORMAT_SUBTYPE_IEEE_FLOAT,
        }
    }

    /// The sample type a sub-format GUID names, if supported.
    #[must_use]
    pub fn from_sub_format(guid: Guid) -> Option<Self> {
        if guid == KSDATAFORMAT_SUBTYPE_PCM {
            Some(Self::Pcm)
        } else if guid == KSDATAFORMAT_SUBTYPE_IEEE_FLOAT {
            Some(Self::Float)
        } else {
            None
        }
    }
}

/// Why a format was rejected. One variant per rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// The bytes end before the structure does (`needed` bytes, `available` given).
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes supplied.
        available: usize,
    },
    /// `wFormatTag` is not PCM, IEEE float or EXTENSIBLE.
    UnsupportedFormatTag(u16),
    /// `nChannels` is 0 or above [`MAX_CHANNELS`].
    UnsupportedChannelCount(u16),
    /// `nSamplesPerSec` is outside 8 kHz ..= 384 kHz.
    UnsupportedSampleRate(u32),
    /// `wBitsPerSample` is not a supported container size for PCM (8/16/24/32).
    UnsupportedBitsPerSample(u16),
    /// IEEE float with a container other than 32 bits.
    UnsupportedFloatBits(u16),
    /// `nBlockAlign` differs from channels * bytes per sample.
    BlockAlignMismatch {
        /// What the other fields imply.
        expected: u32,
        /// What the format says.
        found: u16,
    },
    /// `nAvgBytesPerSec` differs from rate * block align.
    AvgBytesPerSecMismatch {
        /// What the other fields imply.
        expected: u32,
        /// What the format says.
        found: u32,
    },
    /// EXTENSIBLE with `cbSize` below 22.
    CbSizeTooSmall(u16),
    /// `cbSize` claims more extra bytes than were supplied.
    CbSizeBeyondBuffer {
        /// The claimed `cbSize`.
        cb_size: u16,
        /// Bytes supplied after the 18-byte WAVEFORMATEX.
        available: usize,
    },
    /// `wValidBitsPerSample` above `wBitsPerSample`.
    ValidBitsExceedContainer {
        /// Valid bits.
        valid: u16,
        /// Container bits.
        container: u16,
    },
    /// A valid-bits / container pair outside the matrix (e.g. 20 in 24, or 0).
    UnsupportedValidBits {
        /// Valid bits.
        valid: u16,
        /// Container bits.
        container: u16,
    },
    /// The channel mask names a different number of speakers than `nChannels`.
    ChannelMaskCountMismatch {
        /// `nChannels`.
        channels: u16,
        /// Speakers set in the mask.
        speakers: u32,
    },
    /// The channel mask sets bits that name no speaker (including `SPEAKER_ALL`).
    ChannelMaskReservedBits(u32),
    /// EXTENSIBLE with a SubFormat that is neither PCM nor IEEE float.
    UnknownSubFormat(Guid),
    /// An output buffer is too small to hold the encoded format.
    OutputTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes supplied.
        available: usize,
    },
}

/// The rule, in words (for tools' messages; the driver logs the variant).
impl core::fmt::Display for FormatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Truncated { needed, available } => {
                write!(f, "the format needs {needed} bytes, {available} given")
            }
            Self::UnsupportedFormatTag(tag) => write!(
                f,
                "format tag {tag:#06x} is not PCM, IEEE float or WAVE_FORMAT_EXTENSIBLE"
            ),
            Self::UnsupportedChannelCount(n) => {
                write!(f, "{n} channels: 1 to {MAX_CHANNELS} are supported")
            }
            Self::UnsupportedSampleRate(rate) => {
                write!(
                    f,
                    "{rate} Hz: {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz are supported"
                )
            }
            Self::UnsupportedBitsPerSample(bits) => {
                write!(
                    f,
                    "{bits}-bit PCM containers: 8, 16, 24 and 32 are supported"
                )
            }
            Self::UnsupportedFloatBits(bits) => {
                write!(f, "{bits}-bit float: only 32-bit float is supported")
            }
            Self::BlockAlignMismatch { expected, found } => {
                write!(f, "block align {found}, the other fields say {expected}")
            }
            Self::AvgBytesPerSecMismatch { expected, found } => write!(
                f,
                "{found} bytes per second, the other fields say {expected}"
            ),
            Self::CbSizeTooSmall(size) => {
                write!(f, "WAVE_FORMAT_EXTENSIBLE with cbSize {size} (at least 22)")
            }
            Self::CbSizeBeyondBuffer { cb_size, available } => write!(
                f,
                "cbSize {cb_size} claims more than the {available} bytes after WAVEFORMATEX"
            ),
            Self::ValidBitsExceedContainer { valid, container } => {
                write!(f, "{valid} valid bits in a {container}-bit container")
            }
            Self::UnsupportedValidBits { valid, container } => write!(
                f,
                "{valid} valid bits in {container}-bit containers are not supported"
            ),
            Self::ChannelMaskCountMismatch { channels, speakers } => write!(
                f,
                "the channel mask names {speakers} speakers for {channels} channels"
            ),
            Self::ChannelMaskReservedBits(mask) => {
                write!(f, "channel mask {mask:#x} sets bits that name no speaker")
            }
            Self::UnknownSubFormat(_) => {
                write!(f, "a SubFormat that is neither PCM nor IEEE float")
            }
            Self::OutputTooSmall { needed, available } => {
                write!(
                    f,
                    "the format needs {needed} bytes of output, {available} given"
                )
            }
        }
    }
}

/// A validated audio format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AudioFormat {
    sample_type: SampleType,
    channels: u16,
    sample_rate: u32,
    container_bits: u16,
    valid_bits: u16,
    channel_mask: u32,
    extensible: bool,
}

pub(crate) fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([*b.first()?, *b.get(1)?]))
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

pub(crate) fn read_guid(bytes: &[u8], at: usize) -> Option<Guid> {
    let b = bytes.get(at..at.checked_add(GUID_SIZE)?)?;
    let mut raw = [0u8; GUID_SIZE];
    raw.copy_from_slice(b);
    Some(Guid::from_le_bytes(raw))
}

/// Copies `src` into `out` at `at`; the caller has checked the length.
fn put(out: &mut [u8], at: usize, src: &[u8]) {
    if let Some(dst) = at
        .checked_add(src.len())
        .and_then(|end| out.get_mut(at..end))
    {
        dst.copy_from_slice(src);
    }
}

/// Checks a channel mask against a channel count.
///
/// # Errors
/// [`FormatError::ChannelMaskReservedBits`] or [`FormatError::ChannelMaskCountMismatch`].
pub const fn check_channel_mask(channels: u16, mask: u32) -> Result<(), FormatError> {
    if mask & !SPEAKER_POSITION_BITS != 0 {
        return Err(FormatError::ChannelMaskReservedBits(mask));
    }
    if mask != KSAUDIO_SPEAKER_DIRECTOUT && mask.count_ones() != channels as u32 {
        return Err(FormatError::ChannelMaskCountMismatch {
            channels,
            speakers: mask.count_ones(),
        });
    }
    Ok(())
}

impl AudioFormat {
    /// Builds a format from its parts, applying every rule of the matrix.
    /// `extensible` selects the encoding [`Self::write_waveformat`] produces.
    ///
    /// # Errors
    /// The [`FormatError`] of the first rule broken.
    pub const fn new(
        sample_type: SampleType,
        channels: u16,
        sample_rate: u32,
        container_bits: u16,
        valid_bits: u16,
        channel_mask: u32,
        extensible: bool,
    ) -> Result<Self, FormatError> {
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(FormatError::UnsupportedChannelCount(channels));
        }
        if sample_rate < MIN_SAMPLE_RATE || sample_rate > MAX_SAMPLE_RATE {
            return Err(FormatError::UnsupportedSampleRate(sample_rate));
        }
        match sample_type {
            SampleType::Pcm => {
                if !matches!(container_bits, 8 | 16 | 24 | 32) {
                    return Err(FormatError::UnsupportedBitsPerSample(container_bits));
                }
            }
            SampleType::Float => {
                if container_bits != 32 {
                    return Err(FormatError::UnsupportedFloatBits(container_bits));
                }
            }
        }
        if valid_bits > container_bits {
            return Err(FormatError::ValidBitsExceedContainer {
                valid: valid_bits,
                container: container_bits,
            });
        }
        let pair_ok = valid_bits == container_bits
            || (matches!(sample_type, SampleType::Pcm) && container_bits == 32 && valid_bits == 24);
        if !pair_ok {
            return Err(FormatError::UnsupportedValidBits {
                valid: valid_bits,
                container: container_bits,
            });
        }
        if let Err(e) = check_channel_mask(channels, channel_mask) {
            return Err(e);
        }
        Ok(Self {
            sample_type,
            channels,
            sample_rate,
            container_bits,
            valid_bits,
            channel_mask,
            extensible,
        })
    }

    /// Convenience: a WAVEFORMATEXTENSIBLE format with the default layout for
    /// `channels`.
    ///
    /// # Errors
    /// As [`Self::new`].
    pub const fn extensible(
        sample_type: SampleType,
        channels: u16,
        sample_rate: u32,
        container_bits: u16,
        valid_bits: u16,
    ) -> Result<Self, FormatError> {
        Self::new(
            sample_type,
            channels,
            sample_rate,
            container_bits,
            valid_bits,
            default_channel_mask(channels),
            true,
        )
    }

    /// Parses a WAVEFORMATEX or WAVEFORMATEXTENSIBLE from bytes of any length.
    /// Bytes after the structure are ignored. For `WAVE_FORMAT_PCM` `cbSize`
    /// is ignored, as the WAVEFORMATEX documentation says it is.
    ///
    /// # Errors
    /// The [`FormatError`] naming the first inconsistency.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let truncated = |needed: usize| FormatError::Truncated {
            needed,
            available: bytes.len(),
        };
        // A PCMWAVEFORMAT (16 bytes, no cbSize) is legal for WAVE_FORMAT_PCM.
        let tag = read_u16(bytes, 0).ok_or_else(|| truncated(WAVEFORMATEX_SIZE))?;
        let channels = read_u16(bytes, 2).ok_or_else(|| truncated(WAVEFORMATEX_SIZE))?;
        let rate = read_u32(bytes, 4).ok_or_else(|| truncated(WAVEFORMATEX_SIZE))?;
        let avg = read_u32(bytes, 8).ok_or_else(|| truncated(WAVEFORMATEX_SIZE))?;
        let block_align = read_u16(bytes, 12).ok_or_else(|| truncated(WAVEFORMATEX_SIZE))?;
        let bits = read_u16(bytes, 14).ok_or_else(|| truncated(WAVEFORMATEX_SIZE))?;
        let cb_size = if tag == WAVE_FORMAT_PCM {
            0
        } else {
            read_u16(bytes, 16).ok_or_else(|| truncated(WAVEFORMATEX_SIZE))?
        };
        let extra = bytes.len().saturating_sub(WAVEFORMATEX_SIZE);
        if usize::from(cb_size) > extra {
            return Err(FormatError::CbSizeBeyondBuffer {
                cb_size,
                available: extra,
            });
        }
        let format = match tag {
            WAVE_FORMAT_PCM | WAVE_FORMAT_IEEE_FLOAT => {
                let sample_type = if tag == WAVE_FORMAT_PCM {
                    SampleType::Pcm
                } else {
                    SampleType::Float
                };
                Self::new(
                    sample_type,
                    channels,
                    rate,
                    bits,
                    bits,
                    default_channel_mask(channels),
                    false,
                )?
            }
            WAVE_FORMAT_EXTENSIBLE => {
                if cb_size < EXTENSIBLE_CB_SIZE {
                    return Err(FormatError::CbSizeTooSmall(cb_size));
                }
                let valid =
                    read_u16(bytes, 18).ok_or_else(|| truncated(WAVEFORMATEXTENSIBLE_SIZE))?;
                let mask =
                    read_u32(bytes, 20).ok_or_else(|| truncated(WAVEFORMATEXTENSIBLE_SIZE))?;
                let sub =
                    read_guid(bytes, 24).ok_or_else(|| truncated(WAVEFORMATEXTENSIBLE_SIZE))?;
                let sample_type =
                    SampleType::from_sub_format(sub).ok_or(FormatError::UnknownSubFormat(sub))?;
                Self::new(sample_type, channels, rate, bits, valid, mask, true)?
            }
            other => return Err(FormatError::UnsupportedFormatTag(other)),
        };
        if u32::from(block_align) != format.block_align() {
            return Err(FormatError::BlockAlignMismatch {
                expected: format.block_align(),
                found: block_align,
            });
        }
        if avg != format.bytes_per_second() {
            return Err(FormatError::AvgBytesPerSecMismatch {
                expected: format.bytes_per_second(),
                found: avg,
            });
        }
        Ok(format)
    }

    /// Sample encoding.
    #[must_use]
    pub const fn sample_type(&self) -> SampleType {
        self.sample_type
    }
    /// Channel count (1..=8).
    #[must_use]
    pub const fn channels(&self) -> u16 {
        self.channels
    }
    /// Frames per second.
    #[must_use]
    pub const fn sample_rate(&self) -> u32 {
        self.sample_rate
    }
    /// Bits each sample occupies in memory.
    #[must_use]
    pub const fn container_bits(&self) -> u16 {
        self.container_bits
    }
    /// Bits of each sample that carry signal.
    #[must_use]
    pub const fn valid_bits(&self) -> u16 {
        self.valid_bits
    }
    /// Speaker positions (`KSAUDIO_SPEAKER_*`).
    #[must_use]
    pub const fn channel_mask(&self) -> u32 {
        self.channel_mask
    }
    /// Whether the format is encoded as WAVEFORMATEXTENSIBLE.
    #[must_use]
    pub const fn is_extensible(&self) -> bool {
        self.extensible
    }
    /// Bytes per frame (`nBlockAlign`). At most 8 * 4 = 32.
    #[must_use]
    pub const fn block_align(&self) -> u32 {
        self.channels as u32 * (self.container_bits as u32 / 8)
    }
    /// Bytes per second (`nAvgBytesPerSec`). At most 192000 * 32, no overflow.
    #[must_use]
    pub const fn bytes_per_second(&self) -> u32 {
        self.sample_rate * self.block_align()
    }
    /// Bytes [`Self::write_waveformat`] writes.
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        if self.extensible {
            WAVEFORMATEXTENSIBLE_SIZE
        } else {
            WAVEFORMATEX_SIZE
        }
    }

    /// Writes the WAVEFORMATEX (or WAVEFORMATEXTENSIBLE) form into `out`,
    /// returning the bytes written.
    ///
    /// # Errors
    /// [`FormatError::OutputTooSmall`].
    pub fn write_waveformat(&self, out: &mut [u8]) -> Result<usize, FormatError> {
        let needed = self.encoded_len();
        if out.len() < needed {
            return Err(FormatError::OutputTooSmall {
                needed,
                available: out.len(),
            });
        }
        let tag = match (self.extensible, self.sample_type) {
            (true, _) => WAVE_FORMAT_EXTENSIBLE,
            (false, SampleType::Pcm) => WAVE_FORMAT_PCM,
            (false, SampleType::Float) => WAVE_FORMAT_IEEE_FLOAT,
        };
        // Both values are small by construction (block align <= 32).
        let block_align = u16::try_from(self.block_align()).unwrap_or(u16::MAX);
        put(out, 0, &tag.to_le_bytes());
        put(out, 2, &self.channels.to_le_bytes());
        put(out, 4, &self.sample_rate.to_le_bytes());
        put(out, 8, &self.bytes_per_second().to_le_bytes());
        put(out, 12, &block_align.to_le_bytes());
        put(out, 14, &self.container_bits.to_le_bytes());
        let cb_size = if self.extensible {
            EXTENSIBLE_CB_SIZE
        } else {
            0
        };
        put(out, 16, &cb_size.to_le_bytes());
        if self.extensible {
            put(out, 18, &self.valid_bits.to_le_bytes());
            put(out, 20, &self.channel_mask.to_le_bytes());
            put(out, 24, &self.sample_type.sub_format().to_le_bytes());
        }
        Ok(needed)
    }
}
