//! The Intel HD Audio controller as a WaveRT device.
//!
//! QEMU `intel-hda` 8086:2668, `ich9-intel-hda` 8086:293E, with
//! `hda-duplex` / `hda-output`: a render filter on the codec's output converter, a
//! capture filter on its input converter, and topology filters on the
//! converters' amplifiers.
//!
//! Layers, bottom up:
//!
//! * [`Mmio`]: the controller's memory BAR (volatile accesses in the
//!   driver, qtest commands on QEMU, [`wavert_core::hda::sim`] in tests),
//!   seen by the register-level back-end (`wavert_core::hda`) as a [`Bar`];
//!   and one physically contiguous page the controller reaches, for the
//!   command rings and the DMA position buffer ([`CommonBuffer`]).
//! * [`resources`]: the memory BAR and interrupt from PortCls'
//!   `IResourceList`.
//! * [`device`]: [`HdaDevice`], shared by every filter and stream: the
//!   controller and codec (verbs under a spin lock), both stream
//!   descriptors, the ISR (one INTSTS read and one status write per
//!   interrupting stream: 2 register accesses for one stream) and the
//!   deferred step that signals the events.
//! * [`filters`], [`endpoints`], [`stream`]: the wave filters' range (the
//!   format word's envelope; the codec's own rates and sizes decide what
//!   opens), jacks from the pin complexes' configuration defaults, the
//!   buffer limits and latency.
//!
//! Unlike the AC'97 the controller loops over its buffer descriptor list by
//! itself: a stream is programmed once per run from STOP, and interrupts
//! only mark the entries that end a notification packet. Positions come
//! from the DMA position buffer in memory, so `GetPosition` touches no
//! register, and the same entry is what `GetPositionRegister` offers.

pub mod device;
pub mod endpoints;
pub mod filters;
pub mod resources;
pub mod stream;

use core::ptr::NonNull;

pub use device::{AmplifierNode, HdaDevice, HdaStats};
pub use resources::HdaResources;
pub use stream::{HdaStream, PACKET_SIZE_CONSTRAINTS};

use crate::memory::Mapping;
use wavert_core::bus::RegisterBus;

/// Memory the device allocated for the controller itself: physically
/// contiguous, mapped, owned by the [`Mmio`] implementation that made it.
#[derive(Debug)]
pub struct CommonBuffer {
    /// The kernel mapping.
    pub mapping: Mapping,
    /// Its physical address (the first byte).
    pub physical: u64,
    /// The implementation's own handle for freeing it.
    pub handle: usize,
}

/// The controller's memory BAR at offsets from its base, a calibrated busy
/// wait, and the memory the controller needs beside the streams.
///
/// IRQL: register accesses at any level (the ISR uses them at DIRQL):
/// implementations must not block, allocate or take locks the ISR could
/// meet. The memory calls at `PASSIVE_LEVEL`.
pub trait Mmio: Send + Sync + 'static {
    /// `READ_REGISTER_UCHAR(base + offset)`.
    fn read8(&self, offset: u16) -> u8;
    /// `READ_REGISTER_USHORT`.
    fn read16(&self, offset: u16) -> u16;
    /// `READ_REGISTER_ULONG`.
    fn read32(&self, offset: u16) -> u32;
    /// `WRITE_REGISTER_UCHAR`.
    fn write8(&self, offset: u16, value: u8);
    /// `WRITE_REGISTER_USHORT`.
    fn write16(&self, offset: u16, value: u16);
    /// `WRITE_REGISTER_ULONG`.
    fn write32(&self, offset: u16, value: u32);
    /// `KeStallExecutionProcessor(us)`: resets and verbs need real (or, on
    /// QEMU, virtual) time to pass.
    fn stall_us(&self, us: u32);
    /// `bytes` of zeroed, physically contiguous, page-aligned memory below
    /// `max_physical` (`MmAllocateContiguousMemorySpecifyCache`, non-cached:
    /// the controller writes it while the driver reads it). `None` when
    /// there is none.
    fn allocate_common(&self, bytes: u32, max_physical: u64) -> Option<CommonBuffer>;
    /// Frees what [`Mmio::allocate_common`] gave.
    fn free_common(&self, buffer: CommonBuffer);
    /// The kernel virtual address of register `offset`, when the BAR is
    /// mapped memory the processor reads (the driver's `MmMapIoSpaceEx`
    /// mapping); `None` (the default) where registers are reached some
    /// other way (qtest, a model). What `GetClockRegister` offers.
    fn register_address(&self, offset: u16) -> Option<NonNull<u8>> {
        let _ = offset;
        None
    }
}

/// The BAR as `wavert_core`'s [`RegisterBus`].
#[derive(Debug)]
pub struct Bar<'a, M>(pub &'a M);

impl<M: Mmio> RegisterBus for Bar<'_, M> {
    fn read8(&mut self, offset: u16) -> u8 {
        self.0.read8(offset)
    }
    fn read16(&mut self, offset: u16) -> u16 {
        self.0.read16(offset)
    }
    fn read32(&mut self, offset: u16) -> u32 {
        self.0.read32(offset)
    }
    fn write8(&mut self, offset: u16, value: u8) {
        self.0.write8(offset, value);
    }
    fn write16(&mut self, offset: u16, value: u16) {
        self.0.write16(offset, value);
    }
    fn write32(&mut self, offset: u16, value: u32) {
        self.0.write32(offset, value);
    }
}
