//! The interrupt request level of each emulated processor (thread).
//!
//! As the kernel tracks it: raised by spinlocks, timer and DPC callbacks
//! (`DISPATCH_LEVEL`) and interrupt service routines (device IRQL), and
//! checked by the kernel stand-ins against each routine's documented limit.

use std::cell::Cell;

/// `PASSIVE_LEVEL`: threads, where everything may be called.
pub const PASSIVE_LEVEL: u8 = 0;
/// `APC_LEVEL`.
pub const APC_LEVEL: u8 = 1;
/// `DISPATCH_LEVEL`: spinlocks held, DPCs and timer callbacks.
pub const DISPATCH_LEVEL: u8 = 2;
/// The device IRQL the emulated interrupt controller gives its lines (any
/// value above `DISPATCH_LEVEL` behaves the same for the rules checked here).
pub const DEVICE_IRQL: u8 = 5;

thread_local! {
    static CURRENT: Cell<u8> = const { Cell::new(PASSIVE_LEVEL) };
}

/// The calling thread's IRQL (`KeGetCurrentIrql`).
#[must_use]
pub fn current() -> u8 {
    CURRENT.with(Cell::get)
}

/// Sets the calling thread's IRQL; returns the previous one.
#[allow(clippy::must_use_candidate, reason = "lowering IRQL needs no answer")]
pub fn set(level: u8) -> u8 {
    CURRENT.with(|irql| irql.replace(level))
}

/// Runs `f` at `level` (as an interrupt or a DPC runs), then restores the
/// level the thread had; returns what `f` returned and the IRQL `f` left
/// behind, which a well-behaved routine leaves as it found it.
pub fn run_at<R>(level: u8, f: impl FnOnce() -> R) -> (R, u8) {
    let before = set(level);
    let result = f();
    let left = set(before);
    (result, left)
}

/// The name the kernel documentation uses for a level.
#[must_use]
pub fn name(level: u8) -> String {
    match level {
        PASSIVE_LEVEL => "PASSIVE_LEVEL".to_owned(),
        APC_LEVEL => "APC_LEVEL".to_owned(),
        DISPATCH_LEVEL => "DISPATCH_LEVEL".to_owned(),
        other => format!("DIRQL {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_at_raises_and_restores() {
        assert_eq!(current(), PASSIVE_LEVEL);
        let (seen, left) = run_at(DISPATCH_LEVEL, current);
        assert_eq!((seen, left), (DISPATCH_LEVEL, DISPATCH_LEVEL));
        assert_eq!(current(), PASSIVE_LEVEL);
        let ((), left) = run_at(DEVICE_IRQL, || {
            set(PASSIVE_LEVEL);
        });
        assert_eq!(left, PASSIVE_LEVEL, "a routine that lowers IRQL is seen");
        assert_eq!(name(DEVICE_IRQL), "DIRQL 5");
    }
}
