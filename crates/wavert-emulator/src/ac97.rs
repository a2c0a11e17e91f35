//! The product's AC'97 miniport (`wavert_miniport::ac97`) on QEMU's Intel
//! ICH AC'97 device model (`wavert-qemu`), loaded and driven the way
//! Windows does it.
//!
//! * QEMU runs with the qtest accelerator and a `wav` audiodev; the
//!   emulator's [`PhysicalMemory`] is QEMU's guest-RAM file, half of it
//!   above 4 GiB ([`qemu_memory_config`]), so the buffer and descriptor
//!   list the miniport allocates through `IPortWaveRTStream` are where
//!   QEMU's DMA reads, and a page the 32-bit bus master cannot reach is
//!   there to be handed out.
//! * Every bus-master register write is checked before QEMU sees it
//!   ([`BusMasterWatch`]): the descriptor list and every buffer piece it
//!   names must be pages the driver holds, within 32 bits; anything else is
//!   a violation.
//! * The miniport's port I/O goes over qtest ([`QemuIo`]), or, for the
//!   shipped image, its trapped `in`/`out` instructions do.
//! * The rig, the session and the HLK run over both QEMU cards are in
//!   [`crate::qemu_card`]; the concurrency stress on the AC'97 is here.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use wavert_com::KernelEvent;
use wavert_core::ac97::{nabm, RegisterBus, BDL_BYTES, RING_SLOTS};
use wavert_miniport::ac97::PortIo;
use wavert_miniport::adapter::{SubdeviceKind, AC97_SUBDEVICES};
use wavert_miniport::{Direction, LogLevel, Platform};
use wavert_qemu::machine::{BUS_MASTER_PORT, LOW_RAM_BYTES, RAM_BYTES};
use wavert_qemu::{Audiodev, Machine as Qemu};

use crate::cable::EmuLock;
use crate::concurrency::{run_stress, Endpoint, StressConfig, StressReport};
use crate::engine::FormatRequest;
use crate::faulty::Ac97Fault;
use crate::image::io_trap;
use crate::irql;
use crate::machine::{lock, Machine, QPC_FREQUENCY, QPC_PER_MS};
use crate::memory::{Fragmentation, Layout, MemoryConfig};
use crate::qemu_card::{QemuCard, Rig};

/// The file QEMU's `wav` audiodev writes, in the output folder.
pub const OUTPUT_WAV: &str = "ac97-qemu.wav";

/// The highest address the ICH bus master reaches: BDBAR and the
/// descriptors' buffer addresses are 32-bit fields.
pub const BUS_MASTER_REACH: u64 = 0xFFFF_FFFF;
/// Bus-master channels, 16 register bytes each, in register order.
const BUS_MASTER_CHANNEL_NAMES: [&str; 3] = ["PCM in", "PCM out", "mic in"];
const BUS_MASTER_CHANNELS: u16 = 3;
const BUS_MASTER_CHANNEL_BYTES: u16 = 0x10;
/// Distinct DMA violations reported per session; more of the same kind add
/// nothing and would flood the report.
const MAX_DMA_REPORTS: usize = 8;

/// The emulator's RAM as QEMU's guest RAM: the file's layout
/// ([`wavert_qemu::machine::RAM_LAYOUT`]: 128 MiB at 0, 128 MiB from
/// 4 GiB), the first MiB reserved, frames shuffled.
#[must_use]
pub const fn qemu_memory_config() -> MemoryConfig {
    MemoryConfig {
        size_bytes: RAM_BYTES,
        layout: Layout::Split {
            below_4g: LOW_RAM_BYTES,
        },
        reserved_low_bytes: 1 << 20,
        fragmentation: Fragmentation::Shuffled(0xAC97),
        page_budget: None,
    }
}

/// The ICH bus master's side of the DMA rules.
///
/// What a driver programs into QEMU's AC'97 is checked against the RAM
/// model ([`PhysicalMemory::check_dma`]) before QEMU acts on it. A BDBAR write
/// is remembered (a driver may clear it while the channel is idle); an LVI
/// write, or a CR write with the run bit, lets the engine fetch, so it
/// checks that channel's 256-byte descriptor list and every entry in it
/// with a length, read as the device reads them (32-bit address with the
/// low two bits cleared, length in 16-bit samples). Each piece must be in
/// pages the driver holds, within [`BUS_MASTER_REACH`]; a page that is the
/// low 32 bits of a held page above 4 GiB is a page the device could not
/// reach, handed to it cut.
pub struct BusMasterWatch {
    machine: Arc<Machine>,
    base: u16,
    lists: Mutex<[Option<u64>; BUS_MASTER_CHANNELS as usize]>,
    reported: Mutex<HashSet<String>>,
}

