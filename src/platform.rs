//! The miniport's [`Platform`] over the kernel (`wdk-sys`).
//!
//! IRQL of each service is stated on it; the trait in `wavert-miniport`
//! documents what the cable expects.

use core::cell::UnsafeCell;
use core::fmt::{self, Write as _};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use wavert_com::KernelEvent;
use wavert_miniport::{LogLevel, Platform, SpinLock, VirtualCable};
use wdk_sys::ntddk::{
    DbgPrint, ExCancelTimer, ExDeleteTimer, ExSetTimer, KeAcquireSpinLockRaiseToDpc,
    KeFlushQueuedDpcs, KeInsertQueueDpc, KeQueryPerformanceCounter, KeReleaseSpinLock,
    KeRemoveQueueDpc, KeSetEvent,
};
use wdk_sys::{KDPC, KSPIN_LOCK, LARGE_INTEGER, PEX_TIMER, PVOID};

// The PCI devices' DPC: x64 only, as are their port I/O (`crate::io`) and
// MMIO (`crate::mmio`).
#[cfg(target_arch = "x86_64")]
use crate::io::KernelPortIo;
#[cfg(target_arch = "x86_64")]
use crate::mmio::KernelMmio;
#[cfg(target_arch = "x86_64")]
use wavert_miniport::ac97::Ac97Device;
#[cfg(target_arch = "x86_64")]
use wavert_miniport::hda::HdaDevice;
#[cfg(target_arch = "x86_64")]
use wdk_sys::{ntddk::KeInitializeDpc, PKDPC};

/// A PCI device whose interrupt queues a DPC: the deferred half it runs
/// there (notification events), at `DISPATCH_LEVEL`.
#[cfg(target_arch = "x86_64")]
pub trait DeferredWork: Sync {
    /// Runs the deferred step.
    fn on_dpc(&self);
}

#[cfg(target_arch = "x86_64")]
impl DeferredWork for Ac97Device<KernelPlatform, KernelPortIo> {
    fn on_dpc(&self) {
        Self::on_dpc(self);
    }
}

#[cfg(target_arch = "x86_64")]
impl DeferredWork for HdaDevice<KernelPlatform, KernelMmio> {
    fn on_dpc(&self) {
        Self::on_dpc(self);
    }
}

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

/// The kernel services of the virtual cable and of the AC'97.
pub struct KernelPlatform {
    frequency: u64,
    /// The cable's high-resolution timer (`ExAllocateTimer`), attached once
    /// the cable exists (its callback needs the cable's address).
    timer: AtomicPtr<wdk_sys::_EX_TIMER>,
    /// The AC'97's DPC (non-paged: the platform lives inside the device's
    /// pool block), initialised once the device exists.
    dpc: KernelDpc,
    dpc_ready: AtomicBool,
}

/// A `KDPC` in the platform's non-paged block.
struct KernelDpc(UnsafeCell<KDPC>);

