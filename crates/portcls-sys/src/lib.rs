//! Hand-written `#[repr(C)]` PortCls / KS / ksmedia definitions, C names kept.
//!
//! This crate is the ABI between a Rust WaveRT miniport and the Windows
//! PortCls port driver: types, vtables, GUIDs, constants and the PortCls
//! exports. It holds no logic. It does not depend on `wdk-sys`: kernel
//! objects the miniport only passes along (`DEVICE_OBJECT`, `IRP`, `MDL`,
//! `KEVENT`, ...) are opaque types here, so the crate builds on any host and
//! the same vtables run in the user-mode emulator (`extern "system"` is the C
//! ABI on Linux x86-64).
//!
//! Layouts, vtable slots, GUIDs and enumerator values are checked against
//! the MinGW-w64 headers by `cargo xtask` (`abi_check`); the few items those
//! headers lack are collected in [`documented_only`], each with the
//! Microsoft documentation page it comes from and hand-written layout
//! assertions.
#![no_std]
// The names are the C names of the Windows headers, kept on purpose so that a
// reader can search Microsoft's documentation and samples for them.
#![allow(non_snake_case, non_camel_case_types, non_upper_case_globals)]
// Each C typedef and constant carries its meaning in its (C) name and in the
// Microsoft documentation; repeating that on every field of every structure
// would add nothing. Public items that are not self-describing have docs.
#![allow(missing_docs)]
#![allow(clippy::upper_case_acronyms)]

pub mod documented_only;
pub mod guids;
pub mod interfaces;
pub mod ks;
pub mod ksmedia;
pub mod portcls;
pub mod status;
pub mod types;

pub use documented_only::*;
pub use guids::*;
pub use interfaces::*;
pub use ks::*;
pub use ksmedia::*;
pub use portcls::*;
pub use status::*;
pub use types::*;
