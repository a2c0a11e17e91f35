//! A QEMU PC with an AC'97 or an Intel HD Audio card, driven over qtest:
//! process, guest RAM, the firmware's PCI work, port and MMIO windows and
//! interrupt delivery.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

use wavert_core::bus::{DmaMemory, DmaMemoryRead, RegisterBus};

use crate::layout::RamLayout;
use crate::qtest::Qtest;
use crate::setup::QemuInstall;

/// Guest RAM size (the RAM file's size).
pub const RAM_BYTES: u64 = 256 << 20;
/// Guest RAM below 4 GiB (`-machine max-ram-below-4g`); the other half sits
/// from 4 GiB up, so a driver that ignores a device's 32-bit DMA limit gets
/// pages the device cannot reach.
pub const LOW_RAM_BYTES: u64 = 128 << 20;
/// Where guest RAM is: [`LOW_RAM_BYTES`] at 0, the rest from 4 GiB.
pub const RAM_LAYOUT: RamLayout = RamLayout::new(RAM_BYTES, LOW_RAM_BYTES);
/// I/O base given to the AC'97 mixer (BAR0, 1 KiB).
pub const MIXER_PORT: u16 = 0xC000;
/// I/O base given to the AC'97 bus master (BAR1, 256 bytes).
pub const BUS_MASTER_PORT: u16 = 0xC400;
/// The interrupt the AC'97 is routed to (through PIIX3 PIRQB).
pub const AC97_IRQ: u8 = 10;
/// The interrupt the card in slot 2 is routed to, whichever card it is
/// (the HD Audio controller sits where the AC'97 would, INTA as well).
pub const CARD_IRQ: u8 = AC97_IRQ;
/// Memory base given to the HD Audio controller's BAR0 (16 KiB), inside
/// the PCI hole above [`LOW_RAM_BYTES`].
pub const HDA_MMIO_BASE: u64 = 0xE000_0000;
/// QEMU `intel-hda` (ICH6) PCI vendor/device, as config dword 0.
pub const INTEL_HDA_ICH6: u32 = 0x2668_8086;
/// QEMU `ich9-intel-hda` PCI vendor/device.
pub const INTEL_HDA_ICH9: u32 = 0x293E_8086;

const PCI_ADDRESS_PORT: u16 = 0xCF8;
const PCI_DATA_PORT: u16 = 0xCFC;
/// AC'97 at 00:02.0 (the first device after the host bridge and PIIX3).
const AC97_SLOT: u8 = 2;
/// PIIX3 ISA bridge at 00:01.0.
const PIIX3_SLOT: u8 = 1;
const AC97_VENDOR_DEVICE: u32 = 0x2415_8086;
/// PIIX3 register routing PIRQB; AC'97 INTA on slot 2 lands on PIRQB.
const PIIX3_PIRQB_ROUTE: u8 = 0x61;
/// Most interrupt services in a row before the line is declared stuck.
const MAX_SERVICES_PER_STEP: u32 = 16;

/// How QEMU's audio back-end for the card is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audiodev {
    /// Output to a WAV file (16-bit stereo at `frequency`); no input.
    Wav {
        /// The file QEMU writes.
        path: PathBuf,
        /// Output rate: the DAC rate, so QEMU does not resample.
        frequency: u32,
    },
    /// Silence in, nothing out, paced by virtual time.
    None {
        /// Input and output rate.
        frequency: u32,
    },
}

impl Audiodev {
    fn argument(&self) -> String {
        match self {
            Self::Wav { path, frequency } => format!(
                "wav,id=snd0,path={},out.frequency={frequency},out.channels=2,out.format=s16",
                path.display()
            ),
            Self::None { frequency } => format!(
                "none,id=snd0,in.frequency={frequency},in.channels=2,in.format=s16,\
                 out.frequency={frequency},out.channels=2,out.format=s16"
            ),
        }
    }
}

