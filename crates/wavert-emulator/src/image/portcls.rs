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
    windows_abi, IInterruptSync, IPort, IResourceList, INTERRUPTSYNCMODE, NTSTATUS,
    PCPFNSTARTDEVICE, PDEVICE_OBJECT, PDRIVER_ADD_DEVICE, PDRIVER_OBJECT, PRESOURCELIST,
    PUNICODE_STRING, PUNKNOWN, REFCLSID, STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
    STATUS_UNSUCCESSFUL,
};
use wavert_com::{ComPtr, NtStatus};
use wavert_miniport::adapter::PortClsServices;

use super::kernel::{current, Kernel};
use crate::cable::EmuPortCls;
use crate::irql::{self, PASSIVE_LEVEL};
use crate::machine::lock;

/// What PortCls remembers of the driver between its calls.
#[derive(Default)]
pub struct PortClsState {
    add_device: Mutex<PDRIVER_ADD_DEVICE>,
    start_device: Mutex<PCPFNSTARTDEVICE>,
    max_subdevices: Mutex<Option<u32>>,
    services: Mutex<Option<Arc<EmuPortCls>>>,
}

impl std::fmt::Debug for PortClsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortClsState")
            .field("max_subdevices", &*lock(&self.max_subdevices))
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

    /// The services, for the ports they made.
    #[must_use]
    pub fn services(&self) -> Option<Arc<EmuPortCls>> {
        lock(&self.services).clone()
    }
}

/// The kernel, with PortCls's IRQL rule checked.
fn portcls(routine: &str) -> Option<(Arc<Kernel>, Arc<EmuPortCls>)> {
    let kernel = current()?;
    let now = irql::current();
    if now > PASSIVE_LEVEL {
        kernel.violation(
            "IRQL",
            &format!(
                "{routine} called at {} (PASSIVE_LEVEL only)",
                irql::name(now)
            ),
        );
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
    STATUS_SUCCESS
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
    _device_extension_size: u32,
) -> NTSTATUS {
    let Some((kernel, _)) = portcls("PcAddAdapterDevice") else {
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
    *lock(&kernel.portcls.start_device) = start_device;
    *lock(&kernel.portcls.max_subdevices) = Some(max_subdevices);
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
    let Some((kernel, services)) = portcls("PcRegisterSubdevice") else {
        return STATUS_UNSUCCESSFUL;
    };
    if name.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let registered = kernel.machine().registrations().subdevices.len();
    let limit = lock(&kernel.portcls.max_subdevices).unwrap_or(0);
    if u32::try_from(registered).unwrap_or(u32::MAX) >= limit {
        kernel.violation(
            "PortCls",
            &format!(
                "PcRegisterSubdevice beyond the {limit} subdevices PcAddAdapterDevice asked for"
            ),
        );
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

/// PortCls's exports this emulator implements, by module and name.
#[must_use]
pub fn exports() -> Vec<(&'static str, &'static str, usize)> {
    exports! {
        "portcls.sys": [
            PcInitializeAdapterDriver,
            PcAddAdapterDevice,
            PcNewPort,
            PcRegisterSubdevice,
            PcRegisterPhysicalConnection,
            PcNewInterruptSync,
        ],
    }
}
