//! The port side: the COM objects PortCls hands a miniport.
//!
//! Each object is a heap block `#[repr(C)] { lpVtbl, refs, value }` with the
//! real `portcls-sys` vtable, reference counted, answering `QueryInterface`
//! for exactly its interface and bases. The miniport only ever sees the
//! interface pointers; the emulator keeps Rust handles ([`Port`],
//! [`PortStream`], [`InterruptLine`]) onto the shared state behind them.

use portcls_sys::{windows_abi, windows_fn};
use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use portcls_sys::{
    CM_PARTIAL_RESOURCE_DESCRIPTOR_u, CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Interrupt,
    CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Port, CmResourceShareDeviceExclusive, CmResourceTypeInterrupt,
    CmResourceTypeMemory, CmResourceTypePort, IID_IInterruptSync, IID_IPinCount, IID_IPort,
    IID_IPortTopology, IID_IPortWaveRT, IID_IPortWaveRTStream, IID_IPowerNotify, IID_IResourceList,
    IID_IUnknown, IID_IUnregisterPhysicalConnection, IID_IUnregisterSubdevice, IInterruptSync,
    IInterruptSyncVtbl, IMiniportTopology, IMiniportWaveRT, IPort, IPortTopologyVtbl, IPortVtbl,
    IPortWaveRTStream, IPortWaveRTStreamVtbl, IPortWaveRTVtbl, IResourceList, IResourceListVtbl,
    IUnknown, IUnregisterPhysicalConnectionVtbl, IUnregisterSubdeviceVtbl, MmCached, MmNonCached,
    MmWriteCombined, ACCESS_MASK, BOOLEAN, CM_PARTIAL_RESOURCE_DESCRIPTOR,
    CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE, CM_RESOURCE_PORT_IO, CM_RESOURCE_TYPE,
    DEVICE_REGISTRY_PROPERTY, GUID, KAFFINITY, MEMORY_CACHING_TYPE, NTSTATUS, NT_SUCCESS,
    PCFILTER_DESCRIPTOR, PCM_PARTIAL_RESOURCE_DESCRIPTOR, PCM_RESOURCE_LIST, PDEVICE_OBJECT,
    PHYSICAL_ADDRESS, PINTERRUPTSYNCROUTINE, PIRP, PKINTERRUPT, PMDL, POBJECT_ATTRIBUTES,
    PPCFILTER_DESCRIPTOR, PREGISTRYKEY, PRESOURCELIST, PUNICODE_STRING, PUNKNOWN, PVOID, SIZE_T,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND,
    STATUS_NOT_IMPLEMENTED, STATUS_SUCCESS, STATUS_UNSUCCESSFUL, ULONG,
};
use wavert_com::{unknown_vtbl, ComClass, ComObject, ComPtr, Interface, SingleInterface};

use crate::irql;
use crate::machine::{lock, Machine};

/// A port object's primary interface (`IPortWaveRT` or `IPortTopology`):
/// its vtable and the interface ids it answers; the unregister interfaces
/// beside it come from [`PortUnregister`].
///
/// Every port-side object is a `wavert_com::ComObject`, the same layout,
/// reference counting and `QueryInterface` the miniport's objects use (one
/// COM layer for both sides); those with one interface (the port stream,
/// the interrupt, the resource list) are `wavert_com::SingleInterface`
/// classes.
trait PortClass: ComClass {
    /// The vtable type (starts with the `IPort` slots).
    type Vtbl: 'static;
    /// The vtable (a `'static` reference: a generic `&T::VTBL` would not be
    /// promoted and would dangle).
    const VTBL: &'static Self::Vtbl;
    /// Interface ids `QueryInterface` answers with the port interface.
    const IIDS: &'static [GUID];
}

/// A port-side object's count in the machine's live objects: counted when
/// made, uncounted when the object is dropped (its last `Release`).
struct LiveObject(Arc<Machine>);

impl LiveObject {
    fn new(machine: &Arc<Machine>) -> Self {
        machine.object_created();
        Self(Arc::clone(machine))
    }
}

impl Drop for LiveObject {
    fn drop(&mut self) {
        self.0.object_destroyed();
    }
}

impl std::ops::Deref for LiveObject {
    type Target = Arc<Machine>;
    fn deref(&self) -> &Arc<Machine> {
        &self.0
    }
}

/// Creates an object with one reference, owned by the returned pointer.
fn create<T: ComClass, I: Interface>(value: T) -> ComPtr<I> {
    let object = ComObject::create(value).expect("the host allocator failed");
    // SAFETY: a new object whose first interface (offset 0) is `I`'s
    // vtable, with one reference that passes to the `ComPtr`.
    let ptr = unsafe { ComPtr::from_raw(object.as_ptr().cast::<I>()) };
    ptr.expect("ComObject::create never returns null")
}

/// The value of the object behind `this`.
///
/// # Safety
///
/// `this` must be the interface pointer of a live object of `T`.
unsafe fn object<'a, T: ComClass>(this: *mut c_void) -> &'a T {
    // SAFETY: guaranteed by the caller (every port-side object's first
    // interface, the one its methods are called through, is at offset 0).
    unsafe { ComObject::<T>::from_this::<0>(this) }.value()
}

// ---------------------------------------------------------------- ports --

/// The miniport a port was initialised with.
#[derive(Debug)]
enum BoundMiniport {
    Wave(ComPtr<IMiniportWaveRT>),
    Topology(ComPtr<IMiniportTopology>),
}

/// Which port class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortKind {
    /// `CLSID_PortWaveRT`.
    WaveRt,
    /// `CLSID_PortTopology`.
    Topology,
}

/// Where PortCls keeps the port handles of a device.
///
/// The emulator's `PcNewPort` adds each new port here, and `UnregisterSubdevice` takes an
/// unregistered port out again (PortCls lets go of a subdevice it no longer
/// exposes).
pub type PortList = Arc<Mutex<Vec<Port>>>;

#[derive(Debug, Default)]
struct PortState {
    miniport: Mutex<Option<BoundMiniport>>,
    description: AtomicUsize,
    /// The optional interfaces the miniport answered at `Init`
    /// (`IPinCount`, `IPowerNotify`), held until the port unbinds.
    optional: Mutex<Vec<ComPtr<IUnknown>>>,
}

struct PortValue<const WAVE: bool> {
    /// Counts the object among the machine's live port objects.
    live: LiveObject,
    state: Arc<PortState>,
    /// The device's port list, for `UnregisterSubdevice`.
    ports: std::sync::Weak<Mutex<Vec<Port>>>,
}

/// The interface pointers of a port object: `IPort` (and its WaveRT or
/// topology interface), `IUnregisterSubdevice` and
/// `IUnregisterPhysicalConnection`, which PortCls's ports answer to a
/// `QueryInterface` (Microsoft Learn, "Dynamic Audio Subdevices"; SYSVAD's
/// `CAdapterCommon::UnregisterSubdevice` and `DisconnectTopologies` query
/// them from the port).
#[repr(C)]
struct PortInterfaces {
    port: *const c_void,
    unregister_subdevice: &'static IUnregisterSubdeviceVtbl,
    unregister_connection: &'static IUnregisterPhysicalConnectionVtbl,
}

