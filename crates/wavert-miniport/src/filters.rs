//! The filter descriptors every back-end shares, as static data: the wave
//! filter shape (each back-end supplies its host pin's ranges), the two
//! topology filters, and the builders.
//!
//! Layout (pin numbers are the indices in each filter's pin table):
//!
//! ```text
//! WaveRender                         TopologyRender
//!  pin 0 host (IN, SINK) -> DAC ->  pin 1 bridge ==phys==> pin 0 bridge -> volume -> mute -> pin 1 speaker
//!
//! TopologyCapture                                           WaveCapture
//!  pin 0 microphone -> volume -> mute -> pin 1 bridge ==phys==> pin 1 bridge -> ADC -> pin 0 host (OUT, SINK)
//! ```
//!
//! Why one wave filter per direction (and one topology filter per
//! direction): each wave filter is one KS filter interface with its own
//! category set (RENDER or CAPTURE, plus AUDIO and REALTIME), and the audio
//! endpoint builder makes one endpoint per topology bridge pin reached
//! through a physical connection. Separate filters keep each endpoint's
//! path trivial to follow (host pin, one node, bridge pin, one physical
//! connection, topology), give each direction its own friendly name in the
//! INF, and mirror Microsoft's SYSVAD layout, which is what the endpoint
//! builder is tested with. The cable couples the two directions below the
//! filters (in [`crate::VirtualCable`]), not in KS topology.

use alloc::vec::Vec;
use core::mem::size_of;
use core::ptr;

use portcls_sys::{
    KSPROPSETID_Audio, KSPROPSETID_Jack, GUID, KSATTRIBUTE,
    KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE, KSATTRIBUTE_LIST, KSAUDFNAME_MASTER_MUTE,
    KSAUDFNAME_MASTER_VOLUME, KSAUDFNAME_MIC_MUTE, KSAUDFNAME_MIC_VOLUME, KSAUDFNAME_PEAKMETER,
    KSAUDFNAME_RECORDING_CONTROL, KSCATEGORY_AUDIO, KSCATEGORY_CAPTURE, KSCATEGORY_REALTIME,
    KSCATEGORY_RENDER, KSCATEGORY_TOPOLOGY, KSDATAFORMAT_SPECIFIER_NONE,
    KSDATAFORMAT_SPECIFIER_WAVEFORMATEX, KSDATAFORMAT_SUBTYPE_ANALOG, KSDATAFORMAT_TYPE_AUDIO,
    KSDATARANGE, KSDATARANGE_ATTRIBUTES, KSDATARANGE_AUDIO, KSNODETYPE_ADC, KSNODETYPE_DAC,
    KSNODETYPE_MICROPHONE, KSNODETYPE_MUTE, KSNODETYPE_PEAKMETER, KSNODETYPE_SPEAKER,
    KSNODETYPE_VOLUME, KSPIN_COMMUNICATION, KSPIN_COMMUNICATION_NONE, KSPIN_COMMUNICATION_SINK,
    KSPIN_DATAFLOW, KSPIN_DATAFLOW_IN, KSPIN_DATAFLOW_OUT, KSPIN_DESCRIPTOR, KSPROPERTY_AUDIO_MUTE,
    KSPROPERTY_AUDIO_PEAKMETER2, KSPROPERTY_AUDIO_VOLUMELEVEL, KSPROPERTY_JACK_DESCRIPTION,
    KSPROPERTY_JACK_DESCRIPTION2, PCAUTOMATION_TABLE, PCCONNECTION_DESCRIPTOR, PCEVENT_ITEM,
    PCFILTER_DESCRIPTOR, PCFILTER_NODE, PCMETHOD_ITEM, PCNODE_DESCRIPTOR, PCPFNPROPERTY_HANDLER,
    PCPIN_DESCRIPTOR, PCPROPERTY_ITEM, PCPROPERTY_ITEM_FLAG_BASICSUPPORT, PCPROPERTY_ITEM_FLAG_GET,
    PCPROPERTY_ITEM_FLAG_SET, PKSATTRIBUTE, PKSDATARANGE, ULONG,
};
use wavert_com::{NtResult, NtStatus};
use wavert_core::range::DeviceRange;

use crate::direction::Direction;
use crate::topology::{jack_handler, mute_handler, peak_meter_handler, volume_handler};

