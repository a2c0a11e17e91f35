//! A bounded concurrency stress: the device and the audio engine on their
//! own threads, as on a multi-processor Windows machine.
//!
//! A **device thread** lets time pass ([`Machine::advance`]): the timers
//! fire there, on their own processor, so the cable's timer callback (at
//! `DISPATCH_LEVEL`) or the AC'97 coupling (QEMU stepped, the interrupt
//! raised, the ISR at device IRQL, then the DPC) runs while one or more
//! **engine threads** each loop a counted number of times over a whole
//! stream life: `NewStream` -> allocate (with one or two notifications, or
//! none) -> register the event -> `SetState` up to RUN -> many
//! `GetPosition` -> quick PAUSE/RUN flips -> wait for a notification ->
//! `SetState` down (or straight to the close) ->
//! unregister -> free -> release (`engine::Stream::close`). Each thread
//! owns one endpoint at a time (a pin has one instance), so the threads
//! meet where the driver's streams meet: its shared state, its locks, its
//! timer and interrupt.
//!
//! What is checked, while it runs and at the end:
//!
//! * **positions** stay monotonic within each RUN and inside the buffer;
//!   the device thread never lets time run more than [`WINDOW_PERCENT`] %
//!   of a buffer past an engine thread's last read while that thread
//!   checks positions (and 2 ms past its last call otherwise), so a cyclic
//!   offset that falls behind the previous one is a step backwards, not a
//!   wrap;
//! * **events keep coming in RUN**: after its reads, the engine thread
//!   waits for a notification without reading the position, for at most
//!   [`LIVENESS_BUFFERS`] buffers of virtual time (the timer, or the
//!   interrupt and DPC, must be alive);
//! * **no signal after unregister**: the machine reports a `KeSetEvent` on
//!   an event after its `UnregisterNotificationEvent` returned;
//! * **no use after free**: the memory model reports a stale access
//!   through an unmapped view and a write to a freed frame
//!   ([`crate::memory`]); for the AC'97, every coupling step also checks
//!   that a running bus master's descriptor list and current buffer lie in
//!   pages still held ([`crate::ac97::run_ac97_stress`]);
//! * **IRQL and heap rules** ([`crate::irql`]): every violation the machine
//!   records;
//! * **nothing leaks**: pages, MDLs, mappings, timers and port objects are
//!   all back to zero once the device is removed.
//!
//! It stops by itself: each engine thread runs its iterations, then the
//! device thread stops; a run that does not end within
//! [`StressConfig::wall_limit`] is a failure (a deadlock), reported without
//! waiting for the stuck threads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcls_sys::{IMiniportWaveRT, KSSTATE_PAUSE, KSSTATE_RUN, PCFILTER_DESCRIPTOR};
use wavert_com::ComPtr;

use crate::cable::{start_cable_adapter, CableOptions};
use crate::engine::{negotiate_format, streaming_pin, FormatRequest, Stream};
use crate::faulty::{start_faulty_cable, Fault};
use crate::machine::{lock, ClockMode, Machine, QPC_FREQUENCY};
use crate::memory::{MemoryConfig, PhysicalMemory};
use crate::personality::PortPersonality;

/// How far (in % of the buffer) time may run past an engine thread's last
/// position read while it checks positions.
pub const WINDOW_PERCENT: u64 = 30;

/// How many buffers of virtual time an engine thread waits for a
/// notification in RUN before it calls the stream stalled.
pub const LIVENESS_BUFFERS: u64 = 4;

/// Most failures kept per kind (the rest are counted).
const KEPT_FAILURES: usize = 8;

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StressConfig {
    /// Stream lives per engine thread.
    pub iterations: u32,
    /// `GetPosition` calls per RUN, at least.
    pub position_reads: u32,
    /// Virtual time each life's first RUN lasts at least, in buffers.
    pub run_buffers: u32,
    /// Quick PAUSE -> RUN flips after it, each with a few reads.
    pub toggles: u32,
    /// How much time one device step lets pass, in QPC ticks.
    pub device_step: u64,
    /// Wall time after which the run counts as stuck.
    pub wall_limit: Duration,
    /// How the emulated PortCls drives the streams ([`PortPersonality`]).
    pub personality: PortPersonality,
}

