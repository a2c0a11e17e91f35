//! The PortCls stand-ins the driver image imports from `portcls.sys`.
//!
//! They are thin: each reads its arguments from the image, checks the IRQL
//! (`PASSIVE_LEVEL` for all of them) and hands the work to the same
//! [`EmuPortCls`] the host-built driver's `StartDevice` uses, so both builds
//! meet one model of PortCls: the same port objects, the same
//! registrations, the same checks.
#![allow(non_snake_case, reason = "the PortCls export names")]

use std::sync::{Arc, Mutex};

use portcls_sys::{
    windows_abi, windows_fn, DEVICE_OBJECT_DeviceExtension_OFFSET,
    DRIVER_OBJECT_MajorFunction_OFFSET, IInterruptSync, IO_STACK_LOCATION_MajorFunction_OFFSET,
    IO_STACK_LOCATION_MinorFunction_OFFSET, IPort, IRP_CurrentStackLocation_OFFSET, IResourceList,
    IUnknown, DEVICE_OBJECT, INTERRUPTSYNCMODE, IRP_MJ_PNP, IRP_MN_REMOVE_DEVICE,
    IRP_MN_START_DEVICE, IRP_MN_STOP_DEVICE, IRP_MN_SURPRISE_REMOVAL, NTSTATUS, PCPFNSTARTDEVICE,
    PDEVICE_OBJECT, PDRIVER_ADD_DEVICE, PDRIVER_OBJECT, PIRP, PORT_CLASS_ADAPTER_SLOT,
    PORT_CLASS_DEVICE_EXTENSION_SIZE, PRESOURCELIST, PUNICODE_STRING, PUNKNOWN, PVOID, REFCLSID,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_SUCCESS,
    STATUS_UNSUCCESSFUL,
};
use wavert_com::{ComPtr, NtStatus};
use wavert_miniport::adapter::PortClsServices;

use super::kernel::{current, Kernel};
use crate::cable::EmuPortCls;
use crate::irql::{self, PASSIVE_LEVEL};
use crate::machine::lock;

/// An `IRP_MJ_*` dispatch routine (`DRIVER_DISPATCH`).
pub type DriverDispatch =
    windows_fn!(unsafe fn(DeviceObject: PDEVICE_OBJECT, Irp: PIRP) -> NTSTATUS);

/// The functional device object `PcAddAdapterDevice` creates.
///
/// Its device extension is zeroed, as the I/O manager's `IoCreateDevice`
/// leaves it (SYSVAD's `PnpHandler` relies on that when it tests
/// `m_pCommon != NULL` before any `StartDevice`).
///
/// PortCls's own part of the extension (every `ULONG_PTR` element but the
/// four Learn leaves to the adapter) holds a pattern that PortCls checks
/// on each `PcDispatchIrp`: a driver writing outside its slots is caught.
pub struct FunctionalDevice {
    object: Box<[u64]>,
    extension: Box<[u64]>,
}

/// The `ULONG_PTR` elements of PortCls's device extension that are the
/// adapter's (Microsoft Learn, `PcAddAdapterDevice`: elements 4 to 7).
const ADAPTER_ELEMENTS: std::ops::Range<usize> = 4..8;

/// What the emulated PortCls keeps in its own elements of the extension.
const fn portcls_pattern(element: usize) -> u64 {
    0x5043_4C53_0000_0000 | element as u64
}

impl FunctionalDevice {
    fn new(extension_bytes: usize) -> Self {
        /// `sizeof(DEVICE_OBJECT)` on x64 in the WDK's `wdm.h` (0x150; MinGW's
        /// is 0x148): a zeroed block of that size stands for it.
        const DEVICE_OBJECT_BYTES: usize = 0x150;
        let mut object = vec![0u64; DEVICE_OBJECT_BYTES / 8].into_boxed_slice();
        let mut extension = vec![0u64; extension_bytes.div_ceil(8)].into_boxed_slice();
        let portcls_elements = PORT_CLASS_DEVICE_EXTENSION_SIZE / 8;
        for (element, word) in extension.iter_mut().enumerate().take(portcls_elements) {
            if !ADAPTER_ELEMENTS.contains(&element) {
                *word = portcls_pattern(element);
            }
        }
        let pointer = extension.as_mut_ptr() as u64;
        if let Some(slot) = object.get_mut(DEVICE_OBJECT_DeviceExtension_OFFSET / 8) {
            *slot = pointer;
        }
        Self { object, extension }
    }

