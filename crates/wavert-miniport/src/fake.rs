//! Test doubles beside the traits they stand in for (feature `fake`, `std`).
//!
//! A spinlock over a `std` mutex and a platform with a manual clock that
//! records what the miniport asked of it; and the attribute lists a client
//! sends (the one builder of them). The emulator and the miniport's own
//! tests use these, so each trait and each client structure has one fake.

extern crate std;

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use portcls_sys::{
    GUID, KSATTRIBUTE, KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE,
    KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE, KSDATAFORMAT, KSDATAFORMAT_ATTRIBUTES, KSMULTIPLE_ITEM,
    PKEVENT,
};
use wavert_com::KernelEvent;
use zerocopy::IntoBytes;

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
    /// `set_timer` calls.
    pub timer_starts: AtomicU32,
    /// The due time the last `set_timer` asked for, in 100 ns units.
    pub timer_due_100ns: AtomicU64,
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

    fn set_timer(&self, due_in_100ns: u64) {
        self.0.timer_running.store(true, Ordering::SeqCst);
        self.0.timer_starts.fetch_add(1, Ordering::SeqCst);
        self.0.timer_due_100ns.store(due_in_100ns, Ordering::SeqCst);
    }

    fn stop_timer(&self) {
        self.0.timer_running.store(false, Ordering::SeqCst);
    }

    fn log(&self, level: LogLevel, message: fmt::Arguments<'_>) {
        lock(&self.0.lines).push(format!("{level:?}: {message}"));
    }
}

// ---- What a client sends -----------------------------------------------------

/// `ks.h`: every attribute, and the list after a format, starts at an
/// 8-byte boundary.
const ATTRIBUTE_ALIGNMENT: usize = 8;

/// A `KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE` naming `mode`, its header's
/// `Size` set to `size` (40 for a well-formed one; anything else to build a
/// hostile one).
#[must_use]
pub fn mode_attribute(mode: GUID, size: u32) -> Vec<u8> {
    KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE {
        AttributeHeader: KSATTRIBUTE {
            Size: size,
            Flags: 0,
            Attribute: KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE,
        },
        SignalProcessingMode: mode,
    }
    .as_bytes()
    .to_vec()
}

/// An attribute list as `ks.h` lays it out.
///
/// A `KSMULTIPLE_ITEM` whose `Size` counts itself and what follows, then
/// `attributes`, each padded to the next 8-byte boundary. `count` is
/// written as given, to build lists that miscount. (Test data: a list over
/// 4 GiB would get `Size` `u32::MAX`.)
#[must_use]
pub fn attribute_list(attributes: &[&[u8]], count: u32) -> Vec<u8> {
    let mut body = Vec::new();
    for attribute in attributes {
        body.extend_from_slice(attribute);
        body.resize(body.len().next_multiple_of(ATTRIBUTE_ALIGNMENT), 0);
    }
    let size = core::mem::size_of::<KSMULTIPLE_ITEM>() + body.len();
    let mut list = KSMULTIPLE_ITEM {
        Size: u32::try_from(size).unwrap_or(u32::MAX),
        Count: count,
    }
    .as_bytes()
    .to_vec();
    list.extend_from_slice(&body);
    list
}

/// The attribute list a client sends naming `modes`.
///
/// What follows `NewStream`'s format to open a stream in a mode, or
/// `KSPROPERTY_PIN_PROPOSEDATAFORMAT2`'s `KSP_PIN` to ask for a mode's
/// default format: one well-formed mode attribute per entry of `modes`; no
/// mode gives an empty list.
#[must_use]
pub fn mode_attribute_list(modes: &[GUID]) -> Vec<u8> {
    #[allow(clippy::cast_possible_truncation, reason = "40 bytes")]
    let size = core::mem::size_of::<KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE>() as u32;
    let attributes: Vec<Vec<u8>> = modes.iter().map(|&m| mode_attribute(m, size)).collect();
    let attributes: Vec<&[u8]> = attributes.iter().map(Vec::as_slice).collect();
    attribute_list(&attributes, u32::try_from(modes.len()).unwrap_or(u32::MAX))
}

/// The buffer a client hands `NewStream` to open a stream with `list`.
///
/// `format` (a `KSDATAFORMAT` and what follows, `FormatSize` bytes) with
/// `KSDATAFORMAT_ATTRIBUTES` set in its `Flags`, padded to the next 8-byte
/// boundary and followed by `list`.
#[must_use]
pub fn with_attribute_list(format: &[u8], list: &[u8]) -> Vec<u8> {
    let mut bytes = format.to_vec();
    let at = core::mem::offset_of!(KSDATAFORMAT, Flags);
    if let Some(flags) = bytes
        .get_mut(at..at + 4)
        .and_then(|f| <&mut [u8; 4]>::try_from(f).ok())
    {
        *flags = (u32::from_le_bytes(*flags) | KSDATAFORMAT_ATTRIBUTES).to_le_bytes();
    }
    bytes.resize(bytes.len().next_multiple_of(ATTRIBUTE_ALIGNMENT), 0);
    bytes.extend_from_slice(list);
    bytes
}
