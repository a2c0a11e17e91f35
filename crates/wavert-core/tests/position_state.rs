//! Positions from QPC, notifications and the KSSTATE machine.

use proptest::prelude::*;
use wavert_core::notify::{Due, NotificationSchedule, NotifyError};
use wavert_core::position::{ClockReading, LinearFromCyclic, PositionError, QpcClock};
use wavert_core::state::{transition, KsState, StateError, TimedStream, Transition};

const QPC_HZ: u64 = 10_000_000;

fn closed_form(ticks: u64, rate: u32) -> u64 {
    u64::try_from(u128::from(ticks) * u128::from(rate) / u128::from(QPC_HZ)).expect("fits")
}

/// 24 hours of irregular small steps: the incremental count equals the
/// closed form exactly, all along and at the end.
fn no_drift_over_a_day(rate: u32) {
    let mut clock = QpcClock::new(QPC_HZ, rate, 4, 4 * rate, 2 * rate).expect("valid");
    let start = 123_456_789u64;
    clock.run(start);
    let day = 24 * 3600 * QPC_HZ;
    let mut t = 0u64;
    let mut i = 0u64;
    while t < day {
        // 1 ms .. ~13 ms, never a multiple-friendly pattern.
        t = (t + 10_000 + (i * 7_919) % 120_001).min(day);
        clock.update(start + t);
        if i % 4096 == 0 {
            assert_eq!(clock.frames(), closed_form(t, rate));
        }
        i += 1;
    }
    assert!(i > 10_000_000, "many small steps ({i})");
    assert_eq!(clock.frames(), closed_form(day, rate));
    assert_eq!(clock.frames(), u64::from(rate) * 24 * 3600);
}

#[test]
fn no_drift_over_24h_at_44100() {
    no_drift_over_a_day(44_100);
}

#[test]
fn no_drift_over_24h_at_192000() {
    no_drift_over_a_day(192_000);
}

proptest! {
    #[test]
    fn incremental_equals_closed_form(rate in 1u32..=384_000, steps in proptest::collection::vec(0u64..50_000_000, 1..200)) {
        let mut clock = QpcClock::new(QPC_HZ, rate, 8, 8000, 4000).expect("valid");
        clock.run(5);
        let mut t = 5u64;
        let mut last = 0;
        for s in steps {
            t += s;
            clock.update(t);
            prop_assert!(clock.frames() >= last, "monotonic");
            last = clock.frames();
            prop_assert_eq!(clock.frames(), closed_form(t - 5, rate));
            prop_assert_eq!(clock.linear_bytes(), clock.frames() * 8);
            prop_assert_eq!(u64::from(clock.cyclic_offset()), clock.linear_bytes() % 8000);
            prop_assert_eq!(clock.packet_count(), clock.linear_bytes() / 4000);
            // The timer target for the next frame is exact: one tick earlier is short.
            let target = clock.frames() + 1;
            let at = clock.qpc_when_frames_reach(target).expect("reachable");
            prop_assert!(closed_form(at - 5, rate) >= target);
            prop_assert!(closed_form(at - 6, rate) < target);
        }
    }
}

proptest! {
    /// Both paths of the per-step division (u64 for a service's step, u128
    /// past it) give the exact quotient and remainder.
    #[test]
    fn frames_for_ticks_is_exact_at_any_step(
        delta in prop_oneof![0u64..100_000_000, any::<u64>()],
        rate in 1u32..=384_000,
        frequency in 1u64..=100_000_000,
        remainder_seed in any::<u64>(),
    ) {
        let remainder = remainder_seed % frequency;
        let total = u128::from(delta) * u128::from(rate) + u128::from(remainder);
        let expected = (
            u64::try_from(total / u128::from(frequency)).unwrap_or(u64::MAX),
            u64::try_from(total % u128::from(frequency)).expect("below the frequency"),
        );
        prop_assert_eq!(QpcClock::frames_for_ticks(delta, rate, frequency, remainder), expected);
    }
}