/// Host pin (the stream pin the audio engine instantiates) of both wave filters.
pub const WAVE_HOST_PIN: u32 = 0;
/// Bridge pin of both wave filters (physically connected to topology).
pub const WAVE_BRIDGE_PIN: u32 = 1;
/// Topology render: bridge pin coming from the wave filter.
pub const TOPO_RENDER_FROM_WAVE_PIN: u32 = 0;
/// Topology render: the speaker bridge pin (the endpoint's jack).
pub const TOPO_RENDER_SPEAKER_PIN: u32 = 1;
/// Topology capture: the microphone bridge pin (the endpoint's jack).
pub const TOPO_CAPTURE_MIC_PIN: u32 = 0;
/// Topology capture: bridge pin going to the wave filter.
pub const TOPO_CAPTURE_TO_WAVE_PIN: u32 = 1;
/// Volume node of both topology filters.
pub const TOPO_VOLUME_NODE: u32 = 0;
/// Mute node of both topology filters.
pub const TOPO_MUTE_NODE: u32 = 1;
/// Peak-meter node of the metered topology filters (after the mute, the
/// last node the stream passes, as Learn's `KSNODETYPE_PEAKMETER` page
/// recommends and SYSVAD's topologies do).
pub const TOPO_PEAK_METER_NODE: u32 = 2;

/// A node's input pin (`KSNODEPIN_STANDARD_IN`) and output pin
/// (`KSNODEPIN_STANDARD_OUT`) in the connection tables.
pub(crate) use portcls_sys::{
    KSNODEPIN_STANDARD_IN as NODE_IN, KSNODEPIN_STANDARD_OUT as NODE_OUT,
};

#[allow(
    clippy::cast_possible_truncation,
    reason = "descriptor sizes are a few dozen bytes"
)]
const fn size32<T>() -> ULONG {
    size_of::<T>() as ULONG
}

/// A host pin's `KSDATARANGE_AUDIO` for `range`, flagged
/// `KSDATARANGE_ATTRIBUTES`: in its table ([`host_range_table`]) the mode
/// attribute list follows it.
pub(crate) const fn audio_range(sub_format: GUID, range: &DeviceRange) -> KSDATARANGE_AUDIO {
    KSDATARANGE_AUDIO {
        DataRange: KSDATARANGE {
            Alignment: [],
            FormatSize: size32::<KSDATARANGE_AUDIO>(),
            Flags: KSDATARANGE_ATTRIBUTES,
            SampleSize: 0,
            Reserved: 0,
            MajorFormat: KSDATAFORMAT_TYPE_AUDIO,
            SubFormat: sub_format,
            Specifier: KSDATAFORMAT_SPECIFIER_WAVEFORMATEX,
        },
        MaximumChannels: range.max_channels as ULONG,
        MinimumBitsPerSample: range.min_bits as ULONG,
        MaximumBitsPerSample: range.max_bits as ULONG,
        MinimumSampleFrequency: range.min_rate,
        MaximumSampleFrequency: range.max_rate,
    }
}

/// Bridge pins carry analog audio: no format, just the major type.
static BRIDGE_KSRANGE: KSDATARANGE = KSDATARANGE {
    Alignment: [],
    FormatSize: size32::<KSDATARANGE>(),
    Flags: 0,
    SampleSize: 0,
    Reserved: 0,
    MajorFormat: KSDATAFORMAT_TYPE_AUDIO,
    SubFormat: KSDATAFORMAT_SUBTYPE_ANALOG,
    Specifier: KSDATAFORMAT_SPECIFIER_NONE,
};

/// A static table of data-range pointers (`KSPIN_DESCRIPTOR::DataRanges`).
#[repr(transparent)]
pub struct DataRangeTable<const N: usize>(pub [PKSDATARANGE; N]);

// SAFETY: the pointers lead to immutable statics that PortCls only reads.
unsafe impl<const N: usize> Sync for DataRangeTable<N> {}

pub(crate) static BRIDGE_KSRANGES: DataRangeTable<1> =
    DataRangeTable([ptr::addr_of!(BRIDGE_KSRANGE).cast_mut()]);

