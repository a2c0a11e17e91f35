//! The emulated computer: RAM, the performance counter, kernel timers,
//! kernel events and the log of what the driver registered.
//!
//! Time comes from a [`Clock`]: in virtual mode the performance counter
//! (QPC, 10 MHz) and every timer advance only when the test calls
//! [`Machine::advance`], so runs are deterministic; in real-time mode QPC is
//! the host's monotonic clock and [`Machine::advance`] sleeps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use portcls_sys::{DEVPROPKEY, KEVENT, PKEVENT};

use crate::memory::PhysicalMemory;
use crate::personality::{OrderOutcome, OrderRecord, PortPersonality};

/// QPC ticks per second (what Windows reports on current machines).
pub const QPC_FREQUENCY: u64 = 10_000_000;

/// QPC ticks in one millisecond.
pub const QPC_PER_MS: u64 = QPC_FREQUENCY / 1000;

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
    /// Its binary value.
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
    timers: Mutex<HashMap<u64, TimerEntry>>,
    next_timer: AtomicU64,
    events: Mutex<HashMap<usize, Arc<EventRecord>>>,
    registrations: Mutex<Registrations>,
    /// Whether PortCls has handled a stop, surprise removal or removal of
    /// the device (and no start since).
    device_stopped: AtomicBool,
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
            timers: Mutex::new(HashMap::new()),
            next_timer: AtomicU64::new(1),
            events: Mutex::new(HashMap::new()),
            registrations: Mutex::new(Registrations::default()),
            device_stopped: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            live_objects: AtomicUsize::new(0),
            personality: Mutex::new(PortPersonality::default()),
            orders: Mutex::new(Vec::new()),
        })
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
            ClockMode::RealTime => loop {
                while self.fire_one(self.qpc()) {}
                let now = self.qpc();
                if now >= target {
                    break;
                }
                let next = lock(&self.timers)
                    .values()
                    .map(|t| t.next_due)
                    .min()
                    .unwrap_or(target)
                    .min(target);
                std::thread::sleep(Duration::from_nanos(next.saturating_sub(now) * 100));
            },
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
        let mut r = lock(&self.registrations);
        let before_registration = !r.subdevices.iter().any(|(n, _)| n == name);
        r.interface_properties
            .retain(|p| !(p.name == name && p.key == *key));
        r.interface_properties.push(InterfaceProperty {
            name: name.to_owned(),
            key: *key,
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
        self.device_stopped.store(stopped, Ordering::Release);
    }

    /// Whether PortCls has handled a stop or removal since the last start.
    #[must_use]
    pub fn device_stopped(&self) -> bool {
        self.device_stopped.load(Ordering::Acquire)
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
