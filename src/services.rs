//! `PortClsServices` over the real PortCls exports, for `StartDevice`.
//!
//! IRQL: every call at `PASSIVE_LEVEL` (`StartDevice` runs there).

use core::ptr;

use portcls_sys::{
    IInterruptSync, IPort, IResourceList, IUnknown, InterruptSyncModeNormal, PcNewInterruptSync,
    PcNewPort, PcRegisterPhysicalConnection, PcRegisterSubdevice, DEVICE_OBJECT, GUID, IRP,
    PRESOURCELIST,
};
use wavert_com::{ComPtr, NtResult, NtStatus};
use wavert_miniport::adapter::PortClsServices;

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

    fn register_subdevice(&self, name: &'static [u16], port: &ComPtr<IPort>) -> NtResult<()> {
        // SAFETY: `name` is NUL-terminated (SUBDEVICES); the port is live.
        check(unsafe { PcRegisterSubdevice(self.device, name.as_ptr(), port.as_raw().cast()) })
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
