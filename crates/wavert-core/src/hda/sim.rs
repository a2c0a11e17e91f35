//! A register-level model of QEMU's Intel HD Audio controller and its
//! `hda-duplex` / `hda-output` codec, for unit tests of [`super`] and for
//! emulators.
//!
//! It follows QEMU's `hw/audio/intel-hda.c` and `hda-codec.c` (7.2) where
//! they decide behaviour: GCAP 0x4401 (four input and four output stream
//! descriptors, 64-bit), CORB/RIRB sizes fixed at 256, verbs fetched only
//! while fewer than RINTCNT responses await acknowledgement in RIRBSTS, the
//! BDL read when RUN goes to 1, LPIB wrapping at CBL, the position buffer
//! written by descriptor index, BCIS set when an IOC entry completes,
//! INTSTS derived from the status bits, WALCLK at 24 MHz. Audio data is not
//! modelled: [`SimHda::transfer`] reports each piece it moves as (physical
//! address, bytes).

use super::codec::{id, param, Verb};
use super::{reg, RegisterBus};
use crate::bus::SharedMemory;

/// Bytes of memory the model holds (rings, lists, position buffer).
pub const SIM_MEMORY_BYTES: usize = 16 * 1024;

/// Memory shared by driver and model: [`SIM_MEMORY_BYTES`] from a base
/// ([`SharedMemory`]).
pub type SimMemory = SharedMemory<SIM_MEMORY_BYTES>;

/// Which of QEMU's codecs is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecModel {
    /// `hda-duplex`: DAC 2 -> line-out pin 3, line-in pin 5 -> ADC 4.
    Duplex,
    /// `hda-output`: DAC 2 -> line-out pin 3.
    Output,
}

/// One converter's state as the verbs left it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConverterState {
    /// Stream tag (bits 7:4 of the stream/channel verb).
    pub stream_tag: u8,
    /// Lowest channel.
    pub channel: u8,
    /// Format word.
    pub format: u16,
    /// Left gain (7 bits) and mute (bit 7).
    pub amp_left: u8,
    /// Right gain and mute.
    pub amp_right: u8,
}

/// QEMU's amplifier: 0x4A steps of 1 dB, 0 dB at the top, mute capable
/// (hda-codec-common.h, `QEMU_HDA_AMP_CAPS` with the mixer on).
pub const SIM_AMP_CAPS: u32 = (1 << 31) | (3 << 16) | (0x4A << 8) | 0x4A;
/// QEMU's PCM support: 16-bit, 16 to 96 kHz (`QEMU_HDA_PCM_FORMATS`).
pub const SIM_PCM: u32 = (1 << 17) | 0x1FC;

const DAC: u8 = 2;
const OUT_PIN: u8 = 3;
const ADC: u8 = 4;
const IN_PIN: u8 = 5;

/// The codec: QEMU's node table as data, and the state verbs change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimCodec {
    model: CodecModel,
    /// Output converter state.
    pub dac: ConverterState,
    /// Input converter state.
    pub adc: ConverterState,
    /// Delay field (bits 19:16) reported in the converters' capabilities;
    /// QEMU reports 0, tests set it to see it reach the latency figure.
    pub converter_delay: u8,
    /// Verbs answered.
    pub verbs: u32,
    /// Verbs not understood (answered 0, as QEMU does).
    pub unknown_verbs: u32,
}

impl SimCodec {
    const fn new(model: CodecModel) -> Self {
        let unity = 0x4A;
        Self {
            model,
            dac: ConverterState {
                stream_tag: 0,
                channel: 0,
                format: 0,
                amp_left: unity,
                amp_right: unity,
            },
            adc: ConverterState {
                stream_tag: 0,
                channel: 0,
                format: 0,
                amp_left: 0,
                amp_right: 0,
            },
            converter_delay: 0,
            verbs: 0,
            unknown_verbs: 0,
        }
    }

    const fn last_node(&self) -> u8 {
        match self.model {
            CodecModel::Duplex => IN_PIN,
            CodecModel::Output => OUT_PIN,
        }
    }

