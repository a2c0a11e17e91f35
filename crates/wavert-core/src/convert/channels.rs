//! Channel mapping by `KSAUDIO_SPEAKER` mask: which input channels make each
//! output channel, and with what gain.
//!
//! Rules, in order:
//! 1. A speaker both layouts have is copied (gain 1: bit-exact).
//! 2. An input speaker the output lacks is folded into the output speakers
//!    named by the first entry of its fall-back list ([`fold_targets`])
//!    whose speakers the output all has, each at -3 dB (the ITU-R BS.775
//!    down-mix coefficient 0.7071 for centre and surround into front); a
//!    mono output takes left and right at -3 dB each. LFE is dropped when
//!    the output has none (BS.775 leaves it out of the down-mix too).
//! 3. An output speaker no input speaker reaches is silent.
//!
//! When either mask is `KSAUDIO_SPEAKER_DIRECTOUT` (channels without
//! positions), channel `i` goes to channel `i` and the rest are silent or
//! dropped. Sums that pass full scale clip.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "every narrowing cast here follows a clamp or a range the comment beside it states"
)]

/// Most channels a converter handles (7.1.4 is 12; `KSAUDIO_SPEAKER`
/// masks name 18 positions, a WAVEFORMATEXTENSIBLE up to 16 here).
pub const MAX_CHANNELS: usize = 16;

/// Gain of one input channel in an output channel, Q15 (1.0 = 32768).
pub const UNITY: i32 = 1 << 15;
/// -3 dB in Q15: round(32768 / sqrt 2).
pub const MINUS_3DB: i32 = 23_170;

const FL: u32 = 0x1;
const FR: u32 = 0x2;
const FC: u32 = 0x4;
/// Named for the tests' layouts; the fold rules send it nowhere.
#[cfg(test)]
const LFE: u32 = 0x8;
const BL: u32 = 0x10;
const BR: u32 = 0x20;
const FLC: u32 = 0x40;
const FRC: u32 = 0x80;
const BC: u32 = 0x100;
const SL: u32 = 0x200;
const SR: u32 = 0x400;
const TC: u32 = 0x800;
const TFL: u32 = 0x1000;
const TFC: u32 = 0x2000;
const TFR: u32 = 0x4000;
const TBL: u32 = 0x8000;
const TBC: u32 = 0x1_0000;
const TBR: u32 = 0x2_0000;

/// Where a speaker the output lacks goes: the first mask of the list whose
/// speakers the output all has. Ordered nearest first (same height and
/// side, then the front).
#[must_use]
pub const fn fold_targets(speaker: u32) -> &'static [u32] {
    match speaker {
        FL | FR => &[FC],
        FC => &[FL | FR, FLC | FRC],
        BL => &[SL, BC, FL, FC],
        BR => &[SR, BC, FR, FC],
        FLC | TFL => &[FL, FC],
        FRC | TFR => &[FR, FC],
        BC => &[BL | BR, SL | SR, FL | FR, FC],
        SL => &[BL, FL, FC],
        SR => &[BR, FR, FC],
        TC => &[TFL | TFR, FL | FR, FC],
        TFC => &[TFL | TFR, FC, FL | FR],
        TBL => &[BL, SL, FL, FC],
        TBR => &[BR, SR, FR, FC],
        TBC => &[TBL | TBR, BC, BL | BR, SL | SR, FL | FR, FC],
        // BS.775 leaves LFE out of the down-mix; LFE and unknown bits
        // go nowhere.
        _ => &[],
    }
}

/// One input's contribution to an output channel.
///
/// Packed (5 bytes, not 8): a map holds 16 x 16 of them and lives inside
/// the converter, whose constructor's stack frame must stay under one page
/// (a kernel stack is small, and a larger frame needs the `__chkstk` probe
/// the driver does not link).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, packed)]
pub struct Tap {
    /// Its gain, Q15.
    pub gain: i32,
    /// The input channel.
    pub input: u8,
}

/// Most inputs one output channel sums: its own speaker plus every input
/// folded into it.
pub const MAX_TAPS: usize = MAX_CHANNELS;