/// `qpc_of_frame` as its documentation states it, in u128 throughout.
fn qpc_of_frame_reference(reading: &ClockReading, frame: u64) -> Option<u64> {
    let rate = u128::from(reading.sample_rate);
    let freq = u128::from(reading.qpc_frequency);
    let qpc = u128::from(reading.qpc);
    let at = if frame <= reading.frames {
        let back = u128::from(reading.frames - frame) * freq + u128::from(reading.remainder);
        qpc.checked_sub(back / rate)?
    } else {
        let ahead = (u128::from(frame - reading.frames) * freq)
            .checked_sub(u128::from(reading.remainder))?;
        qpc + ahead.div_ceil(rate)
    };
    u64::try_from(at).ok()
}

proptest! {
    /// Near the reading (the timer's case, u64 arithmetic) and far from it
    /// (u128), the instant of a frame is the same exact answer.
    #[test]
    fn qpc_of_frame_is_exact_near_and_far(
        frames in prop_oneof![0u64..1_000_000, any::<u64>()],
        frame in prop_oneof![0u64..1_000_000, any::<u64>()],
        qpc in prop_oneof![0u64..1_000_000_000, any::<u64>()],
        rate in 1u32..=384_000,
        frequency in 1u64..=100_000_000,
        remainder_seed in any::<u64>(),
    ) {
        let reading = ClockReading {
            frames,
            qpc,
            remainder: remainder_seed % frequency,
            sample_rate: rate,
            qpc_frequency: frequency,
        };
        prop_assert_eq!(reading.qpc_of_frame(frame), qpc_of_frame_reference(&reading, frame));
    }
}

proptest! {
    /// The sampling instant of any frame, past or future, read back from
    /// the clock's state: the first QPC whose closed-form count reaches it.
    #[test]
    fn every_frames_instant_is_the_first_tick_that_counts_it(
        rate in 1u32..=384_000,
        start in 0u64..1_000_000_000,
        elapsed in 0u64..100_000_000,
        back in 0u64..100_000,
        ahead in 1u64..100_000,
    ) {
        let mut clock = QpcClock::new(QPC_HZ, rate, 4, 4000, 2000).expect("valid");
        clock.run(start);
        clock.update(start + elapsed);
        let reading = clock.reading();
        prop_assert_eq!(reading.qpc, start + elapsed);
        prop_assert_eq!(reading.frames, clock.frames());
        let frames = reading.frames;
        for frame in [frames.saturating_sub(back), frames, frames + ahead] {
            let at = reading.qpc_of_frame(frame).expect("in range");
            prop_assert!(at >= start, "not before RUN");
            prop_assert!(closed_form(at - start, rate) >= frame, "counted at {}", at);
            if at > start {
                prop_assert!(closed_form(at - start - 1, rate) < frame, "one tick earlier is short");
            } else {
                prop_assert_eq!(frame, 0);
            }
        }
    }
}

#[test]
fn a_reading_without_a_rate_or_before_time_began_has_no_instant() {
    use wavert_core::position::ClockReading;
    let reading = ClockReading {
        frames: 48_000,
        qpc: 5,
        remainder: 0,
        sample_rate: 48_000,
        qpc_frequency: QPC_HZ,
    };
    assert_eq!(reading.qpc_of_frame(0), None, "a second before QPC 5");
    assert_eq!(reading.qpc_of_frame(48_000), Some(5));
    let stopped = ClockReading {
        sample_rate: 0,
        ..reading
    };
    assert_eq!(stopped.qpc_of_frame(48_000), None);
}

#[test]
fn earlier_qpc_does_not_move_position() {
    let mut c = QpcClock::new(QPC_HZ, 48_000, 4, 19_200, 9_600).expect("valid");
    c.run(1_000_000);
    c.update(2_000_000);
    let p = c.frames();
    c.update(1_500_000);
    assert_eq!(c.frames(), p);
    assert_eq!(c.presentation().qpc, 2_000_000);
}

#[test]
fn clock_rejections() {
    assert_eq!(
        QpcClock::new(0, 1, 1, 1, 1),
        Err(PositionError::ZeroQpcFrequency)
    );
    assert_eq!(
        QpcClock::new(1, 0, 1, 1, 1),
        Err(PositionError::ZeroSampleRate)
    );
    assert_eq!(
        QpcClock::new(1, 1, 0, 1, 1),
        Err(PositionError::ZeroBlockAlign)
    );
    assert_eq!(
        QpcClock::new(1, 1, 1, 0, 1),
        Err(PositionError::ZeroBufferSize)
    );
    assert_eq!(
        QpcClock::new(1, 1, 1, 10, 3),
        Err(PositionError::BadPacketSize)
    );
    assert_eq!(LinearFromCyclic::new(0), Err(PositionError::ZeroBufferSize));
}

