//! The WaveRT miniport: one stream and one wave miniport shared by every
//! device, generic over a [`Backend`], with the devices as sibling
//! back-ends ([`backends::cable`], the virtual loopback cable, and
//! [`backends::ac97`], the Intel ICH AC'97), as portable code.
//!
//! # Using it (driver, emulator, tests)
//!
//! 1. Implement [`Platform`] (QPC, a spinlock type, `KeSetEvent`, a periodic
//!    timer, a DPC, logging).
//! 2. The cable: `Arc::new(VirtualCable::new(platform, DmaMode::Looping))`
//!    (or [`DmaMode::Refill`], the non-looping engine refilled from the timer
//!    routine as an AC'97 ISR does), registered through PortCls with
//!    [`adapter::install`] over a [`adapter::PortClsServices`]
//!    implementation; whenever the platform's timer fires (started and
//!    stopped by the cable as streams enter and leave RUN), call
//!    [`VirtualCable::on_timer`] with the current QPC.
//! 3. The AC'97: [`adapter::install_ac97`] from the device's resource list,
//!    with the platform's port I/O ([`ac97::PortIo`]).
//! 4. Or build the COM objects directly:
//!    `wavert_com::new_wave_rt_miniport(WaveMiniport::new(backend, Direction::Render))`
//!    and `wavert_com::new_topology_miniport(TopologyMiniport::new(Direction::Render))`,
//!    and drive their vtables.
//!
//! The shared filter shape and builders are in [`filters`]; the subdevice
//! names and interface categories the INF must match are
//! [`adapter::SUBDEVICES`] and [`adapter::AC97_SUBDEVICES`]. A new device
//! implements [`Backend`] (see [`backends`]).
//!
//! # Rules
//!
//! `no_std` + `alloc`. Memory is allocated only at `PASSIVE_LEVEL` (objects,
//! buffer page lists and descriptor lists); the timer, ISR, DPC and position
//! paths run under the platform's locks and never allocate, block or panic.
//! `unsafe` lives only at the boundaries: calls through the port stream's
//! vtable and the buffer mapping ([`memory`]), the property handler entry
//! ([`topology::dispatch`]), and the hardware back-ends' interrupt boundary
//! ([`interrupt`]: service routine registration, synchronized calls,
//! and the `InterruptLocked` state guard).
#![no_std]
#![deny(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::float_arithmetic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]
// A buffer a back-end refuses goes back to the stream by value, inside the
// `Err`, so that it is freed exactly once and at PASSIVE_LEVEL; boxing it
// would allocate on the failure path.
#![allow(
    clippy::result_large_err,
    reason = "refused buffers come back by value (see above)"
)]

extern crate alloc;

pub mod adapter;
pub mod backends;
pub mod direction;
#[cfg(feature = "fake")]
pub mod fake;
pub mod filters;
pub mod interrupt;
pub mod memory;
pub mod modes;
pub mod parameters;
pub mod platform;
pub mod power;
pub mod resources;
pub mod stream;
pub mod topology;
pub mod wave;

pub use backends::{ac97, cable, hda};
pub use cable::engine::DmaMode;
pub use cable::{CableStats, CableStream, CableWave, VirtualCable};
pub use direction::{Direction, PerDirection};
pub use platform::{LogLevel, Platform, SpinLock};
pub use stream::{Backend, WaveRtStream};
pub use topology::{PeakMeter, TopologyMiniport};
pub use wave::WaveMiniport;
