//! Port personalities: the orders in which a real PortCls may call a WaveRT
//! miniport, so every test runs the miniport under each of them.
//!
//! One model of the port in one order lets a miniport pass that fails on a
//! machine whose port calls differently. The personalities are:
//!
//! * [`PortPersonality::Windows`]: the order the Learn pages document: the
//!   requested size passed as the client asked, `GetHWLatency` when the
//!   client asks, states one step at a time (`IMiniportWaveRTStream::SetState`:
//!   transitions always run STOP, ACQUIRE, PAUSE, RUN or back), packet mode
//!   where the stream offers it, and on close the event unregistered
//!   before the buffer is freed (the
//!   `KSPROPERTY_RTAUDIO_UNREGISTER_NOTIFICATION_EVENT` page: after the
//!   stop, before the close).
//! * [`PortPersonality::ReactOs`]: ReactOS's PortCls (`pin_wavert.cpp`):
//!   the requested size rounded up to a whole page, `GetHWLatency` at pin
//!   open before any buffer, the client's target state passed straight
//!   through (STOP to RUN in one call), on close the buffer freed
//!   before the event is unregistered, and no packet mode (its property
//!   set predates Windows 10's packet interfaces).
//! * [`PortPersonality::Hostile`]: everything the documentation allows, in
//!   the least convenient way: a requested size that is no whole number of
//!   frames, the position and latency read before any buffer exists, a
//!   buffer allocated, freed and allocated again on the open pin, `SetFormat`
//!   with the stream's own format, the hardware register and device
//!   description queries, and the documented close order.
//!
//! Whatever the personality, the port poisons every out-parameter before a
//! call (a miniport that forgets one is caught), queries `IPinCount` and
//! `IPowerNotify` at `IPort::Init` (ReactOS `port_wavert.cpp`), and checks
//! the answers against the documented rules. Where a miniport refuses an
//! order a real port uses, the stream records it ([`OrderOutcome::Refused`])
//! and goes on as Windows would (one step at a time); the report lists what
//! each miniport tolerated.

use std::fmt;

use portcls_sys::NTSTATUS;

/// Which real port the emulated PortCls behaves like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PortPersonality {
    /// The documented order (Windows PortCls).
    #[default]
    Windows,
    /// ReactOS's PortCls.
    ReactOs,
    /// The least convenient order the documentation allows.
    Hostile,
}

impl PortPersonality {
    /// Every personality, as `cargo xtask test` runs them.
    pub const ALL: [Self; 3] = [Self::Windows, Self::ReactOs, Self::Hostile];

    /// The name the command line and the report use.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Windows => "windows",
            Self::ReactOs => "reactos",
            Self::Hostile => "hostile",
        }
    }

    /// The personality called `name`.
    ///
    /// # Errors
    ///
    /// A plain message naming the choices.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!("unknown port personality {name:?}: expected windows, reactos or hostile")
            })
    }

    /// What this personality does differently.
    #[must_use]
    pub const fn behaviour(self) -> PortBehaviour {
        match self {
            Self::Windows => PortBehaviour {
                page_round_request: false,
                ragged_request: false,
                latency_at_open: false,
                free_before_unregister: false,
                reallocate: false,
                jump_states: false,
                extra_queries: false,
                position_before_buffer: false,
                packet_mode: true,
            },
            Self::ReactOs => PortBehaviour {
                page_round_request: true,
                ragged_request: false,
                latency_at_open: true,
                free_before_unregister: true,
                reallocate: false,
                jump_states: true,
                extra_queries: false,
                position_before_buffer: false,
                packet_mode: false,
            },
            Self::Hostile => PortBehaviour {
                page_round_request: false,
                ragged_request: true,
                latency_at_open: true,
                free_before_unregister: false,
                reallocate: true,
                jump_states: false,
                extra_queries: true,
                position_before_buffer: true,
                packet_mode: true,
            },
        }
    }
}

