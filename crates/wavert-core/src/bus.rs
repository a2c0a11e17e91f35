//! The register-bus and DMA-memory traits of the hardware back-ends.
//!
//! Every back-end in this crate is written against them (port I/O for the
//! AC'97, MMIO for HD Audio); [`SharedMemory`] is the memory their device
//! models share with the driver.

use core::cell::Cell;

/// Port or memory-mapped register access at an offset inside one window.
///
/// Accesses cannot fail: on a real bus a missing device reads all ones, and
/// implementations for test harnesses record their own transport errors.
pub trait RegisterBus {
    /// Reads a byte.
    fn read8(&mut self, offset: u16) -> u8;
    /// Reads a 16-bit word.
    fn read16(&mut self, offset: u16) -> u16;
    /// Reads a 32-bit dword.
    fn read32(&mut self, offset: u16) -> u32;
    /// Writes a byte.
    fn write8(&mut self, offset: u16, value: u8);
    /// Writes a 16-bit word.
    fn write16(&mut self, offset: u16, value: u16);
    /// Writes a 32-bit dword.
    fn write32(&mut self, offset: u16, value: u32);
}

/// The driver's view of memory the device reads descriptors from: bytes at
/// a physical address. In the kernel this is the common buffer's virtual
/// mapping; in a harness, guest RAM.
pub trait DmaMemory {
    /// Writes `bytes` starting at `physical`.
    fn write(&mut self, physical: u64, bytes: &[u8]);
}

/// Memory the device writes and the driver reads back (HD Audio's response
/// ring and DMA position buffer).
pub trait DmaMemoryRead {
    /// Fills `out` from `physical` on.
    fn read(&mut self, physical: u64, out: &mut [u8]);
}

/// Memory shared by a driver and a device model.
///
/// `N` bytes from a physical base, interior-mutable so the driver writes it (through `&SharedMemory`,
/// which is [`DmaMemory`] and [`DmaMemoryRead`]) while the model reads and
/// writes it too. Writes outside the range are counted, not stored; reads
/// outside it return zeros.
#[derive(Debug)]
pub struct SharedMemory<const N: usize> {
    base: u64,
    bytes: [Cell<u8>; N],
    stray_writes: Cell<u32>,
}

impl<const N: usize> SharedMemory<N> {
    /// Memory covering `base..base + N`, zeroed.
    #[must_use]
    pub const fn new(base: u64) -> Self {
        Self {
            base,
            bytes: [const { Cell::new(0) }; N],
            stray_writes: Cell::new(0),
        }
    }

    /// Writes that fell outside the modelled range.
    #[must_use]
    pub fn stray_writes(&self) -> u32 {
        self.stray_writes.get()
    }

    fn cells(&self, physical: u64, len: usize) -> Option<&[Cell<u8>]> {
        let start = usize::try_from(physical.checked_sub(self.base)?).ok()?;
        self.bytes.get(start..start.checked_add(len)?)
    }

    /// Copies bytes out (zeros outside the range).
    pub fn load(&self, physical: u64, out: &mut [u8]) {
        if let Some(cells) = self.cells(physical, out.len()) {
            for (byte, cell) in out.iter_mut().zip(cells) {
                *byte = cell.get();
            }
        } else {
            out.fill(0);
        }
    }

    /// Copies bytes in (counted as stray outside the range).
    pub fn store(&self, physical: u64, bytes: &[u8]) {
        if let Some(cells) = self.cells(physical, bytes.len()) {
            for (cell, byte) in cells.iter().zip(bytes) {
                cell.set(*byte);
            }
        } else {
            self.stray_writes
                .set(self.stray_writes.get().saturating_add(1));
        }
    }

    /// Reads a little-endian dword (0 outside the range).
    #[must_use]
    pub fn read_u32(&self, physical: u64) -> u32 {
        let mut word = [0u8; 4];
        self.load(physical, &mut word);
        u32::from_le_bytes(word)
    }
}

impl<const N: usize> DmaMemory for &SharedMemory<N> {
    fn write(&mut self, physical: u64, bytes: &[u8]) {
        self.store(physical, bytes);
    }
}

impl<const N: usize> DmaMemoryRead for &SharedMemory<N> {
    fn read(&mut self, physical: u64, out: &mut [u8]) {
        self.load(physical, out);
    }
}

/// Counts the accesses made through it, so a caller can state (and a test
/// can hold it to) what a hot path costs in bus cycles.
pub struct Counted<'a, B> {
    bus: &'a mut B,
    accesses: u32,
}

impl<'a, B: RegisterBus> Counted<'a, B> {
    /// Wraps `bus` with a zero count.
    pub const fn new(bus: &'a mut B) -> Self {
        Self { bus, accesses: 0 }
    }
    /// Accesses made so far.
    #[must_use]
    pub const fn accesses(&self) -> u32 {
        self.accesses
    }
}

impl<B: RegisterBus> RegisterBus for Counted<'_, B> {
    fn read8(&mut self, offset: u16) -> u8 {
        self.accesses = self.accesses.saturating_add(1);
        self.bus.read8(offset)
    }
    fn read16(&mut self, offset: u16) -> u16 {
        self.accesses = self.accesses.saturating_add(1);
        self.bus.read16(offset)
    }
    fn read32(&mut self, offset: u16) -> u32 {
        self.accesses = self.accesses.saturating_add(1);
        self.bus.read32(offset)
    }
    fn write8(&mut self, offset: u16, value: u8) {
        self.accesses = self.accesses.saturating_add(1);
        self.bus.write8(offset, value);
    }
    fn write16(&mut self, offset: u16, value: u16) {
        self.accesses = self.accesses.saturating_add(1);
        self.bus.write16(offset, value);
    }
    fn write32(&mut self, offset: u16, value: u32) {
        self.accesses = self.accesses.saturating_add(1);
        self.bus.write32(offset, value);
    }
}