impl fmt::Debug for BusMasterWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusMasterWatch")
            .field("base", &self.base)
            .field("lists", &*lock(&self.lists))
            .finish_non_exhaustive()
    }
}

impl BusMasterWatch {
    /// The watch of the bus master at I/O port `base` over `machine`'s RAM.
    #[must_use]
    pub fn new(machine: &Arc<Machine>, base: u16) -> Self {
        Self {
            machine: Arc::clone(machine),
            base,
            lists: Mutex::new([None; BUS_MASTER_CHANNELS as usize]),
            reported: Mutex::new(HashSet::new()),
        }
    }

    /// A write of `width` bytes (1, 2 or 4) of `value` to I/O port `port`.
    pub fn on_write(&self, port: u16, width: u16, value: u32) {
        let Some(offset) = port.checked_sub(self.base) else {
            return;
        };
        let channel = usize::from(offset / BUS_MASTER_CHANNEL_BYTES);
        if channel >= usize::from(BUS_MASTER_CHANNELS) {
            return;
        }
        let register = offset % BUS_MASTER_CHANNEL_BYTES;
        let written = register..register + width;
        // The byte of `value` that lands on `at`.
        let byte_at =
            |at: u16| u8::try_from((value >> (8 * u32::from(at - register))) & 0xFF).unwrap_or(0);
        if register == nabm::BDBAR && width == 4 {
            lock(&self.lists)[channel] = Some(u64::from(value & !3));
        } else if written.contains(&nabm::LVI)
            || (written.contains(&nabm::CR) && byte_at(nabm::CR) & nabm::CR_RUN != 0)
        {
            self.check_entries(channel);
        }
    }

    /// `channel`'s descriptor list and every entry in it with a length.
    fn check_entries(&self, channel: usize) {
        let name = BUS_MASTER_CHANNEL_NAMES
            .get(channel)
            .copied()
            .unwrap_or("?");
        let Some(list) = lock(&self.lists)[channel] else {
            self.report(format!(
                "AC'97 bus master, {name}: started without a descriptor list (BDBAR never written)"
            ));
            return;
        };
        self.check(
            &format!("{name} descriptor list (BDBAR)"),
            list,
            u64::from(BDL_BYTES),
        );
        let mut entries = [0u8; BDL_BYTES as usize];
        if self
            .machine
            .memory
            .read_physical(list, &mut entries)
            .is_err()
        {
            // Reported by the check above.
            return;
        }
        for (slot, entry) in entries.chunks_exact(8).enumerate() {
            let word = |at: usize| {
                entry
                    .get(at..at + 4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_le_bytes)
            };
            let samples = word(4) & 0xFFFF;
            if samples == 0 {
                continue;
            }
            let address = u64::from(word(0) & !3);
            self.check(
                &format!("{name} descriptor {slot} of {RING_SLOTS}"),
                address,
                u64::from(samples) * 2,
            );
        }
    }

    fn check(&self, what: &str, address: u64, len: u64) {
        if let Err(e) = self
            .machine
            .memory
            .check_dma(address, len, BUS_MASTER_REACH)
        {
            self.report(format!("AC'97 bus master, {what}: {e}"));
        }
    }

    fn report(&self, violation: String) {
        let mut reported = lock(&self.reported);
        if reported.len() < MAX_DMA_REPORTS && reported.insert(violation.clone()) {
            drop(reported);
            self.machine.violation(violation);
        }
    }
}

/// Checks that the AC'97 session can play `request`: 16-bit stereo PCM at
/// 8 to 48 kHz (the codec's variable-rate DAC, QEMU's `wav` back-end at
/// the same rate).
///
/// # Errors
///
/// One line saying what is supported.
pub fn check_format(request: &FormatRequest) -> Result<(), String> {
    if request.float
        || request.bits != 16
        || request.channels != 2
        || !(8_000..=48_000).contains(&request.rate)
    {
        return Err(format!(
            "the AC'97 device plays 16-bit stereo PCM at 8000 to 48000 Hz only, not {} Hz {}-bit {}{} channel(s)",
            request.rate,
            request.bits,
            if request.float { "float " } else { "" },
            request.channels
        ));
    }
    Ok(())
}

