//! Where a PC's RAM appears in the physical address space.
//!
//! QEMU's `pc` machine maps its RAM backend in two pieces: the first
//! `below_4g` bytes at physical address 0, the rest from 4 GiB up, above
//! the 32-bit PCI hole. By default `below_4g` is all of RAM up to 3.5 GiB;
//! the machine property `max-ram-below-4g` lowers it (QEMU 7.2,
//! `hw/i386/pc_piix.c`: when RAM is at least that large, `below_4g` is the
//! property and `above_4g` the rest; otherwise all of RAM is low). So a
//! small guest can have RAM above 4 GiB, and a RAM file's offset is its
//! physical address only below `below_4g`.
//!
//! The emulator's RAM file (`wavert_emulator::memory`) uses the same
//! layout, so one file serves as QEMU's guest RAM and as the emulator's
//! physical memory, and both agree on every address.

/// The first physical address above 4 GiB, where RAM resumes after the
/// 32-bit PCI hole.
pub const HIGH_RAM_BASE: u64 = 1 << 32;

/// How a RAM file is placed in the physical address space.
///
/// File offsets `0..below_4g` are at physical `0..below_4g`, offsets
/// `below_4g..size` at physical [`HIGH_RAM_BASE`] onwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamLayout {
    size: u64,
    below_4g: u64,
}

impl RamLayout {
    /// `size` bytes of RAM with at most `below_4g` of them below 4 GiB (as
    /// QEMU's `max-ram-below-4g`: RAM no larger than that is all low). The
    /// low part is capped at 4 GiB, where the high part starts.
    #[must_use]
    pub const fn new(size: u64, below_4g: u64) -> Self {
        let cap = if size < HIGH_RAM_BASE {
            size
        } else {
            HIGH_RAM_BASE
        };
        Self {
            size,
            below_4g: if below_4g < cap { below_4g } else { cap },
        }
    }

    /// All of `size` below 4 GiB (physical address = file offset).
    #[must_use]
    pub const fn low(size: u64) -> Self {
        Self::new(size, size)
    }

    /// Bytes of RAM (the file's size).
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Bytes of RAM at physical address 0.
    #[must_use]
    pub const fn below_4g(&self) -> u64 {
        self.below_4g
    }

    /// Bytes of RAM from [`HIGH_RAM_BASE`] up.
    #[must_use]
    pub const fn above_4g(&self) -> u64 {
        self.size - self.below_4g
    }

    /// The file offset of the `len` bytes at `physical`, when all of them
    /// are RAM of one piece (low or high); `None` when any byte falls in
    /// the hole, past the end, or the range spans both pieces.
    #[must_use]
    pub const fn file_offset(&self, physical: u64, len: u64) -> Option<u64> {
        let Some(end) = physical.checked_add(len) else {
            return None;
        };
        if end <= self.below_4g {
            return Some(physical);
        }
        if physical >= HIGH_RAM_BASE && end - HIGH_RAM_BASE <= self.above_4g() {
            return Some(physical - HIGH_RAM_BASE + self.below_4g);
        }
        None
    }

    /// The physical address of file offset `offset` (`None` past the end).
    #[must_use]
    pub const fn physical_address(&self, offset: u64) -> Option<u64> {
        if offset < self.below_4g {
            Some(offset)
        } else if offset < self.size {
            Some(offset - self.below_4g + HIGH_RAM_BASE)
        } else {
            None
        }
    }

    /// One line: where the RAM is (for reports).
    #[must_use]
    pub fn describe(&self) -> String {
        const MIB: u64 = 1 << 20;
        if self.above_4g() == 0 {
            format!("{} MiB, all below 4 GiB", self.size / MIB)
        } else {
            format!(
                "{} MiB: {} MiB at 0, {} MiB from 4 GiB ({:#x}-{:#x})",
                self.size / MIB,
                self.below_4g / MIB,
                self.above_4g() / MIB,
                HIGH_RAM_BASE,
                HIGH_RAM_BASE + self.above_4g() - 1
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_split_maps_low_and_high_ram_and_nothing_between() {
        let layout = RamLayout::new(256 * MIB, 128 * MIB);
        assert_eq!(
            (layout.below_4g(), layout.above_4g()),
            (128 * MIB, 128 * MIB)
        );
        assert_eq!(layout.file_offset(0x1000, 8), Some(0x1000));
        assert_eq!(layout.file_offset(128 * MIB - 8, 8), Some(128 * MIB - 8));
        // The hole: between the end of low RAM and 4 GiB.
        assert_eq!(layout.file_offset(128 * MIB - 4, 8), None);
        assert_eq!(layout.file_offset(128 * MIB, 1), None);
        assert_eq!(layout.file_offset(HIGH_RAM_BASE - 1, 1), None);
        assert_eq!(layout.file_offset(HIGH_RAM_BASE, 4), Some(128 * MIB));
        assert_eq!(
            layout.file_offset(HIGH_RAM_BASE + 128 * MIB - 4, 4),
            Some(256 * MIB - 4)
        );
        assert_eq!(layout.file_offset(HIGH_RAM_BASE + 128 * MIB - 4, 8), None);
        assert_eq!(layout.file_offset(u64::MAX, 2), None);
        for offset in [0, 128 * MIB - 1, 128 * MIB, 256 * MIB - 1] {
            let physical = layout.physical_address(offset).unwrap();
            assert_eq!(layout.file_offset(physical, 1), Some(offset));
        }
        assert_eq!(layout.physical_address(256 * MIB), None);
    }

    #[test]
    fn ram_no_larger_than_the_low_limit_is_all_low_as_in_qemu() {
        let layout = RamLayout::new(64 * MIB, 128 * MIB);
        assert_eq!(layout, RamLayout::low(64 * MIB));
        assert_eq!(layout.above_4g(), 0);
        assert_eq!(layout.file_offset(64 * MIB - 1, 1), Some(64 * MIB - 1));
        assert_eq!(layout.file_offset(HIGH_RAM_BASE, 1), None);
        assert_eq!(layout.describe(), "64 MiB, all below 4 GiB");
        assert_eq!(
            RamLayout::new(256 * MIB, 128 * MIB).describe(),
            "256 MiB: 128 MiB at 0, 128 MiB from 4 GiB (0x100000000-0x107ffffff)"
        );
    }
}