    fn parameter(&self, node: u8, id: u8) -> Option<u32> {
        let vendor = match self.model {
            CodecModel::Duplex => 0x1AF4_0022,
            CodecModel::Output => 0x1AF4_0012,
        };
        let delay = u32::from(self.converter_delay & 0xF) << 16;
        // Widget capability words: type << 20 | flags (hda-codec-common.h).
        let dac_caps = delay | (1 << 4) | (1 << 3) | (1 << 2) | 1;
        let adc_caps = (1 << 20) | delay | (1 << 8) | (1 << 4) | (1 << 3) | (1 << 1) | 1;
        let out_pin_caps = (4 << 20) | (1 << 8) | 1;
        let in_pin_caps = (4 << 20) | 1;
        let count = u32::from(self.last_node() - 1);
        match (node, id) {
            (0, param::VENDOR_ID) => Some(vendor),
            (0, param::NODE_COUNT) => Some(0x0001_0001),
            (1, param::NODE_COUNT) => Some(0x0002_0000 | count),
            (1 | DAC | ADC, param::PCM) => Some(SIM_PCM),
            (1, param::FUNCTION_TYPE)
            | (1 | DAC | ADC, param::STREAM_FORMATS)
            | (OUT_PIN | ADC, param::CONNECTION_LIST_LENGTH) => Some(1),
            (1 | OUT_PIN | IN_PIN, param::AMP_IN_CAP | param::AMP_OUT_CAP)
            | (DAC, param::AMP_IN_CAP)
            | (ADC, param::AMP_OUT_CAP) => Some(0),
            (DAC, param::AUDIO_WIDGET_CAP) => Some(dac_caps),
            (DAC, param::AMP_OUT_CAP) | (ADC, param::AMP_IN_CAP) => Some(SIM_AMP_CAPS),
            (OUT_PIN, param::AUDIO_WIDGET_CAP) => Some(out_pin_caps),
            (OUT_PIN, param::PIN_CAP) => Some(1 << 4),
            (ADC, param::AUDIO_WIDGET_CAP) => Some(adc_caps),
            (IN_PIN, param::AUDIO_WIDGET_CAP) => Some(in_pin_caps),
            (IN_PIN, param::PIN_CAP) => Some(1 << 5),
            _ => None,
        }
    }

    /// Answers one verb addressed to this codec.
    pub fn command(&mut self, node: u8, payload: u32) -> u32 {
        self.verbs = self.verbs.saturating_add(1);
        if node > self.last_node() {
            self.unknown_verbs = self.unknown_verbs.saturating_add(1);
            return 0;
        }
        // 12-bit verbs have 0x7 in bits 19:16 or start with 0xF; QEMU's
        // rule (hda_audio_command): bits 18:16 all set means 12/8.
        let long = payload & 0x7_0000 == 0x7_0000;
        let (verb, data) = if long {
            (((payload >> 8) & 0xFFF) as u16, payload & 0xFF)
        } else {
            (((payload >> 8) & 0xF00) as u16, payload & 0xFFFF)
        };
        #[expect(clippy::cast_possible_truncation, reason = "masked fields")]
        let byte = data as u8;
        #[expect(clippy::cast_possible_truncation, reason = "masked fields")]
        let word = data as u16;
        let converter = match node {
            DAC => Some(&mut self.dac),
            ADC if self.model == CodecModel::Duplex => Some(&mut self.adc),
            _ => None,
        };
        match (verb, converter) {
            (id::GET_PARAMETER, _) => {
                if let Some(value) = self.parameter(node, byte) {
                    return value;
                }
            }
            (id::GET_CONNECTION_LIST, _) => match node {
                OUT_PIN => return u32::from(DAC),
                ADC => return u32::from(IN_PIN),
                _ => {}
            },
            (id::GET_CONFIG_DEFAULT, _) => match node {
                // Port complex, line out / line in, green / red, association
                // 1 / 2 (hda-codec-common.h).
                OUT_PIN => return (4 << 12) | 0x10,
                IN_PIN => return (8 << 20) | (5 << 12) | 0x20,
                _ => {}
            },
            (id::SET_PIN_CONTROL | id::SET_POWER_STATE, _) => return 0,
            (id::SET_CONVERTER_STREAM, Some(c)) => {
                c.stream_tag = byte >> 4;
                c.channel = byte & 0xF;
                return 0;
            }
            (id::GET_CONVERTER_STREAM, Some(c)) => {
                return u32::from(c.stream_tag) << 4 | u32::from(c.channel);
            }
            (0x200, Some(c)) => {
                c.format = word;
                return 0;
            }
            (0xA00, Some(c)) => return u32::from(c.format),
            (0x300, Some(c)) => {
                let amp = (word & 0xFF) as u8;
                if word & id::AMP_SET_LEFT != 0 {
                    c.amp_left = amp;
                }
                if word & id::AMP_SET_RIGHT != 0 {
                    c.amp_right = amp;
                }
                return 0;
            }
            _ => {}
        }
        self.unknown_verbs = self.unknown_verbs.saturating_add(1);
        0
    }
}

