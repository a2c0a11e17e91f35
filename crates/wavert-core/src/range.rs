//! KSDATARANGE_AUDIO and the data-range intersection PortCls asks a miniport
//! for (`IMiniport::DataRangeIntersection`).
//!
//! # What a range admits
//!
//! A `KSDATARANGE_AUDIO` names bits per sample (the *valid* bits), channels
//! and rates, but no container size. A [`DeviceRange`] therefore also says
//! which containers a sample of 24 valid bits may use
//! ([`DeviceRange::containers_for_24`]: 24 = packed in three bytes, 32 = in
//! the upper three bytes of four, the common exclusive-mode format); every
//! other depth uses its own size (16 in 16, 32 in 32, 8 in 8). A device that
//! advertises one range per depth (as the cable does) advertises exactly the
//! depths it accepts: no depth inside a range is refused.
//!
//! # The intersection rule
//!
//! The client's "range" arrives as raw bytes and is one of:
//!
//! 1. a `KSDATARANGE_AUDIO` (`FormatSize` == 84 or 88): a format inside
//!    both ranges, field by field (channels, valid bits, rate):
//!    * a field the client *constrains* (its range does not cover the
//!      device's) gets the highest value both allow, the "highest quality
//!      intersection" of Learn's `IMiniport::DataRangeIntersection` and what
//!      the port's default handler picks ("Default Data-Intersection
//!      Handlers");
//!    * a field the client leaves *open* (its range spans every value a
//!      format can take: more than [`MAX_CHANNELS`] channels, 8 to 32 bits,
//!      [`MIN_SAMPLE_RATE`] to at least [`OPEN_RATE_TOP`]) gets the device's
//!      preferred value (its default format, `PKEY_AudioEngine_OEMFormat`),
//!      clamped into the device range, and for depths the nearest deeper
//!      one the range has, else the nearest shallower one. So a wildcard
//!      client gets the default format, not the corner of the range
//!      (8 channels at the top rate), while a client that names a limit inside
//!      the format space (up to 6 channels, exactly 96 kHz) gets it.
//!
//!    24 valid bits come in the preferred format's container when the device
//!    range allows it, else in the range's first.
//! 2. a `KSDATAFORMAT` followed by a WAVEFORMATEX(TENSIBLE) (specifier
//!    `KSDATAFORMAT_SPECIFIER_WAVEFORMATEX`, any other `FormatSize` >= 82): a
//!    specific format; the result is exactly that format if the device range
//!    contains it, otherwise an error. This is what the audio engine sends when
//!    it proposes a format.
//! 3. a bare `KSDATARANGE` (`FormatSize` == 64) with wildcards: as 1 with a
//!    client that leaves every field open, i.e. the preferred format
//!    clamped into the device range.
//!
//! Major format must be audio or the wildcard; sub-format PCM, IEEE float or
//! the wildcard; specifier WAVEFORMATEX or the wildcard.

use crate::format::{
    default_channel_mask, read_guid, read_u32, AudioFormat, FormatError, SampleType, MAX_CHANNELS,
    MAX_SAMPLE_RATE, MIN_SAMPLE_RATE,
};
use crate::guid::{Guid, KSDATAFORMAT_SPECIFIER_WAVEFORMATEX, KSDATAFORMAT_TYPE_AUDIO};

/// The rate a client range must reach, from [`MIN_SAMPLE_RATE`] up, to
/// leave the rate open.
///
/// 192 kHz, the classic top of the format space (before the formats
/// reached 384 kHz), so that a client asking for "8 to 192 kHz" still gets
/// the default rate, not the highest common one.
pub const OPEN_RATE_TOP: u32 = 192_000;

/// Size of `KSDATAFORMAT` / `KSDATARANGE`.
pub const KSDATAFORMAT_SIZE: usize = 64;
/// Size of `KSDATARANGE_AUDIO`.
pub const KSDATARANGE_AUDIO_SIZE: usize = 84;
/// `sizeof(KSDATARANGE_AUDIO)` on x64.
///
/// 84 bytes of fields padded to 88 by the 8-byte alignment of `KSDATARANGE`
/// (its `LONGLONG Alignment` member). Drivers' static ranges and the audio engine's requests use this as
/// `FormatSize`; it is parsed like [`KSDATARANGE_AUDIO_SIZE`].
pub const KSDATARANGE_AUDIO_PADDED_SIZE: usize = 88;
/// Size of `KSDATAFORMAT` + `WAVEFORMATEXTENSIBLE`, the largest result
/// [`write_ks_data_format`] writes.
pub const KSDATAFORMAT_WAVEFORMATEXTENSIBLE_SIZE: usize = 104;

