//! Scatter/gather descriptor lists built from a [`CyclicBuffer`].
//!
//! A device's limits are data ([`SgProfile`]). Entries split at page
//! boundaries (unless the next page is physically adjacent and coalescing is
//! allowed), at period boundaries (so that interrupt-on-completion lands
//! exactly at a period end), and at the device's largest entry.
//!
//! Facts behind the two profiles:
//! - AC'97 (Intel ICH bus master): list of 32 eight-byte entries, each a 32-bit
//!   buffer address then a 32-bit word holding the length in 16-bit samples
//!   (bits 0-15, at most 0xFFFE here) with IOC at bit 31 and BUP at bit 30.
//!   The engine halts after the entry at the last valid index, so the list
//!   is used as a ring the driver refills ([`crate::dma::RefillDma`]); the
//!   number of *segments* may then exceed the 32 slots.
//! - HD Audio: the list (BDL) is 128-byte aligned, entries are 16 bytes: 64-bit
//!   address, 32-bit length in bytes, 32-bit flags with IOC at bit 0; up to 256
//!   entries; the controller loops over the list on its own. The HDA
//!   specification asks for 128-byte aligned buffer addresses.

use crate::geometry::{CyclicBuffer, PAGE_SIZE};

/// How an entry's length is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthUnit {
    /// Bytes.
    Bytes,
    /// 16-bit samples (AC'97): lengths must be even byte counts.
    Samples16,
}

impl LengthUnit {
    /// Bytes per unit.
    #[must_use]
    pub const fn bytes(self) -> u32 {
        match self {
            Self::Bytes => 1,
            Self::Samples16 => 2,
        }
    }
}

/// Byte layout of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryLayout {
    /// 8 bytes: u32 address, u16 length, u16 control (IOC bit 15, BUP bit 14).
    Ac97,
    /// 16 bytes: u64 address, u32 length, u32 flags (IOC bit 0).
    Hda,
}

impl EntryLayout {
    /// Bytes per entry.
    #[must_use]
    pub const fn entry_size(self) -> usize {
        match self {
            Self::Ac97 => 8,
            Self::Hda => 16,
        }
    }
}

/// Which entries raise an interrupt on completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IocPolicy {
    /// Only the entry ending a period.
    PeriodEnds,
    /// Every entry (a refilled ring needs an interrupt per slot).
    EveryEntry,
}

/// How the device walks the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListMode {
    /// The device wraps from the last entry to the first by itself; the whole
    /// buffer must fit in `max_entries`.
    Looping,
    /// The device stops at a last-valid index; `max_entries` is the ring size
    /// and the segment list may be longer (the driver refills slots).
    Refill,
}

/// A device's descriptor limits, as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgProfile {
    /// Entry byte layout.
    pub layout: EntryLayout,
    /// Looping or refilled ring.
    pub mode: ListMode,
    /// Entries in the list (looping) or slots in the ring (refill).
    pub max_entries: u16,
    /// Largest entry in bytes.
    pub max_entry_bytes: u32,
    /// Unit of the length field.
    pub length_unit: LengthUnit,
    /// Required alignment of each entry's buffer address.
    pub address_alignment: u32,
    /// Required alignment of the list in memory.
    pub list_alignment: u32,
    /// Highest physical address the device can reach.
    pub max_address: u64,
    /// Merge physically adjacent pages into one entry.
    pub coalesce: bool,
    /// Interrupt-on-completion policy.
    pub ioc: IocPolicy,
    /// AC'97 BUP: play silence rather than repeat the last sample on underrun.
    pub underrun_silence: bool,
}

/// Most samples one AC'97 entry is given here (the length field is 16 bits;
/// an even count keeps stereo frames whole).
pub const AC97_MAX_ENTRY_SAMPLES: u32 = 0xFFFE;
/// AC'97 control word bit: interrupt on completion.
pub const AC97_IOC: u32 = 1 << 31;
/// AC'97 control word bit: buffer underrun policy.
pub const AC97_BUP: u32 = 1 << 30;
/// HDA flags bit: interrupt on completion.
pub const HDA_IOC: u32 = 1;

impl SgProfile {
    /// Intel ICH AC'97 bus master (PCM out / PCM in).
    pub const AC97: Self = Self {
        layout: EntryLayout::Ac97,
        mode: ListMode::Refill,
        max_entries: 32,
        max_entry_bytes: AC97_MAX_ENTRY_SAMPLES * 2,
        length_unit: LengthUnit::Samples16,
        address_alignment: 2,
        list_alignment: 8,
        max_address: 0xFFFF_FFFF,
        coalesce: true,
        ioc: IocPolicy::EveryEntry,
        underrun_silence: true,
    };

