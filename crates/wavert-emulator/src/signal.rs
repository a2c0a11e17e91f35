//! Test signals, alignment and bit-exact comparison (from wavert-analysis),
//! WAV files (hound) and the session plot (plotters).

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

// The test signal and the bit-exact comparison live in wavert-analysis,
// shared with the Windows setup tool's `check`.
pub use wavert_analysis::signal::{
    counter_at, find_alignment, find_scaled_alignment, mismatched_frames, mismatched_scaled_frames,
    test_signal, tone_signal, tone_signal_at, TONE_HZ,
};

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
    let file = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = hound::WavReader::new(io::Cursor::new(&file))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format_request_of(
        reader.spec(),
        stored_container_bits(&file),
    ))
}

/// The format a WAV header declares, as a request: `container_bits` as
/// the file stores samples (from its `nBlockAlign`), or whole bytes of the
/// valid bits when the header does not say.
fn format_request_of(spec: hound::WavSpec, container_bits: Option<u16>) -> FormatRequest {
    let packed = spec.bits_per_sample.div_ceil(8) * 8;
    FormatRequest {
        rate: spec.sample_rate,
        bits: spec.bits_per_sample,
        channels: spec.channels,
        float: spec.sample_format == hound::SampleFormat::Float,
        container_bits: container_bits
            .filter(|&c| c >= spec.bits_per_sample)
            .unwrap_or(packed),
    }
}

/// The container of a WAV file's samples in bits: `nBlockAlign` x 8 /
/// `nChannels` of its `fmt ` chunk. hound reports only the valid bits of a
/// `WAVE_FORMAT_EXTENSIBLE` header, so 24-bit samples in 32-bit words
/// would read as packed 24-bit ones. `None` without a readable `fmt `.
fn stored_container_bits(file: &[u8]) -> Option<u16> {
    let le16 = |at: usize| Some(u16::from_le_bytes(file.get(at..at + 2)?.try_into().ok()?));
    let le32 = |at: usize| Some(u32::from_le_bytes(file.get(at..at + 4)?.try_into().ok()?));
    if file.get(0..4)? != b"RIFF" || file.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12usize;
    while let (Some(id), Some(size)) = (file.get(at..at + 4), le32(at + 4)) {
        let body = at + 8;
        if id == b"fmt " {
            let channels = le16(body + 2)?;
            let block_align = le16(body + 12)?;
            return (channels != 0 && block_align % channels == 0)
                .then(|| block_align / channels * 8);
        }
        // Chunks are padded to an even length.
        let size = usize::try_from(size).ok()?;
        at = body.checked_add(size)?.checked_add(size % 2)?;
    }
    None
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
    let format = format_request_of(reader.spec(), stored_container_bits(file));
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

    /// A `WAVE_FORMAT_EXTENSIBLE` file: `channels` of `valid` bits in
    /// `container`-bit words, a `LIST` chunk before `fmt `, `frames` frames.
    fn extensible_wav(channels: u16, valid: u16, container: u16, frames: usize) -> Vec<u8> {
        let block = channels * container / 8;
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&0xFFFE_u16.to_le_bytes());
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&48_000_u32.to_le_bytes());
        fmt.extend_from_slice(&(48_000 * u32::from(block)).to_le_bytes());
        fmt.extend_from_slice(&block.to_le_bytes());
        fmt.extend_from_slice(&container.to_le_bytes());
        fmt.extend_from_slice(&22_u16.to_le_bytes());
        fmt.extend_from_slice(&valid.to_le_bytes());
        fmt.extend_from_slice(&((1_u32 << channels) - 1).to_le_bytes());
        fmt.extend_from_slice(&wavert_core::guid::KSDATAFORMAT_SUBTYPE_PCM.to_le_bytes());
        let data = vec![0x5A_u8; frames * usize::from(block)];
        let mut body = b"WAVE".to_vec();
        // A chunk before `fmt ` the walk must step over.
        body.extend_from_slice(b"LIST\x04\0\0\0abcd");
        body.extend_from_slice(b"fmt ");
        body.extend_from_slice(&u32::try_from(fmt.len()).unwrap().to_le_bytes());
        body.extend_from_slice(&fmt);
        body.extend_from_slice(b"data");
        body.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        body.extend_from_slice(&data);
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
        file.extend_from_slice(&body);
        file
    }

    #[test]
    fn a_wav_files_container_is_read_from_its_block_align() {
        // 24 valid bits in 32-bit words: hound reports only the 24.
        let file = extensible_wav(2, 24, 32, 3);
        let wav = wav_data(&file).unwrap();
        assert_eq!((wav.format.bits, wav.format.container_bits), (24, 32));
        assert_eq!(wav.data.len(), 3 * 8);
        assert_eq!(
            wav.format.format().unwrap().block_align(),
            8,
            "played as stored, not repacked to 24 in 24"
        );
        // Packed 24-bit and plain 16-bit keep their containers.
        let file = extensible_wav(2, 24, 24, 3);
        let packed = wav_data(&file).unwrap();
        assert_eq!(packed.format.container_bits, 24);
        assert_eq!(stored_container_bits(&unfinished_qemu_header()), Some(16));
        assert_eq!(stored_container_bits(b"RIFF\0\0\0\0WAVE"), None);
        // An odd-sized chunk is followed by its pad byte.
        let mut odd = b"RIFF\0\0\0\0WAVEJUNK\x03\0\0\0abc\0".to_vec();
        odd.extend_from_slice(&unfinished_qemu_header()[12..]);
        assert_eq!(stored_container_bits(&odd), Some(16));
    }

    #[test]
    fn a_wav_file_no_pin_can_take_is_refused_in_one_line() {
        // 7.1.4 (12 channels) is a format now; 18 channels are not.
        let twelve = extensible_wav(12, 16, 16, 2);
        let wav = wav_data(&twelve).unwrap();
        assert_eq!(wav.format.format().map(|f| f.channels()), Ok(12));
        let file = extensible_wav(18, 16, 16, 2);
        let wav = wav_data(&file).unwrap();
        let error = wav.format.format().unwrap_err();
        assert_eq!(
            error,
            "48000 Hz 16-bit PCM, 18 ch is not a format a pin can take: 18 channels: 1 to 16 are supported"
        );
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
