//! rswavert: a Windows WaveRT audio miniport driver written in Rust.
//!
//! This crate is the Windows glue only (layer 4 of `docs/architecture.md`):
//! the entry points the kernel and PortCls call, over `wdk-sys`, with
//! `wdk-alloc` as the non-paged global allocator and `wdk-panic` as the panic
//! handler. Everything that can be portable lives in the workspace crates
//! under `crates/`, which build and test on any host.
//!
//! It is built only for Windows: `x86_64-pc-windows-msvc` (the cable, the
//! AC'97 and the HD Audio controller) and `aarch64-pc-windows-msvc` (the cable), with `cargo make` on
//! Windows or `cargo xtask cross` on Linux.
#![no_std]
// Every path here runs in the kernel: a panic is a bugcheck, and floating
// point state is not saved at raised IRQL. Same rules as the portable crates.
#![deny(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::float_arithmetic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

extern crate alloc;

mod adapter;
// Port I/O is an x86 instruction-set feature (`in`/`out`); ARM64 has none,
// so the AC'97 back-end that needs it is part of the x64 build only (the
// ARM64 INF does not offer the AC'97 either; xtask/src/inf.rs).
#[cfg(target_arch = "x86_64")]
mod io;
// The HD Audio controller's registers are reached with x64 `mov` forms the
// image harness decodes; the ARM64 build leaves the controller out.
#[cfg(target_arch = "x86_64")]
mod mmio;
mod platform;
mod registry;
mod services;

// A panic in the kernel must stop the machine cleanly: wdk-panic bugchecks.
// (`panic = "abort"` in both profiles means no unwinding ever crosses our
// `extern "system"` entry points.)
#[cfg(not(test))]
extern crate wdk_panic;

#[cfg(not(test))]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;