/// Most BDL entries the model snapshots per descriptor (the controller
/// takes 256; the model keeps its size small and answers a longer list
/// with a descriptor error, SDnSTS.DESE).
pub const SIM_BDL_MAX: usize = 64;
/// Stream descriptors (QEMU: four in, four out).
pub const SIM_STREAMS: usize = 8;
/// `SDnFIFOS` as QEMU reports it (`HDA_BUFFER_SIZE`).
pub const SIM_FIFO_BYTES: u16 = 256;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct BdlEntry {
    address: u64,
    length: u32,
    flags: u32,
}

/// One stream descriptor's registers and DMA state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SimStream {
    /// CTL bits 23:0 and STS bits 31:24 in one word, as QEMU keeps them.
    ctl: u32,
    lpib: u32,
    cbl: u32,
    lvi: u16,
    fmt: u16,
    bdpl: u32,
    bdpu: u32,
    list: [BdlEntry; SIM_BDL_MAX],
    entries: usize,
    entry: usize,
    entry_offset: u32,
    starts: u32,
}

impl SimStream {
    const FIFO_READY: u32 = 0x20 << 24;
    const fn new() -> Self {
        Self {
            ctl: Self::FIFO_READY,
            lpib: 0,
            cbl: 0,
            lvi: 0,
            fmt: 0,
            bdpl: 0,
            bdpu: 0,
            list: [BdlEntry {
                address: 0,
                length: 0,
                flags: 0,
            }; SIM_BDL_MAX],
            entries: 0,
            entry: 0,
            entry_offset: 0,
            starts: 0,
        }
    }
    const fn tag(&self) -> u8 {
        ((self.ctl >> 20) & 0xF) as u8
    }
    const fn running(&self) -> bool {
        self.ctl & 0x2 != 0
    }
}

/// Faults a test can switch on to prove the driver notices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimFaults {
    /// The CORB is never fetched (the immediate interface still works).
    pub dead_rings: bool,
    /// GCTL.CRST never reads back 1.
    pub stuck_in_reset: bool,
    /// The position buffer entry is never written (a stale register).
    pub stale_position_buffer: bool,
}

/// The controller model.
#[derive(Debug)]
pub struct SimHda<'m> {
    memory: &'m SimMemory,
    /// The attached codec (address 0).
    pub codec: SimCodec,
    codec_present: bool,
    /// Fault switches.
    pub faults: SimFaults,
    gctl: u32,
    statests: u16,
    wakeen: u16,
    intctl: u32,
    corb_lbase: u32,
    corb_ubase: u32,
    corb_wp: u16,
    corb_rp: u16,
    corb_ctl: u8,
    rirb_lbase: u32,
    rirb_ubase: u32,
    rirb_wp: u16,
    rintcnt: u16,
    rirb_ctl: u8,
    rirb_sts: u8,
    rirb_pending: u16,
    icw: u32,
    irr: u32,
    ics: u16,
    dplbase: u32,
    dpubase: u32,
    wall_ns: u64,
    streams: [SimStream; SIM_STREAMS],
    accesses: u64,
    unknown_accesses: u32,
}

impl<'m> SimHda<'m> {
    /// A controller in reset (CRST low) with `codec` at address 0 (or no
    /// codec), over `memory`.
    #[must_use]
    pub const fn new(memory: &'m SimMemory, codec: Option<CodecModel>) -> Self {
        let (model, present) = match codec {
            Some(m) => (m, true),
            None => (CodecModel::Output, false),
        };
        Self {
            memory,
            codec: SimCodec::new(model),
            codec_present: present,
            faults: SimFaults {
                dead_rings: false,
                stuck_in_reset: false,
                stale_position_buffer: false,
            },
            gctl: 0,
            statests: 0,
            wakeen: 0,
            intctl: 0,
            corb_lbase: 0,
            corb_ubase: 0,
            corb_wp: 0,
            corb_rp: 0,
            corb_ctl: 0,
            rirb_lbase: 0,
            rirb_ubase: 0,
            rirb_wp: 0,
            rintcnt: 0,
            rirb_ctl: 0,
            rirb_sts: 0,
            rirb_pending: 0,
            icw: 0,
            irr: 0,
            ics: 0,
            dplbase: 0,
            dpubase: 0,
            wall_ns: 0,
            streams: [const { SimStream::new() }; SIM_STREAMS],
            accesses: 0,
            unknown_accesses: 0,
        }
    }

