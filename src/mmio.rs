//! The HD Audio controller's memory BAR (`READ_REGISTER_*` /
//! `WRITE_REGISTER_*`) and the contiguous memory it reaches.
//!
//! * The BAR is mapped at `StartDevice` with `MmMapIoSpaceEx(base, length,
//!   PAGE_READWRITE | PAGE_NOCACHE)` (no-execute: the memory-integrity form
//!   of `MmMapIoSpace`) and unmapped with `MmUnmapIoSpace` when the device
//!   goes ([`KernelMmio`]'s `Drop`, with the last reference to the device).
//! * On x64, `wdm.h` defines `READ_REGISTER_ULONG` and friends as inline
//!   volatile accesses, not imports; this module emits them as `asm!` with
//!   fixed registers and fixed forms (`mov eax, dword ptr [rcx]`,
//!   `mov dword ptr [rcx], eax` and the 16- and 8-bit forms with `ax` /
//!   `al`), so the compiler cannot merge, split or reorder them and the
//!   image harness's MMIO trap (`wavert_emulator::image::mmio_trap`)
//!   decodes exactly these six instructions.
//! * Common memory (the CORB, RIRB and DMA position buffer) is
//!   `MmAllocateContiguousNodeMemory(bytes, 0, max, 0, PAGE_READWRITE |
//!   PAGE_NOCACHE, MM_ANY_NODE_OK)`, freed with `MmFreeContiguousMemory`.
//!   Learn's "Implement memory integrity compatible code" lists
//!   `MmAllocateContiguousMemorySpecifyCache` (executable memory) among the
//!   DDIs to replace and names this one, with an explicit NX protection, as
//!   its replacement; `xtask/src/pe_check.rs` allows it for that argument.
//!
//! x64 only, as the port I/O is: the ARM64 build keeps refusing the device
//! (ARM64's `READ_REGISTER_*` are `ldr`/`str` with barriers that no test
//! here could run).

use core::arch::asm;
use core::ffi::c_void;
use core::ptr::NonNull;

use wavert_miniport::hda::{CommonBuffer, Mmio};
use wavert_miniport::memory::Mapping;
use wdk_sys::ntddk::{MmFreeContiguousMemory, MmGetPhysicalAddress, MmUnmapIoSpace};
use wdk_sys::{PHYSICAL_ADDRESS, PVOID, SIZE_T, ULONG};

use crate::io::stall_us;

/// `PAGE_READWRITE` (`winnt.h`).
const PAGE_READWRITE: ULONG = 0x04;
/// `PAGE_NOCACHE` (`winnt.h`).
const PAGE_NOCACHE: ULONG = 0x200;
/// `MM_ANY_NODE_OK` (`wdm.h`).
const MM_ANY_NODE_OK: ULONG = 0x8000_0000;

// Absent from MinGW-w64's headers (so from the Linux-hosted bindings); the
// prototypes of Learn's `wdm/nf-wdm-mmmapiospaceex` (Windows 10) and
// `wdm/nf-wdm-mmallocatecontiguousnodememory` (Windows Vista) pages. A
// PHYSICAL_ADDRESS is an 8-byte union, passed by value in a register.
unsafe extern "system" {
    fn MmMapIoSpaceEx(
        PhysicalAddress: PHYSICAL_ADDRESS,
        NumberOfBytes: SIZE_T,
        Protect: ULONG,
    ) -> PVOID;
    fn MmAllocateContiguousNodeMemory(
        NumberOfBytes: SIZE_T,
        LowestAcceptableAddress: PHYSICAL_ADDRESS,
        HighestAcceptableAddress: PHYSICAL_ADDRESS,
        BoundaryAddressMultiple: PHYSICAL_ADDRESS,
        Protect: ULONG,
        PreferredNode: ULONG,
    ) -> PVOID;
}

/// A `PHYSICAL_ADDRESS` holding `address`.
fn physical(address: u64) -> PHYSICAL_ADDRESS {
    let mut value = PHYSICAL_ADDRESS::default();
    value.QuadPart = i64::try_from(address).unwrap_or(i64::MAX);
    value
}

/// The controller's BAR, mapped non-cached and no-execute for as long as
/// this value lives. IRQL: register accesses at any level; mapping,
/// unmapping and the common-memory calls at `PASSIVE_LEVEL`.
pub struct KernelMmio {
    base: NonNull<u8>,
    length: usize,
}

// SAFETY: the mapping is device memory every processor may access; each
// access is one volatile instruction, and the hardware serialises them.
unsafe impl Send for KernelMmio {}
// SAFETY: as above: `&KernelMmio` only issues single register accesses.
unsafe impl Sync for KernelMmio {}

impl KernelMmio {
    /// Maps `length` bytes of the BAR at physical `base`. `None` when the
    /// kernel has no mapping for it.
    pub fn map(base: u64, length: u32) -> Option<Self> {
        let length = usize::try_from(length).ok().filter(|&l| l > 0)?;
        // SAFETY: the BAR PnP assigned to this device (its translated memory
        // resource), mapped non-cached and NX as device registers must be.
        let mapped = unsafe {
            MmMapIoSpaceEx(
                physical(base),
                length as SIZE_T,
                PAGE_READWRITE | PAGE_NOCACHE,
            )
        };
        NonNull::new(mapped.cast::<u8>()).map(|base| Self { base, length })
    }

