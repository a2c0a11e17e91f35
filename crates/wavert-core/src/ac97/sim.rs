//! A register-level model of an Intel ICH AC'97 controller and codec, for
//! unit tests of [`super`] and for emulators.
//!
//! It follows the documented register map and the behaviour of QEMU's
//! device model where the documentation leaves room: a new LVI resumes a
//! halted, running engine at the next entry; setting the run bit loads the
//! entry after the previous one; a dword read at CIV returns CIV, LVI and
//! SR. Audio data is not modelled: [`SimAc97::step`] reports every piece it
//! moves as (physical address, bytes) to a sink, in order.
//!
//! Accesses at a width the hardware does not decode are counted
//! ([`SimAc97::bad_width_accesses`]) and read as all ones.

use super::{nabm, nam, RegisterBus, RING_SLOTS};
use crate::bus::SharedMemory;

/// Physical bytes of descriptor memory the model holds.
pub const SIM_MEMORY_BYTES: usize = 1024;

/// Descriptor memory: [`SIM_MEMORY_BYTES`] bytes starting at a physical
/// base, shared by the driver and the model ([`SharedMemory`]).
pub type SimMemory = SharedMemory<SIM_MEMORY_BYTES>;

const IOC: u32 = 1 << 31;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SimChannel {
    list_base: u32,
    civ: u8,
    lvi: u8,
    piv: u8,
    status: u16,
    samples_left: u16,
    control: u8,
    entry_address: u32,
    entry_control: u32,
    halts: u32,
}

impl SimChannel {
    fn reset() -> Self {
        Self {
            status: nabm::SR_HALTED,
            ..Self::default()
        }
    }

    const fn running(&self) -> bool {
        self.control & nabm::CR_RUN != 0 && self.status & nabm::SR_HALTED == 0
    }

    fn fetch_next(&mut self, memory: &SimMemory) {
        self.civ = self.piv;
        self.piv = (self.piv + 1) % RING_SLOTS;
        let entry = u64::from(self.list_base) + u64::from(self.civ) * 8;
        self.entry_address = memory.read_u32(entry) & !1;
        self.entry_control = memory.read_u32(entry + 4);
        self.samples_left = u16::try_from(self.entry_control & 0xFFFF).unwrap_or(0);
    }

    fn interrupt_pending(&self) -> bool {
        let enabled =
            |status: u16, control: u8| self.status & status != 0 && self.control & control != 0;
        enabled(nabm::SR_COMPLETION, nabm::CR_COMPLETION_INTERRUPT)
            || enabled(nabm::SR_LAST_VALID_COMPLETED, nabm::CR_LVB_INTERRUPT)
            || enabled(nabm::SR_FIFO_ERROR, nabm::CR_FIFO_ERROR_INTERRUPT)
    }
}

const MIXER_WORDS: usize = 64;

/// The codec behind NAM.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CodecModel {
    registers: [u16; MIXER_WORDS],
    accesses: u64,
    bad_width_accesses: u32,
    rate_writes_after_volume: u32,
}

impl CodecModel {
    fn reset(&mut self) {
        self.registers = [0; MIXER_WORDS];
        self.set(nam::MASTER_VOLUME, nam::MUTE);
        self.set(nam::PCM_OUT_VOLUME, 0x8808);
        self.set(nam::RECORD_GAIN, nam::MUTE);
        self.set(nam::EXTENDED_AUDIO_ID, nam::VARIABLE_RATE);
        self.set(nam::FRONT_DAC_RATE, 48_000);
        self.set(nam::ADC_RATE, 48_000);
    }

    fn set(&mut self, register: u16, value: u16) {
        if let Some(word) = self.registers.get_mut(usize::from(register / 2)) {
            *word = value;
        }
    }

    fn get(&self, register: u16) -> u16 {
        self.registers
            .get(usize::from(register / 2))
            .copied()
            .unwrap_or(u16::MAX)
    }

    const fn bad_width(&mut self) -> u32 {
        self.bad_width_accesses = self.bad_width_accesses.saturating_add(1);
        u32::MAX
    }
}

/// The bus-master controller behind NABM.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ControllerModel {
    global_control: u32,
    codec_present: bool,
    resume_on_lvi: bool,
    channels: [SimChannel; 2],
    accesses: u64,
    bad_width_accesses: u32,
}

