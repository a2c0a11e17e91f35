//! Kernel-streaming types and constants from `ks.h`.

use crate::types::{GUID, LONG, LONGLONG, ULONG};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `KSIDENTIFIER`: a property, method or event set and item. 8-byte aligned
/// (the C union carries a `LONGLONG Alignment` member).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSIDENTIFIER {
    pub Set: GUID,
    pub Id: ULONG,
    pub Flags: ULONG,
}
pub type KSPROPERTY = KSIDENTIFIER;
pub type KSMETHOD = KSIDENTIFIER;
pub type KSEVENT = KSIDENTIFIER;
pub type KSPIN_INTERFACE = KSIDENTIFIER;
pub type KSPIN_MEDIUM = KSIDENTIFIER;
pub type PKSPROPERTY = *mut KSPROPERTY;

/// `KSP_NODE`: a property addressed to a topology node.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSP_NODE {
    pub Property: KSPROPERTY,
    pub NodeId: ULONG,
    pub Reserved: ULONG,
}

/// `KSP_PIN`: a property addressed to a pin factory.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSP_PIN {
    pub Property: KSPROPERTY,
    pub PinId: ULONG,
    pub Reserved: ULONG,
}

/// `KSDATAFORMAT` (also `KSDATARANGE`): the header of every data format and
/// data range.
///
/// The C type is a union of these fields with `LONGLONG Alignment`; the
/// zero-length `Alignment` member gives the same 8-byte alignment (at the
/// same offset, 0) while still letting the packed
/// `KSDATAFORMAT_WAVEFORMATEX` contain this type, which `#[repr(align)]`
/// would forbid. Initialise it with `Alignment: []`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KSDATAFORMAT {
    pub Alignment: [LONGLONG; 0],
    pub FormatSize: ULONG,
    pub Flags: ULONG,
    pub SampleSize: ULONG,
    pub Reserved: ULONG,
    pub MajorFormat: GUID,
    pub SubFormat: GUID,
    pub Specifier: GUID,
}
pub type KSDATARANGE = KSDATAFORMAT;
pub type PKSDATAFORMAT = *mut KSDATAFORMAT;
pub type PKSDATARANGE = *mut KSDATARANGE;

pub const KSDATAFORMAT_ATTRIBUTES: ULONG = 1 << 1;
pub const KSDATARANGE_ATTRIBUTES: ULONG = 1 << 1;
pub const KSDATARANGE_REQUIRED_ATTRIBUTES: ULONG = 1 << 2;

/// `KSATTRIBUTE`: the header of one attribute of a data format or range.
///
/// A data format whose `Flags` has [`KSDATAFORMAT_ATTRIBUTES`] is followed,
/// at the next 8-byte boundary after its `FormatSize` bytes, by a
/// [`KSMULTIPLE_ITEM`] (`Size` counting itself) and `Count` attributes, each
/// starting with this header (`Size` counting the whole attribute) and each
/// starting at an 8-byte boundary.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSATTRIBUTE {
    pub Size: ULONG,
    pub Flags: ULONG,
    pub Attribute: GUID,
}
pub type PKSATTRIBUTE = *mut KSATTRIBUTE;

/// `KSATTRIBUTE_REQUIRED`: the attribute must be present (`KSATTRIBUTE.Flags`).
pub const KSATTRIBUTE_REQUIRED: ULONG = 0x0000_0001;

/// `KSATTRIBUTE_LIST`: the attributes a data range accepts; in a pin's data
/// range table it follows a range flagged [`KSDATARANGE_ATTRIBUTES`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KSATTRIBUTE_LIST {
    pub Count: ULONG,
    pub Attributes: *const PKSATTRIBUTE,
}

/// `KSSTATE` of a pin: STOP, ACQUIRE, PAUSE, RUN.
pub type KSSTATE = i32;
pub const KSSTATE_STOP: KSSTATE = 0;
pub const KSSTATE_ACQUIRE: KSSTATE = 1;
pub const KSSTATE_PAUSE: KSSTATE = 2;
pub const KSSTATE_RUN: KSSTATE = 3;

