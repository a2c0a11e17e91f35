//! The product's HD Audio miniport (`wavert_miniport::hda`) on QEMU's
//! `intel-hda` / `ich9-intel-hda` with `hda-duplex` (`wavert-qemu`): the
//! port side of its [`Mmio`] trait.
//!
//! * [`QemuMmio`]: the controller's BAR0 over qtest (`readb`..`writel` at
//!   [`HDA_MMIO_BASE`]), a stall that steps QEMU's clock, and the
//!   controller's common page from the machine's RAM (QEMU's guest-RAM
//!   file, so the CORB, RIRB and position buffer are where QEMU's DMA
//!   reads and writes), mapped as the kernel would map it.
//! * WALCLK, the register `GetClockRegister` offers, as the mapped BAR a
//!   processor would read: [`Qemu::mirror_mmio32`] (qtest reaches the BAR
//!   only by command; the mirror holds what a read returns, refreshed
//!   after every step of QEMU's clock, which stands still between steps).
//! * [`QemuTrappedMmio`] and [`image_device`]: the same BAR for the shipped
//!   image, whose register accesses are trapped (`image::mmio_trap`).
//! * The rest is the AC'97's: the platform ([`crate::ac97::Ac97Platform`]:
//!   QPC, events, a DPC the coupling timer runs) and the coupling of the
//!   two clocks (a 1 ms machine timer steps QEMU and raises the interrupt
//!   line while QEMU's IRQ is up).

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use wavert_core::bus::RegisterBus;
use wavert_core::hda::reg;
use wavert_miniport::hda::{CommonBuffer, Mmio};
use wavert_miniport::memory::Mapping;
use wavert_qemu::machine::{CARD_IRQ, HDA_MMIO_BASE};
use wavert_qemu::Machine as Qemu;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use crate::image::mmio_trap::{MmioHandler, MmioWidth};
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use crate::image::{ImageDevice, ImageMmio};
use crate::irql;
use crate::machine::Machine;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use crate::port::InterruptLine;
use crate::port::ResourceDescriptor;

/// The controller's BAR as QEMU's qtest reaches it.
pub struct QemuMmio {
    qemu: Arc<Qemu>,
    machine: Arc<Machine>,
    /// WALCLK as a mapped BAR shows it.
    wall_clock: Arc<AtomicU32>,
}

impl QemuMmio {
    /// The BAR of `qemu`'s controller (set up by
    /// [`Qemu::firmware_setup_hda`]), common memory from `machine`'s RAM.
    #[must_use]
    pub fn new(qemu: Arc<Qemu>, machine: Arc<Machine>) -> Self {
        let wall_clock = qemu.mirror_mmio32(reg::WALCLK);
        Self {
            qemu,
            machine,
            wall_clock,
        }
    }

    /// Where the BAR is.
    #[must_use]
    pub const fn base(&self) -> u64 {
        HDA_MMIO_BASE
    }
}

impl fmt::Debug for QemuMmio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QemuMmio")
            .field("base", &HDA_MMIO_BASE)
            .finish_non_exhaustive()
    }
}

/// Each access is the hardware's.
impl Mmio for QemuMmio {
    fn read8(&self, offset: u16) -> u8 {
        irql::as_kernel(|| self.qemu.hda_registers().read8(offset))
    }
    fn read16(&self, offset: u16) -> u16 {
        irql::as_kernel(|| self.qemu.hda_registers().read16(offset))
    }
    fn read32(&self, offset: u16) -> u32 {
        irql::as_kernel(|| self.qemu.hda_registers().read32(offset))
    }
    fn write8(&self, offset: u16, value: u8) {
        irql::as_kernel(|| self.qemu.hda_registers().write8(offset, value));
    }
    fn write16(&self, offset: u16, value: u16) {
        irql::as_kernel(|| self.qemu.hda_registers().write16(offset, value));
    }
    fn write32(&self, offset: u16, value: u32) {
        irql::as_kernel(|| self.qemu.hda_registers().write32(offset, value));
    }
    fn stall_us(&self, us: u32) {
        irql::as_kernel(|| {
            let _ = self.qemu.clock_step(u64::from(us) * 1_000);
        });
    }

    /// `MmAllocateContiguousMemorySpecifyCache` as the machine's RAM model
    /// does it: contiguous pages below `max_physical`, mapped, zeroed.
    fn allocate_common(&self, bytes: u32, max_physical: u64) -> Option<CommonBuffer> {
        let memory = &self.machine.memory;
        let mdl = memory.allocate_contiguous(0, max_physical, usize::try_from(bytes).ok()?)?;
        let physical = memory.page_address(mdl, 0)?;
        let Some(base) = memory.map(mdl).and_then(NonNull::new) else {
            memory.free(mdl);
            return None;
        };
        // SAFETY: the RAM model maps at least `bytes` bytes at `base` (the
        // whole contiguous allocation), valid until `free_common` unmaps
        // it after taking the mapping back.
        let mapping = unsafe { Mapping::new(base, bytes) };
        let _zeroed = mapping.zero(0, bytes);
        Some(CommonBuffer {
            mapping,
            physical,
            handle: mdl,
        })
    }

