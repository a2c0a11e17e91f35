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

use portcls_sys::{
    AUDIO_SIGNALPROCESSINGMODE_DEFAULT, AUDIO_SIGNALPROCESSINGMODE_RAW, FILE_WORD_ALIGNMENT, GUID,
    KSRTAUDIO_HWLATENCY,
};
use wavert_core::negotiate::DeviceLimits;

use super::device::Ac97Device;
use crate::modes::PacketSizeConstraints;
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

/// The shortest packet period the AC'97 back-end claims: 10 ms, in 100 ns
/// units.
///
/// Where the figure comes from: the only AC'97 this project runs is QEMU's,
/// whose bus master moves data only on its audio timer's ticks, every 10 ms
/// of virtual time (`docs/testing.md`, the QEMU facts), so a packet shorter
/// than one tick would see its end interrupt in a burst with the next
/// one's. The QEMU tests stream 50 ms packets (a 100 ms buffer, two
/// notifications) without a halt; 10 ms packets and real ICH hardware are
/// not measured (`docs/performance.md`: "the AC'97 minimum period was not
/// measured"). The descriptor ring does not limit it: segments end at every
/// packet end and the ISR keeps 31 of them queued.
pub const MIN_PACKET_PERIOD_HNS: u32 = 100_000;

/// One constraint per mode of the host pins: each at the device minimum.
static MODE_PACKETS: [(GUID, u32); 2] = [
    (AUDIO_SIGNALPROCESSINGMODE_DEFAULT, MIN_PACKET_PERIOD_HNS),
    (AUDIO_SIGNALPROCESSINGMODE_RAW, MIN_PACKET_PERIOD_HNS),
];

/// The AC'97's `DEVPKEY_KsAudio_PacketSize_Constraints2`, both directions.
///
/// Packets of whole 16-bit samples (descriptor lengths count samples), at
/// most a whole buffer ([`BUFFER_LIMITS`]: 1 MiB, far above the 1920 bytes
/// of 10 ms at 48 kHz stereo 16-bit, the largest format).
pub const PACKET_SIZE_CONSTRAINTS: PacketSizeConstraints = PacketSizeConstraints {
    min_packet_period_hns: MIN_PACKET_PERIOD_HNS,
    packet_size_alignment: FILE_WORD_ALIGNMENT,
    max_packet_bytes: BUFFER_LIMITS.max_bytes,
    mode_packet_hns: &MODE_PACKETS,
};

// ksmedia: MaxPacketSizeInBytes holds at least 10 ms of any format the pin
// supports; the largest is 48 kHz stereo 16-bit (192 000 bytes a second).
const _: () = assert!(PACKET_SIZE_CONSTRAINTS.max_packet_bytes >= 48_000 * 2 * 2 / 100);

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