    /// The device object, as the driver receives it.
    #[must_use]
    pub fn as_ptr(&mut self) -> *mut DEVICE_OBJECT {
        self.object.as_mut_ptr().cast()
    }

    /// The adapter's slot of the extension (where the driver keeps its
    /// state, [`PORT_CLASS_ADAPTER_SLOT`]).
    #[must_use]
    pub fn adapter_slot(&self) -> u64 {
        self.extension
            .get(PORT_CLASS_ADAPTER_SLOT)
            .copied()
            .unwrap_or(0)
    }

    /// PortCls's elements the driver overwrote.
    fn trampled(&self) -> Vec<usize> {
        let portcls_elements = PORT_CLASS_DEVICE_EXTENSION_SIZE / 8;
        (0..portcls_elements)
            .filter(|e| !ADAPTER_ELEMENTS.contains(e))
            .filter(|&e| self.extension.get(e).copied() != Some(portcls_pattern(e)))
            .collect()
    }
}

/// What PortCls remembers of the driver between its calls.
#[derive(Default)]
pub struct PortClsState {
    add_device: Mutex<PDRIVER_ADD_DEVICE>,
    start_device: Mutex<PCPFNSTARTDEVICE>,
    services: Mutex<Option<Arc<EmuPortCls>>>,
    /// The FDO `PcAddAdapterDevice` made.
    device: Mutex<Option<FunctionalDevice>>,
    /// The resources an `IRP_MN_START_DEVICE` carries (PortCls wraps the
    /// IRP's resource lists in an `IResourceList` for `StartDevice`).
    resources: Mutex<Option<ComPtr<IResourceList>>>,
    /// The PnP minor codes `PcDispatchIrp` handled, in order.
    dispatched: Mutex<Vec<u8>>,
    /// The PDO `PcAddAdapterDevice` was given (its address).
    physical_device: Mutex<usize>,
}

impl std::fmt::Debug for PortClsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortClsState")
            .field("dispatched", &*lock(&self.dispatched))
            .finish_non_exhaustive()
    }
}

impl PortClsState {
    /// PortCls over `services` (the emulator's port objects and registrations).
    #[must_use]
    pub fn new(services: Arc<EmuPortCls>) -> Self {
        Self {
            services: Mutex::new(Some(services)),
            ..Self::default()
        }
    }

    /// The `AddDevice` routine `PcInitializeAdapterDriver` was given.
    #[must_use]
    pub fn add_device(&self) -> PDRIVER_ADD_DEVICE {
        *lock(&self.add_device)
    }

    /// The `StartDevice` routine `PcAddAdapterDevice` was given.
    #[must_use]
    pub fn start_device(&self) -> PCPFNSTARTDEVICE {
        *lock(&self.start_device)
    }

    /// The PDO `PcAddAdapterDevice` was given (0 before it).
    #[must_use]
    pub fn physical_device(&self) -> usize {
        *lock(&self.physical_device)
    }

    /// Sets the PDO, as `PcAddAdapterDevice` does (for tests of the
    /// routines that take it).
    pub fn set_physical_device(&self, pdo: usize) {
        *lock(&self.physical_device) = pdo;
    }

    /// The services, for the ports they made.
    #[must_use]
    pub fn services(&self) -> Option<Arc<EmuPortCls>> {
        lock(&self.services).clone()
    }

    /// The FDO (null before `PcAddAdapterDevice`).
    #[must_use]
    pub fn device_object(&self) -> *mut DEVICE_OBJECT {
        lock(&self.device)
            .as_mut()
            .map_or(std::ptr::null_mut(), FunctionalDevice::as_ptr)
    }

