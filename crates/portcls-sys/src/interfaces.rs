//! COM interfaces: one `XxxVtbl` (slots in declaration order, base interface
//! first as a nested `base__` field) and one `Xxx { lpVtbl }` per interface.
//!
//! Every slot is `unsafe extern "system"` and takes the object pointer
//! (`this`) first, as an untyped pointer, the way C sees `This`. Slots that
//! return a structure by value in C++ are written with their hidden return
//! pointer (see [`IPortWaveRTStreamVtbl::GetPhysicalPageAddress`]).

use core::ffi::c_void;

use crate::documented_only::{
    KSAUDIO_PRESENTATION_POSITION, KSRTAUDIO_HWLATENCY, KSRTAUDIO_HWREGISTER,
};
use crate::ks::{KSSTATE, PKSDATAFORMAT, PKSDATARANGE};
use crate::ksmedia::PKSAUDIO_POSITION;
use crate::portcls::{PINTERRUPTSYNCROUTINE, PPCFILTER_DESCRIPTOR};
use crate::types::{
    ACCESS_MASK, BOOL, BOOLEAN, CM_RESOURCE_TYPE, DEVICE_POWER_STATE, DEVICE_REGISTRY_PROPERTY,
    DWORD, GUID, MEMORY_CACHING_TYPE, NTSTATUS, PCM_PARTIAL_RESOURCE_DESCRIPTOR, PCM_RESOURCE_LIST,
    PDEVICE_CAPABILITIES, PDEVICE_DESCRIPTION, PDEVICE_OBJECT, PHYSICAL_ADDRESS, PIRP, PKEVENT,
    PKINTERRUPT, PMDL, POBJECT_ATTRIBUTES, POWER_STATE, PUNICODE_STRING, PVOID, REFIID, SIZE_T,
    SYSTEM_POWER_STATE, ULONG, ULONG64,
};

/// The object pointer every slot receives first.
pub type THIS = *mut c_void;

macro_rules! interface {
    ($(#[$m:meta])* $name:ident, $vtbl:ident, $ptr:ident) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug)]
        pub struct $name {
            /// The object's function table for this interface.
            pub lpVtbl: *const $vtbl,
        }
        pub type $ptr = *mut $name;
    };
}

interface!(
    /// `IUnknown` with PortCls' signature: `QueryInterface` returns `NTSTATUS`.
    IUnknown, IUnknownVtbl, PUNKNOWN
);
/// `IUnknown` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IUnknownVtbl {
    pub QueryInterface:
        windows_fn!(unsafe fn(This: THIS, InterfaceId: REFIID, Interface: *mut PVOID) -> NTSTATUS),
    pub AddRef: windows_fn!(unsafe fn(This: THIS) -> ULONG),
    pub Release: windows_fn!(unsafe fn(This: THIS) -> ULONG),
}

interface!(
    /// `IRegistryKey`, only passed through here (no slots needed).
    IRegistryKey, IUnknownVtbl, PREGISTRYKEY
);