/// `KSSTREAM_HEADER` option: the last data of the stream (also the one flag
/// `IMiniportWaveRTOutputStream::SetWritePacket` takes).
pub const KSSTREAM_HEADER_OPTIONSF_ENDOFSTREAM: ULONG = 0x0000_0200;

pub type KSPIN_DATAFLOW = i32;
pub const KSPIN_DATAFLOW_IN: KSPIN_DATAFLOW = 1;
pub const KSPIN_DATAFLOW_OUT: KSPIN_DATAFLOW = 2;

pub type KSPIN_COMMUNICATION = i32;
pub const KSPIN_COMMUNICATION_NONE: KSPIN_COMMUNICATION = 0;
pub const KSPIN_COMMUNICATION_SINK: KSPIN_COMMUNICATION = 1;
pub const KSPIN_COMMUNICATION_SOURCE: KSPIN_COMMUNICATION = 2;
pub const KSPIN_COMMUNICATION_BOTH: KSPIN_COMMUNICATION = 3;
pub const KSPIN_COMMUNICATION_BRIDGE: KSPIN_COMMUNICATION = 4;

pub const KSINTERFACE_STANDARD_STREAMING: ULONG = 0;
pub const KSMEDIUM_TYPE_ANYINSTANCE: ULONG = 0;
pub const KSINSTANCE_INDETERMINATE: ULONG = ULONG::MAX;

/// `KSPIN_DESCRIPTOR`. The trailing C union (`LONGLONG Reserved` or the
/// constrained data ranges) is written out as its larger member.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KSPIN_DESCRIPTOR {
    pub InterfacesCount: ULONG,
    pub Interfaces: *const KSPIN_INTERFACE,
    pub MediumsCount: ULONG,
    pub Mediums: *const KSPIN_MEDIUM,
    pub DataRangesCount: ULONG,
    pub DataRanges: *const PKSDATARANGE,
    pub DataFlow: KSPIN_DATAFLOW,
    pub Communication: KSPIN_COMMUNICATION,
    pub Category: *const GUID,
    pub Name: *const GUID,
    pub ConstrainedDataRangesCount: ULONG,
    pub ConstrainedDataRanges: *mut PKSDATARANGE,
}

/// `KSMULTIPLE_ITEM`: header of a counted list in a property value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSMULTIPLE_ITEM {
    pub Size: ULONG,
    pub Count: ULONG,
}

/// `KSPIN_CINSTANCES`: answer to `KSPROPERTY_PIN_CINSTANCES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KSPIN_CINSTANCES {
    pub PossibleCount: ULONG,
    pub CurrentCount: ULONG,
}

/// `KSPROPERTY_DESCRIPTION`: head of a basic-support answer.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSPROPERTY_DESCRIPTION {
    pub AccessFlags: ULONG,
    pub DescriptionSize: ULONG,
    pub PropTypeSet: KSIDENTIFIER,
    pub MembersListCount: ULONG,
    pub Reserved: ULONG,
}

/// `KSPROPERTY_MEMBERSHEADER`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSPROPERTY_MEMBERSHEADER {
    pub MembersFlags: ULONG,
    pub MembersSize: ULONG,
    pub MembersCount: ULONG,
    pub Flags: ULONG,
}

/// `KSPROPERTY_BOUNDS_LONG`. The C union also names the same two words
/// `UnsignedMinimum`/`UnsignedMaximum`; the signed view is kept.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSPROPERTY_BOUNDS_LONG {
    pub SignedMinimum: LONG,
    pub SignedMaximum: LONG,
}

/// `KSPROPERTY_STEPPING_LONG`: one range of a volume or similar control.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSPROPERTY_STEPPING_LONG {
    pub SteppingDelta: ULONG,
    pub Reserved: ULONG,
    pub Bounds: KSPROPERTY_BOUNDS_LONG,
}