// ---- the kernel services and port I/O over emulator + QEMU ----------------

/// The miniport's [`Platform`]: the machine's QPC, events and log, and a
/// DPC the coupling timer runs right after the interrupt (as the kernel runs
/// a DPC when the processor drops below `DISPATCH_LEVEL`).
pub struct Ac97Platform {
    machine: Arc<Machine>,
    dpc_queued: AtomicBool,
}

impl Ac97Platform {
    /// The platform over `machine`, no DPC queued.
    #[must_use]
    pub const fn new(machine: Arc<Machine>) -> Self {
        Self {
            machine,
            dpc_queued: AtomicBool::new(false),
        }
    }

    /// Takes the queued DPC: whether the ISR asked for one since the last
    /// call (the coupling runs it right after the interrupt, as the kernel
    /// runs a DPC when the processor drops below `DISPATCH_LEVEL`).
    pub fn take_dpc(&self) -> bool {
        self.dpc_queued.swap(false, Ordering::AcqRel)
    }
}

impl fmt::Debug for Ac97Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ac97Platform")
            .field("dpc_queued", &self.dpc_queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Platform for Ac97Platform {
    type Lock<T: Send> = EmuLock<T>;

    fn new_lock<T: Send>(&self, value: T) -> EmuLock<T> {
        EmuLock::on(&self.machine, value)
    }

    fn qpc(&self) -> u64 {
        self.machine.qpc()
    }

    fn qpc_frequency(&self) -> u64 {
        QPC_FREQUENCY
    }

    fn signal_event(&self, event: KernelEvent) {
        irql::as_kernel(|| {
            irql::require_at_most(&self.machine, "KeSetEvent", irql::DISPATCH_LEVEL);
            self.machine.set_event(event.as_raw());
        });
    }

    // The AC'97 device is interrupt-driven: no periodic timer.
    fn set_timer(&self, _due_in_100ns: u64) {}

    fn stop_timer(&self) {}

    fn queue_dpc(&self) -> bool {
        self.dpc_queued.store(true, Ordering::Release);
        true
    }

    fn log(&self, level: LogLevel, message: fmt::Arguments<'_>) {
        irql::as_kernel(|| self.machine.log(format!("{level:?}: {message}")));
    }
}

/// The miniport's port I/O over qtest, each bus-master write checked by a
/// [`BusMasterWatch`] first; a stall steps QEMU's clock.
pub struct QemuIo {
    qemu: Arc<Qemu>,
    watch: BusMasterWatch,
}

impl QemuIo {
    /// Port I/O on `qemu`'s I/O space, the card's bus master watched over
    /// `machine`'s RAM.
    #[must_use]
    pub fn new(qemu: Arc<Qemu>, machine: &Arc<Machine>) -> Self {
        Self {
            qemu,
            watch: BusMasterWatch::new(machine, BUS_MASTER_PORT),
        }
    }
}

impl fmt::Debug for QemuIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QemuIo")
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}

/// Each access is the hardware's (qtest's allocations are not the driver's).
impl PortIo for QemuIo {
    fn read8(&self, port: u16) -> u8 {
        irql::as_kernel(|| self.qemu.io_ports().read8(port))
    }
    fn read16(&self, port: u16) -> u16 {
        irql::as_kernel(|| self.qemu.io_ports().read16(port))
    }
    fn read32(&self, port: u16) -> u32 {
        irql::as_kernel(|| self.qemu.io_ports().read32(port))
    }
    fn write8(&self, port: u16, value: u8) {
        irql::as_kernel(|| {
            self.watch.on_write(port, 1, u32::from(value));
            self.qemu.io_ports().write8(port, value);
        });
    }
    fn write16(&self, port: u16, value: u16) {
        irql::as_kernel(|| {
            self.watch.on_write(port, 2, u32::from(value));
            self.qemu.io_ports().write16(port, value);
        });
    }
    fn write32(&self, port: u16, value: u32) {
        irql::as_kernel(|| {
            self.watch.on_write(port, 4, value);
            self.qemu.io_ports().write32(port, value);
        });
    }
    fn stall_us(&self, us: u32) {
        irql::as_kernel(|| {
            let _ = self.qemu.clock_step(u64::from(us) * 1_000);
        });
    }
}

