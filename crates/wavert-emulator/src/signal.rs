//! Test signals, alignment and bit-exact comparison, WAV and SVG output.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use wavert_core::format::{AudioFormat, SampleType};

use crate::engine::PositionSample;
use crate::machine::QPC_FREQUENCY;

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
    let n = sample.len();
    u16::from_le_bytes([sample[n - 2], sample[n - 1]])
}

/// `seconds` of a 997 Hz sine (amplitude 1/2) on every channel but the
/// second, which carries a frame counter (1, 2, ... 65535, 1, ...), never 0
/// so the first frame differs from silence.
#[must_use]
pub fn test_signal(format: &AudioFormat, seconds: f64) -> Vec<u8> {
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
        let tone = 0.5 * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin();
        let counter = u16::try_from(k % 65_535 + 1).unwrap_or(1);
        for ch in 0..format.channels() {
            encode(format, tone, (ch == 1).then_some(counter), &mut out);
        }
    }
    out
}

/// Reads a WAV file as raw frames in `format` (which must be the file's own:
/// use [`wav_format_request`] to ask for it).
///
/// # Errors
///
/// An unreadable or unsupported file.
pub fn read_wav(path: &Path, format: &AudioFormat) -> Result<Vec<u8>, String> {
    let mut reader =
        hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    let valid = u32::from(format.valid_bits());
    let container = u32::from(format.container_bits());
    match reader.spec().sample_format {
        hound::SampleFormat::Float => {
            for s in reader.samples::<f32>() {
                let s = s.map_err(|e| format!("{}: {e}", path.display()))?;
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
        hound::SampleFormat::Int => {
            for s in reader.samples::<i32>() {
                let s = s.map_err(|e| format!("{}: {e}", path.display()))?;
                let word = i64::from(s) << (container - valid);
                out.extend_from_slice(&word.to_le_bytes()[..(container / 8) as usize]);
            }
        }
    }
    Ok(out)
}

/// The format a WAV file holds, as a request.
///
/// # Errors
///
/// An unreadable file.
pub fn wav_format_request(path: &Path) -> Result<crate::engine::FormatRequest, String> {
    let reader = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = reader.spec();
    Ok(crate::engine::FormatRequest {
        rate: spec.sample_rate,
        bits: spec.bits_per_sample,
        channels: spec.channels,
        float: spec.sample_format == hound::SampleFormat::Float,
    })
}

/// Writes raw frames of `format` as a WAV file.
///
/// # Errors
///
/// The I/O error.
pub fn write_wav(path: &Path, format: &AudioFormat, data: &[u8]) -> io::Result<()> {
    let float = format.sample_type() == SampleType::Float;
    let spec = hound::WavSpec {
        channels: format.channels(),
        sample_rate: format.sample_rate(),
        bits_per_sample: format.valid_bits(),
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(io::Error::other)?;
    let bytes = (format.container_bits() / 8) as usize;
    let shift = u32::from(format.container_bits() - format.valid_bits());
    for sample in data.chunks_exact(bytes) {
        if float {
            let v = f32::from_le_bytes(sample.try_into().unwrap_or([0; 4]));
            writer.write_sample(v).map_err(io::Error::other)?;
        } else {
            let mut word = [0u8; 4];
            word[4 - bytes..].copy_from_slice(sample);
            let unused_bits = 32 - 8 * u32::try_from(bytes).unwrap_or(4);
            let v = i32::from_le_bytes(word) >> unused_bits >> shift;
            writer.write_sample(v).map_err(io::Error::other)?;
        }
    }
    writer.finalize().map_err(io::Error::other)
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

/// An SVG plot of position (frames) against time (ms since RUN).
#[must_use]
pub fn position_plot_svg(
    trace: &[PositionSample],
    run_qpc: u64,
    block_align: u32,
    title: &str,
) -> String {
    let (width, height, margin) = (800.0_f64, 480.0_f64, 60.0_f64);
    #[allow(clippy::cast_precision_loss, reason = "plot coordinates")]
    let points: Vec<(f64, f64)> = trace
        .iter()
        .map(|s| {
            let t = (s.qpc_before.saturating_sub(run_qpc)) as f64 * 1000.0 / QPC_FREQUENCY as f64;
            (t, (s.linear_bytes / u64::from(block_align.max(1))) as f64)
        })
        .collect();
    let max_t = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_y = points.iter().map(|p| p.1).fold(1.0, f64::max);
    let to_x = |t: f64| (t / max_t).mul_add(2.0f64.mul_add(-margin, width), margin);
    let to_y = |v: f64| (v / max_y).mul_add(-2.0f64.mul_add(-margin, height), height - margin);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{title}</text>"#,
        width / 2.0
    );
    let _ = writeln!(
        svg,
        r#"<line x1="{margin}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{margin}" y1="{margin}" x2="{margin}" y2="{b}" stroke="black"/>"#,
        b = height - margin,
        r = width - margin
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">time since RUN (ms), 0 .. {max_t:.0}</text>"#,
        width / 2.0,
        height - 20.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="15" y="{}" transform="rotate(-90 15 {})" text-anchor="middle">position (frames), 0 .. {max_y:.0}</text>"#,
        height / 2.0,
        height / 2.0
    );
    let mut path = String::new();
    for (i, &(t, v)) in points.iter().enumerate() {
        let _ = write!(
            path,
            "{}{:.1},{:.1} ",
            if i == 0 { "M" } else { "L" },
            to_x(t),
            to_y(v)
        );
    }
    let _ = writeln!(
        svg,
        r#"<path d="{path}" fill="none" stroke="steelblue" stroke-width="1.5"/>"#
    );
    svg.push_str("</svg>\n");
    svg
}
