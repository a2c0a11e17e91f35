//! Prints the layout manifest of every checked item, one per line, for the
//! ABI conformance check (`cargo xtask`, module `abi_check`):
//!
//! ```text
//! struct <C name> <size> <align>
//! field <C name> <member> <offset>
//! guid <C name> <16 bytes in memory order, hex>
//! const <C name> <value>
//! doc <C name> <documentation page>
//! ```
//!
//! Vtables are `struct` items whose `field`s are the slots (by name).
#![allow(clippy::too_many_lines)] // One long table of items, on purpose.
#![allow(clippy::wildcard_imports)] // The manifest lists (nearly) every item of the crate.

use core::mem::{align_of, offset_of, size_of};
use std::fmt::Write as _;

use portcls_sys::*;

macro_rules! item {
    ($out:ident, $t:ident { $($($f:ident).+),* $(,)? }) => {{
        let _ = writeln!($out, "struct {} {} {}", stringify!($t), size_of::<$t>(), align_of::<$t>());
        $(
            // The C member designator: a vtable's `base__` steps are gone
            // (MinGW's C vtables list every slot flat), nested members stay
            // (`u.Port.Start`).
            let member = stringify!($($f).+)
                .split('.')
                .map(str::trim)
                .filter(|step| *step != "base__")
                .collect::<Vec<_>>()
                .join(".");
            let _ = writeln!($out, "field {} {} {}", stringify!($t), member, offset_of!($t, $($f).+));
        )*
    }};
}

macro_rules! guids {
    ($out:ident, $($g:ident),* $(,)?) => {$(
        let hex: String = $g.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!($out, "guid {} {}", stringify!($g), hex);
    )*};
}

macro_rules! consts {
    ($out:ident, $($c:ident),* $(,)?) => {$(
        let _ = writeln!($out, "const {} {}", stringify!($c), i64::from($c));
    )*};
}

/// Constants of the user-mode headers (`wtypes.h`), which cannot be
/// included beside the kernel ones.
macro_rules! user_consts {
    ($out:ident, $($c:ident),* $(,)?) => {$(
        let _ = writeln!($out, "const {} {} user", stringify!($c), i64::from($c));
    )*};
}

/// Scalar typedefs: their size and alignment.
macro_rules! types {
    ($out:ident, $($t:ident),* $(,)?) => {$(
        let _ = writeln!($out, "type {} {} {}", stringify!($t), size_of::<$t>(), align_of::<$t>());
    )*};
}

