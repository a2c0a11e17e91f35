//! The loopback test signal and the bit-exact comparison of a capture with
//! the render data it should repeat.
//!
//! The signal is a 997 Hz sine on every channel but the second, which
//! carries a frame counter, so a capture can be aligned with its render
//! data and every frame compared byte for byte.

use wavert_core::format::{AudioFormat, SampleType};

/// Frequency of the test tone (a prime, so it never lines up with buffers).
pub const TONE_HZ: f64 = 997.0;

/// Encodes one sample: `value` in [-1, 1] for audio, or a raw 16-bit
/// `counter` placed in the sample's top 16 bits (float: counter / 65536).
fn encode(format: &AudioFormat, value: f64, counter: Option<u16>, out: &mut Vec<u8>) {
    let container = u32::from(format.container_bits());
    let valid = u32::from(format.valid_bits());
    if format.sample_type() == SampleType::Float {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "a sample is f32 by definition"
        )]
        let v = counter.map_or(value as f32, |c| f32::from(c) / 65536.0);
        out.extend_from_slice(&v.to_le_bytes());
        return;
    }
    if container == 8 {
        // Unsigned, 0x80 the zero line (WAVE's 8-bit PCM); the counter
        // keeps only its top byte.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "bounded by the 8-bit range"
        )]
        let byte = counter.map_or_else(
            || ((value * 127.0).round() as i64 + 128) as u8,
            |c| (c >> 8) as u8 ^ 0x80,
        );
        out.push(byte);
        return;
    }
    let word: i64 = counter.map_or_else(
        || {
            let full_scale = f64::from((1u32 << (valid - 1)) - 1);
            #[allow(clippy::cast_possible_truncation, reason = "bounded by full scale")]
            let v = (value * full_scale).round() as i64;
            v << (container - valid)
        },
        |c| i64::from(i16::from_le_bytes(c.to_le_bytes())) << (container - 16),
    );
    let bytes = word.to_le_bytes();
    out.extend_from_slice(&bytes[..(container / 8) as usize]);
}

/// Decodes the counter of [`encode`] back from a sample's bytes.
fn decode_counter(format: &AudioFormat, sample: &[u8]) -> u16 {
    if format.sample_type() == SampleType::Float {
        let v = f32::from_le_bytes(sample.try_into().unwrap_or([0; 4]));
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a 16-bit counter"
        )]
        return (v * 65536.0).round() as u16;
    }
    match *sample {
        // 8-bit: the counter's top byte only.
        [byte] => u16::from(byte ^ 0x80) << 8,
        [.., low, high] => u16::from_le_bytes([low, high]),
        [] => 0,
    }
}

/// `seconds` of the 997 Hz sine (amplitude 1/2) on every channel, for a
/// capture in another format (no counter: a converter would not carry it).
#[must_use]
pub fn tone_signal(format: &AudioFormat, seconds: f64) -> Vec<u8> {
    signal(format, seconds, false, 0.5)
}

/// [`tone_signal`] at `amplitude` (full scale 1).
#[must_use]
pub fn tone_signal_at(format: &AudioFormat, seconds: f64, amplitude: f64) -> Vec<u8> {
    signal(format, seconds, false, amplitude)
}

/// `seconds` of a 997 Hz sine (amplitude 1/2) on every channel but the
/// second, which carries a frame counter (1, 2, ... 65535, 1, ...), never 0
/// so the first frame differs from silence.
#[must_use]
pub fn test_signal(format: &AudioFormat, seconds: f64) -> Vec<u8> {
    signal(format, seconds, true, 0.5)
}

/// The tone at `amplitude` on every channel, the second carrying the
/// counter instead when `counter` is set.
fn signal(format: &AudioFormat, seconds: f64, counter: bool, amplitude: f64) -> Vec<u8> {
    let rate = f64::from(format.sample_rate());
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a frame count"
    )]
    let frames = (rate * seconds).round() as u64;
    let mut out =
        Vec::with_capacity(usize::try_from(frames).unwrap_or(0) * format.block_align() as usize);
    for k in 0..frames {
        #[allow(clippy::cast_precision_loss, reason = "frame index in a test signal")]
        let t = k as f64 / rate;
        let tone = amplitude * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin();
        let count = u16::try_from(k % 65_535 + 1).unwrap_or(1);
        for ch in 0..format.channels() {
            encode(
                format,
                tone,
                (counter && ch == 1).then_some(count),
                &mut out,
            );
        }
    }
    out
}

