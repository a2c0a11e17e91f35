//! Format conversion for the cable.
//!
//! Any supported render format into any supported capture format, in the
//! kernel's rules (integer arithmetic, no allocation after construction,
//! bounded work per call, no panic).
//!
//! A frame goes through three stages: [`sample`] decodes each sample to a
//! Q31 working sample, [`channels`] maps the render speakers to the capture
//! speakers, [`resample`] changes the rate (only when the rates differ),
//! and [`sample`] encodes the result. Identical formats never come here:
//! the cable copies them byte for byte. Volume and mute ([`gain`]) scale the
//! working samples: the render side's per render channel before the
//! channel map, the capture side's per capture channel after it.

pub mod channels;
pub mod gain;
pub mod resample;
pub mod sample;

use crate::format::AudioFormat;

use self::channels::{ChannelError, ChannelMap, MAX_CHANNELS};
use self::gain::ChannelGains;
use self::resample::{ResampleError, Resampler};
use self::sample::Encoding;

/// Why a converter cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvertError {
    /// A channel count the map cannot take.
    Channels(ChannelError),
    /// A rate or storage the resampler cannot take.
    Resample(ResampleError),
}

/// Frames a call moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Converted {
    /// Input frames consumed.
    pub inputs: usize,
    /// Output frames written.
    pub outputs: usize,
}

/// A converter from one format to another, over resampler storage `S`
/// (see [`Converter::storage_len`]).
#[derive(Debug)]
pub struct Converter<S> {
    decode: Encoding,
    encode: Encoding,
    map: ChannelMap,
    in_block: usize,
    out_block: usize,
    resampler: Option<Resampler<S>>,
    /// Render-side gain (per input channel, before the map).
    input_gains: ChannelGains,
    /// Capture-side gain (per output channel, after the map).
    output_gains: ChannelGains,
}

impl<S: AsMut<[i32]> + AsRef<[i32]>> Converter<S> {
    /// The `i32`s of storage a converter from `from` to `to` needs (0 when
    /// the rates match: only the resampler keeps history).
    #[must_use]
    pub const fn storage_len(from: &AudioFormat, to: &AudioFormat) -> usize {
        if from.sample_rate() == to.sample_rate() {
            0
        } else {
            Resampler::<S>::storage_len(
                from.sample_rate(),
                to.sample_rate(),
                to.channels() as usize,
            )
        }
    }

    /// A converter from `from` to `to`. IRQL: any (it only fills `storage`).
    ///
    /// # Errors
    /// [`ConvertError`].
    // Not inlined: each constructor's frame holds one map (about 1.3 KiB);
    // inlined into its caller they add up past the one page a kernel
    // stack frame may take without a `__chkstk` probe.
    #[inline(never)]
    pub fn new(from: &AudioFormat, to: &AudioFormat, storage: S) -> Result<Self, ConvertError> {
        let map = ChannelMap::new(
            usize::from(from.channels()),
            from.channel_mask(),
            usize::from(to.channels()),
            to.channel_mask(),
        )
        .map_err(ConvertError::Channels)?;
        let resampler = if from.sample_rate() == to.sample_rate() {
            None
        } else {
            Some(
                Resampler::new(
                    from.sample_rate(),
                    to.sample_rate(),
                    usize::from(to.channels()),
                    storage,
                )
                .map_err(ConvertError::Resample)?,
            )
        };
        Ok(Self {
            decode: Encoding::of(from),
            encode: Encoding::of(to),
            map,
            in_block: from.block_align() as usize,
            out_block: to.block_align() as usize,
            resampler,
            input_gains: ChannelGains::UNITY,
            output_gains: ChannelGains::UNITY,
        })
    }

    /// Sets the volume: `input` scales each render channel before the
    /// channel map, `output` each capture channel after it (from the next
    /// frame on; the resampler's history keeps the gain it was made with).
    pub const fn set_gains(&mut self, input: ChannelGains, output: ChannelGains) {
        self.input_gains = input;
        self.output_gains = output;
    }

    /// Forgets the input seen so far (the resampler's history and phase):
    /// the next output frame is centred `numerator / out_rate` of a frame
    /// past the next input frame (0 without a rate change).
    pub fn reset(&mut self, numerator: u32) {
        if let Some(resampler) = self.resampler.as_mut() {
            resampler.reset(numerator);
        }
    }