/// What makes each output channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelMap {
    inputs: usize,
    outputs: usize,
    taps: [[Tap; MAX_TAPS]; MAX_CHANNELS],
    counts: [u8; MAX_CHANNELS],
    identity: bool,
}

/// Why a channel map cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// 0 channels, or more than [`MAX_CHANNELS`].
    UnsupportedChannelCount(usize),
}

/// The channel index of `speaker` in a layout `mask` (channels come in
/// ascending bit order, WAVEFORMATEXTENSIBLE's rule).
const fn index_in(mask: u32, speaker: u32) -> Option<usize> {
    if mask & speaker == 0 {
        return None;
    }
    Some((mask & (speaker - 1)).count_ones() as usize)
}

impl ChannelMap {
    /// The map from `inputs` channels laid out as `in_mask` to `outputs`
    /// channels laid out as `out_mask` (see the module docs).
    ///
    /// # Errors
    /// [`ChannelError::UnsupportedChannelCount`].
    // Not inlined: each constructor's frame holds one map (about 1.3 KiB);
    // inlined into its caller they add up past the one page a kernel
    // stack frame may take without a `__chkstk` probe.
    #[inline(never)]
    pub fn new(
        inputs: usize,
        in_mask: u32,
        outputs: usize,
        out_mask: u32,
    ) -> Result<Self, ChannelError> {
        for count in [inputs, outputs] {
            if count == 0 || count > MAX_CHANNELS {
                return Err(ChannelError::UnsupportedChannelCount(count));
            }
        }
        let mut map = Self {
            inputs,
            outputs,
            taps: [[Tap::default(); MAX_TAPS]; MAX_CHANNELS],
            counts: [0; MAX_CHANNELS],
            identity: false,
        };
        let positional = in_mask != 0
            && out_mask != 0
            && in_mask.count_ones() as usize == inputs
            && out_mask.count_ones() as usize == outputs;
        if positional {
            for bit in 0..32 {
                let speaker = 1u32 << bit;
                let Some(input) = index_in(in_mask, speaker) else {
                    continue;
                };
                if let Some(output) = index_in(out_mask, speaker) {
                    map.add(output, input, UNITY);
                    continue;
                }
                let targets = fold_targets(speaker)
                    .iter()
                    .copied()
                    .find(|&t| out_mask & t == t)
                    .unwrap_or(0);
                for target_bit in 0..32 {
                    if let Some(output) = index_in(out_mask, targets & (1 << target_bit)) {
                        map.add(output, input, MINUS_3DB);
                    }
                }
            }
        } else {
            for channel in 0..inputs.min(outputs) {
                map.add(channel, channel, UNITY);
            }
        }
        map.identity = inputs == outputs
            && (0..outputs).all(|o| {
                map.counts.get(o) == Some(&1)
                    && map.taps.get(o).and_then(|t| t.first())
                        == Some(&Tap {
                            input: o as u8,
                            gain: UNITY,
                        })
            });
        Ok(map)
    }

    fn add(&mut self, output: usize, input: usize, gain: i32) {
        let (Some(count), Some(taps)) = (self.counts.get_mut(output), self.taps.get_mut(output))
        else {
            return;
        };
        if let Some(tap) = taps.get_mut(usize::from(*count)) {
            *tap = Tap {
                input: input as u8,
                gain,
            };
            *count += 1;
        }
    }

    /// Whether every output channel is the same-numbered input, unscaled.
    #[must_use]
    pub const fn is_identity(&self) -> bool {
        self.identity
    }

    /// Input channels.
    #[must_use]
    pub const fn inputs(&self) -> usize {
        self.inputs
    }

    /// Output channels.
    #[must_use]
    pub const fn outputs(&self) -> usize {
        self.outputs
    }

    /// The taps of output channel `output` (empty: silent).
    #[must_use]
    pub fn taps(&self, output: usize) -> &[Tap] {
        let count = self.counts.get(output).map_or(0, |&c| usize::from(c));
        self.taps
            .get(output)
            .and_then(|t| t.get(..count))
            .unwrap_or(&[])
    }