/// The delay, in frames, at which `captured` repeats `rendered`: the
/// smallest lag up to `max_lag` at which the first non-silent frames of
/// the render data (up to 256 of them) come back byte for byte.
#[must_use]
pub fn find_alignment(
    rendered: &[u8],
    captured: &[u8],
    block_align: usize,
    max_lag: usize,
) -> Option<usize> {
    let first = rendered
        .chunks_exact(block_align)
        .position(|f| f.iter().any(|&b| b != 0))?;
    let window = 256.min(rendered.len() / block_align - first);
    let wanted = &rendered[first * block_align..(first + window) * block_align];
    (0..=max_lag).find(|lag| {
        let at = (first + lag) * block_align;
        captured.get(at..at + wanted.len()) == Some(wanted)
    })
}

/// Frames of `rendered` that do not come back exactly at `lag`, and the
/// first of them.
#[must_use]
pub fn mismatched_frames(
    rendered: &[u8],
    captured: &[u8],
    block_align: usize,
    lag: usize,
) -> (usize, Option<usize>) {
    let mut count = 0;
    let mut first = None;
    for (i, frame) in rendered.chunks_exact(block_align).enumerate() {
        let at = (i + lag) * block_align;
        if captured.get(at..at + block_align) != Some(frame) {
            count += 1;
            first.get_or_insert(i);
        }
    }
    (count, first)
}

/// The counter channel of the frame at `index` (see [`test_signal`]).
#[must_use]
pub fn counter_at(format: &AudioFormat, data: &[u8], index: usize) -> Option<u16> {
    if format.channels() < 2 {
        return None;
    }
    let block = format.block_align() as usize;
    let sample = (format.container_bits() / 8) as usize;
    let at = index * block + sample;
    data.get(at..at + sample).map(|s| decode_counter(format, s))
}

/// A sample's value as a fraction of full scale (float samples as they
/// are), from its bytes in `format`.
fn sample_value(format: &AudioFormat, sample: &[u8]) -> f64 {
    if format.sample_type() == SampleType::Float {
        return f64::from(f32::from_le_bytes(sample.try_into().unwrap_or([0; 4])));
    }
    let container = sample.len() * 8;
    let mut word = [0u8; 8];
    // Left-justified in an i64, so the sign comes along.
    word[8 - sample.len()..].copy_from_slice(sample);
    let value = i64::from_le_bytes(word);
    let top = if container == 8 {
        // 8-bit PCM is unsigned, 128 is silence.
        value ^ i64::MIN
    } else {
        value
    };
    #[allow(
        clippy::cast_precision_loss,
        reason = "audio samples: 53 bits are plenty"
    )]
    let fraction = top as f64 / 9_223_372_036_854_775_808.0;
    fraction
}

/// How far a scaled sample may be from `want` (a fraction of full scale)
/// and still be the driver's rounding of it: one step of the format's
/// valid bits (two at 32 bits, where the gain's own Q30 rounding shows), or
/// for float a few units in the last place of `want`.
fn tolerance(format: &AudioFormat, want: f64) -> f64 {
    if format.sample_type() == SampleType::Float {
        return want
            .abs()
            .mul_add(f64::from(2u32.pow(22)).recip(), f64::MIN_POSITIVE);
    }
    let valid = i32::from(format.valid_bits().min(32));
    let step = 2f64.powi(1 - valid);
    if valid >= 32 {
        2.0 * step
    } else {
        step
    }
}

/// Frames of `rendered` that do not come back at `lag` scaled by `gain`
/// (every channel; a volume node's linear gain), within the rounding of
/// the format ([`tolerance`]), and the first of them.
#[must_use]
pub fn mismatched_scaled_frames(
    format: &AudioFormat,
    rendered: &[u8],
    captured: &[u8],
    lag: usize,
    gain: f64,
) -> (usize, Option<usize>) {
    let block = format.block_align() as usize;
    let size = (format.container_bits() / 8) as usize;
    let mut count = 0;
    let mut first = None;
    for (i, frame) in rendered.chunks_exact(block).enumerate() {
        let at = (i + lag) * block;
        let matches = captured.get(at..at + block).is_some_and(|heard| {
            frame
                .chunks_exact(size)
                .zip(heard.chunks_exact(size))
                .all(|(played, heard)| {
                    let want = sample_value(format, played) * gain;
                    (sample_value(format, heard) - want).abs() <= tolerance(format, want)
                })
        });
        if !matches {
            count += 1;
            first.get_or_insert(i);
        }
    }
    (count, first)
}

