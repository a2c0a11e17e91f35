//! Sample codecs: every supported sample encoding to and from the
//! converter's working sample, a signed 32-bit integer at full scale (Q31).
//!
//! Widening is exact (16 -> 24 -> 32 bits, any integer of 24 bits or fewer
//! to float); narrowing rounds to nearest (ties away from zero for
//! integers, ties to even for float, as IEEE 754 does) and clips. The float
//! encoding is handled as bits: the kernel never uses floating point. A
//! float sample is full scale at +-1.0 (the IEEE float audio convention of
//! `KSDATAFORMAT_SUBTYPE_IEEE_FLOAT`); NaN reads as silence, values beyond
//! +-1.0 and infinities clip.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "every narrowing cast here follows a clamp or a range the comment beside it states"
)]

use crate::format::{AudioFormat, SampleType};

/// One sample encoding the converter reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// 8-bit unsigned PCM (128 is silence).
    U8,
    /// 16-bit signed PCM.
    I16,
    /// 24-bit signed PCM packed in three bytes.
    I24,
    /// 24 valid bits in the top of a 32-bit container.
    I24In32,
    /// 32-bit signed PCM.
    I32,
    /// IEEE 754 binary32.
    F32,
}

impl Encoding {
    /// The encoding of a validated format's samples.
    #[must_use]
    pub const fn of(format: &AudioFormat) -> Self {
        match (
            format.sample_type(),
            format.container_bits(),
            format.valid_bits(),
        ) {
            (SampleType::Float, _, _) => Self::F32,
            (SampleType::Pcm, 8, _) => Self::U8,
            (SampleType::Pcm, 16, _) => Self::I16,
            (SampleType::Pcm, 24, _) => Self::I24,
            (SampleType::Pcm, _, 24) => Self::I24In32,
            (SampleType::Pcm, _, _) => Self::I32,
        }
    }

    /// Bytes per sample.
    #[must_use]
    pub const fn bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::I16 => 2,
            Self::I24 => 3,
            Self::I24In32 | Self::I32 | Self::F32 => 4,
        }
    }

    /// The bytes of one silent sample (what a frame the source lacks holds).
    #[must_use]
    pub const fn silence(self) -> u8 {
        match self {
            Self::U8 => 0x80,
            _ => 0,
        }
    }

    /// Reads one sample from the start of `bytes` (little endian); 0 when
    /// `bytes` is shorter than a sample.
    #[must_use]
    #[inline]
    pub fn decode(self, bytes: &[u8]) -> i32 {
        match self {
            Self::U8 => bytes.first().map_or(0, |&b| (i32::from(b) - 128) << 24),
            Self::I16 => match bytes {
                [a, b, ..] => i32::from(i16::from_le_bytes([*a, *b])) << 16,
                _ => 0,
            },
            Self::I24 => match bytes {
                [a, b, c, ..] => i32::from_le_bytes([0, *a, *b, *c]),
                _ => 0,
            },
            Self::I24In32 => match bytes {
                // The container's low byte is padding (valid bits are the
                // most significant, WAVEFORMATEXTENSIBLE's rule): ignored.
                [_, b, c, d, ..] => i32::from_le_bytes([0, *b, *c, *d]),
                _ => 0,
            },
            Self::I32 => match bytes {
                [a, b, c, d, ..] => i32::from_le_bytes([*a, *b, *c, *d]),
                _ => 0,
            },
            Self::F32 => match bytes {
                [a, b, c, d, ..] => f32_bits_to_q31(u32::from_le_bytes([*a, *b, *c, *d])),
                _ => 0,
            },
        }
    }

    /// Writes one sample to the start of `out` (little endian); writes
    /// nothing when `out` is shorter than a sample.
    #[inline]
    pub fn encode(self, sample: i32, out: &mut [u8]) {
        match self {
            Self::U8 => {
                if let Some(first) = out.first_mut() {
                    let [top, ..] = (narrow(sample, 24) as i8).to_le_bytes();
                    *first = top ^ 0x80;
                }
            }
            Self::I16 => {
                if let Some(dst) = out.get_mut(..2) {
                    dst.copy_from_slice(&(narrow(sample, 16) as i16).to_le_bytes());
                }
            }
            Self::I24 => {
                if let (Some(dst), Some(src)) =
                    (out.get_mut(..3), narrow(sample, 8).to_le_bytes().get(..3))
                {
                    dst.copy_from_slice(src);
                }
            }
            Self::I24In32 => write4(out, narrow(sample, 8).wrapping_shl(8).to_le_bytes()),
            Self::I32 => write4(out, sample.to_le_bytes()),
            Self::F32 => write4(out, q31_to_f32_bits(sample).to_le_bytes()),
        }
    }
}

