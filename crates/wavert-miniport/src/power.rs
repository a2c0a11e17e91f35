//! Device power management: the policy every back-end shares, and the hooks
//! a back-end provides ([`PowerBackend`]).
//!
//! The adapter registers one [`AdapterPowerPolicy`] per device with
//! `PcRegisterAdapterPowerManagement` (simpleaudiosample `adapter.cpp` does
//! the same in its `StartDevice`). PortCls calls it at `PASSIVE_LEVEL` from
//! its power IRP handling (ReactOS portcls `power.cpp`); Learn's
//! `IAdapterPowerManagement::PowerChangeState` page: PortCls pauses running
//! streams before it sends the device to sleep and runs them again after D0,
//! never asks for a new stream while the device is not in D0, and the
//! driver must not touch the hardware outside D0.
//!
//! What the policy answers:
//! * `QueryPowerChangeState`: D0..D3 are accepted (the device can always
//!   quiesce); anything else is vetoed with `STATUS_INVALID_PARAMETER`.
//! * `QueryDeviceCapabilities`: `STATUS_INVALID_PARAMETER` for a structure
//!   whose `Size` is smaller than `DEVICE_CAPABILITIES`; otherwise S0 maps to
//!   D0 and every sleep, hibernate and shutdown state to D3, `DeviceD1` and
//!   `DeviceD2` as the back-end supports them, and no wake at all
//!   (`WakeFromD0..D3` clear, `SystemWake` and `DeviceWake` unspecified).
//! * `PowerChangeState(2)`: an unknown state is logged and ignored (the
//!   device stays where it was); the state already in force is a no-op;
//!   leaving D0 quiesces through [`PowerBackend::power_down`]; moving between
//!   low-power states touches nothing; entering D0 re-initialises through
//!   [`PowerBackend::power_up`].
//!
//! While the device is out of D0 a back-end refuses to open a stream or to
//! install a buffer with `STATUS_DEVICE_NOT_READY` (nothing changes), and a
//! stream set to RUN is recorded but its clock and DMA are held until D0.

use alloc::sync::Arc;

use portcls_sys::{
    DEVICE_CAPABILITIES_DeviceD1, DEVICE_CAPABILITIES_DeviceD2, DEVICE_CAPABILITIES_WakeFromD0,
    DEVICE_CAPABILITIES_WakeFromD1, DEVICE_CAPABILITIES_WakeFromD2, DEVICE_CAPABILITIES_WakeFromD3,
    PowerDeviceD0, PowerDeviceD1, PowerDeviceD2, PowerDeviceD3, PowerDeviceUnspecified,
    PowerSystemUnspecified, PowerSystemWorking, DEVICE_CAPABILITIES, DEVICE_POWER_STATE,
    SYSTEM_POWER_STATE,
};
use wavert_com::{AdapterPowerManagement, NtResult, NtStatus};

use crate::platform::{LogLevel, Platform, SpinLock};

/// A device power state the driver knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DevicePower {
    /// Fully on.
    D0,
    /// Low power, context kept by the hardware (not advertised).
    D1,
    /// Lower power (not advertised).
    D2,
    /// Off: the hardware may lose every register.
    D3,
}

impl DevicePower {
    /// The state a `DEVICE_POWER_STATE` names, `None` for anything else
    /// (`PowerDeviceUnspecified`, `PowerDeviceMaximum`, garbage).
    #[must_use]
    pub const fn from_raw(raw: DEVICE_POWER_STATE) -> Option<Self> {
        if raw == PowerDeviceD0 {
            Some(Self::D0)
        } else if raw == PowerDeviceD1 {
            Some(Self::D1)
        } else if raw == PowerDeviceD2 {
            Some(Self::D2)
        } else if raw == PowerDeviceD3 {
            Some(Self::D3)
        } else {
            None
        }
    }

    /// The `DEVICE_POWER_STATE` value.
    #[must_use]
    pub const fn raw(self) -> DEVICE_POWER_STATE {
        match self {
            Self::D0 => PowerDeviceD0,
            Self::D1 => PowerDeviceD1,
            Self::D2 => PowerDeviceD2,
            Self::D3 => PowerDeviceD3,
        }
    }
}

