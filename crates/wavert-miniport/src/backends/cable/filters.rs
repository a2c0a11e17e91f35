//! The cable's wave filters: the shared shape (`crate::filters`) with the
//! cable's host-pin ranges, one per sample depth, and its default format.
//!
//! # Ranges
//!
//! A `KSDATARANGE_AUDIO` names valid bits but no container, so one range
//! spanning 16 to 32 bits would advertise 20 or 28 bits, which no stream can
//! open with, and say nothing about 24 bits in a 32-bit container. The cable
//! therefore advertises one range per depth it takes: 24-bit PCM (in a
//! 32-bit container or packed in three bytes: [`PCM24_CONTAINERS`]), 16-bit
//! and 32-bit PCM, 32-bit IEEE float and unsigned 8-bit PCM; each 1 to 16
//! channels at 8 to 384 kHz. Every (container, valid bits) pair a range admits opens a
//! stream. Ranges naming one depth are what SYSVAD's host pins advertise
//! (`speakerwavtable.h`: `SPEAKER_HOST_MIN_BITS_PER_SAMPLE` =
//! `SPEAKER_HOST_MAX_BITS_PER_SAMPLE` = 16).
//!
//! # Default format
//!
//! [`DEFAULT_FORMAT`]: 48 kHz stereo, 24 valid bits in a 32-bit container
//! (WAVEFORMATEXTENSIBLE, PCM), for both directions. The audio engine mixes
//! in float and converts to the device format; through a loopback cable the
//! device format is what the capture side receives, so 24 bits keep 48 dB
//! more of the mix than a 16-bit default such as SYSVAD's (the first entry
//! of `SpeakerAudioEngineSupportedDeviceFormats`, 44.1 kHz 16-bit: its
//! ranges are 16-bit only; its INFs set no `PKEY_AudioEngine_OEMFormat`).
//! 24-in-32 rather than packed 24 because it is the layout HD Audio
//! hardware uses for every sample above 16 bits (32-bit containers), so the
//! format the issue calls the most common exclusive-mode one; 48 kHz stereo
//! as in Learn's
//! `PKEY_AudioEngine_OEMFormat` example.
//!
//! The range holding the default format comes first in the table: PortCls
//! tries a pin's ranges in order and the first intersection wins, so a
//! wildcard client gets the default format. Each range is followed in the
//! table by the mode attribute list (`crate::filters::host_range_table`).

use portcls_sys::{
    KSDATAFORMAT_SUBTYPE_IEEE_FLOAT, KSDATAFORMAT_SUBTYPE_PCM, KSDATARANGE_AUDIO,
    PCFILTER_DESCRIPTOR, PCPIN_DESCRIPTOR,
};
use wavert_core::format::{AudioFormat, SampleType};
use wavert_core::range::DeviceRange;

use crate::direction::Direction;
use crate::filters::{audio_range, host_range_table, wave_filter, wave_pins, DataRangeTable};

/// Lowest sample rate the cable offers.
pub const MIN_RATE: u32 = 8_000;
/// Highest sample rate the cable offers.
pub const MAX_RATE: u32 = 384_000;
/// Most channels the cable offers.
pub const MAX_CHANNELS: u16 = 16;

/// Containers of 24 valid bits: 32 (the default's) first, then packed.
pub const PCM24_CONTAINERS: &[u16] = &[32, 24];

/// `bits`-bit samples of `sample_type`, 1 to 16 channels, 8 to 384 kHz.
const fn depth_range(sample_type: SampleType, bits: u16) -> DeviceRange {
    DeviceRange {
        sample_type,
        max_channels: MAX_CHANNELS,
        min_bits: bits,
        max_bits: bits,
        min_rate: MIN_RATE,
        max_rate: MAX_RATE,
        containers_for_24: if bits == 24 { PCM24_CONTAINERS } else { &[] },
    }
}

/// 24-bit PCM, in 32-bit or packed 24-bit containers.
pub const PCM24_RANGE: DeviceRange = depth_range(SampleType::Pcm, 24);
/// 16-bit PCM.
pub const PCM16_RANGE: DeviceRange = depth_range(SampleType::Pcm, 16);
/// 32-bit PCM.
pub const PCM32_RANGE: DeviceRange = depth_range(SampleType::Pcm, 32);
/// 32-bit IEEE float.
pub const FLOAT_RANGE: DeviceRange = depth_range(SampleType::Float, 32);
/// 8-bit PCM (unsigned, 0x80 silence, as WAVE defines it).
pub const PCM8_RANGE: DeviceRange = depth_range(SampleType::Pcm, 8);

/// The host pins' device ranges, in the order of their data-range table
/// (the default format's first; 8-bit last, the depth a wildcard should
/// least get).
pub const HOST_RANGES: [DeviceRange; 5] = [
    PCM24_RANGE,
    PCM16_RANGE,
    PCM32_RANGE,
    FLOAT_RANGE,
    PCM8_RANGE,
];

/// The cable's default format, both directions: 48 kHz, stereo, 24 valid
/// bits in 32 (see the module docs for why).
#[allow(
    clippy::panic,
    reason = "evaluated at compile time: an invalid default fails the build"
)]
pub const DEFAULT_FORMAT: AudioFormat =
    match AudioFormat::extensible(SampleType::Pcm, 2, 48_000, 32, 24) {
        Ok(format) => format,
        Err(_) => panic!("the cable's default format is not a valid format"),
    };

static PCM24_KSRANGE: KSDATARANGE_AUDIO = audio_range(KSDATAFORMAT_SUBTYPE_PCM, &PCM24_RANGE);
static PCM16_KSRANGE: KSDATARANGE_AUDIO = audio_range(KSDATAFORMAT_SUBTYPE_PCM, &PCM16_RANGE);
static PCM32_KSRANGE: KSDATARANGE_AUDIO = audio_range(KSDATAFORMAT_SUBTYPE_PCM, &PCM32_RANGE);
static FLOAT_KSRANGE: KSDATARANGE_AUDIO =
    audio_range(KSDATAFORMAT_SUBTYPE_IEEE_FLOAT, &FLOAT_RANGE);
static PCM8_KSRANGE: KSDATARANGE_AUDIO = audio_range(KSDATAFORMAT_SUBTYPE_PCM, &PCM8_RANGE);

/// Each range, then its mode attribute list.
static HOST_KSRANGES: DataRangeTable<10> = host_range_table([
    &PCM24_KSRANGE,
    &PCM16_KSRANGE,
    &PCM32_KSRANGE,
    &FLOAT_KSRANGE,
    &PCM8_KSRANGE,
]);
static RENDER_PINS: [PCPIN_DESCRIPTOR; 2] = wave_pins(Direction::Render, &HOST_KSRANGES);
static CAPTURE_PINS: [PCPIN_DESCRIPTOR; 2] = wave_pins(Direction::Capture, &HOST_KSRANGES);

/// The cable's wave render filter: pins, nodes, connections, categories.
///
/// The registered descriptor adds the format properties, which need the
/// back-end's type (`crate::wave::with_format_properties`).
pub const WAVE_RENDER_FILTER: PCFILTER_DESCRIPTOR = wave_filter(Direction::Render, &RENDER_PINS);
/// The cable's wave capture filter, as [`WAVE_RENDER_FILTER`].
pub const WAVE_CAPTURE_FILTER: PCFILTER_DESCRIPTOR = wave_filter(Direction::Capture, &CAPTURE_PINS);
