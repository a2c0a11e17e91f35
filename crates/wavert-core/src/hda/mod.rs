//! Intel High Definition Audio back-end over MMIO.
//!
//! Controller reset and bring-up, codec verbs through CORB/RIRB (or the immediate command registers), the
//! codec's widget walk, stream descriptors, the interrupt service routine
//! and the DMA position buffer, as a register-level driver over MMIO
//! ([`RegisterBus`] on BAR0).
//!
//! Sources of the facts (each named again where it is used):
//! - the HD Audio specification rev. 1.0a ("HDA spec" below): register map
//!   (section 3.3), BDL and position buffer (3.6), stream format (3.7),
//!   codec verbs and parameters (7.3);
//! - QEMU's model, `hw/audio/intel-hda.c` and `hw/audio/hda-codec.c` of the
//!   7.2 release the tests run against.
//!
//! Unlike the AC'97, the controller loops over its buffer descriptor list
//! by itself: a stream is programmed once (format, cyclic buffer length,
//! last valid index, BDL address, stream tag) and interrupts only mark the
//! entries whose IOC bit is set. The ISR reads INTSTS once and writes each
//! interrupting stream's status byte once: two accesses for one stream.
//!
//! The submodules:
//! - [`codec`]: verbs, parameters, the widget walk and stream formats;
//! - [`stream`]: one stream descriptor, its position and the ISR;
//! - [`sim`]: a register-level model of QEMU's controller and codec.

pub mod codec;
pub mod sim;
pub mod stream;

use crate::bus::Counted;
pub use crate::bus::{DmaMemory, DmaMemoryRead, RegisterBus};

/// Controller register offsets in BAR0 and their bits (HDA spec 3.3).
pub mod reg {
    /// Global capabilities (word): streams, 64-bit addressing (3.3.2).
    pub const GCAP: u16 = 0x00;
    /// Global control (dword): CRST bit 0 (3.3.7).
    pub const GCTL: u16 = 0x08;
    /// Wake enable (word) (3.3.8).
    pub const WAKEEN: u16 = 0x0C;
    /// State change status (word): one bit per codec that requested an
    /// address after reset; write one to clear (3.3.9).
    pub const STATESTS: u16 = 0x0E;
    /// Interrupt control (dword): GIE bit 31, CIE bit 30, SIE bits per
    /// stream descriptor (3.3.14).
    pub const INTCTL: u16 = 0x20;
    /// Interrupt status (dword): GIS bit 31, CIS bit 30, SIS per stream
    /// descriptor (3.3.15).
    pub const INTSTS: u16 = 0x24;
    /// Wall clock counter (dword), 24 MHz (3.3.16).
    pub const WALCLK: u16 = 0x30;
    /// CORB base, lower/upper dword (3.3.18, 3.3.19).
    pub const CORBLBASE: u16 = 0x40;
    /// CORB base, upper dword.
    pub const CORBUBASE: u16 = 0x44;
    /// CORB write pointer (word) (3.3.20).
    pub const CORBWP: u16 = 0x48;
    /// CORB read pointer (word), reset bit 15 (3.3.21).
    pub const CORBRP: u16 = 0x4A;
    /// CORB control (byte): run bit 1 (3.3.22).
    pub const CORBCTL: u16 = 0x4C;
    /// CORB size (byte): capability bits 7:4, selection bits 1:0 (3.3.24).
    pub const CORBSIZE: u16 = 0x4E;
    /// RIRB base, lower dword (3.3.25).
    pub const RIRBLBASE: u16 = 0x50;
    /// RIRB base, upper dword (3.3.26).
    pub const RIRBUBASE: u16 = 0x54;
    /// RIRB write pointer (word), reset bit 15 (3.3.27).
    pub const RIRBWP: u16 = 0x58;
    /// Responses per RIRB interrupt (word) (3.3.28).
    pub const RINTCNT: u16 = 0x5A;
    /// RIRB control (byte): interrupt bit 0, DMA enable bit 1 (3.3.29).
    pub const RIRBCTL: u16 = 0x5C;
    /// RIRB status (byte): response interrupt bit 0, overrun bit 2,
    /// write one to clear (3.3.30).
    pub const RIRBSTS: u16 = 0x5D;
    /// RIRB size (byte), as CORBSIZE (3.3.31).
    pub const RIRBSIZE: u16 = 0x5E;
    /// Immediate command output (dword) (3.4.1).
    pub const ICW: u16 = 0x60;
    /// Immediate response input (dword) (3.4.2).
    pub const IRR: u16 = 0x64;
    /// Immediate command status (word): busy bit 0, valid bit 1 (3.4.3).
    pub const ICS: u16 = 0x68;
    /// DMA position buffer base, lower dword: enable bit 0 (3.3.32).
    pub const DPLBASE: u16 = 0x70;
    /// DMA position buffer base, upper dword (3.3.33).
    pub const DPUBASE: u16 = 0x74;