/// Why an intersection (or a range) was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntersectError {
    /// Fewer bytes than the structure needs.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes supplied.
        available: usize,
    },
    /// `FormatSize` is below 64 or larger than the bytes supplied.
    BadFormatSize {
        /// Declared `FormatSize`.
        declared: u32,
        /// Bytes supplied.
        available: usize,
    },
    /// Major format neither audio nor the wildcard.
    NotAudio(Guid),
    /// Specifier neither WAVEFORMATEX nor the wildcard.
    UnsupportedSpecifier(Guid),
    /// Sub-format the device does not offer (or one that disagrees with the
    /// WAVEFORMATEX that follows it).
    SubFormatMismatch(Guid),
    /// A `KSDATARANGE_AUDIO` whose minimum exceeds its maximum.
    InvertedRange,
    /// The client's specific format is malformed.
    Format(FormatError),
    /// The client's specific format is valid but outside the device's range.
    FormatOutsideDeviceRange,
    /// The client allows no channel (maximum 0).
    NoCommonChannels,
    /// No supported bit depth lies in both ranges.
    NoCommonBitDepth,
    /// The two sample-rate ranges do not overlap (or the overlap is outside
    /// 8 kHz ..= 384 kHz).
    NoCommonSampleRate,
    /// The output buffer is too small for the result.
    OutputTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes supplied.
        available: usize,
    },
}

impl From<FormatError> for IntersectError {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

/// What a device pin supports: one sample type, up to `max_channels`, valid
/// bits and rates in closed ranges, and the containers 24 valid bits may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRange {
    /// Sample encoding.
    pub sample_type: SampleType,
    /// Most channels.
    pub max_channels: u16,
    /// Fewest valid bits per sample.
    pub min_bits: u16,
    /// Most valid bits per sample.
    pub max_bits: u16,
    /// Lowest rate in Hz.
    pub min_rate: u32,
    /// Highest rate in Hz.
    pub max_rate: u32,
    /// Containers a sample of 24 valid bits may come in: 24 (packed) and/or
    /// 32, the one an intersection picks by default first. Empty: 24 valid
    /// bits are not accepted even if the bit range spans them.
    pub containers_for_24: &'static [u16],
}

/// Whether `container` is one of `containers` (a `const` loop: slices have
/// no `const` `contains`).
const fn lists(containers: &[u16], container: u16) -> bool {
    let mut rest = containers;
    while let [first, tail @ ..] = rest {
        if *first == container {
            return true;
        }
        rest = tail;
    }
    false
}

impl DeviceRange {
    /// Whether `format` lies inside this range.
    #[must_use]
    pub const fn contains(&self, format: &AudioFormat) -> bool {
        let same_type = matches!(
            (self.sample_type, format.sample_type()),
            (SampleType::Pcm, SampleType::Pcm) | (SampleType::Float, SampleType::Float)
        );
        let container_ok =
            format.valid_bits() != 24 || lists(self.containers_for_24, format.container_bits());
        same_type
            && container_ok
            && format.channels() <= self.max_channels
            && format.valid_bits() >= self.min_bits
            && format.valid_bits() <= self.max_bits
            && format.sample_rate() >= self.min_rate
            && format.sample_rate() <= self.max_rate
    }

    /// The format of this range closest to `preferred` (what a wildcard
    /// client gets): `preferred` itself when the range contains it.
    ///
    /// # Errors
    /// As [`intersect_ranges`] when the range itself is empty.
    pub fn closest_format(&self, preferred: &AudioFormat) -> Result<AudioFormat, IntersectError> {
        intersect_ranges(&ClientRange::open(), self, preferred)
    }

