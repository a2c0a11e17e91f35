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
//! * `StartDevice` is the miniport crate's own [`install_ac97`] over
//!   [`EmuPortCls`], with an `IResourceList` of the two I/O BARs (mixer
//!   and bus master) and the interrupt, and an [`InterruptLine`] as its
//!   `IInterruptSync`. The miniport's port I/O goes over qtest.
//! * A 1 ms machine timer couples the clocks: it steps QEMU by 1 ms, raises
//!   the interrupt line while QEMU's IRQ is asserted (the miniport's ISR
//!   claims it), then runs the DPC the ISR queued.
//! * The engine ([`Stream`]) opens the render pin through the vtables and
//!   streams event-driven; afterwards QEMU's WAV output is compared with
//!   the input byte for byte after its leading silence.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use portcls_sys::{IMiniportWaveRT, KSSTATE_RUN, PCFILTER_DESCRIPTOR};
use wavert_com::{ComPtr, KernelEvent};
use wavert_core::ac97::{nabm, ChannelStats, RegisterBus, BDL_BYTES, RING_SLOTS};
use wavert_core::format::AudioFormat;
use wavert_miniport::ac97::{Ac97Device, Ac97Stats, PortIo};
use wavert_miniport::adapter::{install_ac97, install_ac97_as, Registration, AC97_SUBDEVICES};
use wavert_miniport::{Direction, LogLevel, Platform};
use wavert_qemu::machine::{AC97_IRQ, BUS_MASTER_PORT, LOW_RAM_BYTES, MIXER_PORT, RAM_BYTES};
use wavert_qemu::{ensure_qemu, Audiodev, Machine as Qemu};

use crate::cable::{CableAdapter, EmuLock, EmuPortCls};
use crate::concurrency::{run_stress, Endpoint, StressConfig, StressReport};
use crate::engine::{negotiate_format, FormatRequest, Stream};
use crate::faulty::{Ac97Fault, FaultyAc97};
use crate::hlk::methods::{run_all, HlkConfig, HostPin, Loopback, MethodReport};
use crate::hlk::Finding;
use crate::image::{io_trap, start_image_adapter, ImageDevice};
use crate::irql;
use crate::ks::KsFilter;
use crate::ks_formats::check_wave_filter_formats;
use crate::ks_topology::{check_topology_filter, endpoint_channels};
use crate::machine::{lock, ClockMode, Machine, TimerCallback, QPC_FREQUENCY, QPC_PER_MS};
use crate::memory::{Fragmentation, Layout, MemoryConfig, PhysicalMemory, HIGH_RAM_BASE};
use crate::personality::PortPersonality;
use crate::port::{new_resource_list, InterruptLine, ResourceDescriptor};
use crate::signal;

/// The file QEMU's `wav` audiodev writes, in the output folder.
pub const OUTPUT_WAV: &str = "ac97-qemu.wav";

/// Bytes per frame of the only format the session plays (16-bit stereo).
const FRAME_BYTES: u32 = 4;
/// One coupling step.
const MS_NS: u64 = 1_000_000;
/// Most interrupt services in one step before the line counts as stuck.
const MAX_SERVICES_PER_STEP: u32 = 16;
/// Virtual time run past the end of the input, beyond one buffer, so the
/// last of it leaves QEMU's mixing buffer (two 10 ms audio ticks).
const TAIL_MS: u64 = 100;

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

/// What to play.
#[derive(Clone, Debug)]
pub struct Ac97Options {
    /// The WAV file to play (`None`: the generated test signal).
    pub input: Option<PathBuf>,
    /// The format (the input file's own when there is one).
    pub format: FormatRequest,
    /// Seconds of generated signal.
    pub seconds: f64,
    /// One period (packet) in milliseconds; the buffer holds two.
    pub period_ms: u32,
    /// Notification events per buffer (1 or 2).
    pub notifications: u32,
    /// Where QEMU's WAV output ([`OUTPUT_WAV`]) goes.
    pub output_dir: PathBuf,
    /// Run the shipped driver image instead of the host-built miniport
    /// (its `in`/`out` instructions trapped and forwarded to QEMU).
    pub image: Option<PathBuf>,
    /// The port personality the emulated PortCls follows.
    pub personality: PortPersonality,
    /// A fault in the host build's back-end ([`Ac97Fault::None`]: none).
    pub fault: Ac97Fault,
}

