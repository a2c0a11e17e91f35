//! The emulated computer: RAM, the performance counter, kernel timers,
//! kernel events and the log of what the driver registered.
//!
//! Time comes from a [`Clock`]: in virtual mode the performance counter
//! (QPC, 10 MHz) and every timer advance only when the test calls
//! [`Machine::advance`], so runs are deterministic; in real-time mode QPC is
//! the host's monotonic clock and [`Machine::advance`] sleeps.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use portcls_sys::{DEVPROPKEY, DEVPROPTYPE, DEVPROP_TYPE_BINARY, KEVENT, PKEVENT};

use crate::memory::PhysicalMemory;
use crate::personality::{OrderOutcome, OrderRecord, PortPersonality};

/// QPC ticks per second (what Windows reports on current machines).
pub const QPC_FREQUENCY: u64 = 10_000_000;

/// QPC ticks in one millisecond.
pub const QPC_PER_MS: u64 = QPC_FREQUENCY / 1000;

/// How close to a real-time deadline the machine stops sleeping and spins
/// (`run_real_time`), in nanoseconds.
const SPIN_NS: u64 = 300_000;

/// Locks `m`, and still hands its data over if a thread panicked while it
/// held the lock (the crate's one lock helper).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How time passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockMode {
    /// Time moves only when the test says (deterministic).
    Virtual,
    /// Time is the host's monotonic clock (demos).
    RealTime,
}

/// The performance counter.
#[derive(Debug)]
pub struct Clock {
    mode: ClockMode,
    virtual_qpc: AtomicU64,
    origin: Instant,
}

impl Clock {
    /// A clock at QPC 0 (virtual) or at the host's now (real time).
    #[must_use]
    pub fn new(mode: ClockMode) -> Self {
        Self {
            mode,
            // Windows' QPC is never 0 after boot; starting at one second keeps
            // "0 means unset" bugs visible.
            virtual_qpc: AtomicU64::new(QPC_FREQUENCY),
            origin: Instant::now(),
        }
    }

    /// The mode.
    #[must_use]
    pub const fn mode(&self) -> ClockMode {
        self.mode
    }

    /// `KeQueryPerformanceCounter`.
    #[must_use]
    pub fn qpc(&self) -> u64 {
        match self.mode {
            ClockMode::Virtual => self.virtual_qpc.load(Ordering::Acquire),
            ClockMode::RealTime => {
                let ns = self.origin.elapsed().as_nanos();
                QPC_FREQUENCY + u64::try_from(ns / 100).unwrap_or(u64::MAX)
            }
        }
    }

    fn set_virtual(&self, qpc: u64) {
        self.virtual_qpc.fetch_max(qpc, Ordering::AcqRel);
    }
}

/// A kernel timer callback: gets the QPC at which it fires.
pub type TimerCallback = Arc<dyn Fn(u64) + Send + Sync>;

struct TimerEntry {
    period: u64,
    next_due: u64,
    callback: TimerCallback,
}

/// An emulated kernel event (`KEVENT`): the driver signals it through its
/// platform, the engine observes it.
#[derive(Debug, Default)]
pub struct EventRecord {
    signals: Mutex<u64>,
    ready: Condvar,
    /// The QPC of every signal, in order (how late each came).
    times: Mutex<Vec<u64>>,
    /// Set when the engine forgot it (after `UnregisterNotificationEvent`
    /// returned): from then on a signal is a violation. The record stays
    /// in the machine's table so that its address is never handed out
    /// again while a late signal could still arrive.
    retired: AtomicBool,
}

/// The engine's handle to an event it created.
#[derive(Clone, Debug)]
pub struct EmuEvent {
    record: Arc<EventRecord>,
    consumed: Arc<AtomicU64>,
}

impl EmuEvent {
    /// The `PKEVENT` handed to the driver.
    #[must_use]
    pub fn as_pkevent(&self) -> PKEVENT {
        Arc::as_ptr(&self.record).cast::<KEVENT>().cast_mut()
    }

    /// Signals so far.
    #[must_use]
    pub fn signals(&self) -> u64 {
        *lock(&self.record.signals)
    }

    /// Signals since the last call (the engine handles each one).
    #[must_use]
    pub fn take(&self) -> u64 {
        let total = self.signals();
        let before = self.consumed.swap(total, Ordering::AcqRel);
        total.saturating_sub(before)
    }

    /// The QPC at which each signal so far came, in order.
    #[must_use]
    pub fn signal_times(&self) -> Vec<u64> {
        lock(&self.record.times).clone()
    }

