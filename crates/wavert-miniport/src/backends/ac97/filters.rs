//! The AC'97 wave filters as static descriptor data.
//!
//! The shared wave-filter shape (host pin 0, DAC/ADC node, bridge pin 1,
//! `crate::filters`), so the shared topology filters and physical
//! connection table serve the AC'97 as well; only the host pin's data range
//! is the AC'97's own:
//! what the ICH PCM channels and a variable-rate codec take, 16-bit stereo
//! PCM at 8 to 48 kHz (VRA: any rate in 1 Hz steps, AC'97 2.3 section 5.8).
//! No 24-bit container: 24 valid bits (packed or in 32) are refused by the
//! range itself, so neither a proposal nor an intersection can reach them.
//!
//! Default format ([`DEFAULT_FORMAT`]): 48 kHz 16-bit stereo, the only depth
//! the ICH's PCM engines take in two-channel mode, at the codec's highest
//! rate (the AC'97's fixed-rate 48 kHz, which a codec without VRA runs at).

use portcls_sys::{
    KSDATAFORMAT_SUBTYPE_PCM, KSDATARANGE_AUDIO, PCFILTER_DESCRIPTOR, PCPIN_DESCRIPTOR,
};
use wavert_core::ac97::{MAX_RATE, MIN_RATE};
use wavert_core::format::{AudioFormat, SampleType};
use wavert_core::range::DeviceRange;

use crate::direction::Direction;
use crate::filters::{audio_range, host_range_table, wave_filter, wave_pins, DataRangeTable};

/// Channels of the PCM-out and PCM-in engines in two-channel mode.
pub const CHANNELS: u16 = 2;
/// Bits per sample (the 16-bit sample mode of the ICH channels).
pub const BITS: u16 = 16;

/// The host pins' range: 16-bit stereo PCM, 8-48 kHz.
pub const AC97_RANGE: DeviceRange = DeviceRange {
    sample_type: SampleType::Pcm,
    max_channels: CHANNELS,
    min_bits: BITS,
    max_bits: BITS,
    min_rate: MIN_RATE,
    max_rate: MAX_RATE,
    containers_for_24: &[],
};

/// The default format of both directions: 48 kHz, 16-bit, stereo
/// (WAVEFORMATEXTENSIBLE, PCM).
#[allow(
    clippy::panic,
    reason = "evaluated at compile time: an invalid default fails the build"
)]
pub const DEFAULT_FORMAT: AudioFormat =
    match AudioFormat::extensible(SampleType::Pcm, CHANNELS, MAX_RATE, BITS, BITS) {
        Ok(format) => format,
        Err(_) => panic!("the AC'97's default format is not a valid format"),
    };

static AC97_KSRANGE: KSDATARANGE_AUDIO = audio_range(KSDATAFORMAT_SUBTYPE_PCM, &AC97_RANGE);
/// The range, then its mode attribute list.
static AC97_KSRANGES: DataRangeTable<2> = host_range_table([&AC97_KSRANGE]);

static RENDER_PINS: [PCPIN_DESCRIPTOR; 2] = wave_pins(Direction::Render, &AC97_KSRANGES);
static CAPTURE_PINS: [PCPIN_DESCRIPTOR; 2] = wave_pins(Direction::Capture, &AC97_KSRANGES);

/// The AC'97 wave render filter (PCM out): pins, nodes, connections,
/// categories.
///
/// The registered descriptor adds the format properties, which need the
/// back-end's type (`crate::wave::with_format_properties`).
pub const AC97_WAVE_RENDER_FILTER: PCFILTER_DESCRIPTOR =
    wave_filter(Direction::Render, &RENDER_PINS);
/// The AC'97 wave capture filter (PCM in), as [`AC97_WAVE_RENDER_FILTER`].
pub const AC97_WAVE_CAPTURE_FILTER: PCFILTER_DESCRIPTOR =
    wave_filter(Direction::Capture, &CAPTURE_PINS);
