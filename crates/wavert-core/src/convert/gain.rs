//! Fixed-point gain: what the cable's volume and mute nodes do to the audio.
//!
//! A gain is a Q30 factor in `0..=UNITY` (the cable never amplifies). A
//! node level in 1/65536 dB maps to its factor through a table of the
//! node's 0.5 dB steps from 0 down to -96 dB, built at compile time with
//! integer arithmetic only ([`gain_of_level`]), so the kernel never touches
//! floating point. Unity leaves every sample as it was: callers test
//! [`ChannelGains::is_unity`] and keep their bit-exact copy; mute is the
//! factor 0.
//!
//! Integer samples are scaled as Q31 working samples ([`scale_q31`]), round
//! to nearest. Float samples are scaled as bits ([`scale_f32_bits`]): the
//! mantissa times the factor, renormalised and rounded to nearest even, so
//! a float stream keeps its full range (nothing clips at +-1.0) and its
//! precision.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "every narrowing cast here follows a shift or clamp the comment beside it states"
)]

use super::channels::MAX_CHANNELS;
use super::sample::Encoding;

/// The factor 1.0, Q30.
pub const UNITY: u32 = 1 << 30;
/// One volume step, 0.5 dB in 1/65536 dB (the cable's volume nodes' step).
pub const LEVEL_STEP: i32 = 32_768;
/// The lowest level with a factor of its own, -96 dB in 1/65536 dB; lower
/// levels get this one.
pub const MIN_LEVEL: i32 = -96 * 65_536;
/// Steps from 0 dB down to [`MIN_LEVEL`], both included.
const STEPS: usize = 193;

/// `10^(-0.5/20)` (one 0.5 dB step down) in Q62, rounded to nearest.
const STEP_Q62: u128 = 4_353_712_343_712_100_823;

/// The factor of each 0.5 dB step below 0 dB, Q30, rounded to nearest.
#[allow(
    clippy::indexing_slicing,
    reason = "the loop index stays below the table's length; evaluated at compile time"
)]
/// Built in Q62 (one product per step, so the accumulated rounding stays
/// below 2^-54 of the value) and rounded once.
const GAINS: [u32; STEPS] = {
    let mut table = [0u32; STEPS];
    let mut q62: u128 = 1 << 62;
    let mut step = 0;
    while step < STEPS {
        // q62 <= 2^62: the rounded Q30 value is at most 2^30.
        table[step] = ((q62 + (1 << 31)) >> 32) as u32;
        q62 = (q62 * STEP_Q62 + (1 << 61)) >> 62;
        step += 1;
    }
    table
};

/// The factor of a node level in 1/65536 dB: levels at or above 0 dB are
/// unity, levels are rounded to the nearest 0.5 dB step, and levels below
/// [`MIN_LEVEL`] get its factor.
#[must_use]
pub fn gain_of_level(level: i32) -> u32 {
    if level >= 0 {
        return UNITY;
    }
    let below = if level < MIN_LEVEL {
        MIN_LEVEL.unsigned_abs()
    } else {
        level.unsigned_abs()
    };
    // At most 192 after the clamp.
    let step = ((below + (LEVEL_STEP as u32 / 2)) / LEVEL_STEP as u32) as usize;
    GAINS.get(step).or(GAINS.last()).copied().unwrap_or(0)
}

/// The product of two factors, Q30, rounded to nearest.
#[must_use]
pub const fn combine(a: u32, b: u32) -> u32 {
    let product = (a as u64 * b as u64 + (1 << 29)) >> 30;
    if product > u32::MAX as u64 {
        u32::MAX
    } else {
        product as u32
    }
}

/// A Q31 working sample times a factor, rounded to nearest (ties up). With
/// a factor of at most [`UNITY`] the result stays in range.
#[must_use]
#[inline]
pub const fn scale_q31(sample: i32, gain: u32) -> i32 {
    let scaled = (sample as i64 * gain as i64 + (1 << 29)) >> 30;
    if scaled > i32::MAX as i64 {
        i32::MAX
    } else if scaled < i32::MIN as i64 {
        i32::MIN
    } else {
        scaled as i32
    }
}