impl ControllerModel {
    const fn bad_width(&mut self) -> u32 {
        self.bad_width_accesses = self.bad_width_accesses.saturating_add(1);
        u32::MAX
    }

    fn write_control(&mut self, index: usize, value: u8, memory: &SimMemory) {
        let Some(channel) = self.channels.get_mut(index) else {
            return;
        };
        if value & nabm::CR_RESET != 0 {
            *channel = SimChannel {
                halts: channel.halts,
                ..SimChannel::reset()
            };
            return;
        }
        channel.control = value & 0x1F;
        if value & nabm::CR_RUN == 0 {
            channel.status |= nabm::SR_HALTED;
        } else {
            channel.fetch_next(memory);
            channel.status &= !nabm::SR_HALTED;
        }
    }
}

/// The simulated controller and codec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimAc97 {
    codec: CodecModel,
    controller: ControllerModel,
}

impl Default for SimAc97 {
    fn default() -> Self {
        Self::new()
    }
}

/// Which of the two modelled channels a NABM offset belongs to.
const fn channel_index(offset: u16) -> Option<(usize, u16)> {
    match offset {
        0x00..=0x0F => Some((0, offset)),
        0x10..=0x1F => Some((1, offset - 0x10)),
        _ => None,
    }
}

impl SimAc97 {
    /// A powered-on controller with a codec that supports variable rates.
    #[must_use]
    pub fn new() -> Self {
        let mut codec = CodecModel {
            registers: [0; MIXER_WORDS],
            accesses: 0,
            bad_width_accesses: 0,
            rate_writes_after_volume: 0,
        };
        codec.reset();
        Self {
            codec,
            controller: ControllerModel {
                global_control: 0,
                codec_present: true,
                resume_on_lvi: true,
                channels: [SimChannel::reset(); 2],
                accesses: 0,
                bad_width_accesses: 0,
            },
        }
    }

    /// No codec on the link: `GLOB_STA` never reports ready.
    #[must_use]
    pub const fn without_codec(mut self) -> Self {
        self.controller.codec_present = false;
        self
    }

    /// An engine that stays halted when LVI moves (only the run bit resumes it).
    #[must_use]
    pub const fn without_resume_on_lvi(mut self) -> Self {
        self.controller.resume_on_lvi = false;
        self
    }

    /// A codec register as the codec holds it.
    #[must_use]
    pub fn mixer_register(&self, register: u16) -> u16 {
        self.codec.get(register)
    }

    /// Rate writes that came after the last volume write (the driver must
    /// write volumes after rates; QEMU forgets volumes on a rate change).
    #[must_use]
    pub const fn rate_writes_after_volume(&self) -> u32 {
        self.codec.rate_writes_after_volume
    }

    /// Register accesses through either window.
    #[must_use]
    pub const fn accesses(&self) -> u64 {
        self.codec.accesses + self.controller.accesses
    }

    /// Accesses at a width the register does not decode.
    #[must_use]
    pub const fn bad_width_accesses(&self) -> u32 {
        self.codec.bad_width_accesses + self.controller.bad_width_accesses
    }

    /// Whether the shared interrupt line is asserted.
    #[must_use]
    pub fn interrupt_line(&self) -> bool {
        self.controller
            .channels
            .iter()
            .any(SimChannel::interrupt_pending)
    }

    /// Times the channel at NABM `base` halted after its last valid entry.
    #[must_use]
    pub fn halts(&self, base: u16) -> u32 {
        channel_index(base)
            .and_then(|(i, _)| self.controller.channels.get(i))
            .map_or(0, |c| c.halts)
    }