impl Encoding {
    /// Decodes every whole sample of `bytes` into `out` (as many as both
    /// hold), one dispatch on the encoding for the lot.
    pub fn decode_all(self, bytes: &[u8], out: &mut [i32]) {
        match self {
            Self::U8 => decode_with(bytes, out, 1, |b| Self::U8.decode(b)),
            Self::I16 => decode_with(bytes, out, 2, |b| Self::I16.decode(b)),
            Self::I24 => decode_with(bytes, out, 3, |b| Self::I24.decode(b)),
            Self::I24In32 => decode_with(bytes, out, 4, |b| Self::I24In32.decode(b)),
            Self::I32 => decode_with(bytes, out, 4, |b| Self::I32.decode(b)),
            Self::F32 => decode_with(bytes, out, 4, |b| Self::F32.decode(b)),
        }
    }

    /// Encodes `samples` into `out` (as many as both hold), one dispatch on
    /// the encoding for the lot.
    pub fn encode_all(self, samples: &[i32], out: &mut [u8]) {
        match self {
            Self::U8 => encode_with(samples, out, 1, |s, o| Self::U8.encode(s, o)),
            Self::I16 => encode_with(samples, out, 2, |s, o| Self::I16.encode(s, o)),
            Self::I24 => encode_with(samples, out, 3, |s, o| Self::I24.encode(s, o)),
            Self::I24In32 => encode_with(samples, out, 4, |s, o| Self::I24In32.encode(s, o)),
            Self::I32 => encode_with(samples, out, 4, |s, o| Self::I32.encode(s, o)),
            Self::F32 => encode_with(samples, out, 4, |s, o| Self::F32.encode(s, o)),
        }
    }
}

/// A sample's magnitude on the peak meter's scale: |Q31|, full scale
/// (`i32::MIN`, a negative full-scale sample) read as `i32::MAX`, the most
/// `KSPROPERTY_AUDIO_PEAKMETER2` reports.
#[must_use]
#[inline]
pub const fn peak_magnitude(sample: i32) -> u32 {
    let magnitude = sample.unsigned_abs();
    if magnitude > i32::MAX as u32 {
        i32::MAX as u32
    } else {
        magnitude
    }
}

impl Encoding {
    /// Raises `peaks[c]` to the largest [`peak_magnitude`] of channel `c`
    /// among the whole frames of `bytes` (interleaved, `channels` samples
    /// a frame; channels past `peaks` are not measured). A trailing part
    /// of a frame is ignored.
    pub fn raise_peaks(self, bytes: &[u8], channels: usize, peaks: &mut [u32]) {
        let size = self.bytes();
        let Some(frame) = size.checked_mul(channels).filter(|&f| f > 0) else {
            return;
        };
        for frame_bytes in bytes.chunks_exact(frame) {
            for (peak, sample) in peaks.iter_mut().zip(frame_bytes.chunks_exact(size)) {
                *peak = (*peak).max(peak_magnitude(self.decode(sample)));
            }
        }
    }
}

