//! The interrupt request level of each emulated processor (thread).
//!
//! As the kernel tracks it: raised by spinlocks, timer and DPC callbacks
//! (`DISPATCH_LEVEL`) and interrupt service routines (device IRQL), and
//! checked by the kernel stand-ins against each routine's documented limit
//! ([`above`], [`require_at_most`]).
//!
//! # The host-built driver's spin lock and heap
//!
//! The driver image brings its own `KeAcquireSpinLockRaiseToDpc` calls and
//! pool imports (`image::kernel` checks those). The host-built miniport
//! instead gets [`EmuLock`] as its platform's spin lock, which does what the
//! kernel's does to the calling processor: it raises the thread's IRQL to
//! `DISPATCH_LEVEL` while held and restores it on release. Acquiring it
//! above `DISPATCH_LEVEL` (from an ISR, say) is a violation, as
//! `KeAcquireSpinLock` allows `<= DISPATCH_LEVEL` only; acquiring it again
//! on the processor that holds it is the deadlock a real machine spins in
//! forever, so the run stops there with the message.
//!
//! The host build's pool is the Rust heap (`wdk-alloc` gives the driver
//! `ExAllocatePool2` non-paged pool behind `alloc`), so the emulator's
//! global allocator ([`DriverHeap`]) counts every allocation that driver
//! code makes at or above `DISPATCH_LEVEL`. The kernel would let non-paged
//! pool through there; the project's rule is stricter (the miniport
//! allocates at `PASSIVE_LEVEL` only, `wavert_miniport`'s crate docs), and
//! a `Vec` that grows under a lock is the bug the rule exists for. Which
//! code is the driver's is per thread: [`EmuLock`] marks the code under the
//! lock, [`run_driver_routine`] the timer callbacks, DPCs and ISRs the
//! emulator calls, and [`as_kernel`] the kernel stand-ins the driver calls
//! back into (their own allocations are not the driver's). Each scope
//! reports what was allocated inside it to its machine as a violation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::machine::{lock, Machine};

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
    /// Whether the code running on this thread is the host-built driver's
    /// (its heap allocations at `DISPATCH_LEVEL` and above are counted).
    static DRIVER_CODE: Cell<bool> = const { Cell::new(false) };
    /// Heap allocations driver code made at `DISPATCH_LEVEL` or above that
    /// no scope has reported yet: (count, bytes).
    static RAISED_ALLOCATIONS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    /// This thread's processor number, for spin lock ownership (0: none yet).
    static PROCESSOR: Cell<u64> = const { Cell::new(0) };
    /// The state of this thread's preemption decisions (never 0).
    static PREEMPTION: Cell<u64> = const { Cell::new(0x9E37_79B9_7F4A_7C15) };
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

/// What is wrong when `routine`, documented for IRQL up to `limit`, is
/// called at the current IRQL: `None` when it may be.
#[must_use]
pub fn above(routine: &str, limit: u8) -> Option<String> {
    let now = current();
    (now > limit).then(|| {
        as_kernel(|| {
            let allowed = if limit == PASSIVE_LEVEL {
                "PASSIVE_LEVEL only".to_owned()
            } else {
                format!("allowed up to {}", name(limit))
            };
            format!("{routine} called at {} ({allowed})", name(now))
        })
    })
}

/// Records a violation on `machine` when `routine` is called above `limit`
/// (the stand-ins of the host build's kernel services and of PortCls's
/// port stream).
pub fn require_at_most(machine: &Machine, routine: &str, limit: u8) {
    if let Some(what) = above(routine, limit) {
        as_kernel(|| machine.violation(format!("IRQL: {what}")));
    }
}

/// A kernel call below `DISPATCH_LEVEL`: where the scheduler may switch
/// the thread out.
///
/// Another processor's thread then runs ahead (above `DISPATCH_LEVEL`,
/// nothing preempts the thread): the stand-ins yield there, and now and
/// then sleep a little, which widens the windows a race in the driver
/// needs.
pub fn preemption_point() {
    if current() >= DISPATCH_LEVEL {
        return;
    }
    // Now and then the thread loses its processor for a while (a
    // xorshift per thread decides, about one call in eight).
    let lost = PREEMPTION.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x % 8 == 0
    });
    if lost {
        std::thread::sleep(std::time::Duration::from_micros(50));
    } else {
        std::thread::yield_now();
    }
}

/// Restores the thread's driver-code mark when a scope ends (also when it
/// unwinds).
struct DriverMark(bool);

impl DriverMark {
    fn set(driver: bool) -> Self {
        Self(DRIVER_CODE.with(|mark| mark.replace(driver)))
    }
}

impl Drop for DriverMark {
    fn drop(&mut self) {
        DRIVER_CODE.with(|mark| mark.set(self.0));
    }
}

/// Runs kernel (emulator) code that the driver called: what it allocates
/// is not the driver's.
pub fn as_kernel<R>(f: impl FnOnce() -> R) -> R {
    let _mark = KernelScope::enter();
    f()
}