    /// First stream descriptor's registers (3.3.35).
    pub const SD_BASE: u16 = 0x80;
    /// Bytes between stream descriptors.
    pub const SD_STRIDE: u16 = 0x20;
    /// Stream descriptor: control, 3 bytes (3.3.35).
    pub const SD_CTL: u16 = 0x00;
    /// Stream descriptor: control byte 2 (stream tag in bits 7:4).
    pub const SD_CTL_TAG_BYTE: u16 = 0x02;
    /// Stream descriptor: status byte (3.3.36).
    pub const SD_STS: u16 = 0x03;
    /// Stream descriptor: link position in buffer (dword) (3.3.37).
    pub const SD_LPIB: u16 = 0x04;
    /// Stream descriptor: cyclic buffer length (dword) (3.3.38).
    pub const SD_CBL: u16 = 0x08;
    /// Stream descriptor: last valid index (word) (3.3.39).
    pub const SD_LVI: u16 = 0x0C;
    /// Stream descriptor: FIFO size in bytes (word) (3.3.41).
    pub const SD_FIFOS: u16 = 0x10;
    /// Stream descriptor: format (word) (3.3.42).
    pub const SD_FMT: u16 = 0x12;
    /// Stream descriptor: BDL pointer, lower dword (3.3.43).
    pub const SD_BDPL: u16 = 0x18;
    /// Stream descriptor: BDL pointer, upper dword (3.3.44).
    pub const SD_BDPU: u16 = 0x1C;

    /// GCTL: controller reset, active low (set = running).
    pub const GCTL_CRST: u32 = 1 << 0;
    /// GCAP: 64-bit addresses supported.
    pub const GCAP_64OK: u16 = 1 << 0;
    /// INTCTL: global interrupt enable.
    pub const INTCTL_GIE: u32 = 1 << 31;
    /// INTCTL / INTSTS: controller interrupt (RIRB, wake).
    pub const INT_CONTROLLER: u32 = 1 << 30;
    /// INTSTS: any interrupt pending.
    pub const INTSTS_GIS: u32 = 1 << 31;
    /// INTSTS: the stream descriptor bits (at most 30 descriptors).
    pub const INT_STREAMS: u32 = (1 << 30) - 1;
    /// CORBRP / RIRBWP: pointer reset.
    pub const POINTER_RESET: u16 = 1 << 15;
    /// CORBCTL: CORB DMA run.
    pub const CORBCTL_RUN: u8 = 1 << 1;
    /// RIRBCTL: interrupt after RINTCNT responses.
    pub const RIRBCTL_RINTCTL: u8 = 1 << 0;
    /// RIRBCTL: RIRB DMA enable.
    pub const RIRBCTL_DMAEN: u8 = 1 << 1;
    /// RIRBSTS: response interrupt flag.
    pub const RIRBSTS_RINTFL: u8 = 1 << 0;
    /// RIRBSTS: response overrun.
    pub const RIRBSTS_OVERRUN: u8 = 1 << 2;
    /// ICS: immediate command busy.
    pub const ICS_BUSY: u16 = 1 << 0;
    /// ICS: immediate result valid (write one to clear).
    pub const ICS_VALID: u16 = 1 << 1;
    /// DPLBASE: DMA position buffer enable.
    pub const DPLBASE_ENABLE: u32 = 1 << 0;

