//! DMA strategies as pure state machines.
//!
//! - [`LoopingDma`]: the device wraps from its last entry to its first by
//!   itself (HD Audio). Program once; interrupts only mark periods.
//! - [`RefillDma`]: the device stops after the entry at its last valid index
//!   (LVI) (AC'97). The driver keeps a ring of slots filled with buffer
//!   segments in cyclic-buffer order and advances LVI from the completion
//!   interrupt. If the interrupt comes too late the engine halts; the next
//!   service refills and restarts it at the next segment, so no segment is
//!   skipped or repeated.
//!
//! [`sim`] holds a model of the AC'97 bus-master engine used to prove these.

pub mod sim;

use crate::sg::Descriptor;

/// Why a DMA step was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// A segment list with no segment.
    ZeroSegments,
    /// More segments than the strategy can index (`u16`).
    TooManySegments(u32),
    /// Ring smaller than 2 slots, or a look-ahead not in 1..ring.
    BadRing {
        /// Slots.
        ring: u8,
        /// Slots kept valid ahead.
        ahead: u8,
    },
    /// A current-index register value not below the ring size.
    CivOutOfRange(u8),
    /// A current index that points at a slot the driver has not loaded: the
    /// hardware and the driver disagree (or the register read was garbage).
    InconsistentCiv {
        /// The value read.
        civ: u8,
        /// The slot the driver expected next to finish.
        expected_next: u8,
    },
    /// Service requested while the strategy is stopped.
    NotRunning,
    /// The segment table does not match the strategy's segment count.
    SegmentTableMismatch,
}

/// A device that loops over its list by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopingDma {
    entries: u16,
    running: bool,
}

impl LoopingDma {
    /// A strategy for a list of `entries` entries.
    ///
    /// # Errors
    /// [`DmaError::ZeroSegments`].
    pub const fn new(entries: u16) -> Result<Self, DmaError> {
        if entries == 0 {
            return Err(DmaError::ZeroSegments);
        }
        Ok(Self {
            entries,
            running: false,
        })
    }

    /// Starts: the driver programs the whole list once and sets the last
    /// valid index returned here; nothing needs rewriting afterwards.
    pub const fn start(&mut self) -> u16 {
        self.running = true;
        self.entries - 1
    }

    /// Stops the engine.
    pub const fn stop(&mut self) {
        self.running = false;
    }

    /// Whether running.
    #[must_use]
    pub const fn is_running(&self) -> bool {
        self.running
    }

    /// Completion interrupt: a looping device needs no descriptor work.
    ///
    /// # Errors
    /// [`DmaError::NotRunning`].
    pub const fn on_interrupt(&self) -> Result<(), DmaError> {
        if self.running {
            Ok(())
        } else {
            Err(DmaError::NotRunning)
        }
    }
}

/// A descriptor write the driver must make: put segment `segment` of the
/// segment list into ring slot `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotWrite {
    /// Ring slot.
    pub slot: u8,
    /// Segment index in the cyclic buffer's list.
    pub segment: u32,
}

/// Iterator over the [`SlotWrite`]s of one service (allocation-free).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotWrites {
    next: u64,
    end: u64,
    ring: u8,
    segments: u32,
    /// The linear segment the engine's slot 0 held at the last (re)start.
    base: u64,
}

impl Iterator for SlotWrites {
    type Item = SlotWrite;

    fn next(&mut self) -> Option<SlotWrite> {
        if self.next >= self.end {
            return None;
        }
        let linear = self.next;
        self.next += 1;
        Some(SlotWrite {
            // Remainders are below u8 / u32 ranges by construction.
            slot: u8::try_from((linear - self.base) % u64::from(self.ring)).unwrap_or(0),
            segment: u32::try_from(linear % u64::from(self.segments)).unwrap_or(0),
        })
    }
}

/// What the driver must do after a [`RefillDma`] step.
///
/// Write every slot in `writes`, then write `last_valid_index`, then (when `restart`) make sure
/// the engine runs again (on ICH writing LVI restarts a halted engine at the
/// next slot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refill {
    /// Descriptors to write.
    pub writes: SlotWrites,
    /// New LVI.
    pub last_valid_index: u8,
    /// The engine had halted (underrun): restart it.
    pub restart: bool,
}

/// The non-looping (refill) strategy. Linear counters never wrap in
/// practice (2^64 segments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefillDma {
    segments: u32,
    ring: u8,
    ahead: u8,
    loaded: u64,
    completed: u64,
    running: bool,
    /// The linear segment slot 0 holds since the last start: 0 after
    /// [`Self::start`], the resume point after [`Self::start_at`] (a channel
    /// reset puts the engine back at slot 0).
    base: u64,
}

impl RefillDma {
    /// A strategy for `segments` segments over a ring of `ring` slots keeping
    /// `ahead` slots valid (including the one being played). `ahead` =
    /// `ring - 1` gives the most slack; AC'97 has a ring of 32.
    ///
    /// # Errors
    /// [`DmaError::ZeroSegments`], [`DmaError::BadRing`].
    pub const fn new(segments: u32, ring: u8, ahead: u8) -> Result<Self, DmaError> {
        if segments == 0 {
            return Err(DmaError::ZeroSegments);
        }
        if ring < 2 || ahead == 0 || ahead >= ring {
            return Err(DmaError::BadRing { ring, ahead });
        }
        Ok(Self {
            segments,
            ring,
            ahead,
            loaded: 0,
            completed: 0,
            running: false,
            base: 0,
        })
    }

