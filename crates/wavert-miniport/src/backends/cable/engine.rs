//! The virtual DMA engine of one stream: it walks the stream's descriptor
//! list (one descriptor per physically contiguous piece, never crossing a
//! page) and hands each piece it moves to a sink.
//!
//! Two modes, chosen when the cable is made:
//! * [`DmaMode::Looping`]: the engine wraps from the last descriptor to the
//!   first by itself (HD Audio style); the timer routine only accounts for
//!   periods ([`LoopingDma`]).
//! * [`DmaMode::Refill`]: the engine is a 32-slot ring that halts after the
//!   last valid index (AC'97 style, wavert-core's [`Ac97Engine`] model). The
//!   timer routine plays the interrupt service routine: at every completed
//!   entry it runs [`RefillDma::on_interrupt`] and writes the slots and LVI
//!   it asks for, exactly as the AC'97 back-end does from its ISR.

use wavert_core::dma::sim::{Ac97Engine, AC97_RING};
use wavert_core::dma::{DmaError, LoopingDma, Refill, RefillDma};
use wavert_core::geometry::PAGE_SIZE;
use wavert_core::sg::{Descriptor, EntryLayout, IocPolicy, LengthUnit, ListMode, SgProfile};

/// How the virtual DMA engine walks its descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaMode {
    /// Loops over its list by itself.
    Looping,
    /// Halts at its last valid index; the timer routine refills it.
    Refill,
}

impl DmaMode {
    /// The descriptor profile of the virtual engine in this mode: one
    /// descriptor per page piece (no coalescing, so the engine really walks
    /// the pages in list order), byte lengths, any address.
    #[must_use]
    pub const fn profile(self) -> SgProfile {
        SgProfile {
            layout: EntryLayout::Hda,
            mode: match self {
                Self::Looping => ListMode::Looping,
                Self::Refill => ListMode::Refill,
            },
            max_entries: match self {
                // A looping list must hold the whole buffer: the largest
                // buffer's pages plus one split per period.
                Self::Looping => 1024,
                Self::Refill => AC97_RING as u16,
            },
            max_entry_bytes: PAGE_SIZE,
            length_unit: LengthUnit::Bytes,
            address_alignment: 1,
            list_alignment: 1,
            max_address: u64::MAX,
            coalesce: false,
            ioc: match self {
                Self::Looping => IocPolicy::PeriodEnds,
                Self::Refill => IocPolicy::EveryEntry,
            },
            underrun_silence: true,
        }
    }
}

/// One stream's engine.
#[derive(Clone, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one engine per stream, inline in the stream's buffer state; boxing would allocate for nothing"
)]
pub enum Engine {
    /// Looping: position in the list.
    Looping {
        /// The strategy.
        dma: LoopingDma,
        /// Current descriptor.
        entry: usize,
        /// Bytes of it already moved.
        done_in_entry: u32,
    },
    /// Refill: the strategy and the ring it drives.
    Refill {
        /// The strategy (the driver side).
        dma: RefillDma,
        /// The ring (the device side).
        hw: Ac97Engine,
    },
}

impl Engine {
    /// An engine over `segments` descriptors.
    ///
    /// # Errors
    ///
    /// [`DmaError::ZeroSegments`], [`DmaError::TooManySegments`] (and ring
    /// errors that cannot happen with the fixed ring).
    pub fn new(mode: DmaMode, segments: u32) -> Result<Self, DmaError> {
        Ok(match mode {
            DmaMode::Looping => Self::Looping {
                dma: LoopingDma::new(
                    u16::try_from(segments).map_err(|_| DmaError::TooManySegments(segments))?,
                )?,
                entry: 0,
                done_in_entry: 0,
            },
            DmaMode::Refill => Self::Refill {
                dma: RefillDma::new(segments, AC97_RING, AC97_RING - 1)?,
                hw: Ac97Engine::new(),
            },
        })
    }

