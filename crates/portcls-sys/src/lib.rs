//! Hand-written `#[repr(C)]` PortCls / KS / ksmedia definitions, C names kept.
//!
//! This crate is the ABI between a Rust WaveRT miniport and the Windows
//! PortCls port driver: types, vtables, GUIDs, constants and the PortCls
//! exports. It holds no logic. It does not depend on `wdk-sys`: kernel
//! objects the miniport only passes along (`DEVICE_OBJECT`, `IRP`, `MDL`,
//! `KEVENT`, ...) are opaque types here, so the crate builds on any host and
//! the same vtables run in the user-mode emulator.
//!
//! Every vtable slot, PortCls callback and kernel callback uses the Windows
//! x64 calling convention on every x86_64 target, Linux included: slot types
//! are written with [`windows_fn!`] and the functions that fill them with
//! [`macro@windows_abi`]. That is what lets the emulator's port objects serve
//! both the host-built miniport and the shipped `.sys` image, and makes every
//! host test speak the driver's real convention.
//!
//! Layouts, vtable slots, GUIDs and enumerator values are checked against
//! the MinGW-w64 headers by `cargo xtask` (`abi_check`); the few items those
//! headers lack are collected in [`documented_only`], each with the
//! Microsoft documentation page it comes from and hand-written layout
//! assertions.
//!
//! The structures a miniport reads from or writes into a property buffer
//! (`KSPROPERTY_DESCRIPTION`, `KSJACK_DESCRIPTION`, `KSP_PIN`, ...) derive
//! [`zerocopy`]'s `FromBytes`, `IntoBytes`, `Immutable` and `KnownLayout`:
//! they are copied to and from byte slices whole, with the length checked,
//! and the derive refuses any structure with padding.
#![no_std]
// The names are the C names of the Windows headers, kept on purpose so that a
// reader can search Microsoft's documentation and samples for them.
#![allow(non_snake_case, non_camel_case_types, non_upper_case_globals)]
// Each C typedef and constant carries its meaning in its (C) name and in the
// Microsoft documentation; repeating that on every field of every structure
// would add nothing. Public items that are not self-describing have docs.
#![allow(missing_docs)]
#![allow(clippy::upper_case_acronyms)]

/// The Windows calling convention for a function definition: see
/// [`windows_fn!`] for function-pointer types.
pub use portcls_sys_macros::windows_abi;

/// A function-pointer type with the Windows calling convention:
/// `extern "win64"` on x86_64 targets (which on Windows x64 is
/// `extern "system"`), `extern "system"` elsewhere.
///
/// ```
/// type Release = portcls_sys::windows_fn!(unsafe fn(This: *mut core::ffi::c_void) -> u32);
/// ```
///
/// Functions stored in such a slot are defined with
/// [`#[windows_abi]`](macro@windows_abi), which makes the same choice.
#[cfg(target_arch = "x86_64")]
#[macro_export]
macro_rules! windows_fn {
    (unsafe fn $($signature:tt)*) => { unsafe extern "win64" fn $($signature)* };
    (fn $($signature:tt)*) => { extern "win64" fn $($signature)* };
}

/// A function-pointer type with the Windows calling convention (this target
/// is not x86_64: `extern "system"`).
#[cfg(not(target_arch = "x86_64"))]
#[macro_export]
macro_rules! windows_fn {
    (unsafe fn $($signature:tt)*) => { unsafe extern "system" fn $($signature)* };
    (fn $($signature:tt)*) => { extern "system" fn $($signature)* };
}

pub mod documented_only;
pub mod guids;
pub mod interfaces;
pub mod ks;
pub mod ksmedia;
pub mod pnp;
pub mod portcls;
pub mod status;
pub mod types;

pub use documented_only::*;
pub use guids::*;
pub use interfaces::*;
pub use ks::*;
pub use ksmedia::*;
pub use pnp::*;
pub use portcls::*;
pub use status::*;
pub use types::*;
