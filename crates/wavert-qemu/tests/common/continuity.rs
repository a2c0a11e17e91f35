//! Reading QEMU's output against the tests' signal (frame `k`: left the
//! 16-bit counter `k + 1`, right its complement) when the output may have
//! gaps: what a stream that stopped and started again leaves.

/// The output read against the signal: frames of the signal in order,
/// the forward jumps between them (frames of the signal that never came
/// out), the silent frames inside, and the first frame that is neither
/// the signal going forward nor silence.
#[derive(Debug, Default)]
pub struct Continuity {
    /// Frames of the signal.
    pub frames: u64,
    /// Each forward jump, in frames of the signal skipped.
    pub jumps: Vec<u64>,
    /// Silent frames between signal frames.
    pub silent_inside: u64,
    /// The index of the first frame that is neither.
    pub wrong: Option<u64>,
}

/// A jump is at most this many frames (a larger one reads as going back:
/// the counter is 16 bits).
const MAX_JUMP_FRAMES: u64 = 16_384;

/// Reads `pcm` (16-bit stereo frames) against the signal.
pub fn continuity(pcm: &[u8]) -> Continuity {
    let mut c = Continuity::default();
    let mut next: Option<u64> = None;
    let mut trailing = 0;
    for (index, f) in (0u64..).zip(pcm.chunks_exact(4)) {
        if f == [0, 0, 0, 0] {
            trailing += 1;
            continue;
        }
        let left = u16::from_le_bytes([f[0], f[1]]);
        let right = u16::from_le_bytes([f[2], f[3]]);
        if right != !left {
            c.wrong = Some(index);
            break;
        }
        let k16 = u64::from(left.wrapping_sub(1));
        let expected = next.unwrap_or(k16);
        let jump = (k16 + 65_536 - expected % 65_536) % 65_536;
        if jump > MAX_JUMP_FRAMES {
            c.wrong = Some(index);
            break;
        }
        if next.is_some() {
            c.silent_inside += trailing;
        }
        trailing = 0;
        if jump > 0 {
            c.jumps.push(jump);
        }
        next = Some(expected + jump + 1);
        c.frames += 1;
    }
    c
}

/// QEMU's `hda-audio` keeps up to 8 KiB between the controller and the
/// audio backend and drops it when a stream starts again
/// (`hda_audio_set_running` zeroes its read and write positions), so every
/// stop loses what sat there, whatever the driver does.
pub const QEMU_CODEC_BUFFER_FRAMES: u64 = 8_192 / 4;