/// What the session saw.
#[derive(Clone, Debug)]
pub struct Ac97Report {
    /// The negotiated format.
    pub format: AudioFormat,
    /// Registered subdevices, in order.
    pub subdevices: Vec<String>,
    /// Physical connections registered.
    pub connections: usize,
    /// The render buffer granted, in bytes.
    pub buffer_bytes: u32,
    /// Its pages (physical addresses in QEMU's guest RAM).
    pub buffer_pages: Vec<u64>,
    /// Where guest RAM is ([`wavert_qemu::RamLayout::describe`]).
    pub memory: String,
    /// Notification events per buffer.
    pub notification_count: u32,
    /// Bytes of input played.
    pub input_bytes: usize,
    /// Bytes of audio in QEMU's WAV output.
    pub output_bytes: usize,
    /// Bytes of silence QEMU wrote before the first sound.
    pub leading_silence_bytes: usize,
    /// Bytes of the input (after its own leading silence) that reached the
    /// output unchanged before the first difference or the end.
    pub matched_bytes: usize,
    /// Bytes of the input after its own leading silence.
    pub expected_bytes: usize,
    /// Byte offset (in the input) of the first byte that differs.
    pub first_difference: Option<usize>,
    /// Which build ran.
    pub build: String,
    /// The render channel's counters (the host build's; the image keeps
    /// its own inside).
    pub channel: Option<ChannelStats>,
    /// The device's counters (the host build's).
    pub device: Option<Ac97Stats>,
    /// Interrupts the emulated line delivered to the driver's ISR.
    pub interrupts_delivered: u32,
    /// Notification events the engine handled.
    pub notifications: u64,
    /// Packets the engine wrote behind the play position.
    pub glitches: u64,
    /// AC'97 register accesses while running.
    pub register_accesses: u64,
    /// Virtual time run, in milliseconds.
    pub virtual_ms: u64,
    /// Wall time of the whole session, in seconds.
    pub wall_seconds: f64,
    /// Pages still allocated after the stream closed.
    pub leaked_pages: usize,
    /// Port objects still alive after removal.
    pub live_objects: usize,
    /// Protocol violations the machine recorded.
    pub violations: Vec<String>,
    /// The port personality the emulated PortCls followed.
    pub personality: PortPersonality,
    /// The orders it used, and what the miniport made of them.
    pub orders: Vec<crate::personality::OrderRecord>,
    /// QEMU's WAV output.
    pub wav_path: PathBuf,
}

impl Ac97Report {
    /// Whether the whole input reached QEMU's output unchanged, after the
    /// leading silence.
    #[must_use]
    pub const fn byte_exact(&self) -> bool {
        self.first_difference.is_none() && self.matched_bytes == self.expected_bytes
    }