    /// The driver's slot of the device extension (0 when empty or before
    /// `PcAddAdapterDevice`).
    #[must_use]
    pub fn adapter_slot(&self) -> u64 {
        lock(&self.device)
            .as_ref()
            .map_or(0, FunctionalDevice::adapter_slot)
    }

    /// The resources the next `IRP_MN_START_DEVICE` carries.
    pub fn set_resources(&self, resources: Option<ComPtr<IResourceList>>) {
        *lock(&self.resources) = resources;
    }

    /// The PnP minor codes `PcDispatchIrp` has handled so far.
    #[must_use]
    pub fn dispatched(&self) -> Vec<u8> {
        lock(&self.dispatched).clone()
    }
}

/// The kernel, with PortCls's IRQL rule checked.
fn portcls(routine: &str) -> Option<(Arc<Kernel>, Arc<EmuPortCls>)> {
    let kernel = current()?;
    if let Some(what) = irql::above(routine, PASSIVE_LEVEL) {
        kernel.violation("IRQL", &what);
    }
    let services = kernel.portcls.services()?;
    Some((kernel, services))
}

const fn status(result: Result<(), NtStatus>) -> NTSTATUS {
    match result {
        Ok(()) => STATUS_SUCCESS,
        Err(error) => error.code(),
    }
}

/// `PcInitializeAdapterDriver`: remembers `AddDevice`.
///
/// # Safety
///
/// Called by the image with its driver object.
#[windows_abi]
pub unsafe extern "system" fn PcInitializeAdapterDriver(
    driver: PDRIVER_OBJECT,
    _registry_path: PUNICODE_STRING,
    add_device: PDRIVER_ADD_DEVICE,
) -> NTSTATUS {
    let Some((kernel, _)) = portcls("PcInitializeAdapterDriver") else {
        return STATUS_UNSUCCESSFUL;
    };
    if driver.is_null() || add_device.is_none() {
        kernel.violation(
            "PortCls",
            "PcInitializeAdapterDriver without a driver object or AddDevice",
        );
        return STATUS_INVALID_PARAMETER;
    }
    *lock(&kernel.portcls.add_device) = add_device;
    // PortCls points the driver object's dispatch table at its own handlers
    // (the emulator models IRP_MJ_PNP only); a driver that wants to see PnP
    // IRPs first overwrites that entry afterwards, as SYSVAD's and
    // simpleaudiosample's `DriverEntry` do.
    #[allow(
        clippy::cast_ptr_alignment,
        reason = "the driver object is 8-byte aligned and the offset a multiple of 8"
    )]
    let entry = driver
        .cast::<u8>()
        .wrapping_add(DRIVER_OBJECT_MajorFunction_OFFSET + usize::from(IRP_MJ_PNP) * 8)
        .cast::<Option<DriverDispatch>>();
    // SAFETY: the image passes its driver object (a block of
    // sizeof(DRIVER_OBJECT) the emulator made), whose MajorFunction table
    // holds IRP_MJ_PNP at this offset (offsets checked against MinGW-w64).
    unsafe { entry.write(Some(portcls_dispatch_pnp)) };
    STATUS_SUCCESS
}

/// PortCls's own `IRP_MJ_PNP` dispatch, which `PcInitializeAdapterDriver`
/// installs: the same handling as `PcDispatchIrp`.
///
/// # Safety
///
/// Called with the FDO and an IRP whose current stack location is valid.
#[windows_abi]
pub(crate) unsafe extern "system" fn portcls_dispatch_pnp(
    device: PDEVICE_OBJECT,
    irp: PIRP,
) -> NTSTATUS {
    // SAFETY: forwarded as received.
    unsafe { PcDispatchIrp(device, irp) }
}

