//! The adapter driver's entry points: `DriverEntry`, `AddDevice`,
//! `StartDevice`, and the `IRP_MJ_PNP` handler in front of PortCls's.
//!
//! PortCls owns the driver object: `PcInitializeAdapterDriver` installs its
//! dispatch routines and our `AddDevice`; `PcAddAdapterDevice` creates the
//! functional device object and remembers our `StartDevice`, which PortCls
//! calls with the device's resources on `IRP_MN_START_DEVICE`. After
//! `PcInitializeAdapterDriver`, `DriverEntry` puts [`pnp_dispatch`] in
//! front of PortCls's PnP handling, as SYSVAD's and simpleaudiosample's
//! `DriverEntry` install their `PnpHandler` (`audio/sysvad/adapter.cpp`,
//! `audio/simpleaudiosample/Source/Main/adapter.cpp`): on a stop, surprise
//! removal or removal it unregisters the physical connections and
//! subdevices `StartDevice` registered, then hands every PnP IRP to
//! `PcDispatchIrp`, so a stop followed by a start registers the same names
//! again.

use alloc::alloc::{alloc, dealloc, Layout};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};
use portcls_sys::windows_abi;

use portcls_sys::{
    IRP_CurrentStackLocation_OFFSET, PcAddAdapterDevice, PcDispatchIrp, PcInitializeAdapterDriver,
    DEVICE_OBJECT, DRIVER_OBJECT, IRP, IRP_MJ_PNP, IRP_MN_REMOVE_DEVICE, IRP_MN_STOP_DEVICE,
    IRP_MN_SURPRISE_REMOVAL, NTSTATUS, PORT_CLASS_ADAPTER_SLOT, PRESOURCELIST,
    STATUS_DEVICE_CONFIGURATION_ERROR, STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS, ULONG,
    UNICODE_STRING,
};
use wavert_com::ComPtr;
use wavert_miniport::ac97::DeviceKind;
#[cfg(target_arch = "x86_64")]
use wavert_miniport::adapter::{install_ac97, install_hda};
use wavert_miniport::adapter::{install_cables, Registration, MAX_SUBDEVICES};
#[cfg(target_arch = "x86_64")]
use wavert_miniport::hda::HdaResources;
use wavert_miniport::parameters::DeviceParameters;
use wavert_miniport::{DmaMode, VirtualCable};
use wdk_sys::ntddk::ExAllocateTimer;
use wdk_sys::EX_TIMER_HIGH_RESOLUTION;

#[cfg(target_arch = "x86_64")]
use crate::io::KernelPortIo;
#[cfg(target_arch = "x86_64")]
use crate::mmio::KernelMmio;
use crate::platform::{kernel_log, timer_callback, KernelPlatform};
use crate::registry::DeviceRegistry;
use crate::services::KernelServices;