// ---- The signal-processing mode in the host pins' ranges -------------------
//
// A mode-aware host pin says that its ranges accept a mode attribute in the
// format a stream is opened with: each range is flagged
// `KSDATARANGE_ATTRIBUTES`, and the next entry of the pin's data-range table
// is not a range but a `KSATTRIBUTE_LIST` (Learn, "KSDATARANGE": the
// following entry "is to be interpreted as an attribute list that uses the
// KSATTRIBUTE_LIST structure"; "KSATTRIBUTE_LIST": mode-aware drivers' list
// holds one `KSATTRIBUTE` whose `Attribute` is
// `KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE`). SYSVAD's host pins are laid
// out so (`speakerwavtable.h`: `SpeakerPinDataRangePointersStream` is the
// range, then `PinDataRangeAttributeList`, counted in `DataRangesCount`).
// Bridge pins carry analog audio and no attributes.

/// The attribute a host range accepts: the signal-processing mode. Its
/// `Size` is the bare header's: a range names the attribute, the mode
/// itself travels in the format (`KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE`).
static MODE_ATTRIBUTE: KSATTRIBUTE = KSATTRIBUTE {
    Size: size32::<KSATTRIBUTE>(),
    Flags: 0,
    Attribute: KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE,
};

/// `KSATTRIBUTE_LIST::Attributes`: pointers to the attributes.
#[repr(transparent)]
struct AttributeTable<const N: usize>([PKSATTRIBUTE; N]);

// SAFETY: the pointers lead to immutable statics that PortCls only reads.
unsafe impl<const N: usize> Sync for AttributeTable<N> {}

static MODE_ATTRIBUTES: AttributeTable<1> =
    AttributeTable([ptr::addr_of!(MODE_ATTRIBUTE).cast_mut()]);

/// The attribute list after each host range: the mode attribute.
pub static MODE_ATTRIBUTE_LIST: KSATTRIBUTE_LIST = KSATTRIBUTE_LIST {
    Count: 1,
    Attributes: ptr::addr_of!(MODE_ATTRIBUTES).cast::<PKSATTRIBUTE>(),
};

/// A host pin's data-range table: each of `ranges` (from [`audio_range`],
/// flagged), then [`MODE_ATTRIBUTE_LIST`]. `M` is `2 * N` (the table
/// counts the lists, as `DataRangesCount` must).
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time (the tables are statics): a wrong size or an unflagged range fails the build"
)]
pub(crate) const fn host_range_table<const N: usize, const M: usize>(
    ranges: [&'static KSDATARANGE_AUDIO; N],
) -> DataRangeTable<M> {
    assert!(
        M == 2 * N,
        "a host range table holds each range and its list"
    );
    let mut table: [PKSDATARANGE; M] = [ptr::null_mut(); M];
    let mut i = 0;
    while i < N {
        let range = ranges[i];
        assert!(
            range.DataRange.Flags & KSDATARANGE_ATTRIBUTES != 0,
            "a host range must be flagged KSDATARANGE_ATTRIBUTES"
        );
        table[2 * i] = ptr::from_ref(range).cast_mut().cast::<KSDATARANGE>();
        table[2 * i + 1] = ptr::addr_of!(MODE_ATTRIBUTE_LIST)
            .cast_mut()
            .cast::<KSDATARANGE>();
        i += 1;
    }
    DataRangeTable(table)
}

/// A wave filter whose host pin's ranges are known only at run time: a
/// codec's formats, read from its converter at `StartDevice`.
///
/// The static shape ([`wave_filter`]: pins, nodes, connections,
/// categories) is copied, and the host pin is pointed at a data-range
/// table built here: each range, then the mode attribute list, as
/// [`host_range_table`] lays out the static ones. The descriptor and what
/// it points to are owned together and never change after [`Self::new`]:
/// the vectors are allocated once at their final size, so the addresses
/// PortCls reads stay valid for as long as this value lives (the device
/// that owns it outlives its miniports, which hand the descriptor out).
pub struct RuntimeWaveFilter {
    device_ranges: Vec<DeviceRange>,
    /// What the descriptor points to, read only through it.
    #[expect(dead_code, reason = "owned for the pointers in `descriptor`")]
    storage: (
        Vec<KSDATARANGE_AUDIO>,
        Vec<PKSDATARANGE>,
        Vec<PCPIN_DESCRIPTOR>,
    ),
    descriptor: PCFILTER_DESCRIPTOR,
}

#[allow(
    clippy::non_send_fields_in_send_ty,
    reason = "the pointer tables are read-only after construction (see the SAFETY comment)"
)]
// SAFETY: the raw pointers inside lead to this value's own heap blocks
// (never reallocated or written after `new`) or to immutable statics; the
// port and the miniport only read them.
unsafe impl Send for RuntimeWaveFilter {}
// SAFETY: as for `Send`: nothing is written after construction.
unsafe impl Sync for RuntimeWaveFilter {}

