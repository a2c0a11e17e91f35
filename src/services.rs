//! `PortClsServices` over the real PortCls exports, for `StartDevice`.
//!
//! IRQL: every call at `PASSIVE_LEVEL` (`StartDevice` runs there).

use core::ptr;

use portcls_sys::{
    IInterruptSync, IPort, IResourceList, IUnknown, InterruptSyncModeNormal,
    PcGetPhysicalDeviceObject, PcNewInterruptSync, PcNewPort, PcRegisterAdapterPowerManagement,
    PcRegisterPhysicalConnection, PcRegisterSubdevice, DEVICE_OBJECT, DEVPROPKEY, DEVPROPTYPE,
    GUID, IRP, KSCATEGORY_AUDIO, LCID, LOCALE_NEUTRAL, PLUGPLAY_PROPERTY_PERSISTENT, PRESOURCELIST,
};
use wavert_com::{ComPtr, NtResult, NtStatus};
use wavert_miniport::adapter::PortClsServices;
use wdk_sys::ntddk::{IoRegisterDeviceInterface, RtlFreeUnicodeString};
use wdk_sys::{PUNICODE_STRING, PVOID, ULONG, UNICODE_STRING};

// `wdm.h` (Windows Vista and later), absent from MinGW-w64's headers and so
// from the bindings of the Linux-hosted build; the prototype of Learn's
// `wdm/nf-wdm-iosetdeviceinterfacepropertydata` page. It links from
// `ntoskrnl.lib` like the bound kernel routines.
unsafe extern "system" {
    fn IoSetDeviceInterfacePropertyData(
        SymbolicLinkName: PUNICODE_STRING,
        PropertyKey: *const DEVPROPKEY,
        Lcid: LCID,
        Flags: ULONG,
        Type: DEVPROPTYPE,
        Size: ULONG,
        Data: PVOID,
    ) -> i32;
}

/// The start request's device object, IRP and resources.
pub struct KernelServices {
    /// The functional device object.
    pub device: *mut DEVICE_OBJECT,
    /// The start IRP.
    pub irp: *mut IRP,
    /// The device's resources (none for the virtual cable).
    pub resources: PRESOURCELIST,
}

const fn check(status: i32) -> NtResult<()> {
    NtStatus::check(status)
}

impl PortClsServices for KernelServices {
    fn device_object(&self) -> *mut DEVICE_OBJECT {
        self.device
    }

    fn new_port(&self, class_id: &GUID) -> NtResult<ComPtr<IPort>> {
        let mut port = ptr::null_mut();
        // SAFETY: `port` is writable; the class id outlives the call.
        check(unsafe { PcNewPort(&raw mut port, class_id) })?;
        // SAFETY: a successful PcNewPort hands us one reference.
        unsafe { ComPtr::from_raw(port) }.ok_or(NtStatus::INSUFFICIENT_RESOURCES)
    }

    fn init_port(&self, port: &ComPtr<IPort>, miniport: &ComPtr<IUnknown>) -> NtResult<()> {
        let init = port.vtbl().Init;
        // SAFETY: a live port; the device, IRP and resources are StartDevice's,
        // valid for this call; the miniport is live (we hold a reference).
        check(unsafe {
            init(
                port.this(),
                self.device,
                self.irp,
                miniport.as_raw(),
                ptr::null_mut(),
                self.resources,
            )
        })
    }

    fn register_adapter_power_management(&self, power: &ComPtr<IUnknown>) -> NtResult<()> {
        // SAFETY: a live object (we hold a reference; PortCls takes its own
        // by QueryInterface); our functional device object (Learn:
        // PcRegisterAdapterPowerManagement takes the FDO as `pvContext1`).
        check(unsafe { PcRegisterAdapterPowerManagement(power.as_raw(), self.device.cast()) })
    }

    fn register_subdevice(&self, name: &'static [u16], port: &ComPtr<IPort>) -> NtResult<()> {
        // SAFETY: `name` is NUL-terminated (SUBDEVICES); the port is live.
        check(unsafe { PcRegisterSubdevice(self.device, name.as_ptr(), port.as_raw().cast()) })
    }

    fn set_filter_interface_property(
        &self,
        name: &'static [u16],
        key: &DEVPROPKEY,
        kind: DEVPROPTYPE,
        value: &[u8],
    ) -> NtResult<()> {
        let mut pdo = ptr::null_mut();
        // SAFETY: our functional device object; `pdo` is writable.
        check(unsafe { PcGetPhysicalDeviceObject(self.device, &raw mut pdo) })?;
        // The reference string: the subdevice name without its NUL, which
        // PcRegisterSubdevice will register the same interface under.
        let units = name
            .len()
            .checked_sub(1)
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        let length = units
            .checked_mul(2)
            .and_then(|bytes| u16::try_from(bytes).ok())
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        let mut reference = UNICODE_STRING {
            Length: length,
            MaximumLength: length,
            // Only read (an IN parameter).
            Buffer: name.as_ptr().cast_mut(),
        };
        let mut link = UNICODE_STRING {
            Length: 0,
            MaximumLength: 0,
            Buffer: ptr::null_mut(),
        };
        // SAFETY: a live PDO; the class GUID and reference string outlive
        // the call (the GUID types share one layout); `link` is writable.
        check(unsafe {
            IoRegisterDeviceInterface(
                pdo.cast(),
                ptr::from_ref(&KSCATEGORY_AUDIO).cast(),
                &raw mut reference,
                &raw mut link,
            )
        })?;
        let size = u32::try_from(value.len()).map_err(|_| NtStatus::INVALID_PARAMETER);
        let status = size.and_then(|size| {
            // SAFETY: the link the kernel just gave; the key and value
            // outlive the call (the kernel copies the value).
            check(unsafe {
                IoSetDeviceInterfacePropertyData(
                    &raw mut link,
                    key,
                    LOCALE_NEUTRAL,
                    PLUGPLAY_PROPERTY_PERSISTENT,
                    kind,
                    size,
                    value.as_ptr().cast_mut().cast(),
                )
            })
        });
        // SAFETY: the buffer IoRegisterDeviceInterface allocated for `link`.
        unsafe { RtlFreeUnicodeString(&raw mut link) };
        status
    }

    fn new_interrupt_sync(
        &self,
        resources: &ComPtr<IResourceList>,
        index: u32,
    ) -> NtResult<ComPtr<IInterruptSync>> {
        let mut sync = ptr::null_mut();
        // SAFETY: `sync` is writable; the resource list is live (the
        // caller holds it); no outer unknown.
        check(unsafe {
            PcNewInterruptSync(
                &raw mut sync,
                ptr::null_mut(),
                resources.as_raw(),
                index,
                InterruptSyncModeNormal,
            )
        })?;
        // SAFETY: a successful PcNewInterruptSync hands us one reference.
        unsafe { ComPtr::from_raw(sync) }.ok_or(NtStatus::INSUFFICIENT_RESOURCES)
    }

    fn register_physical_connection(
        &self,
        from: &ComPtr<IPort>,
        from_pin: u32,
        to: &ComPtr<IPort>,
        to_pin: u32,
    ) -> NtResult<()> {
        // SAFETY: both ports are live, registered subdevices of this device.
        check(unsafe {
            PcRegisterPhysicalConnection(
                self.device,
                from.as_raw().cast(),
                from_pin,
                to.as_raw().cast(),
                to_pin,
            )
        })
    }
}
