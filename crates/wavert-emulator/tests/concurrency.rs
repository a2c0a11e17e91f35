//! The concurrency stress (`wavert_emulator::concurrency`).
#![allow(clippy::unwrap_used, reason = "test code")]

use wavert_emulator::concurrency::{stress_cable, StressConfig};

#[test]
fn the_cable_survives_its_device_and_engine_on_their_own_threads() {
    let report = stress_cable(None, &StressConfig::default()).unwrap();
    for line in report.lines() {
        println!("{line}");
    }
    assert!(report.passed());
}

#[test]
#[ignore = "temporary long run"]
fn long_cable() {
    let config = StressConfig {
        iterations: 400,
        position_reads: 8,
        run_buffers: 1,
        ..StressConfig::default()
    };
    let report = stress_cable(None, &config).unwrap();
    for line in report.lines() {
        println!("{line}");
    }
    assert!(report.passed());
}
