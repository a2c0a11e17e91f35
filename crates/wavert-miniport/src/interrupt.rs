//! The `IInterruptSync` boundary: registering the ISR, connecting, and
//! running code under the interrupt lock (`CallSynchronizedRoutine`).
//!
//! IRQL: `register`/`connect`/`disconnect` at `PASSIVE_LEVEL`;
//! [`InterruptSync::synchronized`] at `<= DISPATCH_LEVEL` (the closure runs
//! at DIRQL with the interrupt spin lock held: it must not allocate, block
//! or take another lock the ISR could take).

use core::cell::UnsafeCell;
use core::ffi::c_void;
use portcls_sys::windows_abi;

use portcls_sys::{IInterruptSync, NTSTATUS, PINTERRUPTSYNCROUTINE, STATUS_SUCCESS};
use wavert_com::{ComPtr, NtResult, NtStatus};

/// PortCls' interrupt object for the device.
pub struct InterruptSync(ComPtr<IInterruptSync>);

/// What a synchronized call carries across the C routine.
struct Call<F, R> {
    f: Option<F>,
    result: Option<R>,
}

/// The routine `CallSynchronizedRoutine` runs: takes the closure out of the
/// context and runs it.
///
/// # Safety
///
/// `context` is a live `Call<F, R>` owned by [`InterruptSync::synchronized`]'s
/// frame, reached only through this pointer for the call.
#[windows_abi]
unsafe extern "system" fn run_call<F: FnOnce() -> R, R>(
    _sync: *mut IInterruptSync,
    context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: see the function's contract.
    let call = unsafe { &mut *context.cast::<Call<F, R>>() };
    if let Some(f) = call.f.take() {
        call.result = Some(f());
    }
    STATUS_SUCCESS
}

impl InterruptSync {
    /// Wraps the object `PcNewInterruptSync` made.
    #[must_use]
    pub const fn new(sync: ComPtr<IInterruptSync>) -> Self {
        Self(sync)
    }

    /// `RegisterServiceRoutine(routine, context, First = FALSE)`.
    ///
    /// # Errors
    ///
    /// PortCls' status.
    ///
    /// # Safety
    ///
    /// `context` must stay valid for `routine` until [`Self::disconnect`]
    /// has returned.
    pub unsafe fn register(
        &self,
        routine: PINTERRUPTSYNCROUTINE,
        context: *mut c_void,
    ) -> NtResult<()> {
        let f = self.0.vtbl().RegisterServiceRoutine;
        // SAFETY: a live interrupt sync; the context's lifetime is the caller's contract.
        let status = unsafe { f(self.0.this(), routine, context, 0) };
        check(status)
    }

    /// `Connect`: from here on the ISR runs when the line fires.
    ///
    /// # Errors
    ///
    /// PortCls' status.
    pub fn connect(&self) -> NtResult<()> {
        let f = self.0.vtbl().Connect;
        // SAFETY: a live interrupt sync.
        check(unsafe { f(self.0.this()) })
    }

    /// `Disconnect`: no ISR runs (or is still running) after it returns.
    pub fn disconnect(&self) {
        let f = self.0.vtbl().Disconnect;
        // SAFETY: a live interrupt sync; disconnecting twice is allowed.
        unsafe { f(self.0.this()) };
    }

    /// Runs `f` under the interrupt lock (`CallSynchronizedRoutine`), so it
    /// never overlaps the ISR. IRQL: `<= DISPATCH_LEVEL`; `f` runs at DIRQL.
    ///
    /// # Errors
    ///
    /// PortCls' status when the routine could not be run.
    pub fn synchronized<R>(&self, f: impl FnOnce() -> R) -> NtResult<R> {
        self.run(f)
    }

    fn run<F: FnOnce() -> R, R>(&self, f: F) -> NtResult<R> {
        let mut call = Call {
            f: Some(f),
            result: None,
        };
        let routine = self.0.vtbl().CallSynchronizedRoutine;
        // SAFETY: a live interrupt sync; `call` outlives the synchronous
        // call and matches `run_call::<F, R>`'s context type.
        let status = unsafe {
            routine(
                self.0.this(),
                Some(run_call::<F, R>),
                (&raw mut call).cast::<c_void>(),
            )
        };
        // No result: the routine did not run. PortCls's failure, or (a
        // success code without a result) a failure all the same.
        call.result.ok_or_else(|| NtStatus::from_failure(status))
    }
}

/// State that only code under the device's interrupt lock may touch.
///
/// That is its ISR (PortCls holds the interrupt spin lock around service
/// routines) and routines run through `CallSynchronizedRoutine` on the same
/// interrupt object, which this guard owns.
///
/// # Invariants
///
/// The value is reached only through [`InterruptLocked::with`] (which runs
/// the closure under this object's interrupt lock) or
/// [`InterruptLocked::in_isr`] (whose caller holds that lock), so never by
/// two processors at once.
pub struct InterruptLocked<T> {
    sync: InterruptSync,
    value: UnsafeCell<T>,
}

// SAFETY: every access to `value` is serialised by the interrupt lock (see
// the invariants), so sharing the guard between processors is sound when
// the value itself may move between them.
unsafe impl<T: Send> Sync for InterruptLocked<T> {}

impl<T> InterruptLocked<T> {
    /// `value`, guarded by `sync`'s interrupt lock.
    pub const fn new(sync: InterruptSync, value: T) -> Self {
        Self {
            sync,
            value: UnsafeCell::new(value),
        }
    }

    /// The interrupt object (to register, connect and disconnect the ISR).
    pub const fn sync(&self) -> &InterruptSync {
        &self.sync
    }

    /// Runs `f` on the value under the interrupt lock. IRQL:
    /// `<= DISPATCH_LEVEL`; `f` runs at DIRQL.
    ///
    /// # Errors
    ///
    /// PortCls' status when the routine could not be run.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> NtResult<R> {
        self.sync.synchronized(|| {
            // SAFETY: CallSynchronizedRoutine holds this object's interrupt
            // lock, so neither the ISR nor another synchronized routine
            // reaches the value meanwhile (the invariants).
            f(unsafe { &mut *self.value.get() })
        })
    }

    /// The value, from the ISR.
    ///
    /// # Safety
    ///
    /// The caller holds this object's interrupt lock (PortCls' call of the
    /// service routine registered on it), and does not let the reference
    /// outlive that call.
    #[allow(
        clippy::mut_from_ref,
        reason = "the interrupt lock, not a borrow, makes the access exclusive"
    )]
    pub unsafe fn in_isr(&self) -> &mut T {
        // SAFETY: the caller holds the interrupt lock (contract).
        unsafe { &mut *self.value.get() }
    }
}

const fn check(status: NTSTATUS) -> NtResult<()> {
    NtStatus::check(status)
}
