//! Runs wavert-core's AC'97 and HD Audio back-ends against QEMU's device
//! models.
//!
//! QEMU runs with the qtest accelerator: no guest CPU executes; this
//! process plays firmware and driver. It answers QEMU's qtest connection,
//! programs PCI configuration space, reads and writes the card's I/O ports
//! with qtest commands, writes descriptors and audio straight into guest RAM
//! (a shared file), advances virtual time deterministically with
//! `clock_step`, and calls the driver's ISR when the interrupt line rises.
//!
//! - [`setup`]: install QEMU and build the qtest accelerator module
//!   ([`setup::ensure_qemu`]).
//! - [`qtest`]: the line protocol.
//! - [`machine`]: the PC with an AC'97 or HD Audio card: process, guest
//!   RAM, firmware, port and MMIO windows
//!   ([`wavert_core::bus::RegisterBus`]), interrupt delivery.
//! - [`layout`]: where guest RAM sits in the physical address space (half
//!   of it above 4 GiB).

pub mod layout;
pub mod machine;
pub mod qtest;
pub mod setup;

pub use layout::{RamLayout, HIGH_RAM_BASE};
pub use machine::{Audiodev, Card, GuestRam, Machine, MmioWindow, PortWindow, Window};
pub use setup::{ensure_qemu, QemuInstall};
