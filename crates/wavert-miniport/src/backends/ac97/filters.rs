//! The AC'97 wave filters as static descriptor data.
//!
//! The shared wave-filter shape (host pin 0, DAC/ADC node, bridge pin 1,
//! `crate::filters`), so the shared topology filters and physical
//! connection table serve the AC'97 as well; only the host pin's data range
//! is the AC'97's own:
//! what the ICH PCM channels and a variable-rate codec take, 16-bit stereo
//! PCM at 8 to 48 kHz (VRA: any rate in 1 Hz steps, AC'97 2.3 section 5.8).

use core::ptr;

use portcls_sys::{
    KSDATAFORMAT_SUBTYPE_PCM, KSDATARANGE, KSDATARANGE_AUDIO, PCFILTER_DESCRIPTOR, PCPIN_DESCRIPTOR,
};
use wavert_core::ac97::{MAX_RATE, MIN_RATE};
use wavert_core::format::SampleType;
use wavert_core::range::DeviceRange;

use crate::direction::Direction;
use crate::filters::{audio_range, wave_filter, wave_pins, DataRangeTable};

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
    container_for_24: 24,
};

static AC97_KSRANGE: KSDATARANGE_AUDIO = audio_range(KSDATAFORMAT_SUBTYPE_PCM, &AC97_RANGE);
static AC97_KSRANGES: DataRangeTable<1> =
    DataRangeTable([ptr::addr_of!(AC97_KSRANGE).cast_mut().cast::<KSDATARANGE>()]);

static RENDER_PINS: [PCPIN_DESCRIPTOR; 2] = wave_pins(Direction::Render, &AC97_KSRANGES);
static CAPTURE_PINS: [PCPIN_DESCRIPTOR; 2] = wave_pins(Direction::Capture, &AC97_KSRANGES);

/// The AC'97 wave render filter (PCM out).
pub static AC97_WAVE_RENDER_FILTER: PCFILTER_DESCRIPTOR =
    wave_filter(Direction::Render, &RENDER_PINS);
/// The AC'97 wave capture filter (PCM in).
pub static AC97_WAVE_CAPTURE_FILTER: PCFILTER_DESCRIPTOR =
    wave_filter(Direction::Capture, &CAPTURE_PINS);
