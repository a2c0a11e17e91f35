//! What a cable user hears as crackle or drift, measured against the ideal
//! clock.
//!
//! How late each notification event came after its packet end, and how far
//! the reported position strays from the nominal rate.
//!
//! The ideal clock of a stream starts at its RUN: packet `k` ends at
//! `run + k * packet_frames / rate` seconds, and the position at QPC `t` is
//! `(t - run) * rate` frames. Everything here is integer arithmetic on QPC
//! ticks and frames (rounded where a division is needed, as said), so a
//! virtual-time run that is exact measures exactly 0.

use crate::engine::PositionSample;
use crate::machine::QPC_FREQUENCY;

/// The clock a stream ran against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamClock {
    /// QPC at RUN.
    pub run_qpc: u64,
    /// Frames per second.
    pub rate: u32,
    /// Bytes per frame.
    pub block_align: u32,
    /// Frames per packet (buffer / notification count).
    pub packet_frames: u64,
}

impl StreamClock {
    /// QPC at which packet `k` (1-based) ends: rounded up, so an event at
    /// that tick is not early.
    #[must_use]
    pub fn packet_end_qpc(&self, k: u64) -> u64 {
        let num = u128::from(k) * u128::from(self.packet_frames) * u128::from(QPC_FREQUENCY);
        let ticks = num.div_ceil(u128::from(self.rate.max(1)));
        self.run_qpc
            .saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX))
    }

    /// Packets whose end has passed at QPC `t`.
    #[must_use]
    pub fn packets_ended_by(&self, t: u64) -> u64 {
        let elapsed = u128::from(t.saturating_sub(self.run_qpc));
        let frames = elapsed * u128::from(self.rate) / u128::from(QPC_FREQUENCY);
        u64::try_from(frames / u128::from(self.packet_frames.max(1))).unwrap_or(u64::MAX)
    }

    /// The ideal position at QPC `t`, in frames (rounded down).
    #[must_use]
    pub fn ideal_frames(&self, t: u64) -> u64 {
        let elapsed = u128::from(t.saturating_sub(self.run_qpc));
        u64::try_from(elapsed * u128::from(self.rate) / u128::from(QPC_FREQUENCY))
            .unwrap_or(u64::MAX)
    }
}

/// How late the notification events came.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lateness {
    /// Per signal: QPC ticks after the packet end it announces (the last one
    /// passed), with the time of the signal since RUN; in signal order.
    pub late_ticks: Vec<(u64, u64)>,
    /// Signals before the first packet end (an event with nothing to announce).
    pub early: u64,
    /// Packet ends up to the last signal that no signal announced (two ends
    /// passing before one signal: the event is a level, so the client sees
    /// one wake-up for two packets).
    pub missed: u64,
}

impl Lateness {
    /// The `p`-th percentile (0..=100) of the lateness in ticks, nearest rank;
    /// 0 without signals.
    #[must_use]
    pub fn percentile_ticks(&self, p: u32) -> u64 {
        let mut sorted: Vec<u64> = self.late_ticks.iter().map(|&(late, _)| late).collect();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return 0;
        }
        let n = sorted.len();
        let rank = (usize::try_from(p.min(100)).unwrap_or(100) * n).div_ceil(100);
        sorted[rank.clamp(1, n) - 1]
    }

    /// The largest lateness in ticks.
    #[must_use]
    pub fn max_ticks(&self) -> u64 {
        self.late_ticks
            .iter()
            .map(|&(late, _)| late)
            .max()
            .unwrap_or(0)
    }

    /// Signals measured.
    #[must_use]
    pub fn signals(&self) -> usize {
        self.late_ticks.len()
    }

    /// One line: p50, p99 and max in microseconds, with the signal counts.
    #[must_use]
    pub fn summary(&self) -> String {
        #[allow(
            clippy::cast_precision_loss,
            reason = "a report figure: lateness is far below 2^52 ticks"
        )]
        let us = |ticks: u64| ticks as f64 / (QPC_FREQUENCY as f64 / 1e6);
        format!(
            "p50 {:.1} us, p99 {:.1} us, max {:.1} us over {} events ({} early, {} packet ends unannounced)",
            us(self.percentile_ticks(50)),
            us(self.percentile_ticks(99)),
            us(self.max_ticks()),
            self.signals(),
            self.early,
            self.missed
        )
    }
}

