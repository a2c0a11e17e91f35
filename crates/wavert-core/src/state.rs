//! The KSSTATE machine and a stream that ties it to positions and
//! notifications.
//!
//! Transitions are stepwise: STOP <-> ACQUIRE <-> PAUSE <-> RUN, one step at
//! a time; asking for the current state is a no-op. Effects: STOP resets the
//! position, packet count and notification schedule; PAUSE freezes the
//! position; RUN starts the clock.

use crate::notify::{Due, NotificationSchedule};
use crate::position::{PresentationPosition, QpcClock};

/// `KSSTATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum KsState {
    /// `KSSTATE_STOP` (0).
    Stop = 0,
    /// `KSSTATE_ACQUIRE` (1).
    Acquire = 1,
    /// `KSSTATE_PAUSE` (2).
    Pause = 2,
    /// `KSSTATE_RUN` (3).
    Run = 3,
}

/// Why a state request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// A value that is no KSSTATE.
    UnknownState(u32),
    /// A jump of more than one step.
    NotStepwise {
        /// Current state.
        from: KsState,
        /// Requested state.
        to: KsState,
    },
}

impl KsState {
    /// The raw `KSSTATE` value.
    #[must_use]
    pub const fn raw(self) -> i32 {
        self as i32
    }

    /// The next state towards RUN (RUN stays RUN).
    #[must_use]
    pub const fn up(self) -> Self {
        match self {
            Self::Stop => Self::Acquire,
            Self::Acquire => Self::Pause,
            Self::Pause | Self::Run => Self::Run,
        }
    }

    /// The next state towards STOP (STOP stays STOP).
    #[must_use]
    pub const fn down(self) -> Self {
        match self {
            Self::Run => Self::Pause,
            Self::Pause => Self::Acquire,
            Self::Acquire | Self::Stop => Self::Stop,
        }
    }

    /// Decodes a raw `KSSTATE`.
    ///
    /// # Errors
    /// [`StateError::UnknownState`].
    pub const fn from_raw(raw: u32) -> Result<Self, StateError> {
        match raw {
            0 => Ok(Self::Stop),
            1 => Ok(Self::Acquire),
            2 => Ok(Self::Pause),
            3 => Ok(Self::Run),
            other => Err(StateError::UnknownState(other)),
        }
    }
}

/// What a state change means for the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Same state requested.
    None,
    /// STOP -> ACQUIRE: resources acquired.
    Acquire,
    /// ACQUIRE -> PAUSE.
    PauseFromAcquire,
    /// PAUSE -> RUN: start DMA / timer.
    Run,
    /// RUN -> PAUSE: stop DMA / timer, freeze position.
    PauseFromRun,
    /// PAUSE -> ACQUIRE.
    AcquireFromPause,
    /// ACQUIRE -> STOP: reset position and packet count.
    Stop,
}

/// Validates one state change.
///
/// # Errors
/// [`StateError::NotStepwise`].
pub const fn transition(from: KsState, to: KsState) -> Result<Transition, StateError> {
    match (from, to) {
        (KsState::Stop, KsState::Stop)
        | (KsState::Acquire, KsState::Acquire)
        | (KsState::Pause, KsState::Pause)
        | (KsState::Run, KsState::Run) => Ok(Transition::None),
        (KsState::Stop, KsState::Acquire) => Ok(Transition::Acquire),
        (KsState::Acquire, KsState::Pause) => Ok(Transition::PauseFromAcquire),
        (KsState::Pause, KsState::Run) => Ok(Transition::Run),
        (KsState::Run, KsState::Pause) => Ok(Transition::PauseFromRun),
        (KsState::Pause, KsState::Acquire) => Ok(Transition::AcquireFromPause),
        (KsState::Acquire, KsState::Stop) => Ok(Transition::Stop),
        _ => Err(StateError::NotStepwise { from, to }),
    }
}

/// Position snapshot of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamPosition {
    /// 64-bit linear byte position.
    pub linear_bytes: u64,
    /// Offset in the cyclic buffer.
    pub cyclic_offset: u32,
    /// Presentation position.
    pub presentation: PresentationPosition,
    /// Packets completed at the nominal rate.
    pub packet_count: u64,
}

/// A timer-paced stream: state, clock and notification schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedStream {
    state: KsState,
    clock: QpcClock,
    notifications: NotificationSchedule,
}

impl TimedStream {
    /// A stream in STOP.
    #[must_use]
    pub const fn new(clock: QpcClock, notifications: NotificationSchedule) -> Self {
        Self {
            state: KsState::Stop,
            clock,
            notifications,
        }
    }

    /// Current state.
    #[must_use]
    pub const fn state(&self) -> KsState {
        self.state
    }

    /// `SetState(raw)` at time `qpc`.
    ///
    /// # Errors
    /// [`StateError`]; the state is unchanged on error.
    pub fn set_state(&mut self, raw: u32, qpc: u64) -> Result<Transition, StateError> {
        let to = KsState::from_raw(raw)?;
        let t = transition(self.state, to)?;
        match t {
            Transition::Run => self.clock.run(qpc),
            Transition::PauseFromRun => self.clock.pause(qpc),
            Transition::Stop => {
                self.clock.reset();
                self.notifications.reset();
            }
            Transition::None
            | Transition::Acquire
            | Transition::PauseFromAcquire
            | Transition::AcquireFromPause => {}
        }
        self.state = to;
        Ok(t)
    }

    /// Position as of `qpc` (advances the clock when running).
    pub fn position(&mut self, qpc: u64) -> StreamPosition {
        self.clock.update(qpc);
        StreamPosition {
            linear_bytes: self.clock.linear_bytes(),
            cyclic_offset: self.clock.cyclic_offset(),
            presentation: self.clock.presentation(),
            packet_count: self.clock.packet_count(),
        }
    }

    /// The linear byte position as of `qpc` (advances the clock when
    /// running): what an engine that moves bytes needs each service,
    /// without the cyclic offset and packet count [`Self::position`]
    /// divides out.
    pub fn linear_bytes_at(&mut self, qpc: u64) -> u64 {
        self.clock.update(qpc);
        self.clock.linear_bytes()
    }

    /// The offset in the cyclic buffer as of `qpc` (advances the clock
    /// when running): `GetPosition`'s one figure, without the packet count
    /// [`Self::position`] also divides out.
    pub fn cyclic_offset_at(&mut self, qpc: u64) -> u32 {
        self.clock.update(qpc);
        self.clock.cyclic_offset()
    }

    /// Timer / DPC service at `qpc`: the notifications now due.
    pub fn poll_notifications(&mut self, qpc: u64) -> Due {
        self.clock.update(qpc);
        self.notifications.poll(self.clock.linear_bytes())
    }

    /// The QPC at which the stream next falls due for its engine: the next
    /// packet end (with `events`, when a notification is owed there), else
    /// half a buffer from the position (the most the engine may run
    /// unserviced before the client's data is at risk), rounded up so a
    /// timer set for it is never early. `None` unless the clock runs.
    #[must_use]
    pub fn next_due_qpc(&self, events: bool) -> Option<u64> {
        let block = u64::from(self.clock.block_align().max(1));
        let target_bytes = if events {
            self.notifications.next_due_bytes()
        } else {
            self.clock.linear_bytes() + u64::from(self.clock.buffer_bytes()) / 2
        };
        let frames = target_bytes.div_ceil(block).max(self.clock.frames() + 1);
        self.clock.qpc_when_frames_reach(frames)
    }

    /// The clock, for timer programming.
    #[must_use]
    pub const fn clock(&self) -> &QpcClock {
        &self.clock
    }
}
