//! A model of an AC'97 (Intel ICH) bus-master engine, for tests and the emulator.
//!
//! It has 32 descriptor slots, CIV/LVI, completion interrupts, halt after
//! the last valid entry, restart when LVI moves while halted (as QEMU's
//! `ac97.c` does: it resumes at the slot after the halted one).
//!
//! The model also records whether it ever fetched a slot the driver had not
//! (re)written since the engine last finished it: the invariant the refill
//! strategy must keep.

/// Slots in the AC'97 ring.
pub const AC97_RING: u8 = 32;
const RING: usize = AC97_RING as usize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    segment: u32,
    len: u32,
    ioc: bool,
    valid: bool,
}

/// The simulated engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ac97Engine {
    slots: [Slot; RING],
    civ: u8,
    lvi: u8,
    remaining: u32,
    current_segment: u32,
    current_len: u32,
    running: bool,
    halted: bool,
    interrupt: bool,
    invalid_fetches: u32,
    halts: u32,
}

impl Default for Ac97Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Ac97Engine {
    /// A reset engine (not running, no valid slot).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            slots: [Slot {
                segment: 0,
                len: 0,
                ioc: false,
                valid: false,
            }; RING],
            civ: 0,
            lvi: 0,
            remaining: 0,
            current_segment: 0,
            current_len: 0,
            running: false,
            halted: false,
            interrupt: false,
            invalid_fetches: 0,
            halts: 0,
        }
    }

    /// The driver writes a descriptor into `slot` (modulo 32).
    pub fn write_slot(&mut self, slot: u8, segment: u32, len: u32, ioc: bool) {
        if let Some(s) = self.slots.get_mut(usize::from(slot % AC97_RING)) {
            *s = Slot {
                segment,
                len,
                ioc,
                valid: true,
            };
        }
    }

    /// The driver writes LVI. A running, halted engine restarts at the slot
    /// after the one it halted on.
    pub fn write_lvi(&mut self, lvi: u8) {
        self.lvi = lvi % AC97_RING;
        if self.running && self.halted && self.lvi != self.civ {
            self.halted = false;
            self.civ = (self.civ + 1) % AC97_RING;
            self.fetch();
        }
    }

    /// The driver sets the run bit: fetch slot CIV (0 after reset).
    pub fn run(&mut self) {
        self.running = true;
        self.halted = false;
        self.fetch();
    }

    /// The driver clears the run bit and resets the channel.
    pub const fn reset(&mut self) {
        *self = Self {
            invalid_fetches: self.invalid_fetches,
            halts: self.halts,
            ..Self::new()
        };
    }

    fn fetch(&mut self) {
        let slot = self
            .slots
            .get(usize::from(self.civ))
            .copied()
            .unwrap_or_default();
        if !slot.valid {
            self.invalid_fetches = self.invalid_fetches.saturating_add(1);
        }
        self.current_segment = slot.segment;
        self.current_len = slot.len;
        self.remaining = slot.len;
    }

    /// Moves up to `bytes` bytes. `sink(segment, offset_in_segment, len)` is
    /// called for every piece moved, in order. Returns bytes moved (less
    /// than asked when the engine halts).
    pub fn step(&mut self, mut bytes: u32, sink: &mut impl FnMut(u32, u32, u32)) -> u32 {
        let mut moved = 0u32;
        while bytes > 0 && self.running && !self.halted {
            let piece = bytes.min(self.remaining);
            if piece > 0 {
                sink(
                    self.current_segment,
                    self.current_len - self.remaining,
                    piece,
                );
            }
            self.remaining -= piece;
            bytes -= piece;
            moved += piece;
            if self.remaining == 0 {
                self.finish_entry();
            }
        }
        moved
    }

    fn finish_entry(&mut self) {
        if let Some(s) = self.slots.get_mut(usize::from(self.civ)) {
            s.valid = false;
            if s.ioc {
                self.interrupt = true;
            }
        }
        if self.civ == self.lvi {
            // DCH + LVBCI: stop on the last valid entry.
            self.halted = true;
            self.halts = self.halts.saturating_add(1);
            self.interrupt = true;
        } else {
            self.civ = (self.civ + 1) % AC97_RING;
            self.fetch();
        }
    }

    /// Takes the pending interrupt flag (the driver acknowledges SR).
    pub const fn take_interrupt(&mut self) -> bool {
        let pending = self.interrupt;
        self.interrupt = false;
        pending
    }

    /// Current index register.
    #[must_use]
    pub const fn civ(&self) -> u8 {
        self.civ
    }
    /// Last valid index register.
    #[must_use]
    pub const fn lvi(&self) -> u8 {
        self.lvi
    }
    /// Bytes left in the current entry (PICB x 2); 0 when halted.
    #[must_use]
    pub const fn remaining_bytes(&self) -> u32 {
        if self.halted {
            0
        } else {
            self.remaining
        }
    }
    /// DCH: halted after the last valid entry.
    #[must_use]
    pub const fn is_halted(&self) -> bool {
        self.halted
    }
    /// Times the engine fetched a slot not made valid by the driver.
    #[must_use]
    pub const fn invalid_fetches(&self) -> u32 {
        self.invalid_fetches
    }
    /// Times the engine halted.
    #[must_use]
    pub const fn halts(&self) -> u32 {
        self.halts
    }
}