/// Device extension size for `PcAddAdapterDevice`; 0 lets PortCls use its own
/// default (`PORT_CLASS_DEVICE_EXTENSION_SIZE`), as Microsoft's samples do.
/// Our state lives in the extension's adapter slot ([`PORT_CLASS_ADAPTER_SLOT`]).
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
    let status = unsafe {
        PcInitializeAdapterDriver(
            driver_object.cast::<DRIVER_OBJECT>(),
            registry_path.cast_mut().cast::<UNICODE_STRING>(),
            Some(add_device),
        )
    };
    if status < 0 {
        return status;
    }
    // After PcInitializeAdapterDriver, which fills the whole dispatch table
    // with PortCls's routines: ours sees PnP IRPs first and passes them on.
    // SAFETY: the driver object is live and ours during DriverEntry.
    let table = unsafe { &mut (*driver_object).MajorFunction };
    if let Some(entry) = table.get_mut(usize::from(IRP_MJ_PNP)) {
        *entry = Some(pnp_dispatch);
    }
    STATUS_SUCCESS
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
/// virtual cable, the AC'97 or the HD Audio controller, and registers its four subdevices and two
/// physical connections (`wavert_miniport::adapter`); what was registered
/// is kept in the device extension for [`pnp_dispatch`].
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
    // A start PortCls sends without a stop before it (not expected) must not
    // find the last start's registration still in place.
    // SAFETY: the FDO PortCls passes, with PortCls's device extension.
    unsafe { unregister_kept(device_object.cast()) };
    // One binary serves every hardware ID; the resources tell them apart:
    // the root-enumerated cable has none, a PCI AC'97 has two I/O ranges
    // and an interrupt, an HD Audio controller one memory range and an
    // interrupt. (No registry or hardware-ID lookup needed, and a
    // device with the wrong resources is refused instead of guessed at.)
    // SAFETY: PortCls passes a live resource list (or NULL) for this call;
    // the borrowed pointer is AddRef'd for as long as we hold it.
    let resources = unsafe { ComPtr::from_raw_borrowed(resource_list) };
    let registered = match DeviceKind::of(resources.as_ref()) {
        DeviceKind::VirtualCable => start_cable(&services),
        #[cfg(target_arch = "x86_64")]
        DeviceKind::Ac97 => resources.map_or(Err(STATUS_INSUFFICIENT_RESOURCES), |resources| {
            start_ac97(&services, &resources)
        }),
        // No port I/O on ARM64: the INF never offers the AC'97 there, and a
        // device with its resources is refused rather than half-driven.
        #[cfg(not(target_arch = "x86_64"))]
        DeviceKind::Ac97 => Err(portcls_sys::STATUS_NOT_SUPPORTED),
        #[cfg(target_arch = "x86_64")]
        DeviceKind::Hda => resources.map_or(Err(STATUS_INSUFFICIENT_RESOURCES), |resources| {
            start_hda(&services, &resources)
        }),
        // The register accesses are x64 `mov` forms (`crate::mmio`); the
        // ARM64 build has no MMIO glue, and its INF never offers the
        // controller.
        #[cfg(not(target_arch = "x86_64"))]
        DeviceKind::Hda => Err(portcls_sys::STATUS_NOT_SUPPORTED),
        DeviceKind::Unknown => Err(STATUS_DEVICE_CONFIGURATION_ERROR),
    };
    match registered {
        // SAFETY: the FDO PortCls passes, with PortCls's device extension.
        Ok(registration) => unsafe { keep(device_object.cast(), registration) },
        Err(status) => status,
    }
}

/// `StartDevice` for a PCI AC'97: port I/O, interrupt sync, codec, ISR,
/// the four subdevices; then the DPC is pointed at the device.
#[cfg(target_arch = "x86_64")]
fn start_ac97(
    services: &KernelServices,
    resources: &ComPtr<portcls_sys::IResourceList>,
) -> Result<Registration, NTSTATUS> {
    match install_ac97(services, KernelPlatform::new(), KernelPortIo, resources) {
        Ok((device, registration)) => {
            device.platform().attach_dpc(Arc::as_ptr(&device));
            Ok(registration)
        }
        Err(status) => Err(status.code()),
    }
}

/// `StartDevice` for a PCI HD Audio controller: its memory BAR mapped
/// (`MmMapIoSpaceEx`, unmapped when the device goes), interrupt sync,
/// controller and codec, ISR, the four subdevices; then the DPC is pointed
/// at the device.
///
/// Not inlined: its frame (the device built before it moves into its
/// `Arc`) added to `start_device`'s passed the 4 KiB a frame may take
/// without a stack probe (`__chkstk`, which a driver has no library for),
/// and the link failed.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn start_hda(
    services: &KernelServices,
    resources: &ComPtr<portcls_sys::IResourceList>,
) -> Result<Registration, NTSTATUS> {
    let block = HdaResources::from_list(resources).map_err(wavert_com::NtStatus::code)?;
    let mmio =
        KernelMmio::map(block.mmio_base, block.mmio_length).ok_or(STATUS_INSUFFICIENT_RESOURCES)?;
    // On failure the Mmio (and so the mapping) goes with what install_hda
    // made of it.
    match install_hda(services, KernelPlatform::new(), mmio, resources) {
        Ok((device, registration)) => {
            device.platform().attach_dpc(Arc::as_ptr(&device));
            Ok(registration)
        }
        Err(status) => Err(status.code()),
    }
}