    /// `SDnCTL`: stream reset.
    pub const SD_CTL_SRST: u8 = 1 << 0;
    /// `SDnCTL`: stream run.
    pub const SD_CTL_RUN: u8 = 1 << 1;
    /// `SDnCTL`: interrupt on completion enable.
    pub const SD_CTL_IOCE: u8 = 1 << 2;
    /// `SDnCTL`: FIFO error interrupt enable.
    pub const SD_CTL_FEIE: u8 = 1 << 3;
    /// `SDnCTL`: descriptor error interrupt enable.
    pub const SD_CTL_DEIE: u8 = 1 << 4;
    /// `SDnSTS`: buffer completion interrupt status (write one to clear).
    pub const SD_STS_BCIS: u8 = 1 << 2;
    /// `SDnSTS`: FIFO error (write one to clear).
    pub const SD_STS_FIFOE: u8 = 1 << 3;
    /// `SDnSTS`: descriptor error (write one to clear).
    pub const SD_STS_DESE: u8 = 1 << 4;
    /// `SDnSTS`: the write-one-to-clear bits.
    pub const SD_STS_INTERRUPTS: u8 = SD_STS_BCIS | SD_STS_FIFOE | SD_STS_DESE;

    /// The register block of stream descriptor `index`.
    #[must_use]
    pub const fn stream_base(index: u8) -> u16 {
        SD_BASE + SD_STRIDE * index as u16
    }
}

/// Why the back-end refused or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HdaError {
    /// GCTL.CRST did not read back the value written.
    ResetTimeout {
        /// The value CRST was being driven to.
        leaving_reset: bool,
    },
    /// No codec answered STATESTS after reset.
    NoCodec,
    /// A ring or list address not aligned as the controller requires, or
    /// above 4 GiB on a controller without 64-bit addressing.
    BadAddress(u64),
    /// CORB or RIRB DMA did not stop or start.
    RingTimeout,
    /// A verb got no response in time.
    VerbTimeout {
        /// The verb.
        verb: u32,
    },
    /// The codec has no audio function group.
    NoAudioFunction,
    /// No output converter reachable from an output pin (render) or input
    /// converter fed by an input pin (capture).
    NoPath,
    /// A stream format the controller's format word cannot say, or the
    /// converter does not list.
    UnsupportedFormat,
    /// The controller has no stream descriptor of the asked direction and
    /// index.
    NoStreamDescriptor,
    /// A stream tag outside 1..=15.
    BadStreamTag(u8),
    /// A cyclic buffer length of 0, or a BDL of 0 or more than 256 entries.
    BadBufferGeometry,
    /// The stream reset bit did not read back the value written.
    StreamResetTimeout,
    /// The stream is not programmed or not running.
    NotRunning,
    /// A position read beyond the cyclic buffer.
    PositionOutOfRange {
        /// The value read.
        lpib: u32,
    },
}

/// Polls of a self-clearing or self-setting bit, one microsecond apart.
const RESET_POLLS: u32 = 1_000;
/// Polls for a verb's response, one microsecond apart.
const VERB_POLLS: u32 = 1_000;
/// Time codecs get after CRST is released to request an address: the spec
/// asks for at least 521 us (HDA spec 4.3, "25 frames").
const CODEC_WAKE_US: u32 = 1_000;

/// What GCAP says about the controller (HDA spec 3.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Output stream descriptors (bits 15:12).
    pub output_streams: u8,
    /// Input stream descriptors (bits 11:8).
    pub input_streams: u8,
    /// Bidirectional stream descriptors (bits 7:3).
    pub bidirectional_streams: u8,
    /// 64-bit addressing (bit 0).
    pub addresses_64bit: bool,
}

impl Capabilities {
    /// Decodes GCAP.
    #[must_use]
    pub const fn from_gcap(gcap: u16) -> Self {
        // Each field is masked to its width, so the casts keep every bit.
        Self {
            output_streams: ((gcap >> 12) & 0xF) as u8,
            input_streams: ((gcap >> 8) & 0xF) as u8,
            bidirectional_streams: ((gcap >> 3) & 0x1F) as u8,
            addresses_64bit: gcap & reg::GCAP_64OK != 0,
        }
    }

