//! The hardware-independent heart of the WaveRT driver.
//!
//! Everything here is pure logic over integers: no kernel, no COM, no
//! floating point, no allocation. Each module owns one concept:
//!
//! - [`ac97`]: the Intel ICH AC'97 back-end (codec, bus-master channels, ISR)
//!   over a register-bus trait, and [`ac97::sim`], a register-level model.
//! - [`bus`]: the register-bus and DMA-memory traits the back-ends use.
//! - [`hda`]: the Intel HD Audio back-end (controller, CORB/RIRB verbs,
//!   codec walk, stream descriptors, ISR) over MMIO, and [`hda::sim`], a
//!   register-level model of QEMU's controller and codec.
//! - [`convert`]: format conversion (sample type and depth, channel map by
//!   speaker mask, fixed-point polyphase resampling) for the cable.
//! - [`format`]: WAVEFORMATEX / WAVEFORMATEXTENSIBLE parsing and validation.
//! - [`range`]: KSDATARANGE_AUDIO and the data-range intersection.
//! - [`negotiate`]: cyclic buffer size negotiation (`KSPROPERTY_RTAUDIO_BUFFER`).
//! - [`geometry`]: a cyclic buffer over non-contiguous physical pages.
//! - [`sg`]: scatter/gather descriptor lists (AC'97 and HD Audio profiles).
//! - [`dma`]: looping and non-looping (refill) DMA strategies, and [`dma::sim`],
//!   a model of an AC'97-style bus-master engine used to test them.
//! - [`position`]: linear, cyclic and presentation positions from QPC time.
//! - [`notify`]: the packet / notification-event schedule.
//! - [`packet`]: Windows 10 packet mode (which packet the OS writes or
//!   reads next).
//! - [`state`]: the KSSTATE machine tying positions and notifications together.
#![no_std]
#![forbid(unsafe_code)]
// This code runs in the kernel, at DISPATCH level and in ISRs: a panic is a
// bugcheck and floating-point state is not saved there. These lints make the
// rules mechanical rather than a matter of review.
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

pub mod ac97;
pub mod bus;
pub mod convert;
pub mod dma;
pub mod format;
pub mod geometry;
pub mod guid;
pub mod hda;
pub mod negotiate;
pub mod notify;
pub mod packet;
pub mod position;
pub mod range;
pub mod sg;
pub mod state;

pub use guid::Guid;
