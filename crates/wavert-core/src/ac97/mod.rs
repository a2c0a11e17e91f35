//! Intel ICH AC'97 back-end: codec bring-up, PCM-out and PCM-in bus-master
//! channels, the interrupt service routine and the position read, as a
//! register-level driver over [`RegisterBus`].
//!
//! The device has two I/O windows: the native audio mixer (NAM, BAR0), a
//! window onto the codec's 16-bit registers, and the native audio bus master
//! (NABM, BAR1) with one register block per DMA channel and the global
//! control/status registers. Descriptors live in memory the driver owns;
//! this module only says what bytes go at which physical address
//! ([`DmaMemory`]).
//!
//! Facts this code relies on (Intel ICH AC'97 documentation, confirmed on
//! QEMU's model):
//! - NAM answers 16-bit accesses only. In NABM, CIV, LVI, PIV and CR are
//!   bytes, SR and PICB are words, BDBAR, `GLOB_CNT` and `GLOB_STA` dwords; a
//!   dword read at CIV returns CIV, LVI and SR at once.
//! - PICB and descriptor lengths count 16-bit samples.
//! - The engine halts after finishing the entry at LVI (SR: DCH, CELV,
//!   LVBCI). With the run bit still set, a new LVI restarts it at the next
//!   entry; some implementations need the run bit written again.
//! - LVBCI, BCIS and FIFOE are write-one-to-clear; DCH and CELV are read-only.
//!
//! The ISR's common case costs three register accesses: one dword read of
//! CIV/LVI/SR, one word write acknowledging exactly the status bits seen,
//! one byte write of the new LVI. Slot bookkeeping is [`RefillDma`]'s.

pub mod sim;

use crate::bus::Counted;
pub use crate::bus::{DmaMemory, RegisterBus};
use crate::dma::{DmaError, Refill, RefillDma};
use crate::sg::{encode_entry, Descriptor, SgError, SgProfile};

/// Descriptor slots of one bus-master channel.
pub const RING_SLOTS: u8 = 32;
/// Bytes of one descriptor list (32 entries of 8 bytes).
pub const BDL_BYTES: u32 = 256;
/// Slots kept valid ahead of the engine: all but one, the most slack the
/// ring allows.
pub const SLOTS_AHEAD: u8 = RING_SLOTS - 1;

/// Native audio mixer (codec) register offsets, BAR0.
pub mod nam {
    /// Writing any value resets the codec's registers to defaults.
    pub const RESET: u16 = 0x00;
    /// Master (line out) volume.
    pub const MASTER_VOLUME: u16 = 0x02;
    /// PCM-out volume.
    pub const PCM_OUT_VOLUME: u16 = 0x18;
    /// Record source select.
    pub const RECORD_SELECT: u16 = 0x1A;
    /// Record gain.
    pub const RECORD_GAIN: u16 = 0x1C;
    /// Powerdown control/status: ready bits 0..3 (ADC, DAC, analog mixer,
    /// Vref), power-down requests PR0..PR6 in bits 8..14 (AC'97 2.3
    /// specification, section 5.8.3 / register 26h).
    pub const POWERDOWN: u16 = 0x26;
    /// Powerdown: PR0 (PCM-in ADCs and input mux), PR1 (PCM-out DACs), PR2
    /// (analog mixer, Vref kept), PR3 (analog mixer and Vref), PR4 (AC-link:
    /// only a cold or warm reset wakes the codec again).
    pub const POWERDOWN_D3: u16 = 0x1F00;
    /// Powerdown: PR0 and PR1, the converters only (mixer and link kept).
    pub const POWERDOWN_CONVERTERS: u16 = 0x0300;
    /// Extended audio capabilities (read-only).
    pub const EXTENDED_AUDIO_ID: u16 = 0x28;
    /// Extended audio status and control.
    pub const EXTENDED_AUDIO_CONTROL: u16 = 0x2A;
    /// Front DAC sample rate (Hz) when variable rate audio is on.
    pub const FRONT_DAC_RATE: u16 = 0x2C;
    /// Left/right ADC sample rate (Hz) when variable rate audio is on.
    pub const ADC_RATE: u16 = 0x32;
    /// Volume registers: mute bit.
    pub const MUTE: u16 = 0x8000;
    /// Volume registers: 0 dB on both sides, unmuted.
    pub const UNITY_GAIN: u16 = 0x0000;
    /// Extended audio: variable rate audio (VRA) bit, in both the ID and the
    /// control register.
    pub const VARIABLE_RATE: u16 = 0x0001;
}