/// Byte offset of the `IUnregisterSubdevice` pointer in a port object.
const UNREGISTER_SUBDEVICE: usize = std::mem::offset_of!(PortInterfaces, unregister_subdevice);
/// Byte offset of the `IUnregisterPhysicalConnection` pointer.
const UNREGISTER_CONNECTION: usize = std::mem::offset_of!(PortInterfaces, unregister_connection);

impl PortClass for PortValue<true> {
    type Vtbl = IPortWaveRTVtbl;
    const VTBL: &'static IPortWaveRTVtbl = &IPortWaveRTVtbl {
        base__: port_vtbl::<Self>(),
    };
    const IIDS: &'static [GUID] = &[IID_IUnknown, IID_IPort, IID_IPortWaveRT];
}

impl PortClass for PortValue<false> {
    type Vtbl = IPortTopologyVtbl;
    const VTBL: &'static IPortTopologyVtbl = &IPortTopologyVtbl {
        base__: port_vtbl::<Self>(),
    };
    const IIDS: &'static [GUID] = &[IID_IUnknown, IID_IPort, IID_IPortTopology];
}

/// The unregister interfaces' vtables of a port class.
trait PortUnregister: PortClass {
    const UNREGISTER_SUBDEVICE_VTBL: &'static IUnregisterSubdeviceVtbl;
    const UNREGISTER_CONNECTION_VTBL: &'static IUnregisterPhysicalConnectionVtbl;
    /// Whether this port answers `IID_IUnregisterPhysicalConnection`. Learn's
    /// `IUnregisterPhysicalConnection` page lists the ports that implement it
    /// (`WaveCyclic`, `WavePci`, Topology, `DMus`, MIDI): the topology port does,
    /// the WaveRT port is not listed, so the emulator's WaveRT port refuses,
    /// and a driver that asks the wave port instead of the topology port (as
    /// SYSVAD's `DisconnectTopologies` does) is caught.
    const UNREGISTERS_CONNECTIONS: bool;
}

impl<const WAVE: bool> PortUnregister for PortValue<WAVE>
where
    Self: PortInit + ComClass,
{
    const UNREGISTER_SUBDEVICE_VTBL: &'static IUnregisterSubdeviceVtbl =
        &IUnregisterSubdeviceVtbl {
            base__: unknown_vtbl::<Self, UNREGISTER_SUBDEVICE>(),
            UnregisterSubdevice: unregister_subdevice::<WAVE>,
        };
    const UNREGISTER_CONNECTION_VTBL: &'static IUnregisterPhysicalConnectionVtbl =
        &IUnregisterPhysicalConnectionVtbl {
            base__: unknown_vtbl::<Self, UNREGISTER_CONNECTION>(),
            UnregisterPhysicalConnection: unregister_physical_connection::<WAVE>,
            UnregisterPhysicalConnectionToExternal: unregister_external_to,
            UnregisterPhysicalConnectionFromExternal: unregister_external_from,
        };
    const UNREGISTERS_CONNECTIONS: bool = !WAVE;
}

/// Makes a port class a `ComClass` with its three interfaces.
macro_rules! port_object_class {
    ($($value:ty),* $(,)?) => {$(
        // SAFETY: `PortInterfaces` is three vtable pointers; the one at each
        // offset `query` answers starts with `unknown_vtbl::<Self, offset>()`
        // (the port vtable's IUnknown part is `unknown_vtbl::<Self, 0>()`,
        // see `port_vtbl`).
        unsafe impl ComClass for $value {
            type Interfaces = PortInterfaces;
            fn interfaces() -> PortInterfaces {
                PortInterfaces {
                    port: ptr::from_ref(<Self as PortClass>::VTBL).cast(),
                    unregister_subdevice: <Self as PortUnregister>::UNREGISTER_SUBDEVICE_VTBL,
                    unregister_connection: <Self as PortUnregister>::UNREGISTER_CONNECTION_VTBL,
                }
            }
            fn query(&self, iid: &GUID) -> Option<usize> {
                if <Self as PortClass>::IIDS.contains(iid) {
                    Some(0)
                } else if *iid == IID_IUnregisterSubdevice {
                    Some(UNREGISTER_SUBDEVICE)
                } else if *iid == IID_IUnregisterPhysicalConnection
                    && <Self as PortUnregister>::UNREGISTERS_CONNECTIONS
                {
                    Some(UNREGISTER_CONNECTION)
                } else {
                    None
                }
            }
        }
    )*};
}

/// The rules of both unregister interfaces: `PASSIVE_LEVEL` (Learn), and
/// before PortCls handles the stop or removal (SYSVAD's and
/// simpleaudiosample's `PnpHandler` unregister, then call `PcDispatchIrp`).
fn unregister_rules(machine: &Machine, routine: &str, port: usize) {
    if let Some(what) = irql::above(routine, irql::PASSIVE_LEVEL) {
        machine.violation(what);
    }
    if machine.device_of_port_stopped(port) {
        machine.violation(format!(
            "{routine} after PortCls handled the stop or removal (unregister first, then PcDispatchIrp)"
        ));
    }
}

/// `IUnregisterSubdevice::UnregisterSubdevice(DeviceObject, Unknown)`:
/// removes the subdevice `Unknown` (an `IPort` this PortCls made) from the
/// registrations, which frees its `PcAddAdapterDevice` slot, and lets go of
/// the port. Unregistering a subdevice whose physical connections are still
/// registered is a violation (Learn's `IUnregisterPhysicalConnection` page:
/// the connections must be unregistered, or PortCls leaks them); those
/// connections stay recorded, so the leak shows.
#[windows_abi]
unsafe extern "system" fn unregister_subdevice<const WAVE: bool>(
    this: *mut c_void,
    _device: PDEVICE_OBJECT,
    unknown: PUNKNOWN,
) -> NTSTATUS
where
    PortValue<WAVE>: ComClass,
{
    // SAFETY: this vtable is only installed at this offset of a port object.
    let port =
        unsafe { ComObject::<PortValue<WAVE>>::from_this::<UNREGISTER_SUBDEVICE>(this) }.value();
    let machine = &*port.live;
    unregister_rules(
        machine,
        "IUnregisterSubdevice::UnregisterSubdevice",
        unknown.addr(),
    );
    if unknown.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let address = unknown.addr();
    let registrations = machine.registrations();
    let Some(name) = registrations.name_of(address).map(ToOwned::to_owned) else {
        // Not (or no longer) registered: nothing to do. ReactOS's
        // `CUnregisterSubdevice::UnregisterSubdevice` succeeds here too.
        machine.log(format!(
            "PortCls: UnregisterSubdevice of {address:#x}, which is not registered"
        ));
        return STATUS_SUCCESS;
    };
    let dangling: Vec<String> = registrations
        .connections
        .iter()
        .filter(|c| c.from == name || c.to == name)
        .map(|c| format!("{} pin {} -> {} pin {}", c.from, c.from_pin, c.to, c.to_pin))
        .collect();
    if !dangling.is_empty() {
        machine.violation(format!(
            "UnregisterSubdevice({name}) while its physical connections are registered              ({}); unregister them first (IUnregisterPhysicalConnection)",
            dangling.join(", ")
        ));
    }
    machine.unregister_subdevice(address);
    machine.log(format!("PortCls: UnregisterSubdevice {name}"));
    // PortCls lets go of the subdevice: its port handle (and through it the
    // miniport, once nobody else holds the port) goes. Dropped outside the
    // lock: the last miniport reference may run driver code.
    let released = port.ports.upgrade().and_then(|list| {
        let mut list = lock(&list);
        let index = list.iter().position(|p| p.address() == address)?;
        Some(list.remove(index))
    });
    if let Some(released) = released {
        released.unbind();
    }
    STATUS_SUCCESS
}