    fn slot_of(&self, linear: u64) -> u8 {
        // The remainder is below `ring`, itself a u8; `linear` is never
        // below `base` (both only grow from it).
        u8::try_from(linear.saturating_sub(self.base) % u64::from(self.ring)).unwrap_or(0)
    }

    fn fill(&mut self, restart: bool) -> Refill {
        let target = self.completed + u64::from(self.ahead);
        let writes = SlotWrites {
            next: self.loaded,
            end: target,
            ring: self.ring,
            segments: self.segments,
            base: self.base,
        };
        self.loaded = target.max(self.loaded);
        Refill {
            writes,
            last_valid_index: self.slot_of(self.loaded.saturating_sub(1)),
            restart,
        }
    }

    /// Starts from segment 0 in slot 0: write the slots, LVI, then the run bit.
    pub fn start(&mut self) -> Refill {
        self.start_at(0)
    }

    /// Starts again from linear segment `completed` (segments finished so
    /// far) in slot 0, after the engine's registers were reset (a power
    /// loss): the counters go on from there, so positions stay linear.
    pub fn start_at(&mut self, completed: u64) -> Refill {
        self.loaded = completed;
        self.completed = completed;
        self.base = completed;
        self.running = true;
        self.fill(false)
    }

    /// Stops (the driver clears the run bit). A later [`Self::start`] begins
    /// again from segment 0, as STOP resets the position.
    pub const fn stop(&mut self) {
        self.running = false;
    }

    /// Whether running.
    #[must_use]
    pub const fn is_running(&self) -> bool {
        self.running
    }

    /// Segments the engine has finished, counted linearly from start.
    #[must_use]
    pub const fn completed(&self) -> u64 {
        self.completed
    }

    /// Segments written to slots, counted linearly from start.
    #[must_use]
    pub const fn loaded(&self) -> u64 {
        self.loaded
    }

    /// Which segment ring slot `slot` holds now, if it holds one the engine
    /// has not finished.
    #[must_use]
    pub fn segment_in_slot(&self, slot: u8) -> Option<u32> {
        (self.completed..self.loaded)
            .find(|&l| self.slot_of(l) == slot)
            .and_then(|l| u32::try_from(l % u64::from(self.segments)).ok())
    }

    /// How many segments are complete, given the engine's current index and
    /// whether it has halted (DCH), without changing state. Usable from a
    /// position query at DISPATCH level.
    ///
    /// # Errors
    /// [`DmaError::CivOutOfRange`], [`DmaError::InconsistentCiv`].
    pub fn observe(&self, civ: u8, halted: bool) -> Result<u64, DmaError> {
        if civ >= self.ring {
            return Err(DmaError::CivOutOfRange(civ));
        }
        let expected_next = self.slot_of(self.completed);
        let in_flight = self.loaded - self.completed;
        let inconsistent = DmaError::InconsistentCiv { civ, expected_next };
        if halted {
            // Halted engines sit on the last valid slot, finished.
            if in_flight == 0 || civ == self.slot_of(self.loaded - 1) {
                return Ok(self.loaded);
            }
            return Err(inconsistent);
        }
        let ring = u16::from(self.ring);
        let advance = u64::from((u16::from(civ) + ring - u16::from(expected_next)) % ring);
        if advance >= in_flight.max(1) {
            return Err(inconsistent);
        }
        Ok(self.completed + advance)
    }

    /// Completion-interrupt service: account finished segments, refill the
    /// ring up to `ahead` valid slots, and say whether to restart.
    ///
    /// # Errors
    /// [`DmaError::NotRunning`], or as [`Self::observe`] (state unchanged).
    pub fn on_interrupt(&mut self, civ: u8, halted: bool) -> Result<Refill, DmaError> {
        if !self.running {
            return Err(DmaError::NotRunning);
        }
        self.completed = self.observe(civ, halted)?;
        Ok(self.fill(halted))
    }

    /// Linear byte position of the engine: whole cycles, plus the offset of
    /// the current segment, plus what of it is consumed. `segments` is the
    /// list the slots are filled from; `remaining_bytes` is the current
    /// entry's remainder (ICH PICB x 2), ignored when `halted`.
    ///
    /// # Errors
    /// As [`Self::observe`]; [`DmaError::SegmentTableMismatch`] when
    /// `segments` has the wrong length.
    pub fn linear_position(
        &self,
        segments: &[Descriptor],
        buffer_size: u32,
        civ: u8,
        halted: bool,
        remaining_bytes: u32,
    ) -> Result<u64, DmaError> {
        if u32::try_from(segments.len()).ok() != Some(self.segments) {
            return Err(DmaError::SegmentTableMismatch);
        }
        let done = self.observe(civ, halted)?;
        let count = u64::from(self.segments);
        let cycles = done / count;
        let index = usize::try_from(done % count).unwrap_or(usize::MAX);
        let current = segments.get(index).ok_or(DmaError::SegmentTableMismatch)?;
        let consumed = if halted {
            0
        } else {
            current.length_bytes.saturating_sub(remaining_bytes)
        };
        Ok(
            cycles * u64::from(buffer_size)
                + u64::from(current.buffer_offset)
                + u64::from(consumed),
        )
    }
}
