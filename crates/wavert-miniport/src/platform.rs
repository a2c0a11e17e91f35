//! The kernel services the miniport needs, as a trait.
//!
//! The driver implements [`Platform`] over `wdk-sys`; tests and the emulator
//! implement it over `std`. Each method states the IRQL it may be called at
//! and the IRQL it is called at by this crate.

use core::fmt;

use wavert_com::KernelEvent;

/// A spinlock guarding a value (a `KSPIN_LOCK` in the kernel).
///
/// `with` raises to `DISPATCH_LEVEL` for the closure (kernel) and must not be
/// re-entered on the same lock. The closure must be short, must not block,
/// must not allocate and must not call back into the same lock.
pub trait SpinLock<T>: Send + Sync {
    /// A lock around `value`. IRQL: `PASSIVE_LEVEL` (it may allocate nothing,
    /// but it is only ever called while building objects).
    fn new(value: T) -> Self;
    /// Runs `f` with exclusive access to the value. IRQL: `<= DISPATCH_LEVEL`;
    /// `f` runs at `DISPATCH_LEVEL`.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

/// How loud a log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Something refused or failed (bad input from a client, no memory).
    Error,
    /// Worth knowing in normal operation (streams, buffers, states).
    Info,
}

/// The services the virtual cable needs from the kernel.
///
/// The platform also owns a timer whose callback (at `DISPATCH_LEVEL`)
/// calls [`crate::VirtualCable::on_timer`] of the cable that owns the
/// platform: how the callback finds the cable is the platform's business
/// (the driver gives the timer a pointer to the cable). While a stream
/// runs, the cable keeps it armed as a one-shot for the next moment
/// something falls due (the next packet end of either stream), so a
/// notification event is signalled at its packet end.
pub trait Platform: Send + Sync + 'static {
    /// The spinlock type.
    type Lock<T: Send>: SpinLock<T>;

    /// A spin lock around `value` (`KeInitializeSpinLock`). The miniport
    /// makes every lock it holds through its platform, so that a platform
    /// can tie its locks to what checks them (the emulator's machine
    /// records what driver code does under them). The default is
    /// [`SpinLock::new`]. IRQL: `PASSIVE_LEVEL` (while objects are built).
    fn new_lock<T: Send>(&self, value: T) -> Self::Lock<T> {
        Self::Lock::new(value)
    }
    /// The performance counter (`KeQueryPerformanceCounter`). IRQL: any.
    fn qpc(&self) -> u64;
    /// Its frequency in ticks per second (constant). IRQL: any.
    fn qpc_frequency(&self) -> u64;
    /// Signals a notification event (`KeSetEvent(event, 0, FALSE)`).
    /// IRQL: `<= DISPATCH_LEVEL`; called at `DISPATCH_LEVEL` under the cable
    /// lock.
    fn signal_event(&self, event: KernelEvent);
    /// Arms the timer to fire once, `due_in_100ns` hundred-nanosecond units
    /// from now (`ExSetTimer` with a relative due time and no period),
    /// replacing any due time set before: the cable sets it for the next
    /// moment something falls due, so an event is signalled at its packet
    /// end, not at the next tick of a periodic timer. IRQL:
    /// `<= DISPATCH_LEVEL`; called at `DISPATCH_LEVEL` under the cable lock
    /// (also from the timer's own callback).
    fn set_timer(&self, due_in_100ns: u64);
    /// Stops the timer; a callback already running may
    /// finish. IRQL: `<= DISPATCH_LEVEL`; called at `DISPATCH_LEVEL` under
    /// the cable lock.
    fn stop_timer(&self);
    /// Queues the platform's deferred procedure call, whose routine (at
    /// `DISPATCH_LEVEL`) calls [`crate::ac97::Ac97Device::on_dpc`] of the
    /// device that owns the platform (how the routine finds the device is
    /// the platform's business, as for the timer). Queuing an already
    /// queued DPC is a no-op (`KeInsertQueueDpc` returns `FALSE`).
    /// IRQL: any, up to DIRQL: the AC'97 ISR calls it under the interrupt
    /// lock, so it must not take any lock itself.
    ///
    /// Returns whether a DPC was queued. The default queues nothing and
    /// returns `false`: the device then runs its deferred step at the next
    /// `GetPosition` or state change (at `<= DISPATCH_LEVEL`), which keeps
    /// platforms that never drive an interrupting device (the virtual
    /// cable's) compiling unchanged. A platform serving real hardware
    /// overrides it.
    fn queue_dpc(&self) -> bool {
        false
    }
    /// Writes a log line. IRQL: `<= DISPATCH_LEVEL` (`DbgPrint` is fine at
    /// DISPATCH); must not allocate.
    fn log(&self, level: LogLevel, message: fmt::Arguments<'_>);
}
