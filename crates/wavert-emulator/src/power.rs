//! Device power cycles during playback, sent the way PortCls sends them.
//!
//! HLK's Device Power State Transition job moves a streaming device
//! D0 -> Dx -> D0 again and again; its Lullaby jobs put the whole system to
//! sleep (S3) or hibernate (S4) with the device in D3. [`PowerCycler`] does
//! the same between the polls of a loopback session
//! ([`crate::session::run_loopback_with`]): at a random moment (so a random
//! phase within the buffer) it asks the adapter's registered power management
//! `QueryPowerChangeState` (which must agree), sends `PowerChangeState` (or
//! `PowerChangeState2` with the system state, for a sleep), holds the device
//! there for a while, and brings it back to D0.
//!
//! While the device is out of D0 each poll checks the rules of a quiesced
//! device: neither stream's position moves, no notification event is
//! signalled, the render packet count stands still, and a model with
//! registers ([`PowerCycler::with_power_loss`]) loses them. After D0 the
//! session goes on, so its own checks (bit-exact capture at the reported
//! latency, packets and notifications in step, no glitch) hold the resume.
//!
//! [`FaultyPower`] is a back-end's power hooks broken on purpose, one fault
//! each, so each rule is seen to fail.

use std::sync::Arc;

use portcls_sys::{
    IUnknown, PowerDeviceD0, PowerDeviceD1, PowerDeviceD2, PowerDeviceD3, PowerSystemHibernate,
    PowerSystemSleeping3, PowerSystemWorking, DEVICE_POWER_STATE, KSSTATE_PAUSE, KSSTATE_RUN,
    SYSTEM_POWER_STATE,
};
use wavert_com::{new_adapter_power_management, NtResult};
use wavert_miniport::power::{AdapterPowerPolicy, DevicePower, PowerBackend};
use wavert_miniport::{Backend, Direction};

use crate::cable::EmuPortCls;
use crate::engine::{EngineError, Stream};
use crate::machine::{Machine, QPC_PER_MS};

/// One power transition the cycler made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerCycle {
    /// The low-power device state (`PowerDeviceD1`..`PowerDeviceD3`).
    pub device: DEVICE_POWER_STATE,
    /// The system state named with it (S3, S4), for a system sleep.
    pub system: Option<SYSTEM_POWER_STATE>,
    /// Machine QPC when the device left D0.
    pub down_qpc: u64,
    /// Machine QPC when it was back in D0.
    pub up_qpc: u64,
    /// Render linear position when it left D0 (held until D0).
    pub render_position: u64,
    /// The same position's offset in the render buffer (the phase).
    pub render_phase: u32,
    /// Capture linear position when it left D0.
    pub capture_position: u64,
    /// Polls made while out of D0, each checked.
    pub polls: u32,
}

/// What the cycles should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PowerPlan {
    /// How many cycles (D0 -> low -> D0).
    pub cycles: u32,
    /// The low states, used in turn (with the system state named, if any).
    pub states: Vec<(DEVICE_POWER_STATE, Option<SYSTEM_POWER_STATE>)>,
    /// How long the device stays out of D0 per cycle, in milliseconds.
    pub hold_ms: u64,
    /// Shortest and longest time in D0 before a cycle, in milliseconds
    /// (drawn at random between the two: the phase in the buffer).
    pub gap_ms: (u64, u64),
    /// Seed of the random gaps.
    pub seed: u64,
    /// No cycle before this many milliseconds of playback (the KS position
    /// rules read the first hundred positions of the run).
    pub first_after_ms: u64,
    /// The port pauses the running streams before it sends the device out
    /// of D0 and runs them again after D0 (what Learn's
    /// `IAdapterPowerManagement::PowerChangeState` page says PortCls does);
    /// `false` leaves them in RUN, so that the driver's own quiescing is
    /// what holds them (what a port that does not pause, or a stream set
    /// to RUN while the device sleeps, asks of it).
    pub port_pauses: bool,
}

impl PowerPlan {
    /// Hold time out of D0 per cycle, in milliseconds.
    const HOLD_MS: u64 = 40;

    /// `cycles` D0 -> D3 -> D0 cycles, 25 to 90 ms apart.
    #[must_use]
    pub fn d3(cycles: u32, seed: u64) -> Self {
        Self::of(cycles, vec![(PowerDeviceD3, None)], seed)
    }