    /// Maps one frame: `input` (at least [`Self::inputs`] samples) into
    /// `output` (at least [`Self::outputs`]); sums clip to full scale.
    pub fn apply(&self, input: &[i32], output: &mut [i32]) {
        for (o, out) in output.iter_mut().enumerate().take(self.outputs) {
            let taps = self.taps(o);
            *out = match taps {
                [] => 0,
                [Tap {
                    input: i,
                    gain: UNITY,
                }] => input.get(usize::from(*i)).copied().unwrap_or(0),
                _ => {
                    let sum: i64 = taps
                        .iter()
                        .map(|t| {
                            i64::from(input.get(usize::from(t.input)).copied().unwrap_or(0))
                                * i64::from(t.gain)
                        })
                        .sum();
                    let rounded = (sum + (1 << 14)) >> 15;
                    rounded.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    const STEREO: u32 = FL | FR;
    const SURROUND_5_1: u32 = FL | FR | FC | LFE | BL | BR;
    const SURROUND_7_1_4: u32 = FL | FR | FC | LFE | BL | BR | SL | SR | TFL | TFR | TBL | TBR;

    #[test]
    fn shared_speakers_copy_and_missing_ones_are_silent() {
        let map = ChannelMap::new(2, STEREO, 6, SURROUND_5_1).unwrap();
        let mut out = [7; 6];
        map.apply(&[100, -200], &mut out);
        assert_eq!(out, [100, -200, 0, 0, 0, 0]);
    }

    #[test]
    fn surround_folds_into_stereo_at_minus_3_db_and_lfe_is_dropped() {
        let map = ChannelMap::new(6, SURROUND_5_1, 2, STEREO).unwrap();
        let mut out = [0; 2];
        // FL FR FC LFE BL BR
        map.apply(&[0, 0, 32768, 1 << 20, 0, 0], &mut out);
        assert_eq!(out, [23_170, 23_170]);
        map.apply(&[0, 0, 0, 0, 32768, 0], &mut out);
        assert_eq!(out, [23_170, 0]);
    }

    #[test]
    fn twelve_channels_fold_into_stereo_and_copy_into_twelve() {
        let map = ChannelMap::new(12, SURROUND_7_1_4, 12, SURROUND_7_1_4).unwrap();
        assert!(map.is_identity());
        let down = ChannelMap::new(12, SURROUND_7_1_4, 2, STEREO).unwrap();
        assert!(!down.is_identity());
        // Left output: FL, then FC, BL, SL, TFL, TBL at -3 dB.
        assert_eq!(down.taps(0).len(), 6);
        assert_eq!(down.taps(0).first().map(|t| t.gain), Some(UNITY));
    }

    #[test]
    fn stereo_into_mono_takes_both_sides_and_mono_into_stereo_feeds_both() {
        let map = ChannelMap::new(2, STEREO, 1, FC).unwrap();
        let mut out = [0; 1];
        map.apply(&[32768, 32768], &mut out);
        assert_eq!(out, [2 * 23_170]);
        let up = ChannelMap::new(1, FC, 2, STEREO).unwrap();
        let mut out2 = [0; 2];
        up.apply(&[32768], &mut out2);
        assert_eq!(out2, [23_170, 23_170]);
    }

    #[test]
    fn sums_clip_and_bad_counts_are_refused() {
        let map = ChannelMap::new(2, STEREO, 1, FC).unwrap();
        let mut out = [0; 1];
        map.apply(&[i32::MAX, i32::MAX], &mut out);
        assert_eq!(out, [i32::MAX]);
        assert_eq!(
            ChannelMap::new(0, 0, 2, STEREO),
            Err(ChannelError::UnsupportedChannelCount(0))
        );
        assert_eq!(
            ChannelMap::new(17, 0, 2, STEREO),
            Err(ChannelError::UnsupportedChannelCount(17))
        );
    }

    #[test]
    fn direct_out_maps_by_index() {
        let map = ChannelMap::new(3, 0, 2, STEREO).unwrap();
        let mut out = [0; 2];
        map.apply(&[5, 6, 7], &mut out);
        assert_eq!(out, [5, 6]);
    }
}