/// Which sound card the machine has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Card {
    /// `-device AC97`.
    Ac97,
    /// An HD Audio controller with one codec.
    Hda {
        /// `intel-hda` (false) or `ich9-intel-hda` (true).
        ich9: bool,
        /// `hda-duplex` (true) or `hda-output` (false).
        duplex: bool,
    },
}

impl Card {
    fn device_arguments(self) -> Vec<String> {
        match self {
            Self::Ac97 => vec!["-device".into(), "AC97,audiodev=snd0".into()],
            Self::Hda { ich9, duplex } => vec![
                "-device".into(),
                if ich9 { "ich9-intel-hda" } else { "intel-hda" }.into(),
                "-device".into(),
                format!(
                    "{},audiodev=snd0",
                    if duplex { "hda-duplex" } else { "hda-output" }
                ),
            ],
        }
    }
}

/// Guest RAM: a shared file QEMU maps as the guest's memory.
///
/// Laid out as [`RAM_LAYOUT`]: below [`LOW_RAM_BYTES`] the guest physical
/// address is the offset in the file; from 4 GiB up it is the offset past
/// the low part ([`RamLayout::file_offset`]). It is accessed with
/// positioned reads and writes, which land on the same page-cache pages QEMU
/// maps, so no mapping (and no `unsafe`) is needed on this side.
#[derive(Debug)]
pub struct GuestRam {
    file: File,
    path: PathBuf,
}

impl GuestRam {
    fn create(path: &Path) -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| format!("cannot create guest RAM {}: {e}", path.display()))?;
        file.set_len(RAM_BYTES)
            .map_err(|e| format!("cannot size guest RAM: {e}"))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The file backing guest RAM (laid out as [`RAM_LAYOUT`]), for another
    /// process-local view such as the emulator's `PhysicalMemory::with_file`.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` at guest physical address `physical`.
    ///
    /// # Errors
    /// Outside guest RAM or an I/O error.
    pub fn write_bytes(&self, physical: u64, bytes: &[u8]) -> Result<(), String> {
        let offset = RAM_LAYOUT
            .file_offset(physical, bytes.len() as u64)
            .ok_or_else(|| format!("guest write at {physical:#x} outside RAM"))?;
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| format!("guest write at {physical:#x}: {e}"))
    }

    /// Reads guest physical memory at `physical` into `out`.
    ///
    /// # Errors
    /// Outside guest RAM or an I/O error.
    pub fn read_bytes(&self, physical: u64, out: &mut [u8]) -> Result<(), String> {
        let offset = RAM_LAYOUT
            .file_offset(physical, out.len() as u64)
            .ok_or_else(|| format!("guest read at {physical:#x} outside RAM"))?;
        self.file
            .read_exact_at(out, offset)
            .map_err(|e| format!("guest read at {physical:#x}: {e}"))
    }
}

impl DmaMemory for &GuestRam {
    fn write(&mut self, physical: u64, bytes: &[u8]) {
        // The back-end's memory view cannot fail; a bad address here is a
        // harness bug the tests see as wrong descriptors.
        let _ = self.write_bytes(physical, bytes);
    }
}

impl DmaMemoryRead for &GuestRam {
    fn read(&mut self, physical: u64, out: &mut [u8]) {
        // As for writes: a bad address reads as zeros and shows up as
        // wrong responses.
        if self.read_bytes(physical, out).is_err() {
            out.fill(0);
        }
    }
}

/// The qtest commands of one address space, and how its addresses wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Space {
    /// Byte, word and dword reads.
    reads: [&'static str; 3],
    /// Byte, word and dword writes.
    writes: [&'static str; 3],
    /// Addresses wrap to this mask (port numbers are 16 bits).
    mask: u64,
}

/// Port I/O: `in*` / `out*`.
const IO_SPACE: Space = Space {
    reads: ["inb", "inw", "inl"],
    writes: ["outb", "outw", "outl"],
    mask: 0xFFFF,
};

/// Memory (MMIO): `read*` / `write*`.
const MEMORY_SPACE: Space = Space {
    reads: ["readb", "readw", "readl"],
    writes: ["writeb", "writew", "writel"],
    mask: u64::MAX,
};

/// One register window of the card (an I/O BAR, or a memory BAR) over
/// qtest commands. Transport failures read as all ones and are kept by the
/// qtest session ([`Machine::check`]).
#[derive(Debug)]
pub struct Window<'a> {
    qtest: &'a Mutex<Qtest>,
    base: u64,
    space: Space,
    accesses: &'a AtomicU64,
}