    /// `cycles` D3 cycles spread over `seconds` of playback at random
    /// moments, none in its first 300 ms: the main job's `--power-cycle N`.
    #[must_use]
    pub fn spread(cycles: u32, seconds: f64, seed: u64) -> Self {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "at most 600 s of signal, in ms"
        )]
        let span_ms = (seconds.clamp(0.0, 600.0) * 1000.0) as u64;
        let average = (span_ms.saturating_sub(300) / u64::from(cycles.max(1)))
            .saturating_sub(Self::HOLD_MS)
            .max(4);
        Self {
            gap_ms: (average / 2, average * 3 / 2),
            first_after_ms: 300,
            ..Self::d3(cycles, seed)
        }
    }

    /// D1, D2 and D3 in turn, then a system sleep (S3) and a hibernate (S4)
    /// with the device in D3: the HLK power jobs' states.
    #[must_use]
    pub fn every_state(seed: u64) -> Self {
        let states = vec![
            (PowerDeviceD1, None),
            (PowerDeviceD2, None),
            (PowerDeviceD3, None),
            (PowerDeviceD3, Some(PowerSystemSleeping3)),
            (PowerDeviceD3, Some(PowerSystemHibernate)),
        ];
        Self::of(5, states, seed)
    }

    /// `cycles` cycles through `states` in turn, 25 to 90 ms apart from the
    /// start, the streams left in RUN.
    const fn of(
        cycles: u32,
        states: Vec<(DEVICE_POWER_STATE, Option<SYSTEM_POWER_STATE>)>,
        seed: u64,
    ) -> Self {
        Self {
            cycles,
            states,
            hold_ms: Self::HOLD_MS,
            gap_ms: (25, 90),
            seed,
            first_after_ms: 0,
            port_pauses: false,
        }
    }

    /// The same plan with the port pausing the streams around each cycle.
    #[must_use]
    pub const fn with_port_pausing(mut self) -> Self {
        self.port_pauses = true;
        self
    }
}

/// Drives a [`PowerPlan`] between a session's polls.
pub struct PowerCycler<'a> {
    machine: &'a Machine,
    portcls: &'a EmuPortCls,
    plan: PowerPlan,
    rng: u64,
    next_down: Option<u64>,
    cycles: Vec<PowerCycle>,
    power_loss: Option<&'a dyn Fn()>,
}

impl<'a> PowerCycler<'a> {
    /// A cycler over the device behind `portcls`.
    #[must_use]
    pub fn new(machine: &'a Machine, portcls: &'a EmuPortCls, plan: PowerPlan) -> Self {
        let rng = plan.seed | 1;
        Self {
            machine,
            portcls,
            plan,
            rng,
            next_down: None,
            cycles: Vec::new(),
            power_loss: None,
        }
    }

    /// While the device is in D3, `lose` clears the device model's registers
    /// (a real power loss), called once per D3 hold.
    #[must_use]
    pub fn with_power_loss(mut self, lose: &'a dyn Fn()) -> Self {
        self.power_loss = Some(lose);
        self
    }

    /// The cycles made so far.
    #[must_use]
    pub fn cycles(&self) -> &[PowerCycle] {
        &self.cycles
    }

    /// A random gap in QPC ticks (xorshift64: deterministic per seed).
    fn gap(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let (low, high) = self.plan.gap_ms;
        let span = high.saturating_sub(low).max(1);
        (low + self.rng % span) * QPC_PER_MS
    }

    /// The session hook: makes the next cycle when it is due.
    ///
    /// # Errors
    ///
    /// A refused query, a missing power management, or a broken rule.
    pub fn between(
        &mut self,
        render: &mut Stream,
        capture: &mut Stream,
    ) -> Result<(), EngineError> {
        if self.cycles.len() >= self.plan.cycles as usize {
            return Ok(());
        }
        let now = self.machine.qpc();
        let gap = self.gap();
        let first = self.plan.first_after_ms * QPC_PER_MS;
        let due = *self.next_down.get_or_insert(now + first + gap);
        if now < due {
            return Ok(());
        }
        self.cycle(render, capture)?;
        let gap = self.gap();
        self.next_down = Some(self.machine.qpc() + gap);
        Ok(())
    }

