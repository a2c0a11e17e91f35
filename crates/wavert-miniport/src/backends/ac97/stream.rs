//! The AC'97's stream limits and latency; its streams are the shared
//! [`WaveRtStream`] over [`Ac97Device`].
//!
//! The cyclic buffer is non-contiguous pages below 4 GiB (the ICH takes
//! 32-bit addresses); the channel's 32-entry descriptor list (256 bytes)
//! lives in one physically contiguous page, the buffer's device memory. The
//! segment list comes from `wavert_core::sg` with the AC'97 profile: one
//! segment per page piece, split at packet ends, lengths in 16-bit samples,
//! an interrupt on every segment; the ISR writes 31 of them ahead into the
//! ring.

use portcls_sys::KSRTAUDIO_HWLATENCY;
use wavert_core::negotiate::DeviceLimits;

use super::device::Ac97Device;
use crate::stream::WaveRtStream;

/// Highest physical address the ICH bus master reaches (32-bit BDBAR and
/// buffer pointers).
pub const MAX_PHYSICAL: u64 = 0xFFFF_FFFF;

/// The AC'97 buffer limits: at least 64 frames, at most 1 MiB (far more
/// than the audio engine asks for; each segment stays under the 65534-sample
/// descriptor limit because segments never cross a page).
pub const BUFFER_LIMITS: DeviceLimits = DeviceLimits {
    min_bytes: 256,
    max_bytes: 1024 * 1024,
    granularity_bytes: 4,
};

/// The ICH's PCM FIFO, in bytes, for `KSRTAUDIO_HWLATENCY::FifoSize`.
///
/// PICB counts samples "not yet read from memory" for output and "not yet
/// written to memory" for input, whatever has crossed the AC-link (Intel
/// 82801DB ICH4 datasheet, 14.2.5 `x_PICB`), so the reported position runs
/// ahead of the converter by what sits in the controller's FIFO. Intel
/// does not publish the AC'97 engines' FIFO depth; 64 bytes (16 stereo
/// 16-bit frames, the size of the prefetch a descriptor fetch triggers) is
/// our estimate, bounded by the smallest output FIFO Intel documents for
/// its audio DMA engines (ICH6 HD Audio `SDFIFOS`, 16 to 256 bytes). QEMU's
/// model has no FIFO.
pub const FIFO_BYTES: u32 = 64;

/// Codec group delay in frames.
///
/// The DAC's and the ADC's interpolation and decimation filters. The AC'97 2.3 specification leaves it to the codec;
/// sigma-delta AC'97 codecs typically state about 12 to 20 sample periods
/// in their datasheets. We report 16 frames at the stream's rate.
pub const CODEC_DELAY_FRAMES: u32 = 16;

/// `KSRTAUDIO_HWLATENCY` for a stream at `rate`: the FIFO, no chipset
/// delay beyond it, and the codec's group delay in 100 ns units.
#[must_use]
pub fn hw_latency(rate: u32) -> KSRTAUDIO_HWLATENCY {
    let delay = u64::from(CODEC_DELAY_FRAMES) * 10_000_000 / u64::from(rate.max(1));
    KSRTAUDIO_HWLATENCY {
        FifoSize: FIFO_BYTES,
        ChipsetDelay: 0,
        CodecDelay: u32::try_from(delay).unwrap_or(u32::MAX),
    }
}

/// A stream of the AC'97: the shared WaveRT stream over the device.
pub type Ac97Stream<P, IO> = WaveRtStream<Ac97Device<P, IO>>;