#[inline]
fn decode_with(bytes: &[u8], out: &mut [i32], size: usize, one: impl Fn(&[u8]) -> i32) {
    for (sample, b) in out.iter_mut().zip(bytes.chunks_exact(size)) {
        *sample = one(b);
    }
}

#[inline]
fn encode_with(samples: &[i32], out: &mut [u8], size: usize, one: impl Fn(i32, &mut [u8])) {
    for (&sample, o) in samples.iter().zip(out.chunks_exact_mut(size)) {
        one(sample, o);
    }
}

fn write4(out: &mut [u8], bytes: [u8; 4]) {
    if let Some(dst) = out.get_mut(..4) {
        dst.copy_from_slice(&bytes);
    }
}

/// `sample >> shift`, rounded to nearest (ties away from zero) and clipped
/// to the narrower range (which needs 32 - `shift` bits). `shift` is 8, 16
/// or 24.
#[must_use]
pub const fn narrow(sample: i32, shift: u32) -> i32 {
    let half = 1i64 << (shift - 1);
    let wide = sample as i64;
    let rounded = if wide >= 0 {
        (wide + half) >> shift
    } else {
        -((-wide + half) >> shift)
    };
    let max = (1i64 << (31 - shift)) - 1;
    let min = -(1i64 << (31 - shift));
    let clipped = if rounded > max {
        max
    } else if rounded < min {
        min
    } else {
        rounded
    };
    clipped as i32
}

/// A binary32 bit pattern as a Q31 sample: value x 2^31, rounded to
/// nearest (ties away from zero), clipped to the i32 range; NaN is 0.
#[must_use]
pub const fn f32_bits_to_q31(bits: u32) -> i32 {
    let negative = bits >> 31 != 0;
    let exponent = ((bits >> 23) & 0xFF) as i32;
    let fraction = bits & 0x007F_FFFF;
    if exponent == 0xFF && fraction != 0 {
        return 0; // NaN
    }
    if exponent == 0 {
        // Zero or subnormal: below 2^-126, far under one Q31 step.
        return 0;
    }
    // value = mantissa x 2^(exponent - 150); Q31 = mantissa x 2^(exponent - 119).
    let mantissa = (fraction | 0x0080_0000) as u64;
    let shift = exponent - 119;
    let magnitude: u64 = if shift >= 9 {
        // 2^32 or more: clipped below, whatever the exact value.
        1 << 32
    } else if shift >= 0 {
        mantissa << shift
    } else if shift > -40 {
        let down = (-shift) as u32;
        (mantissa + (1 << (down - 1))) >> down
    } else {
        0
    };
    if negative {
        if magnitude >= 1 << 31 {
            i32::MIN
        } else {
            -(magnitude as i32)
        }
    } else if magnitude > i32::MAX as u64 {
        i32::MAX
    } else {
        magnitude as i32
    }
}