impl core::fmt::Debug for RuntimeWaveFilter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RuntimeWaveFilter")
            .field("device_ranges", &self.device_ranges)
            .finish_non_exhaustive()
    }
}

impl RuntimeWaveFilter {
    /// `shape` (a wave filter from [`wave_filter`], host pin first) with
    /// its host pin offering `device_ranges` as `sub_format` ranges.
    /// IRQL: `PASSIVE_LEVEL` (it allocates).
    ///
    /// # Errors
    ///
    /// `STATUS_NOT_SUPPORTED` without a range or with a shape that has no
    /// host pin; `STATUS_INSUFFICIENT_RESOURCES` when the tables cannot be
    /// allocated.
    pub fn new(
        shape: &PCFILTER_DESCRIPTOR,
        sub_format: GUID,
        device_ranges: Vec<DeviceRange>,
    ) -> NtResult<Self> {
        let count = device_ranges.len();
        let pin_count = shape.PinCount as usize;
        if count == 0 || shape.Pins.is_null() || pin_count <= WAVE_HOST_PIN as usize {
            return Err(NtStatus::NOT_SUPPORTED);
        }
        let table_len = ULONG::try_from(2 * count).map_err(|_| NtStatus::NOT_SUPPORTED)?;
        let no_memory = |_| NtStatus::INSUFFICIENT_RESOURCES;
        let mut ranges = Vec::new();
        ranges.try_reserve_exact(count).map_err(no_memory)?;
        ranges.extend(device_ranges.iter().map(|r| audio_range(sub_format, r)));
        let mut table = Vec::new();
        table.try_reserve_exact(2 * count).map_err(no_memory)?;
        for range in &ranges {
            table.push(ptr::from_ref(range).cast_mut().cast::<KSDATARANGE>());
            table.push(
                ptr::addr_of!(MODE_ATTRIBUTE_LIST)
                    .cast_mut()
                    .cast::<KSDATARANGE>(),
            );
        }
        let mut pins = Vec::new();
        pins.try_reserve_exact(pin_count).map_err(no_memory)?;
        // SAFETY: a filter descriptor's `Pins` points at `PinCount`
        // descriptors (the static shape's own table).
        pins.extend_from_slice(unsafe { core::slice::from_raw_parts(shape.Pins, pin_count) });
        let host = pins
            .get_mut(WAVE_HOST_PIN as usize)
            .ok_or(NtStatus::NOT_SUPPORTED)?;
        host.KsPinDescriptor.DataRangesCount = table_len;
        host.KsPinDescriptor.DataRanges = table.as_ptr();
        let descriptor = PCFILTER_DESCRIPTOR {
            Pins: pins.as_ptr(),
            ..*shape
        };
        Ok(Self {
            device_ranges,
            storage: (ranges, table, pins),
            descriptor,
        })
    }

    /// The descriptor (valid while `self` lives).
    #[must_use]
    pub const fn descriptor(&self) -> &PCFILTER_DESCRIPTOR {
        &self.descriptor
    }

    /// The host pin's device ranges, in the order of its table.
    #[must_use]
    pub fn device_ranges(&self) -> &[DeviceRange] {
        &self.device_ranges
    }
}

/// A pin descriptor. No pin here has an automation table: the host pins'
/// properties are the port's (`KSPROPSETID_RtAudio` and the stream's), and
/// bridge pins have no instances to send a pin property to.
pub(crate) const fn pin(
    instances: ULONG,
    ranges_count: ULONG,
    ranges: *const PKSDATARANGE,
    flow: KSPIN_DATAFLOW,
    communication: KSPIN_COMMUNICATION,
    category: *const GUID,
    name: *const GUID,
) -> PCPIN_DESCRIPTOR {
    PCPIN_DESCRIPTOR {
        MaxGlobalInstanceCount: instances,
        MaxFilterInstanceCount: instances,
        MinFilterInstanceCount: 0,
        AutomationTable: ptr::null(),
        KsPinDescriptor: KSPIN_DESCRIPTOR {
            InterfacesCount: 0,
            Interfaces: ptr::null(),
            MediumsCount: 0,
            Mediums: ptr::null(),
            DataRangesCount: ranges_count,
            DataRanges: ranges,
            DataFlow: flow,
            Communication: communication,
            Category: category,
            Name: name,
            ConstrainedDataRangesCount: 0,
            ConstrainedDataRanges: ptr::null_mut(),
        },
    }
}