/// Native audio bus master register offsets, BAR1.
pub mod nabm {
    /// PCM-in channel register block.
    pub const PCM_IN: u16 = 0x00;
    /// PCM-out channel register block.
    pub const PCM_OUT: u16 = 0x10;
    /// Channel: descriptor list base address (dword).
    pub const BDBAR: u16 = 0x00;
    /// Channel: current index value (byte).
    pub const CIV: u16 = 0x04;
    /// Channel: last valid index (byte).
    pub const LVI: u16 = 0x05;
    /// Channel: status (word).
    pub const SR: u16 = 0x06;
    /// Channel: samples left in the current entry (word).
    pub const PICB: u16 = 0x08;
    /// Channel: control (byte).
    pub const CR: u16 = 0x0B;
    /// Global control (dword).
    pub const GLOB_CNT: u16 = 0x2C;
    /// Global status (dword).
    pub const GLOB_STA: u16 = 0x30;

    /// CR: run / pause bus master.
    pub const CR_RUN: u8 = 0x01;
    /// CR: reset the channel's registers.
    pub const CR_RESET: u8 = 0x02;
    /// CR: interrupt on last valid buffer completion.
    pub const CR_LVB_INTERRUPT: u8 = 0x04;
    /// CR: interrupt on FIFO error.
    pub const CR_FIFO_ERROR_INTERRUPT: u8 = 0x08;
    /// CR: interrupt on completion of an entry with IOC.
    pub const CR_COMPLETION_INTERRUPT: u8 = 0x10;

    /// SR: DMA controller halted.
    pub const SR_HALTED: u16 = 0x01;
    /// SR: current index equals last valid index.
    pub const SR_CURRENT_IS_LAST: u16 = 0x02;
    /// SR: last valid buffer completed (write one to clear).
    pub const SR_LAST_VALID_COMPLETED: u16 = 0x04;
    /// SR: entry with IOC completed (write one to clear).
    pub const SR_COMPLETION: u16 = 0x08;
    /// SR: FIFO error, underrun or overrun (write one to clear).
    pub const SR_FIFO_ERROR: u16 = 0x10;
    /// SR: the write-one-to-clear interrupt sources.
    pub const SR_INTERRUPTS: u16 = SR_LAST_VALID_COMPLETED | SR_COMPLETION | SR_FIFO_ERROR;

    /// `GLOB_CNT`: global interrupt enable.
    pub const GLOB_CNT_INTERRUPT_ENABLE: u32 = 0x01;
    /// `GLOB_CNT`: AC-link cold reset, active low (set = out of reset).
    pub const GLOB_CNT_COLD_RESET_RELEASED: u32 = 0x02;
    /// `GLOB_STA`: primary codec ready.
    pub const GLOB_STA_PRIMARY_READY: u32 = 0x100;
}

/// Why the back-end refused or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ac97Error {
    /// The codec did not report ready after cold reset.
    CodecNotReady,
    /// The codec has no variable rate audio: only 48 kHz would work.
    NoVariableRate,
    /// A rate outside 8-48 kHz was asked for.
    RateOutOfRange(u32),
    /// The codec kept another rate than the one written.
    RateNotTaken {
        /// Rate written.
        asked: u32,
        /// Rate read back.
        got: u32,
    },
    /// The descriptor list is not 8-byte aligned or not below 4 GiB.
    BadListAddress(u64),
    /// The channel is not running.
    NotRunning,
    /// The position could not be read consistently (CIV kept moving).
    PositionUnstable,
    /// DMA bookkeeping disagreed with the hardware.
    Dma(DmaError),
    /// A descriptor could not be encoded.
    Descriptor(SgError),
}

impl From<DmaError> for Ac97Error {
    fn from(e: DmaError) -> Self {
        Self::Dma(e)
    }
}

impl From<SgError> for Ac97Error {
    fn from(e: SgError) -> Self {
        Self::Descriptor(e)
    }
}

/// Lowest rate the codec is driven at.
pub const MIN_RATE: u32 = 8_000;
/// Highest rate the codec is driven at.
pub const MAX_RATE: u32 = 48_000;

/// Polls of `GLOB_STA` for codec ready, one millisecond apart.
const CODEC_READY_POLLS: u32 = 600;
/// Attempts at a consistent CIV/PICB pair before giving up.
const POSITION_ATTEMPTS: u32 = 4;