/// An IEEE 754 binary32 value (as bits) times a factor of at most
/// [`UNITY`], rounded to nearest even.
///
/// NaN and infinities pass unchanged, except that the factor 0 gives +0.0
/// for every input (mute is silence).
#[must_use]
pub const fn scale_f32_bits(bits: u32, gain: u32) -> u32 {
    const EXPONENT_MASK: u32 = 0xff;
    const FRACTION_BITS: u32 = 23;
    let sign = bits & 0x8000_0000;
    let exponent = (bits >> FRACTION_BITS) & EXPONENT_MASK;
    let fraction = bits & ((1 << FRACTION_BITS) - 1);
    if gain == 0 {
        return 0;
    }
    if exponent == EXPONENT_MASK || gain == UNITY {
        return bits;
    }
    // value = mantissa * 2^(biased - 150) with the implicit bit for normal
    // numbers; subnormals have biased exponent 1 and no implicit bit.
    let (mantissa, biased) = if exponent == 0 {
        (fraction as u64, 1i32)
    } else {
        ((fraction | (1 << FRACTION_BITS)) as u64, exponent as i32)
    };
    if mantissa == 0 {
        return sign;
    }
    // product = value * 2^30 / 2^(biased - 150); at most 54 bits.
    let product = mantissa * gain as u64;
    // Shift the product right until 24 significant bits remain, and at
    // least far enough that the biased exponent stays >= 1 (subnormal).
    let top = 63 - product.leading_zeros() as i32;
    let mut shift = top - FRACTION_BITS as i32;
    // The result's biased exponent for a normalised 24-bit mantissa.
    let mut result_exponent = biased - 30 + shift;
    if result_exponent < 1 {
        shift += 1 - result_exponent;
        result_exponent = 0;
    }
    let mut rounded = round_shift_even(product, shift);
    if result_exponent == 0 {
        // Subnormal: a carry into bit 23 makes it the smallest normal,
        // which the same bit pattern already encodes.
        return sign | rounded as u32;
    }
    if rounded >> (FRACTION_BITS + 1) != 0 {
        // Rounding carried into a 25th bit: one more halving.
        rounded >>= 1;
        result_exponent += 1;
    }
    // gain <= UNITY: the magnitude never grows, so the exponent stays
    // below the infinity encoding.
    sign | ((result_exponent as u32) << FRACTION_BITS)
        | (rounded as u32 & ((1 << FRACTION_BITS) - 1))
}

/// `value >> shift` rounded to nearest, ties to even (`shift` may be <= 0:
/// a left shift, exact).
const fn round_shift_even(value: u64, shift: i32) -> u64 {
    if shift <= 0 {
        return value << (-shift) as u32;
    }
    if shift >= 64 {
        return 0;
    }
    let shift = shift as u32;
    let kept = value >> shift;
    let rest = value & ((1u64 << shift) - 1);
    let half = 1u64 << (shift - 1);
    if rest > half || (rest == half && kept & 1 == 1) {
        kept + 1
    } else {
        kept
    }
}

/// One factor per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelGains {
    gains: [u32; MAX_CHANNELS],
    unity: bool,
}

impl Default for ChannelGains {
    fn default() -> Self {
        Self::UNITY
    }
}

impl ChannelGains {
    /// Every channel at unity.
    pub const UNITY: Self = Self {
        gains: [UNITY; MAX_CHANNELS],
        unity: true,
    };

    /// Factors from node levels (1/65536 dB, [`gain_of_level`]) of the first
    /// channels; channels past `levels` stay at unity; `muted` makes every
    /// factor 0.
    #[must_use]
    pub fn from_levels(levels: &[i32], muted: bool) -> Self {
        if muted {
            return Self::from_factors([0; MAX_CHANNELS]);
        }
        let mut gains = [UNITY; MAX_CHANNELS];
        for (gain, &level) in gains.iter_mut().zip(levels) {
            *gain = gain_of_level(level);
        }
        Self::from_factors(gains)
    }

    /// These factors (each clamped to [`UNITY`]).
    #[must_use]
    pub fn from_factors(mut gains: [u32; MAX_CHANNELS]) -> Self {
        for gain in &mut gains {
            *gain = (*gain).min(UNITY);
        }
        Self {
            gains,
            unity: gains.iter().all(|&g| g == UNITY),
        }
    }

