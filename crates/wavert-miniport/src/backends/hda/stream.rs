//! The HD Audio stream limits and latency; its streams are the shared
//! [`WaveRtStream`] over [`HdaDevice`].
//!
//! The cyclic buffer is non-contiguous pages anywhere the controller
//! reaches (64-bit when GCAP says so); its buffer descriptor list (at most
//! 256 16-byte entries, one page) is the buffer's device memory, 128-byte
//! aligned. The segment list comes from `wavert_core::sg` with the HDA
//! profile: one entry per physically contiguous piece, split at packet
//! ends, interrupt on completion only on the entries that end a packet
//! (and on none for a buffer allocated without notifications).

use portcls_sys::{
    AUDIO_SIGNALPROCESSINGMODE_DEFAULT, AUDIO_SIGNALPROCESSINGMODE_RAW, FILE_128_BYTE_ALIGNMENT,
    GUID,
};
use wavert_core::negotiate::DeviceLimits;

use super::device::HdaDevice;
use crate::modes::PacketSizeConstraints;
use crate::stream::WaveRtStream;

/// Buffer limits: at least 64 frames, at most 512 KiB (128 pages: with a
/// split at each of two packet ends the list stays far below the
/// controller's 256 entries), packets in whole multiples of 128 bytes.
///
/// The 128: every BDL entry's buffer must start on a 128-byte boundary
/// (HDA spec 3.6.2), and the list splits an entry at each packet end (the
/// entry that ends a packet carries its interrupt on completion), so each
/// packet end must be 128-byte aligned. A request is rounded up to whole
/// frames in such packets (44.1 kHz stereo, 10 ms: 1764 bytes asked, 1792
/// granted).
pub const BUFFER_LIMITS: DeviceLimits = DeviceLimits {
    min_bytes: 256,
    max_bytes: 512 * 1024,
    granularity_bytes: 128,
};

/// The shortest packet period claimed: 10 ms in 100 ns units.
///
/// As for the AC'97: QEMU's HD Audio model moves data on its audio timer too (the
/// codec's transfer timer inside runs per millisecond, but the audio
/// back-end's buffers are taken every 10 ms of virtual time); shorter
/// packets are not measured.
pub const MIN_PACKET_PERIOD_HNS: u32 = 100_000;

static MODE_PACKETS: [(GUID, u32); 2] = [
    (AUDIO_SIGNALPROCESSINGMODE_DEFAULT, MIN_PACKET_PERIOD_HNS),
    (AUDIO_SIGNALPROCESSINGMODE_RAW, MIN_PACKET_PERIOD_HNS),
];

/// `DEVPKEY_KsAudio_PacketSize_Constraints2`, both directions: packets of
/// whole 128-byte multiples ([`BUFFER_LIMITS`]).
pub const PACKET_SIZE_CONSTRAINTS: PacketSizeConstraints = PacketSizeConstraints {
    min_packet_period_hns: MIN_PACKET_PERIOD_HNS,
    packet_size_alignment: FILE_128_BYTE_ALIGNMENT,
    max_packet_bytes: BUFFER_LIMITS.max_bytes,
    mode_packet_hns: &MODE_PACKETS,
};

// The alignment mask and the granularity say the same thing.
const _: () =
    assert!(PACKET_SIZE_CONSTRAINTS.packet_size_alignment + 1 == BUFFER_LIMITS.granularity_bytes);

// ksmedia: MaxPacketSizeInBytes holds at least 10 ms of the largest format
// (192 kHz stereo in 32-bit containers).
const _: () = assert!(PACKET_SIZE_CONSTRAINTS.max_packet_bytes >= 192_000 * 2 * 4 / 100);

/// A stream of the HD Audio controller: the shared WaveRT stream.
pub type HdaStream<P, M> = WaveRtStream<HdaDevice<P, M>>;