/// A bridge pin. It has no automation table: a bridge pin has no
/// instances, and PortCls only consults a pin's table for requests on an
/// open pin, so properties of a bridge pin (its jack) live in the filter's
/// table, addressed with a `KSP_PIN` (simpleaudiosample
/// `speakertoptable.h`).
pub(crate) const fn bridge_pin(flow: KSPIN_DATAFLOW, category: *const GUID) -> PCPIN_DESCRIPTOR {
    pin(
        0,
        1,
        ptr::addr_of!(BRIDGE_KSRANGES).cast::<PKSDATARANGE>(),
        flow,
        KSPIN_COMMUNICATION_NONE,
        category,
        ptr::null(),
    )
}

pub(crate) const fn automation(properties: &'static [PCPROPERTY_ITEM]) -> PCAUTOMATION_TABLE {
    PCAUTOMATION_TABLE {
        PropertyItemSize: size32::<PCPROPERTY_ITEM>(),
        #[allow(clippy::cast_possible_truncation, reason = "a handful of items")]
        PropertyCount: properties.len() as ULONG,
        Properties: properties.as_ptr(),
        MethodItemSize: size32::<PCMETHOD_ITEM>(),
        MethodCount: 0,
        Methods: ptr::null(),
        EventItemSize: size32::<PCEVENT_ITEM>(),
        EventCount: 0,
        Events: ptr::null(),
        Reserved: 0,
    }
}

pub(crate) const fn property(
    set: &'static GUID,
    id: ULONG,
    flags: ULONG,
    handler: PCPFNPROPERTY_HANDLER,
) -> PCPROPERTY_ITEM {
    PCPROPERTY_ITEM {
        Set: set,
        Id: id,
        Flags: flags,
        Handler: handler,
    }
}

const GET_SET_BASIC: ULONG =
    PCPROPERTY_ITEM_FLAG_GET | PCPROPERTY_ITEM_FLAG_SET | PCPROPERTY_ITEM_FLAG_BASICSUPPORT;
const GET_BASIC: ULONG = PCPROPERTY_ITEM_FLAG_GET | PCPROPERTY_ITEM_FLAG_BASICSUPPORT;

static VOLUME_PROPERTIES: [PCPROPERTY_ITEM; 1] = [property(
    &KSPROPSETID_Audio,
    KSPROPERTY_AUDIO_VOLUMELEVEL,
    GET_SET_BASIC,
    Some(volume_handler),
)];
static MUTE_PROPERTIES: [PCPROPERTY_ITEM; 1] = [property(
    &KSPROPSETID_Audio,
    KSPROPERTY_AUDIO_MUTE,
    GET_SET_BASIC,
    Some(mute_handler),
)];
/// The topology filters' own properties: the jack descriptions of their
/// endpoint bridge pin.
static JACK_PROPERTIES: [PCPROPERTY_ITEM; 2] = [
    property(
        &KSPROPSETID_Jack,
        KSPROPERTY_JACK_DESCRIPTION,
        GET_BASIC,
        Some(jack_handler),
    ),
    property(
        &KSPROPSETID_Jack,
        KSPROPERTY_JACK_DESCRIPTION2,
        GET_BASIC,
        Some(jack_handler),
    ),
];

static VOLUME_AUTOMATION: PCAUTOMATION_TABLE = automation(&VOLUME_PROPERTIES);
static MUTE_AUTOMATION: PCAUTOMATION_TABLE = automation(&MUTE_PROPERTIES);
static JACK_AUTOMATION: PCAUTOMATION_TABLE = automation(&JACK_PROPERTIES);
/// The peak meter is read only (`KSPROPERTY_AUDIO_PEAKMETER2`: GET and
/// basic support).
static PEAK_METER_PROPERTIES: [PCPROPERTY_ITEM; 1] = [property(
    &KSPROPSETID_Audio,
    KSPROPERTY_AUDIO_PEAKMETER2,
    GET_BASIC,
    Some(peak_meter_handler),
)];
static PEAK_METER_AUTOMATION: PCAUTOMATION_TABLE = automation(&PEAK_METER_PROPERTIES);