/// `KSCOMPONENTID`: answer to `KSPROPERTY_GENERAL_COMPONENTID`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KSCOMPONENTID {
    pub Manufacturer: GUID,
    pub Product: GUID,
    pub Component: GUID,
    pub Name: GUID,
    pub Version: ULONG,
    pub Revision: ULONG,
}

pub const KSPROPERTY_TYPE_GET: ULONG = 0x0000_0001;
pub const KSPROPERTY_TYPE_SET: ULONG = 0x0000_0002;
pub const KSPROPERTY_TYPE_SETSUPPORT: ULONG = 0x0000_0100;
pub const KSPROPERTY_TYPE_BASICSUPPORT: ULONG = 0x0000_0200;
pub const KSPROPERTY_TYPE_RELATIONS: ULONG = 0x0000_0400;
pub const KSPROPERTY_TYPE_SERIALIZESET: ULONG = 0x0000_0800;
pub const KSPROPERTY_TYPE_UNSERIALIZESET: ULONG = 0x0000_1000;
pub const KSPROPERTY_TYPE_SERIALIZERAW: ULONG = 0x0000_2000;
pub const KSPROPERTY_TYPE_UNSERIALIZERAW: ULONG = 0x0000_4000;
pub const KSPROPERTY_TYPE_SERIALIZESIZE: ULONG = 0x0000_8000;
pub const KSPROPERTY_TYPE_DEFAULTVALUES: ULONG = 0x0001_0000;
pub const KSPROPERTY_TYPE_TOPOLOGY: ULONG = 0x1000_0000;

pub const KSPROPERTY_MEMBER_RANGES: ULONG = 0x0000_0001;
pub const KSPROPERTY_MEMBER_STEPPEDRANGES: ULONG = 0x0000_0002;
pub const KSPROPERTY_MEMBER_VALUES: ULONG = 0x0000_0003;
pub const KSPROPERTY_MEMBER_FLAG_DEFAULT: ULONG = 0x0000_0001;
pub const KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_MULTICHANNEL: ULONG = 0x0000_0002;
pub const KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_UNIFORM: ULONG = 0x0000_0004;

pub const KSEVENT_TYPE_ENABLE: ULONG = 0x0000_0001;
pub const KSEVENT_TYPE_ONESHOT: ULONG = 0x0000_0002;
pub const KSEVENT_TYPE_ENABLEBUFFERED: ULONG = 0x0000_0004;
pub const KSEVENT_TYPE_SETSUPPORT: ULONG = 0x0000_0100;
pub const KSEVENT_TYPE_BASICSUPPORT: ULONG = 0x0000_0200;
pub const KSEVENT_TYPE_QUERYBUFFER: ULONG = 0x0000_0400;
pub const KSEVENT_TYPE_TOPOLOGY: ULONG = 0x1000_0000;

pub const KSMETHOD_TYPE_NONE: ULONG = 0x0000_0000;
pub const KSMETHOD_TYPE_READ: ULONG = 0x0000_0001;
pub const KSMETHOD_TYPE_WRITE: ULONG = 0x0000_0002;
pub const KSMETHOD_TYPE_MODIFY: ULONG = 0x0000_0003;
pub const KSMETHOD_TYPE_SOURCE: ULONG = 0x0000_0004;
pub const KSMETHOD_TYPE_SEND: ULONG = 0x0000_0001;
pub const KSMETHOD_TYPE_SETSUPPORT: ULONG = 0x0000_0100;
pub const KSMETHOD_TYPE_BASICSUPPORT: ULONG = 0x0000_0200;