    /// Register accesses so far.
    #[must_use]
    pub const fn accesses(&self) -> u64 {
        self.accesses
    }

    /// Accesses at offsets or widths the model does not decode.
    #[must_use]
    pub const fn unknown_accesses(&self) -> u32 {
        self.unknown_accesses
    }

    /// Times descriptor `index` was started (RUN 0 -> 1).
    #[must_use]
    pub fn starts(&self, index: usize) -> u32 {
        self.streams.get(index).map_or(0, |s| s.starts)
    }

    /// Descriptor `index`'s LPIB.
    #[must_use]
    pub fn lpib(&self, index: usize) -> u32 {
        self.streams.get(index).map_or(0, |s| s.lpib)
    }

    /// Whether the interrupt line is asserted (INTSTS.GIS with GIE).
    #[must_use]
    pub fn interrupt_line(&self) -> bool {
        self.intsts() & reg::INTSTS_GIS != 0 && self.intctl & reg::INTCTL_GIE != 0
    }

    /// Advances the wall clock.
    pub const fn advance_ns(&mut self, ns: u64) {
        self.wall_ns = self.wall_ns.saturating_add(ns);
    }

    const fn reset(&mut self) {
        let memory = self.memory;
        let codec = SimCodec::new(self.codec.model);
        let delay = self.codec.converter_delay;
        let present = self.codec_present;
        let faults = self.faults;
        let accesses = self.accesses;
        let unknown = self.unknown_accesses;
        let wall = self.wall_ns;
        *self = Self::new(memory, None);
        self.codec = codec;
        self.codec.converter_delay = delay;
        self.codec_present = present;
        self.faults = faults;
        self.accesses = accesses;
        self.unknown_accesses = unknown;
        self.wall_ns = wall;
    }

    fn intsts(&self) -> u32 {
        let mut sts = 0;
        if self.rirb_sts & (reg::RIRBSTS_RINTFL | reg::RIRBSTS_OVERRUN) != 0
            || self.statests & self.wakeen != 0
        {
            sts |= reg::INT_CONTROLLER;
        }
        for (i, s) in self.streams.iter().enumerate() {
            if s.ctl & (u32::from(reg::SD_STS_BCIS) << 24) != 0 {
                sts |= 1 << i;
            }
        }
        if sts & self.intctl != 0 {
            sts |= reg::INTSTS_GIS;
        }
        sts
    }

    fn send(&mut self, verb: u32) -> Option<u32> {
        let v = Verb::decode(verb);
        (v.codec == 0 && self.codec_present).then(|| self.codec.command(v.node, v.payload))
    }

    /// Fetches verbs while the ring runs and responses are acknowledged
    /// (intel-hda.c `intel_hda_corb_run`).
    fn corb_run(&mut self) {
        if self.faults.dead_rings {
            return;
        }
        while self.corb_ctl & reg::CORBCTL_RUN != 0
            && (self.corb_rp & 0xFF) != self.corb_wp
            && self.rirb_pending < self.rintcnt.max(1)
        {
            let rp = (self.corb_rp + 1) & 0xFF;
            let corb = u64::from(self.corb_ubase) << 32 | u64::from(self.corb_lbase);
            let verb = self.memory.read_u32(corb + u64::from(rp) * 4);
            self.corb_rp = rp;
            let Some(response) = self.send(verb) else {
                continue;
            };
            if self.rirb_ctl & reg::RIRBCTL_DMAEN == 0 {
                continue;
            }
            let wp = (self.rirb_wp + 1) & 0xFF;
            let rirb = u64::from(self.rirb_ubase) << 32 | u64::from(self.rirb_lbase);
            let mut entry = [0u8; 8];
            entry[..4].copy_from_slice(&response.to_le_bytes());
            self.memory.store(rirb + u64::from(wp) * 8, &entry);
            self.rirb_wp = wp;
            self.rirb_pending += 1;
            if self.rirb_ctl & reg::RIRBCTL_RINTCTL != 0
                && (self.rirb_pending >= self.rintcnt || (self.corb_rp & 0xFF) == self.corb_wp)
            {
                self.rirb_sts |= reg::RIRBSTS_RINTFL;
            }
        }
    }