pub(crate) const fn node(
    kind: &'static GUID,
    name: *const GUID,
    automation: *const PCAUTOMATION_TABLE,
) -> PCNODE_DESCRIPTOR {
    PCNODE_DESCRIPTOR {
        Flags: 0,
        AutomationTable: automation,
        Type: kind,
        Name: name,
    }
}

pub(crate) const fn edge(
    from_node: ULONG,
    from_pin: ULONG,
    to_node: ULONG,
    to_pin: ULONG,
) -> PCCONNECTION_DESCRIPTOR {
    PCCONNECTION_DESCRIPTOR {
        FromNode: from_node,
        FromNodePin: from_pin,
        ToNode: to_node,
        ToNodePin: to_pin,
    }
}

#[allow(
    clippy::cast_possible_truncation,
    reason = "tables of a handful of entries"
)]
pub(crate) const fn filter(
    automation: *const PCAUTOMATION_TABLE,
    pins: &'static [PCPIN_DESCRIPTOR],
    nodes: &'static [PCNODE_DESCRIPTOR],
    connections: &'static [PCCONNECTION_DESCRIPTOR],
    categories: &'static [GUID],
) -> PCFILTER_DESCRIPTOR {
    PCFILTER_DESCRIPTOR {
        Version: 0,
        AutomationTable: automation,
        PinSize: size32::<PCPIN_DESCRIPTOR>(),
        PinCount: pins.len() as ULONG,
        Pins: pins.as_ptr(),
        NodeSize: size32::<PCNODE_DESCRIPTOR>(),
        NodeCount: nodes.len() as ULONG,
        Nodes: nodes.as_ptr(),
        ConnectionCount: connections.len() as ULONG,
        Connections: connections.as_ptr(),
        CategoryCount: categories.len() as ULONG,
        Categories: categories.as_ptr(),
    }
}

// ---- Wave filters (every back-end) -----------------------------------------

/// A wave filter's host pin: one stream instance (the engines are not
/// shared), the back-end's data ranges (a [`host_range_table`]: each range
/// and its attribute list, all counted).
pub(crate) const fn host_pin<const N: usize>(
    flow: KSPIN_DATAFLOW,
    ranges: &'static DataRangeTable<N>,
    name: *const GUID,
) -> PCPIN_DESCRIPTOR {
    #[allow(clippy::cast_possible_truncation, reason = "a handful of ranges")]
    let count = N as ULONG;
    pin(
        1,
        count,
        ptr::addr_of!(ranges.0).cast::<PKSDATARANGE>(),
        flow,
        KSPIN_COMMUNICATION_SINK,
        &KSCATEGORY_AUDIO,
        name,
    )
}

/// The pins of `direction`'s wave filter: the host pin (the stream) and the
/// bridge pin (physically connected to topology).
pub(crate) const fn wave_pins<const N: usize>(
    direction: Direction,
    ranges: &'static DataRangeTable<N>,
) -> [PCPIN_DESCRIPTOR; 2] {
    match direction {
        Direction::Render => [
            host_pin(KSPIN_DATAFLOW_IN, ranges, ptr::null()),
            bridge_pin(KSPIN_DATAFLOW_OUT, &KSCATEGORY_AUDIO),
        ],
        // The capture host pin carries the recording control's name, as
        // the samples' capture host pins do (SYSVAD `micinwavtable.h`).
        Direction::Capture => [
            host_pin(KSPIN_DATAFLOW_OUT, ranges, &KSAUDFNAME_RECORDING_CONTROL),
            bridge_pin(KSPIN_DATAFLOW_IN, &KSCATEGORY_AUDIO),
        ],
    }
}

/// Interface categories of a wave render filter.
pub static WAVE_RENDER_CATEGORIES: [GUID; 3] =
    [KSCATEGORY_AUDIO, KSCATEGORY_RENDER, KSCATEGORY_REALTIME];
static WAVE_RENDER_NODES: [PCNODE_DESCRIPTOR; 1] =
    [node(&KSNODETYPE_DAC, ptr::null(), ptr::null())];
static WAVE_RENDER_CONNECTIONS: [PCCONNECTION_DESCRIPTOR; 2] = [
    edge(PCFILTER_NODE, WAVE_HOST_PIN, 0, NODE_IN),
    edge(0, NODE_OUT, PCFILTER_NODE, WAVE_BRIDGE_PIN),
];