    /// Waits up to `timeout` for a signal not yet taken (real-time mode).
    #[must_use]
    pub fn wait(&self, timeout: Duration) -> bool {
        let seen = self.consumed.load(Ordering::Acquire);
        let (guard, _) = self
            .record
            .ready
            .wait_timeout_while(lock(&self.record.signals), timeout, |n| *n <= seen)
            .unwrap_or_else(PoisonError::into_inner);
        *guard > seen
    }
}

/// A connection PortCls was asked to register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhysicalConnection {
    /// Subdevice name of the source filter (or its port address when unknown).
    pub from: String,
    /// Source pin.
    pub from_pin: u32,
    /// Subdevice name of the sink filter.
    pub to: String,
    /// Sink pin.
    pub to_pin: u32,
}

/// A property the driver set on a filter's device interface
/// (`IoSetDeviceInterfacePropertyData`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceProperty {
    /// The subdevice name (the interface's reference string).
    pub name: String,
    /// The property key.
    pub key: DEVPROPKEY,
    /// Its `DEVPROP_TYPE_*`.
    pub kind: DEVPROPTYPE,
    /// Its value's bytes.
    pub value: Vec<u8>,
    /// Whether it was set before the subdevice was registered (and so
    /// before PortCls enabled the interface).
    pub before_registration: bool,
}

/// What the driver registered with PortCls.
#[derive(Clone, Debug, Default)]
pub struct Registrations {
    /// `PcRegisterSubdevice` names with the port object's address.
    pub subdevices: Vec<(String, usize)>,
    /// `PcRegisterPhysicalConnection` calls.
    pub connections: Vec<PhysicalConnection>,
    /// Device interface properties, the last value per name and key.
    pub interface_properties: Vec<InterfaceProperty>,
}

impl Registrations {
    /// The subdevice name a port object was registered under.
    #[must_use]
    pub fn name_of(&self, port: usize) -> Option<&str> {
        self.subdevices
            .iter()
            .find(|(_, p)| *p == port)
            .map(|(n, _)| n.as_str())
    }
}

/// The emulated computer.
pub struct Machine {
    /// RAM.
    pub memory: PhysicalMemory,
    clock: Clock,
    timers: Mutex<BTreeMap<u64, TimerEntry>>,
    next_timer: AtomicU64,
    events: Mutex<HashMap<usize, Arc<EventRecord>>>,
    registrations: Mutex<Registrations>,
    /// Whether PortCls has handled a stop, surprise removal or removal of
    /// the device (and no start since).
    /// The device instances (by registration prefix, `""` for the first)
    /// whose stop or removal PortCls has handled since their last start.
    stopped_devices: Mutex<std::collections::BTreeSet<String>>,
    log: Mutex<Vec<String>>,
    live_objects: AtomicUsize,
    personality: Mutex<PortPersonality>,
    orders: Mutex<Vec<OrderRecord>>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("qpc", &self.clock.qpc())
            .field("live_objects", &self.live_objects())
            .finish_non_exhaustive()
    }
}

impl Machine {
    /// A machine with this RAM and clock.
    #[must_use]
    pub fn new(memory: PhysicalMemory, mode: ClockMode) -> Arc<Self> {
        Arc::new(Self {
            memory,
            clock: Clock::new(mode),
            timers: Mutex::new(BTreeMap::new()),
            next_timer: AtomicU64::new(1),
            events: Mutex::new(HashMap::new()),
            registrations: Mutex::new(Registrations::default()),
            stopped_devices: Mutex::new(std::collections::BTreeSet::new()),
            log: Mutex::new(Vec::new()),
            live_objects: AtomicUsize::new(0),
            personality: Mutex::new(PortPersonality::default()),
            orders: Mutex::new(Vec::new()),
        })
    }

    /// Virtual or real time.
    #[must_use]
    pub const fn clock_mode(&self) -> ClockMode {
        self.clock.mode
    }

    /// The port personality the emulated PortCls follows (Windows unless set).
    #[must_use]
    pub fn personality(&self) -> PortPersonality {
        *lock(&self.personality)
    }

    /// Makes the emulated PortCls follow `personality` from now on.
    pub fn set_personality(&self, personality: PortPersonality) {
        *lock(&self.personality) = personality;
    }

    /// Records what a miniport did with an order the personality used.
    pub fn record_order(&self, order: &str, outcome: OrderOutcome) {
        lock(&self.orders).push(OrderRecord {
            order: order.to_owned(),
            outcome,
        });
    }

    /// Every order recorded so far.
    #[must_use]
    pub fn orders(&self) -> Vec<OrderRecord> {
        lock(&self.orders).clone()
    }