/// `KSPROPERTY_PIN` item ids of `KSPROPSETID_Pin`.
pub type KSPROPERTY_PIN = ULONG;
pub const KSPROPERTY_PIN_CINSTANCES: KSPROPERTY_PIN = 0;
pub const KSPROPERTY_PIN_CTYPES: KSPROPERTY_PIN = 1;
pub const KSPROPERTY_PIN_DATAFLOW: KSPROPERTY_PIN = 2;
pub const KSPROPERTY_PIN_DATARANGES: KSPROPERTY_PIN = 3;
pub const KSPROPERTY_PIN_DATAINTERSECTION: KSPROPERTY_PIN = 4;
pub const KSPROPERTY_PIN_INTERFACES: KSPROPERTY_PIN = 5;
pub const KSPROPERTY_PIN_MEDIUMS: KSPROPERTY_PIN = 6;
pub const KSPROPERTY_PIN_COMMUNICATION: KSPROPERTY_PIN = 7;
pub const KSPROPERTY_PIN_GLOBALCINSTANCES: KSPROPERTY_PIN = 8;
pub const KSPROPERTY_PIN_NECESSARYINSTANCES: KSPROPERTY_PIN = 9;
pub const KSPROPERTY_PIN_PHYSICALCONNECTION: KSPROPERTY_PIN = 10;
pub const KSPROPERTY_PIN_CATEGORY: KSPROPERTY_PIN = 11;
pub const KSPROPERTY_PIN_NAME: KSPROPERTY_PIN = 12;
pub const KSPROPERTY_PIN_CONSTRAINEDDATARANGES: KSPROPERTY_PIN = 13;
pub const KSPROPERTY_PIN_PROPOSEDATAFORMAT: KSPROPERTY_PIN = 14;
/// `KSPROPERTY_PIN_PROPOSEDATAFORMAT2` (Windows 8.1): a pin's default format
/// for a signal-processing mode.
///
/// MinGW-w64's enumeration stops at 14;
/// 15 is the next member of `ks.h`'s `KSPROPERTY_PIN` as Microsoft's Win32
/// metadata lists it, and the same in the Python `ctypes` port of `ks.h`.
pub const KSPROPERTY_PIN_PROPOSEDATAFORMAT2: KSPROPERTY_PIN = 15;

/// `KSPROPERTY_CONNECTION` item ids of `KSPROPSETID_Connection`.
pub type KSPROPERTY_CONNECTION = ULONG;
pub const KSPROPERTY_CONNECTION_STATE: KSPROPERTY_CONNECTION = 0;
pub const KSPROPERTY_CONNECTION_PRIORITY: KSPROPERTY_CONNECTION = 1;
pub const KSPROPERTY_CONNECTION_DATAFORMAT: KSPROPERTY_CONNECTION = 2;
pub const KSPROPERTY_CONNECTION_ALLOCATORFRAMING: KSPROPERTY_CONNECTION = 3;
pub const KSPROPERTY_CONNECTION_PROPOSEDATAFORMAT: KSPROPERTY_CONNECTION = 4;
pub const KSPROPERTY_CONNECTION_ACQUIREORDERING: KSPROPERTY_CONNECTION = 5;
pub const KSPROPERTY_CONNECTION_ALLOCATORFRAMING_EX: KSPROPERTY_CONNECTION = 6;
pub const KSPROPERTY_CONNECTION_STARTAT: KSPROPERTY_CONNECTION = 7;

/// `KSPROPERTY_GENERAL` item ids of `KSPROPSETID_General`.
pub type KSPROPERTY_GENERAL = ULONG;
pub const KSPROPERTY_GENERAL_COMPONENTID: KSPROPERTY_GENERAL = 0;

/// `KSPROPERTY_TOPOLOGY` item ids of `KSPROPSETID_Topology`.
pub type KSPROPERTY_TOPOLOGY = ULONG;
pub const KSPROPERTY_TOPOLOGY_CATEGORIES: KSPROPERTY_TOPOLOGY = 0;
pub const KSPROPERTY_TOPOLOGY_NODES: KSPROPERTY_TOPOLOGY = 1;
pub const KSPROPERTY_TOPOLOGY_CONNECTIONS: KSPROPERTY_TOPOLOGY = 2;
pub const KSPROPERTY_TOPOLOGY_NAME: KSPROPERTY_TOPOLOGY = 3;
