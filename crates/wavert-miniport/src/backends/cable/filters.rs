//! The cable's wave filters: the shared shape (`crate::filters`) with the
//! cable's host-pin ranges, PCM and IEEE float.

use core::ptr;

use portcls_sys::{
    KSDATAFORMAT_SUBTYPE_IEEE_FLOAT, KSDATAFORMAT_SUBTYPE_PCM, KSDATARANGE, KSDATARANGE_AUDIO,
    PCFILTER_DESCRIPTOR, PCPIN_DESCRIPTOR,
};
use wavert_core::format::SampleType;
use wavert_core::range::DeviceRange;

use crate::direction::Direction;
use crate::filters::{audio_range, wave_filter, wave_pins, DataRangeTable};

/// Lowest sample rate the cable offers.
pub const MIN_RATE: u32 = 44_100;
/// Highest sample rate the cable offers.
pub const MAX_RATE: u32 = 192_000;
/// Most channels the cable offers.
pub const MAX_CHANNELS: u16 = 8;

/// The PCM range: 16, 24 (packed in 3 bytes) and 32 bits, 1 to 8 channels,
/// 44.1 to 192 kHz.
pub const PCM_RANGE: DeviceRange = DeviceRange {
    sample_type: SampleType::Pcm,
    max_channels: MAX_CHANNELS,
    min_bits: 16,
    max_bits: 32,
    min_rate: MIN_RATE,
    max_rate: MAX_RATE,
    container_for_24: 24,
};

/// The float range: 32-bit IEEE float, 1 to 8 channels, 44.1 to 192 kHz.
pub const FLOAT_RANGE: DeviceRange = DeviceRange {
    sample_type: SampleType::Float,
    max_channels: MAX_CHANNELS,
    min_bits: 32,
    max_bits: 32,
    min_rate: MIN_RATE,
    max_rate: MAX_RATE,
    container_for_24: 24,
};

/// The host pins' device ranges, in the order of their data-range table.
pub const HOST_RANGES: [DeviceRange; 2] = [PCM_RANGE, FLOAT_RANGE];

static PCM_KSRANGE: KSDATARANGE_AUDIO = audio_range(KSDATAFORMAT_SUBTYPE_PCM, &PCM_RANGE);
static FLOAT_KSRANGE: KSDATARANGE_AUDIO =
    audio_range(KSDATAFORMAT_SUBTYPE_IEEE_FLOAT, &FLOAT_RANGE);

static HOST_KSRANGES: DataRangeTable<2> = DataRangeTable([
    ptr::addr_of!(PCM_KSRANGE).cast_mut().cast::<KSDATARANGE>(),
    ptr::addr_of!(FLOAT_KSRANGE)
        .cast_mut()
        .cast::<KSDATARANGE>(),
]);
static RENDER_PINS: [PCPIN_DESCRIPTOR; 2] = wave_pins(Direction::Render, &HOST_KSRANGES);
static CAPTURE_PINS: [PCPIN_DESCRIPTOR; 2] = wave_pins(Direction::Capture, &HOST_KSRANGES);

/// The cable's wave render filter.
pub static WAVE_RENDER_FILTER: PCFILTER_DESCRIPTOR = wave_filter(Direction::Render, &RENDER_PINS);
/// The cable's wave capture filter.
pub static WAVE_CAPTURE_FILTER: PCFILTER_DESCRIPTOR =
    wave_filter(Direction::Capture, &CAPTURE_PINS);
