//! Test signals, alignment and bit-exact comparison, WAV files (hound) and
//! the session plot (plotters).

use std::io;
use std::path::Path;

use plotters::prelude::{
    ChartBuilder, Color as _, DrawingAreaErrorKind, IntoDrawingArea as _, LineSeries, PathElement,
    RGBColor, SVGBackend, BLACK, WHITE,
};
use wavert_core::format::{AudioFormat, SampleType};

use crate::engine::{FormatRequest, PositionSample};
use crate::machine::QPC_FREQUENCY;
use crate::session::LoopbackResult;
use crate::timing::{position_error, Lateness, StreamClock};

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
pub fn wav_format_request(path: &Path) -> Result<FormatRequest, String> {
    let reader = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format_request_of(reader.spec()))
}

/// The format a WAV header declares, as a request.
fn format_request_of(spec: hound::WavSpec) -> FormatRequest {
    FormatRequest {
        rate: spec.sample_rate,
        bits: spec.bits_per_sample,
        channels: spec.channels,
        float: spec.sample_format == hound::SampleFormat::Float,
        // Samples as stored: whole bytes, 24 bits packed in three.
        container_bits: spec.bits_per_sample.div_ceil(8) * 8,
    }
}

/// A WAV file's header, read by hound, and its sample bytes as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavData<'a> {
    /// The format the header declares.
    pub format: FormatRequest,
    /// Frames the `data` chunk's header declares.
    pub declared_frames: u32,
    /// The bytes from the start of the `data` chunk to the end of the file.
    pub data: &'a [u8],
}