/// An I/O window (the AC'97's BARs, or all of port space).
pub type PortWindow<'a> = Window<'a>;
/// A memory window (the HD Audio controller's BAR0).
pub type MmioWindow<'a> = Window<'a>;

impl Window<'_> {
    const fn address(&self, offset: u16) -> u64 {
        self.base.wrapping_add(offset as u64) & self.space.mask
    }

    fn read(&self, width: usize, offset: u16, all_ones: u32) -> u32 {
        self.accesses.fetch_add(1, Ordering::Relaxed);
        let op = self.space.reads.get(width).copied().unwrap_or("readl");
        let address = self.address(offset);
        lock(self.qtest)
            .command_value(&format!("{op} {address:#x}"))
            .ok()
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(all_ones)
    }

    fn write(&self, width: usize, offset: u16, value: u32) {
        self.accesses.fetch_add(1, Ordering::Relaxed);
        let op = self.space.writes.get(width).copied().unwrap_or("writel");
        let address = self.address(offset);
        let _ = lock(self.qtest).command(&format!("{op} {address:#x} {value:#x}"));
    }
}

impl RegisterBus for Window<'_> {
    fn read8(&mut self, offset: u16) -> u8 {
        u8::try_from(self.read(0, offset, 0xFF)).unwrap_or(u8::MAX)
    }
    fn read16(&mut self, offset: u16) -> u16 {
        u16::try_from(self.read(1, offset, 0xFFFF)).unwrap_or(u16::MAX)
    }
    fn read32(&mut self, offset: u16) -> u32 {
        self.read(2, offset, u32::MAX)
    }
    fn write8(&mut self, offset: u16, value: u8) {
        self.write(0, offset, u32::from(value));
    }
    fn write16(&mut self, offset: u16, value: u16) {
        self.write(1, offset, u32::from(value));
    }
    fn write32(&mut self, offset: u16, value: u32) {
        self.write(2, offset, value);
    }
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

fn lock(qtest: &Mutex<Qtest>) -> MutexGuard<'_, Qtest> {
    qtest.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The mirrored registers: address and the view (dropped views are pruned).
type Mirrors = Vec<(u64, Weak<AtomicU32>)>;

fn lock_mirrors(mirrors: &Mutex<Mirrors>) -> MutexGuard<'_, Mirrors> {
    mirrors.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running QEMU with a sound card, its qtest session and guest RAM.
/// Dropping it kills QEMU (without finalising a WAV file: call
/// [`Machine::shutdown`] for that) and removes its files.
#[derive(Debug)]
pub struct Machine {
    child: Mutex<Child>,
    qtest: Mutex<Qtest>,
    ram: GuestRam,
    workdir: PathBuf,
    port_accesses: AtomicU64,
    virtual_ns: AtomicU64,
    /// The memory-BAR dwords mirrored for user-mode readers
    /// ([`Machine::mirror_mmio32`]).
    mirrors: Mutex<Mirrors>,
}

/// util-linux's `setpriv`, present on every Debian (util-linux is
/// essential).
const SETPRIV: &str = "/usr/bin/setpriv";

/// The command that runs QEMU at `binary`: under `setpriv --pdeathsig KILL`
/// when it is there, so QEMU dies with the thread that started it. A test
/// that fails by panicking never reaches [`Machine::shutdown`] (and its
/// rig's clock coupling can keep the machine alive), and its QEMU would
/// otherwise outlive the test process. Without `setpriv`, QEMU directly.
fn qemu_command(binary: &Path) -> Command {
    if Path::new(SETPRIV).is_file() {
        let mut command = Command::new(SETPRIV);
        command.args(["--pdeathsig", "KILL", "--"]).arg(binary);
        command
    } else {
        Command::new(binary)
    }
}