    /// RUN after STOP: start at descriptor 0.
    pub fn start(&mut self, descriptors: &[Descriptor]) {
        match self {
            Self::Looping {
                dma,
                entry,
                done_in_entry,
            } => {
                let _last_valid = dma.start();
                *entry = 0;
                *done_in_entry = 0;
            }
            Self::Refill { dma, hw } => {
                hw.reset();
                let refill = dma.start();
                program(hw, descriptors, refill);
                hw.run();
            }
        }
    }

    /// STOP: halt and forget the position.
    pub const fn stop(&mut self) {
        match self {
            Self::Looping {
                dma,
                entry,
                done_in_entry,
            } => {
                dma.stop();
                *entry = 0;
                *done_in_entry = 0;
            }
            Self::Refill { dma, hw } => {
                dma.stop();
                hw.reset();
            }
        }
    }

    /// Moves `bytes` bytes, calling `sink(buffer_offset, len)` for every
    /// piece in order; each piece lies inside one descriptor (one page).
    /// Returns the bytes moved (all of them unless the engine broke down).
    ///
    /// # Errors
    ///
    /// A [`DmaError`] from the refill service (the bytes moved so far are
    /// lost to the caller's accounting; it treats the tick as an underrun).
    pub fn advance(
        &mut self,
        bytes: u32,
        descriptors: &[Descriptor],
        sink: &mut impl FnMut(u32, u32),
    ) -> Result<u32, DmaError> {
        match self {
            Self::Looping {
                dma,
                entry,
                done_in_entry,
            } => {
                let mut left = bytes;
                while left > 0 {
                    let d = descriptors
                        .get(*entry)
                        .ok_or(DmaError::SegmentTableMismatch)?;
                    let room = d.length_bytes.saturating_sub(*done_in_entry);
                    if room == 0 {
                        return Err(DmaError::SegmentTableMismatch);
                    }
                    let piece = room.min(left);
                    sink(d.buffer_offset.saturating_add(*done_in_entry), piece);
                    *done_in_entry += piece;
                    left -= piece;
                    if *done_in_entry == d.length_bytes {
                        *done_in_entry = 0;
                        *entry = (*entry + 1) % descriptors.len();
                        if d.interrupt_on_completion {
                            dma.on_interrupt()?;
                        }
                    }
                }
                Ok(bytes)
            }
            Self::Refill { dma, hw } => {
                let mut left = bytes;
                while left > 0 {
                    let moved = hw.step(left, &mut |segment, offset, len| {
                        let base = usize::try_from(segment)
                            .ok()
                            .and_then(|i| descriptors.get(i))
                            .map_or(0, |d| d.buffer_offset);
                        sink(base.saturating_add(offset), len);
                    });
                    left -= moved.min(left);
                    if hw.take_interrupt() {
                        // The "ISR": account for finished entries, refill
                        // the ring, move LVI (which restarts a halted ring).
                        let refill = dma.on_interrupt(hw.civ(), hw.is_halted())?;
                        program(hw, descriptors, refill);
                    } else if moved == 0 {
                        return Err(DmaError::NotRunning);
                    }
                }
                Ok(bytes)
            }
        }
    }
}

/// Writes the slots a refill asks for, then LVI.
fn program(hw: &mut Ac97Engine, descriptors: &[Descriptor], refill: Refill) {
    for write in refill.writes {
        let d = usize::try_from(write.segment)
            .ok()
            .and_then(|i| descriptors.get(i))
            .copied()
            .unwrap_or_default();
        hw.write_slot(
            write.slot,
            write.segment,
            d.length_bytes,
            d.interrupt_on_completion,
        );
    }
    hw.write_lvi(refill.last_valid_index);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_counts_are_refused_for_what_they_are() {
        assert!(matches!(
            Engine::new(DmaMode::Looping, 0),
            Err(DmaError::ZeroSegments)
        ));
        assert!(matches!(
            Engine::new(DmaMode::Looping, 70_000),
            Err(DmaError::TooManySegments(70_000))
        ));
        assert!(Engine::new(DmaMode::Looping, 3).is_ok());
    }
}
