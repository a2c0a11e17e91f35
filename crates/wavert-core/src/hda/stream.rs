//! One HD Audio stream descriptor and its position.
//!
//! Reset, programming (format, cyclic
//! buffer length, last valid index, BDL address, stream tag), run and stop,
//! its link position, and the linear position kept from the DMA position
//! buffer.
//!
//! Facts (HDA spec 3.3.35-3.3.44, 3.6; QEMU hw/audio/intel-hda.c):
//! - the stream reset bit reads back 1 once the descriptor is in reset and
//!   0 once it left it; registers are programmed with RUN clear;
//! - the controller reads the BDL and LVI when RUN goes from 0 to 1 (QEMU
//!   parses the list at that moment, `intel_hda_parse_bdl`), so the list
//!   is complete before the start;
//! - LPIB counts bytes from the start of the cyclic buffer and wraps to 0
//!   at CBL; with DPLBASE enabled the controller writes the same value to
//!   the position buffer entry of the descriptor (8 bytes per descriptor,
//!   by descriptor index).

use super::{reg, split_address, HdaError, RegisterBus, DMA_ALIGNMENT};
use crate::bus::Counted;
use crate::sg::{Descriptor, SgProfile};

/// Polls of the reset and run bits, one microsecond apart.
const STREAM_POLLS: u32 = 1_000;

/// The direction of a stream descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Memory to codec.
    Render,
    /// Codec to memory.
    Capture,
}

/// What is programmed into a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamProgram {
    /// BDL physical address (128-byte aligned).
    pub bdl_physical: u64,
    /// BDL entries (1..=256).
    pub entries: u16,
    /// Cyclic buffer length in bytes.
    pub cyclic_bytes: u32,
    /// Stream format word ([`super::codec::PcmFormat::encode`]).
    pub format: u16,
    /// Stream tag, 1..=15, also given to the converter.
    pub tag: u8,
}

/// Counters a stream keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Register accesses made by program, start, stop, pause.
    pub control_register_accesses: u64,
    /// Register accesses made by position reads through LPIB.
    pub position_register_accesses: u64,
    /// Positions taken from the position buffer (no register access).
    pub position_buffer_reads: u64,
}

/// One stream descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    index: u8,
    direction: Direction,
    program: Option<StreamProgram>,
    running: bool,
    tracker: PositionTracker,
    stats: StreamStats,
}

impl Stream {
    /// Descriptor `index` (its place in the controller's register file:
    /// inputs first, see [`super::Capabilities`]) used for `direction`.
    #[must_use]
    pub const fn new(index: u8, direction: Direction) -> Self {
        Self {
            index,
            direction,
            program: None,
            running: false,
            tracker: PositionTracker::new(0),
            stats: StreamStats {
                control_register_accesses: 0,
                position_register_accesses: 0,
                position_buffer_reads: 0,
            },
        }
    }

    /// The descriptor index.
    #[must_use]
    pub const fn index(&self) -> u8 {
        self.index
    }

    /// The direction.
    #[must_use]
    pub const fn direction(&self) -> Direction {
        self.direction
    }

    /// Whether running.
    #[must_use]
    pub const fn is_running(&self) -> bool {
        self.running
    }

    /// The counters.
    #[must_use]
    pub const fn stats(&self) -> StreamStats {
        self.stats
    }

    /// This descriptor's bit in INTCTL / INTSTS.
    #[must_use]
    pub const fn interrupt_bit(&self) -> u32 {
        // INTSTS has 30 stream bits; a descriptor beyond them has none.
        if self.index < 30 {
            1 << self.index
        } else {
            0
        }
    }

    /// Offset of this descriptor's entry in the DMA position buffer.
    #[must_use]
    pub const fn position_buffer_offset(&self) -> u64 {
        self.index as u64 * 8
    }

    const fn register(&self, offset: u16) -> u16 {
        reg::stream_base(self.index) + offset
    }