    /// Writes this range as a `KSDATARANGE_AUDIO` (84 bytes) for a pin's
    /// data-range table.
    ///
    /// # Errors
    /// [`IntersectError::OutputTooSmall`].
    pub fn write_ks_data_range(&self, out: &mut [u8]) -> Result<usize, IntersectError> {
        let available = out.len();
        let dst = out
            .get_mut(..KSDATARANGE_AUDIO_SIZE)
            .ok_or(IntersectError::OutputTooSmall {
                needed: KSDATARANGE_AUDIO_SIZE,
                available,
            })?;
        dst.fill(0);
        let mut w = Writer { out: dst, at: 0 };
        // FormatSize, Flags, SampleSize, Reserved.
        w.u32(84);
        w.u32(0);
        w.u32(0);
        w.u32(0);
        w.guid(KSDATAFORMAT_TYPE_AUDIO);
        w.guid(self.sample_type.sub_format());
        w.guid(KSDATAFORMAT_SPECIFIER_WAVEFORMATEX);
        w.u32(u32::from(self.max_channels));
        w.u32(u32::from(self.min_bits));
        w.u32(u32::from(self.max_bits));
        w.u32(self.min_rate);
        w.u32(self.max_rate);
        Ok(KSDATARANGE_AUDIO_SIZE)
    }
}

/// Little-endian writer over a slice already checked to be long enough.
struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, src: &[u8]) {
        let end = self.at.saturating_add(src.len());
        if let Some(dst) = self.out.get_mut(self.at..end) {
            dst.copy_from_slice(src);
        }
        self.at = end;
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn guid(&mut self, g: Guid) {
        self.bytes(&g.to_le_bytes());
    }
}

/// A client's `KSDATARANGE_AUDIO`, decoded. `sample_type` is `None` for the
/// sub-format wildcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientRange {
    /// Requested sample type, `None` = any.
    pub sample_type: Option<SampleType>,
    /// `MaximumChannels` (may be `u32::MAX` for "no limit").
    pub max_channels: u32,
    /// `MinimumBitsPerSample`.
    pub min_bits: u32,
    /// `MaximumBitsPerSample`.
    pub max_bits: u32,
    /// `MinimumSampleFrequency`.
    pub min_rate: u32,
    /// `MaximumSampleFrequency`.
    pub max_rate: u32,
}

impl ClientRange {
    /// A range that leaves every field open: any sample type, channels,
    /// depth and rate (what a bare `KSDATARANGE` wildcard means).
    #[must_use]
    pub const fn open() -> Self {
        Self {
            sample_type: None,
            max_channels: u32::MAX,
            min_bits: 0,
            max_bits: u32::MAX,
            min_rate: 0,
            max_rate: u32::MAX,
        }
    }
}

/// What a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientRequest {
    /// A range: the best format inside it is wanted.
    Range(ClientRange),
    /// One specific format.
    Format(AudioFormat),
}

/// Decoded KSDATAFORMAT / KSDATARANGE header.
struct Header {
    format_size: usize,
    sub_format: Guid,
    specifier: Guid,
}

fn parse_header(bytes: &[u8]) -> Result<Header, IntersectError> {
    let truncated = IntersectError::Truncated {
        needed: KSDATAFORMAT_SIZE,
        available: bytes.len(),
    };
    let declared = read_u32(bytes, 0).ok_or(truncated)?;
    let major = read_guid(bytes, 16).ok_or(truncated)?;
    let sub_format = read_guid(bytes, 32).ok_or(truncated)?;
    let specifier = read_guid(bytes, 48).ok_or(truncated)?;
    let format_size = usize::try_from(declared).unwrap_or(usize::MAX);
    if format_size < KSDATAFORMAT_SIZE || format_size > bytes.len() {
        return Err(IntersectError::BadFormatSize {
            declared,
            available: bytes.len(),
        });
    }
    if !(major.is_null() || major == KSDATAFORMAT_TYPE_AUDIO) {
        return Err(IntersectError::NotAudio(major));
    }
    if !(specifier.is_null() || specifier == KSDATAFORMAT_SPECIFIER_WAVEFORMATEX) {
        return Err(IntersectError::UnsupportedSpecifier(specifier));
    }
    Ok(Header {
        format_size,
        sub_format,
        specifier,
    })
}