interface!(
    /// `IResourceList`: the translated and raw resources of the adapter.
    IResourceList, IResourceListVtbl, PRESOURCELIST
);
/// `IResourceList` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IResourceListVtbl {
    pub base__: IUnknownVtbl,
    pub NumberOfEntries: windows_fn!(unsafe fn(This: THIS) -> ULONG),
    pub NumberOfEntriesOfType: windows_fn!(unsafe fn(This: THIS, Type: CM_RESOURCE_TYPE) -> ULONG),
    pub FindTranslatedEntry: windows_fn!(
        unsafe fn(
            This: THIS,
            Type: CM_RESOURCE_TYPE,
            Index: ULONG,
        ) -> PCM_PARTIAL_RESOURCE_DESCRIPTOR
    ),
    pub FindUntranslatedEntry: windows_fn!(
        unsafe fn(
            This: THIS,
            Type: CM_RESOURCE_TYPE,
            Index: ULONG,
        ) -> PCM_PARTIAL_RESOURCE_DESCRIPTOR
    ),
    pub AddEntry: windows_fn!(
        unsafe fn(
            This: THIS,
            Translated: PCM_PARTIAL_RESOURCE_DESCRIPTOR,
            Untranslated: PCM_PARTIAL_RESOURCE_DESCRIPTOR,
        ) -> NTSTATUS
    ),
    pub AddEntryFromParent: windows_fn!(
        unsafe fn(
            This: THIS,
            Parent: PRESOURCELIST,
            Type: CM_RESOURCE_TYPE,
            Index: ULONG,
        ) -> NTSTATUS
    ),
    pub TranslatedList: windows_fn!(unsafe fn(This: THIS) -> PCM_RESOURCE_LIST),
    pub UntranslatedList: windows_fn!(unsafe fn(This: THIS) -> PCM_RESOURCE_LIST),
}

interface!(
    /// `IInterruptSync`: PortCls' interrupt object.
    IInterruptSync, IInterruptSyncVtbl, PINTERRUPTSYNC
);
/// `IInterruptSync` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IInterruptSyncVtbl {
    pub base__: IUnknownVtbl,
    pub CallSynchronizedRoutine: windows_fn!(
        unsafe fn(This: THIS, Routine: PINTERRUPTSYNCROUTINE, DynamicContext: PVOID) -> NTSTATUS
    ),
    pub GetKInterrupt: windows_fn!(unsafe fn(This: THIS) -> PKINTERRUPT),
    pub Connect: windows_fn!(unsafe fn(This: THIS) -> NTSTATUS),
    pub Disconnect: windows_fn!(unsafe fn(This: THIS)),
    pub RegisterServiceRoutine: windows_fn!(
        unsafe fn(
            This: THIS,
            Routine: PINTERRUPTSYNCROUTINE,
            DynamicContext: PVOID,
            First: BOOLEAN,
        ) -> NTSTATUS
    ),
}

interface!(
    /// `IPort`: the port driver object.
    IPort, IPortVtbl, PPORT
);
/// `IPort` slots (shared by every port interface).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IPortVtbl {
    pub base__: IUnknownVtbl,
    pub Init: windows_fn!(
        unsafe fn(
            This: THIS,
            DeviceObject: PDEVICE_OBJECT,
            Irp: PIRP,
            UnknownMiniport: PUNKNOWN,
            UnknownAdapter: PUNKNOWN,
            ResourceList: PRESOURCELIST,
        ) -> NTSTATUS
    ),
    pub GetDeviceProperty: windows_fn!(
        unsafe fn(
            This: THIS,
            DeviceProperty: DEVICE_REGISTRY_PROPERTY,
            BufferLength: ULONG,
            PropertyBuffer: PVOID,
            ResultLength: *mut ULONG,
        ) -> NTSTATUS
    ),
    pub NewRegistryKey: windows_fn!(
        unsafe fn(
            This: THIS,
            OutRegistryKey: *mut PREGISTRYKEY,
            OuterUnknown: PUNKNOWN,
            RegistryKeyType: ULONG,
            DesiredAccess: ACCESS_MASK,
            ObjectAttributes: POBJECT_ATTRIBUTES,
            CreateOptions: ULONG,
            Disposition: *mut ULONG,
        ) -> NTSTATUS
    ),
}

interface!(
    /// `IPortWaveRT`: the WaveRT port (adds nothing to `IPort`).
    IPortWaveRT, IPortWaveRTVtbl, PPORTWAVERT
);
/// `IPortWaveRT` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IPortWaveRTVtbl {
    pub base__: IPortVtbl,
}

interface!(
    /// `IPortTopology`: the topology port (adds nothing to `IPort`).
    IPortTopology, IPortTopologyVtbl, PPORTTOPOLOGY
);
/// `IPortTopology` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IPortTopologyVtbl {
    pub base__: IPortVtbl,
}