/// The shipped image's port I/O: its trapped `in`/`out` instructions,
/// forwarded to QEMU over qtest (the image programs absolute ports), each
/// bus-master write checked first.
pub(crate) struct QemuTrappedIo {
    pub(crate) qemu: Arc<Qemu>,
    pub(crate) watch: BusMasterWatch,
}

impl io_trap::PortIoHandler for QemuTrappedIo {
    fn read(&self, port: u16, width: io_trap::PortWidth) -> u32 {
        let mut ports = self.qemu.io_ports();
        match width {
            io_trap::PortWidth::Byte => u32::from(ports.read8(port)),
            io_trap::PortWidth::Word => u32::from(ports.read16(port)),
            io_trap::PortWidth::Dword => ports.read32(port),
        }
    }

    fn write(&self, port: u16, width: io_trap::PortWidth, value: u32) {
        let bytes = match width {
            io_trap::PortWidth::Byte => 1,
            io_trap::PortWidth::Word => 2,
            io_trap::PortWidth::Dword => 4,
        };
        self.watch.on_write(port, bytes, value);
        let mut ports = self.qemu.io_ports();
        match width {
            io_trap::PortWidth::Byte => ports.write8(port, u8::try_from(value & 0xFF).unwrap_or(0)),
            io_trap::PortWidth::Word => {
                ports.write16(port, u16::try_from(value & 0xFFFF).unwrap_or(0));
            }
            io_trap::PortWidth::Dword => ports.write32(port, value),
        }
    }
}

/// What a DMA engine running on freed memory looks like from the bus
/// master: a channel that runs (run bit set, not halted) whose descriptor
/// list, or whose current entry's buffer, `check(address, bytes)` refuses
/// (the RAM model's [`PhysicalMemory::check_dma`]: pages nobody holds any
/// more). `read_u32(address)` reads RAM. Empty when none.
pub(crate) fn dma_on_freed_memory(
    bus: &mut impl RegisterBus,
    check: &dyn Fn(u64, u64) -> Result<(), String>,
    read_u32: &dyn Fn(u64) -> Option<u32>,
) -> Vec<String> {
    let mut found = Vec::new();
    for (name, base) in [("PCM out", nabm::PCM_OUT), ("PCM in", nabm::PCM_IN)] {
        let control = bus.read8(base + nabm::CR);
        let status = bus.read16(base + nabm::SR);
        if control & nabm::CR_RUN == 0 || status & nabm::SR_HALTED != 0 {
            continue;
        }
        let list = u64::from(bus.read32(base + nabm::BDBAR));
        if let Err(what) = check(list, u64::from(BDL_BYTES)) {
            found.push(format!(
                "use after free: the AC'97 {name} bus master runs on its descriptor list: {what}"
            ));
            continue;
        }
        let current = u64::from(bus.read8(base + nabm::CIV)) % u64::from(RING_SLOTS);
        let entry = list + current * 8;
        let (Some(address), Some(control)) = (read_u32(entry), read_u32(entry + 4)) else {
            continue;
        };
        // 32-bit address, low bits cleared; length in 16-bit samples.
        let bytes = u64::from(control & 0xFFFF) * 2;
        if let Err(what) = check(u64::from(address & !3), bytes) {
            found.push(format!(
                "use after free: the AC'97 {name} bus master runs on entry {current}: {what}"
            ));
        }
    }
    found
}

