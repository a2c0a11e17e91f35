//! The cable's volume and mute: what its topology nodes set, the audio the
//! capture side hears.
//!
//! Each side's topology filter drives a [`CableVolume`] (its
//! [`TopologyHardware`]): a SET turns the node's levels into Q30 factors
//! ([`wavert_core::convert::gain`], a table lookup, at `PASSIVE_LEVEL`) and
//! publishes them in atomics with a version. The service, under the cable
//! lock at up to `DISPATCH_LEVEL`, reads them only when the version moved
//! ([`Gains::refresh`]) and applies them:
//!
//! * formats that match: the plain copy stays a byte copy, and the frames
//!   it wrote are then scaled in place by both sides' factors, channel by
//!   channel (render channel `n` is capture channel `n`);
//! * formats that differ: the converter scales its working samples, the
//!   render side's per render channel before the channel map, the capture
//!   side's per capture channel after it.
//!
//! At 0 dB and unmuted on both sides nothing is scaled, so the cable stays
//! bit-exact. A change takes effect at the next service, for the frames it
//! writes (not for frames the capture side holds already).
//!
//! Each side also has a peak meter after its mute ([`PeakMeter`]): the
//! render side's measures the frames played, scaled by the render volume;
//! the capture side's the frames the capture client gets.

use core::sync::atomic::{AtomicU32, Ordering};

use wavert_core::convert::channels::MAX_CHANNELS;
use wavert_core::convert::gain::{ChannelGains, UNITY};

use crate::topology::{PeakMeter, TopologyHardware, VolumeRange, SOFTWARE_VOLUME_RANGE};

/// One side's volume and mute as its topology node last set them, and its
/// peak meter.
#[derive(Debug)]
pub struct CableVolume {
    factors: [AtomicU32; MAX_CHANNELS],
    /// Moves after every change (after the factors are stored).
    version: AtomicU32,
    meter: PeakMeter,
}

impl Default for CableVolume {
    fn default() -> Self {
        Self::new()
    }
}

impl CableVolume {
    /// 0 dB, not muted.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            factors: [const { AtomicU32::new(UNITY) }; MAX_CHANNELS],
            version: AtomicU32::new(0),
            meter: PeakMeter::new(),
        }
    }

    /// The side's peak meter (what its topology's peak-meter node reads).
    #[must_use]
    pub const fn meter(&self) -> &PeakMeter {
        &self.meter
    }

    /// The factors and the version they belong to (a change racing this
    /// read moves the version again, so the next read sees it whole).
    /// IRQL: any.
    #[must_use]
    pub fn read(&self) -> (u32, ChannelGains) {
        let version = self.version.load(Ordering::Acquire);
        let mut factors = [UNITY; MAX_CHANNELS];
        for (factor, stored) in factors.iter_mut().zip(&self.factors) {
            *factor = stored.load(Ordering::Relaxed);
        }
        (version, ChannelGains::from_factors(factors))
    }

    /// The current version. IRQL: any.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version.load(Ordering::Acquire)
    }
}

impl TopologyHardware for CableVolume {
    fn volume_range(&self) -> VolumeRange {
        SOFTWARE_VOLUME_RANGE
    }

    fn apply(&self, left: i32, right: i32, muted: bool) {
        self.apply_channels(&[left, right], muted);
    }

    fn apply_channels(&self, levels: &[i32], muted: bool) {
        let gains = ChannelGains::from_levels(levels, muted);
        for (channel, stored) in self.factors.iter().enumerate() {
            stored.store(gains.get(channel), Ordering::Relaxed);
        }
        self.version.fetch_add(1, Ordering::Release);
    }

    fn peak_meter(&self) -> Option<&PeakMeter> {
        Some(&self.meter)
    }
}

/// The factors the service works with, and the versions they were read at.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gains {
    versions: Option<(u32, u32)>,
    /// The render side's factors.
    pub render: ChannelGains,
    /// The capture side's factors.
    pub capture: ChannelGains,
    /// Both in turn (made at each refresh, not per service).
    through: ChannelGains,
}

impl Gains {
    /// Reads the nodes' factors again if either moved; returns whether they
    /// did (so a converter gets them). IRQL: any.
    pub fn refresh(&mut self, render: &CableVolume, capture: &CableVolume) -> bool {
        let versions = (render.version(), capture.version());
        if self.versions == Some(versions) {
            return false;
        }
        let (render_version, render) = render.read();
        let (capture_version, capture) = capture.read();
        self.versions = Some((render_version, capture_version));
        self.render = render;
        self.capture = capture;
        self.through = render.then(&capture);
        true
    }

    /// Both sides' factors in turn, for a copy between matching formats.
    #[must_use]
    pub const fn through(&self) -> &ChannelGains {
        &self.through
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use wavert_core::convert::gain::gain_of_level;

    #[test]
    fn a_set_is_read_once_and_whole() {
        let (render, capture) = (CableVolume::new(), CableVolume::new());
        let mut gains = Gains::default();
        assert!(
            gains.refresh(&render, &capture),
            "the first read always loads"
        );
        assert!(gains.through().is_unity());
        assert!(!gains.refresh(&render, &capture), "nothing moved");
        render.apply_channels(&[-6 * 65_536, 0, -12 * 65_536], false);
        assert!(gains.refresh(&render, &capture));
        assert_eq!(gains.render.get(0), gain_of_level(-6 * 65_536));
        assert_eq!(gains.render.get(1), UNITY);
        assert_eq!(gains.render.get(2), gain_of_level(-12 * 65_536));
        capture.apply(0, 0, true);
        assert!(gains.refresh(&render, &capture));
        assert_eq!(gains.through().get(1), 0, "capture mute silences");
    }
}