interface!(
    /// `IPortWaveRTStream`: the port's services to one miniport stream
    /// (buffer pages, mappings, physical addresses).
    IPortWaveRTStream, IPortWaveRTStreamVtbl, PPORTWAVERTSTREAM
);
/// `IPortWaveRTStream` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IPortWaveRTStreamVtbl {
    pub base__: IUnknownVtbl,
    pub AllocatePagesForMdl: windows_fn!(
        unsafe fn(This: THIS, HighAddress: PHYSICAL_ADDRESS, TotalBytes: SIZE_T) -> PMDL
    ),
    pub AllocateContiguousPagesForMdl: windows_fn!(
        unsafe fn(
            This: THIS,
            LowAddress: PHYSICAL_ADDRESS,
            HighAddress: PHYSICAL_ADDRESS,
            TotalBytes: SIZE_T,
        ) -> PMDL
    ),
    pub MapAllocatedPages: windows_fn!(
        unsafe fn(This: THIS, MemoryDescriptorList: PMDL, CacheType: MEMORY_CACHING_TYPE) -> PVOID
    ),
    pub UnmapAllocatedPages:
        windows_fn!(unsafe fn(This: THIS, BaseAddress: PVOID, MemoryDescriptorList: PMDL)),
    pub FreePagesFromMdl: windows_fn!(unsafe fn(This: THIS, MemoryDescriptorList: PMDL)),
    pub GetPhysicalPagesCount:
        windows_fn!(unsafe fn(This: THIS, MemoryDescriptorList: PMDL) -> ULONG),
    /// C++: `PHYSICAL_ADDRESS GetPhysicalPageAddress(PMDL, ULONG)`.
    ///
    /// A C++ member function returning a structure or union by value passes
    /// a hidden pointer to the caller's result slot right after `this`
    /// (RDX on x64) and hands the same pointer back in RAX, even for an
    /// 8-byte union that a plain C function would return in RAX. So the
    /// slot is `(this, *mut PHYSICAL_ADDRESS, PMDL, ULONG) ->
    /// *mut PHYSICAL_ADDRESS`; the C view of the header (result in RAX,
    /// `PMDL` in RDX) would read garbage from PortCls.
    pub GetPhysicalPageAddress: windows_fn!(
        unsafe fn(
            This: THIS,
            Result: *mut PHYSICAL_ADDRESS,
            MemoryDescriptorList: PMDL,
            Index: ULONG,
        ) -> *mut PHYSICAL_ADDRESS
    ),
}

interface!(
    /// `IMiniport`: common base of every miniport.
    IMiniport, IMiniportVtbl, PMINIPORT
);
/// `IMiniport` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IMiniportVtbl {
    pub base__: IUnknownVtbl,
    pub GetDescription:
        windows_fn!(unsafe fn(This: THIS, Description: *mut PPCFILTER_DESCRIPTOR) -> NTSTATUS),
    pub DataRangeIntersection: windows_fn!(
        unsafe fn(
            This: THIS,
            PinId: ULONG,
            DataRange: PKSDATARANGE,
            MatchingDataRange: PKSDATARANGE,
            OutputBufferLength: ULONG,
            ResultantFormat: PVOID,
            ResultantFormatLength: *mut ULONG,
        ) -> NTSTATUS
    ),
}

interface!(
    /// `IMiniportTopology`: a topology miniport.
    IMiniportTopology, IMiniportTopologyVtbl, PMINIPORTTOPOLOGY
);
/// `IMiniportTopology` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IMiniportTopologyVtbl {
    pub base__: IMiniportVtbl,
    pub Init: windows_fn!(
        unsafe fn(
            This: THIS,
            UnknownAdapter: PUNKNOWN,
            ResourceList: PRESOURCELIST,
            Port: PPORTTOPOLOGY,
        ) -> NTSTATUS
    ),
}