/// Decodes what a client sent as its data range (see the module docs for the
/// three shapes). Bytes beyond `FormatSize` are ignored.
///
/// # Errors
/// The [`IntersectError`] naming what is wrong.
pub fn parse_client_request(bytes: &[u8]) -> Result<ClientRequest, IntersectError> {
    let header = parse_header(bytes)?;
    let sample_type = if header.sub_format.is_null() {
        None
    } else {
        Some(
            SampleType::from_sub_format(header.sub_format)
                .ok_or(IntersectError::SubFormatMismatch(header.sub_format))?,
        )
    };
    let body = bytes.get(..header.format_size).unwrap_or(bytes);
    match header.format_size {
        KSDATAFORMAT_SIZE => Ok(ClientRequest::Range(ClientRange {
            sample_type,
            ..ClientRange::open()
        })),
        KSDATARANGE_AUDIO_SIZE | KSDATARANGE_AUDIO_PADDED_SIZE => {
            let field = |at| read_u32(body, at).unwrap_or(0);
            let range = ClientRange {
                sample_type,
                max_channels: field(64),
                min_bits: field(68),
                max_bits: field(72),
                min_rate: field(76),
                max_rate: field(80),
            };
            if range.min_bits > range.max_bits || range.min_rate > range.max_rate {
                return Err(IntersectError::InvertedRange);
            }
            Ok(ClientRequest::Range(range))
        }
        _ => {
            if header.specifier.is_null() {
                // A specific format must say what follows it.
                return Err(IntersectError::UnsupportedSpecifier(header.specifier));
            }
            let wfx = body.get(KSDATAFORMAT_SIZE..).unwrap_or(&[]);
            let format = AudioFormat::parse(wfx)?;
            if let Some(t) = sample_type {
                if t != format.sample_type() {
                    return Err(IntersectError::SubFormatMismatch(header.sub_format));
                }
            }
            Ok(ClientRequest::Format(format))
        }
    }
}

/// The shallowest and deepest valid bits of any format.
const MIN_DEPTH: u32 = 8;
const MAX_DEPTH: u32 = 32;

/// The valid-bit depths a sample type has, shallowest first.
const fn depths(sample_type: SampleType) -> &'static [u16] {
    match sample_type {
        SampleType::Pcm => &[8, 16, 24, 32],
        SampleType::Float => &[32],
    }
}

/// The depth of `candidates` closest to `preferred`: `preferred` itself,
/// else the shallowest deeper one (no resolution lost), else the deepest
/// shallower one.
fn closest_depth(candidates: impl Iterator<Item = u16> + Clone, preferred: u16) -> Option<u16> {
    candidates
        .clone()
        .filter(|&b| b >= preferred)
        .min()
        .or_else(|| candidates.filter(|&b| b < preferred).max())
}

