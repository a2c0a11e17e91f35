//! COM object layer for PortCls miniports.
//!
//! * Safe traits for what a miniport implements: [`Miniport`],
//!   [`MiniportWaveRt`], [`MiniportWaveRtStream`] (with event notification
//!   and the Windows 10 packet interfaces), [`MiniportTopology`].
//! * Objects built from a Rust value: [`new_wave_rt_miniport`],
//!   [`new_topology_miniport`], [`new_wave_rt_stream`], and the adapter's
//!   power management ([`new_adapter_power_management`]). Each is a pinned,
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
mod power;
mod ptr;
mod single;
mod stream;

pub use event::KernelEvent;
pub use miniport::{
    new_topology_miniport, new_wave_rt_miniport, topology_miniport_value, wave_miniport_value,
    Miniport, MiniportTopology, MiniportWaveRt,
};
pub use object::{unknown_vtbl, ComClass, ComObject};
pub use power::{new_adapter_power_management, AdapterPowerManagement};
pub use ptr::{ComPtr, Interface};
pub use single::{new_single, single_value, OneInterface, SingleInterface};
pub use stream::{new_wave_rt_stream, AudioBuffer, MiniportWaveRtStream, PacketMode, ReadPacket};

use portcls_sys::{NTSTATUS, NT_SUCCESS};

/// A failed `NTSTATUS` carried in a `Result`: an error or warning code, never
/// a success code (so `Err` always means failure at the boundary).
///
/// # Invariants
///
/// `!NT_SUCCESS(code)`: [`NtStatus::new`] refuses success codes and every
/// named constant is checked when it is compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct NtStatus(NTSTATUS);

/// Makes a named failure; a success code fails the build (it is only ever
/// evaluated for the constants below).
const fn failure(code: NTSTATUS) -> NtStatus {
    assert!(!NT_SUCCESS(code), "an NtStatus is a failure code");
    NtStatus(code)
}

impl NtStatus {
    /// `STATUS_NOT_SUPPORTED`.
    pub const NOT_SUPPORTED: Self = failure(portcls_sys::STATUS_NOT_SUPPORTED);
    /// `STATUS_INVALID_PARAMETER`.
    pub const INVALID_PARAMETER: Self = failure(portcls_sys::STATUS_INVALID_PARAMETER);
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    pub const INSUFFICIENT_RESOURCES: Self = failure(portcls_sys::STATUS_INSUFFICIENT_RESOURCES);
    /// `STATUS_BUFFER_TOO_SMALL`.
    pub const BUFFER_TOO_SMALL: Self = failure(portcls_sys::STATUS_BUFFER_TOO_SMALL);
    /// `STATUS_BUFFER_OVERFLOW` (a warning: the size-query answer).
    pub const BUFFER_OVERFLOW: Self = failure(portcls_sys::STATUS_BUFFER_OVERFLOW);
    /// `STATUS_NO_MATCH`.
    pub const NO_MATCH: Self = failure(portcls_sys::STATUS_NO_MATCH);
    /// `STATUS_NOINTERFACE`.
    pub const NOINTERFACE: Self = failure(portcls_sys::STATUS_NOINTERFACE);
    /// `STATUS_INVALID_DEVICE_REQUEST`.
    pub const INVALID_DEVICE_REQUEST: Self = failure(portcls_sys::STATUS_INVALID_DEVICE_REQUEST);
    /// `STATUS_INVALID_DEVICE_STATE`.
    pub const INVALID_DEVICE_STATE: Self = failure(portcls_sys::STATUS_INVALID_DEVICE_STATE);
    /// `STATUS_UNSUCCESSFUL`.
    pub const UNSUCCESSFUL: Self = failure(portcls_sys::STATUS_UNSUCCESSFUL);
    /// `STATUS_NOT_FOUND`.
    pub const NOT_FOUND: Self = failure(portcls_sys::STATUS_NOT_FOUND);
    /// `STATUS_NOT_IMPLEMENTED`.
    pub const NOT_IMPLEMENTED: Self = failure(portcls_sys::STATUS_NOT_IMPLEMENTED);
    /// `STATUS_DEVICE_NOT_READY`.
    pub const DEVICE_NOT_READY: Self = failure(portcls_sys::STATUS_DEVICE_NOT_READY);
    /// `STATUS_DATA_LATE_ERROR`.
    pub const DATA_LATE_ERROR: Self = failure(portcls_sys::STATUS_DATA_LATE_ERROR);
    /// `STATUS_DATA_OVERRUN`.
    pub const DATA_OVERRUN: Self = failure(portcls_sys::STATUS_DATA_OVERRUN);
    /// `STATUS_DEVICE_CONFIGURATION_ERROR`.
    pub const DEVICE_CONFIGURATION_ERROR: Self =
        failure(portcls_sys::STATUS_DEVICE_CONFIGURATION_ERROR);
    /// `STATUS_OBJECT_NAME_COLLISION`.
    pub const OBJECT_NAME_COLLISION: Self = failure(portcls_sys::STATUS_OBJECT_NAME_COLLISION);

    /// The failure `code` is, or `None` for a success code.
    #[must_use]
    pub const fn new(code: NTSTATUS) -> Option<Self> {
        if NT_SUCCESS(code) {
            None
        } else {
            Some(Self(code))
        }
    }

    /// A code that a call reported as its failure: the code itself, or
    /// `STATUS_UNSUCCESSFUL` if it is in fact a success code (so a failure
    /// is never lost as success).
    #[must_use]
    pub const fn from_failure(code: NTSTATUS) -> Self {
        match Self::new(code) {
            Some(failure) => failure,
            None => Self::UNSUCCESSFUL,
        }
    }

    /// A status a call returned, as a result: `Ok` for any success code.
    ///
    /// # Errors
    ///
    /// The failure code itself.
    pub const fn check(code: NTSTATUS) -> NtResult<()> {
        match Self::new(code) {
            None => Ok(()),
            Some(failure) => Err(failure),
        }
    }

    /// The `NTSTATUS` code.
    #[must_use]
    pub const fn code(self) -> NTSTATUS {
        self.0
    }
}

/// The result of a miniport operation.
pub type NtResult<T> = Result<T, NtStatus>;

/// The `NTSTATUS` a trampoline returns for a result.
pub(crate) const fn status_of(r: NtResult<()>) -> NTSTATUS {
    match r {
        Ok(()) => portcls_sys::STATUS_SUCCESS,
        Err(failure) => failure.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_nt_status_never_holds_a_success_code() {
        assert_eq!(NtStatus::new(portcls_sys::STATUS_SUCCESS), None);
        assert_eq!(NtStatus::new(portcls_sys::STATUS_PENDING), None);
        assert_eq!(
            NtStatus::new(portcls_sys::STATUS_NOT_SUPPORTED),
            Some(NtStatus::NOT_SUPPORTED)
        );
        assert_eq!(
            NtStatus::from_failure(portcls_sys::STATUS_SUCCESS),
            NtStatus::UNSUCCESSFUL
        );
        assert_eq!(NtStatus::check(portcls_sys::STATUS_SUCCESS), Ok(()));
        assert_eq!(
            NtStatus::check(portcls_sys::STATUS_BUFFER_OVERFLOW),
            Err(NtStatus::BUFFER_OVERFLOW)
        );
        assert_eq!(
            status_of(Err(NtStatus::NO_MATCH)),
            portcls_sys::STATUS_NO_MATCH
        );
    }
}
