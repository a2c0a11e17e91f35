//! PortCls descriptors, callback types and exported functions (`portcls.h`).

use crate::interfaces::{
    IInterruptSync, PINTERRUPTSYNC, PMINIPORT, PPORT, PRESOURCELIST, PUNKNOWN,
};
use crate::ks::{KSATTRIBUTE_LIST, KSPIN_DESCRIPTOR};
use crate::types::{
    GUID, NTSTATUS, PCM_RESOURCE_LIST, PCWSTR, PDEVICE_OBJECT, PDRIVER_ADD_DEVICE, PDRIVER_OBJECT,
    PIRP, PKSEVENT_ENTRY, POOL_TYPE, PUNICODE_STRING, PVOID, REFCLSID, ULONG,
};

/// `PCFILTER_NODE`: the filter itself in a connection descriptor.
pub const PCFILTER_NODE: ULONG = ULONG::MAX;

pub const PCPROPERTY_ITEM_FLAG_GET: ULONG = crate::ks::KSPROPERTY_TYPE_GET;
pub const PCPROPERTY_ITEM_FLAG_SET: ULONG = crate::ks::KSPROPERTY_TYPE_SET;
pub const PCPROPERTY_ITEM_FLAG_BASICSUPPORT: ULONG = crate::ks::KSPROPERTY_TYPE_BASICSUPPORT;
pub const PCEVENT_ITEM_FLAG_ENABLE: ULONG = crate::ks::KSEVENT_TYPE_ENABLE;
pub const PCEVENT_ITEM_FLAG_ONESHOT: ULONG = crate::ks::KSEVENT_TYPE_ONESHOT;
pub const PCEVENT_ITEM_FLAG_BASICSUPPORT: ULONG = crate::ks::KSEVENT_TYPE_BASICSUPPORT;
pub const PCEVENT_VERB_NONE: ULONG = 0;
pub const PCEVENT_VERB_ADD: ULONG = 1;
pub const PCEVENT_VERB_REMOVE: ULONG = 2;
pub const PCEVENT_VERB_SUPPORT: ULONG = 4;

/// Property handler: `NTSTATUS Handler(PPCPROPERTY_REQUEST)`.
pub type PCPFNPROPERTY_HANDLER =
    Option<windows_fn!(unsafe fn(PropertyRequest: *mut PCPROPERTY_REQUEST) -> NTSTATUS)>;
/// Event handler: `NTSTATUS Handler(PPCEVENT_REQUEST)`.
pub type PCPFNEVENT_HANDLER =
    Option<windows_fn!(unsafe fn(EventRequest: *mut PCEVENT_REQUEST) -> NTSTATUS)>;
/// Method handler: `NTSTATUS Handler(PPCMETHOD_REQUEST)`.
pub type PCPFNMETHOD_HANDLER =
    Option<windows_fn!(unsafe fn(MethodRequest: *mut PCMETHOD_REQUEST) -> NTSTATUS)>;

/// `PCPROPERTY_ITEM`: one property a filter, pin or node supports.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PCPROPERTY_ITEM {
    pub Set: *const GUID,
    pub Id: ULONG,
    pub Flags: ULONG,
    pub Handler: PCPFNPROPERTY_HANDLER,
}

/// `PCPROPERTY_REQUEST`: what PortCls hands a property handler.
#[repr(C)]
#[derive(Debug)]
pub struct PCPROPERTY_REQUEST {
    pub MajorTarget: PUNKNOWN,
    pub MinorTarget: PUNKNOWN,
    pub Node: ULONG,
    pub PropertyItem: *const PCPROPERTY_ITEM,
    pub Verb: ULONG,
    pub InstanceSize: ULONG,
    pub Instance: PVOID,
    pub ValueSize: ULONG,
    pub Value: PVOID,
    pub Irp: PIRP,
}
pub type PPCPROPERTY_REQUEST = *mut PCPROPERTY_REQUEST;

/// `PCEVENT_ITEM`: one event a filter, pin or node supports.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PCEVENT_ITEM {
    pub Set: *const GUID,
    pub Id: ULONG,
    pub Flags: ULONG,
    pub Handler: PCPFNEVENT_HANDLER,
}

/// `PCEVENT_REQUEST`: what PortCls hands an event handler.
#[repr(C)]
#[derive(Debug)]
pub struct PCEVENT_REQUEST {
    pub MajorTarget: PUNKNOWN,
    pub MinorTarget: PUNKNOWN,
    pub Node: ULONG,
    pub EventItem: *const PCEVENT_ITEM,
    pub EventEntry: PKSEVENT_ENTRY,
    pub Verb: ULONG,
    pub Irp: PIRP,
}

