//! The cable's conversion path: when the capture format differs from the
//! render format, the capture side is filled with the render audio
//! converted ([`wavert_core::convert`]) instead of silence.
//!
//! Everything is allocated when a buffer is installed (`PASSIVE_LEVEL`,
//! [`Conversion::new`]) and moved under the cable lock; the service
//! ([`Conversion::tap`], [`convert_into`]) only reads and writes that
//! memory.
//!
//! # Why the render audio is tapped as it plays
//!
//! A render client may rewrite a frame as soon as the position has passed
//! it, and the resampler reads render frames up to its delay after they
//! played. So each service first copies the frames the render side played
//! since the last one into the conversion's own FIFO ([`Conversion::tap`],
//! what the plain copy does by copying at once), and the converter reads
//! only that FIFO. The FIFO holds a render buffer's worth plus the delay
//! and a resampler window: a service moves at most a buffer.
//!
//! # The mapping and its latency
//!
//! Without a rate change capture frame `n` is render frame `n - lead`, as
//! for a plain copy (the lead of `QpcClock::lead_frames`), and conversion
//! adds no delay. With a rate change the resampler reads
//! [`Converter::look_ahead`] render frames past each output instant, so
//! the capture is anchored [`Conversion::delay_frames`] render frames
//! behind the render clock (the look-ahead plus two frames of rounding
//! slack): when both sides run, the capture at time `t` holds what the
//! render played at `t - delay`, fixed to within one render frame at the
//! first service that sees both running. The cable reports that delay as
//! the capture side's `CodecDelay` ([`Conversion::codec_delay_100ns`]).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use wavert_core::convert::gain::ChannelGains;
use wavert_core::convert::resample::Resampler;
use wavert_core::convert::sample::Encoding;
use wavert_core::convert::{ConvertError, Converter};
use wavert_core::format::AudioFormat;

use crate::memory::Mapping;

/// Capture frames converted per step (bounds the staging memory).
const STEP_FRAMES: u64 = 256;
/// Render frames the input staging holds beyond one resampler window.
const INPUT_FRAMES: u64 = 4_096;

/// The converter of one (render, capture) pair and its staging memory.
#[derive(Debug)]
pub struct Conversion {
    render: AudioFormat,
    capture: AudioFormat,
    /// Boxed: the converter holds its channel map inline (about 1.3 KiB),
    /// and the stack frames that build and move a conversion must stay
    /// under one page (a larger frame needs the `__chkstk` probe, which a
    /// kernel driver does not link, on a stack of a few pages).
    converter: Box<Converter<Vec<i32>>>,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Converted capture bytes not yet written: `output[pending..made]`.
    pending: usize,
    made: usize,
    /// Render frame the converter takes next; `None` until anchored.
    next_input: Option<i128>,
    /// Whether the last step's input held any played render frame.
    step_from_render: bool,
    /// Render frames played, tapped as they played: frame `f` is at
    /// `(f mod capacity) * block` while `fifo_start <= f < fifo_end`.
    fifo: Vec<u8>,
    fifo_start: i128,
    fifo_end: i128,
    /// The capture format's silence byte (0x80 for 8-bit PCM, else 0).
    silence: u8,
}

/// Where the render audio is, for one service.
pub struct RenderSide<'a> {
    /// The render buffer's mapping.
    pub mapping: &'a Mapping,
    /// Its size in bytes.
    pub size: u32,
    /// Oldest render linear byte still in the buffer.
    pub oldest: u64,
    /// Render linear bytes played (and not past the end of stream).
    pub end: u64,
}

impl Conversion {
    /// Allocates the conversion from `render` to `capture`. IRQL:
    /// `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// The converter's, for a pair it cannot take.
    pub fn new(
        render: &AudioFormat,
        capture: &AudioFormat,
        render_buffer_bytes: u32,
    ) -> Result<Self, ConvertError> {
        let storage = vec![0; Converter::<Vec<i32>>::storage_len(render, capture)];
        let converter = Box::new(Converter::new(render, capture, storage)?);
        let window = 2 * converter.look_ahead() as u64 + 2;
        let ratio = u64::from(render.sample_rate()).div_ceil(u64::from(capture.sample_rate()));
        let input_frames = INPUT_FRAMES.max(STEP_FRAMES * ratio) + window;
        let input =
            vec![0; usize::try_from(input_frames * u64::from(render.block_align())).unwrap_or(0)];
        let output =
            vec![0; usize::try_from(STEP_FRAMES * u64::from(capture.block_align())).unwrap_or(0)];
        let fifo_frames = u64::from(render_buffer_bytes) / u64::from(render.block_align().max(1))
            + u64::from(delay_frames(render, capture))
            + window;
        let fifo =
            vec![0; usize::try_from(fifo_frames * u64::from(render.block_align())).unwrap_or(0)];
        Ok(Self {
            render: *render,
            capture: *capture,
            converter,
            input,
            output,
            pending: 0,
            made: 0,
            next_input: None,
            step_from_render: false,
            fifo,
            fifo_start: 0,
            fifo_end: 0,
            silence: Encoding::of(capture).silence(),
        })
    }