    /// Intel HD Audio stream descriptor BDL.
    pub const HDA: Self = Self {
        layout: EntryLayout::Hda,
        mode: ListMode::Looping,
        max_entries: 256,
        max_entry_bytes: 0xFFFF_FF80,
        length_unit: LengthUnit::Bytes,
        address_alignment: 128,
        list_alignment: 128,
        max_address: u64::MAX,
        coalesce: true,
        ioc: IocPolicy::PeriodEnds,
        underrun_silence: false,
    };
}

/// One descriptor, device-independent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// Physical address of the first byte.
    pub address: u64,
    /// Length in bytes.
    pub length_bytes: u32,
    /// Offset of the first byte in the cyclic buffer.
    pub buffer_offset: u32,
    /// Interrupt on completion.
    pub interrupt_on_completion: bool,
}

/// Why a list could not be built or encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgError {
    /// Period 0 or not dividing the buffer size.
    BadPeriod {
        /// Period bytes.
        period: u32,
        /// Buffer bytes.
        size: u32,
    },
    /// Profile inconsistent (zero alignment or entries, largest entry below
    /// one length unit).
    InvalidProfile,
    /// A looping list would need more entries than the device has.
    TooManyEntries {
        /// The device's maximum.
        max: u16,
    },
    /// The caller's slice is too small.
    OutputTooSmall {
        /// Its capacity (entries or bytes).
        capacity: usize,
    },
    /// An entry would start at an address the device cannot use.
    MisalignedEntry {
        /// Entry index.
        index: usize,
        /// Its address.
        address: u64,
    },
    /// An entry length not a whole number of length units.
    LengthNotInUnit {
        /// Entry index.
        index: usize,
        /// Its length in bytes.
        length: u32,
    },
    /// An entry reaching beyond the device's address range.
    AddressTooHigh {
        /// Entry index.
        index: usize,
        /// Its address.
        address: u64,
    },
    /// An entry longer than the device allows, or empty (when encoding
    /// hand-made entries).
    BadEntryLength {
        /// Entry index.
        index: usize,
        /// Its length in bytes.
        length: u32,
    },
}

fn check_entry(profile: &SgProfile, index: usize, d: &Descriptor) -> Result<(), SgError> {
    if d.length_bytes == 0 || d.length_bytes > profile.max_entry_bytes {
        return Err(SgError::BadEntryLength {
            index,
            length: d.length_bytes,
        });
    }
    if d.address % u64::from(profile.address_alignment.max(1)) != 0 {
        return Err(SgError::MisalignedEntry {
            index,
            address: d.address,
        });
    }
    if d.length_bytes % profile.length_unit.bytes() != 0 {
        return Err(SgError::LengthNotInUnit {
            index,
            length: d.length_bytes,
        });
    }
    let last = d.address.checked_add(u64::from(d.length_bytes) - 1);
    if last.is_none_or(|l| l > profile.max_address) {
        return Err(SgError::AddressTooHigh {
            index,
            address: d.address,
        });
    }
    Ok(())
}

/// Builds the descriptor list for `buffer` into `out`, returning the number
/// of entries. `period_bytes` is the distance between interrupts (buffer size
/// / notification count). Allocation-free.
///
/// # Errors
/// Any [`SgError`] but `BadEntryLength`.
pub fn build(
    buffer: &CyclicBuffer<'_>,
    profile: &SgProfile,
    period_bytes: u32,
    out: &mut [Descriptor],
) -> Result<usize, SgError> {
    let size = buffer.size();
    if period_bytes == 0 || size % period_bytes != 0 {
        return Err(SgError::BadPeriod {
            period: period_bytes,
            size,
        });
    }
    let unit = profile.length_unit.bytes();
    if profile.max_entries == 0 || profile.address_alignment == 0 || profile.max_entry_bytes < unit
    {
        return Err(SgError::InvalidProfile);
    }
    // The largest entry, rounded down to whole length units.
    let max_entry = profile.max_entry_bytes - profile.max_entry_bytes % unit;
    let mut count = 0usize;
    let mut offset = 0u32;
    while offset < size {
        if profile.mode == ListMode::Looping && count >= usize::from(profile.max_entries) {
            return Err(SgError::TooManyEntries {
                max: profile.max_entries,
            });
        }
        let period_end = (offset / period_bytes + 1) * period_bytes;
        let limit = (period_end - offset).min(max_entry);
        let mut runs = buffer
            .runs(offset, period_end - offset)
            .map_err(|_| SgError::InvalidProfile)?;
        let Some(first) = runs.next() else {
            return Err(SgError::InvalidProfile);
        };
        let mut len = first.len.min(limit);
        if profile.coalesce {
            for run in runs {
                let adjacent = first.physical.checked_add(u64::from(len)) == Some(run.physical);
                if !adjacent || len >= limit {
                    break;
                }
                len = len.saturating_add(run.len).min(limit);
            }
        }
        let descriptor = Descriptor {
            address: first.physical,
            length_bytes: len,
            buffer_offset: offset,
            interrupt_on_completion: match profile.ioc {
                IocPolicy::EveryEntry => true,
                IocPolicy::PeriodEnds => offset + len == period_end,
            },
        };
        check_entry(profile, count, &descriptor)?;
        let slot = out
            .get_mut(count)
            .ok_or(SgError::OutputTooSmall { capacity: count })?;
        *slot = descriptor;
        count += 1;
        offset += len;
    }
    Ok(count)
}

