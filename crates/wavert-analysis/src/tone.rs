//! The test tone measured in a capture whose format differs from the
//! render's, where no byte can be compared: its level, its distortion and
//! noise, and its pitch.
//!
//! A sine of known frequency is fitted by least squares (sine and cosine
//! terms, so the phase is free); what the fit leaves is distortion plus
//! noise. A pitch or speed error drifts the phase along the capture, which
//! the fit over the whole capture cannot follow: its residual grows. The
//! frequency is measured directly as well, from the phase the fit finds on
//! the first and on the last third of the capture.

// The least-squares fit is written as the textbook 2x2 normal equations
// (`ss`, `sc`, `cc` the basis products, `a`, `b` the amplitudes).
#![allow(
    clippy::many_single_char_names,
    clippy::suboptimal_flops,
    clippy::suspicious_operation_groupings,
    reason = "the normal equations in their usual names and order"
)]

use std::f64::consts::PI;

use wavert_core::format::{AudioFormat, SampleType};

/// One channel of `data` (frames of `format`) as samples in [-1, 1).
#[must_use]
pub fn channel_samples(format: &AudioFormat, data: &[u8], channel: u16) -> Vec<f64> {
    let block = format.block_align() as usize;
    let bytes = usize::from(format.container_bits() / 8);
    let start = usize::from(channel) * bytes;
    if block == 0 || bytes == 0 || channel >= format.channels() {
        return Vec::new();
    }
    data.chunks_exact(block)
        .filter_map(|frame| frame.get(start..start + bytes))
        .map(|sample| decode(format, sample))
        .collect()
}

/// One sample's value: float as stored, integers over their container's
/// full scale (the valid bits are the container's top bits; 8-bit PCM is
/// unsigned, 0x80 the zero line).
fn decode(format: &AudioFormat, sample: &[u8]) -> f64 {
    if format.sample_type() == SampleType::Float {
        return f64::from(f32::from_le_bytes(sample.try_into().unwrap_or([0; 4])));
    }
    if let [byte] = *sample {
        return f64::from(i8::from_le_bytes([byte ^ 0x80])) / 128.0;
    }
    let mut word = [0u8; 4];
    let bytes = sample.len().min(4);
    word[4 - bytes..].copy_from_slice(&sample[..bytes]);
    // The sample in the top of an i32: its full scale is 2^31.
    f64::from(i32::from_le_bytes(word)) / 2_147_483_648.0
}

/// A sine of one frequency fitted to a capture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ToneFit {
    /// Peak amplitude (full scale 1).
    pub amplitude: f64,
    /// Level in dB relative to full scale (a full-scale sine is 0 dBFS).
    pub level_dbfs: f64,
    /// Tone power over the residual's (THD+N, as a positive ratio), dB.
    pub snr_db: f64,
    /// The frequency the phase drift says, in Hz.
    pub measured_hz: f64,
    /// The fitted sine's phase at sample 0 of the capture, in radians
    /// (`sin(w n + phase)`): with the rendered tone's, the delay.
    pub phase_rad: f64,
    /// Samples fitted.
    pub samples: usize,
}

impl ToneFit {
    /// How far the measured frequency is from `nominal`, in parts per
    /// million.
    #[must_use]
    pub fn pitch_error_ppm(&self, nominal: f64) -> f64 {
        (self.measured_hz - nominal) / nominal * 1e6
    }
}

/// The sine and cosine amplitudes of `frequency` in `samples` (taken at
/// `rate`, the first one at index `first` of the capture), and the
/// residual's mean power.
#[allow(
    clippy::cast_precision_loss,
    reason = "sample indices stay far below 2^52"
)]
fn least_squares(samples: &[f64], rate: f64, frequency: f64, first: usize) -> (f64, f64, f64) {
    let w = 2.0 * PI * frequency / rate;
    let basis = |n: usize| {
        let phase = w * (n + first) as f64;
        (phase.sin(), phase.cos())
    };
    let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (n, &y) in samples.iter().enumerate() {
        let (s, c) = basis(n);
        ss += s * s;
        sc += s * c;
        cc += c * c;
        ys += y * s;
        yc += y * c;
    }
    let det = ss * cc - sc * sc;
    if det.abs() < f64::EPSILON {
        return (0.0, 0.0, 0.0);
    }
    let a = (ys * cc - yc * sc) / det;
    let b = (yc * ss - ys * sc) / det;
    let residual = samples
        .iter()
        .enumerate()
        .map(|(n, &y)| {
            let (s, c) = basis(n);
            (y - a * s - b * c).powi(2)
        })
        .sum::<f64>()
        / samples.len().max(1) as f64;
    (a, b, residual)
}

/// Fits a sine of `frequency` to `samples` (taken at `rate` Hz) from index
/// `skip` on (past the silence and the filters' start). `None` with fewer
/// than three periods left to fit.
#[must_use]
#[allow(
    clippy::cast_precision_loss,
    reason = "sample counts stay far below 2^52"
)]
pub fn fit_tone(samples: &[f64], rate: u32, frequency: f64, skip: usize) -> Option<ToneFit> {
    let rate = f64::from(rate);
    let tail = samples.get(skip..)?;
    let period = rate / frequency;
    if (tail.len() as f64) < 9.0 * period {
        return None;
    }
    let (a, b, residual) = least_squares(tail, rate, frequency, skip);
    let amplitude = a.hypot(b);
    let power = amplitude * amplitude / 2.0;
    Some(ToneFit {
        amplitude,
        level_dbfs: 20.0 * amplitude.max(f64::MIN_POSITIVE).log10(),
        snr_db: 10.0 * (power / residual.max(f64::MIN_POSITIVE)).log10(),
        measured_hz: frequency + phase_drift_hz(tail, rate, frequency, skip),
        // a sin + b cos = A sin(x + atan2(b, a)).
        phase_rad: b.atan2(a),
        samples: tail.len(),
    })
}