    /// Stream descriptor index of the `n`th output (input descriptors come
    /// first, then output, then bidirectional: HDA spec 3.3.35).
    #[must_use]
    pub const fn output_descriptor(&self, n: u8) -> Option<u8> {
        if n < self.output_streams {
            Some(self.input_streams + n)
        } else {
            None
        }
    }

    /// Stream descriptor index of the `n`th input.
    #[must_use]
    pub const fn input_descriptor(&self, n: u8) -> Option<u8> {
        if n < self.input_streams {
            Some(n)
        } else {
            None
        }
    }

    /// The highest physical address the controller reaches.
    #[must_use]
    pub const fn max_address(&self) -> u64 {
        if self.addresses_64bit {
            u64::MAX
        } else {
            0xFFFF_FFFF
        }
    }
}

/// How verbs reach the codecs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Command ring (CORB) and response ring (RIRB) in memory (HDA spec
    /// 4.4.1, 4.4.2).
    Rings,
    /// The immediate command registers ICW/IRR/ICS (HDA spec 3.4), the
    /// fallback when the rings do not answer.
    Immediate,
}

/// Where the command rings live: CORB 1 KiB and RIRB 2 KiB (256 entries
/// each), both 128-byte aligned (HDA spec 3.3.18, 3.3.25).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingMemory {
    /// CORB physical address.
    pub corb: u64,
    /// RIRB physical address.
    pub rirb: u64,
}

/// Bytes the CORB needs at its largest (256 entries of 4 bytes).
pub const CORB_BYTES: u32 = 1024;
/// Bytes the RIRB needs at its largest (256 entries of 8 bytes).
pub const RIRB_BYTES: u32 = 2048;
/// Alignment of the rings, the BDL and the position buffer.
pub const DMA_ALIGNMENT: u64 = 128;

/// Counters the controller keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControllerStats {
    /// Verbs sent.
    pub verbs: u64,
    /// Responses marked unsolicited and skipped.
    pub unsolicited_skipped: u64,
    /// Times the ring transport failed and the immediate one took over.
    pub fallbacks_to_immediate: u64,
    /// Interrupts serviced that were this controller's.
    pub interrupts: u64,
    /// Interrupts with no status bit set (shared line).
    pub not_mine: u64,
    /// Register accesses made by [`Controller::service_interrupt`].
    pub interrupt_register_accesses: u64,
}

/// What one interrupt service found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterruptReport {
    /// Stream descriptor bits acknowledged (SIS bits of INTSTS).
    pub streams: u32,
    /// The controller interrupt (RIRB) was acknowledged too.
    pub controller: bool,
    /// Register accesses this service made.
    pub register_accesses: u32,
}

impl InterruptReport {
    /// Whether the interrupt was this controller's.
    #[must_use]
    pub const fn claimed(&self) -> bool {
        self.streams != 0 || self.controller
    }
}

/// Ring sizes the CORBSIZE/RIRBSIZE selection field encodes (3.3.24).
const fn ring_entries(selection: u8) -> u16 {
    match selection & 0x3 {
        0 => 2,
        1 => 16,
        _ => 256,
    }
}

/// The largest ring size a size register's capability bits offer, as its
/// selection code, and whether the register needs writing (a controller
/// offering one size has a read-only register: QEMU's does, 0x42).
const fn pick_ring_size(register: u8) -> (u8, bool) {
    let caps = register >> 4;
    let code = if caps & 0x4 != 0 {
        2
    } else if caps & 0x2 != 0 {
        1
    } else {
        0
    };
    let offered = (caps & 0x7).count_ones();
    (code, offered > 1)
}

/// The controller: reset, capabilities, the verb transport and the ISR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Controller {
    caps: Capabilities,
    codec_mask: u16,
    transport: Transport,
    rings: RingMemory,
    corb_entries: u16,
    rirb_entries: u16,
    corb_write: u16,
    rirb_read: u16,
    stats: ControllerStats,
}