    /// WALCLK only: the one register WaveRT maps to the audio engine that
    /// this back-end offers (the positions come from the position buffer
    /// in memory).
    fn register_address(&self, offset: u16) -> Option<NonNull<u8>> {
        (offset == reg::WALCLK).then(|| NonNull::from(&*self.wall_clock).cast::<u8>())
    }

    fn free_common(&self, buffer: CommonBuffer) {
        let memory = &self.machine.memory;
        memory.unmap(buffer.mapping.into_base().as_ptr(), buffer.handle);
        memory.free(buffer.handle);
    }
}

/// The file QEMU's `wav` audiodev writes for `--device hda`, in the output
/// folder.
pub const OUTPUT_WAV: &str = "hda-qemu.wav";

/// What the HD Audio session plays: 16-bit stereo PCM at a rate from 8 to
/// 192 kHz (the HDA stream format's range, spec 3.7.1).
///
/// Which of those the
/// codec takes is its converter's own list, which the miniport's filters
/// offer and the negotiation holds it to.
///
/// # Errors
///
/// One line saying what is supported.
pub fn check_format(request: &crate::engine::FormatRequest) -> Result<(), String> {
    if request.float
        || request.bits != 16
        || request.channels != 2
        || !(8_000..=192_000).contains(&request.rate)
    {
        return Err(format!(
            "the HD Audio device plays 16-bit stereo PCM at the codec's rates (8000 to 192000 Hz), not {} Hz {}-bit {}{} channel(s)",
            request.rate,
            request.bits,
            if request.float { "float " } else { "" },
            request.channels
        ));
    }
    Ok(())
}

/// The shipped image's register accesses to the controller's BAR: its
/// trapped `mov` instructions (`image::mmio_trap`), forwarded to QEMU over
/// qtest at their offsets from the BAR's base.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub struct QemuTrappedMmio {
    qemu: Arc<Qemu>,
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
impl QemuTrappedMmio {
    /// The BAR of `qemu`'s controller.
    #[must_use]
    pub const fn new(qemu: Arc<Qemu>) -> Self {
        Self { qemu }
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
impl fmt::Debug for QemuTrappedMmio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QemuTrappedMmio")
            .field("base", &HDA_MMIO_BASE)
            .finish_non_exhaustive()
    }
}

/// An offset past the 16-bit register space reads as all ones and writes
/// nothing (the BAR is 16 KiB; the kernel stand-in maps no more).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
impl MmioHandler for QemuTrappedMmio {
    fn read(&self, offset: u64, width: MmioWidth) -> u32 {
        let Ok(offset) = u16::try_from(offset) else {
            return width.mask();
        };
        let mut bar = self.qemu.hda_registers();
        match width {
            MmioWidth::Byte => u32::from(bar.read8(offset)),
            MmioWidth::Word => u32::from(bar.read16(offset)),
            MmioWidth::Dword => bar.read32(offset),
        }
    }

    /// The engine's reads through its mapping of the BAR go to QEMU
    /// without counting as the driver's register accesses.
    fn peek32(&self, offset: u64) -> u32 {
        u16::try_from(offset).map_or(u32::MAX, |offset| self.qemu.peek_hda_register32(offset))
    }

    fn write(&self, offset: u64, width: MmioWidth, value: u32) {
        let Ok(offset) = u16::try_from(offset) else {
            return;
        };
        let mut bar = self.qemu.hda_registers();
        let [b0, b1, ..] = value.to_le_bytes();
        match width {
            MmioWidth::Byte => bar.write8(offset, b0),
            MmioWidth::Word => bar.write16(offset, u16::from_le_bytes([b0, b1])),
            MmioWidth::Dword => bar.write32(offset, value),
        }
    }
}

/// The PCI resources of QEMU's controller as `StartDevice` gets them: the
/// 16 KiB memory BAR and the interrupt.
#[must_use]
pub fn resources() -> [ResourceDescriptor; 2] {
    [
        ResourceDescriptor::memory(HDA_MMIO_BASE, HDA_MMIO_LENGTH),
        ResourceDescriptor::interrupt(u16::from(CARD_IRQ), u32::from(CARD_IRQ), 1),
    ]
}

/// Bytes of the controller's BAR (HDA spec 3.3: 16 KiB).
pub const HDA_MMIO_LENGTH: u32 = 0x4000;

/// What the shipped image needs to run on `qemu`'s controller: its
/// resources, `line` as its interrupt, its stalls stepping QEMU's clock,
/// and its BAR's accesses trapped and sent to QEMU.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[must_use]
pub fn image_device(qemu: &Arc<Qemu>, line: &Arc<InterruptLine>) -> ImageDevice {
    let stepped = Arc::clone(qemu);
    ImageDevice {
        resources: resources().to_vec(),
        interrupt: Some(Arc::clone(line)),
        // A busy wait lets QEMU's clock run as long.
        stall: Some(Box::new(move |us| {
            let _ = stepped.clock_step(u64::from(us) * 1_000);
        })),
        mmio: Some(ImageMmio {
            base: HDA_MMIO_BASE,
            length: u64::from(HDA_MMIO_LENGTH),
            handler: Arc::new(QemuTrappedMmio::new(Arc::clone(qemu))),
        }),
        ..ImageDevice::default()
    }
}