/// The AC'97 codec (through NAM) and the AC-link (through NABM's global
/// registers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    render_rate: u32,
    capture_rate: u32,
}

impl Codec {
    /// Cold-resets the AC-link, waits for the primary codec, resets the
    /// mixer, turns on variable rate audio, sets both rates and leaves the
    /// master and PCM-out volumes at unity gain, unmuted.
    ///
    /// `stall_us` busy-waits the given microseconds (the reset pulse and the
    /// codec-ready poll need real time).
    ///
    /// # Errors
    /// [`Ac97Error::CodecNotReady`], [`Ac97Error::NoVariableRate`], or as
    /// [`Self::set_render_rate`] / [`Self::set_capture_rate`].
    pub fn bring_up(
        mixer: &mut impl RegisterBus,
        bus_master: &mut impl RegisterBus,
        render_rate: u32,
        capture_rate: u32,
        stall_us: &mut impl FnMut(u32),
    ) -> Result<Self, Ac97Error> {
        check_rate(render_rate)?;
        check_rate(capture_rate)?;
        // Reset line low (asserted), hold past the 1 us minimum, then
        // release it with interrupts enabled.
        bus_master.write32(nabm::GLOB_CNT, 0);
        stall_us(2);
        bus_master.write32(
            nabm::GLOB_CNT,
            nabm::GLOB_CNT_COLD_RESET_RELEASED | nabm::GLOB_CNT_INTERRUPT_ENABLE,
        );
        let mut ready = false;
        for _ in 0..CODEC_READY_POLLS {
            if bus_master.read32(nabm::GLOB_STA) & nabm::GLOB_STA_PRIMARY_READY != 0 {
                ready = true;
                break;
            }
            stall_us(1_000);
        }
        if !ready {
            return Err(Ac97Error::CodecNotReady);
        }
        mixer.write16(nam::RESET, 0);
        if mixer.read16(nam::EXTENDED_AUDIO_ID) & nam::VARIABLE_RATE == 0 {
            return Err(Ac97Error::NoVariableRate);
        }
        let control = mixer.read16(nam::EXTENDED_AUDIO_CONTROL);
        mixer.write16(nam::EXTENDED_AUDIO_CONTROL, control | nam::VARIABLE_RATE);
        if mixer.read16(nam::EXTENDED_AUDIO_CONTROL) & nam::VARIABLE_RATE == 0 {
            return Err(Ac97Error::NoVariableRate);
        }
        let mut codec = Self {
            render_rate: 0,
            capture_rate: 0,
        };
        codec.set_capture_rate(mixer, capture_rate)?;
        codec.set_render_rate(mixer, render_rate)?;
        Ok(codec)
    }

    /// Sets the front DAC rate, then (re)applies unity gain: some codec
    /// models (QEMU's) rebuild the output voice on a rate change and forget
    /// the volume, so the volume is always written after the rate.
    ///
    /// # Errors
    /// [`Ac97Error::RateOutOfRange`], [`Ac97Error::RateNotTaken`].
    pub fn set_render_rate(
        &mut self,
        mixer: &mut impl RegisterBus,
        rate: u32,
    ) -> Result<(), Ac97Error> {
        self.render_rate = write_rate(mixer, nam::FRONT_DAC_RATE, rate)?;
        mixer.write16(nam::MASTER_VOLUME, nam::UNITY_GAIN);
        mixer.write16(nam::PCM_OUT_VOLUME, nam::UNITY_GAIN);
        Ok(())
    }

    /// Sets the ADC rate and opens the record path at 0 dB.
    ///
    /// # Errors
    /// [`Ac97Error::RateOutOfRange`], [`Ac97Error::RateNotTaken`].
    pub fn set_capture_rate(
        &mut self,
        mixer: &mut impl RegisterBus,
        rate: u32,
    ) -> Result<(), Ac97Error> {
        self.capture_rate = write_rate(mixer, nam::ADC_RATE, rate)?;
        mixer.write16(nam::RECORD_GAIN, nam::UNITY_GAIN);
        Ok(())
    }

    /// The front DAC rate in Hz.
    #[must_use]
    pub const fn render_rate(&self) -> u32 {
        self.render_rate
    }

    /// The ADC rate in Hz.
    #[must_use]
    pub const fn capture_rate(&self) -> u32 {
        self.capture_rate
    }
}