    /// Byte-exact, no halts, FIFO errors, service errors, glitches, leaks or
    /// protocol violations.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.byte_exact()
            && self
                .channel
                .is_none_or(|c| c.halts == 0 && c.fifo_errors == 0)
            && self.device.is_none_or(|d| d.service_errors == 0)
            && self.glitches == 0
            && self.leaked_pages == 0
            && self.live_objects == 0
            && self.violations.is_empty()
    }

    /// The report, one line per figure.
    #[must_use]
    #[allow(
        clippy::cast_precision_loss,
        reason = "figures for the report: counts stay far below 2^52"
    )]
    #[allow(clippy::too_many_lines, reason = "the report, in order")]
    pub fn lines(&self) -> Vec<String> {
        let f = &self.format;
        let rate = f64::from(f.sample_rate());
        let frame = f64::from(f.block_align());
        let page = crate::memory::PAGE_SIZE;
        let audio_s = self.input_bytes as f64 / frame / rate;
        let interrupts = self
            .channel
            .map_or_else(|| u64::from(self.interrupts_delivered), |c| c.interrupts);
        let isr = self.channel.map_or_else(
            || "ISR inside the image".to_owned(),
            |c| {
                format!(
                    "ISR {:.2} register accesses per interrupt, {} not ours",
                    c.interrupt_register_accesses as f64 / interrupts.max(1) as f64,
                    c.not_mine
                )
            },
        );
        let dpcs = self.device.map_or_else(
            || "DPCs inside the image".to_owned(),
            |d| format!("{} DPCs", d.dpcs_queued),
        );
        let halts = match (self.channel, self.device) {
            (Some(c), Some(d)) => format!(
                "{} ({} FIFO errors, {} run-bit restarts, {} service errors)",
                c.halts, c.fifo_errors, c.run_bit_restarts, d.service_errors
            ),
            _ => "counted inside the image (the byte-exact check covers them)".to_owned(),
        };
        vec![
            format!("build            : {}", self.build),
            format!(
                "device           : AC'97 miniport (wavert-miniport) on QEMU's ICH AC'97 over qtest, through the emulated PortCls, virtual clock"
            ),
            format!("subdevices       : {} ({} connections)", self.subdevices.join(", "), self.connections),
            format!(
                "port             : {} personality; {}",
                self.personality,
                crate::personality::summarise(&self.orders)
            ),
            format!(
                "format           : {} Hz, {} bit, {} ch, {} bytes/frame",
                f.sample_rate(),
                f.valid_bits(),
                f.channels(),
                f.block_align()
            ),
            format!(
                "memory           : {}; buffer pages above 4 GiB: {} of {} (the bus master reaches {BUS_MASTER_REACH:#x})",
                self.memory,
                self.buffer_pages.iter().filter(|&&p| p >= HIGH_RAM_BASE).count(),
                self.buffer_pages.len()
            ),
            format!(
                "buffer           : {} bytes ({:.1} ms, {} pages, {} notifications per buffer)",
                self.buffer_bytes,
                f64::from(self.buffer_bytes) / frame / rate * 1000.0,
                (self.buffer_bytes as usize).div_ceil(page),
                self.notification_count
            ),
            format!(
                "played           : {audio_s:.3} s of audio in {:.3} s virtual, {:.2} s wall",
                self.virtual_ms as f64 / 1000.0,
                self.wall_seconds
            ),
            format!(
                "interrupts       : {interrupts} ({:.1}/s), {isr}, {dpcs}",
                interrupts as f64 / (self.virtual_ms.max(1) as f64 / 1000.0),
            ),
            format!(
                "register accesses: {} while running",
                self.register_accesses
            ),
            format!("halts            : {halts}"),
            format!(
                "notifications    : {} (glitches {})",
                self.notifications, self.glitches
            ),
            format!(
                "byte-exact       : {} ({} of {} bytes match after {} bytes ({:.1} ms) of leading silence{})",
                if self.byte_exact() { "yes" } else { "NO" },
                self.matched_bytes,
                self.expected_bytes,
                self.leading_silence_bytes,
                self.leading_silence_bytes as f64 / frame / rate * 1000.0,
                self.first_difference
                    .map_or_else(String::new, |d| format!(", first difference at input byte {d}"))
            ),
            format!(
                "leaks            : {} pages, {} port objects alive",
                self.leaked_pages, self.live_objects
            ),
            format!(
                "violations       : {}",
                if self.violations.is_empty() {
                    "none".to_owned()
                } else {
                    self.violations.join("; ")
                }
            ),
            format!("output           : {} ({} bytes of audio)", self.wav_path.display(), self.output_bytes),
        ]
    }
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

type Device = Ac97Device<Ac97Platform, QemuIo>;