fn qemu_log(workdir: &Path) -> String {
    fs::read_to_string(workdir.join("qemu.log")).unwrap_or_default()
}

impl Machine {
    /// Starts QEMU (qtest accelerator, shared guest RAM laid out as
    /// [`RAM_LAYOUT`], an AC'97 card on `audiodev`) and accepts its qtest
    /// connection.
    ///
    /// # Errors
    /// QEMU failed to start or to connect; its log is included.
    pub fn start(install: &QemuInstall, audiodev: &Audiodev) -> Result<Self, String> {
        Self::start_with_card(install, audiodev, Card::Ac97)
    }

    /// As [`Self::start`], with `card` instead of the AC'97.
    ///
    /// # Errors
    /// QEMU failed to start or to connect; its log is included.
    pub fn start_with_card(
        install: &QemuInstall,
        audiodev: &Audiodev,
        card: Card,
    ) -> Result<Self, String> {
        let name = format!(
            "wavert-qemu-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        );
        let workdir = std::env::temp_dir().join(&name);
        fs::create_dir_all(&workdir)
            .map_err(|e| format!("cannot create {}: {e}", workdir.display()))?;
        let ram_path = Path::new("/dev/shm").join(&name);
        let ram = GuestRam::create(&ram_path)?;
        let socket = workdir.join("qtest.sock");
        let listener = UnixListener::bind(&socket)
            .map_err(|e| format!("cannot listen on qtest socket: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("qtest socket: {e}"))?;
        let log = File::create(workdir.join("qemu.log"))
            .map_err(|e| format!("cannot create QEMU log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("QEMU log: {e}"))?;
        let ram_mib = RAM_BYTES >> 20;
        // QEMU warns in its log that a `max-ram-below-4g` under 1 GiB is
        // "not a multiple of 1G; possible bad performance": harmless here
        // (no guest CPU runs), and it keeps the file small.
        let mut child = qemu_command(&install.binary)
            .env("QEMU_MODULE_DIR", &install.module_dir)
            .args([
                "-machine",
                &format!(
                    "pc,accel=qtest,memory-backend=ram0,max-ram-below-4g={}M",
                    LOW_RAM_BYTES >> 20
                ),
            ])
            .args(["-qtest", &format!("unix:{}", socket.display())])
            .args(["-qtest-log", "/dev/null"])
            .args(["-display", "none", "-nodefaults"])
            .args(["-m", &format!("{ram_mib}M")])
            .args([
                "-object",
                &format!(
                    "memory-backend-file,id=ram0,size={ram_mib}M,mem-path={},share=on",
                    ram_path.display()
                ),
            ])
            .args(card.device_arguments())
            .args(["-audiodev", &audiodev.argument()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", install.binary.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if let Ok(Some(status)) = child.try_wait() {
                        let _ = fs::remove_file(&ram_path);
                        return Err(format!("QEMU exited ({status}): {}", qemu_log(&workdir)));
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        let _ = fs::remove_file(&ram_path);
                        return Err(format!("QEMU never connected: {}", qemu_log(&workdir)));
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(format!("qtest accept: {e}")),
            }
        };
        stream
            .set_nonblocking(false)
            .map_err(|e| format!("qtest socket: {e}"))?;
        Ok(Self {
            child: Mutex::new(child),
            qtest: Mutex::new(Qtest::new(stream)?),
            ram,
            workdir,
            port_accesses: AtomicU64::new(0),
            virtual_ns: AtomicU64::new(0),
            mirrors: Mutex::new(Vec::new()),
        })
    }

    fn io(&self, command: &str) -> Result<u64, String> {
        let mut qtest = lock(&self.qtest);
        if command.starts_with("in") {
            qtest.command_value(command)
        } else {
            qtest.command(command).map(|_| 0)
        }
    }

    fn config_address(slot: u8, register: u8) -> u32 {
        0x8000_0000 | u32::from(slot) << 11 | u32::from(register & 0xFC)
    }

    fn config_read32(&self, slot: u8, register: u8) -> Result<u32, String> {
        let address = Self::config_address(slot, register);
        self.io(&format!("outl {PCI_ADDRESS_PORT:#x} {address:#x}"))?;
        let value = self.io(&format!("inl {PCI_DATA_PORT:#x}"))?;
        u32::try_from(value).map_err(|_| format!("config read {value:#x}"))
    }

    fn config_write(&self, slot: u8, register: u8, width: u8, value: u32) -> Result<(), String> {
        let address = Self::config_address(slot, register);
        self.io(&format!("outl {PCI_ADDRESS_PORT:#x} {address:#x}"))?;
        let port = PCI_DATA_PORT + u16::from(register & 3);
        let op = match width {
            1 => "outb",
            2 => "outw",
            _ => "outl",
        };
        self.io(&format!("{op} {port:#x} {value:#x}")).map(|_| ())
    }

    /// The firmware's part: finds the AC'97 at 00:02.0, assigns its two I/O
    /// BARs, enables I/O decoding and bus mastering, routes PIRQB to
    /// [`AC97_IRQ`] in the PIIX3, and intercepts the I/O APIC's inputs so
    /// interrupt level changes are reported.
    ///
    /// # Errors
    /// A different device at 00:02.0, BARs that did not take, qtest errors.
    pub fn firmware_setup(&self) -> Result<(), String> {
        let id = self.config_read32(AC97_SLOT, 0)?;
        if id != AC97_VENDOR_DEVICE {
            return Err(format!("00:02.0 is {id:#010x}, not the AC'97 (8086:2415)"));
        }
        self.config_write(AC97_SLOT, 0x10, 4, u32::from(MIXER_PORT))?;
        self.config_write(AC97_SLOT, 0x14, 4, u32::from(BUS_MASTER_PORT))?;
        for (register, base) in [(0x10, MIXER_PORT), (0x14, BUS_MASTER_PORT)] {
            let bar = self.config_read32(AC97_SLOT, register)?;
            if bar != u32::from(base) | 1 {
                return Err(format!(
                    "BAR {register:#x} reads {bar:#x} after writing {base:#x}"
                ));
            }
        }
        // Command register: I/O space and bus master.
        self.config_write(AC97_SLOT, 0x04, 2, 0x0005)?;
        self.config_write(PIIX3_SLOT, PIIX3_PIRQB_ROUTE, 1, u32::from(AC97_IRQ))?;
        lock(&self.qtest)
            .command("irq_intercept_in ioapic")
            .map(|_| ())
    }

    /// The firmware's part for an HD Audio controller in slot 2: checks
    /// its identity, assigns BAR0 at [`HDA_MMIO_BASE`], enables memory
    /// decoding and bus mastering, routes its INTA as the AC'97's (to
    /// [`CARD_IRQ`]) and intercepts the I/O APIC's inputs. Returns the
    /// vendor/device dword.
    ///
    /// # Errors
    /// Another device in slot 2, a BAR that did not take, qtest errors.
    pub fn firmware_setup_hda(&self) -> Result<u32, String> {
        let id = self.config_read32(AC97_SLOT, 0)?;
        if id != INTEL_HDA_ICH6 && id != INTEL_HDA_ICH9 {
            return Err(format!(
                "00:02.0 is {id:#010x}, not an Intel HD Audio controller"
            ));
        }
        let base = u32::try_from(HDA_MMIO_BASE).map_err(|_| "BAR above 4 GiB".to_owned())?;
        self.config_write(AC97_SLOT, 0x10, 4, base)?;
        let bar = self.config_read32(AC97_SLOT, 0x10)?;
        // Memory BAR: the low nibble holds type bits (0: 32-bit, not
        // prefetchable), so the base reads back as written.
        if bar & !0xF != base {
            return Err(format!("BAR0 reads {bar:#x} after writing {base:#x}"));
        }
        // Command register: memory space and bus master.
        self.config_write(AC97_SLOT, 0x04, 2, 0x0006)?;
        self.config_write(PIIX3_SLOT, PIIX3_PIRQB_ROUTE, 1, u32::from(CARD_IRQ))?;
        lock(&self.qtest)
            .command("irq_intercept_in ioapic")
            .map(|_| ())?;
        Ok(id)
    }

    /// The HD Audio controller's registers (BAR0 at [`HDA_MMIO_BASE`]).
    #[must_use]
    pub const fn hda_registers(&self) -> MmioWindow<'_> {
        Window {
            qtest: &self.qtest,
            base: HDA_MMIO_BASE,
            space: MEMORY_SPACE,
            accesses: &self.port_accesses,
        }
    }

    /// The mixer window (BAR0).
    #[must_use]
    pub const fn mixer(&self) -> PortWindow<'_> {
        Window {
            qtest: &self.qtest,
            base: MIXER_PORT as u64,
            space: IO_SPACE,
            accesses: &self.port_accesses,
        }
    }

    /// The bus-master window (BAR1).
    #[must_use]
    pub const fn bus_master(&self) -> PortWindow<'_> {
        Window {
            qtest: &self.qtest,
            base: BUS_MASTER_PORT as u64,
            space: IO_SPACE,
            accesses: &self.port_accesses,
        }
    }

    /// The whole I/O port space (base 0: offsets are port numbers), for a
    /// driver that programs absolute ports as the Windows glue does.
    #[must_use]
    pub const fn io_ports(&self) -> PortWindow<'_> {
        Window {
            qtest: &self.qtest,
            base: 0,
            space: IO_SPACE,
            accesses: &self.port_accesses,
        }
    }

    /// Guest RAM.
    #[must_use]
    pub const fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// Register accesses made through the windows so far.
    #[must_use]
    pub fn register_accesses(&self) -> u64 {
        self.port_accesses.load(Ordering::Relaxed)
    }

    /// Times the AC'97 interrupt line was raised.
    #[must_use]
    pub fn interrupts_raised(&self) -> u64 {
        lock(&self.qtest).irq_raises(AC97_IRQ)
    }

    /// Whether the AC'97 interrupt line is asserted now.
    #[must_use]
    pub fn interrupt_pending(&self) -> bool {
        lock(&self.qtest).irq_level(AC97_IRQ)
    }

    /// Virtual time advanced so far.
    #[must_use]
    pub fn virtual_ns(&self) -> u64 {
        self.virtual_ns.load(Ordering::Relaxed)
    }

    /// The first transport or protocol failure, as an error.
    ///
    /// # Errors
    /// That failure.
    pub fn check(&self) -> Result<(), String> {
        lock(&self.qtest)
            .error()
            .map_or(Ok(()), |e| Err(e.to_owned()))
    }

    /// Advances virtual time by `ns` (deterministically: timers, DMA ticks).
    ///
    /// # Errors
    /// qtest errors.
    pub fn clock_step(&self, ns: u64) -> Result<(), String> {
        lock(&self.qtest).command(&format!("clock_step {ns}"))?;
        self.virtual_ns.fetch_add(ns, Ordering::Relaxed);
        self.refresh_mirrors();
        Ok(())
    }

    /// A view of the 32-bit register at `offset` in the HD Audio memory
    /// BAR as a processor that mapped the BAR would read it: the value
    /// after the last clock step, refreshed by every [`Self::clock_step`].
    ///
    /// qtest reaches registers only by command, so a pointer into the BAR
    /// (what WaveRT's `KSPROPERTY_RTAUDIO_CLOCKREGISTER` gives the audio
    /// engine) cannot point at QEMU's. QEMU's virtual time stands still
    /// between steps, so a read-only counter such as WALCLK holds the
    /// value read right after a step until the next one: this mirror is
    /// what a read through a mapping would return at every instant.
    /// The mirror's own reads are not counted in
    /// [`Self::register_accesses`] (they stand for the audio engine's
    /// reads, which never go through the driver). It is refreshed while
    /// the returned view is held, and forgotten once it is dropped.
    #[must_use]
    pub fn mirror_mmio32(&self, offset: u16) -> Arc<AtomicU32> {
        let address = HDA_MMIO_BASE + u64::from(offset);
        let mirror = Arc::new(AtomicU32::new(self.read_mmio32_uncounted(address)));
        lock_mirrors(&self.mirrors).push((address, Arc::downgrade(&mirror)));
        mirror
    }

    /// The HD Audio BAR's 32-bit register at `offset`, read without
    /// counting it in [`Self::register_accesses`]: a read that stands for
    /// the audio engine's, through its own mapping, not the driver's.
    #[must_use]
    pub fn peek_hda_register32(&self, offset: u16) -> u32 {
        self.read_mmio32_uncounted(HDA_MMIO_BASE + u64::from(offset))
    }

    fn read_mmio32_uncounted(&self, address: u64) -> u32 {
        lock(&self.qtest)
            .command_value(&format!("readl {address:#x}"))
            .ok()
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(u32::MAX)
    }

    fn refresh_mirrors(&self) {
        let mut mirrors = lock_mirrors(&self.mirrors);
        mirrors.retain(|(_, view)| view.strong_count() > 0);
        for (address, view) in mirrors.iter() {
            if let Some(mirror) = view.upgrade() {
                mirror.store(self.read_mmio32_uncounted(*address), Ordering::Release);
            }
        }
    }

    /// Advances virtual time by `ns`, then delivers the AC'97 interrupt:
    /// while the line is asserted, calls `isr` (a level-triggered line
    /// re-enters until the device drops it). Returns the services made.
    ///
    /// # Errors
    /// qtest errors, the ISR's error, or a line that stays asserted.
    pub fn step_and_deliver(
        &self,
        ns: u64,
        isr: &mut impl FnMut(&Self) -> Result<(), String>,
    ) -> Result<u32, String> {
        self.clock_step(ns)?;
        self.deliver(isr)
    }

    /// Calls `isr` while the AC'97 line is asserted.
    ///
    /// # Errors
    /// As [`Self::step_and_deliver`].
    pub fn deliver(
        &self,
        isr: &mut impl FnMut(&Self) -> Result<(), String>,
    ) -> Result<u32, String> {
        let mut services = 0;
        while self.interrupt_pending() {
            if services == MAX_SERVICES_PER_STEP {
                return Err(format!(
                    "IRQ {AC97_IRQ} still asserted after {services} services"
                ));
            }
            isr(self)?;
            services += 1;
        }
        self.check()?;
        Ok(services)
    }

    /// Stops QEMU with SIGTERM (so the WAV back-end finalises its header)
    /// and waits for it.
    ///
    /// # Errors
    /// QEMU did not exit within 20 s (it is then killed).
    pub fn shutdown(self) -> Result<(), String> {
        self.terminate()
    }

    /// As [`Self::shutdown`], for a machine shared with others (the files
    /// stay until the last reference drops).
    ///
    /// # Errors
    /// QEMU did not exit within 20 s (it is then killed).
    #[allow(
        clippy::significant_drop_tightening,
        reason = "the child is held while it is polled until it exits"
    )]
    pub fn terminate(&self) -> Result<(), String> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("QEMU ignored SIGTERM: {}", qemu_log(&self.workdir)));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// QEMU's own log (stdout and stderr).
    #[must_use]
    pub fn log(&self) -> String {
        qemu_log(&self.workdir)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_file(&self.ram.path);
        let _ = fs::remove_dir_all(&self.workdir);
    }
}