impl Controller {
    /// Resets the controller (GCTL.CRST low, then high), waits for the
    /// codecs to request addresses, reads STATESTS and GCAP, and sets up
    /// the verb transport: the rings when `prefer` is [`Transport::Rings`]
    /// (falling back to the immediate registers if the first verb gets no
    /// answer through them), else the immediate registers.
    ///
    /// `stall_us` busy-waits the given microseconds.
    ///
    /// # Errors
    /// [`HdaError::ResetTimeout`], [`HdaError::NoCodec`],
    /// [`HdaError::BadAddress`], [`HdaError::RingTimeout`], or a verb
    /// failing on both transports.
    pub fn bring_up<B, M>(
        bus: &mut B,
        memory: &mut M,
        rings: RingMemory,
        prefer: Transport,
        stall_us: &mut impl FnMut(u32),
    ) -> Result<Self, HdaError>
    where
        B: RegisterBus,
        M: DmaMemory + DmaMemoryRead,
    {
        // Reset: CRST low, wait for it to read low, hold, release, wait for
        // it to read high (HDA spec 3.3.7, 4.2.2).
        let gctl = bus.read32(reg::GCTL);
        bus.write32(reg::GCTL, gctl & !reg::GCTL_CRST);
        poll(stall_us, || bus.read32(reg::GCTL) & reg::GCTL_CRST == 0)
            .then_some(())
            .ok_or(HdaError::ResetTimeout {
                leaving_reset: false,
            })?;
        stall_us(100);
        bus.write32(reg::GCTL, (gctl & !reg::GCTL_CRST) | reg::GCTL_CRST);
        poll(stall_us, || bus.read32(reg::GCTL) & reg::GCTL_CRST != 0)
            .then_some(())
            .ok_or(HdaError::ResetTimeout {
                leaving_reset: true,
            })?;
        stall_us(CODEC_WAKE_US);
        let codec_mask = bus.read16(reg::STATESTS) & 0x7FFF;
        // Acknowledge the state change so a later wake is seen afresh.
        bus.write16(reg::STATESTS, codec_mask);
        if codec_mask == 0 {
            return Err(HdaError::NoCodec);
        }
        let caps = Capabilities::from_gcap(bus.read16(reg::GCAP));
        for address in [rings.corb, rings.rirb] {
            if address % DMA_ALIGNMENT != 0 || address > caps.max_address() {
                return Err(HdaError::BadAddress(address));
            }
        }
        // Streams and the controller interrupt stay off until a stream runs.
        bus.write32(reg::INTCTL, 0);
        let mut controller = Self {
            caps,
            codec_mask,
            transport: prefer,
            rings,
            corb_entries: 256,
            rirb_entries: 256,
            corb_write: 0,
            rirb_read: 0,
            stats: ControllerStats::default(),
        };
        if prefer == Transport::Rings {
            controller.start_rings(bus, stall_us)?;
            let probe =
                codec::Verb::get_parameter(controller.first_codec(), 0, codec::param::VENDOR_ID);
            if controller.command(bus, memory, probe, stall_us).is_err() {
                Self::stop_rings(bus, stall_us);
                controller.transport = Transport::Immediate;
                controller.stats.fallbacks_to_immediate += 1;
            }
        }
        Ok(controller)
    }

    /// Stops CORB and RIRB DMA and waits for the run bit to clear.
    fn stop_rings(bus: &mut impl RegisterBus, stall_us: &mut impl FnMut(u32)) -> bool {
        bus.write8(reg::CORBCTL, 0);
        bus.write8(reg::RIRBCTL, 0);
        poll(stall_us, || bus.read8(reg::CORBCTL) & reg::CORBCTL_RUN == 0)
    }