/// `StartDevice` for the root-enumerated virtual cable: the device's
/// parameters from its hardware key (`crate::registry`; a bad value is
/// logged and defaulted by `DeviceParameters::read`, a key that cannot be
/// opened gives the defaults), then one [`VirtualCable`] per configured
/// cable, each with its own timer, registered under its own names.
fn start_cable(services: &KernelServices) -> Result<Registration, NTSTATUS> {
    let parameters = DeviceRegistry::open(services.device)
        .map_or_else(DeviceParameters::default, |key| {
            DeviceParameters::read(&key, &kernel_log)
        });
    let configured = parameters.cables();
    let mut cables = Vec::new();
    let mut names = Vec::new();
    cables
        .try_reserve_exact(configured.len())
        .and_then(|()| names.try_reserve_exact(configured.len()))
        .map_err(|_| STATUS_INSUFFICIENT_RESOURCES)?;
    for cable in configured {
        cables.push(new_cable()?);
        names.push(cable.name);
    }
    // The miniports keep the cables alive; our references go on return.
    install_cables(services, &cables, &names).map_err(wavert_com::NtStatus::code)
}

/// One cable over a kernel platform with its own high-resolution timer.
fn new_cable() -> Result<Arc<VirtualCable<KernelPlatform>>, NTSTATUS> {
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
        return Err(STATUS_INSUFFICIENT_RESOURCES);
    }
    cable.platform().attach_timer(timer);
    Ok(cable)
}

/// What `StartDevice` left for the PnP handler, in non-paged pool; the
/// device extension's adapter slot points at it.
struct DeviceState {
    registration: Registration,
}

/// The adapter slot of the FDO's device extension, as an atomic pointer.
///
/// Learn's `PcAddAdapterDevice` page leaves `ULONG_PTR` elements 4 to 7 of
/// PortCls's default extension to the adapter driver; SYSVAD keeps its
/// adapter common object in element 5 (`PortClassDeviceContext::m_pCommon`),
/// and so do we. PnP IRPs for one device are serialised by the PnP manager;
/// the slot is atomic all the same, so no access can tear.
///
/// # Safety
///
/// `device` is null or the FDO `PcAddAdapterDevice` made (its extension at
/// least `PORT_CLASS_DEVICE_EXTENSION_SIZE` bytes, pointer-aligned, zeroed
/// by the I/O manager when the FDO was created), and the returned reference
/// is not used once the device is deleted.
unsafe fn adapter_slot<'a>(
    device: *mut wdk_sys::DEVICE_OBJECT,
) -> Option<&'a AtomicPtr<DeviceState>> {
    if device.is_null() {
        return None;
    }
    // SAFETY: a live FDO (the caller's contract).
    let extension = unsafe { (*device).DeviceExtension };
    if extension.is_null() {
        return None;
    }
    // SAFETY: element 5 of an extension of at least 64 pointer-sized
    // elements, pointer-aligned (the caller's contract).
    let slot = unsafe {
        extension
            .cast::<*mut DeviceState>()
            .add(PORT_CLASS_ADAPTER_SLOT)
    };
    // SAFETY: an aligned, live pointer-sized slot only this driver touches,
    // always through this atomic view.
    Some(unsafe { AtomicPtr::from_ptr(slot) })
}

/// Keeps `registration` in the device extension. Without memory for it,
/// unregisters it again and fails the start (a registration the PnP
/// handler could not find would block every later start).
///
/// # Safety
///
/// As [`adapter_slot`].
unsafe fn keep(device: *mut wdk_sys::DEVICE_OBJECT, mut registration: Registration) -> NTSTATUS {
    let layout = Layout::new::<DeviceState>();
    // SAFETY: `DeviceState` is not zero-sized (it holds the four port slots).
    let raw = unsafe { alloc(layout) };
    #[allow(
        clippy::cast_ptr_alignment,
        reason = "the allocation has `DeviceState`'s layout, alignment included"
    )]
    let block = raw.cast::<DeviceState>();
    // SAFETY: as the caller's contract.
    let slot = unsafe { adapter_slot(device) };
    let Some(slot) = slot.filter(|_| !block.is_null()) else {
        if !block.is_null() {
            // SAFETY: allocated just above with this layout, never written.
            unsafe { dealloc(block.cast(), layout) };
        }
        let _ = registration.unregister(&kernel_log);
        return STATUS_INSUFFICIENT_RESOURCES;
    };
    // SAFETY: a fresh allocation of `DeviceState`'s layout.
    unsafe { block.write(DeviceState { registration }) };
    let previous = slot.swap(block, Ordering::AcqRel);
    // SAFETY: whatever was there was put there by `keep` (or is null).
    unsafe { release(previous) };
    STATUS_SUCCESS
}