    /// The address of `width` bytes of register `offset`, when they lie in
    /// the mapping and are naturally aligned.
    fn register(&self, offset: u16, width: usize) -> Option<*mut u8> {
        let offset = usize::from(offset);
        (offset % width == 0 && offset.checked_add(width)? <= self.length)
            .then(|| self.base.as_ptr().wrapping_add(offset))
    }
}

impl Drop for KernelMmio {
    fn drop(&mut self) {
        // SAFETY: the mapping `map` made, with its length; the device that
        // used it is gone (this is the last reference to its Mmio).
        unsafe { MmUnmapIoSpace(self.base.as_ptr().cast(), self.length as SIZE_T) };
    }
}

/// Reads and writes outside the mapping (a back-end bug) read as all ones,
/// as a PCI master abort does, and write nothing.
impl Mmio for KernelMmio {
    fn read8(&self, offset: u16) -> u8 {
        let Some(register) = self.register(offset, 1) else {
            return u8::MAX;
        };
        let value: u8;
        // SAFETY: a byte of the mapped BAR (bounds checked above); one
        // volatile load, no stack, flags untouched.
        unsafe {
            asm!("mov al, byte ptr [rcx]", in("rcx") register, out("al") value, options(nostack, preserves_flags));
        };
        value
    }

    fn read16(&self, offset: u16) -> u16 {
        let Some(register) = self.register(offset, 2) else {
            return u16::MAX;
        };
        let value: u16;
        // SAFETY: as in `read8`, an aligned word of the BAR.
        unsafe {
            asm!("mov ax, word ptr [rcx]", in("rcx") register, out("ax") value, options(nostack, preserves_flags));
        };
        value
    }

    fn read32(&self, offset: u16) -> u32 {
        let Some(register) = self.register(offset, 4) else {
            return u32::MAX;
        };
        let value: u32;
        // SAFETY: as in `read8`, an aligned dword of the BAR.
        unsafe {
            asm!("mov eax, dword ptr [rcx]", in("rcx") register, out("eax") value, options(nostack, preserves_flags));
        };
        value
    }

    fn write8(&self, offset: u16, value: u8) {
        let Some(register) = self.register(offset, 1) else {
            return;
        };
        // SAFETY: a byte of the mapped BAR (bounds checked above); one
        // volatile store, no stack, flags untouched.
        unsafe {
            asm!("mov byte ptr [rcx], al", in("rcx") register, in("al") value, options(nostack, preserves_flags));
        };
    }

    fn write16(&self, offset: u16, value: u16) {
        let Some(register) = self.register(offset, 2) else {
            return;
        };
        // SAFETY: as in `write8`, an aligned word of the BAR.
        unsafe {
            asm!("mov word ptr [rcx], ax", in("rcx") register, in("ax") value, options(nostack, preserves_flags));
        };
    }

    fn write32(&self, offset: u16, value: u32) {
        let Some(register) = self.register(offset, 4) else {
            return;
        };
        // SAFETY: as in `write8`, an aligned dword of the BAR.
        unsafe {
            asm!("mov dword ptr [rcx], eax", in("rcx") register, in("eax") value, options(nostack, preserves_flags));
        };
    }

    fn stall_us(&self, us: u32) {
        stall_us(us);
    }

    /// `MmAllocateContiguousNodeMemory` below `max_physical`, non-cached and
    /// NX, zeroed; its physical address from `MmGetPhysicalAddress`.
    fn allocate_common(&self, bytes: u32, max_physical: u64) -> Option<CommonBuffer> {
        let size = usize::try_from(bytes).ok().filter(|&b| b > 0)?;
        // SAFETY: a plain allocation call at PASSIVE_LEVEL; the protection
        // is read/write, non-cached, no-execute.
        let memory = unsafe {
            MmAllocateContiguousNodeMemory(
                size as SIZE_T,
                physical(0),
                physical(max_physical),
                physical(0),
                PAGE_READWRITE | PAGE_NOCACHE,
                MM_ANY_NODE_OK,
            )
        };
        let base = NonNull::new(memory.cast::<u8>())?;
        // SAFETY: `size` bytes the kernel just allocated for us, mapped in
        // system space until `free_common` gives them back.
        let mapping = unsafe { Mapping::new(base, bytes) };
        let _zeroed = mapping.zero(0, bytes);
        // SAFETY: a mapped system address of ours.
        let address = unsafe { MmGetPhysicalAddress(base.as_ptr().cast::<c_void>()) };
        // SAFETY: every view of a LARGE_INTEGER is initialised.
        let quad = unsafe { address.QuadPart };
        Some(CommonBuffer {
            mapping,
            physical: u64::try_from(quad).unwrap_or(0),
            handle: base.as_ptr() as usize,
        })
    }

    fn free_common(&self, buffer: CommonBuffer) {
        let base = buffer.mapping.into_base();
        // SAFETY: memory `allocate_common` got from
        // MmAllocateContiguousNodeMemory, freed once (the buffer is consumed).
        unsafe { MmFreeContiguousMemory(base.as_ptr().cast()) };
    }

    /// Where WALCLK and the other registers are in system space, for
    /// `GetClockRegister`.
    fn register_address(&self, offset: u16) -> Option<NonNull<u8>> {
        self.register(offset, 1).and_then(NonNull::new)
    }
}