    /// Whether every factor is unity (nothing to do).
    #[must_use]
    pub const fn is_unity(&self) -> bool {
        self.unity
    }

    /// The factor of `channel` (unity past the last).
    #[must_use]
    pub fn get(&self, channel: usize) -> u32 {
        self.gains.get(channel).copied().unwrap_or(UNITY)
    }

    /// Both in turn: each channel's factors multiplied.
    #[must_use]
    pub fn then(&self, other: &Self) -> Self {
        let mut gains = self.gains;
        for (gain, &next) in gains.iter_mut().zip(&other.gains) {
            *gain = combine(*gain, next);
        }
        Self::from_factors(gains)
    }

    /// Scales Q31 working samples of interleaved `channels`-channel frames
    /// in place.
    #[inline]
    pub fn scale_working(&self, samples: &mut [i32], channels: usize) {
        if self.unity {
            return;
        }
        for frame in samples.chunks_mut(channels.max(1)) {
            for (sample, &gain) in frame.iter_mut().zip(&self.gains) {
                *sample = scale_q31(*sample, gain);
            }
        }
    }

    /// Scales whole frames of `channels` samples in `encoding`, in place
    /// (a trailing partial frame is left as it is). Integers go through the
    /// Q31 working sample (exact decode, round-to-nearest encode); floats
    /// are scaled as bits ([`scale_f32_bits`]).
    pub fn scale_encoded(&self, encoding: Encoding, bytes: &mut [u8], channels: usize) {
        if self.unity {
            return;
        }
        let size = encoding.bytes();
        let block = size * channels.max(1);
        for frame in bytes.chunks_exact_mut(block) {
            for (sample, &gain) in frame.chunks_exact_mut(size).zip(&self.gains) {
                if encoding == Encoding::F32 {
                    if let Ok(word) = <[u8; 4]>::try_from(&*sample) {
                        let scaled = scale_f32_bits(u32::from_le_bytes(word), gain);
                        sample.copy_from_slice(&scaled.to_le_bytes());
                    }
                } else {
                    let working = encoding.decode(sample);
                    encoding.encode(scale_q31(working, gain), sample);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::cast_precision_loss,
        clippy::float_cmp,
        clippy::float_arithmetic,
        clippy::cast_possible_truncation,
        reason = "tests: the reference values are computed in floating point on the host"
    )]
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn reference(level_db: f64) -> f64 {
        10f64.powf(level_db / 20.0) * f64::from(UNITY)
    }

    #[test]
    fn every_step_is_its_decibel_value_to_the_nearest_q30() {
        for step in 0..STEPS {
            let level = -(step as i32) * LEVEL_STEP;
            let want = reference(-0.5 * step as f64);
            let got = f64::from(gain_of_level(level));
            assert!(
                (got - want).abs() <= 0.5 + 1e-6,
                "step {step}: {got} against {want}"
            );
        }
        assert_eq!(gain_of_level(0), UNITY);
        assert_eq!(gain_of_level(65_536), UNITY);
        assert_eq!(gain_of_level(-6 * 65_536), 538_145_694);
        assert_eq!(gain_of_level(i32::MIN), gain_of_level(MIN_LEVEL));
        // Off-grid levels round to the nearest step.
        assert_eq!(gain_of_level(-LEVEL_STEP / 2 + 1), UNITY);
        assert_eq!(
            gain_of_level(-LEVEL_STEP / 2 - 1),
            gain_of_level(-LEVEL_STEP)
        );
    }

    #[test]
    fn q31_scaling_rounds_to_nearest_and_unity_is_exact() {
        for sample in [0, 1, -1, 12_345, i32::MAX, i32::MIN, -7] {
            assert_eq!(scale_q31(sample, UNITY), sample);
            assert_eq!(scale_q31(sample, 0), 0);
        }
        assert_eq!(scale_q31(1 << 20, UNITY / 2), 1 << 19);
        assert_eq!(scale_q31(3, UNITY / 2), 2); // 1.5 rounds up
        assert_eq!(scale_q31(-3, UNITY / 2), -1); // -1.5 rounds up
    }

    /// The exact product, rounded to f32 by the host (the product of a
    /// 24-bit mantissa and a 31-bit factor needs 55 bits, so f64 may round
    /// once before f32 does: allow one unit in the last place).
    fn close(bits: u32, gain: u32) {
        let want = (f64::from(f32::from_bits(bits)) * f64::from(gain) / f64::from(UNITY)) as f32;
        let got = f32::from_bits(scale_f32_bits(bits, gain));
        let ulps = (i64::from(want.to_bits()) - i64::from(got.to_bits())).abs();
        assert!(
            ulps <= 1,
            "{:e} x {gain}: {got:e} against {want:e}",
            f32::from_bits(bits)
        );
    }

    #[test]
    fn float_scaling_matches_the_host_within_one_ulp() {
        let mut x: u32 = 0x1234_5678;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let bits = x & 0x7fff_ffff;
            if (bits >> 23) == 0xff {
                continue;
            }
            for gain in [UNITY - 1, UNITY / 3, 538_145_694, 17_018, 1, 12_345_678] {
                close(bits, gain);
                close(bits | 0x8000_0000, gain);
            }
        }
        // Subnormal inputs and results.
        for bits in [1, 0x7f_ffff, 0x80_0000, 0x80_0001, 0x0100_0000] {
            for gain in [UNITY / 2, UNITY - 1, 3] {
                close(bits, gain);
            }
        }
    }

    #[test]
    fn float_scaling_keeps_specials_and_mute_is_positive_zero() {
        let half = UNITY / 2;
        assert_eq!(scale_f32_bits(1.0f32.to_bits(), half), 0.5f32.to_bits());
        assert_eq!(scale_f32_bits(4.0f32.to_bits(), half), 2.0f32.to_bits());
        assert_eq!(
            scale_f32_bits(f32::INFINITY.to_bits(), half),
            f32::INFINITY.to_bits()
        );
        assert!(f32::from_bits(scale_f32_bits(f32::NAN.to_bits(), half)).is_nan());
        assert_eq!(
            scale_f32_bits((-0.0f32).to_bits(), half),
            (-0.0f32).to_bits()
        );
        assert_eq!(scale_f32_bits((-0.25f32).to_bits(), 0), 0);
        assert_eq!(scale_f32_bits(0.3f32.to_bits(), UNITY), 0.3f32.to_bits());
    }

    #[test]
    fn encoded_frames_scale_per_channel_and_unity_leaves_them_alone() {
        let gains = ChannelGains::from_levels(&[0, -6 * 65_536], false);
        assert!(!gains.is_unity());
        let mut bytes = Vec::new();
        for sample in [10_000i16, 10_000, -20_000, -20_000] {
            bytes.extend_from_slice(&sample.to_le_bytes());
        }
        let before = bytes.clone();
        ChannelGains::UNITY.scale_encoded(Encoding::I16, &mut bytes, 2);
        assert_eq!(bytes, before);
        gains.scale_encoded(Encoding::I16, &mut bytes, 2);
        let samples: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        // -6 dB is 0.501187...: 10000 -> 5012, -20000 -> -10024.
        assert_eq!(samples, [10_000, 5_012, -20_000, -10_024]);

        let mut silence = vec![0x80u8; 4];
        ChannelGains::from_levels(&[-3 * 65_536; 2], false).scale_encoded(
            Encoding::U8,
            &mut silence,
            2,
        );
        assert_eq!(silence, [0x80; 4], "8-bit silence stays silence");

        let muted = ChannelGains::from_levels(&[0; 2], true);
        let mut float = Vec::new();
        for sample in [0.5f32, -0.75] {
            float.extend_from_slice(&sample.to_le_bytes());
        }
        muted.scale_encoded(Encoding::F32, &mut float, 2);
        assert_eq!(float, [0; 8]);
    }

    #[test]
    fn gains_combine_per_channel() {
        let render = ChannelGains::from_levels(&[-6 * 65_536, 0], false);
        let capture = ChannelGains::from_levels(&[-6 * 65_536, -6 * 65_536], false);
        let both = render.then(&capture);
        assert_eq!(both.get(1), gain_of_level(-6 * 65_536));
        let twelve = f64::from(both.get(0));
        assert!((twelve - reference(-12.0)).abs() < 2.0, "{twelve}");
        assert!(ChannelGains::UNITY.then(&ChannelGains::UNITY).is_unity());
    }
}
