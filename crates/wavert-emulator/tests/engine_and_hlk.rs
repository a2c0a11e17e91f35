//! The audio engine against the reference cable, and the HLK rules.
#![allow(clippy::unwrap_used, reason = "test code")]

use std::sync::Arc;

use portcls_sys::{KSSTATE_PAUSE, KSSTATE_RUN};
use wavert_emulator::engine::{
    negotiate_format, streaming_pin, FormatRequest, PositionSample, Stream,
};
use wavert_emulator::fake::{start_fake_adapter, FakeAdapter, FakeOptions};
use wavert_emulator::hlk;
use wavert_emulator::machine::{ClockMode, Machine, QPC_PER_MS};
use wavert_emulator::memory::{Fault, MemoryConfig, PhysicalMemory};
use wavert_emulator::session::{run_loopback, LoopbackConfig, LoopbackResult, WaveFilter};
use wavert_emulator::signal;

fn setup(options: FakeOptions) -> (Arc<Machine>, FakeAdapter) {
    let memory = PhysicalMemory::anonymous(MemoryConfig {
        size_bytes: 16 << 20,
        ..MemoryConfig::default()
    })
    .unwrap();
    let machine = Machine::new(memory, ClockMode::Virtual);
    let adapter = start_fake_adapter(&machine, options).unwrap();
    (machine, adapter)
}

fn loopback(
    options: FakeOptions,
    config: &LoopbackConfig,
    seconds: f64,
) -> (Arc<Machine>, Result<LoopbackResult, String>, Vec<u8>) {
    let (machine, adapter) = setup(options);
    let wave = adapter.wave.wave_miniport().unwrap();
    let filter = WaveFilter {
        miniport: &wave,
        description: adapter.wave.description().unwrap(),
    };
    let mut rendered = Vec::new();
    let result = run_loopback(
        &machine,
        filter,
        filter,
        config,
        &mut |f| {
            rendered = signal::test_signal(f, seconds);
            rendered.clone()
        },
        &mut |_| {},
    );
    drop(wave);
    adapter.remove();
    (machine, result.map_err(|e| e.to_string()), rendered)
}

fn assert_clean(machine: &Machine) {
    assert_eq!(machine.memory.pages_in_use(), 0, "pages leaked");
    assert_eq!(machine.live_objects(), 0, "port objects leaked");
    assert!(
        machine.violations().is_empty(),
        "{:?}",
        machine.violations()
    );
}

#[test]
fn registration_records_subdevices_and_connections() {
    let (machine, adapter) = setup(FakeOptions::default());
    let r = machine.registrations();
    assert_eq!(
        r.subdevices
            .iter()
            .map(|s| s.0.as_str())
            .collect::<Vec<_>>(),
        ["Wave", "Topology"]
    );
    assert_eq!(r.connections.len(), 2);
    assert_eq!(
        (r.connections[0].from.as_str(), r.connections[0].to.as_str()),
        ("Wave", "Topology")
    );
    adapter.remove();
    assert_clean(&machine);
}

#[test]
fn render_and_capture_are_bit_exact_with_one_and_two_notifications() {
    for count in [1, 2] {
        for request in [
            FormatRequest::default(),
            FormatRequest {
                rate: 96_000,
                bits: 24,
                channels: 6,
                float: false,
            },
            FormatRequest {
                rate: 44_100,
                bits: 32,
                channels: 2,
                float: true,
            },
        ] {
            let config = LoopbackConfig {
                format: request,
                period_ms: 20,
                notification_count: count,
                ..LoopbackConfig::default()
            };
            let (machine, result, rendered) = loopback(FakeOptions::default(), &config, 0.5);
            let result = result.unwrap();
            let block = result.format.block_align() as usize;
            let lag = signal::find_alignment(&rendered, &result.captured, block, 10_000)
                .expect("signal not found in capture");
            assert_eq!(
                signal::mismatched_frames(&rendered, &result.captured, block, lag).0,
                0,
                "{request:?} x{count}"
            );
            assert_eq!(
                signal::counter_at(&result.format, &result.captured, lag),
                Some(1)
            );
            assert_eq!((result.render.glitches, result.capture.glitches), (0, 0));
            assert!(
                result.render.notifications > 0
                    && result.render.packets == result.render.notifications
            );
            assert_eq!(
                result.render.packet_mismatches + result.capture.packet_mismatches,
                0
            );
            assert!(
                result.render_buffer > 4096,
                "the test wants multi-page buffers"
            );
            assert_clean(&machine);
        }
    }
}

