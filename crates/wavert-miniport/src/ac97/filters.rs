//! The AC'97 wave filters as static descriptor data.
//!
//! Same shape as the cable's wave filters (host pin 0, DAC/ADC node,
//! bridge pin 1), so the cable's topology filters and physical connection
//! table serve the AC'97 as well; only the host pin's data range differs:
//! what the ICH PCM channels and a variable-rate codec take, 16-bit stereo
//! PCM at 8 to 48 kHz (VRA: any rate in 1 Hz steps, AC'97 2.3 section 5.8).

use core::ptr;

use portcls_sys::{
    GUID, KSCATEGORY_AUDIO, KSCATEGORY_CAPTURE, KSCATEGORY_REALTIME, KSCATEGORY_RENDER,
    KSDATAFORMAT_SUBTYPE_PCM, KSDATARANGE, KSDATARANGE_AUDIO, KSNODETYPE_ADC, KSNODETYPE_DAC,
    KSPIN_COMMUNICATION_SINK, KSPIN_DATAFLOW, KSPIN_DATAFLOW_IN, KSPIN_DATAFLOW_OUT,
    PCCONNECTION_DESCRIPTOR, PCFILTER_DESCRIPTOR, PCFILTER_NODE, PCNODE_DESCRIPTOR,
    PCPIN_DESCRIPTOR, PKSDATARANGE,
};
use wavert_core::ac97::{MAX_RATE, MIN_RATE};
use wavert_core::format::SampleType;
use wavert_core::range::DeviceRange;

use crate::filters::{
    audio_range, bridge_pin, edge, filter, node, pin, DataRangeTable, NODE_IN, NODE_OUT,
    WAVE_BRIDGE_PIN, WAVE_HOST_PIN,
};

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

const fn host_pin(flow: KSPIN_DATAFLOW) -> PCPIN_DESCRIPTOR {
    // One stream per channel: the PCM engines are not shared.
    pin(
        1,
        ptr::null(),
        1,
        ptr::addr_of!(AC97_KSRANGES).cast::<PKSDATARANGE>(),
        flow,
        KSPIN_COMMUNICATION_SINK,
        &KSCATEGORY_AUDIO,
    )
}

/// Interface categories of the AC'97 wave render filter.
pub static AC97_WAVE_RENDER_CATEGORIES: [GUID; 3] =
    [KSCATEGORY_AUDIO, KSCATEGORY_RENDER, KSCATEGORY_REALTIME];
static RENDER_PINS: [PCPIN_DESCRIPTOR; 2] = [
    host_pin(KSPIN_DATAFLOW_IN),
    bridge_pin(KSPIN_DATAFLOW_OUT, &KSCATEGORY_AUDIO, ptr::null()),
];
static RENDER_NODES: [PCNODE_DESCRIPTOR; 1] = [node(&KSNODETYPE_DAC, ptr::null(), ptr::null())];
static RENDER_CONNECTIONS: [PCCONNECTION_DESCRIPTOR; 2] = [
    edge(PCFILTER_NODE, WAVE_HOST_PIN, 0, NODE_IN),
    edge(0, NODE_OUT, PCFILTER_NODE, WAVE_BRIDGE_PIN),
];
/// The AC'97 wave render filter (PCM out).
pub static AC97_WAVE_RENDER_FILTER: PCFILTER_DESCRIPTOR = filter(
    &RENDER_PINS,
    &RENDER_NODES,
    &RENDER_CONNECTIONS,
    &AC97_WAVE_RENDER_CATEGORIES,
);

/// Interface categories of the AC'97 wave capture filter.
pub static AC97_WAVE_CAPTURE_CATEGORIES: [GUID; 3] =
    [KSCATEGORY_AUDIO, KSCATEGORY_CAPTURE, KSCATEGORY_REALTIME];
static CAPTURE_PINS: [PCPIN_DESCRIPTOR; 2] = [
    host_pin(KSPIN_DATAFLOW_OUT),
    bridge_pin(KSPIN_DATAFLOW_IN, &KSCATEGORY_AUDIO, ptr::null()),
];
static CAPTURE_NODES: [PCNODE_DESCRIPTOR; 1] = [node(&KSNODETYPE_ADC, ptr::null(), ptr::null())];
static CAPTURE_CONNECTIONS: [PCCONNECTION_DESCRIPTOR; 2] = [
    edge(PCFILTER_NODE, WAVE_BRIDGE_PIN, 0, NODE_IN),
    edge(0, NODE_OUT, PCFILTER_NODE, WAVE_HOST_PIN),
];
/// The AC'97 wave capture filter (PCM in).
pub static AC97_WAVE_CAPTURE_FILTER: PCFILTER_DESCRIPTOR = filter(
    &CAPTURE_PINS,
    &CAPTURE_NODES,
    &CAPTURE_CONNECTIONS,
    &AC97_WAVE_CAPTURE_CATEGORIES,
);
