//! The concurrency stress (`wavert_emulator::concurrency`): the device
//! (timer callback; AC'97 ISR and DPC) on its own thread while engine
//! threads open, stream, free and release, on both miniports; and each of
//! its checks failing on a cable that breaks its rule
//! (`wavert_emulator::faulty`).
#![allow(clippy::unwrap_used, reason = "test code")]

use std::time::Duration;

use wavert_emulator::ac97::run_ac97_stress;
use wavert_emulator::concurrency::{stress_cable, StressConfig, StressReport};
use wavert_emulator::faulty::Fault;
use wavert_emulator::personality::PortPersonality;

fn print(report: &StressReport) {
    for line in report.lines() {
        println!("{line}");
    }
}

/// It ran, and did what a stress must do to mean something.
fn assert_exercised(report: &StressReport, lives: u64) {
    assert_eq!(report.iterations, lives, "every stream life ran");
    assert!(report.runs >= lives, "a RUN per life at least");
    assert!(report.position_reads >= 32 * lives);
    assert!(report.notifications > 0);
    assert!(report.device_steps > 0 && report.virtual_ms > 0);
}

#[test]
fn the_cable_survives_its_timer_and_two_engine_threads_under_every_port() {
    for personality in PortPersonality::ALL {
        let config = StressConfig {
            personality,
            ..StressConfig::default()
        };
        let report = stress_cable(None, &config).unwrap();
        print(&report);
        assert!(report.passed(), "{:?}", report.lines());
        assert_exercised(&report, 2 * u64::from(config.iterations));
    }
}

#[test]
fn the_ac97_survives_its_isr_dpc_and_an_engine_thread_under_every_port() {
    for personality in PortPersonality::ALL {
        let config = StressConfig {
            iterations: 24,
            personality,
            ..StressConfig::default()
        };
        let report = run_ac97_stress(&config).unwrap();
        print(&report);
        assert!(report.passed(), "{:?}", report.lines());
        assert_exercised(&report, u64::from(config.iterations));
    }
}

/// A short stress on the cable with `fault`.
fn faulty(fault: Fault) -> StressReport {
    let config = StressConfig {
        iterations: 12,
        toggles: 2,
        wall_limit: Duration::from_secs(20),
        ..StressConfig::default()
    };
    let report = stress_cable(Some(fault), &config).unwrap();
    print(&report);
    report
}

fn assert_reported(report: &StressReport, what: &str) {
    assert!(!report.passed(), "the fault must fail the stress");
    let all: Vec<&String> = report.failures.iter().chain(&report.violations).collect();
    assert!(
        all.iter().any(|line| line.contains(what)),
        "expected \"{what}\" in {all:?}"
    );
}

#[test]
fn the_control_passes_through_the_faulty_decorator() {
    let report = faulty(Fault::None);
    assert!(report.passed(), "{:?}", report.lines());
}

#[test]
fn a_position_that_steps_back_fails_the_stress() {
    let report = faulty(Fault::PositionBackwards { every: 16 });
    assert_reported(&report, "the position went backwards in RUN");
}

#[test]
fn a_signal_after_unregister_fails_the_stress() {
    let report = faulty(Fault::SignalAfterUnregister);
    assert_reported(&report, "after UnregisterNotificationEvent returned");
}

#[test]
fn a_write_through_a_freed_buffer_fails_the_stress() {
    let report = faulty(Fault::TouchAfterFree);
    assert_reported(&report, "accessed after UnmapAllocatedPages");
}

#[test]
fn an_allocation_under_the_spin_lock_fails_the_stress() {
    let report = faulty(Fault::AllocateUnderLock);
    assert_reported(
        &report,
        "code under the driver's spin lock allocated from the heap",
    );
}

#[test]
fn a_leaked_buffer_fails_the_stress() {
    let report = faulty(Fault::LeakBuffer);
    assert!(
        report.leaks.pages > 0 && report.leaks.mdls > 0,
        "{:?}",
        report.leaks
    );
    assert_reported(&report, "MDL(s) and");
}

#[test]
fn events_that_stop_in_run_fail_the_stress() {
    let report = faulty(Fault::NoNotifications);
    assert_reported(&report, "no notification in");
}

#[test]
fn a_call_that_never_returns_fails_the_stress_in_bounded_time() {
    let config = StressConfig {
        iterations: 4,
        wall_limit: Duration::from_secs(3),
        ..StressConfig::default()
    };
    let report = stress_cable(Some(Fault::NeverReturns), &config).unwrap();
    print(&report);
    assert_reported(&report, "did not finish within 3 s");
    assert!(report.wall_seconds < 10.0);
}
