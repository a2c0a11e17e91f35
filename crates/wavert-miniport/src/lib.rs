//! The virtual loopback cable: WaveRT and topology miniports, the virtual
//! DMA engine and the adapter logic, as portable code.
//!
//! What is rendered to the cable's speaker endpoint comes out of its
//! microphone endpoint, byte for byte when both streams use the same format.
//!
//! # Using it (driver, emulator, tests)
//!
//! 1. Implement [`Platform`] (QPC, a spinlock type, `KeSetEvent`, a periodic
//!    timer, logging).
//! 2. Make the cable: `Arc::new(VirtualCable::new(platform, DmaMode::Looping))`
//!    (or [`DmaMode::Refill`], the non-looping engine refilled from the timer
//!    routine as an AC'97 ISR does).
//! 3. Either register everything through PortCls with
//!    [`adapter::install`] over a [`adapter::PortClsServices`]
//!    implementation, or build the COM objects directly:
//!    `wavert_com::new_wave_rt_miniport(CableWave::new(cable.clone(), Direction::Render))`
//!    and `wavert_com::new_topology_miniport(TopologyMiniport::new(Direction::Render))`
//!    (the same for [`Direction::Capture`]) and drive their vtables.
//! 4. Whenever the platform's timer fires (it is started and stopped by the
//!    cable through [`Platform::start_timer`] / [`Platform::stop_timer`] as
//!    streams enter and leave RUN), call [`VirtualCable::on_timer`] with the
//!    current QPC. A test platform may instead call it whenever it likes.
//!
//! The filters, pins and categories are in [`filters`]; the subdevice names
//! and interface categories the INF must match are
//! [`adapter::SUBDEVICES`].
//!
//! # Rules
//!
//! `no_std` + `alloc`. Memory is allocated only at `PASSIVE_LEVEL` (objects,
//! buffer page lists and descriptor lists); the timer and position paths
//! run under the platform spinlock and never allocate, block or panic.
//! `unsafe` lives only at the boundaries: calls through the port stream's
//! vtable and the buffer mapping ([`memory`]), and the property handler
//! entry ([`topology::dispatch`]).
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

extern crate alloc;

pub mod adapter;
pub mod backends;
pub mod direction;
pub mod filters;
pub mod memory;
pub mod platform;
pub mod stream;
pub mod topology;
pub mod wave;

pub use backends::{ac97, cable};
pub use cable::engine::DmaMode;
pub use cable::{CableStats, CableStream, CableWave, VirtualCable, TIMER_PERIOD_100NS};
pub use direction::{Direction, PerDirection};
pub use platform::{LogLevel, Platform, SpinLock};
pub use stream::{Backend, WaveRtStream};
pub use topology::TopologyMiniport;
pub use wave::WaveMiniport;