/// `IUnregisterPhysicalConnection::UnregisterPhysicalConnection`: removes a
/// connection registered with exactly these ports and pins.
/// `STATUS_NOT_FOUND` for one that is not registered (the emulator's
/// choice: Learn names no status for it; `ReactOS` does not implement the
/// method at all).
#[windows_abi]
unsafe extern "system" fn unregister_physical_connection<const WAVE: bool>(
    this: *mut c_void,
    _device: PDEVICE_OBJECT,
    from: PUNKNOWN,
    from_pin: ULONG,
    to: PUNKNOWN,
    to_pin: ULONG,
) -> NTSTATUS
where
    PortValue<WAVE>: ComClass,
{
    // SAFETY: this vtable is only installed at this offset of a port object.
    let port =
        unsafe { ComObject::<PortValue<WAVE>>::from_this::<UNREGISTER_CONNECTION>(this) }.value();
    let machine = &*port.live;
    unregister_rules(
        machine,
        "IUnregisterPhysicalConnection::UnregisterPhysicalConnection",
        from.addr(),
    );
    if from.is_null() || to.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    match machine.unregister_physical_connection(from.addr(), from_pin, to.addr(), to_pin) {
        Some(c) => {
            machine.log(format!(
                "PortCls: UnregisterPhysicalConnection {} pin {} -> {} pin {}",
                c.from, c.from_pin, c.to, c.to_pin
            ));
            STATUS_SUCCESS
        }
        None => STATUS_NOT_FOUND,
    }
}

/// `...ToExternal`: the driver registers no external connections.
#[windows_abi]
const unsafe extern "system" fn unregister_external_to(
    _this: *mut c_void,
    _device: PDEVICE_OBJECT,
    _from: PUNKNOWN,
    _from_pin: ULONG,
    _to: PUNICODE_STRING,
    _to_pin: ULONG,
) -> NTSTATUS {
    STATUS_NOT_FOUND
}

/// `...FromExternal`: the driver registers no external connections.
#[windows_abi]
const unsafe extern "system" fn unregister_external_from(
    _this: *mut c_void,
    _device: PDEVICE_OBJECT,
    _from: PUNICODE_STRING,
    _from_pin: ULONG,
    _to: PUNKNOWN,
    _to_pin: ULONG,
) -> NTSTATUS {
    STATUS_NOT_FOUND
}

trait PortInit: PortClass {
    fn bind(
        &self,
        this: *mut c_void,
        miniport: &ComPtr<IUnknown>,
        adapter: PUNKNOWN,
        resources: PRESOURCELIST,
    ) -> NTSTATUS;
}

/// Asks the miniport for its filter descriptor through its vtable.
fn description_of(
    get: windows_fn!(unsafe fn(*mut c_void, *mut PPCFILTER_DESCRIPTOR) -> NTSTATUS),
    this: *mut c_void,
) -> Option<usize> {
    let mut desc: PPCFILTER_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `this` is the live miniport the slot belongs to; `desc` outlives the call.
    let status = unsafe { get(this, &raw mut desc) };
    (NT_SUCCESS(status) && !desc.is_null()).then(|| desc.expose_provenance())
}

impl PortInit for PortValue<true> {
    fn bind(
        &self,
        this: *mut c_void,
        miniport: &ComPtr<IUnknown>,
        adapter: PUNKNOWN,
        resources: PRESOURCELIST,
    ) -> NTSTATUS {
        let Ok(wave) = miniport.query::<IMiniportWaveRT>() else {
            return STATUS_INVALID_PARAMETER;
        };
        let init = wave.vtbl().Init;
        // SAFETY: the miniport is live; the port passes itself, its adapter and resources.
        let status = unsafe { init(wave.this(), adapter, resources, this.cast()) };
        if !NT_SUCCESS(status) {
            return status;
        }
        let Some(desc) = description_of(wave.vtbl().base__.GetDescription, wave.this()) else {
            return STATUS_UNSUCCESSFUL;
        };
        self.state.description.store(desc, Ordering::Release);
        // After the descriptor, the port asks for the optional interfaces
        // and keeps what it gets until the device goes (ReactOS
        // port_wavert.cpp: IPinCount, then IPowerNotify).
        let optional = [
            (IID_IPinCount, "IPinCount"),
            (IID_IPowerNotify, "IPowerNotify"),
        ]
        .into_iter()
        .filter_map(|(iid, name)| query_as_port(&self.live, miniport, &iid, name))
        .collect();
        *lock(&self.state.optional) = optional;
        *lock(&self.state.miniport) = Some(BoundMiniport::Wave(wave));
        STATUS_SUCCESS
    }
}

/// What the port poisons a pointer out-parameter with before a call: no
/// MDL or object lives there, so a miniport that leaves it unset is caught.
#[allow(
    clippy::cast_possible_truncation,
    reason = "the emulator runs on 64-bit hosts only, as the x86-64 code it hosts"
)]
pub const POISON_POINTER: usize = 0xBAAD_F00D_BAAD_F00D_u64 as usize;

/// `QueryInterface` as the port makes it for an optional interface: the out
/// pointer poisoned first, and held to COM's rule (NULL on failure, an object
/// on success).
fn query_as_port(
    machine: &Machine,
    object: &ComPtr<IUnknown>,
    iid: &GUID,
    name: &str,
) -> Option<ComPtr<IUnknown>> {
    let mut out: PVOID = ptr::without_provenance_mut(POISON_POINTER);
    let qi = object.vtbl().QueryInterface;
    // SAFETY: the object is live; the IID and `out` outlive the call.
    let status = unsafe { qi(object.this(), iid, &raw mut out) };
    if !NT_SUCCESS(status) {
        if !out.is_null() {
            machine.violation(format!(
                "QueryInterface({name}) failed with {status:#010x} but left the out pointer \
                 {out:p} (COM: NULL on failure)"
            ));
        }
        return None;
    }
    if out.addr() == POISON_POINTER {
        machine.violation(format!(
            "QueryInterface({name}) succeeded without writing the out pointer"
        ));
        return None;
    }
    // SAFETY: a successful QueryInterface hands the caller one reference.
    let got = unsafe { ComPtr::from_raw(out.cast::<IUnknown>()) };
    if got.is_none() {
        machine.violation(format!("QueryInterface({name}) succeeded with NULL"));
    }
    got
}