interface!(
    /// `IMiniportWaveRT`: a WaveRT miniport.
    IMiniportWaveRT, IMiniportWaveRTVtbl, PMINIPORTWAVERT
);
/// `IMiniportWaveRT` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IMiniportWaveRTVtbl {
    pub base__: IMiniportVtbl,
    pub Init: windows_fn!(
        unsafe fn(
            This: THIS,
            UnknownAdapter: PUNKNOWN,
            ResourceList: PRESOURCELIST,
            Port: PPORTWAVERT,
        ) -> NTSTATUS
    ),
    pub NewStream: windows_fn!(
        unsafe fn(
            This: THIS,
            Stream: *mut PMINIPORTWAVERTSTREAM,
            PortStream: PPORTWAVERTSTREAM,
            Pin: ULONG,
            Capture: BOOLEAN,
            DataFormat: PKSDATAFORMAT,
        ) -> NTSTATUS
    ),
    pub GetDeviceDescription:
        windows_fn!(unsafe fn(This: THIS, DeviceDescription: PDEVICE_DESCRIPTION) -> NTSTATUS),
}

interface!(
    /// `IMiniportWaveRTStream`: one WaveRT stream (pin instance).
    IMiniportWaveRTStream, IMiniportWaveRTStreamVtbl, PMINIPORTWAVERTSTREAM
);
/// `IMiniportWaveRTStream` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IMiniportWaveRTStreamVtbl {
    pub base__: IUnknownVtbl,
    pub SetFormat: windows_fn!(unsafe fn(This: THIS, DataFormat: PKSDATAFORMAT) -> NTSTATUS),
    pub SetState: windows_fn!(unsafe fn(This: THIS, State: KSSTATE) -> NTSTATUS),
    pub GetPosition: windows_fn!(unsafe fn(This: THIS, Position: PKSAUDIO_POSITION) -> NTSTATUS),
    pub AllocateAudioBuffer: windows_fn!(
        unsafe fn(
            This: THIS,
            RequestedSize: ULONG,
            AudioBufferMdl: *mut PMDL,
            ActualSize: *mut ULONG,
            OffsetFromFirstPage: *mut ULONG,
            CacheType: *mut MEMORY_CACHING_TYPE,
        ) -> NTSTATUS
    ),
    pub FreeAudioBuffer:
        windows_fn!(unsafe fn(This: THIS, AudioBufferMdl: PMDL, BufferSize: ULONG)),
    pub GetHWLatency: windows_fn!(unsafe fn(This: THIS, hwLatency: *mut KSRTAUDIO_HWLATENCY)),
    pub GetPositionRegister:
        windows_fn!(unsafe fn(This: THIS, Register: *mut KSRTAUDIO_HWREGISTER) -> NTSTATUS),
    pub GetClockRegister:
        windows_fn!(unsafe fn(This: THIS, Register: *mut KSRTAUDIO_HWREGISTER) -> NTSTATUS),
}

interface!(
    /// `IMiniportWaveRTStreamNotification`: a stream with event
    /// notification (pull mode).
    IMiniportWaveRTStreamNotification, IMiniportWaveRTStreamNotificationVtbl, PMINIPORTWAVERTSTREAMNOTIFICATION
);
/// `IMiniportWaveRTStreamNotification` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IMiniportWaveRTStreamNotificationVtbl {
    pub base__: IMiniportWaveRTStreamVtbl,
    pub AllocateBufferWithNotification: windows_fn!(
        unsafe fn(
            This: THIS,
            NotificationCount: ULONG,
            RequestedSize: ULONG,
            AudioBufferMdl: *mut PMDL,
            ActualSize: *mut ULONG,
            OffsetFromFirstPage: *mut ULONG,
            CacheType: *mut MEMORY_CACHING_TYPE,
        ) -> NTSTATUS
    ),
    pub FreeBufferWithNotification:
        windows_fn!(unsafe fn(This: THIS, AudioBufferMdl: PMDL, BufferSize: ULONG)),
    pub RegisterNotificationEvent:
        windows_fn!(unsafe fn(This: THIS, NotificationEvent: PKEVENT) -> NTSTATUS),
    pub UnregisterNotificationEvent:
        windows_fn!(unsafe fn(This: THIS, NotificationEvent: PKEVENT) -> NTSTATUS),
}