/// `PCMETHOD_ITEM`: one method a filter, pin or node supports.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PCMETHOD_ITEM {
    pub Set: *const GUID,
    pub Id: ULONG,
    pub Flags: ULONG,
    pub Handler: PCPFNMETHOD_HANDLER,
}

/// `PCMETHOD_REQUEST`: what PortCls hands a method handler.
#[repr(C)]
#[derive(Debug)]
pub struct PCMETHOD_REQUEST {
    pub MajorTarget: PUNKNOWN,
    pub MinorTarget: PUNKNOWN,
    pub Node: ULONG,
    pub MethodItem: *const PCMETHOD_ITEM,
    pub Verb: ULONG,
}

/// `PCAUTOMATION_TABLE`: properties, methods and events of an object.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PCAUTOMATION_TABLE {
    pub PropertyItemSize: ULONG,
    pub PropertyCount: ULONG,
    pub Properties: *const PCPROPERTY_ITEM,
    pub MethodItemSize: ULONG,
    pub MethodCount: ULONG,
    pub Methods: *const PCMETHOD_ITEM,
    pub EventItemSize: ULONG,
    pub EventCount: ULONG,
    pub Events: *const PCEVENT_ITEM,
    pub Reserved: ULONG,
}

/// `PCPIN_DESCRIPTOR`: one pin factory of a filter.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PCPIN_DESCRIPTOR {
    pub MaxGlobalInstanceCount: ULONG,
    pub MaxFilterInstanceCount: ULONG,
    pub MinFilterInstanceCount: ULONG,
    pub AutomationTable: *const PCAUTOMATION_TABLE,
    pub KsPinDescriptor: KSPIN_DESCRIPTOR,
}

/// `PCNODE_DESCRIPTOR`: one topology node of a filter.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PCNODE_DESCRIPTOR {
    pub Flags: ULONG,
    pub AutomationTable: *const PCAUTOMATION_TABLE,
    pub Type: *const GUID,
    pub Name: *const GUID,
}

/// `PCCONNECTION_DESCRIPTOR`: one edge of the filter's topology.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PCCONNECTION_DESCRIPTOR {
    pub FromNode: ULONG,
    pub FromNodePin: ULONG,
    pub ToNode: ULONG,
    pub ToNodePin: ULONG,
}

/// `PCFILTER_DESCRIPTOR`: what `IMiniport::GetDescription` returns.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PCFILTER_DESCRIPTOR {
    pub Version: ULONG,
    pub AutomationTable: *const PCAUTOMATION_TABLE,
    pub PinSize: ULONG,
    pub PinCount: ULONG,
    pub Pins: *const PCPIN_DESCRIPTOR,
    pub NodeSize: ULONG,
    pub NodeCount: ULONG,
    pub Nodes: *const PCNODE_DESCRIPTOR,
    pub ConnectionCount: ULONG,
    pub Connections: *const PCCONNECTION_DESCRIPTOR,
    pub CategoryCount: ULONG,
    pub Categories: *const GUID,
}
pub type PPCFILTER_DESCRIPTOR = *mut PCFILTER_DESCRIPTOR;

/// `INTERRUPTSYNCMODE` for [`PcNewInterruptSync`].
pub type INTERRUPTSYNCMODE = i32;
pub const InterruptSyncModeNormal: INTERRUPTSYNCMODE = 1;
pub const InterruptSyncModeAll: INTERRUPTSYNCMODE = 2;
pub const InterruptSyncModeRepeat: INTERRUPTSYNCMODE = 3;

/// Routine run under the interrupt lock: `NTSTATUS (IInterruptSync*, PVOID)`.
pub type PINTERRUPTSYNCROUTINE = Option<
    windows_fn!(unsafe fn(InterruptSync: *mut IInterruptSync, DynamicContext: PVOID) -> NTSTATUS),
>;

/// The adapter's `StartDevice` callback given to [`PcAddAdapterDevice`].
pub type PCPFNSTARTDEVICE = Option<
    windows_fn!(
        unsafe fn(DeviceObject: PDEVICE_OBJECT, Irp: PIRP, ResourceList: PRESOURCELIST) -> NTSTATUS
    ),
>;