    /// Resets the descriptor and programs it, leaving RUN clear.
    ///
    /// # Errors
    /// [`HdaError::BadBufferGeometry`], [`HdaError::BadAddress`],
    /// [`HdaError::BadStreamTag`], [`HdaError::StreamResetTimeout`].
    pub fn program(
        &mut self,
        bus: &mut impl RegisterBus,
        program: StreamProgram,
        stall_us: &mut impl FnMut(u32),
    ) -> Result<(), HdaError> {
        if program.cyclic_bytes == 0
            || program.entries == 0
            || program.entries > SgProfile::HDA.max_entries
        {
            return Err(HdaError::BadBufferGeometry);
        }
        if program.bdl_physical % DMA_ALIGNMENT != 0 {
            return Err(HdaError::BadAddress(program.bdl_physical));
        }
        if program.tag == 0 || program.tag > 15 {
            return Err(HdaError::BadStreamTag(program.tag));
        }
        let mut counted = Counted::new(bus);
        let result = self.reset_and_write(&mut counted, &program, stall_us);
        self.stats.control_register_accesses += u64::from(counted.accesses());
        result?;
        self.program = Some(program);
        self.running = false;
        self.tracker = PositionTracker::new(program.cyclic_bytes);
        Ok(())
    }

    fn reset_and_write(
        &self,
        bus: &mut impl RegisterBus,
        program: &StreamProgram,
        stall_us: &mut impl FnMut(u32),
    ) -> Result<(), HdaError> {
        // Stop, enter reset, see it, leave reset, see it (HDA spec 3.3.35).
        bus.write8(self.register(reg::SD_CTL), 0);
        bus.write8(self.register(reg::SD_CTL), reg::SD_CTL_SRST);
        if !poll_bit(
            bus,
            self.register(reg::SD_CTL),
            reg::SD_CTL_SRST,
            true,
            stall_us,
        ) {
            return Err(HdaError::StreamResetTimeout);
        }
        bus.write8(self.register(reg::SD_CTL), 0);
        if !poll_bit(
            bus,
            self.register(reg::SD_CTL),
            reg::SD_CTL_SRST,
            false,
            stall_us,
        ) {
            return Err(HdaError::StreamResetTimeout);
        }
        let (low, high) = split_address(program.bdl_physical);
        bus.write32(self.register(reg::SD_CBL), program.cyclic_bytes);
        bus.write16(self.register(reg::SD_LVI), program.entries - 1);
        // The controller's copy of the format (the codec's is set by verb).
        bus.write16(self.register(reg::SD_FMT), program.format);
        bus.write32(self.register(reg::SD_BDPL), low);
        bus.write32(self.register(reg::SD_BDPU), high);
        bus.write8(self.register(reg::SD_CTL_TAG_BYTE), program.tag << 4);
        bus.write8(self.register(reg::SD_STS), reg::SD_STS_INTERRUPTS);
        Ok(())
    }

    /// Sets RUN with the completion, FIFO-error and descriptor-error
    /// interrupts enabled. The controller fetches the BDL now.
    ///
    /// # Errors
    /// [`HdaError::NotRunning`] when not programmed.
    pub fn start(&mut self, bus: &mut impl RegisterBus) -> Result<(), HdaError> {
        if self.program.is_none() {
            return Err(HdaError::NotRunning);
        }
        let mut counted = Counted::new(bus);
        counted.write8(
            self.register(reg::SD_CTL),
            reg::SD_CTL_RUN | reg::SD_CTL_IOCE | reg::SD_CTL_FEIE | reg::SD_CTL_DEIE,
        );
        self.stats.control_register_accesses += u64::from(counted.accesses());
        self.running = true;
        Ok(())
    }

    /// Clears RUN and waits for it to read 0; LPIB and the position stay
    /// where they were (pause). A later [`Self::start`] resumes from there
    /// on QEMU's model; the spec leaves resume-after-stop to the
    /// controller, so the miniport reprograms on STOP.
    pub fn halt(&mut self, bus: &mut impl RegisterBus, stall_us: &mut impl FnMut(u32)) -> bool {
        let mut counted = Counted::new(bus);
        counted.write8(self.register(reg::SD_CTL), 0);
        let stopped = poll_bit(
            &mut counted,
            self.register(reg::SD_CTL),
            reg::SD_CTL_RUN,
            false,
            stall_us,
        );
        counted.write8(self.register(reg::SD_STS), reg::SD_STS_INTERRUPTS);
        self.stats.control_register_accesses += u64::from(counted.accesses());
        self.running = false;
        stopped
    }

    /// Programs the descriptor for a stream that lost its registers (a
    /// power loss) and resumes at linear byte `linear`: `program` holds the
    /// list [`resume_list`] rotated to start at `linear`'s offset in the
    /// cyclic buffer, so LPIB counts from that offset and the position goes
    /// on from `linear`. RUN stays clear.
    ///
    /// # Errors
    /// As [`Self::program`].
    pub fn program_resuming(
        &mut self,
        bus: &mut impl RegisterBus,
        program: StreamProgram,
        linear: u64,
        stall_us: &mut impl FnMut(u32),
    ) -> Result<(), HdaError> {
        self.program(bus, program, stall_us)?;
        self.tracker = PositionTracker::resumed(program.cyclic_bytes, linear);
        Ok(())
    }