/// Interface categories of a wave capture filter.
pub static WAVE_CAPTURE_CATEGORIES: [GUID; 3] =
    [KSCATEGORY_AUDIO, KSCATEGORY_CAPTURE, KSCATEGORY_REALTIME];
static WAVE_CAPTURE_NODES: [PCNODE_DESCRIPTOR; 1] =
    [node(&KSNODETYPE_ADC, ptr::null(), ptr::null())];
static WAVE_CAPTURE_CONNECTIONS: [PCCONNECTION_DESCRIPTOR; 2] = [
    edge(PCFILTER_NODE, WAVE_BRIDGE_PIN, 0, NODE_IN),
    edge(0, NODE_OUT, PCFILTER_NODE, WAVE_HOST_PIN),
];

/// `direction`'s wave filter over `pins` (from [`wave_pins`]): host pin ->
/// DAC (render) or ADC (capture) -> bridge pin, with the direction's
/// categories. Every back-end's wave filters have this shape, so the
/// topology filters and the physical connections serve them all.
pub(crate) const fn wave_filter(
    direction: Direction,
    pins: &'static [PCPIN_DESCRIPTOR; 2],
) -> PCFILTER_DESCRIPTOR {
    match direction {
        Direction::Render => filter(
            ptr::null(),
            pins,
            &WAVE_RENDER_NODES,
            &WAVE_RENDER_CONNECTIONS,
            &WAVE_RENDER_CATEGORIES,
        ),
        Direction::Capture => filter(
            ptr::null(),
            pins,
            &WAVE_CAPTURE_NODES,
            &WAVE_CAPTURE_CONNECTIONS,
            &WAVE_CAPTURE_CATEGORIES,
        ),
    }
}

// ---- Topology --------------------------------------------------------------

/// Interface categories of both topology filters.
pub static TOPOLOGY_CATEGORIES: [GUID; 2] = [KSCATEGORY_AUDIO, KSCATEGORY_TOPOLOGY];
/// The speaker's nodes, named as the samples name them (master volume and
/// mute: simpleaudiosample `speakertoptable.h`).
static TOPO_RENDER_NODES: [PCNODE_DESCRIPTOR; 2] = [
    node(
        &KSNODETYPE_VOLUME,
        &KSAUDFNAME_MASTER_VOLUME,
        &raw const VOLUME_AUTOMATION,
    ),
    node(
        &KSNODETYPE_MUTE,
        &KSAUDFNAME_MASTER_MUTE,
        &raw const MUTE_AUTOMATION,
    ),
];
/// The microphone's nodes (microphone volume and mute: SYSVAD
/// `micintoptable.h`).
static TOPO_CAPTURE_NODES: [PCNODE_DESCRIPTOR; 2] = [
    node(
        &KSNODETYPE_VOLUME,
        &KSAUDFNAME_MIC_VOLUME,
        &raw const VOLUME_AUTOMATION,
    ),
    node(
        &KSNODETYPE_MUTE,
        &KSAUDFNAME_MIC_MUTE,
        &raw const MUTE_AUTOMATION,
    ),
];

static TOPO_RENDER_PINS: [PCPIN_DESCRIPTOR; 2] = [
    bridge_pin(KSPIN_DATAFLOW_IN, &KSCATEGORY_AUDIO),
    bridge_pin(KSPIN_DATAFLOW_OUT, &KSNODETYPE_SPEAKER),
];
static TOPO_RENDER_CONNECTIONS: [PCCONNECTION_DESCRIPTOR; 3] = [
    edge(
        PCFILTER_NODE,
        TOPO_RENDER_FROM_WAVE_PIN,
        TOPO_VOLUME_NODE,
        NODE_IN,
    ),
    edge(TOPO_VOLUME_NODE, NODE_OUT, TOPO_MUTE_NODE, NODE_IN),
    edge(
        TOPO_MUTE_NODE,
        NODE_OUT,
        PCFILTER_NODE,
        TOPO_RENDER_SPEAKER_PIN,
    ),
];
/// The speaker topology filter.
pub static TOPOLOGY_RENDER_FILTER: PCFILTER_DESCRIPTOR = filter(
    &raw const JACK_AUTOMATION,
    &TOPO_RENDER_PINS,
    &TOPO_RENDER_NODES,
    &TOPO_RENDER_CONNECTIONS,
    &TOPOLOGY_CATEGORIES,
);

