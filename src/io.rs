//! Port I/O for the AC'97 (`READ_PORT_*` / `WRITE_PORT_*`).
//!
//! On x64, `wdm.h` defines `READ_PORT_UCHAR` and friends as inline
//! `__inbyte`/`__outbyte` intrinsics, not as imports from `hal.dll`, so this
//! module emits the same `in`/`out` instructions with `core::arch::asm!`:
//! no import, and nothing the image check would have to allow.
//! `KeStallExecutionProcessor` is a real `hal.dll` export ([`stall_us`]).

use core::arch::asm;

use wavert_miniport::ac97::PortIo;
use wdk_sys::ntddk::KeStallExecutionProcessor;

/// The longest busy wait `KeStallExecutionProcessor` is documented for.
const MAX_STALL_US: u32 = 50;

/// Port I/O on the processor's I/O space. IRQL: any.
pub struct KernelPortIo;

impl PortIo for KernelPortIo {
    fn read8(&self, port: u16) -> u8 {
        let value: u8;
        // SAFETY: `in al, dx` on a port of the card's own I/O BAR (PnP
        // assigned it to us); it touches no memory and no flags.
        unsafe {
            asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags));
        };
        value
    }

    fn read16(&self, port: u16) -> u16 {
        let value: u16;
        // SAFETY: as in `read8`, a 16-bit `in`.
        unsafe {
            asm!("in ax, dx", in("dx") port, out("ax") value, options(nomem, nostack, preserves_flags));
        };
        value
    }

    fn read32(&self, port: u16) -> u32 {
        let value: u32;
        // SAFETY: as in `read8`, a 32-bit `in`.
        unsafe {
            asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags));
        };
        value
    }

    fn write8(&self, port: u16, value: u8) {
        // SAFETY: `out dx, al` to the card's own I/O BAR; no memory touched.
        unsafe {
            asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags));
        };
    }

    fn write16(&self, port: u16, value: u16) {
        // SAFETY: as in `write8`, a 16-bit `out`.
        unsafe {
            asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags));
        };
    }

    fn write32(&self, port: u16, value: u32) {
        // SAFETY: as in `write8`, a 32-bit `out`.
        unsafe {
            asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags));
        };
    }

    fn stall_us(&self, us: u32) {
        stall_us(us);
    }
}

/// Busy-waits `us` microseconds. `KeStallExecutionProcessor` is documented
/// for waits of at most 50 µs per call; longer waits (the codec-ready poll
/// asks for 1 ms) are made of such calls. IRQL: any. Shared by the AC'97's
/// port I/O and the HD Audio's MMIO (`crate::mmio`).
pub fn stall_us(us: u32) {
    let mut left = us;
    while left > 0 {
        let step = left.min(MAX_STALL_US);
        // SAFETY: a busy wait, callable at any IRQL.
        unsafe { KeStallExecutionProcessor(step) };
        left -= step;
    }
}