    fn cycle(&mut self, render: &mut Stream, capture: &mut Stream) -> Result<(), EngineError> {
        let index = self.cycles.len();
        let states = &self.plan.states;
        let Some(&(device, system)) = states.get(index % states.len().max(1)) else {
            return Err(protocol("a power plan with no states".to_owned()));
        };
        let what = format!(
            "power cycle {index} (D{}, {system:?})",
            device - PowerDeviceD0
        );
        self.portcls
            .query_device_power(device)
            .map_err(|e| protocol(format!("{what}: QueryPowerChangeState refused: {e:?}")))?;
        if self.plan.port_pauses {
            render.set_state(KSSTATE_PAUSE)?;
            capture.set_state(KSSTATE_PAUSE)?;
        }
        let render_position = render.position()?;
        let capture_position = capture.position()?;
        let render_packets = packet_count(render)?;
        let down_qpc = self.machine.qpc();
        self.portcls
            .set_device_power(device, system)
            .map_err(|e| protocol(format!("{what}: no power management: {e:?}")))?;
        let down = (down_qpc, self.machine.qpc());
        render.device_unpowered(down);
        capture.device_unpowered(down);
        if device == PowerDeviceD3 {
            if let Some(lose) = self.power_loss {
                lose();
            }
        }
        let end = down_qpc + self.plan.hold_ms * QPC_PER_MS;
        let mut polls = 0;
        while self.machine.qpc() < end {
            self.machine.advance(QPC_PER_MS);
            polls += 1;
            let (r, c) = (render.position()?, capture.position()?);
            if (r, c) != (render_position, capture_position) {
                return Err(protocol(format!(
                    "{what}: the position moved out of D0 (render {render_position} -> {r}, \
                     capture {capture_position} -> {c})"
                )));
            }
            let signalled = render.take_notifications() + capture.take_notifications();
            if signalled != 0 {
                return Err(protocol(format!(
                    "{what}: {signalled} notification(s) signalled out of D0"
                )));
            }
            let packets = packet_count(render)?;
            if packets != render_packets {
                return Err(protocol(format!(
                    "{what}: the render packet count moved out of D0 ({render_packets:?} -> \
                     {packets:?})"
                )));
            }
        }
        let wake = system.map(|_| PowerSystemWorking);
        let up_before = self.machine.qpc();
        self.portcls
            .set_device_power(PowerDeviceD0, wake)
            .map_err(|e| protocol(format!("{what}: D0 refused: {e:?}")))?;
        let up = (up_before, self.machine.qpc());
        render.device_powered(up);
        capture.device_powered(up);
        if self.plan.port_pauses {
            capture.set_state(KSSTATE_RUN)?;
            render.set_state(KSSTATE_RUN)?;
        }
        let buffer = u64::from(render.buffer_size().max(1));
        self.cycles.push(PowerCycle {
            device,
            system,
            down_qpc,
            up_qpc: self.machine.qpc(),
            render_position,
            render_phase: u32::try_from(render_position % buffer).unwrap_or(0),
            capture_position,
            polls,
        });
        Ok(())
    }
}

/// The render packet count, when the stream is in packet mode.
fn packet_count(stream: &mut Stream) -> Result<Option<u64>, EngineError> {
    if stream.uses_packets() {
        stream.packet_count().map(Some)
    } else {
        Ok(None)
    }
}

const fn protocol(message: String) -> EngineError {
    EngineError::Protocol(message)
}

/// The fault a [`FaultyPower`] injects into a back-end's power hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerFault {
    /// Leaving D0 does nothing: the streams keep running.
    NoQuiesce,
    /// Returning to D0 does nothing: the streams stay held.
    NoResume,
    /// Returning to D0 restarts the render side `ms` later than the capture
    /// side (a device that re-programs its DMA engines one by one and lets
    /// the first run meanwhile), so the capture has a gap.
    RenderResumesLate(u64),
}

/// A back-end's power hooks with one [`PowerFault`].
pub struct FaultyPower<D: PowerBackend + Backend> {
    device: Arc<D>,
    machine: Arc<Machine>,
    fault: PowerFault,
}

impl<D: PowerBackend + Backend> FaultyPower<D> {
    /// `device`'s hooks with `fault`.
    pub const fn new(device: Arc<D>, machine: Arc<Machine>, fault: PowerFault) -> Self {
        Self {
            device,
            machine,
            fault,
        }
    }
}

impl<D: PowerBackend + Backend> PowerBackend for FaultyPower<D> {
    type Platform = <D as PowerBackend>::Platform;

    fn power_platform(&self) -> &Self::Platform {
        self.device.power_platform()
    }

    fn power_down(&self, to: DevicePower) {
        if self.fault != PowerFault::NoQuiesce {
            self.device.power_down(to);
        }
    }

    fn power_up(&self, from: DevicePower, system: Option<SYSTEM_POWER_STATE>) {
        match self.fault {
            PowerFault::NoResume => {}
            PowerFault::RenderResumesLate(ms) => {
                self.device.power_up(from, system);
                // The stepwise RUN -> PAUSE -> RUN of a live stream cannot
                // be refused.
                let _ = self.device.set_state(Direction::Render, KSSTATE_PAUSE);
                self.machine.advance(ms * QPC_PER_MS);
                let _ = self.device.set_state(Direction::Render, KSSTATE_RUN);
            }
            PowerFault::NoQuiesce => self.device.power_up(from, system),
        }
    }
}

/// Registers `device`'s power management with `portcls` in place of what the
/// adapter registered (PortCls keeps the last one), through the product's
/// own [`AdapterPowerPolicy`].
///
/// # Errors
///
/// The object's allocation or the registration.
pub fn register_power<D: PowerBackend>(portcls: &EmuPortCls, device: Arc<D>) -> NtResult<()> {
    use wavert_miniport::adapter::PortClsServices;
    let power = new_adapter_power_management(AdapterPowerPolicy::new(device))?;
    portcls.register_adapter_power_management(&power.query::<IUnknown>()?)
}