static TOPO_CAPTURE_PINS: [PCPIN_DESCRIPTOR; 2] = [
    bridge_pin(KSPIN_DATAFLOW_IN, &KSNODETYPE_MICROPHONE),
    bridge_pin(KSPIN_DATAFLOW_OUT, &KSCATEGORY_AUDIO),
];
static TOPO_CAPTURE_CONNECTIONS: [PCCONNECTION_DESCRIPTOR; 3] = [
    edge(
        PCFILTER_NODE,
        TOPO_CAPTURE_MIC_PIN,
        TOPO_VOLUME_NODE,
        NODE_IN,
    ),
    edge(TOPO_VOLUME_NODE, NODE_OUT, TOPO_MUTE_NODE, NODE_IN),
    edge(
        TOPO_MUTE_NODE,
        NODE_OUT,
        PCFILTER_NODE,
        TOPO_CAPTURE_TO_WAVE_PIN,
    ),
];
/// The microphone topology filter.
pub static TOPOLOGY_CAPTURE_FILTER: PCFILTER_DESCRIPTOR = filter(
    &raw const JACK_AUTOMATION,
    &TOPO_CAPTURE_PINS,
    &TOPO_CAPTURE_NODES,
    &TOPO_CAPTURE_CONNECTIONS,
    &TOPOLOGY_CATEGORIES,
);

// ---- Metered topology --------------------------------------------------------
//
// The same two filters with a peak meter after the mute, for a back-end
// that sees every sample it carries (the cable): a hardware codec has no
// meter the driver could read.

/// The speaker's nodes with a peak meter.
static METERED_RENDER_NODES: [PCNODE_DESCRIPTOR; 3] = [
    TOPO_RENDER_NODES[0],
    TOPO_RENDER_NODES[1],
    node(
        &KSNODETYPE_PEAKMETER,
        &KSAUDFNAME_PEAKMETER,
        &raw const PEAK_METER_AUTOMATION,
    ),
];
/// The microphone's nodes with a peak meter.
static METERED_CAPTURE_NODES: [PCNODE_DESCRIPTOR; 3] = [
    TOPO_CAPTURE_NODES[0],
    TOPO_CAPTURE_NODES[1],
    node(
        &KSNODETYPE_PEAKMETER,
        &KSAUDFNAME_PEAKMETER,
        &raw const PEAK_METER_AUTOMATION,
    ),
];
static METERED_RENDER_CONNECTIONS: [PCCONNECTION_DESCRIPTOR; 4] = [
    TOPO_RENDER_CONNECTIONS[0],
    TOPO_RENDER_CONNECTIONS[1],
    edge(TOPO_MUTE_NODE, NODE_OUT, TOPO_PEAK_METER_NODE, NODE_IN),
    edge(
        TOPO_PEAK_METER_NODE,
        NODE_OUT,
        PCFILTER_NODE,
        TOPO_RENDER_SPEAKER_PIN,
    ),
];
static METERED_CAPTURE_CONNECTIONS: [PCCONNECTION_DESCRIPTOR; 4] = [
    TOPO_CAPTURE_CONNECTIONS[0],
    TOPO_CAPTURE_CONNECTIONS[1],
    edge(TOPO_MUTE_NODE, NODE_OUT, TOPO_PEAK_METER_NODE, NODE_IN),
    edge(
        TOPO_PEAK_METER_NODE,
        NODE_OUT,
        PCFILTER_NODE,
        TOPO_CAPTURE_TO_WAVE_PIN,
    ),
];
/// The speaker topology filter with a peak meter.
pub static METERED_TOPOLOGY_RENDER_FILTER: PCFILTER_DESCRIPTOR = filter(
    &raw const JACK_AUTOMATION,
    &TOPO_RENDER_PINS,
    &METERED_RENDER_NODES,
    &METERED_RENDER_CONNECTIONS,
    &TOPOLOGY_CATEGORIES,
);
/// The microphone topology filter with a peak meter.
pub static METERED_TOPOLOGY_CAPTURE_FILTER: PCFILTER_DESCRIPTOR = filter(
    &raw const JACK_AUTOMATION,
    &TOPO_CAPTURE_PINS,
    &METERED_CAPTURE_NODES,
    &METERED_CAPTURE_CONNECTIONS,
    &TOPOLOGY_CATEGORIES,
);