const fn check_rate(rate: u32) -> Result<u16, Ac97Error> {
    if rate < MIN_RATE || rate > MAX_RATE {
        return Err(Ac97Error::RateOutOfRange(rate));
    }
    // 48000 fits in 16 bits.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "checked to be <= 48000 above"
    )]
    Ok(rate as u16)
}

fn write_rate(mixer: &mut impl RegisterBus, register: u16, rate: u32) -> Result<u32, Ac97Error> {
    let value = check_rate(rate)?;
    mixer.write16(register, value);
    let got = u32::from(mixer.read16(register));
    if got != rate {
        return Err(Ac97Error::RateNotTaken { asked: rate, got });
    }
    Ok(got)
}

/// Which bus-master channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// PCM out (render), NABM 0x10.
    PcmOut,
    /// PCM in (capture), NABM 0x00.
    PcmIn,
}

impl ChannelKind {
    /// The channel's register block in NABM.
    #[must_use]
    pub const fn base(self) -> u16 {
        match self {
            Self::PcmOut => nabm::PCM_OUT,
            Self::PcmIn => nabm::PCM_IN,
        }
    }
}

/// Counters a channel keeps about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Interrupts that carried a status bit of this channel.
    pub interrupts: u64,
    /// Interrupts with no status bit of this channel (shared line).
    pub not_mine: u64,
    /// Times the engine was found halted (ran out of valid entries).
    pub halts: u64,
    /// Times the engine had to be restarted with the run bit after a new
    /// LVI alone did not resume it.
    pub run_bit_restarts: u64,
    /// FIFO errors reported.
    pub fifo_errors: u64,
    /// Register accesses made by [`Channel::service_interrupt`].
    pub interrupt_register_accesses: u64,
    /// Register accesses made by [`Channel::position`].
    pub position_register_accesses: u64,
    /// Register accesses made by start and stop.
    pub control_register_accesses: u64,
}

/// What one interrupt service found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceReport {
    /// Status bits seen and acknowledged (0: not this channel's interrupt).
    pub acknowledged: u16,
    /// The engine was halted and has been restarted.
    pub restarted: bool,
    /// Segments completed since start, counted linearly.
    pub completed_segments: u64,
    /// Register accesses this service made.
    pub register_accesses: u32,
}

/// CIV, LVI and SR from one dword read at CIV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IndexStatus {
    civ: u8,
    status: u16,
}

impl IndexStatus {
    const fn from_dword(dword: u32) -> Self {
        let [civ, _lvi, sr_low, sr_high] = dword.to_le_bytes();
        Self {
            // The index registers are five bits wide.
            civ: civ % RING_SLOTS,
            status: u16::from_le_bytes([sr_low, sr_high]),
        }
    }
    const fn halted(self) -> bool {
        self.status & nabm::SR_HALTED != 0
    }
}

/// Run bits written to CR: run with every interrupt source enabled.
const RUN_CONTROL: u8 = nabm::CR_RUN
    | nabm::CR_COMPLETION_INTERRUPT
    | nabm::CR_LVB_INTERRUPT
    | nabm::CR_FIFO_ERROR_INTERRUPT;

/// One bus-master channel (PCM out or PCM in) driven as a refilled ring
/// over a cyclic buffer's segment list.
///
/// The segment list (from [`crate::sg::build`] with [`SgProfile::AC97`]) is
/// owned by the caller and passed to every call that needs it, so the
/// channel holds no memory of its own beyond counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    kind: ChannelKind,
    list_physical: u32,
    dma: Option<RefillDma>,
    last_valid_index: u8,
    stats: ChannelStats,
}

impl Channel {
    /// A stopped channel whose descriptor list lives at `list_physical`
    /// (8-byte aligned, below 4 GiB, [`BDL_BYTES`] long).
    ///
    /// # Errors
    /// [`Ac97Error::BadListAddress`].
    pub fn new(kind: ChannelKind, list_physical: u64) -> Result<Self, Ac97Error> {
        let in_range = list_physical
            .checked_add(u64::from(BDL_BYTES) - 1)
            .is_some_and(|last| u32::try_from(last).is_ok());
        let aligned = list_physical % u64::from(SgProfile::AC97.list_alignment) == 0;
        let physical = u32::try_from(list_physical)
            .ok()
            .filter(|_| in_range && aligned)
            .ok_or(Ac97Error::BadListAddress(list_physical))?;
        Ok(Self {
            kind,
            list_physical: physical,
            dma: None,
            last_valid_index: 0,
            stats: ChannelStats::default(),
        })
    }