impl Default for StressConfig {
    fn default() -> Self {
        Self {
            iterations: 400,
            position_reads: 32,
            run_buffers: 1,
            toggles: 8,
            device_step: QPC_FREQUENCY / 4000,
            wall_limit: Duration::from_secs(120),
            personality: PortPersonality::Windows,
        }
    }
}

/// One endpoint an engine thread opens streams on.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// A name for the report (the subdevice name).
    pub name: String,
    /// The wave miniport.
    pub wave: ComPtr<IMiniportWaveRT>,
    /// Its filter descriptor.
    pub description: &'static PCFILTER_DESCRIPTOR,
    /// The host pin.
    pub pin: u32,
    /// Whether it captures.
    pub capture: bool,
    /// The format asked for.
    pub format: FormatRequest,
    /// Buffer sizes asked for, in milliseconds, used in turn.
    pub buffer_ms: Vec<u32>,
}

/// What is left once the device is removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leaks {
    /// Page frames in use.
    pub pages: usize,
    /// MDLs not freed.
    pub mdls: usize,
    /// Mappings not unmapped.
    pub mappings: usize,
    /// Machine timers running.
    pub timers: usize,
    /// Port-side COM objects alive.
    pub live_objects: usize,
}

impl Leaks {
    /// Whether everything is back to zero.
    #[must_use]
    pub const fn none(&self) -> bool {
        self.pages == 0
            && self.mdls == 0
            && self.mappings == 0
            && self.timers == 0
            && self.live_objects == 0
    }
}

/// What the stress saw.
#[derive(Clone, Debug, Default)]
pub struct StressReport {
    /// The device that ran.
    pub device: String,
    /// Engine threads.
    pub engine_threads: usize,
    /// Stream lives completed (all threads).
    pub iterations: u64,
    /// RUN phases checked.
    pub runs: u64,
    /// `GetPosition` calls checked.
    pub position_reads: u64,
    /// Notifications the engine threads saw.
    pub notifications: u64,
    /// Device steps (time advances) the device thread made.
    pub device_steps: u64,
    /// Virtual time run, in milliseconds.
    pub virtual_ms: u64,
    /// Wall time, in seconds.
    pub wall_seconds: f64,
    /// Check failures (positions, liveness, engine errors), the first few
    /// of each kind.
    pub failures: Vec<String>,
    /// Failures not kept.
    pub more_failures: u64,
    /// Violations the machine recorded.
    pub violations: Vec<String>,
    /// What was left after the device was removed.
    pub leaks: Leaks,
}

impl StressReport {
    /// Whether every check passed and the run did something.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
            && self.violations.is_empty()
            && self.leaks.none()
            && self.iterations > 0
    }

    /// The report, one line per figure.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("device        : {}", self.device),
            format!(
                "ran           : {} stream lives on {} engine thread(s), {} RUN phases, {} positions, {} notifications",
                self.iterations, self.engine_threads, self.runs, self.position_reads, self.notifications
            ),
            format!(
                "device thread : {} steps, {} ms virtual, {:.2} s wall",
                self.device_steps, self.virtual_ms, self.wall_seconds
            ),
            format!(
                "leaks         : {} pages, {} MDLs, {} mappings, {} timers, {} port objects",
                self.leaks.pages,
                self.leaks.mdls,
                self.leaks.mappings,
                self.leaks.timers,
                self.leaks.live_objects
            ),
        ];
        lines.push(format!(
            "failures      : {}",
            if self.failures.is_empty() {
                "none".to_owned()
            } else {
                format!(
                    "{}{}",
                    self.failures.join("; "),
                    if self.more_failures > 0 {
                        format!(" (and {} more)", self.more_failures)
                    } else {
                        String::new()
                    }
                )
            }
        ));
        lines.push(format!(
            "violations    : {}",
            if self.violations.is_empty() {
                "none".to_owned()
            } else {
                self.violations.join("; ")
            }
        ));
        lines
    }

    /// Fills in what the machine shows once the device is removed: its
    /// violations (after a last check of the freed pages) and the leaks.
    pub fn finish(&mut self, machine: &Machine) {
        let _ = machine.memory.check_freed_pages();
        self.violations = machine.violations();
        self.leaks = Leaks {
            pages: machine.memory.pages_in_use(),
            mdls: machine.memory.live_mdls(),
            mappings: machine.memory.live_mappings(),
            timers: machine.running_timers(),
            live_objects: machine.live_objects(),
        };
    }
}