    /// CORB and RIRB setup (HDA spec 4.4.1.3, 4.4.2).
    fn start_rings(
        &mut self,
        bus: &mut impl RegisterBus,
        stall_us: &mut impl FnMut(u32),
    ) -> Result<(), HdaError> {
        if !Self::stop_rings(bus, stall_us) {
            return Err(HdaError::RingTimeout);
        }
        let (corb_code, corb_writable) = pick_ring_size(bus.read8(reg::CORBSIZE));
        if corb_writable {
            bus.write8(reg::CORBSIZE, corb_code);
        }
        self.corb_entries = ring_entries(bus.read8(reg::CORBSIZE));
        let (rirb_code, rirb_writable) = pick_ring_size(bus.read8(reg::RIRBSIZE));
        if rirb_writable {
            bus.write8(reg::RIRBSIZE, rirb_code);
        }
        self.rirb_entries = ring_entries(bus.read8(reg::RIRBSIZE));
        let (corb_low, corb_high) = split_address(self.rings.corb);
        bus.write32(reg::CORBLBASE, corb_low);
        bus.write32(reg::CORBUBASE, corb_high);
        // Read pointer reset: write the bit, see it set, clear it, see it
        // clear (HDA spec 3.3.21). Some controllers never show it set; the
        // clear phase is the one that must complete.
        bus.write16(reg::CORBRP, reg::POINTER_RESET);
        let _ = poll(stall_us, || {
            bus.read16(reg::CORBRP) & reg::POINTER_RESET != 0
        });
        bus.write16(reg::CORBRP, 0);
        if !poll(stall_us, || {
            bus.read16(reg::CORBRP) & reg::POINTER_RESET == 0
        }) {
            return Err(HdaError::RingTimeout);
        }
        bus.write16(reg::CORBWP, 0);
        self.corb_write = 0;
        let (rirb_low, rirb_high) = split_address(self.rings.rirb);
        bus.write32(reg::RIRBLBASE, rirb_low);
        bus.write32(reg::RIRBUBASE, rirb_high);
        bus.write16(reg::RIRBWP, reg::POINTER_RESET);
        self.rirb_read = 0;
        // One response per "interrupt": QEMU stops fetching verbs once
        // RINTCNT responses are out until RIRBSTS.RINTFL is cleared, so each
        // response is acknowledged before the next verb (intel-hda.c
        // intel_hda_corb_run / intel_hda_set_rirb_sts). The interrupt flag
        // only reaches the line when INTCTL.CIE is set, which it is not.
        bus.write16(reg::RINTCNT, 1);
        bus.write8(reg::RIRBCTL, reg::RIRBCTL_DMAEN | reg::RIRBCTL_RINTCTL);
        bus.write8(reg::CORBCTL, reg::CORBCTL_RUN);
        if !poll(stall_us, || bus.read8(reg::CORBCTL) & reg::CORBCTL_RUN != 0) {
            return Err(HdaError::RingTimeout);
        }
        Ok(())
    }

    /// Sends one verb and waits for its (solicited) response.
    ///
    /// # Errors
    /// [`HdaError::VerbTimeout`].
    pub fn command<B, M>(
        &mut self,
        bus: &mut B,
        memory: &mut M,
        verb: codec::Verb,
        stall_us: &mut impl FnMut(u32),
    ) -> Result<u32, HdaError>
    where
        B: RegisterBus,
        M: DmaMemory + DmaMemoryRead,
    {
        self.stats.verbs += 1;
        match self.transport {
            Transport::Rings => self.ring_command(bus, memory, verb.encode(), stall_us),
            Transport::Immediate => immediate_command(bus, verb.encode(), stall_us),
        }
    }

    fn ring_command<B, M>(
        &mut self,
        bus: &mut B,
        memory: &mut M,
        verb: u32,
        stall_us: &mut impl FnMut(u32),
    ) -> Result<u32, HdaError>
    where
        B: RegisterBus,
        M: DmaMemory + DmaMemoryRead,
    {
        let slot = (self.corb_write + 1) % self.corb_entries.max(1);
        memory.write(self.rings.corb + u64::from(slot) * 4, &verb.to_le_bytes());
        bus.write16(reg::CORBWP, slot);
        self.corb_write = slot;
        for _ in 0..VERB_POLLS {
            let written = bus.read16(reg::RIRBWP) & 0xFF;
            while self.rirb_read != written {
                let next = (self.rirb_read + 1) % self.rirb_entries.max(1);
                let mut entry = [0u8; 8];
                memory.read(self.rings.rirb + u64::from(next) * 8, &mut entry);
                self.rirb_read = next;
                let [r0, r1, r2, r3, e0, ..] = entry;
                // Acknowledge each response so the controller fetches on.
                bus.write8(reg::RIRBSTS, reg::RIRBSTS_RINTFL | reg::RIRBSTS_OVERRUN);
                // Response extended bit 4: unsolicited (HDA spec 4.4.2.1).
                if e0 & 0x10 != 0 {
                    self.stats.unsolicited_skipped += 1;
                    continue;
                }
                return Ok(u32::from_le_bytes([r0, r1, r2, r3]));
            }
            stall_us(1);
        }
        Err(HdaError::VerbTimeout { verb })
    }