/// [`find_alignment`] for a capture that should be the render scaled by
/// `gain`: the smallest lag up to `max_lag` at which the first non-silent
/// frames (up to 256) come back scaled.
#[must_use]
pub fn find_scaled_alignment(
    format: &AudioFormat,
    rendered: &[u8],
    captured: &[u8],
    gain: f64,
    max_lag: usize,
) -> Option<usize> {
    let block = format.block_align() as usize;
    let first = rendered
        .chunks_exact(block)
        .position(|f| f.iter().any(|&b| b != 0))?;
    let window = 256.min(rendered.len() / block - first);
    let wanted = &rendered[first * block..(first + window) * block];
    (0..=max_lag).find(|lag| {
        captured.get((first + lag) * block..).is_some_and(|heard| {
            heard.len() >= wanted.len()
                && mismatched_scaled_frames(format, wanted, heard, 0, gain).0 == 0
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stereo_16() -> AudioFormat {
        AudioFormat::extensible(SampleType::Pcm, 2, 48_000, 16, 16).expect("a valid format")
    }

    #[test]
    fn a_delayed_copy_is_found_at_its_delay_and_matches_every_frame() {
        let format = stereo_16();
        let block = format.block_align() as usize;
        let rendered = test_signal(&format, 0.05);
        let mut captured = vec![0; 37 * block];
        captured.extend_from_slice(&rendered);
        assert_eq!(find_alignment(&rendered, &captured, block, 100), Some(37));
        assert_eq!(
            mismatched_frames(&rendered, &captured, block, 37),
            (0, None)
        );
        assert_eq!(counter_at(&format, &rendered, 0), Some(1));
        assert_eq!(counter_at(&format, &rendered, 9), Some(10));
    }

    #[test]
    fn a_changed_frame_is_counted_and_a_missing_copy_is_not_found() {
        let format = stereo_16();
        let block = format.block_align() as usize;
        let rendered = test_signal(&format, 0.05);
        let mut captured = vec![0; 5 * block];
        captured.extend_from_slice(&rendered);
        let frame = 1000;
        captured[(5 + frame) * block] ^= 1;
        assert_eq!(
            mismatched_frames(&rendered, &captured, block, 5),
            (1, Some(frame))
        );
        assert_eq!(
            find_alignment(&rendered, &vec![0; captured.len()], block, 100),
            None
        );
    }

    /// A capture at half the level is found and matches within a step;
    /// off by two steps, or at the wrong gain, it does not.
    #[test]
    fn a_scaled_copy_is_found_and_checked_within_one_step() {
        for format in [
            stereo_16(),
            AudioFormat::extensible(SampleType::Pcm, 2, 48_000, 32, 24).unwrap(),
            AudioFormat::extensible(SampleType::Float, 2, 48_000, 32, 32).unwrap(),
        ] {
            let block = format.block_align() as usize;
            let size = (format.container_bits() / 8) as usize;
            let rendered = test_signal(&format, 0.02);
            let half = |bytes: &[u8]| -> Vec<u8> {
                bytes
                    .chunks_exact(size)
                    .flat_map(|s| {
                        if format.sample_type() == SampleType::Float {
                            let v = f32::from_le_bytes(s.try_into().unwrap()) / 2.0;
                            v.to_le_bytes().to_vec()
                        } else {
                            let mut word = [0u8; 4];
                            word[4 - size..].copy_from_slice(s);
                            let v = i32::from_le_bytes(word) / 2;
                            let mask = if format.valid_bits() == 24 && size == 4 {
                                !0xff
                            } else {
                                !0
                            };
                            ((v & mask).to_le_bytes()[4 - size..]).to_vec()
                        }
                    })
                    .collect()
            };
            let mut captured = vec![0; 11 * block];
            captured.extend(half(&rendered));
            assert_eq!(
                find_scaled_alignment(&format, &rendered, &captured, 0.5, 50),
                Some(11),
                "{format:?}"
            );
            assert_eq!(
                mismatched_scaled_frames(&format, &rendered, &captured, 11, 0.5),
                (0, None)
            );
            assert_ne!(
                mismatched_scaled_frames(&format, &rendered, &captured, 11, 0.45).0,
                0
            );
            // Two steps off in one sample of frame 100 (a counter sample).
            let at = (11 + 100) * block + size;
            let step = if format.sample_type() == SampleType::Float {
                1 << 8
            } else {
                2 << (8 * (size - format.valid_bits() as usize / 8))
            };
            let mut word = [0u8; 4];
            word[4 - size..].copy_from_slice(&captured[at..at + size]);
            let v = i32::from_le_bytes(word).wrapping_add(step << (8 * (4 - size)));
            captured[at..at + size].copy_from_slice(&v.to_le_bytes()[4 - size..]);
            assert_eq!(
                mismatched_scaled_frames(&format, &rendered, &captured, 11, 0.5),
                (1, Some(100)),
                "{format:?}"
            );
        }
    }
}