/// [`as_kernel`] as a guard, for a stand-in with several ways out: kernel
/// code until it is dropped.
#[must_use = "the scope ends when the guard is dropped"]
pub struct KernelScope {
    _mark: DriverMark,
}

impl KernelScope {
    /// Kernel code from here until the guard is dropped.
    pub fn enter() -> Self {
        Self {
            _mark: DriverMark::set(false),
        }
    }
}

/// Reports the driver's heap allocations at raised IRQL since the last
/// report to `machine`, as made in `scope`.
fn report_heap(machine: Option<&Machine>, scope: &str) {
    let (count, bytes) = RAISED_ALLOCATIONS.with(|c| c.replace((0, 0)));
    if count == 0 {
        return;
    }
    let _kernel = DriverMark::set(false);
    let what = format!(
        "IRQL: {scope} allocated from the heap {count} time(s), {bytes} bytes, at DISPATCH_LEVEL \
         or above (the driver allocates at PASSIVE_LEVEL only)"
    );
    match machine {
        Some(machine) => machine.violation(what),
        // No machine to record it on: the run stops with the message
        // rather than dropping it.
        None => panic!("{what}"),
    }
}

/// Runs a routine at `level` the way the kernel calls it.
///
/// A timer callback or DPC runs at `DISPATCH_LEVEL`, an ISR at device
/// IRQL; a routine that returns at another IRQL is a violation on
/// `machine`. Returns what the routine returned.
pub fn run_routine<R>(machine: &Machine, level: u8, routine: &str, f: impl FnOnce() -> R) -> R {
    let (result, left) = run_at(level, f);
    if left != level {
        let _kernel = DriverMark::set(false);
        machine.violation(format!(
            "IRQL: {routine} returned at {} (entered at {})",
            name(left),
            name(level)
        ));
    }
    result
}

/// [`run_routine`] for the host-built driver's code: also reports the heap
/// allocations it made at `DISPATCH_LEVEL` or above.
pub fn run_driver_routine<R>(
    machine: &Machine,
    level: u8,
    routine: &str,
    f: impl FnOnce() -> R,
) -> R {
    let result = run_routine(machine, level, routine, || {
        let _mark = DriverMark::set(true);
        f()
    });
    report_heap(Some(machine), routine);
    result
}

/// The emulator's global allocator: the system's, counting the host-built
/// driver's allocations at `DISPATCH_LEVEL` and above (see the module
/// documentation). It never allocates itself and takes no lock.
#[derive(Debug)]
pub struct DriverHeap;

impl DriverHeap {
    fn note(size: usize) {
        let driver = DRIVER_CODE.try_with(Cell::get).unwrap_or(false);
        if driver && CURRENT.try_with(Cell::get).unwrap_or(PASSIVE_LEVEL) >= DISPATCH_LEVEL {
            let _ = RAISED_ALLOCATIONS.try_with(|c| {
                let (count, bytes) = c.get();
                c.set((count + 1, bytes + size as u64));
            });
        }
    }
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged, so its guarantees are the system allocator's; the
// bookkeeping touches only this thread's plain cells.
unsafe impl GlobalAlloc for DriverHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: the caller's contract for `GlobalAlloc::alloc`, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: the caller's contract for `GlobalAlloc::alloc_zeroed`, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `GlobalAlloc::dealloc`, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::note(new_size);
        // SAFETY: the caller's contract for `GlobalAlloc::realloc`, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// This thread's processor number (assigned on first use, never 0).
fn processor() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    PROCESSOR.with(|p| {
        if p.get() == 0 {
            p.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        p.get()
    })
}

/// The host-built driver's spin lock.
///
/// A `KSPIN_LOCK` with `KeAcquireSpinLockRaiseToDpc` /
/// `KeReleaseSpinLock`: a mutex that raises the holder's IRQL to `DISPATCH_LEVEL`, marks the code under it
/// as the driver's and reports to its machine what that code breaks (see
/// the module documentation).
///
/// The platform makes it with its machine ([`EmuLock::on`]); one made with
/// [`wavert_miniport::SpinLock::new`] has no machine to report to, so a
/// violation under it stops the run with its message.
#[derive(Debug)]
pub struct EmuLock<T> {
    value: Mutex<T>,
    /// The processor holding it (0: free).
    owner: AtomicU64,
    machine: Option<Arc<Machine>>,
}

impl<T> EmuLock<T> {
    /// A lock around `value` that reports to `machine`.
    #[must_use]
    pub fn on(machine: &Arc<Machine>, value: T) -> Self {
        Self {
            value: Mutex::new(value),
            owner: AtomicU64::new(0),
            machine: Some(Arc::clone(machine)),
        }
    }

