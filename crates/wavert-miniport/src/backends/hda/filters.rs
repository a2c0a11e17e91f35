//! The HD Audio wave filters as static descriptor data.
//!
//! The shared wave-filter shape (host pin 0, DAC/ADC node, bridge pin 1,
//! `crate::filters`), so the shared topology filters and physical
//! connection table serve HD Audio too. The host pins' range is the
//! envelope of what the stream format word can say for stereo integer PCM
//! (HDA spec 3.7.1: 8 to 192 kHz; 16-bit samples, or 20, 24 and 32 bits in
//! 32-bit containers); which of those a stream may open with is the
//! codec's converter's own list (its supported PCM sizes and rates
//! parameter, HDA spec 7.3.4.7), read at start and checked by
//! `HdaDevice::accepts`. A range table built from the codec at run time
//! would need descriptors that are not `const`: not done (see
//! `docs/architecture.md`).

use portcls_sys::{
    KSDATAFORMAT_SUBTYPE_PCM, KSDATARANGE_AUDIO, PCFILTER_DESCRIPTOR, PCPIN_DESCRIPTOR,
};
use wavert_core::format::{AudioFormat, SampleType};
use wavert_core::range::DeviceRange;

use crate::direction::Direction;
use crate::filters::{audio_range, host_range_table, wave_filter, wave_pins, DataRangeTable};

/// Channels of both streams (QEMU's converters are stereo; the walk keeps
/// the first stereo-capable path).
pub const CHANNELS: u16 = 2;

/// The host pins' range (see the module comment).
pub const HDA_RANGE: DeviceRange = DeviceRange {
    sample_type: SampleType::Pcm,
    max_channels: CHANNELS,
    min_bits: 16,
    max_bits: 32,
    min_rate: 8_000,
    max_rate: 192_000,
    containers_for_24: &[32],
};

/// The default format of both directions: 48 kHz, 16-bit, stereo, which
/// every HD Audio codec supports (HDA spec 7.3.4.7: 48 kHz and 16 bits are
/// required of converters).
#[allow(
    clippy::panic,
    reason = "evaluated at compile time: an invalid default fails the build"
)]
pub const DEFAULT_FORMAT: AudioFormat =
    match AudioFormat::extensible(SampleType::Pcm, CHANNELS, 48_000, 16, 16) {
        Ok(format) => format,
        Err(_) => panic!("the HD Audio default format is not a valid format"),
    };

static HDA_KSRANGE: KSDATARANGE_AUDIO = audio_range(KSDATAFORMAT_SUBTYPE_PCM, &HDA_RANGE);
/// The range, then its mode attribute list.
static HDA_KSRANGES: DataRangeTable<2> = host_range_table([&HDA_KSRANGE]);

static RENDER_PINS: [PCPIN_DESCRIPTOR; 2] = wave_pins(Direction::Render, &HDA_KSRANGES);
static CAPTURE_PINS: [PCPIN_DESCRIPTOR; 2] = wave_pins(Direction::Capture, &HDA_KSRANGES);

/// The HD Audio wave render filter (output converter).
pub const HDA_WAVE_RENDER_FILTER: PCFILTER_DESCRIPTOR =
    wave_filter(Direction::Render, &RENDER_PINS);
/// The HD Audio wave capture filter (input converter).
pub const HDA_WAVE_CAPTURE_FILTER: PCFILTER_DESCRIPTOR =
    wave_filter(Direction::Capture, &CAPTURE_PINS);
