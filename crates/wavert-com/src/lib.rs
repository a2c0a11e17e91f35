//! COM object layer for PortCls miniports.
//!
//! * Safe traits for what a miniport implements: [`Miniport`],
//!   [`MiniportWaveRt`], [`MiniportWaveRtStream`] (with event notification
//!   and the Windows 10 packet interfaces), [`MiniportTopology`].
//! * Objects built from a Rust value: [`new_wave_rt_miniport`],
//!   [`new_topology_miniport`], [`new_wave_rt_stream`]. Each is a pinned,
//!   heap-allocated `#[repr(C)]` block whose first words are the interface
//!   (vtable) pointers, then an atomic reference count, then the value.
//! * One `const` vtable per implementing type and interface, made of generic
//!   `extern "system"` trampolines that find the object from `this`, call the
//!   trait, and turn `Err(NtStatus)` into the returned `NTSTATUS`.
//! * [`ComPtr`]: a counted reference to an interface we receive or create.
//!
//! Panics cannot unwind across a trampoline: the driver builds with
//! `panic = "abort"`, and a panic reaching an `extern "system"` function
//! aborts in any case (Rust does not unwind through a non-`-unwind` ABI).
#![no_std]

extern crate alloc;

mod event;
mod miniport;
mod object;
mod ptr;
mod stream;

pub use event::KernelEvent;
pub use miniport::{
    new_topology_miniport, new_wave_rt_miniport, topology_miniport_value, Miniport,
    MiniportTopology, MiniportWaveRt,
};
pub use object::ComClass;
pub use ptr::{ComPtr, Interface};
pub use stream::{new_wave_rt_stream, AudioBuffer, MiniportWaveRtStream, PacketMode, ReadPacket};

use portcls_sys::NTSTATUS;

/// A failed `NTSTATUS` carried in a `Result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct NtStatus(pub NTSTATUS);

impl NtStatus {
    /// `STATUS_NOT_SUPPORTED`.
    pub const NOT_SUPPORTED: Self = Self(portcls_sys::STATUS_NOT_SUPPORTED);
    /// `STATUS_INVALID_PARAMETER`.
    pub const INVALID_PARAMETER: Self = Self(portcls_sys::STATUS_INVALID_PARAMETER);
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    pub const INSUFFICIENT_RESOURCES: Self = Self(portcls_sys::STATUS_INSUFFICIENT_RESOURCES);
    /// `STATUS_BUFFER_TOO_SMALL`.
    pub const BUFFER_TOO_SMALL: Self = Self(portcls_sys::STATUS_BUFFER_TOO_SMALL);
    /// `STATUS_BUFFER_OVERFLOW`.
    pub const BUFFER_OVERFLOW: Self = Self(portcls_sys::STATUS_BUFFER_OVERFLOW);
    /// `STATUS_NO_MATCH`.
    pub const NO_MATCH: Self = Self(portcls_sys::STATUS_NO_MATCH);
    /// `STATUS_NOINTERFACE`.
    pub const NOINTERFACE: Self = Self(portcls_sys::STATUS_NOINTERFACE);
}

/// The result of a miniport operation.
pub type NtResult<T> = Result<T, NtStatus>;

/// The `NTSTATUS` a trampoline returns for a result.
pub(crate) const fn status_of(r: NtResult<()>) -> NTSTATUS {
    match r {
        Ok(()) => portcls_sys::STATUS_SUCCESS,
        Err(NtStatus(s)) => s,
    }
}
