//! Test doubles beside the traits they stand in for (feature `fake`, `std`).
//!
//! A spinlock over a `std` mutex and a platform with a manual clock that
//! records what the miniport asked of it. The emulator and the miniport's
//! own tests use these, so each trait has one fake.

extern crate std;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use portcls_sys::PKEVENT;
use wavert_com::KernelEvent;

use crate::platform::{LogLevel, Platform, SpinLock};

/// QPC ticks per second of [`FakePlatform`] (10 MHz, as on current Windows).
pub const QPC_FREQUENCY: u64 = 10_000_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The kernel spinlock as a `std` mutex. The miniport never re-enters its
/// own lock (the platform contract), so the mutex only ever serialises
/// threads, as the spinlock serialises processors.
#[derive(Debug)]
pub struct StdLock<T>(Mutex<T>);

impl<T: Send> SpinLock<T> for StdLock<T> {
    fn new(value: T) -> Self {
        Self(Mutex::new(value))
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut lock(&self.0))
    }
}

/// What a [`FakePlatform`] recorded, shared with the test (the cable owns
/// the platform itself).
#[derive(Debug, Default)]
pub struct FakePlatformLog {
    /// The manual clock.
    pub qpc: AtomicU64,
    /// Every `KeSetEvent`, by event address.
    pub signals: Mutex<Vec<usize>>,
    /// Whether the timer runs.
    pub timer_running: AtomicBool,
    /// `start_timer` calls.
    pub timer_starts: AtomicU32,
    /// Log lines.
    pub lines: Mutex<Vec<String>>,
}

impl FakePlatformLog {
    /// Moves the clock on; returns the new QPC.
    pub fn advance(&self, ticks: u64) -> u64 {
        self.qpc.fetch_add(ticks, Ordering::SeqCst) + ticks
    }

    /// The clock.
    #[must_use]
    pub fn now(&self) -> u64 {
        self.qpc.load(Ordering::SeqCst)
    }

    /// How often `event` was signalled.
    #[must_use]
    pub fn signals_for(&self, event: PKEVENT) -> usize {
        lock(&self.signals)
            .iter()
            .filter(|&&e| e == event.addr())
            .count()
    }
}

/// A platform with a manual clock that records events, timer use and log
/// lines; it never fires its timer (the test calls the device's service).
#[derive(Debug)]
pub struct FakePlatform(pub Arc<FakePlatformLog>);

impl Platform for FakePlatform {
    type Lock<T: Send> = StdLock<T>;

    fn qpc(&self) -> u64 {
        self.0.now()
    }

    fn qpc_frequency(&self) -> u64 {
        QPC_FREQUENCY
    }

    fn signal_event(&self, event: KernelEvent) {
        lock(&self.0.signals).push(event.as_raw().addr());
    }

    fn start_timer(&self, period_100ns: u32) {
        debug_assert!(period_100ns > 0, "a timer period of 0");
        self.0.timer_running.store(true, Ordering::SeqCst);
        self.0.timer_starts.fetch_add(1, Ordering::SeqCst);
    }

    fn stop_timer(&self) {
        self.0.timer_running.store(false, Ordering::SeqCst);
    }

    fn log(&self, level: LogLevel, message: fmt::Arguments<'_>) {
        lock(&self.0.lines).push(format!("{level:?}: {message}"));
    }
}