    /// Sets the volume the converter applies: `render`'s factors per render
    /// channel, `capture`'s per capture channel.
    pub fn set_gains(&mut self, render: ChannelGains, capture: ChannelGains) {
        self.converter.set_gains(render, capture);
    }

    /// Whether this conversion is the one for `render` -> `capture`.
    #[must_use]
    pub fn converts(&self, render: &AudioFormat, capture: &AudioFormat) -> bool {
        self.render == *render && self.capture == *capture
    }

    /// Render frames the capture runs behind the render clock.
    #[must_use]
    pub fn delay_frames(&self) -> u32 {
        delay_frames(&self.render, &self.capture)
    }

    /// Forgets the mapping: the next [`Self::anchor`] fixes it afresh.
    pub const fn unanchor(&mut self) {
        self.next_input = None;
        self.pending = 0;
        self.made = 0;
    }

    /// The render and capture frame sizes in bytes (never 0).
    #[must_use]
    pub fn block_aligns(&self) -> (u64, u64) {
        (
            u64::from(self.render.block_align().max(1)),
            u64::from(self.capture.block_align().max(1)),
        )
    }

    /// Whether the mapping is fixed.
    #[must_use]
    pub const fn is_anchored(&self) -> bool {
        self.next_input.is_some()
    }

    /// Fixes the mapping: the converter's next output is the capture frame
    /// at the instant of render frame `render_frame`; with a rate change
    /// the converter's input starts [`Self::delay_frames`] render frames
    /// before it, and the first output instant lies `numerator /
    /// capture rate` of a render frame past `render_frame`. Render frames
    /// before `first_trusted` count as silence (the client may have
    /// rewritten them).
    pub fn anchor(&mut self, render_frame: i128, numerator: u32, first_trusted: i128) {
        self.converter.reset(numerator);
        self.pending = 0;
        self.made = 0;
        self.next_input = Some(render_frame - i128::from(self.delay_frames()));
        // Frames played before `first_trusted` may be rewritten already:
        // the FIFO starts there (or at the first frame needed, if later).
        let first = first_trusted.max(self.next_input.unwrap_or(first_trusted));
        self.fifo_start = first;
        self.fifo_end = first;
    }

    fn fifo_frames(&self) -> i128 {
        let (block, _) = self.block_aligns();
        i128::from(self.fifo.len() as u64 / block)
    }

    /// Copies the render frames played since the last tap (those the
    /// render buffer still holds) into the FIFO. Call once per service,
    /// before [`convert_into`].
    pub fn tap(&mut self, render: &RenderSide<'_>) {
        if !self.is_anchored() {
            return;
        }
        let (block, _) = self.block_aligns();
        let capacity = self.fifo_frames();
        let size_frames = i128::from(u64::from(render.size) / block);
        let end = i128::from(render.end / block);
        let oldest = i128::from(render.oldest.div_ceil(block));
        if capacity == 0 || size_frames == 0 || end <= self.fifo_end {
            return;
        }
        // Only the last `capacity` frames can be kept.
        let mut frame = self.fifo_end.max(oldest).max(end - capacity);
        if frame > self.fifo_end {
            // A gap (frames rewritten before a tap): the FIFO restarts.
            self.fifo_start = frame;
        }
        while frame < end {
            let in_render = frame.rem_euclid(size_frames);
            let in_fifo = frame.rem_euclid(capacity);
            let run = (end - frame)
                .min(size_frames - in_render)
                .min(capacity - in_fifo);
            let (Ok(run_u), Ok(src), Ok(dst)) = (
                u64::try_from(run),
                u64::try_from(in_render),
                usize::try_from(in_fifo),
            ) else {
                break;
            };
            let dst = dst * usize::try_from(block).unwrap_or(0);
            let bytes = usize::try_from(run_u * block).unwrap_or(0);
            let ok = self.fifo.get_mut(dst..dst + bytes).is_some_and(|d| {
                render
                    .mapping
                    .read(u32::try_from(src * block).unwrap_or(u32::MAX), d)
            });
            if !ok {
                break;
            }
            frame += run;
        }
        self.fifo_end = frame;
        self.fifo_start = self.fifo_start.max(frame - capacity);
    }

    /// `capture_frames` in render frames, exactly: the whole frames
    /// rounded up, and how far (over the capture rate) the exact value
    /// lies after `playing - whole` (for the anchor of a capture frame
    /// some way before now).
    #[must_use]
    pub fn render_frames_for(&self, capture_frames: u64) -> (i128, u32) {
        let capture_rate = u128::from(self.capture.sample_rate().max(1));
        let num = u128::from(capture_frames) * u128::from(self.render.sample_rate());
        let whole = num.div_ceil(capture_rate);
        let fraction = whole * capture_rate - num;
        (
            i128::try_from(whole).unwrap_or(i128::MAX),
            u32::try_from(fraction).unwrap_or(0),
        )
    }
}