    /// Both windows at once, as a driver holds them: the mixer (BAR0) and
    /// the bus master (BAR1), whose engine fetches descriptors from `memory`.
    pub const fn windows<'a>(
        &'a mut self,
        memory: &'a SimMemory,
    ) -> (MixerWindow<'a>, BusMasterWindow<'a>) {
        (
            MixerWindow(&mut self.codec),
            BusMasterWindow {
                controller: &mut self.controller,
                memory,
            },
        )
    }

    /// The mixer window (BAR0).
    pub const fn mixer(&mut self) -> MixerWindow<'_> {
        MixerWindow(&mut self.codec)
    }

    /// The bus-master window (BAR1); the engine fetches descriptors from
    /// `memory`.
    pub const fn bus_master<'a>(&'a mut self, memory: &'a SimMemory) -> BusMasterWindow<'a> {
        BusMasterWindow {
            controller: &mut self.controller,
            memory,
        }
    }

    /// Moves up to `bytes` bytes on the channel at NABM `base`, reading
    /// descriptors from `memory`; `sink(address, len)` sees every piece in
    /// order. Returns the bytes moved (fewer when the engine halts).
    pub fn step(
        &mut self,
        base: u16,
        mut bytes: u32,
        memory: &SimMemory,
        sink: &mut impl FnMut(u32, u32),
    ) -> u32 {
        let Some(channel) =
            channel_index(base).and_then(|(i, _)| self.controller.channels.get_mut(i))
        else {
            return 0;
        };
        let mut moved = 0;
        while bytes >= 2 && channel.running() {
            if channel.samples_left == 0 {
                // An empty entry: skip it, or halt on it if it is the last.
                if channel.civ == channel.lvi {
                    channel.status |= nabm::SR_HALTED;
                    break;
                }
                channel.fetch_next(memory);
                continue;
            }
            let piece = (bytes & !1).min(u32::from(channel.samples_left) * 2);
            sink(channel.entry_address, piece);
            channel.entry_address = channel.entry_address.wrapping_add(piece);
            channel.samples_left -= u16::try_from(piece / 2).unwrap_or(channel.samples_left);
            bytes -= piece;
            moved += piece;
            if channel.samples_left == 0 {
                let mut status = channel.status & !nabm::SR_CURRENT_IS_LAST;
                if channel.entry_control & IOC != 0 {
                    status |= nabm::SR_COMPLETION;
                }
                if channel.civ == channel.lvi {
                    status |=
                        nabm::SR_LAST_VALID_COMPLETED | nabm::SR_HALTED | nabm::SR_CURRENT_IS_LAST;
                    channel.halts = channel.halts.saturating_add(1);
                } else {
                    channel.fetch_next(memory);
                }
                channel.status = status;
            }
        }
        moved
    }
}

/// BAR0 of a [`SimAc97`]: 16-bit codec registers only.
#[derive(Debug)]
pub struct MixerWindow<'a>(&'a mut CodecModel);

impl RegisterBus for MixerWindow<'_> {
    fn read8(&mut self, _offset: u16) -> u8 {
        self.0.accesses += 1;
        self.0.bad_width().to_le_bytes()[0]
    }
    fn read16(&mut self, offset: u16) -> u16 {
        self.0.accesses += 1;
        self.0.get(offset)
    }
    fn read32(&mut self, _offset: u16) -> u32 {
        self.0.accesses += 1;
        self.0.bad_width()
    }
    fn write8(&mut self, _offset: u16, _value: u8) {
        self.0.accesses += 1;
        self.0.bad_width();
    }
    fn write16(&mut self, offset: u16, value: u16) {
        let codec = &mut *self.0;
        codec.accesses += 1;
        let variable_rate = codec.get(nam::EXTENDED_AUDIO_CONTROL) & nam::VARIABLE_RATE != 0;
        match offset {
            nam::RESET => codec.reset(),
            nam::EXTENDED_AUDIO_ID => {}
            nam::FRONT_DAC_RATE | nam::ADC_RATE => {
                if variable_rate {
                    codec.set(offset, value);
                    codec.rate_writes_after_volume =
                        codec.rate_writes_after_volume.saturating_add(1);
                }
            }
            nam::MASTER_VOLUME | nam::PCM_OUT_VOLUME => {
                codec.set(offset, value);
                codec.rate_writes_after_volume = 0;
            }
            _ => codec.set(offset, value),
        }
    }
    fn write32(&mut self, _offset: u16, _value: u32) {
        self.0.accesses += 1;
        self.0.bad_width();
    }
}

/// BAR1 of a [`SimAc97`], with the memory the engine fetches descriptors
/// from when the run bit is set or a new LVI resumes it.
#[derive(Debug)]
pub struct BusMasterWindow<'a> {
    controller: &'a mut ControllerModel,
    memory: &'a SimMemory,
}