#[test]
fn a_page_order_bug_shows_up_as_wrong_audio() {
    let config = LoopbackConfig {
        period_ms: 50,
        ..LoopbackConfig::default()
    };
    let (_, result, rendered) = loopback(
        FakeOptions {
            reverse_pages: true,
            ..FakeOptions::default()
        },
        &config,
        0.5,
    );
    let result = result.unwrap();
    let block = result.format.block_align() as usize;
    let exact =
        signal::find_alignment(&rendered, &result.captured, block, 10_000).is_some_and(|lag| {
            signal::mismatched_frames(&rendered, &result.captured, block, lag).0 == 0
        });
    assert!(!exact, "reversed pages must corrupt the loopback");
}

#[test]
fn a_device_without_notifications_stalls_the_session_with_an_error() {
    let (_, result, _) = loopback(
        FakeOptions {
            no_notifications: true,
            ..FakeOptions::default()
        },
        &LoopbackConfig::default(),
        0.2,
    );
    assert!(result.unwrap_err().contains("stalled"));
}

/// Opens the render pin, allocates with notification and closes; returns the granted size.
fn open_allocate_close(
    machine: &Arc<Machine>,
    adapter: &FakeAdapter,
    requested: u32,
) -> Result<u32, String> {
    let wave = adapter.wave.wave_miniport().unwrap();
    let desc = adapter.wave.description().unwrap();
    let pin = streaming_pin(desc, false).unwrap();
    let (_, bytes) =
        negotiate_format(&wave, desc, pin, &FormatRequest::default()).map_err(|e| e.to_string())?;
    let mut stream = Stream::open(machine, &wave, pin, false, &bytes).map_err(|e| e.to_string())?;
    let granted = stream.allocate(requested, Some(2));
    stream.close().map_err(|e| e.to_string())?;
    granted.map_err(|e| e.to_string())
}

#[test]
fn a_failure_at_every_allocation_point_leaks_nothing() {
    let (machine, adapter) = setup(FakeOptions::default());
    open_allocate_close(&machine, &adapter, 64 * 1024).unwrap();
    let points = machine.memory.allocation_calls().len();
    assert!(points >= 2, "expected page allocation and mapping calls");
    adapter.remove();
    for call in 0..points as u64 {
        let (machine, adapter) = setup(FakeOptions::default());
        machine.memory.inject(call, Fault::Fail);
        assert!(
            open_allocate_close(&machine, &adapter, 64 * 1024).is_err(),
            "call {call} failed silently"
        );
        adapter.remove();
        assert_clean(&machine);
    }
}

#[test]
fn a_partial_page_allocation_settles_for_a_smaller_buffer() {
    let (machine, adapter) = setup(FakeOptions::default());
    machine.memory.inject(0, Fault::Partial { pages: 3 });
    let granted = open_allocate_close(&machine, &adapter, 64 * 1024).unwrap();
    assert!(
        granted <= 3 * 4096 && granted > 2 * 4096 && granted % 8 == 0,
        "granted {granted}"
    );
    adapter.remove();
    assert_clean(&machine);
}

#[test]
fn a_stream_that_keeps_its_pages_is_reported() {
    let (machine, adapter) = setup(FakeOptions {
        leak_buffer: true,
        ..FakeOptions::default()
    });
    let err = open_allocate_close(&machine, &adapter, 16 * 1024).unwrap_err();
    assert!(err.contains("still held"), "{err}");
    assert!(machine.memory.pages_in_use() > 0);
}

const fn sample(ms: u64, frames: u64, state: i32) -> PositionSample {
    PositionSample {
        qpc_before: ms * QPC_PER_MS,
        qpc_after: ms * QPC_PER_MS,
        linear_bytes: frames * 4,
        state,
    }
}

fn ideal_trace(rate_hz: f64, jitter: impl Fn(u64) -> f64) -> Vec<PositionSample> {
    (0..100u64)
        .map(|i| {
            let ms = 10 + i * 10;
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "test trace"
            )]
            let frames = ((ms as f64 / 1000.0 + jitter(i) / 1000.0) * rate_hz).max(0.0) as u64;
            sample(ms, frames, KSSTATE_RUN)
        })
        .collect()
}