/// A Q31 sample as the binary32 nearest to sample / 2^31 (exact for every
/// sample of 24 significant bits or fewer; ties to even otherwise).
#[must_use]
pub const fn q31_to_f32_bits(sample: i32) -> u32 {
    if sample == 0 {
        return 0;
    }
    let sign = if sample < 0 { 1u32 << 31 } else { 0 };
    let magnitude = sample.unsigned_abs();
    // The leading one at bit `top` (0..=31): value = magnitude x 2^-31.
    let top = magnitude.ilog2();
    let (mut mantissa, mut exponent) = if top > 23 {
        let drop = top - 23;
        let kept = magnitude >> drop;
        let rest = magnitude & ((1 << drop) - 1);
        let half = 1 << (drop - 1);
        let up = rest > half || (rest == half && kept & 1 == 1);
        (kept + up as u32, top)
    } else {
        (magnitude << (23 - top), top)
    };
    if mantissa == 1 << 24 {
        mantissa >>= 1;
        exponent += 1;
    }
    // Biased exponent: 2^(top - 31) -> 127 + top - 31.
    let biased = exponent + 96;
    sign | (biased << 23) | (mantissa & 0x007F_FFFF)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::float_arithmetic,
        clippy::cast_possible_truncation,
        reason = "tests"
    )]
    use super::*;

    #[test]
    fn peaks_are_per_channel_magnitudes_with_full_scale_at_i32_max() {
        // Two stereo 16-bit frames: left 1000, -32768; right -5, 7.
        let mut bytes = [0u8; 8];
        for (out, sample) in bytes.chunks_exact_mut(2).zip([1000i16, -5, -32768, 7]) {
            out.copy_from_slice(&sample.to_le_bytes());
        }
        let mut peaks = [0u32; 2];
        Encoding::I16.raise_peaks(&bytes, 2, &mut peaks);
        assert_eq!(peaks, [i32::MAX as u32, 7 << 16]);
        // Raising keeps a larger earlier peak; a short tail is ignored.
        let mut peaks = [2000 << 16, 0];
        Encoding::I16.raise_peaks(&bytes[..6], 2, &mut peaks);
        assert_eq!(peaks, [2000 << 16, 5 << 16]);
        // 8-bit unsigned: 128 is silence, 0 is negative full scale.
        let mut peaks = [0u32; 1];
        Encoding::U8.raise_peaks(&[128, 160, 128], 1, &mut peaks);
        assert_eq!(peaks, [32 << 24]);
        Encoding::U8.raise_peaks(&[0], 1, &mut peaks);
        assert_eq!(peaks, [i32::MAX as u32]);
        // Float past full scale clips to it; half scale is 2^30.
        let mut peaks = [0u32; 2];
        let mut floats = [0u8; 8];
        for (out, sample) in floats.chunks_exact_mut(4).zip([0.5f32, -2.0]) {
            out.copy_from_slice(&sample.to_le_bytes());
        }
        Encoding::F32.raise_peaks(&floats, 2, &mut peaks);
        assert_eq!(peaks, [1 << 30, i32::MAX as u32]);
        // Channels past the meter's are not measured; no channels, nothing.
        let mut one = [0u32; 1];
        Encoding::I16.raise_peaks(&bytes, 2, &mut one);
        assert_eq!(one, [i32::MAX as u32]);
        let mut none = [0u32; 1];
        Encoding::I16.raise_peaks(&bytes, 0, &mut none);
        assert_eq!(none, [0]);
    }

    #[test]
    fn float_bits_match_the_hardware_conversion() {
        for &x in &[
            0i32,
            1,
            -1,
            255,
            256,
            257,
            1 << 24,
            (1 << 24) + 1,
            i32::MAX,
            i32::MIN,
            -12_345_678,
            0x7FFF_FF80,
            0x7FFF_FFC0,
        ] {
            let expected = (f64::from(x) / 2_147_483_648.0) as f32;
            assert_eq!(q31_to_f32_bits(x), expected.to_bits(), "{x}");
        }
    }

    #[test]
    fn float_bits_read_back_with_rounding_and_clipping() {
        let cases: [(f32, i32); 8] = [
            (0.5, 1 << 30),
            (-1.0, i32::MIN),
            (1.0, i32::MAX),
            (2.0, i32::MAX),
            (-3.0, i32::MIN),
            (f32::INFINITY, i32::MAX),
            (f32::NAN, 0),
            (1.5 / 2_147_483_648.0, 2),
        ];
        for (value, expected) in cases {
            assert_eq!(f32_bits_to_q31(value.to_bits()), expected, "{value}");
        }
    }

    #[test]
    fn narrowing_rounds_to_nearest_and_clips() {
        assert_eq!(narrow(0x7FFF_FFFF, 16), 0x7FFF);
        assert_eq!(narrow(0x0001_8000, 16), 2);
        assert_eq!(narrow(0x0001_7FFF, 16), 1);
        assert_eq!(narrow(-0x0001_8000, 16), -2);
        assert_eq!(narrow(i32::MIN, 16), -0x8000);
    }
}