#[test]
fn linear_from_cyclic_unwraps() {
    let mut l = LinearFromCyclic::new(1000).expect("valid");
    assert_eq!(l.update(900), 900);
    assert_eq!(l.update(100), 1100);
    assert_eq!(l.update(100), 1100);
    l.reset();
    assert_eq!(l.linear(), 0);
}

#[test]
fn late_timer_reports_each_missed_notification_once() {
    let mut n = NotificationSchedule::new(9600, 2).expect("valid");
    assert_eq!(n.poll(4799), Due { first: 0, count: 0 });
    assert_eq!(n.poll(4800), Due { first: 0, count: 1 });
    assert_eq!(n.poll(4801), Due { first: 1, count: 0 });
    // Timer 3.5 packets late.
    assert_eq!(n.poll(4800 * 5 + 10), Due { first: 1, count: 4 });
    assert_eq!(n.next_due_bytes(), 4800 * 6);
    assert_eq!(
        n.poll(100),
        Due { first: 5, count: 0 },
        "backwards: nothing"
    );
    n.reset();
    assert_eq!(n.poll(4800), Due { first: 0, count: 1 });
    assert_eq!(
        NotificationSchedule::new(100, 3),
        Err(NotifyError::InvalidCount(3))
    );
    assert_eq!(
        NotificationSchedule::new(0, 1),
        Err(NotifyError::ZeroBuffer)
    );
    assert_eq!(
        NotificationSchedule::new(99, 2),
        Err(NotifyError::NotDivisible {
            buffer_bytes: 99,
            count: 2
        })
    );
}

proptest! {
    #[test]
    fn every_packet_end_reported_exactly_once(count in 1u32..=2, packets in 1u32..100, polls in proptest::collection::vec(0u64..100_000, 0..100)) {
        let size = packets * 2 * 48;
        let mut n = NotificationSchedule::new(size, count).expect("valid");
        let mut position = 0u64;
        let mut next_expected = 0u64;
        for step in polls {
            position += step;
            let due = n.poll(position);
            prop_assert_eq!(due.first, next_expected, "no gap, no repeat");
            next_expected += due.count;
            prop_assert_eq!(next_expected, position / u64::from(size / count));
        }
    }
}

#[test]
fn only_stepwise_transitions_are_allowed() {
    use KsState::{Acquire, Pause, Run, Stop};
    let all = [Stop, Acquire, Pause, Run];
    for from in all {
        for to in all {
            let distance = (from as i32 - to as i32).abs();
            let r = transition(from, to);
            match distance {
                0 => assert_eq!(r, Ok(Transition::None)),
                1 => assert!(r.is_ok() && r != Ok(Transition::None)),
                _ => assert_eq!(r, Err(StateError::NotStepwise { from, to })),
            }
        }
    }
    assert_eq!(KsState::from_raw(4), Err(StateError::UnknownState(4)));
    assert_eq!(
        KsState::from_raw(u32::MAX),
        Err(StateError::UnknownState(u32::MAX))
    );
}

fn stream() -> TimedStream {
    // 48 kHz stereo 16-bit, 10 ms buffer, two packets.
    let clock = QpcClock::new(QPC_HZ, 48_000, 4, 1920, 960).expect("valid");
    TimedStream::new(clock, NotificationSchedule::new(1920, 2).expect("valid"))
}

