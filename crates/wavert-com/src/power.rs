//! The adapter's power-management object (`IAdapterPowerManagement` and
//! `IAdapterPowerManagement2`), built from a Rust value.
//!
//! PortCls holds the object the driver registers with
//! `PcRegisterAdapterPowerManagement` and calls it from its power IRP
//! handling: `QueryPowerChangeState` for `IRP_MN_QUERY_POWER` (a failure
//! vetoes the query), `PowerChangeState` (or `PowerChangeState2`, when the
//! object answers `IID_IAdapterPowerManagement2`) for `IRP_MN_SET_POWER`,
//! from a work item at `PASSIVE_LEVEL` with the device's create requests held
//! off (ReactOS portcls `power.cpp`; the older PortCls sources'
//! `DevicePowerWorker` acquire the device around the call), and
//! `QueryDeviceCapabilities` while it answers `IRP_MN_QUERY_CAPABILITIES`
//! (Learn: `IAdapterPowerManagement::QueryDeviceCapabilities`). Both
//! interfaces sit at the same place in the object: the second extends the
//! first's vtable by one slot (WDK `portcls.h`).

use core::ffi::c_void;
use portcls_sys::windows_abi;

use portcls_sys::{
    IAdapterPowerManagement, IAdapterPowerManagement2Vtbl, IAdapterPowerManagementVtbl,
    IID_IAdapterPowerManagement, IID_IAdapterPowerManagement2, IID_IUnknown, DEVICE_CAPABILITIES,
    DEVICE_POWER_STATE, GUID, NTSTATUS, PDEVICE_CAPABILITIES, POWER_STATE,
    STATUS_INVALID_PARAMETER, SYSTEM_POWER_STATE,
};

use crate::object::{unknown_vtbl, ComClass, ComObject};
use crate::{status_of, ComPtr, NtResult};

/// What an adapter's power management answers.
///
/// Every method runs at `PASSIVE_LEVEL` (PortCls calls them from its power
/// IRP dispatch and a work item).
pub trait AdapterPowerManagement: Send + Sync + 'static {
    /// `PowerChangeState(NewState)` / `PowerChangeState2(NewDeviceState,
    /// NewSystemState)`: the device goes to `device` now. `system` is the
    /// system state PortCls names with `PowerChangeState2` (`None` through
    /// the first interface). The change is complete when this returns.
    fn power_change_state(&self, device: DEVICE_POWER_STATE, system: Option<SYSTEM_POWER_STATE>);

    /// `QueryPowerChangeState(NewStateQuery)`: whether the device can go to
    /// `device`.
    ///
    /// # Errors
    ///
    /// The status that vetoes the change.
    fn query_power_change_state(&self, device: DEVICE_POWER_STATE) -> NtResult<()>;

    /// `QueryDeviceCapabilities(caps)`: adjusts the capabilities the bus
    /// driver filled.
    ///
    /// # Errors
    ///
    /// The status PortCls gets back (e.g. for a structure of the wrong size).
    fn query_device_capabilities(&self, caps: &mut DEVICE_CAPABILITIES) -> NtResult<()>;
}

/// The COM body of an adapter power-management object.
pub struct AdapterPower<T>(T);

/// Interface pointers of an adapter power-management object.
#[repr(C)]
pub struct AdapterPowerInterfaces {
    power: *const IAdapterPowerManagement2Vtbl,
}
// SAFETY: a pointer to an immutable `static` vtable.
unsafe impl Send for AdapterPowerInterfaces {}
// SAFETY: as above.
unsafe impl Sync for AdapterPowerInterfaces {}

impl<T: AdapterPowerManagement> AdapterPower<T> {
    const VTBL: IAdapterPowerManagement2Vtbl = IAdapterPowerManagement2Vtbl {
        base__: IAdapterPowerManagementVtbl {
            base__: unknown_vtbl::<Self, 0>(),
            PowerChangeState: power_change_state::<T>,
            QueryPowerChangeState: query_power_change_state::<T>,
            QueryDeviceCapabilities: query_device_capabilities::<T>,
        },
        PowerChangeState2: power_change_state2::<T>,
    };
}