/// Takes the kept registration out of the device extension (if any),
/// unregisters it and frees it. IRQL: `PASSIVE_LEVEL`.
///
/// # Safety
///
/// As [`adapter_slot`].
unsafe fn unregister_kept(device: *mut wdk_sys::DEVICE_OBJECT) {
    // SAFETY: as the caller's contract.
    if let Some(slot) = unsafe { adapter_slot(device) } {
        let state = slot.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: only `keep` stores non-null pointers here.
        unsafe { release(state) };
    }
}

/// Unregisters and frees a `DeviceState` block `keep` made (null: nothing).
///
/// # Safety
///
/// `state` is null or a block from [`keep`] no longer in the slot.
unsafe fn release(state: *mut DeviceState) {
    if state.is_null() {
        return;
    }
    // SAFETY: a block `keep` wrote; we own it now (it left the slot).
    let mut owned = unsafe { state.read() };
    // SAFETY: allocated by `keep` with this layout; its value was moved out.
    unsafe { dealloc(state.cast(), Layout::new::<DeviceState>()) };
    // Failures are logged inside; the IRP goes on to PortCls regardless,
    // as the samples' `PnpHandler` does after its `Cleanup`.
    let _ = owned.registration.unregister(&kernel_log);
    // The port references go with `owned`.
}

/// The minor function of `irp`'s current stack location.
///
/// The offset of `Tail.Overlay.CurrentStackLocation` comes from
/// `portcls-sys` (checked against MinGW-w64's `wdm.h`) rather than from
/// `wdk-sys`'s bindings, whose anonymous-union field names depend on the
/// header set they were generated from.
///
/// # Safety
///
/// `irp` is null or a live IRP the I/O manager passed.
unsafe fn current_minor(irp: *mut wdk_sys::IRP) -> Option<u8> {
    if irp.is_null() {
        return None;
    }
    #[allow(
        clippy::cast_ptr_alignment,
        reason = "an IRP is 8-byte aligned and the field lies at a multiple of 8"
    )]
    let field = irp
        .cast::<u8>()
        .wrapping_add(IRP_CurrentStackLocation_OFFSET)
        .cast::<*mut wdk_sys::IO_STACK_LOCATION>();
    // SAFETY: a live IRP; the field lies inside its header.
    let stack = unsafe { field.read() };
    if stack.is_null() {
        return None;
    }
    // SAFETY: the I/O manager's current stack location of a live IRP.
    Some(unsafe { (*stack).MinorFunction })
}

/// The driver's `IRP_MJ_PNP` dispatch (`DRIVER_DISPATCH`), at
/// `PASSIVE_LEVEL`: on `IRP_MN_STOP_DEVICE`, `IRP_MN_SURPRISE_REMOVAL` and
/// `IRP_MN_REMOVE_DEVICE` it unregisters what `StartDevice` registered
/// (physical connections, then subdevices; see
/// `wavert_miniport::adapter::Registration::unregister`), then every PnP
/// IRP goes to PortCls through `PcDispatchIrp`, whose status it returns
/// (PortCls completes the IRP).
///
/// # Safety
///
/// Called by the I/O manager with the FDO and a PnP IRP.
unsafe extern "C" fn pnp_dispatch(
    device: *mut wdk_sys::DEVICE_OBJECT,
    irp: *mut wdk_sys::IRP,
) -> wdk_sys::NTSTATUS {
    // SAFETY: the IRP the I/O manager passed.
    let minor = unsafe { current_minor(irp) };
    if matches!(
        minor,
        Some(IRP_MN_STOP_DEVICE | IRP_MN_SURPRISE_REMOVAL | IRP_MN_REMOVE_DEVICE)
    ) {
        // SAFETY: the FDO PcAddAdapterDevice made, live for this IRP.
        unsafe { unregister_kept(device) };
    }
    // SAFETY: the FDO and IRP as received; PortCls completes the IRP.
    unsafe { PcDispatchIrp(device.cast(), irp.cast()) }
}