    fn immediate(&mut self) {
        if self.ics & reg::ICS_BUSY != 0 {
            if let Some(response) = self.send(self.icw) {
                self.irr = response;
                self.ics = (self.ics & !reg::ICS_BUSY) | reg::ICS_VALID;
            }
        }
    }

    fn stream_at(offset: u16) -> Option<(usize, u16)> {
        let relative = offset.checked_sub(reg::SD_BASE)?;
        let index = usize::from(relative / reg::SD_STRIDE);
        (index < SIM_STREAMS).then_some((index, relative % reg::SD_STRIDE))
    }

    fn read(&mut self, offset: u16, width: u8) -> u32 {
        self.accesses += 1;
        let wall = self.wall_ns.saturating_mul(24) / 1_000;
        #[expect(clippy::cast_possible_truncation, reason = "the counter wraps")]
        let wall = wall as u32;
        let value = match (offset, width) {
            (reg::GCAP, 2) => 0x4401,
            (reg::GCTL, 4) => self.gctl,
            (reg::WAKEEN, 2) => u32::from(self.wakeen),
            (reg::STATESTS, 2) => u32::from(self.statests),
            (reg::INTCTL, 4) => self.intctl,
            (reg::INTSTS, 4) => self.intsts(),
            (reg::WALCLK, 4) => wall,
            (reg::CORBWP, 2) => u32::from(self.corb_wp),
            (reg::CORBRP, 2) => u32::from(self.corb_rp),
            (reg::CORBCTL, 1) => u32::from(self.corb_ctl),
            (reg::CORBSIZE | reg::RIRBSIZE, 1) => 0x42,
            (reg::RIRBWP, 2) => u32::from(self.rirb_wp),
            (reg::RIRBCTL, 1) => u32::from(self.rirb_ctl),
            (reg::RIRBSTS, 1) => u32::from(self.rirb_sts),
            (reg::IRR, 4) => self.irr,
            (reg::ICS, 2) => u32::from(self.ics),
            (reg::DPLBASE, 4) => self.dplbase,
            _ => {
                if let Some((i, field)) = Self::stream_at(offset) {
                    self.read_stream(i, field, width)
                } else {
                    self.unknown_accesses += 1;
                    0
                }
            }
        };
        match width {
            1 => value & 0xFF,
            2 => value & 0xFFFF,
            _ => value,
        }
    }

    fn read_stream(&mut self, index: usize, field: u16, width: u8) -> u32 {
        let Some(s) = self.streams.get(index) else {
            return 0;
        };
        match (field, width) {
            (reg::SD_CTL, _) => s.ctl,
            (reg::SD_CTL_TAG_BYTE, 1) => s.ctl >> 16,
            (reg::SD_STS, 1) => s.ctl >> 24,
            (reg::SD_LPIB, 4) => s.lpib,
            (reg::SD_CBL, 4) => s.cbl,
            (reg::SD_LVI, 2) => u32::from(s.lvi),
            (reg::SD_FIFOS, 2) => u32::from(SIM_FIFO_BYTES),
            (reg::SD_FMT, 2) => u32::from(s.fmt),
            (reg::SD_BDPL, 4) => s.bdpl,
            (reg::SD_BDPU, 4) => s.bdpu,
            _ => {
                self.unknown_accesses += 1;
                0
            }
        }
    }