fn main() {
    let mut o = String::new();

    item!(
        o,
        GUID {
            Data1,
            Data2,
            Data3,
            Data4
        }
    );
    item!(o, LARGE_INTEGER { QuadPart });
    types!(
        o,
        CM_RESOURCE_TYPE,
        CM_SHARE_DISPOSITION,
        INTERFACE_TYPE,
        KAFFINITY
    );
    item!(
        o,
        CM_PARTIAL_RESOURCE_DESCRIPTOR {
            Type,
            ShareDisposition,
            Flags,
            u,
            u.Generic.Start,
            u.Generic.Length,
            u.Port.Start,
            u.Port.Length,
            u.Interrupt.Level,
            u.Interrupt.Vector,
            u.Interrupt.Affinity,
            u.Memory.Start,
            u.Memory.Length,
            u.Dma.Channel,
            u.Dma.Port,
            u.Dma.Reserved1,
            u.DevicePrivate.Data,
            u.BusNumber.Start,
            u.BusNumber.Length,
            u.BusNumber.Reserved,
            u.DeviceSpecificData.DataSize,
            u.DeviceSpecificData.Reserved1,
            u.DeviceSpecificData.Reserved2,
            u.Memory40.Start,
            u.Memory40.Length40,
            u.Memory48.Start,
            u.Memory48.Length48,
            u.Memory64.Start,
            u.Memory64.Length64
        }
    );
    item!(
        o,
        CM_PARTIAL_RESOURCE_LIST {
            Version,
            Revision,
            Count,
            PartialDescriptors
        }
    );
    item!(
        o,
        CM_FULL_RESOURCE_DESCRIPTOR {
            InterfaceType,
            BusNumber,
            PartialResourceList
        }
    );
    item!(o, CM_RESOURCE_LIST { Count, List });
    item!(
        o,
        POWER_STATE {
            SystemState,
            DeviceState
        }
    );
    // `Flags` is the C struct's bit-field word, which has no C member name;
    // the offsets of `Version` and `Address` around it pin where it sits.
    item!(
        o,
        DEVICE_CAPABILITIES {
            Size,
            Version,
            Address,
            UINumber,
            DeviceState,
            SystemWake,
            DeviceWake,
            D1Latency,
            D2Latency,
            D3Latency
        }
    );
    item!(
        o,
        DEVICE_DESCRIPTION {
            Version,
            Master,
            ScatterGather,
            DemandMode,
            AutoInitialize,
            Dma32BitAddresses,
            IgnoreCount,
            Reserved1,
            Dma64BitAddresses,
            BusNumber,
            DmaChannel,
            InterfaceType,
            DmaWidth,
            DmaSpeed,
            MaximumLength,
            DmaPort
        }
    );
    item!(o, KSIDENTIFIER { Set, Id, Flags });
    item!(
        o,
        KSP_NODE {
            Property,
            NodeId,
            Reserved
        }
    );
    item!(
        o,
        KSP_PIN {
            Property,
            PinId,
            Reserved
        }
    );
    item!(
        o,
        KSDATAFORMAT {
            Alignment,
            FormatSize,
            Flags,
            SampleSize,
            Reserved,
            MajorFormat,
            SubFormat,
            Specifier
        }
    );
    item!(
        o,
        KSPIN_DESCRIPTOR {
            InterfacesCount,
            Interfaces,
            MediumsCount,
            Mediums,
            DataRangesCount,
            DataRanges,
            DataFlow,
            Communication,
            Category,
            Name,
            ConstrainedDataRangesCount,
            ConstrainedDataRanges
        }
    );
    item!(o, KSMULTIPLE_ITEM { Size, Count });
    item!(
        o,
        KSATTRIBUTE {
            Size,
            Flags,
            Attribute
        }
    );
    item!(o, KSATTRIBUTE_LIST { Count, Attributes });
    item!(o, DEVPROPKEY { fmtid, pid });
    item!(
        o,
        KEY_VALUE_PARTIAL_INFORMATION {
            TitleIndex,
            Type,
            DataLength,
            Data
        }
    );
    types!(o, DEVPROPTYPE, LCID);
    item!(
        o,
        KSPIN_CINSTANCES {
            PossibleCount,
            CurrentCount
        }
    );
    item!(
        o,
        KSPROPERTY_DESCRIPTION {
            AccessFlags,
            DescriptionSize,
            PropTypeSet,
            MembersListCount,
            Reserved
        }
    );
    item!(
        o,
        KSPROPERTY_MEMBERSHEADER {
            MembersFlags,
            MembersSize,
            MembersCount,
            Flags
        }
    );
    item!(
        o,
        KSPROPERTY_BOUNDS_LONG {
            SignedMinimum,
            SignedMaximum
        }
    );
    item!(
        o,
        KSPROPERTY_STEPPING_LONG {
            SteppingDelta,
            Reserved,
            Bounds
        }
    );
    item!(
        o,
        KSCOMPONENTID {
            Manufacturer,
            Product,
            Component,
            Name,
            Version,
            Revision
        }
    );
    item!(
        o,
        WAVEFORMATEX {
            wFormatTag,
            nChannels,
            nSamplesPerSec,
            nAvgBytesPerSec,
            nBlockAlign,
            wBitsPerSample,
            cbSize
        }
    );
    item!(
        o,
        WAVEFORMATEXTENSIBLE {
            Format,
            Samples,
            dwChannelMask,
            SubFormat
        }
    );
    item!(
        o,
        KSDATAFORMAT_WAVEFORMATEX {
            DataFormat,
            WaveFormatEx
        }
    );
    item!(
        o,
        KSDATARANGE_AUDIO {
            DataRange,
            MaximumChannels,
            MinimumBitsPerSample,
            MaximumBitsPerSample,
            MinimumSampleFrequency,
            MaximumSampleFrequency
        }
    );
    item!(
        o,
        KSAUDIO_POSITION {
            PlayOffset,
            WriteOffset
        }
    );
    item!(
        o,
        KSNODEPROPERTY {
            Property,
            NodeId,
            Reserved
        }
    );
    item!(
        o,
        KSNODEPROPERTY_AUDIO_CHANNEL {
            NodeProperty,
            Channel,
            Reserved
        }
    );
    item!(
        o,
        KSJACK_DESCRIPTION {
            ChannelMapping,
            Color,
            ConnectionType,
            GeoLocation,
            GenLocation,
            PortConnection,
            IsConnected
        }
    );
    item!(
        o,
        KSJACK_DESCRIPTION2 {
            DeviceStateInfo,
            JackCapabilities
        }
    );
    item!(
        o,
        PCPROPERTY_ITEM {
            Set,
            Id,
            Flags,
            Handler
        }
    );
    item!(
        o,
        PCPROPERTY_REQUEST {
            MajorTarget,
            MinorTarget,
            Node,
            PropertyItem,
            Verb,
            InstanceSize,
            Instance,
            ValueSize,
            Value,
            Irp
        }
    );
    item!(
        o,
        PCEVENT_ITEM {
            Set,
            Id,
            Flags,
            Handler
        }
    );
    item!(
        o,
        PCEVENT_REQUEST {
            MajorTarget,
            MinorTarget,
            Node,
            EventItem,
            EventEntry,
            Verb,
            Irp
        }
    );
    item!(
        o,
        PCMETHOD_ITEM {
            Set,
            Id,
            Flags,
            Handler
        }
    );
    item!(
        o,
        PCMETHOD_REQUEST {
            MajorTarget,
            MinorTarget,
            Node,
            MethodItem,
            Verb
        }
    );
    item!(
        o,
        PCAUTOMATION_TABLE {
            PropertyItemSize,
            PropertyCount,
            Properties,
            MethodItemSize,
            MethodCount,
            Methods,
            EventItemSize,
            EventCount,
            Events,
            Reserved
        }
    );
    item!(
        o,
        PCPIN_DESCRIPTOR {
            MaxGlobalInstanceCount,
            MaxFilterInstanceCount,
            MinFilterInstanceCount,
            AutomationTable,
            KsPinDescriptor
        }
    );
    item!(
        o,
        PCNODE_DESCRIPTOR {
            Flags,
            AutomationTable,
            Type,
            Name
        }
    );
    item!(
        o,
        PCCONNECTION_DESCRIPTOR {
            FromNode,
            FromNodePin,
            ToNode,
            ToNodePin
        }
    );
    item!(
        o,
        PCFILTER_DESCRIPTOR {
            Version,
            AutomationTable,
            PinSize,
            PinCount,
            Pins,
            NodeSize,
            NodeCount,
            Nodes,
            ConnectionCount,
            Connections,
            CategoryCount,
            Categories
        }
    );

    // Interfaces: the object is one vtable pointer.
    item!(o, IUnknown { lpVtbl });
    item!(o, IResourceList { lpVtbl });
    item!(o, IInterruptSync { lpVtbl });
    item!(o, IPort { lpVtbl });
    item!(o, IPortWaveRT { lpVtbl });
    item!(o, IPortTopology { lpVtbl });
    item!(o, IPortWaveRTStream { lpVtbl });
    item!(o, IMiniport { lpVtbl });
    item!(o, IMiniportTopology { lpVtbl });
    item!(o, IMiniportWaveRT { lpVtbl });
    item!(o, IMiniportWaveRTStream { lpVtbl });
    item!(o, IMiniportWaveRTStreamNotification { lpVtbl });
    item!(o, IAdapterPowerManagement { lpVtbl });
    item!(o, IPowerNotify { lpVtbl });
    item!(o, IUnregisterSubdevice { lpVtbl });
    item!(o, IUnregisterPhysicalConnection { lpVtbl });

    // Vtables: every slot by name, bases first.
    item!(
        o,
        IUnknownVtbl {
            QueryInterface,
            AddRef,
            Release
        }
    );
    item!(o, IResourceListVtbl {
        base__.QueryInterface, base__.AddRef, base__.Release, NumberOfEntries, NumberOfEntriesOfType,
        FindTranslatedEntry, FindUntranslatedEntry, AddEntry, AddEntryFromParent, TranslatedList,
        UntranslatedList
    });
    item!(o, IInterruptSyncVtbl {
        base__.QueryInterface, base__.AddRef, base__.Release, CallSynchronizedRoutine, GetKInterrupt,
        Connect, Disconnect, RegisterServiceRoutine
    });
    item!(o, IPortVtbl {
        base__.QueryInterface, base__.AddRef, base__.Release, Init, GetDeviceProperty, NewRegistryKey
    });
    item!(o, IPortWaveRTVtbl {
        base__.base__.QueryInterface, base__.base__.AddRef, base__.base__.Release, base__.Init,
        base__.GetDeviceProperty, base__.NewRegistryKey
    });
    item!(o, IPortTopologyVtbl {
        base__.base__.QueryInterface, base__.base__.AddRef, base__.base__.Release, base__.Init,
        base__.GetDeviceProperty, base__.NewRegistryKey
    });
    item!(o, IPortWaveRTStreamVtbl {
        base__.QueryInterface, base__.AddRef, base__.Release, AllocatePagesForMdl,
        AllocateContiguousPagesForMdl, MapAllocatedPages, UnmapAllocatedPages, FreePagesFromMdl,
        GetPhysicalPagesCount, GetPhysicalPageAddress
    });
    item!(o, IMiniportVtbl {
        base__.QueryInterface, base__.AddRef, base__.Release, GetDescription, DataRangeIntersection
    });
    item!(o, IMiniportTopologyVtbl {
        base__.base__.QueryInterface, base__.base__.AddRef, base__.base__.Release,
        base__.GetDescription, base__.DataRangeIntersection, Init
    });
    item!(o, IMiniportWaveRTVtbl {
        base__.base__.QueryInterface, base__.base__.AddRef, base__.base__.Release,
        base__.GetDescription, base__.DataRangeIntersection, Init, NewStream, GetDeviceDescription
    });
    item!(o, IMiniportWaveRTStreamVtbl {
        base__.QueryInterface, base__.AddRef, base__.Release, SetFormat, SetState, GetPosition,
        AllocateAudioBuffer, FreeAudioBuffer, GetHWLatency, GetPositionRegister, GetClockRegister
    });
    item!(o, IMiniportWaveRTStreamNotificationVtbl {
        base__.base__.QueryInterface, base__.base__.AddRef, base__.base__.Release,
        base__.SetFormat, base__.SetState, base__.GetPosition, base__.AllocateAudioBuffer,
        base__.FreeAudioBuffer, base__.GetHWLatency, base__.GetPositionRegister,
        base__.GetClockRegister, AllocateBufferWithNotification, FreeBufferWithNotification,
        RegisterNotificationEvent, UnregisterNotificationEvent
    });
    item!(o, IAdapterPowerManagementVtbl {
        base__.QueryInterface, base__.AddRef, base__.Release, PowerChangeState,
        QueryPowerChangeState, QueryDeviceCapabilities
    });
    item!(o, IPowerNotifyVtbl { base__.QueryInterface, base__.AddRef, base__.Release, PowerChangeNotify });
    item!(o, IUnregisterSubdeviceVtbl {
        base__.QueryInterface, base__.AddRef, base__.Release, UnregisterSubdevice
    });
    item!(o, IUnregisterPhysicalConnectionVtbl {
        base__.QueryInterface, base__.AddRef, base__.Release, UnregisterPhysicalConnection,
        UnregisterPhysicalConnectionToExternal, UnregisterPhysicalConnectionFromExternal
    });

    guids!(
        o,
        IID_IPort,
        IID_IMiniport,
        IID_IPortTopology,
        IID_IMiniportTopology,
        IID_IPortWaveRT,
        IID_IPortWaveRTStream,
        IID_IMiniportWaveRT,
        IID_IMiniportWaveRTStream,
        IID_IMiniportWaveRTStreamNotification,
        IID_IResourceList,
        IID_IInterruptSync,
        IID_IAdapterPowerManagement,
        IID_IPowerNotify,
        IID_IUnregisterSubdevice,
        IID_IUnregisterPhysicalConnection,
        IID_IPinCount,
        IID_IPortEvents,
        IID_IUnknown,
        CLSID_PortWaveRT,
        CLSID_PortTopology,
        KSCATEGORY_AUDIO,
        KSCATEGORY_RENDER,
        KSCATEGORY_CAPTURE,
        KSCATEGORY_REALTIME,
        KSCATEGORY_TOPOLOGY,
        KSDATAFORMAT_TYPE_AUDIO,
        KSDATAFORMAT_SUBTYPE_PCM,
        KSDATAFORMAT_SUBTYPE_IEEE_FLOAT,
        KSDATAFORMAT_SPECIFIER_WAVEFORMATEX,
        KSDATAFORMAT_SUBTYPE_ANALOG,
        KSDATAFORMAT_SPECIFIER_NONE,
        KSDATAFORMAT_TYPE_WILDCARD,
        KSDATAFORMAT_SUBTYPE_WILDCARD,
        KSDATAFORMAT_SPECIFIER_WILDCARD,
        KSNODETYPE_SPEAKER,
        KSNODETYPE_HEADPHONES,
        KSNODETYPE_MICROPHONE,
        KSNODETYPE_ANALOG_CONNECTOR,
        KSNODETYPE_LINE_CONNECTOR,
        KSNODETYPE_SPDIF_INTERFACE,
        KSNODETYPE_VOLUME,
        KSNODETYPE_MUTE,
        KSNODETYPE_DAC,
        KSNODETYPE_ADC,
        KSNODETYPE_SUM,
        KSNODETYPE_PEAKMETER,
        KSAUDFNAME_MASTER_VOLUME,
        KSAUDFNAME_MASTER_MUTE,
        KSAUDFNAME_MIC_VOLUME,
        KSAUDFNAME_MIC_MUTE,
        KSAUDFNAME_RECORDING_CONTROL,
        KSAUDFNAME_PEAKMETER,
        KSPROPSETID_General,
        KSPROPSETID_Pin,
        KSPROPSETID_Connection,
        KSPROPSETID_Topology,
        KSPROPSETID_Audio,
        KSPROPSETID_RtAudio,
        KSEVENTSETID_AudioControlChange,
        KSPROPTYPESETID_General,
        KSINTERFACESETID_Standard,
        KSMEDIUMSETID_Standard,
    );

    consts!(
        o,
        STATUS_SUCCESS,
        STATUS_PENDING,
        STATUS_BUFFER_OVERFLOW,
        STATUS_NO_MORE_ENTRIES,
        STATUS_UNSUCCESSFUL,
        STATUS_NOT_IMPLEMENTED,
        STATUS_INVALID_PARAMETER,
        STATUS_INVALID_DEVICE_REQUEST,
        STATUS_NO_MEMORY,
        STATUS_BUFFER_TOO_SMALL,
        STATUS_OBJECT_NAME_NOT_FOUND,
        STATUS_INVALID_HANDLE,
        STATUS_DEVICE_NOT_READY,
        STATUS_DATA_OVERRUN,
        STATUS_DATA_LATE_ERROR,
        STATUS_INVALID_BUFFER_SIZE,
        STATUS_INSUFFICIENT_RESOURCES,
        STATUS_NOT_SUPPORTED,
        STATUS_NO_MATCH,
        STATUS_NOT_FOUND,
        STATUS_INVALID_DEVICE_STATE,
        STATUS_DEVICE_BUSY,
        STATUS_OBJECT_NAME_COLLISION,
        STATUS_DEVICE_CONFIGURATION_ERROR,
        STATUS_ALLOTTED_SPACE_EXCEEDED,
        STATUS_NOINTERFACE,
        E_NOINTERFACE,
        IRP_MJ_PNP,
        IRP_MJ_MAXIMUM_FUNCTION,
        IRP_MN_START_DEVICE,
        IRP_MN_REMOVE_DEVICE,
        IRP_MN_STOP_DEVICE,
        IRP_MN_SURPRISE_REMOVAL,
        KSSTATE_STOP,
        KSSTATE_ACQUIRE,
        KSSTATE_PAUSE,
        KSSTATE_RUN,
        KSSTREAM_HEADER_OPTIONSF_ENDOFSTREAM,
        KSPIN_DATAFLOW_IN,
        KSPIN_DATAFLOW_OUT,
        KSPIN_COMMUNICATION_NONE,
        KSPIN_COMMUNICATION_SINK,
        KSPIN_COMMUNICATION_SOURCE,
        KSPIN_COMMUNICATION_BOTH,
        KSPIN_COMMUNICATION_BRIDGE,
        KSINTERFACE_STANDARD_STREAMING,
        KSINSTANCE_INDETERMINATE,
        KSDATAFORMAT_ATTRIBUTES,
        KSDATARANGE_ATTRIBUTES,
        KSDATARANGE_REQUIRED_ATTRIBUTES,
        KSPROPERTY_TYPE_GET,
        KSPROPERTY_TYPE_SET,
        KSPROPERTY_TYPE_SETSUPPORT,
        KSPROPERTY_TYPE_BASICSUPPORT,
        KSPROPERTY_TYPE_RELATIONS,
        KSPROPERTY_TYPE_SERIALIZESET,
        KSPROPERTY_TYPE_UNSERIALIZESET,
        KSPROPERTY_TYPE_SERIALIZERAW,
        KSPROPERTY_TYPE_UNSERIALIZERAW,
        KSPROPERTY_TYPE_SERIALIZESIZE,
        KSPROPERTY_TYPE_DEFAULTVALUES,
        KSPROPERTY_TYPE_TOPOLOGY,
        KSPROPERTY_MEMBER_RANGES,
        KSPROPERTY_MEMBER_STEPPEDRANGES,
        KSPROPERTY_MEMBER_VALUES,
        KSPROPERTY_MEMBER_FLAG_DEFAULT,
        KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_MULTICHANNEL,
        KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_UNIFORM,
        KSEVENT_TYPE_ENABLE,
        KSEVENT_TYPE_ONESHOT,
        KSEVENT_TYPE_ENABLEBUFFERED,
        KSEVENT_TYPE_SETSUPPORT,
        KSEVENT_TYPE_BASICSUPPORT,
        KSEVENT_TYPE_QUERYBUFFER,
        KSEVENT_TYPE_TOPOLOGY,
        KSMETHOD_TYPE_NONE,
        KSMETHOD_TYPE_READ,
        KSMETHOD_TYPE_WRITE,
        KSMETHOD_TYPE_MODIFY,
        KSMETHOD_TYPE_SOURCE,
        KSMETHOD_TYPE_SEND,
        KSMETHOD_TYPE_SETSUPPORT,
        KSMETHOD_TYPE_BASICSUPPORT,
        KSPROPERTY_PIN_CINSTANCES,
        KSPROPERTY_PIN_CTYPES,
        KSPROPERTY_PIN_DATAFLOW,
        KSPROPERTY_PIN_DATARANGES,
        KSPROPERTY_PIN_DATAINTERSECTION,
        KSPROPERTY_PIN_INTERFACES,
        KSPROPERTY_PIN_MEDIUMS,
        KSPROPERTY_PIN_COMMUNICATION,
        KSPROPERTY_PIN_GLOBALCINSTANCES,
        KSPROPERTY_PIN_NECESSARYINSTANCES,
        KSPROPERTY_PIN_PHYSICALCONNECTION,
        KSPROPERTY_PIN_CATEGORY,
        KSPROPERTY_PIN_NAME,
        KSPROPERTY_PIN_CONSTRAINEDDATARANGES,
        KSPROPERTY_PIN_PROPOSEDATAFORMAT,
        KSPROPERTY_CONNECTION_STATE,
        KSPROPERTY_CONNECTION_PRIORITY,
        KSPROPERTY_CONNECTION_DATAFORMAT,
        KSPROPERTY_CONNECTION_ALLOCATORFRAMING,
        KSPROPERTY_CONNECTION_PROPOSEDATAFORMAT,
        KSPROPERTY_CONNECTION_ACQUIREORDERING,
        KSPROPERTY_CONNECTION_ALLOCATORFRAMING_EX,
        KSPROPERTY_CONNECTION_STARTAT,
        KSPROPERTY_GENERAL_COMPONENTID,
        KSPROPERTY_TOPOLOGY_CATEGORIES,
        KSPROPERTY_TOPOLOGY_NODES,
        KSPROPERTY_TOPOLOGY_CONNECTIONS,
        KSPROPERTY_TOPOLOGY_NAME,
        WAVE_FORMAT_PCM,
        WAVE_FORMAT_IEEE_FLOAT,
        WAVE_FORMAT_EXTENSIBLE,
        SPEAKER_FRONT_LEFT,
        SPEAKER_FRONT_RIGHT,
        SPEAKER_FRONT_CENTER,
        SPEAKER_LOW_FREQUENCY,
        SPEAKER_BACK_LEFT,
        SPEAKER_BACK_RIGHT,
        SPEAKER_SIDE_LEFT,
        SPEAKER_SIDE_RIGHT,
        SPEAKER_FRONT_LEFT_OF_CENTER,
        SPEAKER_FRONT_RIGHT_OF_CENTER,
        SPEAKER_BACK_CENTER,
        KSAUDIO_SPEAKER_MONO,
        KSAUDIO_SPEAKER_STEREO,
        KSAUDIO_SPEAKER_QUAD,
        KSAUDIO_SPEAKER_SURROUND,
        KSAUDIO_SPEAKER_5POINT1,
        KSAUDIO_SPEAKER_7POINT1,
        KSAUDIO_SPEAKER_5POINT1_SURROUND,
        KSAUDIO_SPEAKER_7POINT1_SURROUND,
        KSPROPERTY_AUDIO_LATENCY,
        KSPROPERTY_AUDIO_COPY_PROTECTION,
        KSPROPERTY_AUDIO_CHANNEL_CONFIG,
        KSPROPERTY_AUDIO_VOLUMELEVEL,
        KSPROPERTY_AUDIO_POSITION,
        KSPROPERTY_AUDIO_DYNAMIC_RANGE,
        KSPROPERTY_AUDIO_QUALITY,
        KSPROPERTY_AUDIO_SAMPLING_RATE,
        KSPROPERTY_AUDIO_DYNAMIC_SAMPLING_RATE,
        KSPROPERTY_AUDIO_MIX_LEVEL_TABLE,
        KSPROPERTY_AUDIO_MIX_LEVEL_CAPS,
        KSPROPERTY_AUDIO_MUX_SOURCE,
        KSPROPERTY_AUDIO_MUTE,
        KSPROPERTY_AUDIO_DEV_SPECIFIC,
        KSPROPERTY_AUDIO_PEAKMETER,
        KSPROPERTY_AUDIO_CPU_RESOURCES,
        KSNODEPIN_STANDARD_IN,
        KSNODEPIN_STANDARD_OUT,
        KSNODEPIN_SUM_MUX_IN,
        KSNODEPIN_SUM_MUX_OUT,
        KSPROPERTY_RTAUDIO_GETPOSITIONFUNCTION,
        eConnTypeUnknown,
        eConnType3Point5mm,
        eConnTypeQuarter,
        eConnTypeAtapiInternal,
        eConnTypeRCA,
        eConnTypeOptical,
        eConnTypeOtherDigital,
        eConnTypeOtherAnalog,
        eConnTypeMultichannelAnalogDIN,
        eConnTypeXlrProfessional,
        eConnTypeRJ11Modem,
        eConnTypeCombination,
        eGeoLocRear,
        eGeoLocFront,
        eGeoLocLeft,
        eGeoLocRight,
        eGeoLocTop,
        eGeoLocBottom,
        eGeoLocRearPanel,
        eGeoLocRiser,
        eGeoLocInsideMobileLid,
        eGeoLocDrivebay,
        eGeoLocHDMI,
        eGeoLocOutsideMobileLid,
        eGeoLocATAPI,
        eGenLocPrimaryBox,
        eGenLocInternal,
        eGenLocSeparate,
        eGenLocOther,
        ePortConnJack,
        ePortConnIntegratedDevice,
        ePortConnBothIntegratedAndJack,
        ePortConnUnknown,
        PCFILTER_NODE,
        PCPROPERTY_ITEM_FLAG_GET,
        PCPROPERTY_ITEM_FLAG_SET,
        PCPROPERTY_ITEM_FLAG_BASICSUPPORT,
        PCEVENT_ITEM_FLAG_ENABLE,
        PCEVENT_ITEM_FLAG_ONESHOT,
        PCEVENT_ITEM_FLAG_BASICSUPPORT,
        PCEVENT_VERB_NONE,
        PCEVENT_VERB_ADD,
        PCEVENT_VERB_REMOVE,
        PCEVENT_VERB_SUPPORT,
        InterruptSyncModeNormal,
        InterruptSyncModeAll,
        InterruptSyncModeRepeat,
        CmResourceTypeNull,
        CmResourceTypePort,
        CmResourceTypeInterrupt,
        CmResourceTypeMemory,
        CmResourceTypeDma,
        CmResourceTypeDeviceSpecific,
        CmResourceTypeBusNumber,
        CmResourceTypeMemoryLarge,
        CmResourceTypeNonArbitrated,
        CmResourceTypeConfigData,
        CmResourceTypeDevicePrivate,
        CmResourceTypePcCardConfig,
        CmResourceTypeMfCardConfig,
        CmResourceShareUndetermined,
        CmResourceShareDeviceExclusive,
        CmResourceShareDriverExclusive,
        CmResourceShareShared,
        CM_RESOURCE_PORT_MEMORY,
        CM_RESOURCE_PORT_IO,
        CM_RESOURCE_PORT_10_BIT_DECODE,
        CM_RESOURCE_PORT_12_BIT_DECODE,
        CM_RESOURCE_PORT_16_BIT_DECODE,
        CM_RESOURCE_PORT_POSITIVE_DECODE,
        CM_RESOURCE_PORT_PASSIVE_DECODE,
        CM_RESOURCE_PORT_WINDOW_DECODE,
        CM_RESOURCE_PORT_BAR,
        CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE,
        CM_RESOURCE_INTERRUPT_LATCHED,
        CM_RESOURCE_INTERRUPT_MESSAGE,
        CM_RESOURCE_INTERRUPT_POLICY_INCLUDED,
        CM_RESOURCE_MEMORY_READ_WRITE,
        CM_RESOURCE_MEMORY_READ_ONLY,
        CM_RESOURCE_MEMORY_WRITE_ONLY,
        CM_RESOURCE_MEMORY_PREFETCHABLE,
        CM_RESOURCE_MEMORY_COMBINEDWRITE,
        CM_RESOURCE_MEMORY_24,
        CM_RESOURCE_MEMORY_CACHEABLE,
        CM_RESOURCE_MEMORY_BAR,
        NonPagedPool,
        PagedPool,
        NonPagedPoolNx,
        MmNonCached,
        MmCached,
        MmWriteCombined,
        Internal,
        Isa,
        PCIBus,
        PNPBus,
        Width8Bits,
        Width16Bits,
        Width32Bits,
        Width64Bits,
        WidthNoWrap,
        MaximumDmaWidth,
        Compatible,
        TypeA,
        TypeB,
        TypeC,
        TypeF,
        MaximumDmaSpeed,
        PowerSystemUnspecified,
        PowerSystemWorking,
        PowerSystemSleeping1,
        PowerSystemSleeping2,
        PowerSystemSleeping3,
        PowerSystemHibernate,
        PowerSystemShutdown,
        PowerSystemMaximum,
        PowerDeviceUnspecified,
        PowerDeviceD0,
        PowerDeviceD1,
        PowerDeviceD2,
        PowerDeviceD3,
        PowerDeviceMaximum,
        DEVICE_DESCRIPTION_VERSION,
        DEVICE_DESCRIPTION_VERSION1,
        DEVICE_DESCRIPTION_VERSION2,
        KSATTRIBUTE_REQUIRED,
        DEVPROP_TYPEMOD_ARRAY,
        DEVPROP_TYPE_BYTE,
        DEVPROP_TYPE_BINARY,
        DEVPROP_TYPE_STRING,
        PLUGPLAY_PROPERTY_PERSISTENT,
        REG_SZ,
        REG_DWORD,
        PLUGPLAY_REGKEY_DEVICE,
        KEY_READ,
        KeyValuePartialInformation,
        FILE_BYTE_ALIGNMENT,
        FILE_WORD_ALIGNMENT,
        FILE_LONG_ALIGNMENT,
        FILE_QUAD_ALIGNMENT,
    );
    user_consts!(
        o,
        VT_EMPTY,
        VT_I4,
        VT_BOOL,
        VT_UI4,
        VT_ILLEGAL,
        LOCALE_NEUTRAL
    );
    // The kernel objects the emulator's I/O-manager stand-in builds (opaque in
    // this crate, so their offsets are constants, checked as the members'
    // `offsetof` in the headers).
    let _ = writeln!(
        o,
        "const PORT_CLASS_DEVICE_EXTENSION_SIZE {PORT_CLASS_DEVICE_EXTENSION_SIZE}"
    );
    for (owner, member, offset) in [
        (
            "DEVICE_OBJECT",
            "DeviceExtension",
            DEVICE_OBJECT_DeviceExtension_OFFSET,
        ),
        (
            "DRIVER_OBJECT",
            "MajorFunction",
            DRIVER_OBJECT_MajorFunction_OFFSET,
        ),
        (
            "IRP",
            "Tail.Overlay.CurrentStackLocation",
            IRP_CurrentStackLocation_OFFSET,
        ),
        (
            "IO_STACK_LOCATION",
            "MajorFunction",
            IO_STACK_LOCATION_MajorFunction_OFFSET,
        ),
        (
            "IO_STACK_LOCATION",
            "MinorFunction",
            IO_STACK_LOCATION_MinorFunction_OFFSET,
        ),
    ] {
        let _ = writeln!(o, "field {owner} {member} {offset}");
    }
    let _ = writeln!(o, "struct IRP {IRP_SIZE} 8");
    let _ = writeln!(o, "struct IO_STACK_LOCATION {IO_STACK_LOCATION_SIZE} 8");

    user_consts!(o, VT_EMPTY, VT_I4, VT_BOOL, VT_UI4, VT_ILLEGAL);

    for d in DOCUMENTED_ONLY {
        let _ = writeln!(
            o,
            "doc {} {}{}",
            d.name.replace(' ', "_"),
            DOCUMENTATION_ROOT,
            d.source.replace(' ', "_")
        );
    }
    print!("{o}");
}