/// Both bus-master channels' control and status, for a coupling failure.
pub(crate) fn bus_master_state(qemu: &Qemu) -> String {
    let mut bus = qemu.bus_master();
    [("PCM out", nabm::PCM_OUT), ("PCM in", nabm::PCM_IN)]
        .iter()
        .map(|&(name, base)| {
            format!(
                "{name}: CR {:#04x} SR {:#06x} CIV {} LVI {}",
                bus.read8(base + nabm::CR),
                bus.read16(base + nabm::SR),
                bus.read8(base + nabm::CIV),
                bus.read8(base + nabm::LVI)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The concurrency stress ([`crate::concurrency`]) on the host-built AC'97
/// miniport on QEMU's AC'97.
///
/// One engine thread alternates between the
/// render and the capture endpoint (QEMU 7.2 drops the shared interrupt
/// line when either channel's status clears, so the two channels do not
/// run at once), 48 kHz 16-bit stereo, buffers of 100 and 60 ms; the
/// device thread steps QEMU 1 ms at a time, the ISR runs there at device
/// IRQL and the DPC after it. `config.device_step` is the coupling's 1 ms.
///
/// # Errors
///
/// QEMU cannot be set up or the driver does not start.
pub fn run_ac97_stress(config: &StressConfig) -> Result<StressReport, String> {
    const RATE: u32 = 48_000;
    let mut rig = Rig::start(
        QemuCard::Ac97,
        &Audiodev::None { frequency: RATE },
        None,
        config.personality,
        Ac97Fault::None,
    )?;
    let mut endpoints = Vec::new();
    for direction in Direction::BOTH {
        let name = AC97_SUBDEVICES
            .iter()
            .find(|s| s.kind == SubdeviceKind::Wave(direction))
            .map(|s| s.name)
            .ok_or("no AC'97 wave subdevice for a direction")?;
        let (wave, description) = rig
            .wave(name)
            .ok_or_else(|| format!("no wave filter registered as {name}"))?;
        endpoints.push(Endpoint {
            name: name.to_owned(),
            wave,
            description,
            pin: 0,
            capture: direction == Direction::Capture,
            format: FormatRequest {
                rate: RATE,
                ..FormatRequest::default()
            },
            buffer_ms: vec![100, 60],
        });
    }
    rig.watch_dma.store(true, Ordering::Release);
    let config = StressConfig {
        device_step: QPC_PER_MS,
        ..*config
    };
    let device = format!(
        "AC'97 (host build) on QEMU's AC'97, port {:?}",
        config.personality
    );
    let mut report = run_stress(&rig.machine, &device, vec![endpoints], &config);
    if let Some(fault) = rig.fault() {
        report
            .failures
            .push(format!("the coupling with QEMU failed: {fault}"));
    }
    rig.remove();
    report.finish(&rig.machine);
    rig.qemu.check()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::ClockMode;
    use crate::memory::{PhysicalMemory, HIGH_RAM_BASE, PAGE_SIZE};
    use wavert_qemu::machine::MIXER_PORT;

    #[test]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "addresses cut to 32 bits on purpose"
    )]
    fn the_bus_master_watch_checks_what_the_engine_may_fetch() {
        const RUN_BITS: u8 = nabm::CR_RUN | nabm::CR_COMPLETION_INTERRUPT;
        let memory = PhysicalMemory::anonymous(MemoryConfig::default()).unwrap();
        let machine = Machine::new(memory, ClockMode::Virtual);
        let memory = &machine.memory;
        let watch = BusMasterWatch::new(&machine, BUS_MASTER_PORT);
        let pcm_out = BUS_MASTER_PORT + nabm::PCM_OUT;
        let page = |low, high| {
            let mdl = memory.allocate_contiguous(low, high, PAGE_SIZE).unwrap();
            memory.page_address(mdl, 0).unwrap()
        };
        let list = page(0, BUS_MASTER_REACH);
        let low = page(0, BUS_MASTER_REACH);
        let high = page(HIGH_RAM_BASE, u64::MAX);
        let entry = |slot: u64, address: u64, samples: u32| {
            let mut bytes = (address as u32).to_le_bytes().to_vec();
            bytes.extend_from_slice(&samples.to_le_bytes());
            memory.write_physical(list + slot * 8, &bytes).unwrap();
        };
        let violations = || machine.violations();

        watch.on_write(pcm_out + nabm::LVI, 1, 0);
        assert!(violations()[0].contains("PCM out: started without a descriptor list"));
        // A list in a held page naming a held page (IOC and BUP set).
        entry(0, low, (3 << 30) | 2048);
        watch.on_write(pcm_out + nabm::BDBAR, 4, list as u32);
        watch.on_write(pcm_out + nabm::LVI, 1, 0);
        watch.on_write(pcm_out + nabm::CR, 1, u32::from(RUN_BITS));
        assert_eq!(violations().len(), 1, "{:?}", violations());
        // A page above 4 GiB, cut: not checked while the run bit stays off.
        entry(1, high, 8);
        watch.on_write(pcm_out + nabm::CR, 1, u32::from(nabm::CR_RESET));
        assert_eq!(violations().len(), 1);
        watch.on_write(pcm_out + nabm::CR, 1, u32::from(RUN_BITS));
        let cut = violations();
        assert_eq!(cut.len(), 2, "{cut:?}");
        assert!(cut[1].contains("PCM out descriptor 1 of 32"), "{}", cut[1]);
        assert!(
            cut[1].contains(&format!("page {high:#x} cut to the device's address bits")),
            "{}",
            cut[1]
        );
        // Reported once, however often the engine is restarted.
        watch.on_write(pcm_out + nabm::LVI, 1, 1);
        assert_eq!(violations().len(), 2);
        // A list in a page nobody holds (a dword write at CIV covers LVI).
        watch.on_write(pcm_out + nabm::BDBAR, 4, 0x2000);
        watch.on_write(pcm_out + nabm::CIV, 4, 0);
        let stray = violations();
        assert!(
            stray[2].contains("PCM out descriptor list (BDBAR)")
                && stray[2].contains("held by no MDL"),
            "{stray:?}"
        );
        // Other registers and windows start nothing.
        let before = violations().len();
        watch.on_write(BUS_MASTER_PORT + nabm::GLOB_CNT, 4, 0x3);
        watch.on_write(BUS_MASTER_PORT + nabm::PCM_IN + nabm::SR, 2, 0x1C);
        watch.on_write(MIXER_PORT, 2, 0);
        assert_eq!(violations().len(), before);
    }

    #[test]
    fn other_formats_are_refused_in_one_line() {
        for (rate, bits, channels, float) in [
            (96_000, 16, 2, false),
            (48_000, 24, 2, false),
            (48_000, 16, 1, false),
            (48_000, 32, 2, true),
            (4_000, 16, 2, false),
        ] {
            let request = FormatRequest {
                rate,
                bits,
                channels,
                float,
                container_bits: 0,
            };
            let error = check_format(&request).unwrap_err();
            assert!(error.contains("16-bit stereo"), "{error}");
            assert!(!error.contains('\n'));
        }
        for rate in [8_000, 44_100, 48_000] {
            let request = FormatRequest {
                rate,
                ..FormatRequest::default()
            };
            assert!(check_format(&request).is_ok());
        }
    }

    #[test]
    fn a_bus_master_running_on_pages_nobody_holds_is_reported() {
        use wavert_core::ac97::sim::{SimAc97, SimMemory};
        use wavert_core::ac97::DmaMemory as _;
        const LIST: u64 = 0x0010_0000;
        const BUFFER: u64 = 0x0020_3000;
        let memory = SimMemory::new(LIST);
        let mut entry = Vec::new();
        entry.extend_from_slice(&u32::try_from(BUFFER).unwrap_or(0).to_le_bytes());
        entry.extend_from_slice(&(0x8000_0000u32 | 1024).to_le_bytes());
        (&memory).write(LIST, &entry);
        let mut sim = SimAc97::new();
        let read = |address: u64| Some(memory.read_u32(address));
        let check = |sim: &mut SimAc97, held: &[u64]| {
            let holds = |address: u64, bytes: u64| {
                let last = address + bytes.max(1) - 1;
                (address & !0xFFF..=last & !0xFFF)
                    .step_by(0x1000)
                    .find(|page| !held.contains(page))
                    .map_or(Ok(()), |page| {
                        Err(format!("page {page:#x} is held by no MDL"))
                    })
            };
            dma_on_freed_memory(&mut sim.bus_master(&memory), &holds, &read)
        };
        // Stopped: nothing runs, whatever is freed.
        assert!(check(&mut sim, &[]).is_empty());
        {
            let mut bus = sim.bus_master(&memory);
            bus.write32(
                nabm::PCM_OUT + nabm::BDBAR,
                u32::try_from(LIST).unwrap_or(0),
            );
            bus.write8(nabm::PCM_OUT + nabm::LVI, 0);
            bus.write8(nabm::PCM_OUT + nabm::CR, nabm::CR_RUN);
        }
        assert!(
            check(&mut sim, &[LIST, BUFFER]).is_empty(),
            "both pages held"
        );
        let freed_buffer = check(&mut sim, &[LIST]);
        assert_eq!(freed_buffer.len(), 1, "{freed_buffer:?}");
        assert!(
            freed_buffer[0]
                .contains("PCM out bus master runs on entry 0: page 0x203000 is held by no MDL"),
            "{freed_buffer:?}"
        );
        let freed_list = check(&mut sim, &[BUFFER]);
        assert!(
            freed_list[0].contains(
                "PCM out bus master runs on its descriptor list: page 0x100000 is held by no MDL"
            ),
            "{freed_list:?}"
        );
        // The driver's stop: not running any more.
        sim.bus_master(&memory)
            .write8(nabm::PCM_OUT + nabm::CR, nabm::CR_RESET);
        assert!(check(&mut sim, &[]).is_empty());
    }
}