    fn write(&mut self, offset: u16, width: u8, value: u32) {
        self.accesses += 1;
        #[expect(clippy::cast_possible_truncation, reason = "register widths")]
        match (offset, width) {
            (reg::GCTL, 4) => {
                let entering_reset = value & reg::GCTL_CRST == 0;
                if entering_reset {
                    self.reset();
                } else if self.gctl & reg::GCTL_CRST == 0 && !self.faults.stuck_in_reset {
                    self.gctl = value & 0x103;
                    // Codecs request an address once the link is out of reset.
                    if self.codec_present {
                        self.statests |= 1;
                    }
                }
            }
            (reg::WAKEEN, 2) => self.wakeen = value as u16 & 0x7FFF,
            (reg::STATESTS, 2) => self.statests &= !(value as u16),
            (reg::INTCTL, 4) => self.intctl = value & 0xC000_00FF,
            (reg::CORBLBASE, 4) => self.corb_lbase = value & !0x7F,
            (reg::CORBUBASE, 4) => self.corb_ubase = value,
            (reg::CORBWP, 2) => {
                self.corb_wp = value as u16 & 0xFF;
                self.corb_run();
            }
            (reg::CORBRP, 2) => self.corb_rp = value as u16 & 0x80FF,
            (reg::CORBCTL, 1) => {
                self.corb_ctl = value as u8 & 0x3;
                self.corb_run();
            }
            (reg::RIRBLBASE, 4) => self.rirb_lbase = value & !0x7F,
            (reg::RIRBUBASE, 4) => self.rirb_ubase = value,
            (reg::RIRBWP, 2) => {
                if value as u16 & reg::POINTER_RESET != 0 {
                    self.rirb_wp = 0;
                }
            }
            (reg::RINTCNT, 2) => self.rintcnt = value as u16 & 0xFF,
            (reg::RIRBCTL, 1) => self.rirb_ctl = value as u8 & 0x7,
            (reg::RIRBSTS, 1) => {
                let cleared = value as u8 & 0x5;
                let was_flagged = self.rirb_sts & reg::RIRBSTS_RINTFL != 0;
                self.rirb_sts &= !cleared;
                if was_flagged && self.rirb_sts & reg::RIRBSTS_RINTFL == 0 {
                    self.rirb_pending = 0;
                    self.corb_run();
                }
            }
            (reg::ICW, 4) => self.icw = value,
            (reg::ICS, 2) => {
                let v = value as u16;
                self.ics = (self.ics & !reg::ICS_BUSY) | (v & reg::ICS_BUSY);
                if v & reg::ICS_VALID != 0 {
                    self.ics &= !reg::ICS_VALID;
                }
                self.immediate();
            }
            (reg::DPLBASE, 4) => self.dplbase = value & 0xFFFF_FF81,
            (reg::DPUBASE, 4) => self.dpubase = value,
            _ => {
                if let Some((i, field)) = Self::stream_at(offset) {
                    self.write_stream(i, field, width, value);
                } else {
                    self.unknown_accesses += 1;
                }
            }
        }
    }