/// Failures shared by the threads: the first few of each kind.
#[derive(Debug, Default)]
struct Failures {
    kept: Vec<(&'static str, String)>,
    more: u64,
}

impl Failures {
    fn add(&mut self, kind: &'static str, what: String) {
        if self.kept.iter().filter(|(k, _)| *k == kind).count() < KEPT_FAILURES {
            self.kept.push((kind, what));
        } else {
            self.more += 1;
        }
    }
}

/// What the threads share.
#[derive(Debug)]
struct Shared {
    machine: Arc<Machine>,
    /// Per engine thread: the QPC time may run to (`u64::MAX`: no limit).
    horizons: Vec<AtomicU64>,
    engines_done: AtomicU64,
    stop: AtomicBool,
    failures: Mutex<Failures>,
    iterations: AtomicU64,
    runs: AtomicU64,
    reads: AtomicU64,
    notifications: AtomicU64,
    steps: AtomicU64,
}

impl Shared {
    fn fail(&self, kind: &'static str, what: String) {
        lock(&self.failures).add(kind, what);
    }
}

/// How far time may run past an engine thread's last call outside its
/// position reads: two ticks of the cable's timer, so the device gets
/// between every two calls but never runs away from a thread the
/// scheduler set aside.
const PACE_TICKS: u64 = 2 * QPC_FREQUENCY / 1000;

/// Lets the device run up to [`PACE_TICKS`] past now.
fn pace(shared: &Shared, horizon: &AtomicU64) {
    horizon.store(
        shared.machine.qpc().saturating_add(PACE_TICKS),
        Ordering::Release,
    );
}

/// QPC ticks of `bytes` of `stream`'s format.
fn ticks_of(stream: &Stream, bytes: u64) -> u64 {
    let per_second = u64::from(stream.format().bytes_per_second()).max(1);
    bytes.saturating_mul(QPC_FREQUENCY) / per_second
}

/// One engine thread's loop over its endpoints (`index`: its horizon).
fn engine_thread(shared: &Shared, index: usize, endpoints: &[Endpoint], config: &StressConfig) {
    let Some(horizon) = shared.horizons.get(index) else {
        return;
    };
    let formats: Vec<Option<Vec<u8>>> = endpoints
        .iter()
        .map(
            |e| match negotiate_format(&e.wave, e.description, e.pin, &e.format) {
                Ok((_, bytes)) => Some(bytes),
                Err(err) => {
                    shared.fail("engine", format!("{}: no format: {err}", e.name));
                    None
                }
            },
        )
        .collect();
    for iteration in 0..config.iterations {
        let turn = iteration as usize;
        let Some((endpoint, Some(format))) = endpoints
            .get(turn % endpoints.len().max(1))
            .zip(formats.get(turn % endpoints.len().max(1)))
        else {
            break;
        };
        pace(shared, horizon);
        if let Err(what) = stream_life(shared, horizon, endpoint, format, iteration, config) {
            shared.fail(
                "engine",
                format!("{} (iteration {iteration}): {what}", endpoint.name),
            );
        }
        shared.iterations.fetch_add(1, Ordering::AcqRel);
    }
    // Done: this thread holds time back no more.
    horizon.store(u64::MAX, Ordering::Release);
}

/// One stream life; `Err` for an engine error (the check failures are
/// recorded as they happen).
fn stream_life(
    shared: &Shared,
    horizon: &AtomicU64,
    endpoint: &Endpoint,
    format: &[u8],
    iteration: u32,
    config: &StressConfig,
) -> Result<(), String> {
    let machine = &shared.machine;
    let mut stream = Stream::open(
        machine,
        &endpoint.wave,
        endpoint.pin,
        endpoint.capture,
        format,
    )
    .map_err(|e| e.to_string())?;
    let buffer_ms = endpoint
        .buffer_ms
        .get(iteration as usize % endpoint.buffer_ms.len().max(1))
        .copied()
        .unwrap_or(20);
    let bytes_per_ms = u64::from(stream.format().bytes_per_second()) / 1000;
    let requested = u32::try_from(bytes_per_ms * u64::from(buffer_ms)).unwrap_or(u32::MAX);
    // Two notifications, one, or none (every third life), in turn.
    let notifications = match iteration % 3 {
        0 => Some(2),
        1 => Some(1),
        _ => None,
    };
    pace(shared, horizon);
    let size = stream
        .allocate(requested, notifications)
        .map_err(|e| e.to_string())?;
    pace(shared, horizon);
    let event = if notifications.is_some() {
        Some(stream.register_event().map_err(|e| e.to_string())?)
    } else {
        None
    };
    pace(shared, horizon);
    let result = run_and_check(
        shared,
        horizon,
        &mut stream,
        endpoint,
        size,
        event.is_some(),
        config,
    );
    // Every other life closes from RUN (the close steps down itself).
    pace(shared, horizon);
    if iteration % 2 == 0 {
        stream
            .set_state(portcls_sys::KSSTATE_STOP)
            .map_err(|e| e.to_string())?;
        pace(shared, horizon);
    }
    let stats = stream.close().map_err(|e| e.to_string())?;
    pace(shared, horizon);
    shared
        .notifications
        .fetch_add(stats.notifications, Ordering::AcqRel);
    result
}

/// RUN with its position reads, then [`StressConfig::toggles`] quick
/// PAUSE -> RUN flips with a few reads each (the other threads' state
/// changes meet this one's there), then the wait for a notification.
fn run_and_check(
    shared: &Shared,
    horizon: &AtomicU64,
    stream: &mut Stream,
    endpoint: &Endpoint,
    size: u32,
    with_event: bool,
    config: &StressConfig,
) -> Result<(), String> {
    let run_ticks = ticks_of(stream, u64::from(size) * u64::from(config.run_buffers));
    let check = RunCheck {
        shared,
        horizon,
        endpoint,
        size,
    };
    check.run(stream, config.position_reads, run_ticks)?;
    for _ in 0..config.toggles {
        stream.set_state(KSSTATE_PAUSE).map_err(|e| e.to_string())?;
        pace(shared, horizon);
        check.run(stream, 2, 0)?;
    }
    if with_event {
        check.wait_for_notification(stream);
    }
    Ok(())
}

/// The checks of one stream's RUN phases.
struct RunCheck<'a> {
    shared: &'a Shared,
    horizon: &'a AtomicU64,
    endpoint: &'a Endpoint,
    size: u32,
}