impl PortInit for PortValue<false> {
    fn bind(
        &self,
        this: *mut c_void,
        miniport: &ComPtr<IUnknown>,
        adapter: PUNKNOWN,
        resources: PRESOURCELIST,
    ) -> NTSTATUS {
        let Ok(topo) = miniport.query::<IMiniportTopology>() else {
            return STATUS_INVALID_PARAMETER;
        };
        let init = topo.vtbl().Init;
        // SAFETY: the miniport is live; the port passes itself, its adapter and resources.
        let status = unsafe { init(topo.this(), adapter, resources, this.cast()) };
        if !NT_SUCCESS(status) {
            return status;
        }
        let Some(desc) = description_of(topo.vtbl().base__.GetDescription, topo.this()) else {
            return STATUS_UNSUCCESSFUL;
        };
        self.state.description.store(desc, Ordering::Release);
        *lock(&self.state.miniport) = Some(BoundMiniport::Topology(topo));
        STATUS_SUCCESS
    }
}

#[windows_abi]
unsafe extern "system" fn port_init<T: PortInit>(
    this: *mut c_void,
    _device: PDEVICE_OBJECT,
    _irp: PIRP,
    miniport: PUNKNOWN,
    adapter: PUNKNOWN,
    resources: PRESOURCELIST,
) -> NTSTATUS {
    // SAFETY: the caller passes a live miniport (or null, refused below).
    let Some(miniport) = (unsafe { ComPtr::from_raw_borrowed(miniport) }) else {
        return STATUS_INVALID_PARAMETER;
    };
    // SAFETY: this vtable is only installed in `PortObject<T>`.
    let port = unsafe { object::<T>(this) };
    port.bind(this, &miniport, adapter, resources)
}

#[windows_abi]
const unsafe extern "system" fn port_get_device_property(
    _this: *mut c_void,
    _property: DEVICE_REGISTRY_PROPERTY,
    _len: ULONG,
    _buffer: PVOID,
    result_len: *mut ULONG,
) -> NTSTATUS {
    if !result_len.is_null() {
        // SAFETY: non-null and writable (caller's contract).
        unsafe { result_len.write(0) };
    }
    STATUS_NOT_IMPLEMENTED
}

#[allow(clippy::too_many_arguments, reason = "the slot's C signature")]
#[windows_abi]
const unsafe extern "system" fn port_new_registry_key(
    _this: *mut c_void,
    out: *mut PREGISTRYKEY,
    _outer: PUNKNOWN,
    _key_type: ULONG,
    _access: ACCESS_MASK,
    _attributes: POBJECT_ATTRIBUTES,
    _options: ULONG,
    _disposition: *mut ULONG,
) -> NTSTATUS {
    if !out.is_null() {
        // SAFETY: non-null and writable (caller's contract).
        unsafe { out.write(ptr::null_mut()) };
    }
    STATUS_NOT_IMPLEMENTED
}

const fn port_vtbl<T: PortInit>() -> IPortVtbl {
    IPortVtbl {
        base__: unknown_vtbl::<T, 0>(),
        Init: port_init::<T>,
        GetDeviceProperty: port_get_device_property,
        NewRegistryKey: port_new_registry_key,
    }
}

/// The emulator's handle on a port object (`PcNewPort`).
#[derive(Debug)]
pub struct Port {
    kind: PortKind,
    interface: ComPtr<IPort>,
    state: Arc<PortState>,
}

impl Port {
    /// `PcNewPort(CLSID_PortWaveRT | CLSID_PortTopology)`, on a device
    /// whose port handles are `ports` (where `UnregisterSubdevice` finds the
    /// port's handle to let go of).
    #[must_use]
    pub fn new(machine: &Arc<Machine>, kind: PortKind, ports: &PortList) -> Self {
        let state = Arc::new(PortState::default());
        let interface = match kind {
            PortKind::WaveRt => create::<_, IPort>(PortValue::<true> {
                live: LiveObject::new(machine),
                state: Arc::clone(&state),
                ports: Arc::downgrade(ports),
            }),
            PortKind::Topology => create::<_, IPort>(PortValue::<false> {
                live: LiveObject::new(machine),
                state: Arc::clone(&state),
                ports: Arc::downgrade(ports),
            }),
        };
        Self {
            kind,
            interface,
            state,
        }
    }

    /// The port class.
    #[must_use]
    pub const fn kind(&self) -> PortKind {
        self.kind
    }

    /// The `IPort` interface (what the adapter gets from `PcNewPort`).
    #[must_use]
    pub const fn interface(&self) -> &ComPtr<IPort> {
        &self.interface
    }

    /// The object's address (how registrations identify it).
    #[must_use]
    pub fn address(&self) -> usize {
        self.interface.as_raw().addr()
    }

    /// `IPort::Init` through the vtable, as the adapter's `StartDevice` calls it.
    ///
    /// # Errors
    ///
    /// The status the port (and so the miniport's `Init`) returned.
    pub fn init(
        &self,
        miniport: &ComPtr<IUnknown>,
        resources: Option<&ComPtr<IResourceList>>,
    ) -> Result<(), NTSTATUS> {
        let resources = resources.map_or(ptr::null_mut(), ComPtr::as_raw);
        // SAFETY: the port is ours and live; the caller holds the miniport
        // and the resource list for the call.
        unsafe { Self::init_raw(&self.interface, miniport.as_raw(), resources) }
    }

    /// `IPort::Init` through `port`'s vtable with raw pointers, as an
    /// adapter's `StartDevice` calls it (no device object or IRP: the
    /// emulated port needs neither).
    ///
    /// # Errors
    ///
    /// The status the port (and so the miniport's `Init`) returned.
    ///
    /// # Safety
    ///
    /// `miniport` must be null or a live COM object, and `resources` null or
    /// a live `IResourceList`, both for the duration of the call.
    pub unsafe fn init_raw(
        port: &ComPtr<IPort>,
        miniport: PUNKNOWN,
        resources: PRESOURCELIST,
    ) -> Result<(), NTSTATUS> {
        let init = port.vtbl().Init;
        // SAFETY: the port is live (`port` holds a reference); the pointers
        // are valid by the caller's contract.
        let status = unsafe {
            init(
                port.this(),
                ptr::null_mut(),
                ptr::null_mut(),
                miniport,
                ptr::null_mut(),
                resources,
            )
        };
        if NT_SUCCESS(status) {
            Ok(())
        } else {
            Err(status)
        }
    }

    /// The wave miniport bound by `Init`.
    #[must_use]
    pub fn wave_miniport(&self) -> Option<ComPtr<IMiniportWaveRT>> {
        match &*lock(&self.state.miniport) {
            Some(BoundMiniport::Wave(w)) => Some(w.clone()),
            _ => None,
        }
    }

    /// The topology miniport bound by `Init`.
    #[must_use]
    pub fn topology_miniport(&self) -> Option<ComPtr<IMiniportTopology>> {
        match &*lock(&self.state.miniport) {
            Some(BoundMiniport::Topology(t)) => Some(t.clone()),
            _ => None,
        }
    }