/// The current stack location's major and minor function of `irp`.
///
/// # Safety
///
/// `irp` is null or an IRP whose `Tail.Overlay.CurrentStackLocation` is
/// null or valid.
const unsafe fn major_minor(irp: PIRP) -> Option<(u8, u8)> {
    if irp.is_null() {
        return None;
    }
    #[allow(
        clippy::cast_ptr_alignment,
        reason = "an IRP is 8-byte aligned and the field lies at a multiple of 8"
    )]
    let location = irp
        .cast::<u8>()
        .wrapping_add(IRP_CurrentStackLocation_OFFSET)
        .cast::<*const u8>();
    // SAFETY: inside the IRP header (the caller's contract).
    let stack = unsafe { location.read() };
    if stack.is_null() {
        return None;
    }
    let major = stack.wrapping_add(IO_STACK_LOCATION_MajorFunction_OFFSET);
    let minor = stack.wrapping_add(IO_STACK_LOCATION_MinorFunction_OFFSET);
    // SAFETY: inside a valid stack location (the caller's contract).
    let major = unsafe { major.read() };
    // SAFETY: as above.
    let minor = unsafe { minor.read() };
    Some((major, minor))
}

/// `PcDispatchIrp`: PortCls's handling of an IRP the driver passes on.
///
/// PnP only: `IRP_MN_START_DEVICE` calls the driver's `StartDevice` with the
/// device's resources; stop and surprise removal leave every registration
/// as it is (only `IUnregisterSubdevice` and `IUnregisterPhysicalConnection`
/// remove one, and PortCls stops exposing the device's interfaces); removal
/// forgets what is still registered and releases the ports.
///
/// # Safety
///
/// Called by the image with its FDO and an IRP the emulator built.
#[windows_abi]
pub unsafe extern "system" fn PcDispatchIrp(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    let Some((kernel, services)) = portcls("PcDispatchIrp") else {
        return STATUS_UNSUCCESSFUL;
    };
    if device.is_null() || device != kernel.portcls.device_object() {
        kernel.violation(
            "PortCls",
            "PcDispatchIrp with a device object that is not the FDO PcAddAdapterDevice made",
        );
        return STATUS_INVALID_PARAMETER;
    }
    let trampled = lock(&kernel.portcls.device)
        .as_ref()
        .map(FunctionalDevice::trampled)
        .unwrap_or_default();
    if !trampled.is_empty() {
        kernel.violation(
            "PortCls",
            &format!(
                "the driver wrote PortCls's part of the device extension (ULONG_PTR elements {trampled:?}; only 4 to 7 are the adapter's)"
            ),
        );
    }
    // SAFETY: the IRP the emulator built for this call.
    let Some((major, minor)) = (unsafe { major_minor(irp) }) else {
        kernel.violation(
            "PortCls",
            "PcDispatchIrp with an IRP without a stack location",
        );
        return STATUS_INVALID_PARAMETER;
    };
    if major != IRP_MJ_PNP {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    lock(&kernel.portcls.dispatched).push(minor);
    match minor {
        IRP_MN_START_DEVICE => {
            let Some(start) = kernel.portcls.start_device() else {
                return STATUS_INVALID_DEVICE_REQUEST;
            };
            let resources = lock(&kernel.portcls.resources).clone();
            let resources = resources
                .as_ref()
                .map_or(std::ptr::null_mut(), ComPtr::as_raw);
            kernel.machine().set_device_stopped(false);
            // SAFETY: the image's StartDevice with its FDO, the start IRP and
            // a live resource list (held above for the call).
            unsafe { start(device, irp, resources) }
        }
        IRP_MN_STOP_DEVICE | IRP_MN_SURPRISE_REMOVAL => {
            kernel.machine().set_device_stopped(true);
            STATUS_SUCCESS
        }
        IRP_MN_REMOVE_DEVICE => {
            kernel.machine().set_device_stopped(true);
            services.release_all();
            STATUS_SUCCESS
        }
        // What the PnP manager puts in IoStatus of an IRP nobody handles.
        _ => STATUS_NOT_SUPPORTED,
    }
}

/// `PcAddAdapterDevice`: remembers `StartDevice` and the subdevice limit.
///
/// # Safety
///
/// Called by the image from its `AddDevice`.
#[windows_abi]
pub unsafe extern "system" fn PcAddAdapterDevice(
    driver: PDRIVER_OBJECT,
    physical_device: PDEVICE_OBJECT,
    start_device: PCPFNSTARTDEVICE,
    max_subdevices: u32,
    device_extension_size: u32,
) -> NTSTATUS {
    let Some((kernel, services)) = portcls("PcAddAdapterDevice") else {
        return STATUS_UNSUCCESSFUL;
    };
    if driver.is_null()
        || physical_device.is_null()
        || start_device.is_none()
        || max_subdevices == 0
    {
        kernel.violation(
            "PortCls",
            "PcAddAdapterDevice without a driver object, a PDO, StartDevice or subdevices",
        );
        return STATUS_INVALID_PARAMETER;
    }
    let extension = device_extension_size as usize;
    if extension != 0 && extension < PORT_CLASS_DEVICE_EXTENSION_SIZE {
        // Learn, PcAddAdapterDevice: "Any value greater than zero and less
        // than PORT_CLASS_DEVICE_EXTENSION_SIZE is illegal."
        kernel.violation(
            "PortCls",
            &format!("PcAddAdapterDevice with DeviceExtensionSize {extension} (0 or at least {PORT_CLASS_DEVICE_EXTENSION_SIZE})"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    *lock(&kernel.portcls.start_device) = start_device;
    services.set_max_subdevices(max_subdevices);
    *lock(&kernel.portcls.device) = Some(FunctionalDevice::new(
        extension.max(PORT_CLASS_DEVICE_EXTENSION_SIZE),
    ));
    *lock(&kernel.portcls.physical_device) = physical_device.expose_provenance();
    STATUS_SUCCESS
}

/// `PcNewPort`.
///
/// # Safety
///
/// `port` is writable; `class_id` a GUID.
#[windows_abi]
pub unsafe extern "system" fn PcNewPort(port: *mut *mut IPort, class_id: REFCLSID) -> NTSTATUS {
    let Some((_, services)) = portcls("PcNewPort") else {
        return STATUS_UNSUCCESSFUL;
    };
    if port.is_null() || class_id.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: a GUID the image passed (its class id constant).
    let class_id = unsafe { &*class_id };
    match services.new_port(class_id) {
        Ok(made) => {
            // SAFETY: the caller's out-parameter; the reference goes to the image.
            unsafe { port.write(made.into_raw()) };
            STATUS_SUCCESS
        }
        Err(error) => error.code(),
    }
}

/// Reads a NUL-terminated UTF-16 string from the image, kept for the rest
/// of the process (PortCls keeps subdevice names as long as the device).
///
/// # Safety
///
/// `name` is a NUL-terminated UTF-16 string.
unsafe fn kept_name(name: *const u16) -> &'static [u16] {
    let mut length = 0;
    // SAFETY: the string is NUL-terminated (the caller's contract).
    loop {
        let unit = name.wrapping_add(length);
        // SAFETY: within the NUL-terminated string (the caller's contract).
        if unsafe { unit.read() } == 0 {
            break;
        }
        length += 1;
    }
    // SAFETY: `length + 1` readable units, the NUL included.
    let units = unsafe { std::slice::from_raw_parts(name, length + 1) };
    Box::leak(units.to_vec().into_boxed_slice())
}

/// `PcRegisterSubdevice`.
///
/// # Safety
///
/// `name` is NUL-terminated; `unknown` is a port `PcNewPort` made.
#[windows_abi]
pub unsafe extern "system" fn PcRegisterSubdevice(
    _device: PDEVICE_OBJECT,
    name: *const u16,
    unknown: PUNKNOWN,
) -> NTSTATUS {
    let Some((_, services)) = portcls("PcRegisterSubdevice") else {
        return STATUS_UNSUCCESSFUL;
    };
    if name.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller's NUL-terminated name.
    let name = unsafe { kept_name(name) };
    // SAFETY: the image passes the IPort it got from PcNewPort (borrowed).
    let Some(port) = (unsafe { ComPtr::from_raw_borrowed(unknown.cast::<IPort>()) }) else {
        return STATUS_INVALID_PARAMETER;
    };
    status(services.register_subdevice(name, &port))
}

/// `PcRegisterPhysicalConnection`.
///
/// # Safety
///
/// Both unknowns are ports `PcNewPort` made.
#[windows_abi]
pub unsafe extern "system" fn PcRegisterPhysicalConnection(
    _device: PDEVICE_OBJECT,
    from: PUNKNOWN,
    from_pin: u32,
    to: PUNKNOWN,
    to_pin: u32,
) -> NTSTATUS {
    let Some((_, services)) = portcls("PcRegisterPhysicalConnection") else {
        return STATUS_UNSUCCESSFUL;
    };
    // SAFETY: ports from PcNewPort, borrowed for the call.
    let from = unsafe { ComPtr::from_raw_borrowed(from.cast::<IPort>()) };
    // SAFETY: as above.
    let to = unsafe { ComPtr::from_raw_borrowed(to.cast::<IPort>()) };
    let (Some(from), Some(to)) = (from, to) else {
        return STATUS_INVALID_PARAMETER;
    };
    status(services.register_physical_connection(&from, from_pin, &to, to_pin))
}

/// `PcRegisterAdapterPowerManagement`: PortCls queries the object for
/// `IAdapterPowerManagement` and keeps it (ReactOS portcls `power.cpp`).
///
/// # Safety
///
/// `unknown` is a live object of the image's.
#[windows_abi]
pub unsafe extern "system" fn PcRegisterAdapterPowerManagement(
    unknown: PUNKNOWN,
    _device: PVOID,
) -> NTSTATUS {
    let Some((_, services)) = portcls("PcRegisterAdapterPowerManagement") else {
        return STATUS_UNSUCCESSFUL;
    };
    // SAFETY: the image's live object, borrowed for the call (PortCls takes
    // its own reference through QueryInterface).
    let Some(unknown) = (unsafe { ComPtr::<IUnknown>::from_raw_borrowed(unknown) }) else {
        return STATUS_INVALID_PARAMETER;
    };
    status(services.register_adapter_power_management(&unknown))
}

/// `PcNewInterruptSync`.
///
/// # Safety
///
/// `out` is writable; `resources` the list `StartDevice` was given.
#[windows_abi]
pub unsafe extern "system" fn PcNewInterruptSync(
    out: *mut *mut IInterruptSync,
    _outer: PUNKNOWN,
    resources: PRESOURCELIST,
    index: u32,
    _mode: INTERRUPTSYNCMODE,
) -> NTSTATUS {
    let Some((_, services)) = portcls("PcNewInterruptSync") else {
        return STATUS_UNSUCCESSFUL;
    };
    if out.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the resource list StartDevice got, borrowed for the call.
    let Some(resources) = (unsafe { ComPtr::<IResourceList>::from_raw_borrowed(resources) }) else {
        return STATUS_INVALID_PARAMETER;
    };
    match services.new_interrupt_sync(&resources, index) {
        Ok(sync) => {
            // SAFETY: the caller's out-parameter; the reference goes to the image.
            unsafe { out.write(sync.into_raw()) };
            STATUS_SUCCESS
        }
        Err(error) => error.code(),
    }
}

/// `PcGetPhysicalDeviceObject`: the PDO `PcAddAdapterDevice` was given.
///
/// # Safety
///
/// `pdo` is writable.
#[windows_abi]
pub unsafe extern "system" fn PcGetPhysicalDeviceObject(
    _device: PDEVICE_OBJECT,
    pdo: *mut PDEVICE_OBJECT,
) -> NTSTATUS {
    let Some((kernel, _)) = portcls("PcGetPhysicalDeviceObject") else {
        return STATUS_UNSUCCESSFUL;
    };
    let physical = kernel.portcls.physical_device();
    if pdo.is_null() || physical == 0 {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller's out-parameter.
    unsafe { pdo.write(std::ptr::with_exposed_provenance_mut(physical)) };
    STATUS_SUCCESS
}

/// PortCls's exports this emulator implements, by module and name.
#[must_use]
pub fn exports() -> Vec<(&'static str, &'static str, usize)> {
    exports! {
        "portcls.sys": [
            PcInitializeAdapterDriver,
            PcAddAdapterDevice,
            PcDispatchIrp,
            PcNewPort,
            PcRegisterSubdevice,
            PcRegisterPhysicalConnection,
            PcNewInterruptSync,
            PcGetPhysicalDeviceObject,
            PcRegisterAdapterPowerManagement,
        ],
    }
}