    /// Which channel.
    #[must_use]
    pub const fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// The counters.
    #[must_use]
    pub const fn stats(&self) -> ChannelStats {
        self.stats
    }

    /// Whether started and not stopped.
    #[must_use]
    pub const fn is_running(&self) -> bool {
        self.dma.is_some()
    }

    /// The refill bookkeeping, while running.
    #[must_use]
    pub const fn dma(&self) -> Option<&RefillDma> {
        self.dma.as_ref()
    }

    const fn register(&self, offset: u16) -> u16 {
        self.kind.base() + offset
    }

    fn apply_refill(
        &mut self,
        bus: &mut Counted<'_, impl RegisterBus>,
        memory: &mut impl DmaMemory,
        segments: &[Descriptor],
        refill: &Refill,
    ) -> Result<(), Ac97Error> {
        for write in refill.writes.clone() {
            let index = usize::try_from(write.segment).unwrap_or(usize::MAX);
            let segment = segments
                .get(index)
                .ok_or(Ac97Error::Dma(DmaError::SegmentTableMismatch))?;
            let mut entry = [0u8; 8];
            encode_entry(&SgProfile::AC97, index, segment, &mut entry)?;
            let slot_offset = u64::from(write.slot) * 8;
            memory.write(u64::from(self.list_physical) + slot_offset, &entry);
        }
        // An unchanged LVI is not rewritten: on the common path it always
        // moves, and a redundant write costs a bus cycle in the ISR.
        if refill.last_valid_index != self.last_valid_index || refill.restart {
            bus.write8(self.register(nabm::LVI), refill.last_valid_index);
            self.last_valid_index = refill.last_valid_index;
        }
        Ok(())
    }

    /// Resets the channel, loads the first [`SLOTS_AHEAD`] segments, sets
    /// the list base and LVI, and runs it with every interrupt enabled.
    ///
    /// # Errors
    /// [`Ac97Error::Dma`] for an empty segment list, [`Ac97Error::Descriptor`]
    /// for a segment the device cannot take.
    pub fn start(
        &mut self,
        bus_master: &mut impl RegisterBus,
        memory: &mut impl DmaMemory,
        segments: &[Descriptor],
    ) -> Result<(), Ac97Error> {
        let count = u32::try_from(segments.len()).unwrap_or(0);
        let mut dma = RefillDma::new(count, RING_SLOTS, SLOTS_AHEAD)?;
        let mut bus = Counted::new(bus_master);
        // The channel reset clears CIV, PIV, LVI and SR, so the engine
        // begins at slot 0 whatever ran before.
        bus.write8(self.register(nabm::CR), nabm::CR_RESET);
        bus.write32(self.register(nabm::BDBAR), self.list_physical);
        let refill = dma.start();
        // Force the LVI write: the reset zeroed it behind our back.
        self.last_valid_index = refill.last_valid_index.wrapping_add(1);
        let result = self.apply_refill(&mut bus, memory, segments, &refill);
        if result.is_ok() {
            bus.write8(self.register(nabm::CR), RUN_CONTROL);
            self.dma = Some(dma);
        }
        self.stats.control_register_accesses += u64::from(bus.accesses());
        result
    }