impl RunCheck<'_> {
    /// `SetState(RUN)`, then position reads (at least `reads`, for at least
    /// `ticks` of virtual time), each inside the buffer and none behind the
    /// one before.
    fn run(&self, stream: &mut Stream, reads: u32, ticks: u64) -> Result<(), String> {
        let machine = &self.shared.machine;
        let size = u64::from(self.size);
        let window = ticks_of(stream, size * WINDOW_PERCENT / 100).max(1);
        // Time may not run away before the first read.
        self.horizon
            .store(machine.qpc().saturating_add(window), Ordering::Release);
        stream.set_state(KSSTATE_RUN).map_err(|e| e.to_string())?;
        self.shared.runs.fetch_add(1, Ordering::AcqRel);
        let started = machine.qpc();
        let mut last: Option<u64> = None;
        let mut done = 0u32;
        while done < reads || machine.qpc().saturating_sub(started) < ticks {
            let before = machine.qpc();
            let position = stream.raw_position().map_err(|e| e.to_string())?;
            self.horizon
                .store(before.saturating_add(window), Ordering::Release);
            done += 1;
            self.shared.reads.fetch_add(1, Ordering::AcqRel);
            let offset = position.PlayOffset;
            let name = &self.endpoint.name;
            if offset >= size {
                self.shared.fail(
                    "position",
                    format!("{name}: GetPosition answered offset {offset} in a {size}-byte buffer"),
                );
                continue;
            }
            if let Some(previous) = last {
                let forward = (offset + size - previous) % size;
                if forward > size / 2 {
                    self.shared.fail(
                        "position",
                        format!(
                            "{name}: the position went backwards in RUN, {previous} -> {offset} \
                             (buffer {size} bytes, at most {WINDOW_PERCENT} % of it can pass \
                             between reads)"
                        ),
                    );
                }
            }
            last = Some(offset);
            // Let the device run now and then.
            if done % 8 == 0 {
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    /// Events keep coming in RUN without anyone reading the position: at
    /// most [`LIVENESS_BUFFERS`] buffers of virtual time to the next one.
    fn wait_for_notification(&self, stream: &mut Stream) {
        let machine = &self.shared.machine;
        self.horizon.store(u64::MAX, Ordering::Release);
        let _ = stream.take_notifications();
        let waited_from = machine.qpc();
        let limit = ticks_of(stream, u64::from(self.size) * LIVENESS_BUFFERS);
        loop {
            // The clock first: a signal due before it is in by then.
            let now = machine.qpc();
            if stream.take_notifications() > 0 {
                return;
            }
            if now.saturating_sub(waited_from) > limit {
                self.shared.fail(
                    "liveness",
                    format!(
                        "{}: no notification in {} ms of virtual time in RUN (buffer {} bytes; \
                         {} kernel timer(s) running)",
                        self.endpoint.name,
                        limit * 1000 / QPC_FREQUENCY,
                        self.size,
                        machine.running_timers()
                    ),
                );
                return;
            }
            std::thread::yield_now();
        }
    }
}

/// The device thread: lets time pass in steps, never past an engine
/// thread's horizon, until every engine thread is done.
fn device_thread(shared: &Shared, engines: u64, step: u64) {
    let machine = &shared.machine;
    while shared.engines_done.load(Ordering::Acquire) < engines
        && !shared.stop.load(Ordering::Acquire)
    {
        let limit = shared
            .horizons
            .iter()
            .map(|h| h.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX);
        if machine.qpc().saturating_add(step) <= limit {
            machine.advance(step);
            shared.steps.fetch_add(1, Ordering::AcqRel);
        } else {
            std::thread::yield_now();
        }
    }
}

/// Runs the stress on `machine`'s device.
///
/// One engine thread per entry of `lanes`, each cycling through its
/// endpoints, and the device thread. The report's violations and leaks are for the caller to fill in with
/// [`StressReport::finish`] once the device is removed.
#[must_use]
pub fn run_stress(
    machine: &Arc<Machine>,
    device: &str,
    lanes: Vec<Vec<Endpoint>>,
    config: &StressConfig,
) -> StressReport {
    let started = Instant::now();
    let qpc_at_start = machine.qpc();
    let engines = lanes.len();
    let shared = Arc::new(Shared {
        machine: Arc::clone(machine),
        horizons: (0..engines).map(|_| AtomicU64::new(u64::MAX)).collect(),
        engines_done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        failures: Mutex::new(Failures::default()),
        iterations: AtomicU64::new(0),
        runs: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        notifications: AtomicU64::new(0),
        steps: AtomicU64::new(0),
    });
    let (done, finished) = mpsc::channel::<()>();
    for (index, endpoints) in lanes.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let done = done.clone();
        let config = *config;
        std::thread::spawn(move || {
            engine_thread(&shared, index, &endpoints, &config);
            // The endpoints hold the wave filters: they go before the
            // thread says it is done, or the caller's removal may count
            // one still alive (seen under load as "1 port objects").
            drop(endpoints);
            shared.engines_done.fetch_add(1, Ordering::AcqRel);
            let _ = done.send(());
        });
    }
    {
        let shared = Arc::clone(&shared);
        let done = done.clone();
        let step = config.device_step.max(1);
        std::thread::spawn(move || {
            device_thread(&shared, engines as u64, step);
            let _ = done.send(());
        });
    }
    drop(done);
    let deadline = started + config.wall_limit;
    let mut ended = 0;
    while ended < engines + 1 {
        let left = deadline.saturating_duration_since(Instant::now());
        if finished.recv_timeout(left).is_err() {
            shared.stop.store(true, Ordering::Release);
            shared.fail(
                "stuck",
                format!(
                    "the stress did not finish within {} s ({} of {} threads ended): a deadlock?",
                    config.wall_limit.as_secs(),
                    ended,
                    engines + 1
                ),
            );
            break;
        }
        ended += 1;
    }
    let failures = std::mem::take(&mut *lock(&shared.failures));
    StressReport {
        device: device.to_owned(),
        engine_threads: engines,
        iterations: shared.iterations.load(Ordering::Acquire),
        runs: shared.runs.load(Ordering::Acquire),
        position_reads: shared.reads.load(Ordering::Acquire),
        notifications: shared.notifications.load(Ordering::Acquire),
        device_steps: shared.steps.load(Ordering::Acquire),
        virtual_ms: machine.qpc().saturating_sub(qpc_at_start) * 1000 / QPC_FREQUENCY,
        wall_seconds: started.elapsed().as_secs_f64(),
        failures: failures.kept.into_iter().map(|(_, what)| what).collect(),
        more_failures: failures.more,
        violations: Vec::new(),
        leaks: Leaks::default(),
    }
}

/// The stress on the virtual cable: the host build, or the faulty cable.
///
/// With `fault`, the faulty cable ([`crate::faulty`]). One engine thread on the render endpoint and one on the
/// capture endpoint, 48 kHz 16-bit stereo (the capture side then copies
/// render data), buffers of 10, 20 and 50 ms in turn.
///
/// # Errors
///
/// RAM or the device could not be set up.
pub fn stress_cable(fault: Option<Fault>, config: &StressConfig) -> Result<StressReport, String> {
    let memory = PhysicalMemory::anonymous(MemoryConfig {
        size_bytes: 32 << 20,
        ..MemoryConfig::default()
    })
    .map_err(|e| format!("RAM: {e}"))?;
    let machine = Machine::new(memory, ClockMode::Virtual);
    machine.set_personality(config.personality);
    let started = fault.map_or_else(
        || start_cable_adapter(&machine, CableOptions::default()),
        |fault| start_faulty_cable(&machine, fault),
    );
    let adapter =
        started.map_err(|status| format!("StartDevice failed: {:#010x}", status.code()))?;
    let mut lanes = Vec::new();
    for (name, capture) in [("WaveRender", false), ("WaveCapture", true)] {
        let filter = adapter
            .wave_filter(name)
            .ok_or_else(|| format!("no wave filter registered as {name}"))?;
        let pin = streaming_pin(filter.description, capture)
            .ok_or_else(|| format!("{name} has no host pin"))?;
        lanes.push(vec![Endpoint {
            name: name.to_owned(),
            wave: filter.miniport,
            description: filter.description,
            pin,
            capture,
            format: FormatRequest::default(),
            buffer_ms: vec![10, 20, 50],
        }]);
    }
    let device = fault.map_or_else(
        || "virtual cable (host build)".to_owned(),
        |fault| format!("virtual cable with fault {fault:?}"),
    ) + &format!(", port {:?}", config.personality);
    let mut report = run_stress(&machine, &device, lanes, config);
    adapter.remove();
    report.finish(&machine);
    Ok(report)
}