// SAFETY: the KDPC is only touched by the kernel's DPC routines
// (KeInitializeDpc once, before `dpc_ready`; KeInsertQueueDpc and
// KeRemoveQueueDpc are multiprocessor-safe).
unsafe impl Sync for KernelDpc {}
#[allow(
    clippy::non_send_fields_in_send_ty,
    reason = "the KDPC's raw pointers belong to the kernel's DPC queue, which any processor may use"
)]
// SAFETY: as above; the KDPC's pointers are the kernel's and ours.
unsafe impl Send for KernelDpc {}

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
            dpc: KernelDpc(UnsafeCell::new(KDPC::default())),
            dpc_ready: AtomicBool::new(false),
        }
    }

    /// Points the DPC at the PCI device (AC'97 or HD Audio) that owns this
    /// platform; until then `queue_dpc` answers `false` and the device runs
    /// its deferred step at the next position query. IRQL:
    /// `PASSIVE_LEVEL`, once.
    #[cfg(target_arch = "x86_64")]
    pub fn attach_dpc<D: DeferredWork>(&self, device: *const D) {
        if self.dpc_ready.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: our KDPC, initialised once before anyone can queue it;
        // the context is the device owning this platform, which removes
        // and flushes the DPC (in `Drop`) before its memory goes.
        unsafe {
            KeInitializeDpc(
                self.dpc.0.get(),
                Some(dpc_routine::<D>),
                device.cast_mut().cast(),
            );
        };
        self.dpc_ready.store(true, Ordering::Release);
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
        if self.dpc_ready.swap(false, Ordering::AcqRel) {
            // SAFETY: our initialised KDPC; dequeue it, then wait for a
            // routine already running on another processor to finish.
            unsafe { KeRemoveQueueDpc(self.dpc.0.get()) };
            // SAFETY: PASSIVE_LEVEL (see above).
            unsafe { KeFlushQueuedDpcs() };
        }
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
    fn signal_event(&self, event: KernelEvent) {
        // SAFETY: a KEVENT the port registered and keeps alive until it is
        // unregistered (`KernelEvent`'s invariant); no wait follows
        // (Wait = FALSE), so DISPATCH is fine.
        unsafe { KeSetEvent(event.as_raw().cast(), 0, 0) };
    }

    /// IRQL: `<= DISPATCH_LEVEL`.
    fn set_timer(&self, due_in_100ns: u64) {
        let timer = self.timer.load(Ordering::Acquire);
        if timer.is_null() {
            return;
        }
        // Relative (negative), at least 100 ns: a due time of 0 would be
        // the absolute time 0.
        let due = i64::try_from(due_in_100ns.max(1)).unwrap_or(i64::MAX);
        // SAFETY: our live timer; a negative due time is relative, period 0
        // makes it a one-shot, and setting it again replaces the due time.
        unsafe { ExSetTimer(timer, -due, 0, ptr::null_mut()) };
    }

    /// IRQL: `<= DISPATCH_LEVEL`.
    fn stop_timer(&self) {
        let timer = self.timer.load(Ordering::Acquire);
        if !timer.is_null() {
            // SAFETY: our live timer.
            unsafe { ExCancelTimer(timer, ptr::null_mut()) };
        }
    }

    /// IRQL: any (the AC'97 ISR calls it at DIRQL); `KeInsertQueueDpc` is
    /// callable at any IRQL and takes no lock of ours.
    fn queue_dpc(&self) -> bool {
        if !self.dpc_ready.load(Ordering::Acquire) {
            return false;
        }
        // SAFETY: our initialised KDPC; a DPC already queued stays queued once.
        unsafe { KeInsertQueueDpc(self.dpc.0.get(), ptr::null_mut(), ptr::null_mut()) };
        true
    }

    /// IRQL: `<= DISPATCH_LEVEL`; no allocation.
    fn log(&self, level: LogLevel, message: fmt::Arguments<'_>) {
        kernel_log(level, message);
    }
}

/// One driver log line through `DbgPrint` (no allocation; callable up to
/// `DISPATCH_LEVEL`).
pub fn kernel_log(level: LogLevel, message: fmt::Arguments<'_>) {
    let mut line = LineBuffer {
        bytes: [0; 200],
        len: 0,
    };
    let _ = write!(line, "{level:?}: {message}");
    // SAFETY: a NUL-terminated format and a NUL-terminated argument
    // (the buffer keeps its last byte 0); DbgPrint is callable at DISPATCH.
    unsafe { DbgPrint(c"rswavert: %s\n".as_ptr(), line.bytes.as_ptr()) };
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

/// A PCI device's DPC routine (`KDEFERRED_ROUTINE`), at `DISPATCH_LEVEL`:
/// the deferred half of the interrupt (notification events).
///
/// # Safety
///
/// `context` is the address of the `D` (an `Ac97Device` or `HdaDevice`)
/// that owns the DPC; it removes and flushes the DPC before its state is
/// dropped.
#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn dpc_routine<D: DeferredWork>(
    _dpc: PKDPC,
    context: PVOID,
    _arg1: PVOID,
    _arg2: PVOID,
) {
    // SAFETY: see the function's contract.
    let device = unsafe { &*context.cast::<D>() };
    device.on_dpc();
}