    /// Starts the channel again after its registers were lost (a power
    /// loss, or the cold reset before D0) at linear byte `position` of the
    /// stream, where it was paused: resets the channel, sets the list base,
    /// loads the ring from the segment holding `position`, its first entry
    /// shortened to what of it was not yet moved, and runs. The refill
    /// counters go on linearly, so [`Self::position`] continues from
    /// `position` (the shortened entry's PICB counts down what is left of
    /// the segment).
    ///
    /// # Errors
    /// As [`Self::start`]; [`Ac97Error::Dma`] for a position the segment
    /// list does not hold.
    pub fn resume_at(
        &mut self,
        bus_master: &mut impl RegisterBus,
        memory: &mut impl DmaMemory,
        segments: &[Descriptor],
        buffer_size: u32,
        position: u64,
    ) -> Result<(), Ac97Error> {
        let count = u32::try_from(segments.len()).unwrap_or(0);
        let mut dma = RefillDma::new(count, RING_SLOTS, SLOTS_AHEAD)?;
        let size = u64::from(buffer_size.max(1));
        let offset = position % size;
        let (index, segment) = segments
            .iter()
            .enumerate()
            .rev()
            .find(|(_, s)| u64::from(s.buffer_offset) <= offset)
            .ok_or(Ac97Error::Dma(DmaError::SegmentTableMismatch))?;
        let done = position / size * u64::from(count) + index as u64;
        // Whole samples of the segment already moved (positions advance in
        // samples, so this is even).
        let consumed = u32::try_from(offset - u64::from(segment.buffer_offset)).unwrap_or(0);
        let mut bus = Counted::new(bus_master);
        bus.write8(self.register(nabm::CR), nabm::CR_RESET);
        bus.write32(self.register(nabm::BDBAR), self.list_physical);
        let refill = dma.start_at(done);
        self.last_valid_index = refill.last_valid_index.wrapping_add(1);
        let mut result = self.apply_refill(&mut bus, memory, segments, &refill);
        if result.is_ok() && consumed != 0 {
            // Slot 0 holds segment `index`: its rest only.
            let rest = Descriptor {
                address: segment.address + u64::from(consumed),
                length_bytes: segment.length_bytes.saturating_sub(consumed),
                ..*segment
            };
            let mut entry = [0u8; 8];
            result = encode_entry(&SgProfile::AC97, index, &rest, &mut entry)
                .map_err(Ac97Error::from)
                .map(|_| memory.write(u64::from(self.list_physical), &entry));
        }
        if result.is_ok() {
            bus.write8(self.register(nabm::CR), RUN_CONTROL);
            self.dma = Some(dma);
        }
        self.stats.control_register_accesses += u64::from(bus.accesses());
        result
    }

    /// Forgets the engine without a register access (its registers went
    /// with the power): a later [`Self::start`] begins afresh.
    pub const fn forget(&mut self) {
        self.dma = None;
    }

    /// Stops the engine and resets the channel's registers.
    pub fn stop(&mut self, bus_master: &mut impl RegisterBus) {
        let mut bus = Counted::new(bus_master);
        bus.write8(self.register(nabm::CR), 0);
        bus.write8(self.register(nabm::CR), nabm::CR_RESET);
        self.dma = None;
        self.stats.control_register_accesses += u64::from(bus.accesses());
    }

    /// Pauses a running channel: clears the run bit (the engine stops
    /// fetching and keeps CIV and PICB, so [`Self::position`] stays where it
    /// was) and leaves the refill state as it is for [`Self::resume`].
    ///
    /// # Errors
    /// [`Ac97Error::NotRunning`].
    pub fn pause(&mut self, bus_master: &mut impl RegisterBus) -> Result<(), Ac97Error> {
        if self.dma.is_none() {
            return Err(Ac97Error::NotRunning);
        }
        let mut bus = Counted::new(bus_master);
        bus.write8(self.register(nabm::CR), RUN_CONTROL & !nabm::CR_RUN);
        self.stats.control_register_accesses += u64::from(bus.accesses());
        Ok(())
    }

    /// Resumes a paused channel where it stopped: sets the run bit again.
    ///
    /// # Errors
    /// [`Ac97Error::NotRunning`] when the channel was never started (or
    /// stopped since).
    pub fn resume(&mut self, bus_master: &mut impl RegisterBus) -> Result<(), Ac97Error> {
        if self.dma.is_none() {
            return Err(Ac97Error::NotRunning);
        }
        let mut bus = Counted::new(bus_master);
        bus.write8(self.register(nabm::CR), RUN_CONTROL);
        self.stats.control_register_accesses += u64::from(bus.accesses());
        Ok(())
    }

    /// The interrupt service for this channel: read CIV/LVI/SR in one
    /// access, acknowledge exactly the status bits seen, account the
    /// completed segments and refill the ring, restarting the engine if it
    /// halted. Call it for every running channel when the shared line fires;
    /// a report with `acknowledged == 0` means the interrupt was not this
    /// channel's.
    ///
    /// # Errors
    /// [`Ac97Error::NotRunning`]; [`Ac97Error::Dma`] when CIV contradicts the
    /// bookkeeping (the status has been acknowledged; the refill is not done).
    pub fn service_interrupt(
        &mut self,
        bus_master: &mut impl RegisterBus,
        memory: &mut impl DmaMemory,
        segments: &[Descriptor],
    ) -> Result<ServiceReport, Ac97Error> {
        let mut bus = Counted::new(bus_master);
        let result = self.service(&mut bus, memory, segments);
        self.stats.interrupt_register_accesses += u64::from(bus.accesses());
        result.map(|mut report| {
            report.register_accesses = bus.accesses();
            report
        })
    }