    /// The filter descriptor the miniport returned from `GetDescription`.
    #[must_use]
    pub fn description(&self) -> Option<&'static PCFILTER_DESCRIPTOR> {
        let addr = self.state.description.load(Ordering::Acquire);
        // SAFETY: a non-zero value is the descriptor the bound miniport
        // returned; PortCls requires it to outlive the filter (static data).
        (addr != 0).then(|| unsafe { &*ptr::with_exposed_provenance::<PCFILTER_DESCRIPTOR>(addr) })
    }

    /// Drops the port's miniport reference, as PortCls does when the device
    /// goes away (breaking the miniport <-> port reference cycle).
    pub fn unbind(&self) {
        lock(&self.state.optional).clear();
        lock(&self.state.miniport).take();
    }
}

// --------------------------------------------------------- port stream --

#[derive(Debug, Default)]
struct PortStreamState {
    mdls: Mutex<HashSet<usize>>,
    /// Kernel mappings by base address: the MDL mapped and the cache type.
    mappings: Mutex<HashMap<usize, (usize, MEMORY_CACHING_TYPE)>>,
}

struct PortStreamValue {
    machine: LiveObject,
    state: Arc<PortStreamState>,
}

// SAFETY: `VTBL` is the `IPortWaveRTStream` vtable with `unknown_vtbl::<Self, 0>()` as
// its IUnknown part, and `IIDS` names only IUnknown and `IPortWaveRTStream`.
unsafe impl SingleInterface for PortStreamValue {
    type Vtbl = IPortWaveRTStreamVtbl;
    const VTBL: &'static IPortWaveRTStreamVtbl = &IPortWaveRTStreamVtbl {
        base__: unknown_vtbl::<Self, 0>(),
        AllocatePagesForMdl: allocate_pages_for_mdl,
        AllocateContiguousPagesForMdl: allocate_contiguous_pages_for_mdl,
        MapAllocatedPages: map_allocated_pages,
        UnmapAllocatedPages: unmap_allocated_pages,
        FreePagesFromMdl: free_pages_from_mdl,
        GetPhysicalPagesCount: get_physical_pages_count,
        GetPhysicalPageAddress: get_physical_page_address,
    };
    const IIDS: &'static [GUID] = &[IID_IUnknown, IID_IPortWaveRTStream];
}

/// The port stream behind `this`.
///
/// # Safety
///
/// `this` must be a live port stream object.
unsafe fn port_stream<'a>(this: *mut c_void) -> &'a PortStreamValue {
    // SAFETY: guaranteed by the caller.
    unsafe { object::<PortStreamValue>(this) }
}

const fn mdl_handle(key: usize) -> PMDL {
    ptr::without_provenance_mut(key)
}

/// A `PHYSICAL_ADDRESS` limit as an address. The type is a signed
/// `LONGLONG`, but it holds an unsigned address: drivers pass `-1`
/// (`MAXULONG64`) for "any page", so the bits are reinterpreted, not
/// converted.
const fn limit(address: PHYSICAL_ADDRESS) -> u64 {
    u64::from_ne_bytes(address.QuadPart.to_ne_bytes())
}

/// Every `IPortWaveRTStream` method is documented for `PASSIVE_LEVEL` only
/// (Learn, each method's requirements table): a call from above it (under a
/// spin lock, from a DPC) is a violation. What the stand-in allocates
/// itself is the kernel's, not the driver's.
fn stand_in(machine: &Machine, routine: &str) -> irql::KernelScope {
    irql::require_at_most(machine, routine, irql::PASSIVE_LEVEL);
    irql::preemption_point();
    irql::KernelScope::enter()
}

#[windows_abi]
unsafe extern "system" fn allocate_pages_for_mdl(
    this: *mut c_void,
    high: PHYSICAL_ADDRESS,
    bytes: SIZE_T,
) -> PMDL {
    // SAFETY: this vtable is only installed in port stream objects.
    let s = unsafe { port_stream(this) };
    let _kernel = stand_in(&s.machine, "IPortWaveRTStream::AllocatePagesForMdl");
    s.machine
        .memory
        .allocate_pages(limit(high), bytes)
        .map_or(ptr::null_mut(), |mdl| {
            lock(&s.state.mdls).insert(mdl);
            mdl_handle(mdl)
        })
}

#[windows_abi]
unsafe extern "system" fn allocate_contiguous_pages_for_mdl(
    this: *mut c_void,
    low: PHYSICAL_ADDRESS,
    high: PHYSICAL_ADDRESS,
    bytes: SIZE_T,
) -> PMDL {
    // SAFETY: this vtable is only installed in port stream objects.
    let s = unsafe { port_stream(this) };
    let _kernel = stand_in(
        &s.machine,
        "IPortWaveRTStream::AllocateContiguousPagesForMdl",
    );
    s.machine
        .memory
        .allocate_contiguous(limit(low), limit(high), bytes)
        .map_or(ptr::null_mut(), |mdl| {
            lock(&s.state.mdls).insert(mdl);
            mdl_handle(mdl)
        })
}

#[windows_abi]
unsafe extern "system" fn map_allocated_pages(
    this: *mut c_void,
    mdl: PMDL,
    cache: MEMORY_CACHING_TYPE,
) -> PVOID {
    // SAFETY: this vtable is only installed in port stream objects.
    let s = unsafe { port_stream(this) };
    let _kernel = stand_in(&s.machine, "IPortWaveRTStream::MapAllocatedPages");
    if !is_usable_cache_type(cache) {
        s.machine.violation(format!(
            "MapAllocatedPages with cache type {cache}: only MmNonCached, MmCached and \
             MmWriteCombined are for drivers (the rest are reserved for the system)"
        ));
    }
    s.machine
        .memory
        .map(mdl.addr())
        .map_or(ptr::null_mut(), |base| {
            lock(&s.state.mappings).insert(base.addr(), (mdl.addr(), cache));
            base.cast()
        })
}

/// `MmNonCached`, `MmCached` or `MmWriteCombined`: the `MEMORY_CACHING_TYPE`
/// values a driver may use (Learn: the others are reserved for system use).
#[must_use]
pub const fn is_usable_cache_type(cache: MEMORY_CACHING_TYPE) -> bool {
    cache == MmNonCached || cache == MmCached || cache == MmWriteCombined
}

#[windows_abi]
unsafe extern "system" fn unmap_allocated_pages(this: *mut c_void, base: PVOID, mdl: PMDL) {
    // SAFETY: this vtable is only installed in port stream objects.
    let s = unsafe { port_stream(this) };
    let _kernel = stand_in(&s.machine, "IPortWaveRTStream::UnmapAllocatedPages");
    lock(&s.state.mappings).remove(&base.addr());
    s.machine.memory.unmap(base.cast(), mdl.addr());
}

#[windows_abi]
unsafe extern "system" fn free_pages_from_mdl(this: *mut c_void, mdl: PMDL) {
    // SAFETY: this vtable is only installed in port stream objects.
    let s = unsafe { port_stream(this) };
    let _kernel = stand_in(&s.machine, "IPortWaveRTStream::FreePagesFromMdl");
    lock(&s.state.mdls).remove(&mdl.addr());
    s.machine.memory.free(mdl.addr());
}

