//! The kernel services the miniport needs, as a trait.
//!
//! The driver implements [`Platform`] over `wdk-sys`; tests and the emulator
//! implement it over `std`. Each method states the IRQL it may be called at
//! and the IRQL it is called at by this crate.

use core::fmt;

use portcls_sys::PKEVENT;

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
/// (the driver gives the timer a pointer to the cable). The cable arms it
/// as a one-shot ([`Platform::arm_timer`]) for the next packet end of its
/// running streams (and at most [`crate::TIMER_PERIOD_100NS`] ahead), and
/// re-arms it from the callback, so notification events are signalled at
/// their packet end rather than up to a timer period after it.
pub trait Platform: Send + Sync + 'static {
    /// The spinlock type.
    type Lock<T: Send>: SpinLock<T>;

    /// The performance counter (`KeQueryPerformanceCounter`). IRQL: any.
    fn qpc(&self) -> u64;
    /// Its frequency in ticks per second (constant). IRQL: any.
    fn qpc_frequency(&self) -> u64;
    /// Signals a notification event (`KeSetEvent(event, 0, FALSE)`).
    /// IRQL: `<= DISPATCH_LEVEL`; called at `DISPATCH_LEVEL` under the cable
    /// lock.
    fn signal_event(&self, event: PKEVENT);
    /// Starts (or restarts) the timer as a periodic one with a period of
    /// `period_100ns` hundred-nanosecond units. IRQL: `<= DISPATCH_LEVEL`.
    ///
    /// The cable no longer calls it directly: only the default
    /// [`Platform::arm_timer`] does, for a platform that has no one-shot
    /// timer (events then come up to a period late).
    fn start_timer(&self, period_100ns: u32);
    /// Arms the timer to fire once, at the first instant the performance
    /// counter reads `due_qpc` or more (as close to it as the platform can,
    /// never before it), replacing any earlier arming (periodic or not).
    /// A `due_qpc` already past fires as soon as possible.
    ///
    /// IRQL: `<= DISPATCH_LEVEL`; called at `DISPATCH_LEVEL` under the cable
    /// lock (from the timer callback, `SetState`, `GetPosition` and stream
    /// release), so it must not block, allocate or take the cable lock. The
    /// callback may run on another processor meanwhile; the cable copes with
    /// a spurious or early callback (it services and arms again).
    ///
    /// The default starts the periodic timer with
    /// [`crate::TIMER_PERIOD_100NS`] (the contract before one-shots, kept
    /// for platforms that never serve the cable); the driver's and the
    /// emulator's platforms override it.
    fn arm_timer(&self, due_qpc: u64) {
        let _ = due_qpc;
        self.start_timer(crate::cable::TIMER_PERIOD_100NS);
    }
    /// Stops the timer (periodic or armed); a callback already running may
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