/// How fast the tone's phase drifts against `frequency`, in Hz: the phase
/// of each 20 ms block (unwrapped from block to block, so drifts up to
/// 25 Hz are followed), then the slope of a straight line through them.
#[allow(
    clippy::cast_precision_loss,
    reason = "block indices and sample counts stay far below 2^52"
)]
fn phase_drift_hz(tail: &[f64], rate: f64, frequency: f64, skip: usize) -> f64 {
    // Whole periods per block would be ideal; 20 ms holds about 20 of a
    // 1 kHz tone, and the sine/cosine fit takes the rest.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a block length of a few thousand samples"
    )]
    let block = ((rate / 50.0) as usize).max(1);
    let mut points = Vec::new();
    let mut previous: Option<f64> = None;
    for (index, piece) in tail.chunks_exact(block).enumerate() {
        let (a, b, _) = least_squares(piece, rate, frequency, skip + index * block);
        let raw = b.atan2(a);
        let unwrapped = previous.map_or(raw, |last| {
            last + (raw - last + PI).rem_euclid(2.0 * PI) - PI
        });
        previous = Some(unwrapped);
        points.push(((index * block) as f64 / rate, unwrapped));
    }
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_p = points.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_p)).sum();
    let variance: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
    // The fit's phase is that of sin + cos terms: a faster tone moves it
    // forward.
    covariance / variance / (2.0 * PI)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_over_full_scale_and_8_bit_is_unsigned() {
        let pcm8 = AudioFormat::extensible(SampleType::Pcm, 1, 8_000, 8, 8).unwrap();
        assert_eq!(
            channel_samples(&pcm8, &[0x80, 0xC0, 0x40, 0x00], 0),
            [0.0, 0.5, -0.5, -1.0]
        );
        let pcm16 = AudioFormat::extensible(SampleType::Pcm, 2, 8_000, 16, 16).unwrap();
        let frame: Vec<u8> = [0x4000i16, -0x8000]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert_eq!(channel_samples(&pcm16, &frame, 0), [0.5]);
        assert_eq!(channel_samples(&pcm16, &frame, 1), [-1.0]);
    }

    fn sine(rate: u32, frequency: f64, amplitude: f64, frames: usize) -> Vec<f64> {
        (0..frames)
            .map(|n| {
                #[allow(clippy::cast_precision_loss, reason = "test indices")]
                let t = n as f64 / f64::from(rate);
                amplitude * (2.0 * PI * frequency * t + 0.3).sin()
            })
            .collect()
    }

    #[test]
    fn a_clean_tone_is_measured_at_its_level_and_pitch() {
        let fit = fit_tone(&sine(48_000, 997.0, 0.5, 48_000), 48_000, 997.0, 100).unwrap();
        assert!((fit.level_dbfs + 6.0206).abs() < 1e-3, "{fit:?}");
        assert!(fit.snr_db > 200.0, "{fit:?}");
        assert!(fit.pitch_error_ppm(997.0).abs() < 0.01, "{fit:?}");
        assert!((fit.phase_rad - 0.3).abs() < 1e-9, "{fit:?}");
    }

    #[test]
    fn a_pitch_error_shows_in_the_frequency_and_the_residual() {
        // 0.1 % fast: a resampler that got the ratio wrong.
        let fast = sine(48_000, 997.997, 0.5, 96_000);
        let fit = fit_tone(&fast, 48_000, 997.0, 0).unwrap();
        assert!((fit.pitch_error_ppm(997.0) - 1000.0).abs() < 5.0, "{fit:?}");
        assert!(fit.snr_db < 20.0, "{fit:?}");
    }

    #[test]
    fn noise_lowers_the_ratio_by_its_power() {
        // A triangle-shaped error of 1/65536 peak beside a -6 dBFS tone.
        let mut noisy = sine(44_100, 997.0, 0.5, 44_100);
        for (n, y) in noisy.iter_mut().enumerate() {
            #[allow(clippy::cast_precision_loss, reason = "test indices")]
            let e = ((n % 7) as f64 - 3.0) / 3.0 / 65_536.0;
            *y += e;
        }
        let fit = fit_tone(&noisy, 44_100, 997.0, 0).unwrap();
        assert!((80.0..110.0).contains(&fit.snr_db), "{fit:?}");
    }

    #[test]
    fn samples_are_decoded_from_each_container() {
        let pcm16 = AudioFormat::extensible(SampleType::Pcm, 2, 48_000, 16, 16).unwrap();
        let data = [0x00, 0x40, 0x00, 0xC0, 0xFF, 0x7F, 0x00, 0x80];
        assert_eq!(
            channel_samples(&pcm16, &data, 0),
            [0.5, 32_767.0 / 32_768.0]
        );
        assert_eq!(channel_samples(&pcm16, &data, 1), [-0.5, -1.0]);
        let in32 = AudioFormat::extensible(SampleType::Pcm, 1, 48_000, 32, 24).unwrap();
        assert_eq!(channel_samples(&in32, &[0, 0, 0, 0x40], 0), [0.5]);
        let float = AudioFormat::extensible(SampleType::Float, 1, 48_000, 32, 32).unwrap();
        assert_eq!(channel_samples(&float, &0.25_f32.to_le_bytes(), 0), [0.25]);
        assert!(channel_samples(&float, &[0; 4], 1).is_empty());
        assert!(fit_tone(&[0.0; 10], 48_000, 997.0, 0).is_none());
    }
}
