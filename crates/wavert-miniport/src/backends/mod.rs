//! The device back-ends: siblings that implement [`crate::Backend`] for
//! the shared WaveRT stream and wave miniport, and never import each other.
//!
//! * [`cable`]: the virtual loopback cable (root-enumerated, no hardware; a
//!   timer-paced virtual DMA engine copies render into capture).
//! * [`ac97`]: the Intel ICH AC'97 (PCI 8086:2415), a bus master that cannot
//!   loop over the buffer, fed from its interrupt.
//! * [`hda`]: the Intel HD Audio controller (PCI 8086:2668, 8086:293E), a
//!   DMA engine that loops over its descriptor list by itself, with a DMA
//!   position buffer in memory.
//!
//! What a new back-end must provide is the [`crate::Backend`]
//! trait: buffer limits, DMA reach and descriptor profile, optional device
//! memory beside each buffer, latency, open/close, installing and taking
//! back a built buffer, state changes, the position, events, and its wave
//! filters, intersection and bus; plus, for its topology filters, a
//! [`crate::topology::TopologyHardware`] if volume and mute act on hardware,
//! and its subdevice table for the adapter.

pub mod ac97;
pub mod cable;
pub mod hda;