#[test]
fn ks_position_rules_pass_on_a_good_trace_and_fail_each_on_a_bad_one() {
    let good = hlk::ks_position_check(&ideal_trace(48_000.0, |_| 0.0), 0, 48_000, 4, Some(10.0));
    assert!(good.passed() && good.warnings.is_empty(), "{good:?}");

    let fast = hlk::ks_position_check(&ideal_trace(48_000.0 * 1.02, |_| 0.0), 0, 48_000, 4, None);
    assert!(
        fast.failures.iter().any(|f| f.contains("measured rate")),
        "{fast:?}"
    );

    let noisy = hlk::ks_position_check(
        &ideal_trace(48_000.0, |i| if i % 2 == 0 { 1.5 } else { -1.5 }),
        0,
        48_000,
        4,
        None,
    );
    assert!(
        noisy.failures.iter().any(|f| f.contains("std-dev")),
        "{noisy:?}"
    );

    let spike = hlk::ks_position_check(
        &ideal_trace(48_000.0, |i| if i == 50 { 6.0 } else { 0.0 }),
        0,
        48_000,
        4,
        None,
    );
    assert!(
        spike.failures.iter().any(|f| f.contains("jitter max")),
        "{spike:?}"
    );

    // The same trace, but RUN was entered 1.5 s before the position moved.
    let late: Vec<_> = ideal_trace(48_000.0, |_| 0.0)
        .into_iter()
        .map(|mut s| {
            s.qpc_before += 1500 * QPC_PER_MS;
            s.qpc_after += 1500 * QPC_PER_MS;
            s
        })
        .collect();
    let late = hlk::ks_position_check(&late, 0, 48_000, 4, None);
    assert!(
        late.failures.iter().any(|f| f.contains("first non-zero")),
        "{late:?}"
    );

    let mut slow = ideal_trace(48_000.0, |_| 0.0);
    slow[30].qpc_after += 2 * QPC_PER_MS;
    slow[30].linear_bytes += 48_000;
    let slow = hlk::ks_position_check(&slow, 0, 48_000, 4, None);
    assert_eq!(slow.discarded, 1);
    assert!(
        slow.passed(),
        "a slow read must be discarded, not judged: {slow:?}"
    );

    let latency = hlk::ks_position_check(&ideal_trace(48_000.0, |_| 0.0), 0, 48_000, 4, Some(25.0));
    assert!(latency.passed() && !latency.warnings.is_empty());
}

#[test]
fn wavetest_rules_fail_on_bad_traces() {
    let stall: Vec<_> = (0..=10)
        .map(|i| sample(i * 10, if i < 9 { 480 } else { 4800 }, KSSTATE_RUN))
        .collect();
    assert!(hlk::position_moves_in_run(&stall).is_err());
    let moving: Vec<_> = (0..10)
        .map(|i| sample(i * 10, i * 480, KSSTATE_RUN))
        .collect();
    assert!(hlk::position_moves_in_run(&moving).is_ok());
    let creeping: Vec<_> = (0..5)
        .map(|i| sample(i * 10, 100 + i, KSSTATE_PAUSE))
        .collect();
    assert!(hlk::position_frozen_in_pause(&creeping).is_err());
    let frozen: Vec<_> = (0..5).map(|i| sample(i * 10, 100, KSSTATE_PAUSE)).collect();
    assert!(hlk::position_frozen_in_pause(&frozen).is_ok());
    assert!(hlk::position_zero_after_stop(4).is_err());
    assert!(hlk::position_zero_after_stop(0).is_ok());
}

#[test]
fn the_reference_cable_passes_the_wavetest_and_ks_position_runs() {
    let (machine, adapter) = setup(FakeOptions::default());
    let wave = adapter.wave.wave_miniport().unwrap();
    let desc = adapter.wave.description().unwrap();
    for capture in [false, true] {
        let pin = streaming_pin(desc, capture).unwrap();
        let findings = hlk::run_wavetest_formats(&machine, &wave, desc, pin, capture).unwrap();
        assert!(
            findings.len() > 50,
            "format sweep too small: {}",
            findings.len()
        );
        let failed: Vec<_> = findings.iter().filter(|f| f.outcome.is_err()).collect();
        assert!(failed.is_empty(), "{failed:?}");
        let (_, bytes) = negotiate_format(&wave, desc, pin, &FormatRequest::default()).unwrap();
        let positions =
            hlk::run_wavetest_positions(&machine, &wave, pin, capture, &bytes, 3840).unwrap();
        assert!(positions.iter().all(|f| f.outcome.is_ok()), "{positions:?}");
        let ks = hlk::run_ks_position_test(&machine, &wave, pin, capture, &bytes).unwrap();
        assert!(ks.passed() && ks.used >= 90, "{ks:?}");
    }
    drop(wave);
    adapter.remove();
    assert_clean(&machine);
}

#[test]
fn a_stream_that_runs_in_pause_fails_the_wavetest() {
    let (machine, adapter) = setup(FakeOptions {
        run_in_pause: true,
        ..FakeOptions::default()
    });
    let wave = adapter.wave.wave_miniport().unwrap();
    let desc = adapter.wave.description().unwrap();
    let (_, bytes) = negotiate_format(&wave, desc, 0, &FormatRequest::default()).unwrap();
    let findings = hlk::run_wavetest_positions(&machine, &wave, 0, false, &bytes, 3840).unwrap();
    let pause = findings.iter().find(|f| f.rule.contains("PAUSE")).unwrap();
    assert!(pause.outcome.is_err());
}
