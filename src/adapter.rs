//! The adapter driver's entry points: `DriverEntry`, `AddDevice`, `StartDevice`.
//!
//! PortCls owns the driver object: `PcInitializeAdapterDriver` installs its
//! dispatch routines and our `AddDevice`; `PcAddAdapterDevice` creates the
//! functional device object and remembers our `StartDevice`, which PortCls
//! calls with the device's resources on `IRP_MN_START_DEVICE`.

use alloc::sync::Arc;
use portcls_sys::windows_abi;

use portcls_sys::{
    PcAddAdapterDevice, PcInitializeAdapterDriver, DEVICE_OBJECT, DRIVER_OBJECT, IRP, NTSTATUS,
    PRESOURCELIST, STATUS_DEVICE_CONFIGURATION_ERROR, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_SUCCESS, ULONG, UNICODE_STRING,
};
use wavert_com::ComPtr;
use wavert_miniport::ac97::DeviceKind;
use wavert_miniport::adapter::{install, install_ac97};
use wavert_miniport::{DmaMode, VirtualCable};
use wdk_sys::ntddk::ExAllocateTimer;
use wdk_sys::EX_TIMER_HIGH_RESOLUTION;

use crate::io::KernelPortIo;
use crate::platform::{timer_callback, KernelPlatform};
use crate::services::KernelServices;

/// How many subdevices the adapter may register with PortCls: a wave and a
/// topology filter for render and for capture (the cable's or the AC'97's).
const MAX_SUBDEVICES: ULONG = 4;

/// Device extension size for `PcAddAdapterDevice`; 0 lets PortCls use its own
/// default (`PORT_CLASS_DEVICE_EXTENSION_SIZE`), as Microsoft's samples do.
const DEVICE_EXTENSION_SIZE: ULONG = 0;

/// The driver's entry point, called once by the I/O manager at `PASSIVE_LEVEL`.
///
/// # Safety
///
/// Only the I/O manager calls this, with a valid driver object and registry
/// path that stay valid for the duration of the call.
#[unsafe(export_name = "DriverEntry")]
#[windows_abi]
pub unsafe extern "system" fn driver_entry(
    driver_object: *mut wdk_sys::DRIVER_OBJECT,
    registry_path: *const wdk_sys::UNICODE_STRING,
) -> wdk_sys::NTSTATUS {
    // SAFETY: the I/O manager passes a live driver object and registry path;
    // PortCls takes the same kernel objects (ABI crate's opaque views of them).
    unsafe {
        PcInitializeAdapterDriver(
            driver_object.cast::<DRIVER_OBJECT>(),
            registry_path.cast_mut().cast::<UNICODE_STRING>(),
            Some(add_device),
        )
    }
}

/// Creates the functional device object for a new adapter (`PASSIVE_LEVEL`).
///
/// # Safety
///
/// Called by PortCls's AddDevice dispatch with the driver object and the
/// physical device object of the enumerated device.
#[windows_abi]
unsafe extern "system" fn add_device(
    driver_object: *mut DRIVER_OBJECT,
    physical_device_object: *mut DEVICE_OBJECT,
) -> NTSTATUS {
    // SAFETY: both objects come straight from the PnP manager via PortCls and
    // are valid for this call; `start_device` matches PCPFNSTARTDEVICE.
    unsafe {
        PcAddAdapterDevice(
            driver_object,
            physical_device_object,
            Some(start_device),
            MAX_SUBDEVICES,
            DEVICE_EXTENSION_SIZE,
        )
    }
}

/// Starts the adapter (`PASSIVE_LEVEL`, on `IRP_MN_START_DEVICE`): makes the
/// virtual cable, gives it its high-resolution timer, and registers its four
/// subdevices and two physical connections (`wavert_miniport::adapter`).
///
/// # Safety
///
/// Called by PortCls with the functional device object, the start IRP and the
/// device's resource list, all valid for this call.
#[windows_abi]
unsafe extern "system" fn start_device(
    device_object: *mut DEVICE_OBJECT,
    irp: *mut IRP,
    resource_list: PRESOURCELIST,
) -> NTSTATUS {
    let services = KernelServices {
        device: device_object,
        irp,
        resources: resource_list,
    };
    // One binary serves both hardware IDs; the resources tell them apart:
    // the root-enumerated cable has none, a PCI AC'97 has two I/O ranges
    // and an interrupt. (No registry or hardware-ID lookup needed, and a
    // device with the wrong resources is refused instead of guessed at.)
    // SAFETY: PortCls passes a live resource list (or NULL) for this call;
    // the borrowed pointer is AddRef'd for as long as we hold it.
    let resources = unsafe { ComPtr::from_raw_borrowed(resource_list) };
    match DeviceKind::of(resources.as_ref()) {
        DeviceKind::VirtualCable => start_cable(&services),
        DeviceKind::Ac97 => resources.map_or(STATUS_INSUFFICIENT_RESOURCES, |resources| {
            start_ac97(&services, &resources)
        }),
        DeviceKind::Unknown => STATUS_DEVICE_CONFIGURATION_ERROR,
    }
}

/// `StartDevice` for a PCI AC'97: port I/O, interrupt sync, codec, ISR,
/// the four subdevices; then the DPC is pointed at the device.
fn start_ac97(
    services: &KernelServices,
    resources: &ComPtr<portcls_sys::IResourceList>,
) -> NTSTATUS {
    match install_ac97(services, KernelPlatform::new(), KernelPortIo, resources) {
        Ok(device) => {
            device.platform().attach_dpc(Arc::as_ptr(&device));
            STATUS_SUCCESS
        }
        Err(status) => status.code(),
    }
}

/// `StartDevice` for the root-enumerated virtual cable.
fn start_cable(services: &KernelServices) -> NTSTATUS {
    let cable = Arc::new(VirtualCable::new(KernelPlatform::new(), DmaMode::Looping));
    // SAFETY: the callback matches EXT_CALLBACK; its context is the cable,
    // which owns the timer and deletes it (waiting) before its state goes.
    let timer = unsafe {
        ExAllocateTimer(
            Some(timer_callback),
            Arc::as_ptr(&cable).cast_mut().cast(),
            EX_TIMER_HIGH_RESOLUTION,
        )
    };
    if timer.is_null() {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    cable.platform().attach_timer(timer);
    // The miniports keep the cable alive; our reference goes on return.
    match install(services, &cable) {
        Ok(()) => STATUS_SUCCESS,
        Err(status) => status.code(),
    }
}