    /// Forgets the program and position without touching a register (a
    /// STOP while the device is powered down: its registers are gone or
    /// must not be touched).
    pub const fn forget(&mut self) {
        self.program = None;
        self.running = false;
        self.tracker = PositionTracker::new(0);
    }

    /// Halts and forgets the program; the position restarts at 0.
    pub fn stop(&mut self, bus: &mut impl RegisterBus, stall_us: &mut impl FnMut(u32)) -> bool {
        let stopped = self.halt(bus, stall_us);
        self.program = None;
        self.tracker = PositionTracker::new(0);
        stopped
    }

    /// The FIFO size in bytes (`SDnFIFOS`, HDA spec 3.3.41), for the
    /// hardware latency report.
    pub fn fifo_bytes(&self, bus: &mut impl RegisterBus) -> u16 {
        bus.read16(self.register(reg::SD_FIFOS))
    }

    /// Linear byte position from a position-buffer entry the controller
    /// wrote (no register access).
    ///
    /// # Errors
    /// [`HdaError::NotRunning`], [`HdaError::PositionOutOfRange`].
    pub fn position_from_buffer(&mut self, entry: u32) -> Result<u64, HdaError> {
        if self.program.is_none() {
            return Err(HdaError::NotRunning);
        }
        self.stats.position_buffer_reads += 1;
        self.tracker.update(entry)
    }

    /// Linear byte position from LPIB (one register access), for when the
    /// position buffer is not in use.
    ///
    /// # Errors
    /// As [`Self::position_from_buffer`].
    pub fn position_from_register(&mut self, bus: &mut impl RegisterBus) -> Result<u64, HdaError> {
        if self.program.is_none() {
            return Err(HdaError::NotRunning);
        }
        let lpib = bus.read32(self.register(reg::SD_LPIB));
        self.stats.position_register_accesses += 1;
        self.tracker.update(lpib)
    }

    /// The last linear position computed (no access at all).
    #[must_use]
    pub const fn last_position(&self) -> u64 {
        self.tracker.linear()
    }
}

/// Where a stream that lost its registers starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    /// Offset in the cyclic buffer of the rotated list's first byte.
    pub origin: u32,
    /// Bytes from the held offset forward to `origin`: not played (render)
    /// or not recorded (capture) across the power loss.
    pub skipped: u32,
    /// Entries of the rotated list.
    pub entries: u16,
}