/// The format inside both a client range and the device range.
///
/// Per field, the highest value both allow where the client constrains it,
/// the preferred value (clamped) where it leaves it open (module docs).
///
/// # Errors
/// [`IntersectError::SubFormatMismatch`], [`IntersectError::NoCommonChannels`],
/// [`IntersectError::NoCommonBitDepth`], [`IntersectError::NoCommonSampleRate`].
pub fn intersect_ranges(
    client: &ClientRange,
    device: &DeviceRange,
    preferred: &AudioFormat,
) -> Result<AudioFormat, IntersectError> {
    if let Some(t) = client.sample_type {
        if t != device.sample_type {
            return Err(IntersectError::SubFormatMismatch(t.sub_format()));
        }
    }
    let device_channels = device.max_channels.min(MAX_CHANNELS);
    let max_channels = client.max_channels.min(u32::from(device_channels));
    let max_channels = u16::try_from(max_channels)
        .ok()
        .filter(|&c| c >= 1)
        .ok_or(IntersectError::NoCommonChannels)?;
    let channels = if client.max_channels > u32::from(MAX_CHANNELS) {
        preferred.channels().clamp(1, max_channels)
    } else {
        max_channels
    };
    let lo_bits = client.min_bits.max(u32::from(device.min_bits));
    let hi_bits = client.max_bits.min(u32::from(device.max_bits));
    let usable = depths(device.sample_type).iter().copied().filter(|&b| {
        (lo_bits..=hi_bits).contains(&u32::from(b))
            && (b != 24 || !device.containers_for_24.is_empty())
    });
    let bits_open = client.min_bits <= MIN_DEPTH && client.max_bits >= MAX_DEPTH;
    let valid_bits = if bits_open {
        closest_depth(usable, preferred.valid_bits())
    } else {
        usable.max()
    }
    .ok_or(IntersectError::NoCommonBitDepth)?;
    let container_bits = if valid_bits != 24 {
        valid_bits
    } else if preferred.valid_bits() == 24
        && lists(device.containers_for_24, preferred.container_bits())
    {
        preferred.container_bits()
    } else {
        device
            .containers_for_24
            .first()
            .copied()
            .ok_or(IntersectError::NoCommonBitDepth)?
    };
    let lo_rate = client.min_rate.max(device.min_rate).max(MIN_SAMPLE_RATE);
    let hi_rate = client.max_rate.min(device.max_rate).min(MAX_SAMPLE_RATE);
    if lo_rate > hi_rate {
        return Err(IntersectError::NoCommonSampleRate);
    }
    let rate_open = client.min_rate <= MIN_SAMPLE_RATE && client.max_rate >= OPEN_RATE_TOP;
    let rate = if rate_open {
        preferred.sample_rate().clamp(lo_rate, hi_rate)
    } else {
        hi_rate
    };
    let channel_mask = if channels == preferred.channels() {
        preferred.channel_mask()
    } else {
        default_channel_mask(channels)
    };
    Ok(AudioFormat::new(
        device.sample_type,
        channels,
        rate,
        container_bits,
        valid_bits,
        channel_mask,
        true,
    )?)
}

/// `DataRangeIntersection` in one call.
///
/// Decodes the client's bytes and intersects them with `device`, a client
/// range's open fields resolving to `preferred` (the device's default
/// format; see the module docs for the rule).
///
/// # Errors
/// Any [`IntersectError`].
pub fn intersect(
    client_bytes: &[u8],
    device: &DeviceRange,
    preferred: &AudioFormat,
) -> Result<AudioFormat, IntersectError> {
    match parse_client_request(client_bytes)? {
        ClientRequest::Range(range) => intersect_ranges(&range, device, preferred),
        ClientRequest::Format(format) => {
            if device.contains(&format) {
                Ok(format)
            } else {
                Err(IntersectError::FormatOutsideDeviceRange)
            }
        }
    }
}

/// Bytes [`write_ks_data_format`] needs for `format`.
#[must_use]
pub const fn ks_data_format_len(format: &AudioFormat) -> usize {
    KSDATAFORMAT_SIZE + format.encoded_len()
}

/// Writes `KSDATAFORMAT` + WAVEFORMATEX(TENSIBLE) for `format`: the
/// `ResultantFormat` of `DataRangeIntersection`. Returns bytes written.
///
/// # Errors
/// [`IntersectError::OutputTooSmall`] (PortCls first asks with a zero-length
/// buffer to learn the size: answer it with [`ks_data_format_len`]).
pub fn write_ks_data_format(format: &AudioFormat, out: &mut [u8]) -> Result<usize, IntersectError> {
    let needed = ks_data_format_len(format);
    let available = out.len();
    let dst = out
        .get_mut(..needed)
        .ok_or(IntersectError::OutputTooSmall { needed, available })?;
    dst.fill(0);
    let mut w = Writer { out: dst, at: 0 };
    // needed <= 104, block align <= 32: both fit in u32.
    w.u32(u32::try_from(needed).unwrap_or(u32::MAX));
    w.u32(0);
    w.u32(format.block_align());
    w.u32(0);
    w.guid(KSDATAFORMAT_TYPE_AUDIO);
    w.guid(format.sample_type().sub_format());
    w.guid(KSDATAFORMAT_SPECIFIER_WAVEFORMATEX);
    let wfx = dst_tail(w.out);
    format.write_waveformat(wfx)?;
    Ok(needed)
}

fn dst_tail(out: &mut [u8]) -> &mut [u8] {
    out.get_mut(KSDATAFORMAT_SIZE..).unwrap_or(&mut [])
}