/// Reads a WAV file's header with hound and hands back the bytes from the
/// start of its `data` chunk to the end of the file.
///
/// To the end of the file, not the declared length: a writer stopped before
/// it closed the file leaves the declared sizes as they were when it
/// opened it. QEMU's `wav` audio back-end writes 0 there and fixes the
/// sizes up only when it exits, and hound counts samples by the declared
/// length, so its sample reader would return none of them. hound still
/// parses the header and the chunks before `data`; the cursor it reads
/// from then stands at the first sample.
///
/// # Errors
///
/// A file hound cannot parse (no RIFF/WAVE header, no `fmt ` or `data`
/// chunk).
pub fn wav_data(file: &[u8]) -> Result<WavData<'_>, String> {
    let reader = hound::WavReader::new(io::Cursor::new(file)).map_err(|e| e.to_string())?;
    let format = format_request_of(reader.spec());
    let declared_frames = reader.duration();
    let start = usize::try_from(reader.into_inner().position()).unwrap_or(file.len());
    Ok(WavData {
        format,
        declared_frames,
        data: file.get(start..).unwrap_or_default(),
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

/// The session's plot: three panels over the time since RUN (ms).
///
/// The position of both streams (frames), their position error against the
/// ideal clock (frames), and how late each notification event came (us).
///
/// plotters' SVG back-end writes text as SVG `<text>` elements and, with
/// its `ttf` feature off, lays it out by estimate: no font files are read.
///
/// # Errors
///
/// A drawing error from plotters.
#[allow(
    clippy::cast_precision_loss,
    reason = "plot coordinates: times and positions far below 2^52"
)]
#[allow(clippy::too_many_lines, reason = "one figure, panel by panel")]
pub fn session_plot_svg(session: &LoopbackResult, title: &str) -> Result<String, String> {
    let ms = |ticks: u64| ticks as f64 * 1000.0 / QPC_FREQUENCY as f64;
    let position = |trace: &[PositionSample], clock: &StreamClock| -> Vec<(f64, f64)> {
        let block = u64::from(clock.block_align.max(1));
        trace
            .iter()
            .filter(|s| s.qpc_before >= clock.run_qpc)
            .map(|s| {
                (
                    ms(s.qpc_before - clock.run_qpc),
                    (s.linear_bytes / block) as f64,
                )
            })
            .collect()
    };
    let error = |trace: &[PositionSample], clock: &StreamClock| -> Vec<(f64, f64)> {
        position_error(trace, clock)
            .into_iter()
            .map(|(t, e)| (ms(t), e as f64))
            .collect()
    };
    let lateness = |l: &Lateness| -> Vec<(f64, f64)> {
        l.late_ticks
            .iter()
            .map(|&(late, at)| (ms(at), ms(late) * 1000.0))
            .collect()
    };
    let panels = [
        (
            "position (frames)",
            position(&session.render_trace, &session.render_clock),
            position(&session.capture_trace, &session.capture_clock),
        ),
        (
            "position - ideal (frames)",
            error(&session.render_trace, &session.render_clock),
            error(&session.capture_trace, &session.capture_clock),
        ),
        (
            "event lateness (us)",
            lateness(&session.render_lateness()),
            lateness(&session.capture_lateness()),
        ),
    ];
    let max_t = panels
        .iter()
        .flat_map(|(_, r, c)| r.iter().chain(c))
        .map(|p| p.0)
        .fold(1.0, f64::max);
    let mut svg = String::new();
    {
        let plot_error = |e: DrawingAreaErrorKind<_>| format!("session plot: {e}");
        let root = SVGBackend::with_string(&mut svg, (800, 900)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let root = root.titled(title, ("sans-serif", 18)).map_err(plot_error)?;
        for (area, (label, render, capture)) in root.split_evenly((3, 1)).iter().zip(panels) {
            let (low, high) = render
                .iter()
                .chain(&capture)
                .fold((0.0, 1.0), |(lo, hi): (f64, f64), p| {
                    (lo.min(p.1), hi.max(p.1))
                });
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(70)
                .build_cartesian_2d(0.0..max_t, low..(high - low).mul_add(0.05, high))
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc("time since RUN (ms)")
                .y_desc(label)
                .x_label_formatter(&|t| format!("{t:.0}"))
                .y_label_formatter(&|y| format!("{y:.0}"))
                .draw()
                .map_err(plot_error)?;
            for (points, colour, name) in [
                (render, STEEL_BLUE, "render"),
                (capture, DARK_ORANGE, "capture"),
            ] {
                chart
                    .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                    .map_err(plot_error)?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Steel blue, the render line's colour.
const STEEL_BLUE: RGBColor = RGBColor(70, 130, 180);
/// Dark orange, the capture line's colour.
const DARK_ORANGE: RGBColor = RGBColor(255, 140, 0);

#[cfg(test)]
mod tests {
    use super::*;

    /// The 44-byte header QEMU's `wav` back-end writes when it opens the
    /// file (16-bit stereo at 48 kHz), sizes still 0.
    fn unfinished_qemu_header() -> Vec<u8> {
        let mut file = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x02\0".to_vec();
        file.extend_from_slice(&48_000_u32.to_le_bytes());
        file.extend_from_slice(&192_000_u32.to_le_bytes());
        file.extend_from_slice(b"\x04\0\x10\0data\0\0\0\0");
        file
    }

    #[test]
    fn wav_data_reads_an_unfinished_header_to_the_end_of_the_file() {
        let mut file = unfinished_qemu_header();
        file.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let wav = wav_data(&file).unwrap();
        assert_eq!(wav.data, [1, 2, 3, 4, 5, 6, 7, 8].as_slice());
        assert_eq!(wav.declared_frames, 0);
        assert_eq!(
            (
                wav.format.rate,
                wav.format.bits,
                wav.format.channels,
                wav.format.float
            ),
            (48_000, 16, 2, false)
        );
        assert!(wav_data(b"RIFX").is_err());
    }

    #[test]
    fn wav_data_reads_what_write_wav_wrote() {
        let stereo = wavert_core::format::KSAUDIO_SPEAKER_STEREO;
        let format = AudioFormat::new(SampleType::Pcm, 2, 44_100, 16, 16, stereo, false).unwrap();
        let path = std::env::temp_dir().join(format!("wavert-signal-{}.wav", std::process::id()));
        let frames = [1, 0, 2, 0, 3, 0, 4, 0];
        write_wav(&path, &format, &frames).unwrap();
        let file = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let wav = wav_data(&file).unwrap();
        assert_eq!((wav.data, wav.declared_frames), (frames.as_slice(), 2));
    }

    #[test]
    fn the_session_plot_has_three_labelled_panels_with_both_streams() {
        let trace = |offset: u64| -> Vec<PositionSample> {
            (0..50_u64)
                .map(|i| PositionSample {
                    qpc_before: offset + i * QPC_FREQUENCY / 100,
                    qpc_after: offset + i * QPC_FREQUENCY / 100 + 1,
                    linear_bytes: i * 1920,
                    state: portcls_sys::KSSTATE_RUN,
                })
                .collect()
        };
        let clock = StreamClock {
            run_qpc: 0,
            rate: 48_000,
            block_align: 4,
            packet_frames: 480,
        };
        let session = LoopbackResult {
            render_trace: trace(0),
            capture_trace: trace(0),
            render_clock: clock,
            capture_clock: clock,
            render_signals: vec![100_000, 200_500],
            capture_signals: vec![100_000],
            ..LoopbackResult::empty()
        };
        let svg = session_plot_svg(&session, "timing").unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in [
            "timing",
            "time since RUN (ms)",
            "position (frames)",
            "position - ideal (frames)",
            "event lateness (us)",
            "render",
            "capture",
            "<polyline",
        ] {
            assert!(svg.contains(text), "no {text} in the plot");
        }
        assert_eq!(
            svg.matches("time since RUN (ms)").count(),
            3,
            "three panels"
        );
    }
}