fn nabm_read(sim: &mut ControllerModel, offset: u16, width: u8) -> u32 {
    sim.accesses += 1;
    let ready = if sim.codec_present {
        nabm::GLOB_STA_PRIMARY_READY
    } else {
        0
    };
    match (offset, width) {
        (nabm::GLOB_CNT, 4) => return sim.global_control,
        (nabm::GLOB_STA, 4) => {
            let mut status = ready;
            for (bit, channel) in [0x20u32, 0x40].iter().zip(sim.channels.iter()) {
                if channel.interrupt_pending() {
                    status |= bit;
                }
            }
            return status;
        }
        _ => {}
    }
    let Some((index, register)) = channel_index(offset) else {
        return sim.bad_width();
    };
    let Some(channel) = sim.channels.get(index).copied() else {
        return sim.bad_width();
    };
    match (register, width) {
        (nabm::BDBAR, 4) => channel.list_base,
        (nabm::CIV, 1) => u32::from(channel.civ),
        (nabm::CIV, 4) => {
            u32::from(channel.civ) | u32::from(channel.lvi) << 8 | u32::from(channel.status) << 16
        }
        (nabm::LVI, 1) => u32::from(channel.lvi),
        (nabm::SR, 1 | 2) => u32::from(channel.status),
        (nabm::PICB, 2) => u32::from(channel.samples_left),
        (PIV, 1) => u32::from(channel.piv),
        (nabm::CR, 1) => u32::from(channel.control),
        _ => sim.bad_width(),
    }
}

/// Channel register: prefetched index value (byte).
const PIV: u16 = 0x0A;

fn nabm_write(sim: &mut ControllerModel, offset: u16, value: u32, width: u8, memory: &SimMemory) {
    sim.accesses += 1;
    if (offset, width) == (nabm::GLOB_CNT, 4) {
        sim.global_control = value;
        return;
    }
    let Some((index, register)) = channel_index(offset) else {
        sim.bad_width();
        return;
    };
    let resume_on_lvi = sim.resume_on_lvi;
    let low_byte = value.to_le_bytes()[0];
    let known = matches!(
        (register, width),
        (nabm::BDBAR, 4) | (nabm::LVI | nabm::CR, 1) | (nabm::SR, 1 | 2)
    );
    if !known {
        sim.bad_width();
        return;
    }
    if register == nabm::CR {
        sim.write_control(index, low_byte, memory);
        return;
    }
    let Some(c) = sim.channels.get_mut(index) else {
        return;
    };
    match register {
        nabm::BDBAR => c.list_base = value & !7,
        nabm::LVI => {
            let halted_running = c.control & nabm::CR_RUN != 0 && c.status & nabm::SR_HALTED != 0;
            if halted_running && resume_on_lvi {
                c.status &= !(nabm::SR_HALTED | nabm::SR_CURRENT_IS_LAST);
                c.fetch_next(memory);
            }
            c.lvi = low_byte % RING_SLOTS;
        }
        _ => {
            let clear = u16::try_from(value & 0xFFFF).unwrap_or(0) & nabm::SR_INTERRUPTS;
            c.status &= !clear;
        }
    }
}

impl RegisterBus for BusMasterWindow<'_> {
    fn read8(&mut self, offset: u16) -> u8 {
        nabm_read(self.controller, offset, 1).to_le_bytes()[0]
    }
    fn read16(&mut self, offset: u16) -> u16 {
        let [low, high, _, _] = nabm_read(self.controller, offset, 2).to_le_bytes();
        u16::from_le_bytes([low, high])
    }
    fn read32(&mut self, offset: u16) -> u32 {
        nabm_read(self.controller, offset, 4)
    }
    fn write8(&mut self, offset: u16, value: u8) {
        nabm_write(self.controller, offset, u32::from(value), 1, self.memory);
    }
    fn write16(&mut self, offset: u16, value: u16) {
        nabm_write(self.controller, offset, u32::from(value), 2, self.memory);
    }
    fn write32(&mut self, offset: u16, value: u32) {
        nabm_write(self.controller, offset, value, 4, self.memory);
    }
}