    /// The controller's capabilities.
    #[must_use]
    pub const fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// Codecs that answered after reset (STATESTS bits).
    #[must_use]
    pub const fn codec_mask(&self) -> u16 {
        self.codec_mask
    }

    /// The lowest codec address present.
    #[must_use]
    pub const fn first_codec(&self) -> u8 {
        // At most 15: STATESTS has 15 bits and the mask is non-zero.
        #[expect(clippy::cast_possible_truncation, reason = "0..=16 fits a byte")]
        let first = self.codec_mask.trailing_zeros() as u8;
        first
    }

    /// The transport in use.
    #[must_use]
    pub const fn transport(&self) -> Transport {
        self.transport
    }

    /// The counters.
    #[must_use]
    pub const fn stats(&self) -> ControllerStats {
        self.stats
    }

    /// Points the controller at the DMA position buffer (128-byte aligned,
    /// 8 bytes per stream descriptor) and enables it (HDA spec 3.3.32, 3.6.1).
    ///
    /// # Errors
    /// [`HdaError::BadAddress`].
    pub fn enable_position_buffer(
        &self,
        bus: &mut impl RegisterBus,
        physical: u64,
    ) -> Result<(), HdaError> {
        if physical % DMA_ALIGNMENT != 0 || physical > self.caps.max_address() {
            return Err(HdaError::BadAddress(physical));
        }
        let (low, high) = split_address(physical);
        bus.write32(reg::DPUBASE, high);
        bus.write32(reg::DPLBASE, low | reg::DPLBASE_ENABLE);
        Ok(())
    }

    /// Turns the position buffer off.
    pub fn disable_position_buffer(&self, bus: &mut impl RegisterBus) {
        bus.write32(reg::DPLBASE, 0);
    }

    /// Enables (or disables) the interrupt of stream descriptor `index`,
    /// with the global enable on whenever any stream's is.
    pub fn set_stream_interrupt(&self, bus: &mut impl RegisterBus, index: u8, enabled: bool) {
        let bit = 1u32.checked_shl(u32::from(index)).unwrap_or(0) & reg::INT_STREAMS;
        let current = bus.read32(reg::INTCTL);
        let streams = if enabled {
            (current | bit) & reg::INT_STREAMS
        } else {
            current & reg::INT_STREAMS & !bit
        };
        let global = if streams == 0 { 0 } else { reg::INTCTL_GIE };
        bus.write32(reg::INTCTL, streams | global);
    }

    /// The ISR: one read of INTSTS, then one status-byte write per
    /// interrupting stream descriptor (acknowledging BCIS, FIFOE and DESE
    /// at once; their difference is not needed to queue the DPC), and one
    /// RIRBSTS write if the controller interrupt is set. A report whose
    /// [`InterruptReport::claimed`] is false means the line was another
    /// device's; all ones means the device is gone (surprise removal) and is
    /// not claimed either.
    pub fn service_interrupt(&mut self, bus: &mut impl RegisterBus) -> InterruptReport {
        let report = acknowledge_interrupt(bus);
        if report.claimed() {
            self.stats.interrupts += 1;
        } else {
            self.stats.not_mine += 1;
        }
        self.stats.interrupt_register_accesses += u64::from(report.register_accesses);
        report
    }

    /// The wall clock counter (24 MHz, wrapping at 32 bits: HDA spec
    /// 3.3.16).
    pub fn wall_clock(bus: &mut impl RegisterBus) -> u32 {
        bus.read32(reg::WALCLK)
    }
}