    /// The performance counter.
    #[must_use]
    pub const fn clock(&self) -> &Clock {
        &self.clock
    }

    /// `KeQueryPerformanceCounter`.
    #[must_use]
    pub fn qpc(&self) -> u64 {
        self.clock.qpc()
    }

    /// Starts a periodic timer (first due one period from now); returns its id.
    pub fn start_timer(&self, period_qpc: u64, callback: TimerCallback) -> u64 {
        let period = period_qpc.max(1);
        self.start_timer_due(period, period, callback)
    }

    /// Starts a timer first due `due_in_qpc` from now, then every
    /// `period_qpc` (0: once, as `ExSetTimer` with no period); returns its id.
    pub fn start_timer_due(
        &self,
        due_in_qpc: u64,
        period_qpc: u64,
        callback: TimerCallback,
    ) -> u64 {
        let id = self.next_timer.fetch_add(1, Ordering::Relaxed);
        lock(&self.timers).insert(
            id,
            TimerEntry {
                period: period_qpc,
                next_due: self.qpc() + due_in_qpc,
                callback,
            },
        );
        id
    }

    /// Moves a running timer: next due `due_in_qpc` from now, then every
    /// `period_qpc` (0: once), keeping its routine; `false` (and nothing
    /// changed) if it is not running, e.g. a one-shot that has fired.
    pub fn reset_timer_due(&self, id: u64, due_in_qpc: u64, period_qpc: u64) -> bool {
        let next_due = self.qpc() + due_in_qpc;
        lock(&self.timers).get_mut(&id).is_some_and(|entry| {
            entry.period = period_qpc;
            entry.next_due = next_due;
            true
        })
    }

    /// Cancels a timer; `false` if it was not running.
    pub fn cancel_timer(&self, id: u64) -> bool {
        lock(&self.timers).remove(&id).is_some()
    }

    /// Timers running.
    #[must_use]
    pub fn running_timers(&self) -> usize {
        lock(&self.timers).len()
    }

    /// Fires the earliest timer due at or before `limit`; returns whether one fired.
    fn fire_one(&self, limit: u64) -> bool {
        let due = {
            let mut timers = lock(&self.timers);
            let Some((&id, _)) = timers
                .iter()
                .filter(|(_, t)| t.next_due <= limit)
                .min_by_key(|(id, t)| (t.next_due, **id))
            else {
                return false;
            };
            let Some(entry) = timers.get_mut(&id) else {
                return false;
            };
            let at = entry.next_due;
            entry.next_due += entry.period;
            let due = (at, Arc::clone(&entry.callback));
            if entry.period == 0 {
                timers.remove(&id);
            }
            drop(timers);
            due
        };
        if self.clock.mode == ClockMode::Virtual {
            self.clock.set_virtual(due.0);
        }
        // The lock is released: the callback may start or cancel timers.
        (due.1)(due.0);
        true
    }

    /// Lets `qpc_ticks` of time pass, firing every timer that falls due at
    /// its own instant (virtual) or as soon as possible (real time).
    pub fn advance(&self, qpc_ticks: u64) {
        let target = self.qpc() + qpc_ticks;
        match self.clock.mode {
            ClockMode::Virtual => {
                while self.fire_one(target) {}
                self.clock.set_virtual(target);
            }
            ClockMode::RealTime => self.run_real_time(target, false),
        }
    }

    /// Like [`Self::advance`], but in real time it returns as soon as a
    /// timer has fired (after every timer then due): the audio engine
    /// waits on its events, not on a poll interval, so what a timer
    /// signals reaches the engine's loop at once. In virtual time the
    /// same as `advance` (every timer up to the target fires, at its own
    /// instant).
    pub fn advance_until_timer(&self, qpc_ticks: u64) {
        let target = self.qpc() + qpc_ticks;
        match self.clock.mode {
            ClockMode::Virtual => self.advance(qpc_ticks),
            ClockMode::RealTime => self.run_real_time(target, true),
        }
    }

