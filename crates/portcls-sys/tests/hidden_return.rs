//! Pins the shape of the one slot that returns a union by value in C++.

use portcls_sys::{IPortWaveRTStreamVtbl, PHYSICAL_ADDRESS, PMDL, THIS, ULONG};

/// The ABI shape: hidden result pointer right after `this`, returned in RAX,
/// in the Windows x64 convention on every x86_64 target (spelled out here
/// rather than through `windows_fn!`, so that a change of what the macro
/// means fails this test).
#[cfg(target_arch = "x86_64")]
type HiddenReturn =
    unsafe extern "win64" fn(THIS, *mut PHYSICAL_ADDRESS, PMDL, ULONG) -> *mut PHYSICAL_ADDRESS;
#[cfg(not(target_arch = "x86_64"))]
type HiddenReturn =
    unsafe extern "system" fn(THIS, *mut PHYSICAL_ADDRESS, PMDL, ULONG) -> *mut PHYSICAL_ADDRESS;

#[test]
fn get_physical_page_address_passes_a_hidden_result_pointer() {
    // Fails to compile if the slot's type changes (e.g. to the C view
    // `fn(THIS, PMDL, ULONG) -> PHYSICAL_ADDRESS`).
    let pin = |v: &IPortWaveRTStreamVtbl| -> HiddenReturn { v.GetPhysicalPageAddress };
    let _ = pin;
    assert_eq!(
        core::mem::offset_of!(IPortWaveRTStreamVtbl, GetPhysicalPageAddress),
        9 * core::mem::size_of::<usize>()
    );
}