#[windows_abi]
unsafe extern "system" fn get_physical_pages_count(this: *mut c_void, mdl: PMDL) -> ULONG {
    // SAFETY: this vtable is only installed in port stream objects.
    let s = unsafe { port_stream(this) };
    let _kernel = stand_in(&s.machine, "IPortWaveRTStream::GetPhysicalPagesCount");
    s.machine
        .memory
        .page_count(mdl.addr())
        .and_then(|n| ULONG::try_from(n).ok())
        .unwrap_or(0)
}

/// The C++ method returns `PHYSICAL_ADDRESS` by value: at the ABI level the
/// caller's result slot arrives right after `this` and goes back in RAX.
#[windows_abi]
unsafe extern "system" fn get_physical_page_address(
    this: *mut c_void,
    result: *mut PHYSICAL_ADDRESS,
    mdl: PMDL,
    index: ULONG,
) -> *mut PHYSICAL_ADDRESS {
    // SAFETY: this vtable is only installed in port stream objects.
    let s = unsafe { port_stream(this) };
    let _kernel = stand_in(&s.machine, "IPortWaveRTStream::GetPhysicalPageAddress");
    let address = s
        .machine
        .memory
        .page_address(mdl.addr(), index as usize)
        .and_then(|a| i64::try_from(a).ok())
        .unwrap_or(0);
    if result.is_null() {
        s.machine
            .violation("GetPhysicalPageAddress called without a result slot".to_owned());
    } else {
        // SAFETY: the caller's hidden result slot is writable (C++ ABI).
        unsafe { result.write(PHYSICAL_ADDRESS { QuadPart: address }) };
    }
    result
}

/// The emulator's handle on an `IPortWaveRTStream` it gave a miniport.
#[derive(Debug)]
pub struct PortStream {
    interface: ComPtr<IPortWaveRTStream>,
    state: Arc<PortStreamState>,
}

impl PortStream {
    /// A new port stream (one per pin instance).
    #[must_use]
    pub fn new(machine: &Arc<Machine>) -> Self {
        let state = Arc::new(PortStreamState::default());
        let interface = create(PortStreamValue {
            machine: LiveObject::new(machine),
            state: Arc::clone(&state),
        });
        Self { interface, state }
    }

    /// The interface handed to `NewStream`.
    #[must_use]
    pub const fn interface(&self) -> &ComPtr<IPortWaveRTStream> {
        &self.interface
    }

    /// MDLs this stream allocated and has not freed.
    #[must_use]
    pub fn live_mdls(&self) -> usize {
        lock(&self.state.mdls).len()
    }

    /// Mappings this stream made and has not unmapped.
    #[must_use]
    pub fn live_mappings(&self) -> usize {
        lock(&self.state.mappings).len()
    }

    /// The cache types of the live kernel mappings of `mdl`.
    #[must_use]
    pub fn mapping_cache_types(&self, mdl: PMDL) -> Vec<MEMORY_CACHING_TYPE> {
        lock(&self.state.mappings)
            .values()
            .filter(|(m, _)| *m == mdl.addr())
            .map(|(_, cache)| *cache)
            .collect()
    }
}

// ------------------------------------------------------ interrupt sync --

#[derive(Clone, Copy)]
struct ServiceRoutine {
    routine: windows_fn!(unsafe fn(*mut IInterruptSync, PVOID) -> NTSTATUS),
    context: PVOID,
}
// SAFETY: the context is the driver's, which PortCls passes to its ISR from
// whatever processor takes the interrupt; the driver makes it safe to do so.
unsafe impl Send for ServiceRoutine {}

#[derive(Default)]
struct InterruptState {
    routines: Mutex<Vec<ServiceRoutine>>,
    connected: AtomicBool,
    /// Held while an ISR or a synchronized routine runs (the interrupt spin lock).
    spin: Mutex<()>,
    /// Whether the routines are the host-built driver's, whose heap use at
    /// device IRQL is checked ([`InterruptLine::check_driver_heap`]).
    driver_heap_checked: AtomicBool,
    this: AtomicUsize,
    delivered: AtomicU32,
}

struct InterruptValue {
    machine: LiveObject,
    state: Arc<InterruptState>,
}

// SAFETY: `VTBL` is the `IInterruptSync` vtable with `unknown_vtbl::<Self, 0>()` as
// its IUnknown part, and `IIDS` names only IUnknown and `IInterruptSync`.
unsafe impl SingleInterface for InterruptValue {
    type Vtbl = IInterruptSyncVtbl;
    const VTBL: &'static IInterruptSyncVtbl = &IInterruptSyncVtbl {
        base__: unknown_vtbl::<Self, 0>(),
        CallSynchronizedRoutine: call_synchronized_routine,
        GetKInterrupt: get_kinterrupt,
        Connect: connect,
        Disconnect: disconnect,
        RegisterServiceRoutine: register_service_routine,
    };
    const IIDS: &'static [GUID] = &[IID_IUnknown, IID_IInterruptSync];
}

/// # Safety
///
/// `this` must be a live interrupt sync object.
unsafe fn interrupt<'a>(this: *mut c_void) -> &'a InterruptValue {
    // SAFETY: guaranteed by the caller.
    unsafe { object::<InterruptValue>(this) }
}

#[windows_abi]
unsafe extern "system" fn call_synchronized_routine(
    this: *mut c_void,
    routine: PINTERRUPTSYNCROUTINE,
    context: PVOID,
) -> NTSTATUS {
    let Some(routine) = routine else {
        return STATUS_INVALID_PARAMETER;
    };
    // SAFETY: this vtable is only installed in interrupt sync objects.
    let i = unsafe { interrupt(this) };
    let kernel = irql::KernelScope::enter();
    let _held = lock(&i.state.spin);
    // The routine runs at the device's IRQL, as under the interrupt spinlock.
    // SAFETY: the driver's routine, called with its own context as PortCls would.
    let call = || unsafe { routine(this.cast(), context) };
    let what = "a CallSynchronizedRoutine routine";
    let status = if i.state.driver_heap_checked.load(Ordering::Acquire) {
        irql::run_driver_routine(&i.machine, irql::DEVICE_IRQL, what, call)
    } else {
        irql::run_routine(&i.machine, irql::DEVICE_IRQL, what, call)
    };
    drop(kernel);
    status
}

#[windows_abi]
const unsafe extern "system" fn get_kinterrupt(_this: *mut c_void) -> PKINTERRUPT {
    ptr::null_mut()
}