/// The interrupt service itself, without a [`Controller`].
///
/// What [`Controller::service_interrupt`] does, for an ISR that cannot reach the
/// controller's verb state (it lives under a lock the ISR may not take).
/// One read of INTSTS, one status-byte write per interrupting stream
/// descriptor, one RIRBSTS write if the controller interrupt is set.
pub fn acknowledge_interrupt(bus: &mut impl RegisterBus) -> InterruptReport {
    let mut counted = Counted::new(bus);
    let status = counted.read32(reg::INTSTS);
    let mut report = InterruptReport::default();
    if status != u32::MAX {
        report.streams = status & reg::INT_STREAMS;
        let mut pending = report.streams;
        while pending != 0 {
            // trailing_zeros of a non-zero u32 is below 30 here.
            #[expect(clippy::cast_possible_truncation, reason = "below 30")]
            let index = pending.trailing_zeros() as u8;
            pending &= pending - 1;
            counted.write8(
                reg::stream_base(index) + reg::SD_STS,
                reg::SD_STS_INTERRUPTS,
            );
        }
        if status & reg::INT_CONTROLLER != 0 {
            counted.write8(reg::RIRBSTS, reg::RIRBSTS_RINTFL | reg::RIRBSTS_OVERRUN);
            report.controller = true;
        }
    }
    report.register_accesses = counted.accesses();
    report
}

/// The wall clock's rate as the numerator and denominator WaveRT's clock
/// register reports (ticks per second = numerator / denominator).
pub const WALL_CLOCK_HZ: (u32, u32) = (24_000_000, 1);
/// Width in bits of the wall clock and of each position buffer entry.
pub const REGISTER_WIDTH_BITS: u32 = 32;

/// The hardware latency figures WaveRT's `KSRTAUDIO_HWLATENCY` reports,
/// from what the hardware says rather than estimates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwLatency {
    /// The stream descriptor's FIFO in bytes (`SDnFIFOS`, HDA spec 3.3.41).
    pub fifo_bytes: u32,
    /// Chipset delay in 100 ns units: the controller states none beyond
    /// its FIFO, so 0.
    pub chipset_delay_hns: u32,
    /// Codec delay in 100 ns units: the path's widget delays (sample
    /// periods, audio widget capabilities bits 19:16, HDA spec 7.3.4.6)
    /// at the stream's rate, rounded up.
    pub codec_delay_hns: u32,
}

impl HwLatency {
    /// The figures for a stream whose descriptor reported `fifo_bytes` and
    /// whose path delays `delay_samples` sample periods at `rate` Hz.
    #[must_use]
    pub fn new(fifo_bytes: u16, delay_samples: u32, rate: u32) -> Self {
        let rate = u64::from(rate.max(1));
        let hns = (u64::from(delay_samples) * 10_000_000).div_ceil(rate);
        Self {
            fifo_bytes: u32::from(fifo_bytes),
            chipset_delay_hns: 0,
            codec_delay_hns: u32::try_from(hns).unwrap_or(u32::MAX),
        }
    }
}

/// Immediate command (HDA spec 3.4): wait for not-busy, write ICW, set busy
/// (clearing a stale valid), wait for valid, read IRR, clear valid.
fn immediate_command(
    bus: &mut impl RegisterBus,
    verb: u32,
    stall_us: &mut impl FnMut(u32),
) -> Result<u32, HdaError> {
    if !poll(stall_us, || bus.read16(reg::ICS) & reg::ICS_BUSY == 0) {
        return Err(HdaError::VerbTimeout { verb });
    }
    bus.write32(reg::ICW, verb);
    bus.write16(reg::ICS, reg::ICS_BUSY | reg::ICS_VALID);
    if !poll(stall_us, || {
        bus.read16(reg::ICS) & (reg::ICS_VALID | reg::ICS_BUSY) == reg::ICS_VALID
    }) {
        return Err(HdaError::VerbTimeout { verb });
    }
    let response = bus.read32(reg::IRR);
    bus.write16(reg::ICS, reg::ICS_VALID);
    Ok(response)
}

/// Polls `done` up to [`RESET_POLLS`] times, a microsecond apart.
fn poll(stall_us: &mut impl FnMut(u32), mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..RESET_POLLS {
        if done() {
            return true;
        }
        stall_us(1);
    }
    done()
}

/// A 64-bit address as the (lower, upper) dword pair the base registers
/// take.
#[must_use]
pub const fn split_address(address: u64) -> (u32, u32) {
    #[expect(clippy::cast_possible_truncation, reason = "the low half, on purpose")]
    let low = address as u32;
    let high = (address >> 32) as u32;
    (low, high)
}

#[cfg(test)]
mod tests;
