//! The miniport's [`Platform`] over the kernel (`wdk-sys`).
//!
//! IRQL of each service is stated on it; the trait in `wavert-miniport`
//! documents what the cable expects.

use core::cell::UnsafeCell;
use core::fmt::{self, Write as _};
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use portcls_sys::PKEVENT;
use wavert_miniport::{LogLevel, Platform, SpinLock, VirtualCable};
use wdk_sys::ntddk::{
    DbgPrint, ExCancelTimer, ExDeleteTimer, ExSetTimer, KeAcquireSpinLockRaiseToDpc,
    KeQueryPerformanceCounter, KeReleaseSpinLock, KeSetEvent,
};
use wdk_sys::{KSPIN_LOCK, LARGE_INTEGER, PEX_TIMER, PVOID};

/// A value guarded by a `KSPIN_LOCK` (`KeAcquireSpinLockRaiseToDpc`).
pub struct KernelSpinLock<T> {
    lock: UnsafeCell<KSPIN_LOCK>,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached under the spinlock, by one processor at a time.
unsafe impl<T: Send> Send for KernelSpinLock<T> {}
// SAFETY: as above: `with` serialises every access.
unsafe impl<T: Send> Sync for KernelSpinLock<T> {}

impl<T: Send> SpinLock<T> for KernelSpinLock<T> {
    /// `KeInitializeSpinLock` is an inline store of 0; so is this.
    fn new(value: T) -> Self {
        Self {
            lock: UnsafeCell::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// IRQL: `<= DISPATCH_LEVEL`; `f` runs at `DISPATCH_LEVEL`.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: the lock word lives as long as `self`; raising to DISPATCH is allowed at <= DISPATCH.
        let old_irql = unsafe { KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        // SAFETY: the spinlock is held: no other reference to the value exists.
        let result = f(unsafe { &mut *self.value.get() });
        // SAFETY: releases the lock acquired above, restoring the caller's IRQL.
        unsafe { KeReleaseSpinLock(self.lock.get(), old_irql) };
        result
    }
}

/// The kernel services of the virtual cable.
pub struct KernelPlatform {
    frequency: u64,
    /// The cable's high-resolution timer (`ExAllocateTimer`), attached once
    /// the cable exists (its callback needs the cable's address).
    timer: AtomicPtr<wdk_sys::_EX_TIMER>,
}

impl KernelPlatform {
    /// Reads the performance counter frequency. IRQL: any.
    pub fn new() -> Self {
        let mut frequency = LARGE_INTEGER::default();
        // SAFETY: `frequency` is a writable LARGE_INTEGER for the call.
        unsafe { KeQueryPerformanceCounter(&raw mut frequency) };
        // SAFETY: every view of a LARGE_INTEGER is initialised; QuadPart is the whole value.
        let quad = unsafe { frequency.QuadPart };
        Self {
            frequency: u64::try_from(quad).unwrap_or(0),
            timer: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Hands the platform the timer it owns from now on (deleted on drop).
    /// IRQL: `PASSIVE_LEVEL`.
    pub fn attach_timer(&self, timer: PEX_TIMER) {
        self.timer.store(timer, Ordering::Release);
    }
}

impl Drop for KernelPlatform {
    /// IRQL: `PASSIVE_LEVEL` (the last reference to the cable goes with the
    /// last miniport or stream, which PortCls releases at PASSIVE).
    fn drop(&mut self) {
        let timer = self.timer.swap(ptr::null_mut(), Ordering::AcqRel);
        if !timer.is_null() {
            // SAFETY: our timer, deleted once; cancel and wait so that no
            // callback runs (or still runs) once the cable's state is gone.
            unsafe { ExDeleteTimer(timer, 1, 1, ptr::null_mut()) };
        }
    }
}

/// A fixed buffer `DbgPrint` can take: no allocation, truncates.
struct LineBuffer {
    bytes: [u8; 200],
    len: usize,
}

impl fmt::Write for LineBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep one byte for the terminating NUL.
        let room = self.bytes.len().saturating_sub(1).saturating_sub(self.len);
        let take = s.len().min(room);
        if let (Some(dst), Some(src)) = (
            self.bytes.get_mut(self.len..self.len + take),
            s.as_bytes().get(..take),
        ) {
            dst.copy_from_slice(src);
            self.len += take;
        }
        Ok(())
    }
}

impl Platform for KernelPlatform {
    type Lock<T: Send> = KernelSpinLock<T>;

    /// IRQL: any.
    fn qpc(&self) -> u64 {
        // SAFETY: a null frequency pointer is allowed.
        let now = unsafe { KeQueryPerformanceCounter(ptr::null_mut()) };
        // SAFETY: every view of a LARGE_INTEGER is initialised.
        u64::try_from(unsafe { now.QuadPart }).unwrap_or(0)
    }

    /// IRQL: any.
    fn qpc_frequency(&self) -> u64 {
        self.frequency
    }

    /// IRQL: `<= DISPATCH_LEVEL`.
    fn signal_event(&self, event: PKEVENT) {
        // SAFETY: a KEVENT the port registered and keeps alive until it
        // unregisters it; no wait follows (Wait = FALSE), so DISPATCH is fine.
        unsafe { KeSetEvent(event.cast(), 0, 0) };
    }

    /// IRQL: `<= DISPATCH_LEVEL`.
    fn start_timer(&self, period_100ns: u32) {
        let timer = self.timer.load(Ordering::Acquire);
        if timer.is_null() {
            return;
        }
        let period = i64::from(period_100ns);
        // SAFETY: our live timer; a negative due time is relative.
        unsafe { ExSetTimer(timer, -period, period, ptr::null_mut()) };
    }

    /// IRQL: `<= DISPATCH_LEVEL`.
    fn stop_timer(&self) {
        let timer = self.timer.load(Ordering::Acquire);
        if !timer.is_null() {
            // SAFETY: our live timer.
            unsafe { ExCancelTimer(timer, ptr::null_mut()) };
        }
    }

    /// IRQL: `<= DISPATCH_LEVEL`; no allocation.
    fn log(&self, level: LogLevel, message: fmt::Arguments<'_>) {
        let mut line = LineBuffer {
            bytes: [0; 200],
            len: 0,
        };
        let _ = write!(line, "{level:?}: {message}");
        // SAFETY: a NUL-terminated format and a NUL-terminated argument
        // (the buffer keeps its last byte 0); DbgPrint is callable at DISPATCH.
        unsafe { DbgPrint(c"rswavert: %s\n".as_ptr(), line.bytes.as_ptr()) };
    }
}

/// The high-resolution timer's callback (`EXT_CALLBACK`), at
/// `DISPATCH_LEVEL`: the virtual device's "interrupt".
///
/// # Safety
///
/// `context` is the address of the `VirtualCable<KernelPlatform>` that owns
/// the timer; the cable deletes the timer (waiting for this callback) before
/// its state is dropped.
pub unsafe extern "C" fn timer_callback(_timer: PEX_TIMER, context: PVOID) {
    // SAFETY: see the function's contract.
    let cable = unsafe { &*context.cast::<VirtualCable<KernelPlatform>>() };
    cable.on_timer(cable.platform().qpc());
}