/// What a back-end does for power management.
///
/// The cable, the AC'97 and the HD Audio back-ends implement it (see
/// `docs/architecture.md`, "Power management", for what each does).
///
/// Both hooks run at `PASSIVE_LEVEL`, one at a time (PortCls serialises its
/// power IRPs), and must serialise with the back-end's own state changes and
/// buffer installation (the cable takes its one lock).
pub trait PowerBackend: Send + Sync + 'static {
    /// The kernel services (for the policy's lock and log).
    type Platform: Platform;

    /// The platform.
    fn power_platform(&self) -> &Self::Platform;

    /// Whether the device has a real D1 and D2 (`DEVICE_CAPABILITIES`
    /// `DeviceD1`, `DeviceD2`). Neither by default.
    fn supports_d1_d2(&self) -> (bool, bool) {
        (false, false)
    }

    /// Leaves D0 for `to`: running streams stop moving with their positions
    /// and packet counts kept and nothing signalled; the hardware is
    /// powered down as far as `to` allows.
    fn power_down(&self, to: DevicePower);

    /// Returns to D0 from `from`: the hardware is initialised from scratch
    /// (as if every register was lost), and the streams that were running
    /// move again from where they stopped. `system` is the system state
    /// PortCls names (`PowerChangeState2`), when it does.
    fn power_up(&self, from: DevicePower, system: Option<SYSTEM_POWER_STATE>);

    /// How the device names itself in the log.
    fn power_log_prefix(&self) -> &'static str {
        ""
    }
}

/// Counters of what the policy did, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PowerCounts {
    /// Transitions out of D0.
    pub downs: u32,
    /// Transitions back into D0.
    pub ups: u32,
    /// Requests for the state already in force.
    pub repeated: u32,
    /// Requests for a state the driver does not know.
    pub unknown: u32,
}

struct PolicyState {
    current: DevicePower,
    counts: PowerCounts,
}

/// The adapter's power management over one device: the value inside the
/// `IAdapterPowerManagement(2)` object the adapter registers.
pub struct AdapterPowerPolicy<D: PowerBackend> {
    device: Arc<D>,
    state: <D::Platform as Platform>::Lock<PolicyState>,
}

impl<D: PowerBackend> AdapterPowerPolicy<D> {
    /// A policy for a device that starts in D0 (PortCls starts a device
    /// powered). IRQL: `PASSIVE_LEVEL`.
    pub fn new(device: Arc<D>) -> Self {
        let state = device.power_platform().new_lock(PolicyState {
            current: DevicePower::D0,
            counts: PowerCounts::default(),
        });
        Self { device, state }
    }

    /// The state in force.
    pub fn current(&self) -> DevicePower {
        self.state.with(|s| s.current)
    }

    /// What the policy did so far.
    pub fn counts(&self) -> PowerCounts {
        self.state.with(|s| s.counts)
    }

    fn log(&self, level: LogLevel, message: core::fmt::Arguments<'_>) {
        self.device.power_platform().log(level, message);
    }
}

impl<D: PowerBackend> AdapterPowerManagement for AdapterPowerPolicy<D> {
    fn power_change_state(&self, raw: DEVICE_POWER_STATE, system: Option<SYSTEM_POWER_STATE>) {
        let prefix = self.device.power_log_prefix();
        let Some(to) = DevicePower::from_raw(raw) else {
            self.state.with(|s| {
                s.counts.unknown = s.counts.unknown.saturating_add(1);
            });
            self.log(
                LogLevel::Error,
                format_args!("{prefix}power: unknown device state {raw} ignored"),
            );
            return;
        };
        // The transition runs outside the policy's lock (it takes the
        // back-end's), but PortCls never sends two power IRPs at once.
        let from = self.state.with(|s| s.current);
        if from == to {
            self.state.with(|s| {
                s.counts.repeated = s.counts.repeated.saturating_add(1);
            });
            self.log(
                LogLevel::Info,
                format_args!("{prefix}power: already in {to:?}"),
            );
            return;
        }
        match (from, to) {
            (DevicePower::D0, low) => {
                self.device.power_down(low);
                self.state
                    .with(|s| s.counts.downs = s.counts.downs.saturating_add(1));
            }
            (low, DevicePower::D0) => {
                self.device.power_up(low, system);
                self.state
                    .with(|s| s.counts.ups = s.counts.ups.saturating_add(1));
            }
            // Between two low-power states nothing runs and the hardware is
            // not touched (Learn: no hardware access outside D0).
            _ => {}
        }
        self.state.with(|s| s.current = to);
        self.log(
            LogLevel::Info,
            format_args!("{prefix}power: {from:?} -> {to:?}"),
        );
    }