// SAFETY: one vtable pointer at offset 0, built with `unknown_vtbl::<Self, 0>`;
// `query` only answers offset 0, for IUnknown and the two interfaces whose
// slots that vtable holds (the second's begin with the first's).
unsafe impl<T: AdapterPowerManagement> ComClass for AdapterPower<T> {
    type Interfaces = AdapterPowerInterfaces;
    fn interfaces() -> Self::Interfaces {
        AdapterPowerInterfaces { power: &Self::VTBL }
    }
    fn query(&self, iid: &GUID) -> Option<usize> {
        [
            IID_IUnknown,
            IID_IAdapterPowerManagement,
            IID_IAdapterPowerManagement2,
        ]
        .contains(iid)
        .then_some(0)
    }
}

/// The value behind `this`.
///
/// # Safety
///
/// `this` must be the interface pointer of a live `AdapterPower<T>` object.
unsafe fn value<'a, T: AdapterPowerManagement>(this: *mut c_void) -> &'a T {
    // SAFETY: the object's only interface is at offset 0 (caller: live object).
    &unsafe { ComObject::<AdapterPower<T>>::from_this::<0>(this) }
        .value()
        .0
}

#[windows_abi]
unsafe extern "system" fn power_change_state<T: AdapterPowerManagement>(
    this: *mut c_void,
    new_state: POWER_STATE,
) {
    // SAFETY: PortCls passes the device state in a device power IRP's
    // POWER_STATE (both members are 32-bit enums, so any bits are valid).
    let device = unsafe { new_state.DeviceState };
    // SAFETY: installed only at offset 0 of a live `ComObject<AdapterPower<T>>`.
    unsafe { value::<T>(this) }.power_change_state(device, None);
}

#[windows_abi]
unsafe extern "system" fn power_change_state2<T: AdapterPowerManagement>(
    this: *mut c_void,
    new_device_state: DEVICE_POWER_STATE,
    new_system_state: SYSTEM_POWER_STATE,
) {
    // SAFETY: installed only at offset 0 of a live `ComObject<AdapterPower<T>>`.
    unsafe { value::<T>(this) }.power_change_state(new_device_state, Some(new_system_state));
}

#[windows_abi]
unsafe extern "system" fn query_power_change_state<T: AdapterPowerManagement>(
    this: *mut c_void,
    query: POWER_STATE,
) -> NTSTATUS {
    // SAFETY: as in `power_change_state`: a 32-bit enum either way.
    let device = unsafe { query.DeviceState };
    // SAFETY: installed only at offset 0 of a live `ComObject<AdapterPower<T>>`.
    status_of(unsafe { value::<T>(this) }.query_power_change_state(device))
}

#[windows_abi]
unsafe extern "system" fn query_device_capabilities<T: AdapterPowerManagement>(
    this: *mut c_void,
    caps: PDEVICE_CAPABILITIES,
) -> NTSTATUS {
    if caps.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: PortCls passes the IRP's DEVICE_CAPABILITIES, writable and
    // ours for the call; null was refused above.
    let caps = unsafe { &mut *caps };
    // SAFETY: installed only at offset 0 of a live `ComObject<AdapterPower<T>>`.
    status_of(unsafe { value::<T>(this) }.query_device_capabilities(caps))
}

/// Creates an adapter power-management object; the pointer holds its one
/// reference (the `IAdapterPowerManagement` view; `IAdapterPowerManagement2`
/// is one `QueryInterface` away).
///
/// # Errors
///
/// `INSUFFICIENT_RESOURCES` when the allocation fails.
pub fn new_adapter_power_management<T: AdapterPowerManagement>(
    value: T,
) -> NtResult<ComPtr<IAdapterPowerManagement>> {
    let raw = ComObject::create(AdapterPower(value))?;
    // SAFETY: a new object's first interface is IAdapterPowerManagement(2),
    // with one reference for us.
    unsafe { ComPtr::from_raw(raw.as_ptr().cast()) }.ok_or(crate::NtStatus::INSUFFICIENT_RESOURCES)
}