interface!(
    /// `IMiniportWaveRTInputStream` (Windows 10 packet mode, capture).
    /// Absent from MinGW: see [`crate::documented_only`].
    IMiniportWaveRTInputStream, IMiniportWaveRTInputStreamVtbl, PMINIPORTWAVERTINPUTSTREAM
);
/// `IMiniportWaveRTInputStream` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IMiniportWaveRTInputStreamVtbl {
    pub base__: IUnknownVtbl,
    pub GetReadPacket: windows_fn!(
        unsafe fn(
            This: THIS,
            PacketNumber: *mut ULONG,
            Flags: *mut DWORD,
            PerformanceCounterValue: *mut ULONG64,
            MoreData: *mut BOOL,
        ) -> NTSTATUS
    ),
}

interface!(
    /// `IMiniportWaveRTOutputStream` (Windows 10 packet mode, render).
    /// Absent from MinGW: see [`crate::documented_only`].
    IMiniportWaveRTOutputStream, IMiniportWaveRTOutputStreamVtbl, PMINIPORTWAVERTOUTPUTSTREAM
);
/// `IMiniportWaveRTOutputStream` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IMiniportWaveRTOutputStreamVtbl {
    pub base__: IUnknownVtbl,
    pub SetWritePacket: windows_fn!(
        unsafe fn(
            This: THIS,
            PacketNumber: ULONG,
            Flags: DWORD,
            EosPacketLength: ULONG,
        ) -> NTSTATUS
    ),
    pub GetOutputStreamPresentationPosition: windows_fn!(
        unsafe fn(
            This: THIS,
            pPresentationPosition: *mut KSAUDIO_PRESENTATION_POSITION,
        ) -> NTSTATUS
    ),
    pub GetPacketCount: windows_fn!(unsafe fn(This: THIS, pPacketCount: *mut ULONG) -> NTSTATUS),
}

interface!(
    /// `IAdapterPowerManagement`: power callbacks of the adapter object.
    IAdapterPowerManagement, IAdapterPowerManagementVtbl, PADAPTERPOWERMANAGEMENT
);
/// `IAdapterPowerManagement` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IAdapterPowerManagementVtbl {
    pub base__: IUnknownVtbl,
    pub PowerChangeState: windows_fn!(unsafe fn(This: THIS, NewState: POWER_STATE)),
    pub QueryPowerChangeState:
        windows_fn!(unsafe fn(This: THIS, NewStateQuery: POWER_STATE) -> NTSTATUS),
    pub QueryDeviceCapabilities:
        windows_fn!(unsafe fn(This: THIS, PowerDeviceCaps: PDEVICE_CAPABILITIES) -> NTSTATUS),
}

interface!(
    /// `IAdapterPowerManagement2`: `IAdapterPowerManagement` plus `PowerChangeState2`.
    ///
    /// PortCls prefers it when the adapter answers its IID (Windows 7 and
    /// later). Not in MinGW-w64's `portcls.h`: the WDK
    /// `portcls.h` declares it with `DEFINE_ABSTRACT_ADAPTERPOWERMANAGEMENT()`
    /// after the `IUnknown` slots, so its first six slots are
    /// `IAdapterPowerManagement`'s).
    IAdapterPowerManagement2, IAdapterPowerManagement2Vtbl, PADAPTERPOWERMANAGEMENT2
);
/// `IAdapterPowerManagement2` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IAdapterPowerManagement2Vtbl {
    pub base__: IAdapterPowerManagementVtbl,
    pub PowerChangeState2: windows_fn!(
        unsafe fn(
            This: THIS,
            NewDeviceState: DEVICE_POWER_STATE,
            NewSystemState: SYSTEM_POWER_STATE,
        )
    ),
}