    /// Input frames needed before `outputs` more output frames can be made.
    #[must_use]
    pub fn inputs_needed(&self, outputs: u64) -> u64 {
        self.resampler
            .as_ref()
            .map_or(outputs, |r| r.inputs_needed(outputs))
    }

    /// Input frames the resampler reads past an output instant (0 without
    /// rate change): how far the input must run ahead of the output.
    #[must_use]
    pub fn look_ahead(&self) -> usize {
        self.resampler.as_ref().map_or(0, Resampler::look_ahead)
    }

    /// The encoding of a silent input sample (what the caller fills in for
    /// input frames it does not have).
    #[must_use]
    pub const fn input_silence(&self) -> u8 {
        self.decode.silence()
    }

    /// Converts whole frames of `input` into whole frames of `output`:
    /// stops when `output` is full or `input` runs out. Work is bounded by
    /// the two lengths.
    pub fn convert(&mut self, input: &[u8], output: &mut [u8]) -> Converted {
        let Some(resampler) = self.resampler.as_mut() else {
            return self.convert_frames(input, output);
        };
        let mut done = Converted::default();
        let mut decoded = [0i32; MAX_CHANNELS];
        let mut mapped = [0i32; MAX_CHANNELS];
        let mut frames_in = input.chunks_exact(self.in_block.max(1));
        for out_frame in output.chunks_exact_mut(self.out_block.max(1)) {
            // Inputs go in until the resampler has the next output.
            let made = loop {
                if resampler.pull(&mut mapped) {
                    break true;
                }
                let Some(frame) = frames_in.next() else {
                    break false;
                };
                decode_map(
                    self.decode,
                    &self.map,
                    &self.input_gains,
                    frame,
                    &mut decoded,
                    &mut mapped,
                );
                resampler.push(&mapped);
                done.inputs += 1;
            };
            if !made {
                break;
            }
            self.output_gains.scale_working(&mut mapped, MAX_CHANNELS);
            let size = self.encode.bytes();
            for (sample, out) in mapped.iter().zip(out_frame.chunks_exact_mut(size)) {
                self.encode.encode(*sample, out);
            }
            done.outputs += 1;
        }
        done
    }
}

impl<S> Converter<S> {
    /// Without a rate change: blocks of frames decoded, mapped and encoded
    /// a stage at a time (one dispatch on the encodings per block).
    fn convert_frames(&self, input: &[u8], output: &mut [u8]) -> Converted {
        const BLOCK: usize = 8;
        let frames = (input.len() / self.in_block.max(1)).min(output.len() / self.out_block.max(1));
        let (ins, outs) = (self.map.inputs(), self.map.outputs());
        let mut decoded = [0i32; BLOCK * MAX_CHANNELS];
        let mut mapped = [0i32; BLOCK * MAX_CHANNELS];
        let mut done = 0;
        while done < frames {
            let n = (frames - done).min(BLOCK);
            let (Some(src), Some(dst), Some(dec), Some(map)) = (
                input.get(done * self.in_block..(done + n) * self.in_block),
                output.get_mut(done * self.out_block..(done + n) * self.out_block),
                decoded.get_mut(..n * ins),
                mapped.get_mut(..n * outs),
            ) else {
                break;
            };
            self.decode.decode_all(src, dec);
            self.input_gains.scale_working(dec, ins);
            if self.map.is_identity() {
                map.copy_from_slice(dec);
            } else {
                for (i, o) in dec
                    .chunks_exact(ins.max(1))
                    .zip(map.chunks_exact_mut(outs.max(1)))
                {
                    self.map.apply(i, o);
                }
            }
            self.output_gains.scale_working(map, outs);
            self.encode.encode_all(map, dst);
            done += n;
        }
        Converted {
            inputs: done,
            outputs: done,
        }
    }
}

fn decode_map(
    encoding: Encoding,
    map: &ChannelMap,
    gains: &ChannelGains,
    frame: &[u8],
    decoded: &mut [i32; MAX_CHANNELS],
    mapped: &mut [i32; MAX_CHANNELS],
) {
    for (sample, bytes) in decoded.iter_mut().zip(frame.chunks_exact(encoding.bytes())) {
        *sample = encoding.decode(bytes);
    }
    gains.scale_working(decoded, MAX_CHANNELS);
    if map.is_identity() {
        *mapped = *decoded;
    } else {
        map.apply(decoded, mapped);
    }
}