    /// Real time up to `target`: fires each timer when it falls due and
    /// sleeps in between; with `until_timer`, returns after the first
    /// round of timers fired.
    fn run_real_time(&self, target: u64, until_timer: bool) {
        loop {
            let mut fired = false;
            while self.fire_one(self.qpc()) {
                fired = true;
            }
            let now = self.qpc();
            if (fired && until_timer) || now >= target {
                return;
            }
            let next = lock(&self.timers)
                .values()
                .map(|t| t.next_due)
                .min()
                .unwrap_or(target)
                .min(target);
            // Sleep to within SPIN_NS of the deadline, then spin: sleeping
            // to the deadline, the events this thread drives came up to a
            // millisecond late on this host even at SCHED_FIFO with 1 ns
            // slack (measured p50 about 85 us, p99 1.27 ms at 2 ms periods;
            // spinning the rest: p50 6 us, p99 257 us), and this thread stands
            // in for the kernel's high-resolution timer and the engine's
            // MMCSS thread. The last stretch spun costs CPU, in real-time
            // sessions only.
            let wait_ns = next.saturating_sub(now).saturating_mul(100);
            if wait_ns > SPIN_NS {
                std::thread::sleep(Duration::from_nanos(wait_ns - SPIN_NS));
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// A new kernel event for the engine to hand to the driver.
    #[must_use]
    pub fn new_event(&self) -> EmuEvent {
        let record = Arc::new(EventRecord::default());
        lock(&self.events).insert(Arc::as_ptr(&record) as usize, Arc::clone(&record));
        EmuEvent {
            record,
            consumed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Retires an event (after the driver unregistered it, or after its
    /// registration failed): the driver may not signal it any more.
    pub fn delete_event(&self, event: &EmuEvent) {
        event.record.retired.store(true, Ordering::Release);
    }

    /// `KeSetEvent` as the driver's platform calls it. An event the
    /// emulator never made, or one retired (unregistered), is a protocol
    /// violation.
    pub fn set_event(&self, event: PKEVENT) {
        let record = lock(&self.events).get(&(event as usize)).cloned();
        match record {
            Some(record) if record.retired.load(Ordering::Acquire) => {
                self.memory.record_violation(format!(
                    "KeSetEvent on event {event:p} after UnregisterNotificationEvent returned"
                ));
            }
            Some(record) => {
                lock(&record.times).push(self.qpc());
                *lock(&record.signals) += 1;
                record.ready.notify_all();
            }
            None => self
                .memory
                .record_violation(format!("KeSetEvent on unknown event {event:p}")),
        }
    }

    /// Protocol violations seen by any part of the emulator.
    #[must_use]
    pub fn violations(&self) -> Vec<String> {
        self.memory.violations()
    }

    /// Records a protocol violation.
    pub fn violation(&self, what: String) {
        self.memory.record_violation(what);
    }

    /// A driver log line (its platform's logging goes here).
    pub fn log(&self, line: String) {
        lock(&self.log).push(line);
    }

    /// The driver's log so far.
    #[must_use]
    pub fn log_lines(&self) -> Vec<String> {
        lock(&self.log).clone()
    }

    /// `PcRegisterSubdevice`.
    pub fn register_subdevice(&self, name: &str, port: usize) {
        lock(&self.registrations)
            .subdevices
            .push((name.to_owned(), port));
    }

    /// `IoSetDeviceInterfacePropertyData` on the interface of subdevice
    /// `name`; a property set after the subdevice was registered is a
    /// violation (the audio engine reads it when the interface arrives).
    pub fn set_interface_property(&self, name: &str, key: &DEVPROPKEY, value: &[u8]) {
        self.set_typed_interface_property(name, key, DEVPROP_TYPE_BINARY, value);
    }

    /// [`Machine::set_interface_property`] of a value of type `kind`.
    pub fn set_typed_interface_property(
        &self,
        name: &str,
        key: &DEVPROPKEY,
        kind: DEVPROPTYPE,
        value: &[u8],
    ) {
        let mut r = lock(&self.registrations);
        let before_registration = !r.subdevices.iter().any(|(n, _)| n == name);
        r.interface_properties
            .retain(|p| !(p.name == name && p.key == *key));
        r.interface_properties.push(InterfaceProperty {
            name: name.to_owned(),
            key: *key,
            kind,
            value: value.to_vec(),
            before_registration,
        });
        drop(r);
        if !before_registration {
            self.violation(format!(
                "device interface property {{{:08X}-...}},{} set on {name} after PcRegisterSubdevice enabled it",
                key.fmtid.Data1, key.pid
            ));
        }
    }

    /// `PcRegisterPhysicalConnection`, by port object address.
    pub fn register_physical_connection(&self, from: usize, from_pin: u32, to: usize, to_pin: u32) {
        let mut r = lock(&self.registrations);
        let name = |r: &Registrations, p: usize| {
            r.name_of(p)
                .map_or_else(|| format!("{p:#x}"), ToOwned::to_owned)
        };
        let connection = PhysicalConnection {
            from: name(&r, from),
            from_pin,
            to: name(&r, to),
            to_pin,
        };
        r.connections.push(connection);
    }

    /// `IUnregisterSubdevice::UnregisterSubdevice`: forgets the subdevice
    /// registered with the port object at `port` (its connections stay
    /// recorded until they are unregistered themselves). Whether it was
    /// registered.
    pub fn unregister_subdevice(&self, port: usize) -> bool {
        let mut r = lock(&self.registrations);
        let before = r.subdevices.len();
        r.subdevices.retain(|(_, p)| *p != port);
        r.subdevices.len() != before
    }

    /// `IUnregisterPhysicalConnection::UnregisterPhysicalConnection`, by
    /// port object address: removes the connection registered with exactly
    /// these subdevices and pins, and returns it.
    pub fn unregister_physical_connection(
        &self,
        from: usize,
        from_pin: u32,
        to: usize,
        to_pin: u32,
    ) -> Option<PhysicalConnection> {
        let mut r = lock(&self.registrations);
        let from = r.name_of(from)?.to_owned();
        let to = r.name_of(to)?.to_owned();
        let index = r.connections.iter().position(|c| {
            c.from == from && c.from_pin == from_pin && c.to == to && c.to_pin == to_pin
        })?;
        Some(r.connections.remove(index))
    }

    /// Device removal: forgets the subdevices registered with the port
    /// object at `port` and every connection that names them.
    pub fn unregister_port(&self, port: usize) {
        let mut r = lock(&self.registrations);
        let Some(name) = r.name_of(port).map(ToOwned::to_owned) else {
            return;
        };
        r.subdevices.retain(|(_, p)| *p != port);
        r.connections.retain(|c| c.from != name && c.to != name);
    }

    /// PortCls handled a stop or removal (`true`) or a start (`false`).
    pub fn set_device_stopped(&self, stopped: bool) {
        self.set_instance_stopped("", stopped);
    }

    /// [`Machine::set_device_stopped`] for the device instance whose
    /// registrations carry `prefix` (see `EmuPortCls::for_device`).
    pub fn set_instance_stopped(&self, prefix: &str, stopped: bool) {
        let mut stopped_devices = lock(&self.stopped_devices);
        if stopped {
            stopped_devices.insert(prefix.to_owned());
        } else {
            stopped_devices.remove(prefix);
        }
    }

    /// Whether PortCls has handled a stop or removal of the device that
    /// registered the port at `port` (the first device's, for a port not
    /// registered) since its last start.
    #[must_use]
    pub fn device_of_port_stopped(&self, port: usize) -> bool {
        let registrations = self.registrations();
        let prefix = registrations
            .name_of(port)
            .filter(|name| name.starts_with('#'))
            .and_then(|name| name.split_once('\\'))
            .map_or("", |(instance, _)| instance);
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}\\")
        };
        lock(&self.stopped_devices).contains(&prefix)
    }

    /// Whether PortCls has handled a stop or removal since the last start.
    #[must_use]
    pub fn device_stopped(&self) -> bool {
        lock(&self.stopped_devices).contains("")
    }

    /// Everything registered so far.
    #[must_use]
    pub fn registrations(&self) -> Registrations {
        lock(&self.registrations).clone()
    }

    /// Port-side COM objects still alive (0 after a clean shutdown).
    #[must_use]
    pub fn live_objects(&self) -> usize {
        self.live_objects.load(Ordering::Acquire)
    }

    pub(crate) fn object_created(&self) {
        self.live_objects.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn object_destroyed(&self) {
        self.live_objects.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Machine {
    /// A virtual-time machine with 4 MiB of RAM, for unit tests.
    #[cfg(test)]
    pub(crate) fn small_for_tests() -> Arc<Self> {
        let memory = PhysicalMemory::anonymous(crate::memory::MemoryConfig {
            size_bytes: 4 << 20,
            ..crate::memory::MemoryConfig::default()
        });
        Self::new(memory.unwrap_or_else(|e| panic!("{e}")), ClockMode::Virtual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_timer_fires_at_its_new_due_time_once() {
        let machine = Machine::small_for_tests();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&fired);
        let callback: TimerCallback = Arc::new(move |now| lock(&seen).push(now));
        let start = machine.qpc();
        let id = machine.start_timer_due(100, 0, callback);
        assert!(machine.reset_timer_due(id, 250, 0), "a set timer moves");
        machine.advance(200);
        assert!(lock(&fired).is_empty(), "not at its old due time");
        machine.advance(100);
        assert_eq!(*lock(&fired), [start + 250], "once, at the new due time");
        assert!(
            !machine.reset_timer_due(id, 10, 0),
            "a fired one-shot is gone: the caller must start a new one"
        );
        machine.advance(100);
        assert_eq!(lock(&fired).len(), 1, "nothing fires after a refused reset");
    }
}