/// Writes `descriptors`, the looping list of a cyclic buffer of `size`
/// bytes, rotated to start at the first 128-byte boundary at or after
/// `held_offset`, through `write(index, entry)` in list order.
///
/// Why: after a power loss LPIB is 0 again and the controller starts at the
/// first entry, and every entry must start 128-byte aligned (HDA spec
/// 3.6.3), so a stream held mid-entry can only go on at a boundary. The
/// entry holding the boundary is split in two (its part before the
/// boundary goes last, without IOC); with no room for one more entry
/// (`max_entries`) the list starts at the next entry instead. Every byte is
/// still in the list once, so LPIB wraps at CBL as before and each packet
/// end keeps its IOC.
///
/// # Errors
/// [`HdaError::BadBufferGeometry`] for a list that does not tile
/// `0..size`, an offset beyond it, or a `write` that fails.
pub fn resume_list(
    descriptors: &[Descriptor],
    size: u32,
    held_offset: u32,
    max_entries: usize,
    write: &mut impl FnMut(usize, &Descriptor) -> bool,
) -> Result<ResumePoint, HdaError> {
    if size == 0 || held_offset >= size {
        return Err(HdaError::BadBufferGeometry);
    }
    let tiled = descriptors.iter().try_fold(0u32, |next, d| {
        (d.buffer_offset == next && d.length_bytes > 0)
            .then(|| next.checked_add(d.length_bytes))
            .flatten()
    }) == Some(size);
    if !tiled {
        return Err(HdaError::BadBufferGeometry);
    }
    let alignment = u32::try_from(DMA_ALIGNMENT).unwrap_or(128);
    let boundary = held_offset
        .checked_next_multiple_of(alignment)
        .filter(|b| *b < size)
        .unwrap_or(0);
    let holding = |offset: u32| {
        descriptors
            .iter()
            .position(|d| offset >= d.buffer_offset && offset - d.buffer_offset < d.length_bytes)
    };
    let mut first = holding(boundary).ok_or(HdaError::BadBufferGeometry)?;
    let mut origin = boundary;
    let mut split = None;
    let entry = descriptors.get(first).ok_or(HdaError::BadBufferGeometry)?;
    let into_entry = origin - entry.buffer_offset;
    if into_entry > 0 {
        let aligned = (entry.address + u64::from(into_entry)) % DMA_ALIGNMENT == 0;
        if aligned && descriptors.len() < max_entries {
            split = Some((
                Descriptor {
                    address: entry.address + u64::from(into_entry),
                    length_bytes: entry.length_bytes - into_entry,
                    buffer_offset: origin,
                    interrupt_on_completion: entry.interrupt_on_completion,
                },
                Descriptor {
                    address: entry.address,
                    length_bytes: into_entry,
                    buffer_offset: entry.buffer_offset,
                    interrupt_on_completion: false,
                },
            ));
        } else {
            first = (first + 1) % descriptors.len();
            origin = descriptors.get(first).map_or(0, |d| d.buffer_offset);
        }
    }
    let (rest, before) = (
        descriptors.get(first..).unwrap_or(&[]),
        descriptors.get(..first).unwrap_or(&[]),
    );
    // The list from the origin: the first entry (or its part from the
    // boundary), the rest in order round the ring, then the split entry's
    // part before the boundary.
    let head = split.map(|(from_origin, _)| from_origin);
    let tail = split.map(|(_, up_to_origin)| up_to_origin);
    let mut index = 0;
    let mut written = true;
    for d in head
        .iter()
        .chain(rest.iter().skip(usize::from(head.is_some())))
        .chain(before)
        .chain(tail.iter())
    {
        written &= write(index, d);
        index += 1;
    }
    if !written {
        return Err(HdaError::BadBufferGeometry);
    }
    let entries = u16::try_from(index).map_err(|_| HdaError::BadBufferGeometry)?;
    let skipped = if origin >= held_offset {
        origin - held_offset
    } else {
        size - held_offset + origin
    };
    Ok(ResumePoint {
        origin,
        skipped,
        entries,
    })
}

fn poll_bit(
    bus: &mut impl RegisterBus,
    offset: u16,
    bit: u8,
    set: bool,
    stall_us: &mut impl FnMut(u32),
) -> bool {
    for _ in 0..STREAM_POLLS {
        if (bus.read8(offset) & bit != 0) == set {
            return true;
        }
        stall_us(1);
    }
    false
}

/// Turns a wrapping in-buffer offset into a linear byte count.
///
/// Each update must come less than one buffer cycle after the previous
/// one (the notification DPC or `GetPosition` calls keep it so); a longer gap
/// loses whole cycles, which no reading of a wrapping counter can see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionTracker {
    size: u32,
    last: u32,
    linear: u64,
}

impl PositionTracker {
    /// A tracker over a cyclic buffer of `size` bytes, at 0.
    #[must_use]
    pub const fn new(size: u32) -> Self {
        Self {
            size,
            last: 0,
            linear: 0,
        }
    }

    /// A tracker at linear byte `linear` whose next offset counts from 0:
    /// the controller's LPIB after a restart on a rotated list
    /// ([`Stream::program_resuming`]).
    #[must_use]
    pub const fn resumed(size: u32, linear: u64) -> Self {
        Self {
            size,
            last: 0,
            linear,
        }
    }

    /// Folds in a new in-buffer offset.
    ///
    /// # Errors
    /// [`HdaError::PositionOutOfRange`] for an offset beyond the buffer (a
    /// stale or corrupt register); the tracker keeps its state.
    pub fn update(&mut self, offset: u32) -> Result<u64, HdaError> {
        // LPIB equals CBL for an instant on some controllers before it
        // wraps (HDA spec 3.3.37 allows 0..=CBL); treat it as 0.
        if offset > self.size {
            return Err(HdaError::PositionOutOfRange { lpib: offset });
        }
        let offset = if offset == self.size { 0 } else { offset };
        let delta = if offset >= self.last {
            offset - self.last
        } else {
            self.size - self.last + offset
        };
        self.linear = self.linear.saturating_add(u64::from(delta));
        self.last = offset;
        Ok(self.linear)
    }

    /// The linear position.
    #[must_use]
    pub const fn linear(&self) -> u64 {
        self.linear
    }
}