    fn report(&self, what: &str) {
        let _kernel = DriverMark::set(false);
        match &self.machine {
            Some(machine) => machine.violation(what.to_owned()),
            None => panic!("{what} (a spin lock made without its platform's machine)"),
        }
    }
}

impl<T: Send> wavert_miniport::SpinLock<T> for EmuLock<T> {
    fn new(value: T) -> Self {
        Self {
            value: Mutex::new(value),
            owner: AtomicU64::new(0),
            machine: None,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let entry = current();
        if let Some(what) = above(
            "KeAcquireSpinLockRaiseToDpc (the driver's spin lock)",
            DISPATCH_LEVEL,
        ) {
            self.report(&as_kernel(|| format!("IRQL: {what}")));
        }
        let me = processor();
        if self.owner.load(Ordering::Acquire) == me {
            let what = "spinlock: the driver's spin lock acquired again by the processor \
                        holding it (it would spin there forever)";
            self.report(what);
            panic!("{what}");
        }
        let mut value = lock(&self.value);
        self.owner.store(me, Ordering::Release);
        let held_at = entry.max(DISPATCH_LEVEL);
        let (result, left) = run_at(held_at, || {
            let _mark = DriverMark::set(true);
            f(&mut value)
        });
        self.owner.store(0, Ordering::Release);
        drop(value);
        if left != held_at {
            self.report(&as_kernel(|| {
                format!(
                    "IRQL: the code under the driver's spin lock changed the IRQL to {} (held at {})",
                    name(left),
                    name(held_at)
                )
            }));
        }
        if RAISED_ALLOCATIONS.with(Cell::get).0 != 0 {
            report_heap(self.machine.as_deref(), "code under the driver's spin lock");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wavert_miniport::SpinLock as _;

    fn machine() -> Arc<Machine> {
        Machine::small_for_tests()
    }

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

    #[test]
    fn the_lock_raises_to_dispatch_and_restores() {
        let m = machine();
        let lock = EmuLock::on(&m, 7u32);
        assert_eq!(lock.with(|v| (*v, current())), (7, DISPATCH_LEVEL));
        assert_eq!(current(), PASSIVE_LEVEL);
        // Already at DISPATCH (a timer callback): stays there.
        let ((), left) = run_at(DISPATCH_LEVEL, || {
            assert_eq!(lock.with(|_| current()), DISPATCH_LEVEL);
        });
        assert_eq!(left, DISPATCH_LEVEL);
        assert!(m.violations().is_empty(), "{:?}", m.violations());
    }

    #[test]
    fn allocating_under_the_lock_is_reported_and_allocating_outside_is_not() {
        let m = machine();
        let lock = EmuLock::on(&m, Vec::<u8>::new());
        // PASSIVE_LEVEL: allowed.
        let outside = std::hint::black_box(vec![0u8; 64]);
        drop(outside);
        // Kernel code the driver calls under the lock: not the driver's.
        lock.with(|_| as_kernel(|| drop(std::hint::black_box(vec![0u8; 16]))));
        assert!(m.violations().is_empty(), "{:?}", m.violations());
        // The driver grows a Vec under its lock.
        lock.with(|v| v.extend_from_slice(&[1, 2, 3]));
        let violations = m.violations();
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0]
                .contains("code under the driver's spin lock allocated from the heap 1 time(s)"),
            "{violations:?}"
        );
    }

    #[test]
    fn a_routine_that_allocates_or_changes_irql_is_reported() {
        let m = machine();
        run_driver_routine(&m, DISPATCH_LEVEL, "a test DPC", || {
            drop(std::hint::black_box(Box::new(5u64)));
        });
        run_driver_routine(&m, DEVICE_IRQL, "a test ISR", || {
            set(DISPATCH_LEVEL);
        });
        let violations = m.violations();
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(violations[0].contains("a test DPC allocated from the heap 1 time(s), 8 bytes"));
        assert!(
            violations[1].contains("a test ISR returned at DISPATCH_LEVEL (entered at DIRQL 5)")
        );
    }

    #[test]
    fn the_lock_above_dispatch_and_a_limit_are_reported() {
        let m = machine();
        let lock = EmuLock::on(&m, ());
        let ((), _) = run_at(DEVICE_IRQL, || {
            lock.with(|()| assert_eq!(current(), DEVICE_IRQL));
            require_at_most(&m, "IPortWaveRTStream::MapAllocatedPages", PASSIVE_LEVEL);
        });
        let violations = m.violations();
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(violations[0].contains("called at DIRQL 5 (allowed up to DISPATCH_LEVEL)"));
        assert!(violations[1].contains(
            "IPortWaveRTStream::MapAllocatedPages called at DIRQL 5 (PASSIVE_LEVEL only)"
        ));
    }

    #[test]
    fn acquiring_a_held_lock_on_its_own_processor_stops_the_run() {
        let m = machine();
        let lock = Arc::new(EmuLock::on(&m, ()));
        let inner = Arc::clone(&lock);
        let run = std::thread::spawn(move || inner.with(|()| inner.with(|()| ())));
        assert!(
            run.join().is_err(),
            "the second acquisition must not return"
        );
        assert!(m.violations().iter().any(|v| v.contains("acquired again")));
    }
}