#[windows_abi]
unsafe extern "system" fn connect(this: *mut c_void) -> NTSTATUS {
    // SAFETY: this vtable is only installed in interrupt sync objects.
    let i = unsafe { interrupt(this) };
    if lock(&i.state.routines).is_empty() {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    i.state.connected.store(true, Ordering::Release);
    STATUS_SUCCESS
}

#[windows_abi]
unsafe extern "system" fn disconnect(this: *mut c_void) {
    // SAFETY: this vtable is only installed in interrupt sync objects.
    let i = unsafe { interrupt(this) };
    i.state.connected.store(false, Ordering::Release);
}

#[windows_abi]
unsafe extern "system" fn register_service_routine(
    this: *mut c_void,
    routine: PINTERRUPTSYNCROUTINE,
    context: PVOID,
    first: BOOLEAN,
) -> NTSTATUS {
    let Some(routine) = routine else {
        return STATUS_INVALID_PARAMETER;
    };
    // SAFETY: this vtable is only installed in interrupt sync objects.
    let i = unsafe { interrupt(this) };
    let entry = ServiceRoutine { routine, context };
    let mut routines = lock(&i.state.routines);
    if first == 0 {
        routines.push(entry);
    } else {
        routines.insert(0, entry);
    }
    STATUS_SUCCESS
}

/// The emulator's side of an interrupt line (`PcNewInterruptSync`).
pub struct InterruptLine {
    interface: ComPtr<IInterruptSync>,
    state: Arc<InterruptState>,
    machine: Arc<Machine>,
}

impl std::fmt::Debug for InterruptLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterruptLine")
            .field("connected", &self.state.connected.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl InterruptLine {
    /// A new interrupt sync object (mode "normal": ISRs run in order until
    /// one claims the interrupt).
    #[must_use]
    pub fn new(machine: &Arc<Machine>) -> Self {
        let state = Arc::new(InterruptState::default());
        let interface: ComPtr<IInterruptSync> = create(InterruptValue {
            machine: LiveObject::new(machine),
            state: Arc::clone(&state),
        });
        state
            .this
            .store(interface.as_raw().addr(), Ordering::Release);
        Self {
            interface,
            state,
            machine: Arc::clone(machine),
        }
    }

    /// The interface handed to the driver.
    #[must_use]
    pub const fn interface(&self) -> &ComPtr<IInterruptSync> {
        &self.interface
    }

    /// The device raises the line: runs the registered ISRs (if connected)
    /// under the interrupt lock. Returns whether one claimed it.
    #[must_use]
    pub fn raise(&self) -> bool {
        if !self.state.connected.load(Ordering::Acquire) {
            return false;
        }
        let routines = lock(&self.state.routines).clone();
        let _held = lock(&self.state.spin);
        self.state.delivered.fetch_add(1, Ordering::Relaxed);
        let this = self.interface.as_raw();
        let checked = self.state.driver_heap_checked.load(Ordering::Acquire);
        routines.iter().any(|r| {
            // ISRs run at the line's device IRQL.
            // SAFETY: the driver registered this routine and context for its ISR.
            let isr = || unsafe { (r.routine)(this, r.context) };
            let what = "an interrupt service routine";
            let status = if checked {
                irql::run_driver_routine(&self.machine, irql::DEVICE_IRQL, what, isr)
            } else {
                irql::run_routine(&self.machine, irql::DEVICE_IRQL, what, isr)
            };
            NT_SUCCESS(status)
        })
    }

    /// Runs `f` under the interrupt lock, as an ISR would hold it (the
    /// emulator's look at the device, atomic with the driver's
    /// synchronized routines).
    pub fn with_interrupt_lock<R>(&self, f: impl FnOnce() -> R) -> R {
        let _held = lock(&self.state.spin);
        f()
    }

    /// The routines on this line are the host-built driver's: their heap
    /// allocations at device IRQL are reported (see [`crate::irql`]).
    pub fn check_driver_heap(&self) {
        self.state
            .driver_heap_checked
            .store(true, Ordering::Release);
    }

    /// Interrupts delivered to the ISRs.
    #[must_use]
    pub fn delivered(&self) -> u32 {
        self.state.delivered.load(Ordering::Relaxed)
    }
}

// ------------------------------------------------------- resource list --

/// One resource of the emulated device: a real
/// `CM_PARTIAL_RESOURCE_DESCRIPTOR` (`portcls-sys`, checked against
/// MinGW-w64's `wdm.h`), which the list hands out by pointer.
///
/// Every constructor initialises all 16 bytes of the union before it writes
/// its member, so any view of it reads initialised integers.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct ResourceDescriptor(CM_PARTIAL_RESOURCE_DESCRIPTOR);

/// A `CmResourceType*` or `CmResourceShare*` value (an `int` in C) as the
/// descriptor's `UCHAR` field stores it.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "resource types and share dispositions are below 256"
)]
const fn uchar(value: i32) -> u8 {
    value as u8
}

impl ResourceDescriptor {
    /// A descriptor of `kind`, shared device-exclusive, its union all zero.
    const fn zeroed(kind: CM_RESOURCE_TYPE, flags: u16) -> Self {
        Self(CM_PARTIAL_RESOURCE_DESCRIPTOR {
            Type: uchar(kind),
            ShareDisposition: uchar(CmResourceShareDeviceExclusive),
            Flags: flags,
            // The widest member (16 bytes): the whole union is initialised.
            u: CM_PARTIAL_RESOURCE_DESCRIPTOR_u {
                Interrupt: CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Interrupt {
                    Level: 0,
                    Vector: 0,
                    Affinity: 0,
                },
            },
        })
    }

    /// The resource type (`CmResourceType*`).
    #[must_use]
    pub const fn kind(&self) -> CM_RESOURCE_TYPE {
        self.0.Type as CM_RESOURCE_TYPE
    }

    /// The descriptor as the miniport sees it.
    #[must_use]
    pub const fn descriptor(&self) -> &CM_PARTIAL_RESOURCE_DESCRIPTOR {
        &self.0
    }

    /// An I/O port range (`u.Port.Start`, `u.Port.Length`).
    #[must_use]
    pub const fn port(start: u64, length: u32) -> Self {
        let mut d = Self::zeroed(CmResourceTypePort, CM_RESOURCE_PORT_IO);
        d.0.u.Port = CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Port {
            Start: PHYSICAL_ADDRESS {
                QuadPart: i64::from_ne_bytes(start.to_ne_bytes()),
            },
            Length: length,
        };
        d
    }

    /// A memory range (`u.Memory.Start`, `u.Memory.Length`), read-write,
    /// not prefetchable: a device's register BAR.
    #[must_use]
    pub const fn memory(start: u64, length: u32) -> Self {
        let mut d = Self::zeroed(CmResourceTypeMemory, 0);
        d.0.u.Memory = CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Port {
            Start: PHYSICAL_ADDRESS {
                QuadPart: i64::from_ne_bytes(start.to_ne_bytes()),
            },
            Length: length,
        };
        d
    }

    /// An interrupt (`u.Interrupt.Level`, `Vector`, `Affinity`).
    #[must_use]
    pub fn interrupt(level: u16, vector: u32, affinity: u64) -> Self {
        let mut d = Self::zeroed(
            CmResourceTypeInterrupt,
            CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE,
        );
        d.0.u.Interrupt = CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Interrupt {
            Level: u32::from(level),
            Vector: vector,
            Affinity: KAFFINITY::try_from(affinity).unwrap_or(KAFFINITY::MAX),
        };
        d
    }

    /// The union as its widest member (every byte of it).
    const fn union_bytes(&self) -> CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Interrupt {
        // SAFETY: every constructor initialises the whole union (`zeroed`)
        // and all its members are plain integers, so this view is valid.
        unsafe { self.0.u.Interrupt }
    }

    /// The fields other than the union.
    const fn header(&self) -> (u8, u8, u16) {
        (self.0.Type, self.0.ShareDisposition, self.0.Flags)
    }
}