    fn service(
        &mut self,
        bus: &mut Counted<'_, impl RegisterBus>,
        memory: &mut impl DmaMemory,
        segments: &[Descriptor],
    ) -> Result<ServiceReport, Ac97Error> {
        let mut dma = self.dma.ok_or(Ac97Error::NotRunning)?;
        let seen = IndexStatus::from_dword(bus.read32(self.register(nabm::CIV)));
        let acknowledged = seen.status & nabm::SR_INTERRUPTS;
        if acknowledged == 0 {
            self.stats.not_mine += 1;
            return Ok(ServiceReport {
                acknowledged,
                restarted: false,
                completed_segments: dma.completed(),
                register_accesses: 0,
            });
        }
        // Acknowledge before refilling: a completion after this write raises
        // a fresh interrupt instead of being cleared unseen.
        bus.write16(self.register(nabm::SR), acknowledged);
        self.stats.interrupts += 1;
        if acknowledged & nabm::SR_FIFO_ERROR != 0 {
            self.stats.fifo_errors += 1;
        }
        let halted = seen.halted();
        let refill = dma.on_interrupt(seen.civ, halted)?;
        self.apply_refill(bus, memory, segments, &refill)?;
        self.dma = Some(dma);
        if refill.restart {
            self.stats.halts += 1;
            // A new LVI resumes a halted engine on ICH and on QEMU's model;
            // if this one stayed halted, setting the run bit again resumes
            // it at the next entry.
            if bus.read16(self.register(nabm::SR)) & nabm::SR_HALTED != 0 {
                bus.write8(self.register(nabm::CR), RUN_CONTROL);
                self.stats.run_bit_restarts += 1;
            }
        }
        Ok(ServiceReport {
            acknowledged,
            restarted: refill.restart,
            completed_segments: dma.completed(),
            register_accesses: 0,
        })
    }

    /// Linear byte position of the engine in the cyclic buffer of
    /// `buffer_size` bytes: CIV and PICB read as a consistent pair (CIV,
    /// PICB, CIV again; retried when CIV moved in between). Does not change
    /// the refill state, so it is safe beside the ISR under the same lock.
    ///
    /// # Errors
    /// [`Ac97Error::NotRunning`], [`Ac97Error::PositionUnstable`], or as
    /// [`RefillDma::linear_position`].
    pub fn position(
        &mut self,
        bus_master: &mut impl RegisterBus,
        segments: &[Descriptor],
        buffer_size: u32,
    ) -> Result<u64, Ac97Error> {
        self.read_position(bus_master, segments, buffer_size, false)
    }

    /// [`Self::position`] of a channel [`Self::pause`]d: clearing the run
    /// bit sets DCH (ICH documentation; QEMU's model), which here does not
    /// mean the last valid entry finished, so CIV and PICB are read as an
    /// entry in progress.
    ///
    /// # Errors
    /// As [`Self::position`].
    pub fn paused_position(
        &mut self,
        bus_master: &mut impl RegisterBus,
        segments: &[Descriptor],
        buffer_size: u32,
    ) -> Result<u64, Ac97Error> {
        self.read_position(bus_master, segments, buffer_size, true)
    }

    fn read_position(
        &mut self,
        bus_master: &mut impl RegisterBus,
        segments: &[Descriptor],
        buffer_size: u32,
        paused: bool,
    ) -> Result<u64, Ac97Error> {
        let dma = self.dma.ok_or(Ac97Error::NotRunning)?;
        let mut bus = Counted::new(bus_master);
        let mut result = Err(Ac97Error::PositionUnstable);
        for _ in 0..POSITION_ATTEMPTS {
            let first = IndexStatus::from_dword(bus.read32(self.register(nabm::CIV)));
            let samples_left = bus.read16(self.register(nabm::PICB));
            let civ_again = bus.read8(self.register(nabm::CIV)) % RING_SLOTS;
            if civ_again == first.civ {
                result = dma
                    .linear_position(
                        segments,
                        buffer_size,
                        first.civ,
                        first.halted() && !paused,
                        u32::from(samples_left) * 2,
                    )
                    .map_err(Ac97Error::from);
                break;
            }
        }
        self.stats.position_register_accesses += u64::from(bus.accesses());
        result
    }
}

#[cfg(test)]
mod tests;