    fn write_stream(&mut self, index: usize, field: u16, width: u8, value: u32) {
        let memory = self.memory;
        let Some(s) = self.streams.get_mut(index) else {
            return;
        };
        let old = s.ctl;
        #[expect(clippy::cast_possible_truncation, reason = "register widths")]
        match (field, width) {
            (reg::SD_CTL, 1) => s.ctl = (s.ctl & !0x1F) | (value & 0x1F),
            (reg::SD_CTL, 4) => {
                // QEMU: the dword covers the status bits without
                // write-one-to-clear, so a dword write sets them as given.
                s.ctl = (s.ctl & !0x1CFF_001F) | (value & 0x1CFF_001F);
            }
            (reg::SD_CTL_TAG_BYTE, 1) => s.ctl = (s.ctl & !0x00FF_0000) | ((value & 0xFF) << 16),
            (reg::SD_STS, 1) => s.ctl &= !((value & 0x1C) << 24),
            (reg::SD_CBL, 4) => s.cbl = value,
            (reg::SD_LVI, 2) => s.lvi = value as u16 & 0xFF,
            (reg::SD_FMT, 2) => s.fmt = value as u16 & 0x7F7F,
            (reg::SD_BDPL, 4) => s.bdpl = value & !0x7F,
            (reg::SD_BDPU, 4) => s.bdpu = value,
            _ => {
                self.unknown_accesses += 1;
                return;
            }
        }
        if field != reg::SD_CTL {
            return;
        }
        if s.ctl & u32::from(reg::SD_CTL_SRST) != 0 {
            s.ctl = SimStream::FIFO_READY | u32::from(reg::SD_CTL_SRST);
            s.lpib = 0;
        }
        let started = s.ctl & 0x2 != 0 && old & 0x2 == 0;
        if started {
            let base = u64::from(s.bdpu) << 32 | u64::from(s.bdpl);
            s.entries = usize::from(s.lvi) + 1;
            if s.entries > SIM_BDL_MAX {
                s.entries = 0;
                s.ctl |= u32::from(reg::SD_STS_DESE) << 24;
            }
            for (i, entry) in s.list.iter_mut().take(s.entries).enumerate() {
                let mut raw = [0u8; 16];
                memory.load(base + (i as u64) * 16, &mut raw);
                let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, f0, f1, f2, f3] = raw;
                *entry = BdlEntry {
                    address: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
                    length: u32::from_le_bytes([l0, l1, l2, l3]),
                    flags: u32::from_le_bytes([f0, f1, f2, f3]),
                };
            }
            s.lpib = 0;
            s.entry = 0;
            s.entry_offset = 0;
            s.starts += 1;
        }
    }

    /// Moves up to `bytes` for the codec's converter of the given direction
    /// (QEMU `intel_hda_xfer`): through the descriptor whose tag matches
    /// the converter's and which runs, entry by entry, wrapping LPIB at CBL,
    /// reporting each piece to `sink`. Returns the bytes moved (0 when no
    /// descriptor is bound, the converter has no format, or the list is
    /// empty).
    pub fn transfer(&mut self, output: bool, bytes: u32, sink: &mut impl FnMut(u64, u32)) -> u32 {
        let converter = if output {
            self.codec.dac
        } else {
            self.codec.adc
        };
        if converter.stream_tag == 0 || converter.format == 0 {
            return 0;
        }
        let mut range = if output { 4..8 } else { 0..4 };
        let Some(index) = range.find(|&i| {
            self.streams
                .get(i)
                .is_some_and(|s| s.running() && s.tag() == converter.stream_tag)
        }) else {
            return 0;
        };
        let dp_enabled =
            self.dplbase & reg::DPLBASE_ENABLE != 0 && !self.faults.stale_position_buffer;
        let dp = (u64::from(self.dpubase) << 32 | u64::from(self.dplbase & !1)) + index as u64 * 8;
        let memory = self.memory;
        let Some(s) = self.streams.get_mut(index) else {
            return 0;
        };
        let mut left = bytes;
        let mut moved = 0;
        let mut guard = s.entries.saturating_mul(2).max(1);
        let mut completion = false;
        while left > 0 && guard > 0 && s.entries > 0 {
            guard -= 1;
            let Some(entry) = s.list.get(s.entry).copied() else {
                break;
            };
            let room_entry = entry.length.saturating_sub(s.entry_offset);
            let room_buffer = s.cbl.saturating_sub(s.lpib);
            let chunk = left.min(room_entry).min(room_buffer);
            if chunk > 0 {
                sink(entry.address + u64::from(s.entry_offset), chunk);
            }
            s.lpib += chunk;
            s.entry_offset += chunk;
            left -= chunk;
            moved += chunk;
            if s.entry_offset >= entry.length {
                if entry.flags & 1 != 0 {
                    completion = true;
                }
                s.entry_offset = 0;
                s.entry += 1;
                if s.entry >= s.entries {
                    s.entry = 0;
                    s.lpib = 0;
                }
            }
        }
        if dp_enabled {
            memory.store(dp, &s.lpib.to_le_bytes());
        }
        if completion {
            s.ctl |= u32::from(reg::SD_STS_BCIS) << 24;
        }
        moved
    }
}

impl RegisterBus for SimHda<'_> {
    fn read8(&mut self, offset: u16) -> u8 {
        #[expect(clippy::cast_possible_truncation, reason = "masked to a byte")]
        let v = self.read(offset, 1) as u8;
        v
    }
    fn read16(&mut self, offset: u16) -> u16 {
        #[expect(clippy::cast_possible_truncation, reason = "masked to a word")]
        let v = self.read(offset, 2) as u16;
        v
    }
    fn read32(&mut self, offset: u16) -> u32 {
        self.read(offset, 4)
    }
    fn write8(&mut self, offset: u16, value: u8) {
        self.write(offset, 1, u32::from(value));
    }
    fn write16(&mut self, offset: u16, value: u16) {
        self.write(offset, 2, u32::from(value));
    }
    fn write32(&mut self, offset: u16, value: u32) {
        self.write(offset, 4, value);
    }
}