#[test]
fn run_moves_pause_freezes_stop_resets() {
    let mut s = stream();
    assert_eq!(
        s.set_state(3, 0),
        Err(StateError::NotStepwise {
            from: KsState::Stop,
            to: KsState::Run
        })
    );
    assert_eq!(s.set_state(7, 0), Err(StateError::UnknownState(7)));
    assert_eq!(s.state(), KsState::Stop);
    s.set_state(1, 0).unwrap();
    s.set_state(2, 0).unwrap();
    assert_eq!(
        s.position(50_000_000).linear_bytes,
        0,
        "PAUSE before RUN: no motion"
    );
    assert_eq!(s.set_state(3, 10_000_000), Ok(Transition::Run));
    let p = s.position(10_000_000 + QPC_HZ / 100); // 10 ms
    assert_eq!(p.linear_bytes, 1920);
    assert_eq!(p.presentation.frames, 480);
    assert_eq!(p.packet_count, 2);
    assert_eq!(p.cyclic_offset, 0);
    assert_eq!(s.poll_notifications(10_000_000 + QPC_HZ / 100).count, 2);
    assert_eq!(
        s.cyclic_offset_at(10_000_000 + QPC_HZ / 100 + QPC_HZ / 400),
        480,
        "12.5 ms: 2.5 ms into the second 10 ms buffer cycle"
    );
    assert_eq!(
        s.linear_bytes_at(10_000_000 + QPC_HZ / 50),
        3840,
        "the engine's figure advances the same clock: 20 ms"
    );
    assert_eq!(s.position(10_000_000 + QPC_HZ / 50).linear_bytes, 3840);

    s.set_state(2, 10_000_000 + QPC_HZ / 50).unwrap(); // pause at 20 ms
    let frozen = s.position(99_000_000);
    assert_eq!(frozen.presentation.frames, 960);
    assert_eq!(s.position(199_000_000), frozen, "PAUSE freezes");
    s.set_state(3, 200_000_000).unwrap();
    assert_eq!(
        s.position(200_000_000 + QPC_HZ / 100).presentation.frames,
        1440,
        "resumes from where it paused"
    );
    s.set_state(2, 300_000_000).unwrap();
    s.set_state(1, 300_000_000).unwrap();
    s.set_state(0, 300_000_000).unwrap();
    let p = s.position(400_000_000);
    assert_eq!(
        (p.linear_bytes, p.packet_count, p.presentation.frames),
        (0, 0, 0),
        "STOP resets"
    );
    assert_eq!(s.set_state(0, 1), Ok(Transition::None));
}

proptest! {
    /// Any request sequence: errors leave the state unchanged, accepted ones
    /// move one step; position is monotonic except across STOP, where it is 0.
    #[test]
    fn random_requests_never_crash(reqs in proptest::collection::vec((0u32..6, 0u64..1_000_000), 0..100)) {
        let mut s = stream();
        let mut t = 0u64;
        let mut last = 0u64;
        for (raw, dt) in reqs {
            t += dt;
            let before = s.state();
            if s.set_state(raw, t).is_ok() {
                prop_assert_eq!(s.state() as u32, raw);
            } else {
                prop_assert_eq!(s.state(), before);
            }
            let p = s.position(t).linear_bytes;
            if s.state() == KsState::Stop { prop_assert_eq!(p, 0); }
            else { prop_assert!(p >= last); }
            last = p;
        }
    }
}

proptest! {
    /// The lead of one clock over another is the exact difference of their
    /// positions, rounded up, whichever started first.
    #[test]
    fn lead_is_the_exact_difference_rounded_up(
        rate in 8_000u32..=192_000,
        first in 0u64..1_000_000,
        second in 0u64..1_000_000,
        later in 0u64..100_000_000,
    ) {
        let mut a = QpcClock::new(QPC_HZ, rate, 4, 4 * rate, 2 * rate).expect("valid");
        let mut b = a;
        a.run(first);
        b.run(second);
        let now = first.max(second) + later;
        a.update(now);
        b.update(now);
        // Exact: (now - first) * rate / f - (now - second) * rate / f.
        let num = (i128::from(second) - i128::from(first)) * i128::from(rate);
        let f = i128::from(QPC_HZ);
        let ceil = num.div_euclid(f) + i128::from(num.rem_euclid(f) != 0);
        prop_assert_eq!(a.lead_frames(&b).map(i128::from), Some(ceil));
        // Frame n of `a` maps to frame n - lead of `b`, which `b` has.
        let lead = a.lead_frames(&b).expect("comparable");
        prop_assert!(i128::from(a.frames()) - i128::from(lead) <= i128::from(b.frames()));
    }
}

#[test]
fn clocks_not_updated_together_have_no_lead() {
    let mut a = QpcClock::new(QPC_HZ, 48_000, 4, 19_200, 9_600).expect("valid");
    let mut b = a;
    a.run(0);
    b.run(0);
    a.update(1_000);
    b.update(2_000);
    assert_eq!(a.lead_frames(&b), None, "not at the same QPC");
    b.pause(2_000);
    a.update(2_000);
    assert_eq!(a.lead_frames(&b), None, "one is paused");
}