/// The lateness of each signal in `signal_times` against `clock`: a signal
/// announces the last packet end at or before it.
#[must_use]
pub fn notification_lateness(signal_times: &[u64], clock: &StreamClock) -> Lateness {
    let mut out = Lateness::default();
    let mut last_announced = 0u64;
    for &t in signal_times.iter().filter(|&&t| t >= clock.run_qpc) {
        let k = clock.packets_ended_by(t);
        if k == 0 {
            out.early += 1;
            continue;
        }
        out.late_ticks
            .push((t - clock.packet_end_qpc(k), t - clock.run_qpc));
        out.missed += k.saturating_sub(last_announced).saturating_sub(1);
        last_announced = last_announced.max(k);
    }
    out
}

/// Per position read: (QPC since RUN, reported minus ideal frames). Reads
/// before RUN are left out.
#[must_use]
pub fn position_error(trace: &[PositionSample], clock: &StreamClock) -> Vec<(u64, i64)> {
    let block = u64::from(clock.block_align.max(1));
    trace
        .iter()
        .filter(|s| s.qpc_before >= clock.run_qpc)
        .map(|s| {
            // The read happened somewhere between the two stamps: compare
            // with the ideal at their midpoint.
            let at = s.qpc_before + (s.qpc_after.saturating_sub(s.qpc_before)) / 2;
            let reported = i128::from(s.linear_bytes / block);
            let ideal = i128::from(clock.ideal_frames(at));
            let error = i64::try_from(reported - ideal).unwrap_or(i64::MAX);
            (at - clock.run_qpc, error)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOCK: StreamClock = StreamClock {
        run_qpc: 1_000,
        rate: 48_000,
        block_align: 4,
        packet_frames: 480,
    };

    #[test]
    fn packet_ends_and_ideal_positions_are_exact() {
        // 480 frames at 48 kHz: 10 ms = 100 000 ticks.
        assert_eq!(CLOCK.packet_end_qpc(1), 101_000);
        assert_eq!(CLOCK.packets_ended_by(100_999), 0);
        assert_eq!(CLOCK.packets_ended_by(101_000), 1);
        assert_eq!(CLOCK.ideal_frames(101_000), 480);
        // 44.1 kHz, 441 frames: 10 ms exactly; 440 frames end mid-tick.
        let odd = StreamClock {
            rate: 44_100,
            packet_frames: 440,
            ..CLOCK
        };
        assert_eq!(odd.packet_end_qpc(1), 1_000 + 99_774, "rounded up");
        assert_eq!(odd.packets_ended_by(odd.packet_end_qpc(1)), 1);
    }

    #[test]
    fn signals_on_time_late_early_and_coalesced_are_told_apart() {
        let on_time = [CLOCK.packet_end_qpc(1), CLOCK.packet_end_qpc(2)];
        let l = notification_lateness(&on_time, &CLOCK);
        assert_eq!(
            (l.max_ticks(), l.early, l.missed, l.signals()),
            (0, 0, 0, 2)
        );
        let late = [CLOCK.packet_end_qpc(1) + 9_999, CLOCK.packet_end_qpc(4) + 5];
        let l = notification_lateness(&late, &CLOCK);
        assert_eq!(l.max_ticks(), 9_999);
        assert_eq!(l.percentile_ticks(50), 5);
        assert_eq!(l.missed, 2, "packet ends 2 and 3 had no event of their own");
        let early = [CLOCK.run_qpc + 10];
        assert_eq!(notification_lateness(&early, &CLOCK).early, 1);
        assert!(l.summary().contains("max 999.9 us"), "{}", l.summary());
    }

    #[test]
    fn position_error_is_reported_minus_ideal() {
        let sample = |qpc: u64, frames: u64| PositionSample {
            qpc_before: qpc,
            qpc_after: qpc,
            linear_bytes: frames * 4,
            state: 3,
        };
        let trace = [sample(500, 0), sample(101_000, 480), sample(201_000, 950)];
        assert_eq!(
            position_error(&trace, &CLOCK),
            vec![(100_000, 0), (200_000, -10)],
            "the read before RUN is left out"
        );
    }
}