interface!(
    /// `IPowerNotify`: power notification of a miniport or stream.
    IPowerNotify, IPowerNotifyVtbl, PPOWERNOTIFY
);
/// `IPowerNotify` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IPowerNotifyVtbl {
    pub base__: IUnknownVtbl,
    pub PowerChangeNotify: windows_fn!(unsafe fn(This: THIS, PowerState: POWER_STATE)),
}

interface!(
    /// `IUnregisterSubdevice`, queried from a port.
    IUnregisterSubdevice, IUnregisterSubdeviceVtbl, PUNREGISTERSUBDEVICE
);
/// `IUnregisterSubdevice` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IUnregisterSubdeviceVtbl {
    pub base__: IUnknownVtbl,
    pub UnregisterSubdevice: windows_fn!(
        unsafe fn(This: THIS, DeviceObject: PDEVICE_OBJECT, Unknown: PUNKNOWN) -> NTSTATUS
    ),
}

interface!(
    /// `IUnregisterPhysicalConnection`, queried from a port.
    IUnregisterPhysicalConnection, IUnregisterPhysicalConnectionVtbl, PUNREGISTERPHYSICALCONNECTION
);
/// `IUnregisterPhysicalConnection` slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IUnregisterPhysicalConnectionVtbl {
    pub base__: IUnknownVtbl,
    pub UnregisterPhysicalConnection: windows_fn!(
        unsafe fn(
            This: THIS,
            DeviceObject: PDEVICE_OBJECT,
            FromUnknown: PUNKNOWN,
            FromPin: ULONG,
            ToUnknown: PUNKNOWN,
            ToPin: ULONG,
        ) -> NTSTATUS
    ),
    pub UnregisterPhysicalConnectionToExternal: windows_fn!(
        unsafe fn(
            This: THIS,
            DeviceObject: PDEVICE_OBJECT,
            FromUnknown: PUNKNOWN,
            FromPin: ULONG,
            ToString: PUNICODE_STRING,
            ToPin: ULONG,
        ) -> NTSTATUS
    ),
    pub UnregisterPhysicalConnectionFromExternal: windows_fn!(
        unsafe fn(
            This: THIS,
            DeviceObject: PDEVICE_OBJECT,
            FromString: PUNICODE_STRING,
            FromPin: ULONG,
            ToUnknown: PUNKNOWN,
            ToPin: ULONG,
        ) -> NTSTATUS
    ),
}

interface!(
    /// `IMiniportAudioSignalProcessing`: the signal-processing modes of a
    /// WaveRT miniport's pins (Windows 8.1). Absent from MinGW: see
    /// [`crate::documented_only`].
    IMiniportAudioSignalProcessing, IMiniportAudioSignalProcessingVtbl, PMINIPORTAUDIOSIGNALPROCESSING
);
/// `IMiniportAudioSignalProcessing` slots: `IUnknown`, then `GetModes`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IMiniportAudioSignalProcessingVtbl {
    pub base__: IUnknownVtbl,
    /// `NTSTATUS GetModes(ULONG Pin, GUID *SignalProcessingModes,
    /// ULONG *NumSignalProcessingModes)`: with a NULL array, the count of
    /// `Pin`'s modes; else the modes, if `*NumSignalProcessingModes` is at
    /// least that count (`STATUS_BUFFER_TOO_SMALL` otherwise).
    pub GetModes: windows_fn!(
        unsafe fn(
            This: THIS,
            Pin: ULONG,
            SignalProcessingModes: *mut GUID,
            NumSignalProcessingModes: *mut ULONG,
        ) -> NTSTATUS
    ),
}
