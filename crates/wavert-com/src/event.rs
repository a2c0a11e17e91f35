//! [`KernelEvent`]: a notification event the port handed the miniport.

use core::ptr::NonNull;

use portcls_sys::{KEVENT, PKEVENT};

/// A `KEVENT` the port passed to `RegisterNotificationEvent`.
///
/// Only the stream trampoline makes one, from the pointer PortCls passes, so
/// the miniport never holds an event pointer it was not given.
///
/// # Invariants
///
/// Non-null, and points to a `KEVENT` that the port keeps alive until the
/// miniport has unregistered it (or the buffer it was registered on is
/// freed), as PortCls guarantees for the events it registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelEvent(NonNull<KEVENT>);

// SAFETY: the pointer is only handed back to `KeSetEvent`, which any
// processor may call at `<= DISPATCH_LEVEL`; the port keeps the event alive
// (see the invariants).
unsafe impl Send for KernelEvent {}
// SAFETY: as above; `&KernelEvent` gives no access to the event's contents.
unsafe impl Sync for KernelEvent {}

impl KernelEvent {
    /// Wraps the event pointer the port passed; `None` for null.
    ///
    /// # Safety
    ///
    /// `event` is null or a `KEVENT` that stays valid until it is
    /// unregistered or its buffer freed (PortCls's contract for
    /// `RegisterNotificationEvent`).
    #[must_use]
    pub unsafe fn from_raw(event: PKEVENT) -> Option<Self> {
        // INVARIANT: non-null checked here; the lifetime is the caller's contract.
        NonNull::new(event).map(Self)
    }

    /// The pointer, for `KeSetEvent`.
    #[must_use]
    pub const fn as_raw(self) -> PKEVENT {
        self.0.as_ptr()
    }
}
