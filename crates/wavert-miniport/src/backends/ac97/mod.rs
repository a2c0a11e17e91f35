//! The Intel ICH AC'97 controller (PCI 8086:2415) as a WaveRT device: a
//! render filter on PCM out, a capture filter on PCM in, and topology
//! filters mapped to the codec's mixer registers.
//!
//! Layers, bottom up:
//!
//! * [`PortIo`]: absolute port I/O the platform provides (`in`/`out`
//!   instructions in the driver, qtest commands on QEMU), seen by the
//!   register-level back-end (`wavert_core::ac97`) as two [`Window`]s.
//! * [`resources`]: the PCI resources from PortCls' `IResourceList` (two
//!   I/O BARs, one interrupt), and how `StartDevice` tells an AC'97 from
//!   the root-enumerated cable.
//! * [`interrupt`] (shared, [`crate::interrupt`]): the `IInterruptSync` boundary (service routine,
//!   `Connect`, `CallSynchronizedRoutine`).
//! * [`device`]: [`Ac97Device`], shared by every filter and stream: the
//!   codec, both bus-master channels under the interrupt lock, the ISR
//!   (three register accesses per channel interrupt, refilling the
//!   32-entry ring so the non-looping engine never runs dry) and the
//!   deferred step that signals notification events at `DISPATCH_LEVEL`.
//! * [`wave`], [`stream`], [`filters`]: the shared wave miniport and
//!   stream over [`Ac97Device`] (its [`crate::Backend`]), its limits and
//!   latency, and its host pins' range.
//!
//! The topology filters are the shared ones ([`crate::TopologyMiniport`]
//! with [`crate::topology::TopologyHardware`] = [`device::MixerNode`]), so
//! the property handlers and their bad-input checks are shared.

pub mod device;
pub mod endpoints;
pub mod filters;
pub mod resources;
pub mod stream;
pub mod wave;

pub use crate::interrupt;

pub use device::{Ac97Device, Ac97Stats, MixerNode};
pub use resources::{Ac97Resources, DeviceKind};
pub use stream::{Ac97Stream, MIN_PACKET_PERIOD_HNS, PACKET_SIZE_CONSTRAINTS};
pub use wave::Ac97Wave;

use wavert_core::ac97::RegisterBus;

/// Port I/O at absolute port numbers, and a calibrated busy wait.
///
/// IRQL: any (the ISR uses it at DIRQL): implementations must not block,
/// allocate or take locks the ISR could meet.
pub trait PortIo: Send + Sync + 'static {
    /// `READ_PORT_UCHAR`.
    fn read8(&self, port: u16) -> u8;
    /// `READ_PORT_USHORT`.
    fn read16(&self, port: u16) -> u16;
    /// `READ_PORT_ULONG`.
    fn read32(&self, port: u16) -> u32;
    /// `WRITE_PORT_UCHAR`.
    fn write8(&self, port: u16, value: u8);
    /// `WRITE_PORT_USHORT`.
    fn write16(&self, port: u16, value: u16);
    /// `WRITE_PORT_ULONG`.
    fn write32(&self, port: u16, value: u32);
    /// `KeStallExecutionProcessor(us)`: the codec reset and ready poll need
    /// real (or, on QEMU, virtual) time to pass.
    fn stall_us(&self, us: u32);
}

/// One I/O window (a BAR) over [`PortIo`]: offsets relative to `base`.
#[derive(Debug)]
pub struct Window<'a, IO> {
    io: &'a IO,
    base: u16,
}

impl<'a, IO: PortIo> Window<'a, IO> {
    /// The window at `base`.
    pub const fn new(io: &'a IO, base: u16) -> Self {
        Self { io, base }
    }
}

impl<IO: PortIo> RegisterBus for Window<'_, IO> {
    fn read8(&mut self, offset: u16) -> u8 {
        self.io.read8(self.base.wrapping_add(offset))
    }
    fn read16(&mut self, offset: u16) -> u16 {
        self.io.read16(self.base.wrapping_add(offset))
    }
    fn read32(&mut self, offset: u16) -> u32 {
        self.io.read32(self.base.wrapping_add(offset))
    }
    fn write8(&mut self, offset: u16, value: u8) {
        self.io.write8(self.base.wrapping_add(offset), value);
    }
    fn write16(&mut self, offset: u16, value: u16) {
        self.io.write16(self.base.wrapping_add(offset), value);
    }
    fn write32(&mut self, offset: u16, value: u32) {
        self.io.write32(self.base.wrapping_add(offset), value);
    }
}