impl fmt::Display for PortPersonality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The knobs a personality sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "each flag is one independent port behaviour, named after it"
)]
pub struct PortBehaviour {
    /// The port rounds the client's requested buffer size up to a whole
    /// page before asking the miniport (ReactOS).
    pub page_round_request: bool,
    /// The requested size is one byte more than whole frames (the client's
    /// figure is not bound to frames; the miniport rounds).
    pub ragged_request: bool,
    /// `GetHWLatency` at pin open, before any buffer (ReactOS caches it
    /// there); the client's own request still comes later.
    pub latency_at_open: bool,
    /// On close, the buffer is freed before the notification event is
    /// unregistered (ReactOS); otherwise after (the documented order).
    pub free_before_unregister: bool,
    /// The first buffer is freed and a second one allocated on the open pin
    /// before the stream runs.
    pub reallocate: bool,
    /// The client's target state goes straight to `SetState` (ReactOS);
    /// otherwise one step at a time.
    pub jump_states: bool,
    /// `SetFormat` with the stream's own format while stopped,
    /// `GetPositionRegister`, `GetClockRegister` and `GetDeviceDescription`.
    pub extra_queries: bool,
    /// `GetPosition` (and `GetHWLatency`) on the pin before any buffer.
    pub position_before_buffer: bool,
    /// The port uses the Windows 10 packet interfaces when a stream offers
    /// them (Windows); ReactOS's port predates them (its
    /// `KSPROPSETID_RtAudio` set in `pin_wavert.cpp` has only the seven
    /// Vista properties).
    pub packet_mode: bool,
}

/// What a miniport did with one order a port used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderOutcome {
    /// The miniport accepted it.
    Tolerated,
    /// The miniport refused it with this status; the port went on as
    /// Windows would. For an order a real port uses, a bug to fix.
    Refused(NTSTATUS),
    /// An optional feature the miniport does not offer (the hardware
    /// position and clock registers), answered with an error the port
    /// handles by falling back (to `GetPosition`): not a failure.
    Declined(NTSTATUS),
}

/// One order a personality used, and what the miniport made of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    /// What the port did, in words.
    pub order: String,
    /// How the miniport answered.
    pub outcome: OrderOutcome,
}

/// Summarises records for the report: `"n tolerated; refused: a (status), ..."`,
/// each order counted once however often it ran.
#[must_use]
pub fn summarise(records: &[OrderRecord]) -> String {
    let mut tolerated: Vec<String> = Vec::new();
    let mut declined: Vec<String> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    for r in records {
        let (list, line) = match r.outcome {
            OrderOutcome::Tolerated => (&mut tolerated, r.order.clone()),
            OrderOutcome::Declined(status) => {
                (&mut declined, format!("{} ({status:#010x})", r.order))
            }
            OrderOutcome::Refused(status) => {
                (&mut refused, format!("{} ({status:#010x})", r.order))
            }
        };
        if !list.contains(&line) {
            list.push(line);
        }
    }
    let mut out = format!("{} order(s) tolerated", tolerated.len());
    if !tolerated.is_empty() {
        out = format!("{out} ({})", tolerated.join(", "));
    }
    if !declined.is_empty() {
        out = format!("{out}; optional, not offered: {}", declined.join(", "));
    }
    if refused.is_empty() {
        out + ", none refused"
    } else {
        format!("{out}; refused: {}", refused.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_explained() {
        for p in PortPersonality::ALL {
            assert_eq!(PortPersonality::parse(p.name()), Ok(p));
        }
        assert_eq!(
            PortPersonality::parse("ReactOS"),
            Ok(PortPersonality::ReactOs)
        );
        let e = PortPersonality::parse("linux").expect_err("not a personality");
        assert!(e.contains("windows, reactos or hostile"), "{e}");
    }

    #[test]
    fn personalities_differ_where_their_ports_do() {
        let w = PortPersonality::Windows.behaviour();
        let r = PortPersonality::ReactOs.behaviour();
        let h = PortPersonality::Hostile.behaviour();
        assert!(!w.jump_states && r.jump_states);
        assert!(!w.free_before_unregister && r.free_before_unregister);
        assert!(r.page_round_request && r.latency_at_open);
        assert!(h.reallocate && h.extra_queries && h.ragged_request);
        assert!(w.packet_mode && h.packet_mode && !r.packet_mode);
    }

    #[test]
    fn summary_counts_each_order_once() {
        let records = [
            OrderRecord {
                order: "STOP -> RUN in one call".to_owned(),
                outcome: OrderOutcome::Tolerated,
            },
            OrderRecord {
                order: "STOP -> RUN in one call".to_owned(),
                outcome: OrderOutcome::Tolerated,
            },
            OrderRecord {
                order: "SetFormat while stopped".to_owned(),
                outcome: OrderOutcome::Refused(-1_073_741_637),
            },
            OrderRecord {
                order: "GetClockRegister".to_owned(),
                outcome: OrderOutcome::Declined(-1_073_741_637),
            },
        ];
        assert_eq!(
            summarise(&records),
            "1 order(s) tolerated (STOP -> RUN in one call); optional, not offered: \
             GetClockRegister (0xc00000bb); refused: SetFormat while stopped (0xc00000bb)"
        );
        assert_eq!(summarise(&[]), "0 order(s) tolerated, none refused");
    }
}