impl PartialEq for ResourceDescriptor {
    fn eq(&self, other: &Self) -> bool {
        self.header() == other.header() && self.union_bytes() == other.union_bytes()
    }
}

impl Eq for ResourceDescriptor {}

impl std::fmt::Debug for ResourceDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, share, flags) = self.header();
        f.debug_struct("ResourceDescriptor")
            .field("Type", &kind)
            .field("ShareDisposition", &share)
            .field("Flags", &flags)
            .field("u", &self.union_bytes())
            .finish()
    }
}

struct ResourceListValue {
    /// Counts the object among the machine's live port objects.
    _live: LiveObject,
    entries: Box<[ResourceDescriptor]>,
}

// SAFETY: `VTBL` is the `IResourceList` vtable with `unknown_vtbl::<Self, 0>()` as
// its IUnknown part, and `IIDS` names only IUnknown and `IResourceList`.
unsafe impl SingleInterface for ResourceListValue {
    type Vtbl = IResourceListVtbl;
    const VTBL: &'static IResourceListVtbl = &IResourceListVtbl {
        base__: unknown_vtbl::<Self, 0>(),
        NumberOfEntries: number_of_entries,
        NumberOfEntriesOfType: number_of_entries_of_type,
        FindTranslatedEntry: find_entry,
        FindUntranslatedEntry: find_entry,
        AddEntry: add_entry,
        AddEntryFromParent: add_entry_from_parent,
        TranslatedList: resource_list,
        UntranslatedList: resource_list,
    };
    const IIDS: &'static [GUID] = &[IID_IUnknown, IID_IResourceList];
}

/// # Safety
///
/// `this` must be a live resource list object.
unsafe fn resources<'a>(this: *mut c_void) -> &'a ResourceListValue {
    // SAFETY: guaranteed by the caller.
    unsafe { object::<ResourceListValue>(this) }
}

#[windows_abi]
unsafe extern "system" fn number_of_entries(this: *mut c_void) -> ULONG {
    // SAFETY: this vtable is only installed in resource list objects.
    let r = unsafe { resources(this) };
    ULONG::try_from(r.entries.len()).unwrap_or(ULONG::MAX)
}

#[windows_abi]
unsafe extern "system" fn number_of_entries_of_type(
    this: *mut c_void,
    kind: CM_RESOURCE_TYPE,
) -> ULONG {
    // SAFETY: this vtable is only installed in resource list objects.
    let r = unsafe { resources(this) };
    let n = r.entries.iter().filter(|e| e.kind() == kind).count();
    ULONG::try_from(n).unwrap_or(ULONG::MAX)
}

#[windows_abi]
unsafe extern "system" fn find_entry(
    this: *mut c_void,
    kind: CM_RESOURCE_TYPE,
    index: ULONG,
) -> PCM_PARTIAL_RESOURCE_DESCRIPTOR {
    // SAFETY: this vtable is only installed in resource list objects.
    let r = unsafe { resources(this) };
    r.entries
        .iter()
        .filter(|e| e.kind() == kind)
        .nth(index as usize)
        .map_or(ptr::null_mut(), |e| {
            ptr::from_ref(e.descriptor()).cast_mut()
        })
}

#[windows_abi]
const unsafe extern "system" fn add_entry(
    _this: *mut c_void,
    _translated: PCM_PARTIAL_RESOURCE_DESCRIPTOR,
    _untranslated: PCM_PARTIAL_RESOURCE_DESCRIPTOR,
) -> NTSTATUS {
    STATUS_NOT_IMPLEMENTED
}

#[windows_abi]
const unsafe extern "system" fn add_entry_from_parent(
    _this: *mut c_void,
    _parent: PRESOURCELIST,
    _kind: CM_RESOURCE_TYPE,
    _index: ULONG,
) -> NTSTATUS {
    STATUS_NOT_IMPLEMENTED
}

#[windows_abi]
const unsafe extern "system" fn resource_list(_this: *mut c_void) -> PCM_RESOURCE_LIST {
    // The emulator builds no CM_RESOURCE_LIST: drivers use the Find* slots.
    ptr::null_mut()
}

/// `PcNewResourceList` over the given descriptors (translated = untranslated).
#[must_use]
pub fn new_resource_list(
    machine: &Arc<Machine>,
    entries: &[ResourceDescriptor],
) -> ComPtr<IResourceList> {
    create(ResourceListValue {
        _live: LiveObject::new(machine),
        entries: entries.into(),
    })
}

port_object_class!(PortValue<true>, PortValue<false>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryConfig, PhysicalMemory};
    use portcls_sys::{IUnknownVtbl, REFIID, STATUS_NOINTERFACE};

    /// A bare COM object whose `QueryInterface` breaks COM's out-pointer
    /// rule in the way its vtable says.
    #[repr(C)]
    struct BadObject {
        vtbl: &'static IUnknownVtbl,
    }

    #[windows_abi]
    unsafe extern "system" fn fail_but_write(
        _: *mut c_void,
        _: REFIID,
        out: *mut PVOID,
    ) -> NTSTATUS {
        // SAFETY: the caller's out-pointer is writable.
        unsafe { out.write(ptr::without_provenance_mut(0x1234)) };
        STATUS_NOINTERFACE
    }

    #[windows_abi]
    const unsafe extern "system" fn succeed_without_writing(
        _: *mut c_void,
        _: REFIID,
        _: *mut PVOID,
    ) -> NTSTATUS {
        STATUS_SUCCESS
    }

    #[windows_abi]
    const unsafe extern "system" fn count(_: *mut c_void) -> ULONG {
        1
    }

    static FAILS_BUT_WRITES: IUnknownVtbl = IUnknownVtbl {
        QueryInterface: fail_but_write,
        AddRef: count,
        Release: count,
    };
    static SUCCEEDS_WITHOUT_WRITING: IUnknownVtbl = IUnknownVtbl {
        QueryInterface: succeed_without_writing,
        AddRef: count,
        Release: count,
    };

    #[test]
    fn optional_interface_queries_hold_the_miniport_to_com_out_pointer_rules() {
        let machine = Machine::new(
            PhysicalMemory::anonymous(MemoryConfig {
                size_bytes: 4 << 20,
                ..MemoryConfig::default()
            })
            .unwrap(),
            crate::machine::ClockMode::Virtual,
        );
        for (vtbl, expected) in [
            (&FAILS_BUT_WRITES, "left the out pointer"),
            (&SUCCEEDS_WITHOUT_WRITING, "without writing the out pointer"),
        ] {
            let mut object = BadObject { vtbl };
            // SAFETY: `object` is a COM object (vtable first) that outlives
            // the pointer; its AddRef/Release count nothing.
            let unknown =
                unsafe { ComPtr::from_raw_borrowed((&raw mut object).cast::<IUnknown>()) }.unwrap();
            let got = query_as_port(&machine, &unknown, &IID_IPinCount, "IPinCount");
            assert!(got.is_none());
            let violations = machine.violations();
            assert!(
                violations.last().is_some_and(|v| v.contains(expected)),
                "{violations:?}"
            );
        }
    }
}