// The PortCls exports. Only the Windows build links `portcls.lib`; on other
// hosts these are declarations nothing calls (the emulator provides its own
// port), so the crate builds and tests anywhere.
#[cfg_attr(windows, link(name = "portcls"))]
extern "system" {
    /// Sets up the driver object's dispatch table for PortCls.
    pub fn PcInitializeAdapterDriver(
        DriverObject: PDRIVER_OBJECT,
        RegistryPathName: PUNICODE_STRING,
        AddDevice: PDRIVER_ADD_DEVICE,
    ) -> NTSTATUS;
    /// Creates the adapter's functional device object.
    pub fn PcAddAdapterDevice(
        DriverObject: PDRIVER_OBJECT,
        PhysicalDeviceObject: PDEVICE_OBJECT,
        StartDevice: PCPFNSTARTDEVICE,
        MaxObjects: ULONG,
        DeviceExtensionSize: ULONG,
    ) -> NTSTATUS;
    /// Hands an IRP to PortCls.
    pub fn PcDispatchIrp(DeviceObject: PDEVICE_OBJECT, Irp: PIRP) -> NTSTATUS;
    /// Creates a port driver object of class `ClassId`.
    pub fn PcNewPort(OutPort: *mut PPORT, ClassId: REFCLSID) -> NTSTATUS;
    /// Creates one of PortCls' built-in miniports.
    pub fn PcNewMiniport(OutMiniport: *mut PMINIPORT, ClassId: REFCLSID) -> NTSTATUS;
    /// Registers a port/miniport pair as a named KS filter.
    pub fn PcRegisterSubdevice(
        DeviceObject: PDEVICE_OBJECT,
        Name: PCWSTR,
        Unknown: PUNKNOWN,
    ) -> NTSTATUS;
    /// Connects a pin of one subdevice to a pin of another.
    pub fn PcRegisterPhysicalConnection(
        DeviceObject: PDEVICE_OBJECT,
        FromUnknown: PUNKNOWN,
        FromPin: ULONG,
        ToUnknown: PUNKNOWN,
        ToPin: ULONG,
    ) -> NTSTATUS;
    /// Creates an interrupt-sync object over an interrupt resource.
    pub fn PcNewInterruptSync(
        OutInterruptSync: *mut PINTERRUPTSYNC,
        OuterUnknown: PUNKNOWN,
        ResourceList: PRESOURCELIST,
        ResourceIndex: ULONG,
        Mode: INTERRUPTSYNCMODE,
    ) -> NTSTATUS;
    /// Registers the adapter's `IAdapterPowerManagement`.
    pub fn PcRegisterAdapterPowerManagement(Unknown: PUNKNOWN, pvContext1: PVOID) -> NTSTATUS;
    /// Wraps CM resource lists in an `IResourceList`.
    pub fn PcNewResourceList(
        OutResourceList: *mut PRESOURCELIST,
        OuterUnknown: PUNKNOWN,
        PoolType: POOL_TYPE,
        TranslatedResources: PCM_RESOURCE_LIST,
        UntranslatedResources: PCM_RESOURCE_LIST,
    ) -> NTSTATUS;
    /// Creates an empty resource list to fill from a parent list.
    pub fn PcNewResourceSublist(
        OutResourceList: *mut PRESOURCELIST,
        OuterUnknown: PUNKNOWN,
        PoolType: POOL_TYPE,
        ParentList: PRESOURCELIST,
        MaximumEntries: ULONG,
    ) -> NTSTATUS;
    /// Completes an IRP with a status.
    pub fn PcCompleteIrp(DeviceObject: PDEVICE_OBJECT, Irp: PIRP, Status: NTSTATUS) -> NTSTATUS;
    /// The physical device object under the adapter's functional device
    /// object (Learn: `portcls/nf-portcls-pcgetphysicaldeviceobject`;
    /// MinGW-w64's `portcls.h` has no prototype for it).
    pub fn PcGetPhysicalDeviceObject(
        DeviceObject: PDEVICE_OBJECT,
        PhysicalDeviceObject: *mut PDEVICE_OBJECT,
    ) -> NTSTATUS;
}

macro_rules! static_descriptor {
    ($($t:ty),*) => {$(
        // SAFETY: descriptor tables are immutable data that PortCls only
        // reads; their pointers lead to other immutable tables, so sharing
        // them between threads (as `static`s) is sound.
        unsafe impl Sync for $t {}
    )*};
}

static_descriptor!(
    PCFILTER_DESCRIPTOR,
    PCPIN_DESCRIPTOR,
    PCNODE_DESCRIPTOR,
    PCAUTOMATION_TABLE,
    PCPROPERTY_ITEM,
    PCEVENT_ITEM,
    PCMETHOD_ITEM,
    KSPIN_DESCRIPTOR,
    KSATTRIBUTE_LIST
);
