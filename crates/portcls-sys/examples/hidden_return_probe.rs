//! One call through `IPortWaveRTStream::GetPhysicalPageAddress`, compiled
//! to assembly for `x86_64-pc-windows-msvc` by the ABI check: the call must
//! pass the hidden result pointer in RDX, the MDL in R8 and the index in R9,
//! exactly as clang does for the C++ member function.
#![no_std]

use portcls_sys::{IPortWaveRTStream, PHYSICAL_ADDRESS, PMDL};

/// Calls slot 9 of the stream's vtable with index 7 and returns the address.
///
/// # Safety
///
/// `stream` must point to a live `IPortWaveRTStream` and `mdl` must be an MDL
/// the stream allocated.
#[no_mangle]
pub unsafe extern "system" fn abi_probe(stream: *mut IPortWaveRTStream, mdl: PMDL) -> i64 {
    let mut address = PHYSICAL_ADDRESS::default();
    // SAFETY: the caller guarantees `stream` is a live interface pointer.
    let vtbl = unsafe { (*stream).lpVtbl };
    // SAFETY: a live interface's `lpVtbl` points to its vtable.
    let slot = unsafe { (*vtbl).GetPhysicalPageAddress };
    // SAFETY: the slot belongs to `stream`, and `address` outlives the call.
    unsafe { slot(stream.cast(), &raw mut address, mdl, 7) };
    address.QuadPart
}