/// Render frames a capture side converted from `render` runs behind the
/// render clock: 0 without a rate change, else the resampler's look-ahead
/// plus two frames of rounding slack (see the module docs).
#[must_use]
pub fn delay_frames(render: &AudioFormat, capture: &AudioFormat) -> u32 {
    if render.sample_rate() == capture.sample_rate() {
        return 0;
    }
    let look_ahead =
        Resampler::<Vec<i32>>::half_window(render.sample_rate(), capture.sample_rate());
    u32::try_from(look_ahead)
        .unwrap_or(u32::MAX)
        .saturating_add(2)
}

/// [`delay_frames`] in 100 ns units, rounded up: the capture side's
/// `CodecDelay`.
#[must_use]
pub fn codec_delay_100ns(render: &AudioFormat, capture: &AudioFormat) -> u32 {
    let units = u64::from(delay_frames(render, capture)) * 10_000_000;
    u32::try_from(units.div_ceil(u64::from(render.sample_rate().max(1)))).unwrap_or(u32::MAX)
}

/// Fills `capture[offset..offset + len]` with the render audio converted.
/// Render frames the buffer does not hold (not played yet, before the first,
/// or already rewritten) convert as silence. Returns the capture bytes made
/// from render audio (the rest counts as silence).
pub fn convert_into(conversion: &mut Conversion, capture: &Mapping, offset: u32, len: u32) -> u32 {
    let Some(mut next) = conversion.next_input else {
        let _silenced = capture.fill(offset, len, conversion.silence);
        return 0;
    };
    let (in_block, out_block) = conversion.block_aligns();
    let mut done = 0u32;
    let mut from_render = 0u32;
    while done < len {
        if conversion.pending == conversion.made {
            // Only the frames this piece still needs, so no frame is made
            // from render audio before its time.
            let left = u64::from(len - done).div_ceil(out_block);
            let capacity = conversion.input.len() as u64 / in_block;
            let mut frames = left.min(STEP_FRAMES);
            while frames > 1 && conversion.converter.inputs_needed(frames) > capacity {
                frames /= 2;
            }
            let inputs = conversion.converter.inputs_needed(frames).min(capacity);
            conversion.step_from_render = stage_input(conversion, next, inputs);
            let in_bytes = usize::try_from(inputs * in_block).unwrap_or(0);
            let out_bytes = usize::try_from(frames * out_block).unwrap_or(0);
            let (Some(input), Some(output)) = (
                conversion.input.get(..in_bytes),
                conversion.output.get_mut(..out_bytes),
            ) else {
                break;
            };
            let converted = conversion.converter.convert(input, output);
            next += i128::try_from(converted.inputs).unwrap_or(0);
            conversion.pending = 0;
            conversion.made = converted.outputs * usize::try_from(out_block).unwrap_or(0);
            if converted.outputs == 0 {
                break;
            }
        }
        let piece = (conversion.made - conversion.pending).min((len - done) as usize);
        let Some(bytes) = conversion
            .output
            .get(conversion.pending..conversion.pending + piece)
        else {
            break;
        };
        if !capture.write(offset + done, bytes) {
            break;
        }
        conversion.pending += piece;
        let piece = u32::try_from(piece).unwrap_or(0);
        done += piece;
        if conversion.step_from_render {
            from_render += piece;
        }
    }
    if done < len {
        let _silenced = capture.fill(offset + done, len - done, conversion.silence);
    }
    conversion.next_input = Some(next);
    from_render
}

/// Copies render frames `next .. next + count` from the FIFO into the
/// input staging, silence for frames it does not hold. Returns whether any
/// played frame was staged.
fn stage_input(conversion: &mut Conversion, next: i128, count: u64) -> bool {
    let (block, _) = conversion.block_aligns();
    let capacity = conversion.fifo_frames();
    let silence = conversion.converter.input_silence();
    let (start, end) = (conversion.fifo_start, conversion.fifo_end);
    let mut staged = 0u64;
    let mut played = false;
    while staged < count {
        let frame = next + i128::from(staged);
        let at = usize::try_from(staged * block).unwrap_or(usize::MAX);
        let left = count - staged;
        let (run, held) = if frame < start {
            (
                u64::try_from(start - frame).unwrap_or(left).min(left),
                false,
            )
        } else if frame >= end || capacity == 0 {
            (left, false)
        } else {
            let in_fifo = frame.rem_euclid(capacity);
            let run = (end - frame).min(capacity - in_fifo);
            (u64::try_from(run).unwrap_or(left).min(left), true)
        };
        let bytes = usize::try_from(run * block).unwrap_or(0);
        let from = usize::try_from(frame.rem_euclid(capacity.max(1))).unwrap_or(0)
            * usize::try_from(block).unwrap_or(0);
        let (input, fifo) = (&mut conversion.input, &conversion.fifo);
        if let Some(dst) = input.get_mut(at..at + bytes) {
            match fifo.get(from..from + bytes) {
                Some(src) if held => {
                    dst.copy_from_slice(src);
                    played = true;
                }
                _ => dst.fill(silence),
            }
        }
        staged += run.max(1);
    }
    played
}