    fn query_power_change_state(&self, raw: DEVICE_POWER_STATE) -> NtResult<()> {
        DevicePower::from_raw(raw)
            .map(|_| ())
            .ok_or(NtStatus::INVALID_PARAMETER)
    }

    fn query_device_capabilities(&self, caps: &mut DEVICE_CAPABILITIES) -> NtResult<()> {
        if usize::from(caps.Size) < core::mem::size_of::<DEVICE_CAPABILITIES>() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        fill_capabilities(caps, self.device.supports_d1_d2());
        Ok(())
    }
}

/// Fills the power part of `caps`: S0 -> D0, every other known system state
/// -> D3 (`PowerSystemUnspecified` stays unspecified), D1/D2 as `d1_d2`
/// says, no wake.
fn fill_capabilities(caps: &mut DEVICE_CAPABILITIES, (d1, d2): (bool, bool)) {
    for (system, device) in (0..).zip(caps.DeviceState.iter_mut()) {
        *device = if system == PowerSystemUnspecified {
            PowerDeviceUnspecified
        } else if system == PowerSystemWorking {
            PowerDeviceD0
        } else {
            PowerDeviceD3
        };
    }
    let mut flags = caps.Flags
        & !(DEVICE_CAPABILITIES_DeviceD1
            | DEVICE_CAPABILITIES_DeviceD2
            | DEVICE_CAPABILITIES_WakeFromD0
            | DEVICE_CAPABILITIES_WakeFromD1
            | DEVICE_CAPABILITIES_WakeFromD2
            | DEVICE_CAPABILITIES_WakeFromD3);
    if d1 {
        flags |= DEVICE_CAPABILITIES_DeviceD1;
    }
    if d2 {
        flags |= DEVICE_CAPABILITIES_DeviceD2;
    }
    caps.Flags = flags;
    caps.SystemWake = PowerSystemUnspecified;
    caps.DeviceWake = PowerDeviceUnspecified;
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use portcls_sys::{PowerDeviceMaximum, PowerSystemHibernate, PowerSystemSleeping3};

    #[test]
    fn capabilities_map_sleep_to_d3_and_clear_wake() {
        let mut caps = DEVICE_CAPABILITIES {
            Size: 64,
            Flags: u32::MAX,
            SystemWake: PowerSystemSleeping3,
            DeviceWake: PowerDeviceD2,
            ..DEVICE_CAPABILITIES::default()
        };
        fill_capabilities(&mut caps, (false, false));
        assert_eq!(
            caps.DeviceState[usize::try_from(PowerSystemWorking).unwrap()],
            PowerDeviceD0
        );
        assert_eq!(
            caps.DeviceState[usize::try_from(PowerSystemSleeping3).unwrap()],
            PowerDeviceD3
        );
        assert_eq!(
            caps.DeviceState[usize::try_from(PowerSystemHibernate).unwrap()],
            PowerDeviceD3
        );
        assert_eq!(caps.DeviceState[0], PowerDeviceUnspecified);
        assert_eq!(
            caps.Flags & (DEVICE_CAPABILITIES_DeviceD1 | DEVICE_CAPABILITIES_WakeFromD3),
            0
        );
        // Bits the policy does not own are left as the bus driver set them.
        assert_ne!(caps.Flags & (1 << 2), 0);
        assert_eq!(caps.SystemWake, PowerSystemUnspecified);
        assert_eq!(caps.DeviceWake, PowerDeviceUnspecified);
        fill_capabilities(&mut caps, (true, false));
        assert_ne!(caps.Flags & DEVICE_CAPABILITIES_DeviceD1, 0);
        assert_eq!(caps.Flags & DEVICE_CAPABILITIES_DeviceD2, 0);
    }

    #[test]
    fn only_the_four_d_states_are_known() {
        for raw in [PowerDeviceD0, PowerDeviceD1, PowerDeviceD2, PowerDeviceD3] {
            assert_eq!(DevicePower::from_raw(raw).map(DevicePower::raw), Some(raw));
        }
        for raw in [PowerDeviceUnspecified, PowerDeviceMaximum, -1, 99] {
            assert_eq!(DevicePower::from_raw(raw), None);
        }
    }
}