/// Upper bound of the entries [`build`] can produce, for sizing its output.
///
/// For a buffer of `size` bytes starting `first_page_offset` into its first
/// page with `periods` periods: page and period boundaries cut the buffer
/// into at most pages + periods pieces, each split further when the device's
/// largest entry is shorter than a page.
#[must_use]
pub const fn max_entries_for(
    size: u32,
    first_page_offset: u32,
    periods: u32,
    profile: &SgProfile,
) -> u64 {
    let span = first_page_offset as u64 + size as u64;
    let pages = span.div_ceil(PAGE_SIZE as u64);
    let per_page = if profile.max_entry_bytes == 0 {
        1
    } else {
        (PAGE_SIZE as u64).div_ceil(profile.max_entry_bytes as u64)
    };
    (pages + periods as u64) * per_page
}

/// Writes one entry in the device's byte layout (little-endian) into `out`,
/// returning the bytes written.
///
/// # Errors
/// [`SgError::OutputTooSmall`], or the entry breaks a profile limit.
pub fn encode_entry(
    profile: &SgProfile,
    index: usize,
    entry: &Descriptor,
    out: &mut [u8],
) -> Result<usize, SgError> {
    check_entry(profile, index, entry)?;
    let size = profile.layout.entry_size();
    let capacity = out.len();
    let dst = out
        .get_mut(..size)
        .ok_or(SgError::OutputTooSmall { capacity })?;
    let units = entry.length_bytes / profile.length_unit.bytes();
    match profile.layout {
        EntryLayout::Ac97 => {
            let address = u32::try_from(entry.address).map_err(|_| SgError::AddressTooHigh {
                index,
                address: entry.address,
            })?;
            let length = u16::try_from(units).map_err(|_| SgError::BadEntryLength {
                index,
                length: entry.length_bytes,
            })?;
            let mut control = u32::from(length);
            if entry.interrupt_on_completion {
                control |= AC97_IOC;
            }
            if profile.underrun_silence {
                control |= AC97_BUP;
            }
            let mut bytes = [0u8; 8];
            let (a, c) = bytes.split_at_mut(4);
            a.copy_from_slice(&address.to_le_bytes());
            c.copy_from_slice(&control.to_le_bytes());
            dst.copy_from_slice(&bytes);
        }
        EntryLayout::Hda => {
            let flags = if entry.interrupt_on_completion {
                HDA_IOC
            } else {
                0
            };
            let mut bytes = [0u8; 16];
            let (a, rest) = bytes.split_at_mut(8);
            let (l, f) = rest.split_at_mut(4);
            a.copy_from_slice(&entry.address.to_le_bytes());
            l.copy_from_slice(&units.to_le_bytes());
            f.copy_from_slice(&flags.to_le_bytes());
            dst.copy_from_slice(&bytes);
        }
    }
    Ok(size)
}

/// Serialises `entries` back to back into `out`, returning the bytes
/// written. The caller places `out` at an address aligned to
/// [`SgProfile::list_alignment`].
///
/// # Errors
/// As [`encode_entry`]; also [`SgError::TooManyEntries`] when more entries
/// than the device holds are given.
pub fn encode(
    profile: &SgProfile,
    entries: &[Descriptor],
    out: &mut [u8],
) -> Result<usize, SgError> {
    if entries.len() > usize::from(profile.max_entries) {
        return Err(SgError::TooManyEntries {
            max: profile.max_entries,
        });
    }
    let capacity = out.len();
    let mut written = 0usize;
    for (index, entry) in entries.iter().enumerate() {
        let dst = out
            .get_mut(written..)
            .ok_or(SgError::OutputTooSmall { capacity })?;
        written += encode_entry(profile, index, entry, dst).map_err(|e| match e {
            SgError::OutputTooSmall { .. } => SgError::OutputTooSmall { capacity },
            other => other,
        })?;
    }
    Ok(written)
}
