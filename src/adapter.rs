//! The adapter driver's entry points: `DriverEntry`, `AddDevice`, `StartDevice`.
//!
//! PortCls owns the driver object: `PcInitializeAdapterDriver` installs its
//! dispatch routines and our `AddDevice`; `PcAddAdapterDevice` creates the
//! functional device object and remembers our `StartDevice`, which PortCls
//! calls with the device's resources on `IRP_MN_START_DEVICE`.

use portcls_sys::{
    PcAddAdapterDevice, PcInitializeAdapterDriver, DEVICE_OBJECT, DRIVER_OBJECT, IRP, NTSTATUS,
    PRESOURCELIST, STATUS_SUCCESS, ULONG, UNICODE_STRING,
};

/// How many subdevices the adapter may register with PortCls: the virtual
/// cable's wave and topology filters for render and for capture.
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

/// Starts the adapter (`PASSIVE_LEVEL`, on `IRP_MN_START_DEVICE`).
///
/// The virtual cable issue fills this in: it creates the WaveRT and topology
/// ports and miniports and registers them as subdevices.
///
/// # Safety
///
/// Called by PortCls with the functional device object, the start IRP and the
/// device's resource list, all valid for this call.
#[allow(
    clippy::missing_const_for_fn,
    reason = "a PortCls callback that will create ports and miniports; const would mislead"
)]
unsafe extern "system" fn start_device(
    _device_object: *mut DEVICE_OBJECT,
    _irp: *mut IRP,
    _resource_list: PRESOURCELIST,
) -> NTSTATUS {
    STATUS_SUCCESS
}