/// The shipped image's port I/O: its trapped `in`/`out` instructions,
/// forwarded to QEMU over qtest (the image programs absolute ports), each
/// bus-master write checked first.
struct QemuTrappedIo {
    qemu: Arc<Qemu>,
    watch: BusMasterWatch,
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

/// The driver on the card: the host-built miniport, or the shipped image.
enum Ac97Driver {
    Host {
        device: Arc<Device>,
        /// What `StartDevice` registered (the glue keeps it in the device
        /// extension for its `IRP_MJ_PNP` handler).
        registration: Registration,
        /// PortCls of the device: its ports and registrations.
        services: EmuPortCls,
    },
    Image(CableAdapter),
}

/// One coupling step: QEMU 1 ms on, the interrupt delivered while the line
/// is up, then the queued DPC (`run_dpc`).
///
/// An ISR that does not claim the interrupt is a failure only if the line
/// is still up afterwards: with the driver on another processor, the
/// device may drop the line (a channel reset under the interrupt lock)
/// between the moment it is seen up and the moment the ISR gets the
/// lock, which a real machine sees as a spurious interrupt.
fn couple(qemu: &Qemu, line: &InterruptLine, run_dpc: &dyn Fn()) -> Result<(), String> {
    qemu.clock_step(MS_NS)?;
    let mut services = 0;
    while qemu.interrupt_pending() {
        if services == MAX_SERVICES_PER_STEP {
            return Err(format!("QEMU's IRQ {AC97_IRQ} stays asserted"));
        }
        if !line.raise() && qemu.interrupt_pending() {
            return Err(format!(
                "the miniport's ISR did not claim its interrupt, which stays asserted ({})",
                bus_master_state(qemu)
            ));
        }
        services += 1;
    }
    run_dpc();
    Ok(())
}

/// What a DMA engine running on freed memory looks like from the bus
/// master: a channel that runs (run bit set, not halted) whose descriptor
/// list, or whose current entry's buffer, `check(address, bytes)` refuses
/// (the RAM model's [`PhysicalMemory::check_dma`]: pages nobody holds any
/// more). `read_u32(address)` reads RAM. Empty when none.
fn dma_on_freed_memory(
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
fn bus_master_state(qemu: &Qemu) -> String {
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

/// What runs the driver's deferred step after the coupling's interrupts.
type RunDpc = Box<dyn Fn() + Send + Sync>;

/// `StartDevice` of the host-built AC'97 miniport on the card, its wave
/// subdevices behind `fault` ([`Ac97Fault::None`]: the product as it is).
fn install_host(
    qemu: &Arc<Qemu>,
    machine: &Arc<Machine>,
    line: &Arc<InterruptLine>,
    descriptors: &[ResourceDescriptor],
    fault: Ac97Fault,
) -> Result<(Ac97Driver, RunDpc), String> {
    let services = EmuPortCls::new(Arc::clone(machine), None)
        .with_interrupt_line(Arc::clone(line))
        .with_resources(descriptors);
    let resources = new_resource_list(machine, descriptors);
    let platform = Ac97Platform::new(Arc::clone(machine));
    let io = QemuIo::new(Arc::clone(qemu), machine);
    let installed = if fault == Ac97Fault::None {
        install_ac97(&services, platform, io, &resources)
    } else {
        install_ac97_as(&services, platform, io, &resources, |device| {
            Arc::new(FaultyAc97::new(Arc::clone(device), fault))
        })
    };
    let (device, registration) = match installed {
        Ok(started) => started,
        Err(e) => {
            services.release_all();
            return Err(format!("StartDevice failed: {:#010x}", e.code()));
        }
    };
    let driver = Ac97Driver::Host {
        device: Arc::clone(&device),
        registration,
        services,
    };
    // The host build's ISR and synchronized routines are driver code whose
    // heap use is checked (the image's are not: it has no Rust heap here).
    line.check_driver_heap();
    let dpc_machine = Arc::downgrade(machine);
    let run_dpc: RunDpc = Box::new(move || {
        let Some(machine) = dpc_machine.upgrade() else {
            return;
        };
        if device.platform().take_dpc() {
            irql::run_driver_routine(&machine, irql::DISPATCH_LEVEL, "the AC'97 DPC", || {
                device.on_dpc();
            });
        }
    });
    Ok((driver, run_dpc))
}

/// `DriverEntry`, `AddDevice` and `StartDevice` of the shipped image on the
/// card: its port I/O trapped and sent to QEMU, its stalls run QEMU's clock,
/// its DPCs run by the kernel stand-in.
fn install_image(
    qemu: &Arc<Qemu>,
    machine: &Arc<Machine>,
    line: &Arc<InterruptLine>,
    descriptors: &[ResourceDescriptor],
    path: &Path,
) -> Result<(Ac97Driver, RunDpc), String> {
    let stepped = Arc::clone(qemu);
    let device = ImageDevice {
        resources: descriptors.to_vec(),
        interrupt: Some(Arc::clone(line)),
        fail_portcls_call: None,
        // A busy wait lets QEMU's clock run as long.
        stall: Some(Box::new(move |us| {
            let _ = stepped.clock_step(u64::from(us) * 1_000);
        })),
        port_io: Some(Arc::new(QemuTrappedIo {
            qemu: Arc::clone(qemu),
            watch: BusMasterWatch::new(machine, BUS_MASTER_PORT),
        })),
        registry: Vec::new(),
    };
    let adapter = start_image_adapter(machine, path, device)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let kernel = adapter
        .image()
        .map(|driver| Arc::clone(driver.kernel()))
        .ok_or("the image adapter has no image")?;
    Ok((
        Ac97Driver::Image(adapter),
        Box::new(move || kernel.run_dpcs()),
    ))
}

/// QEMU, the machine over its RAM, and the installed device. Dropping it
/// stops the coupling timer and removes the device (PortCls unregisters
/// the subdevices and releases the ports); QEMU goes with the last
/// reference.
struct Rig {
    qemu: Arc<Qemu>,
    machine: Arc<Machine>,
    driver: Option<Ac97Driver>,
    /// The card's interrupt line (released at removal, like the rest).
    line: Option<Arc<InterruptLine>>,
    timer: Option<u64>,
    fault: Arc<Mutex<Option<String>>>,
    /// The back-end fault the host build was installed with.
    backend_fault: Ac97Fault,
    /// Whether each coupling step checks that the bus master runs only on
    /// pages the driver holds ([`dma_on_freed_memory`]).
    watch_dma: Arc<AtomicBool>,
}

impl Rig {
    fn start(
        audiodev: &Audiodev,
        image: Option<&Path>,
        personality: PortPersonality,
        fault: Ac97Fault,
    ) -> Result<Self, String> {
        let install = ensure_qemu().map_err(|e| {
            let reason: Vec<&str> = e.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            format!("QEMU could not be set up: {}", reason.join("; "))
        })?;
        let qemu = Arc::new(
            Qemu::start(&install, audiodev).map_err(|e| format!("QEMU did not start: {e}"))?,
        );
        qemu.firmware_setup()
            .map_err(|e| format!("QEMU firmware setup failed: {e}"))?;
        let memory = PhysicalMemory::with_file(qemu.ram().path(), qemu_memory_config())
            .map_err(|e| format!("{}: {e}", qemu.ram().path().display()))?;
        let machine = Machine::new(memory, ClockMode::Virtual);
        machine.set_personality(personality);
        let line = Arc::new(InterruptLine::new(&machine));
        // The PCI resources of the card: the two I/O BARs and the IRQ.
        let descriptors = [
            ResourceDescriptor::port(u64::from(MIXER_PORT), 1024),
            ResourceDescriptor::port(u64::from(BUS_MASTER_PORT), 256),
            ResourceDescriptor::interrupt(u16::from(AC97_IRQ), u32::from(AC97_IRQ), 1),
        ];
        let mut rig = Self {
            qemu: Arc::clone(&qemu),
            machine: Arc::clone(&machine),
            driver: None,
            line: Some(Arc::clone(&line)),
            timer: None,
            fault: Arc::new(Mutex::new(None)),
            backend_fault: fault,
            watch_dma: Arc::new(AtomicBool::new(false)),
        };
        let (driver, run_dpc) = match image {
            None => install_host(&qemu, &machine, &line, &descriptors, fault)?,
            Some(_) if fault != Ac97Fault::None => {
                return Err("faults are injected into the host build, not the image".to_owned())
            }
            Some(path) => install_image(&qemu, &machine, &line, &descriptors, path)?,
        };
        rig.driver = Some(driver);
        let fault = Arc::clone(&rig.fault);
        let watch_dma = Arc::clone(&rig.watch_dma);
        let watched = Arc::downgrade(&machine);
        let callback: TimerCallback = Arc::new(move |_now| {
            let mut fault = lock(&fault);
            if fault.is_none() {
                *fault = couple(&qemu, &line, &*run_dpc).err();
            }
            drop(fault);
            if let Some(machine) = watched
                .upgrade()
                .filter(|_| watch_dma.load(Ordering::Acquire))
            {
                // Under the interrupt lock: the driver stops a channel under
                // it before it frees the channel's pages, so the engine is
                // seen either running on pages still held or stopped.
                let found = line.with_interrupt_lock(|| {
                    dma_on_freed_memory(
                        &mut qemu.bus_master(),
                        &|address, bytes| {
                            machine.memory.check_dma(address, bytes, BUS_MASTER_REACH)
                        },
                        &|address| {
                            let mut word = [0u8; 4];
                            machine.memory.read_physical(address, &mut word).ok()?;
                            Some(u32::from_le_bytes(word))
                        },
                    )
                });
                for what in found {
                    machine.violation(what);
                }
            }
        });
        rig.timer = Some(machine.start_timer(QPC_PER_MS, callback));
        Ok(rig)
    }

    /// Which build runs.
    fn build(&self) -> String {
        match &self.driver {
            Some(Ac97Driver::Image(adapter)) => adapter
                .image()
                .map_or_else(String::new, crate::image::ImageDriver::describe),
            _ if self.backend_fault != Ac97Fault::None => {
                format!(
                    "host build of wavert-miniport, back-end fault {:?}",
                    self.backend_fault
                )
            }
            _ => "host build of wavert-miniport".to_owned(),
        }
    }

    /// The filter registered as `name` as a KS client sees it.
    fn ks_filter(&self, name: &str) -> Option<KsFilter> {
        match self.driver.as_ref()? {
            Ac97Driver::Host { services, .. } => services
                .with_registered_port(name, KsFilter::of_port)
                .flatten(),
            Ac97Driver::Image(adapter) => adapter.ks_filter(name),
        }
    }

    /// The wave filter registered as `name`.
    fn wave(&self, name: &str) -> Option<(ComPtr<IMiniportWaveRT>, &'static PCFILTER_DESCRIPTOR)> {
        match self.driver.as_ref()? {
            Ac97Driver::Host { services, .. } => services
                .with_registered_port(name, |port| {
                    Some((port.wave_miniport()?, port.description()?))
                })
                .flatten(),
            Ac97Driver::Image(adapter) => {
                let filter = adapter.wave_filter(name)?;
                Some((filter.miniport, filter.description))
            }
        }
    }

    /// A failure the coupling timer recorded.
    fn fault(&self) -> Option<String> {
        lock(&self.fault).clone()
    }

    /// Stops the timer and removes the device.
    fn remove(&mut self) {
        if let Some(timer) = self.timer.take() {
            self.machine.cancel_timer(timer);
        }
        self.line = None;
        match self.driver.take() {
            Some(Ac97Driver::Host {
                device,
                mut registration,
                services,
            }) => {
                // The driver's IRP_MN_REMOVE_DEVICE handling, then PortCls's.
                let log = |level, message: std::fmt::Arguments<'_>| device.log(level, message);
                let _ = registration.unregister(&log);
                drop(device);
                services.release_all();
            }
            Some(Ac97Driver::Image(adapter)) => adapter.remove(),
            None => {}
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The samples in a WAV file QEMU wrote, to the end of the file: QEMU may
/// not have fixed the sizes up when it was stopped (see
/// [`signal::wav_data`]).
fn wav_data(file: &[u8]) -> Result<&[u8], String> {
    signal::wav_data(file)
        .map(|wav| wav.data)
        .map_err(|e| format!("QEMU's output: {e}"))
}

/// Bytes of whole silent frames at the start.
fn leading_silence(pcm: &[u8], block: usize) -> usize {
    pcm.chunks_exact(block)
        .take_while(|f| f.iter().all(|&b| b == 0))
        .count()
        * block
}

/// Plays the input through the AC'97 miniport on QEMU and compares QEMU's
/// output with it.
///
/// # Errors
///
/// An unsupported format, QEMU that cannot be set up or started, a failing
/// miniport call or coupling step, or unreadable/unwritable files.
#[allow(
    clippy::too_many_lines,
    reason = "the session in Windows' order: start, stream, stop, remove, compare"
)]
pub fn run_ac97_session(options: &Ac97Options) -> Result<Ac97Report, String> {
    let started = Instant::now();
    check_format(&options.format)?;
    if !(options.seconds > 0.0 && options.seconds <= 600.0) {
        return Err(format!("--seconds {} is outside 0 .. 600", options.seconds));
    }
    let rate = options.format.rate;
    std::fs::create_dir_all(&options.output_dir)
        .map_err(|e| format!("{}: {e}", options.output_dir.display()))?;
    let dir = std::path::absolute(&options.output_dir)
        .map_err(|e| format!("{}: {e}", options.output_dir.display()))?;
    let wav_path = dir.join(OUTPUT_WAV);
    let _ = std::fs::remove_file(&wav_path);

    let mut rig = Rig::start(
        &Audiodev::Wav {
            path: wav_path.clone(),
            frequency: rate,
        },
        options.image.as_deref(),
        options.personality,
        options.fault,
    )?;
    let build = rig.build();
    let memory = rig.machine.memory.layout().describe();
    let registrations = rig.machine.registrations();
    let render_name = AC97_SUBDEVICES
        .iter()
        .find(|s| {
            matches!(
                s.kind,
                wavert_miniport::adapter::SubdeviceKind::Wave(Direction::Render)
            )
        })
        .map_or("Ac97WaveRender", |s| s.name);
    let (wave, description) = rig
        .wave(render_name)
        .ok_or_else(|| format!("no wave filter registered as {render_name}"))?;
    let (format, format_bytes) =
        negotiate_format(&wave, description, 0, &options.format).map_err(|e| e.to_string())?;
    let block = format.block_align() as usize;
    let input = options.input.as_ref().map_or_else(
        || Ok(signal::test_signal(&format, options.seconds)),
        |path| signal::read_wav(path, &format),
    )?;

    let mut stream =
        Stream::open(&rig.machine, &wave, 0, false, &format_bytes).map_err(|e| e.to_string())?;
    let period_bytes =
        u64::from(rate) * u64::from(options.period_ms) / 1000 * u64::from(FRAME_BYTES);
    let requested = u32::try_from(period_bytes * 2).unwrap_or(u32::MAX);
    let buffer_bytes = stream
        .allocate(requested, Some(options.notifications))
        .map_err(|e| e.to_string())?;
    let buffer_pages = stream.buffer_pages();
    stream.register_event().map_err(|e| e.to_string())?;

    let mut next = 0usize;
    let mut source = |out: &mut [u8]| {
        let rest = input.get(next..).unwrap_or(&[]);
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        out[n..].fill(0);
        next += out.len();
    };
    stream.prefill(&mut source).map_err(|e| e.to_string())?;
    let accesses_at_start = rig.qemu.register_accesses();
    stream.set_state(KSSTATE_RUN).map_err(|e| e.to_string())?;
    let input_ms = input.len() as u64 * 1000 / (u64::from(rate) * u64::from(FRAME_BYTES));
    let buffer_ms = u64::from(buffer_bytes) * 1000 / (u64::from(rate) * u64::from(FRAME_BYTES));
    let run_ms = input_ms + buffer_ms + TAIL_MS;
    for _ in 0..run_ms {
        rig.machine.advance(QPC_PER_MS);
        if let Some(fault) = rig.fault() {
            return Err(fault);
        }
        for _ in 0..stream.take_notifications() {
            let play = stream.position().map_err(|e| e.to_string())?;
            stream
                .write_packet(play, &mut source)
                .map_err(|e| e.to_string())?;
        }
    }
    let register_accesses = rig.qemu.register_accesses() - accesses_at_start;
    let (channel, device_stats) = match &rig.driver {
        Some(Ac97Driver::Host { device, .. }) => (
            Some(
                device
                    .channel_stats(Direction::Render)
                    .ok_or("the render channel has no counters")?,
            ),
            Some(device.stats()),
        ),
        _ => (None, None),
    };
    let interrupts_delivered = rig.line.as_ref().map_or(0, |line| line.delivered());
    let glitches = stream.stats.glitches;
    let notifications = stream.stats.notifications;
    stream.close().map_err(|e| e.to_string())?;
    let leaked_pages = rig.machine.memory.pages_in_use();
    // The engine lets go of the filter before PortCls removes the device.
    drop(wave);
    rig.remove();
    let live_objects = rig.machine.live_objects();
    let violations = rig.machine.violations();
    let orders = rig.machine.orders();
    rig.qemu.check()?;
    rig.qemu.terminate()?;
    drop(rig);

    let file = std::fs::read(&wav_path).map_err(|e| format!("{}: {e}", wav_path.display()))?;
    let output = wav_data(&file)?;
    let output = &output[..output.len() / block * block];
    // A clean header for other tools: QEMU was stopped, not closed.
    signal::write_wav(&wav_path, &format, output)
        .map_err(|e| format!("{}: {e}", wav_path.display()))?;
    let leading = leading_silence(output, block);
    let played = &output[leading..];
    let expected = &input[leading_silence(&input, block)..];
    let matched = played
        .iter()
        .zip(expected)
        .take_while(|(a, b)| a == b)
        .count();
    let first_difference = (matched < expected.len() && matched < played.len())
        .then_some(input.len() - expected.len() + matched);

    Ok(Ac97Report {
        format,
        subdevices: registrations
            .subdevices
            .iter()
            .map(|(n, _)| n.clone())
            .collect(),
        connections: registrations.connections.len(),
        buffer_bytes,
        buffer_pages,
        memory,
        notification_count: options.notifications,
        input_bytes: input.len(),
        output_bytes: output.len(),
        leading_silence_bytes: leading,
        matched_bytes: matched,
        expected_bytes: expected.len(),
        first_difference,
        build,
        channel,
        device: device_stats,
        interrupts_delivered,
        notifications,
        glitches,
        register_accesses,
        virtual_ms: run_ms,
        wall_seconds: started.elapsed().as_secs_f64(),
        leaked_pages,
        live_objects,
        violations,
        personality: options.personality,
        orders,
        wav_path,
    })
}

/// The HLK test methods on one AC'97 endpoint.
///
/// 48 kHz, 16-bit stereo, on QEMU with the `none` audiodev (paced silence
/// in, nothing out): every `WaveTest` and KS position method of
/// [`crate::hlk::methods`].
#[derive(Debug)]
pub struct Ac97HlkReport {
    /// Which build ran.
    pub build: String,
    /// One report per HLK method.
    pub methods: Vec<MethodReport>,
    /// The KS topology rules on the endpoint's topology filter.
    pub ks_topology: Vec<Finding>,
    /// The format rules on the endpoint's wave filter
    /// ([`crate::ks_formats`]), against the INF's default format.
    pub ks_formats: Vec<Finding>,
    /// Protocol and Driver Verifier violations.
    pub violations: Vec<String>,
}

impl Ac97HlkReport {
    /// No method failed and nothing was violated.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.methods.iter().all(|m| !m.failed())
            && !self.ks_topology.is_empty()
            && self.ks_topology.iter().all(|f| f.outcome.is_ok())
            && !self.ks_formats.is_empty()
            && self.ks_formats.iter().all(|f| f.outcome.is_ok())
            && self.violations.is_empty()
    }
}

/// Why the AC'97 has no loopback pin for the HLK's loopback methods.
pub const AC97_NO_LOOPBACK: &str = "no loopback pin: the AC'97 wave filters have no audio-engine node (KSAUDIOENGINE_DESCRIPTOR nLoopbackPinId), so the HLK selects no LOOPBACK resource; the capture pin records the codec's input, not the render mix";

/// Runs the HLK test methods on the AC'97's render or capture endpoint,
/// with the host build or the shipped image.
///
/// # Errors
///
/// QEMU cannot be set up, the driver does not start, or the coupling with
/// QEMU failed.
pub fn run_ac97_hlk(
    capture: bool,
    image: Option<&Path>,
    personality: PortPersonality,
) -> Result<Ac97HlkReport, String> {
    const RATE: u32 = 48_000;
    let mut rig = Rig::start(
        &Audiodev::None { frequency: RATE },
        image,
        personality,
        Ac97Fault::None,
    )?;
    let build = rig.build();
    let direction = if capture {
        Direction::Capture
    } else {
        Direction::Render
    };
    let name = AC97_SUBDEVICES
        .iter()
        .find(|s| s.kind == wavert_miniport::adapter::SubdeviceKind::Wave(direction))
        .map(|s| s.name)
        .ok_or("no AC'97 wave subdevice for that direction")?;
    let (wave, description) = rig
        .wave(name)
        .ok_or_else(|| format!("no wave filter registered as {name}"))?;
    let host = HostPin {
        wave: &wave,
        description,
        pin: 0,
        capture,
    };
    let config = HlkConfig {
        format: FormatRequest {
            rate: RATE,
            ..FormatRequest::default()
        },
        // QEMU's AC'97 moves its DMA on the audio timer, every 10 ms of
        // virtual time: a shorter engine period cannot be serviced there.
        // (The driver's declared packet-size constraint, issue 13 item 5,
        // is where the HLK would read it.)
        min_period_ms: Some(10),
        format_sweeps: true,
    };
    let methods = run_all(
        &rig.machine,
        &host,
        Loopback::Absent(AC97_NO_LOOPBACK),
        &config,
    );
    let ks_formats = KsFilter::new(&wave, description)
        .map(|filter| {
            check_wave_filter_formats(
                &rig.machine,
                &wave,
                &filter,
                0,
                capture,
                Some(&wavert_miniport::ac97::filters::DEFAULT_FORMAT),
            )
        })
        .map_err(|status| format!("the wave filter's IUnknown: {status:#010x}"))?;
    let topology_name = AC97_SUBDEVICES
        .iter()
        .find(|s| s.kind == wavert_miniport::adapter::SubdeviceKind::Topology(direction))
        .map(|s| s.name)
        .ok_or("no AC'97 topology subdevice for that direction")?;
    let topology = rig
        .ks_filter(topology_name)
        .ok_or_else(|| format!("no topology filter registered as {topology_name}"))?;
    let ks_topology = check_topology_filter(&topology, endpoint_channels(description, 0));
    drop(topology);
    if let Some(fault) = rig.fault() {
        return Err(fault);
    }
    drop(wave);
    rig.remove();
    let violations = rig.machine.violations();
    rig.qemu.check()?;
    Ok(Ac97HlkReport {
        build,
        methods,
        ks_topology,
        ks_formats,
        violations,
    })
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
        &Audiodev::None { frequency: RATE },
        None,
        config.personality,
        Ac97Fault::None,
    )?;
    let mut endpoints = Vec::new();
    for direction in Direction::BOTH {
        let name = AC97_SUBDEVICES
            .iter()
            .find(|s| s.kind == wavert_miniport::adapter::SubdeviceKind::Wave(direction))
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
    use crate::memory::PAGE_SIZE;

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

    #[test]
    fn wav_data_reads_to_the_end_of_the_file() {
        // The header QEMU writes on opening the file, its sizes still 0.
        let mut file = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x02\0".to_vec();
        file.extend_from_slice(&48_000_u32.to_le_bytes());
        file.extend_from_slice(&192_000_u32.to_le_bytes());
        file.extend_from_slice(b"\x04\0\x10\0data\0\0\0\0");
        file.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(wav_data(&file), Ok([1, 2, 3, 4].as_slice()));
        assert!(wav_data(b"RIFX").is_err());
        assert_eq!(leading_silence(&[0, 0, 0, 0, 0, 1, 0, 0], 4), 4);
    }
}
