//! The emulator's own checks: each fails on a device that breaks its rule
//! (the product's cable behind `faulty::FaultyCable`), and the HLK rules on
//! synthetic traces. The checks passing on the good device are
//! `tests/tests/emulated_cable.rs` (the product's cable) and the QEMU tests.
#![allow(clippy::unwrap_used, reason = "test code")]

use std::sync::Arc;

use portcls_sys::{KSSTATE_PAUSE, KSSTATE_RUN};
use wavert_emulator::cable::CableAdapter;
use wavert_emulator::engine::{
    negotiate_format, streaming_pin, FormatRequest, PositionSample, Stream,
};
use wavert_emulator::faulty::{start_faulty_cable, Fault};
use wavert_emulator::hlk;
use wavert_emulator::hlk::methods::{self, HlkConfig, HlkMethod, HostPin, Loopback, MethodReport};
use wavert_emulator::machine::{ClockMode, Machine, QPC_PER_MS};
use wavert_emulator::memory::{MemoryConfig, PhysicalMemory};
use wavert_emulator::session::{LoopbackConfig, LoopbackResult};
use wavert_emulator::signal;

fn machine() -> Arc<Machine> {
    let memory = PhysicalMemory::anonymous(MemoryConfig {
        size_bytes: 16 << 20,
        ..MemoryConfig::default()
    })
    .unwrap();
    Machine::new(memory, ClockMode::Virtual)
}

fn setup(fault: Fault) -> (Arc<Machine>, CableAdapter) {
    let machine = machine();
    let adapter = start_faulty_cable(&machine, fault).unwrap();
    (machine, adapter)
}

fn loopback(
    fault: Fault,
    config: &LoopbackConfig,
    seconds: f64,
) -> (Arc<Machine>, Result<LoopbackResult, String>, Vec<u8>) {
    let (machine, adapter) = setup(fault);
    let (result, rendered) = adapter.loopback_test_signal(config, seconds);
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
fn a_page_order_bug_shows_up_as_wrong_audio() {
    let config = LoopbackConfig {
        period_ms: 50,
        ..LoopbackConfig::default()
    };
    let bit_exact = |fault| {
        let (machine, result, rendered) = loopback(fault, &config, 0.5);
        let result = result.unwrap();
        assert!(
            result.capture_buffer > 4096,
            "the test wants multi-page buffers"
        );
        let block = result.format.block_align() as usize;
        let exact =
            signal::find_alignment(&rendered, &result.captured, block, 10_000).is_some_and(|lag| {
                signal::mismatched_frames(&rendered, &result.captured, block, lag).0 == 0
            });
        (machine, exact)
    };
    let (machine, control) = bit_exact(Fault::None);
    assert!(control, "the control must be bit-exact");
    assert_clean(&machine);
    let (_, exact) = bit_exact(Fault::ReversedCaptureDescriptors);
    assert!(!exact, "a page-order bug must corrupt the loopback");
}

#[test]
fn a_device_without_notifications_stalls_the_session_with_an_error() {
    let (machine, control, _) = loopback(Fault::None, &LoopbackConfig::default(), 0.2);
    assert!(control.is_ok(), "{control:?}");
    assert_clean(&machine);
    let (_, result, _) = loopback(Fault::NoNotifications, &LoopbackConfig::default(), 0.2);
    assert!(result.unwrap_err().contains("stalled"));
}

/// Opens the render pin, allocates with notification and closes; returns the granted size.
fn open_allocate_close(
    machine: &Arc<Machine>,
    adapter: &CableAdapter,
    requested: u32,
) -> Result<u32, String> {
    let filter = adapter.wave_filter("WaveRender").unwrap();
    let (wave, desc) = (&filter.miniport, filter.description);
    let pin = streaming_pin(desc, false).unwrap();
    let (_, bytes) =
        negotiate_format(wave, desc, pin, &FormatRequest::default()).map_err(|e| e.to_string())?;
    let mut stream = Stream::open(machine, wave, pin, false, &bytes).map_err(|e| e.to_string())?;
    let granted = stream.allocate(requested, Some(2));
    stream.close().map_err(|e| e.to_string())?;
    granted.map_err(|e| e.to_string())
}

#[test]
fn a_stream_that_keeps_its_pages_is_reported() {
    let (machine, adapter) = setup(Fault::None);
    open_allocate_close(&machine, &adapter, 16 * 1024).unwrap();
    adapter.remove();
    assert_clean(&machine);
    let (machine, adapter) = setup(Fault::LeakBuffer);
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
    let good = hlk::ks_position_check(&ideal_trace(48_000.0, |_| 0.0), 0, 48_000, 4);
    assert!(good.passed(), "{good:?}");

    let fast = hlk::ks_position_check(&ideal_trace(48_000.0 * 1.02, |_| 0.0), 0, 48_000, 4);
    assert!(
        fast.failures.iter().any(|f| f.contains("measured rate")),
        "{fast:?}"
    );

    let noisy = hlk::ks_position_check(
        &ideal_trace(48_000.0, |i| if i % 2 == 0 { 1.5 } else { -1.5 }),
        0,
        48_000,
        4,
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
    let late = hlk::ks_position_check(&late, 0, 48_000, 4);
    assert!(
        late.failures.iter().any(|f| f.contains("first non-zero")),
        "{late:?}"
    );

    let mut slow = ideal_trace(48_000.0, |_| 0.0);
    slow[30].qpc_after += 2 * QPC_PER_MS;
    slow[30].linear_bytes += 48_000;
    let slow = hlk::ks_position_check(&slow, 0, 48_000, 4);
    assert_eq!(slow.discarded, 1);
    assert!(
        slow.passed(),
        "a slow read must be discarded, not judged: {slow:?}"
    );

    // Fewer than 30 usable reads.
    let short: Vec<_> = ideal_trace(48_000.0, |_| 0.0)
        .into_iter()
        .take(20)
        .collect();
    let short = hlk::ks_position_check(&short, 0, 48_000, 4);
    assert!(
        short
            .failures
            .iter()
            .any(|f| f.starts_with("enough samples")),
        "{short:?}"
    );
    // Every position 3 ms late: the offset absorbs it, nothing fails.
    let offset = hlk::ks_position_check(&ideal_trace(48_000.0, |_| -3.0), 0, 48_000, 4);
    assert!(offset.passed(), "{offset:?}");
}

#[test]
fn latency_rules_fail_each_on_a_bad_start() {
    let at = |ms: u64, frames: u64| sample(ms, frames, KSSTATE_RUN);
    // Moves 1 ms after RUN with 1 ms of audio: no latency.
    let good = hlk::latency_check(Some(&at(1, 48)), 0, 0, 192_000);
    assert!(good.failures.is_empty(), "{good:?}");
    // First non-zero at 31 ms, showing 1 ms: 30 ms late.
    let late = hlk::latency_check(Some(&at(31, 48)), 0, 0, 192_000);
    assert!(
        late.failures.iter().any(|f| f.starts_with("start latency")),
        "{late:?}"
    );
    // 50 ms of audio after 10 ms in RUN.
    let ahead = hlk::latency_check(Some(&at(10, 2400)), 0, 0, 192_000);
    assert!(
        ahead
            .failures
            .iter()
            .any(|f| f.starts_with("position not ahead of time")),
        "{ahead:?}"
    );
    let never = hlk::latency_check(None, 0, 0, 192_000);
    assert!(never.failures[0].starts_with("position leaves 0"));
}

#[test]
fn wavetest_rules_fail_on_bad_traces() {
    // Reads 50 ms apart that do not differ: a stall of exactly 50 ms.
    let pair = [sample(0, 480, KSSTATE_RUN), sample(50, 480, KSSTATE_RUN)];
    assert!(hlk::position_moves_in_run(&pair).is_err());
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
fn a_stream_that_runs_in_pause_fails_the_wavetest() {
    let pause_rule = |fault| {
        let (machine, adapter) = setup(fault);
        let filter = adapter.wave_filter("WaveRender").unwrap();
        let (wave, desc) = (&filter.miniport, filter.description);
        let (_, bytes) = negotiate_format(wave, desc, 0, &FormatRequest::default()).unwrap();
        let findings = hlk::run_wavetest_positions(&machine, wave, 0, false, &bytes, 3840).unwrap();
        findings
            .into_iter()
            .find(|f| f.rule.contains("PAUSE"))
            .unwrap()
            .outcome
    };
    assert!(pause_rule(Fault::None).is_ok(), "the control must pass");
    assert!(pause_rule(Fault::RunInPause).is_err());
}

/// Runs one HLK method on the faulty cable's render (or capture) endpoint,
/// with the capture pin as render's loopback.
fn method_on(fault: Fault, method: HlkMethod, capture: bool, config: &HlkConfig) -> MethodReport {
    fn pin(f: &wavert_emulator::cable::RegisteredWaveFilter, capture: bool) -> HostPin<'_> {
        HostPin {
            wave: &f.miniport,
            description: f.description,
            pin: streaming_pin(f.description, capture).unwrap(),
            capture,
        }
    }
    let (machine, adapter) = setup(fault);
    let report = {
        let render = adapter.wave_filter("WaveRender").unwrap();
        let capture_filter = adapter.wave_filter("WaveCapture").unwrap();
        let (render_pin, capture_pin) = (pin(&render, false), pin(&capture_filter, true));
        if capture {
            methods::run_method(
                method,
                &machine,
                &capture_pin,
                Loopback::Absent("capture"),
                config,
            )
        } else {
            methods::run_method(
                method,
                &machine,
                &render_pin,
                Loopback::Pin(capture_pin),
                config,
            )
        }
    };
    adapter.remove();
    assert_clean(&machine);
    report
}

/// The method passes on the control and fails, on `fault`, with the
/// assertion `rule` among its failures.
fn fails_with(method: HlkMethod, fault: Fault, rule: &str, config: &HlkConfig) {
    for capture in [false, true] {
        let is_loopback = matches!(
            method,
            HlkMethod::LoopbackStreamStateControl | HlkMethod::LoopbackStreamDifferentFormat
        );
        if capture && is_loopback {
            continue;
        }
        let control = method_on(Fault::None, method, capture, config);
        assert!(
            control.passed(),
            "control, capture={capture}: {}",
            control.summary()
        );
        let broken = method_on(fault, method, capture, config);
        let finding = broken
            .finding(rule)
            .unwrap_or_else(|| panic!("{fault:?}: no finding {rule}: {}", broken.summary()));
        assert!(
            finding.outcome.is_err(),
            "{fault:?}, capture={capture}: {rule} passed: {}",
            broken.summary()
        );
        assert!(broken.failed() && !broken.passed());
    }
}

fn hlk_config() -> HlkConfig {
    HlkConfig::default()
}

#[test]
fn stream_state_control_fails_on_a_stream_running_in_pause() {
    fails_with(
        HlkMethod::StreamStateControl,
        Fault::RunInPause,
        "position frozen in PAUSE",
        &hlk_config(),
    );
}

#[test]
fn loopback_stream_state_control_fails_on_a_loopback_running_in_pause() {
    fails_with(
        HlkMethod::LoopbackStreamStateControl,
        Fault::RunInPause,
        "position frozen in PAUSE",
        &hlk_config(),
    );
}

#[test]
fn stream_min_buffer_size_fails_on_a_device_that_stalls_on_short_buffers() {
    fails_with(
        HlkMethod::StreamMinBufferSize,
        Fault::StallBelow { bytes: 1024 },
        "position moves at the minimum period",
        &hlk_config(),
    );
}

#[test]
fn stream_max_buffer_size_fails_on_a_device_that_stalls_on_long_buffers() {
    fails_with(
        HlkMethod::StreamMaxBufferSize,
        Fault::StallAbove { bytes: 1 << 20 },
        "position moves in the largest buffer",
        &hlk_config(),
    );
}

#[test]
fn stream_different_format_fails_on_an_advertised_rate_that_is_refused() {
    fails_with(
        HlkMethod::StreamDifferentFormat,
        Fault::RefuseRate {
            rate: 96_000,
            capture_only: false,
        },
        "format 96000 Hz 16 bit x2 streams",
        &hlk_config(),
    );
}

#[test]
fn loopback_stream_different_format_fails_when_the_loopback_refuses_a_host_format() {
    fails_with(
        HlkMethod::LoopbackStreamDifferentFormat,
        Fault::RefuseRate {
            rate: 96_000,
            capture_only: true,
        },
        "loopback of 96000 Hz 16 bit x2 streams",
        &hlk_config(),
    );
}

#[test]
fn stream_multiple_modes_skips_like_the_hlk_on_one_instance_pins() {
    // The product's pins have two modes (GetModes) and allow one instance:
    // the HLK skips, and so do we.
    for capture in [false, true] {
        let product = method_on(
            Fault::None,
            HlkMethod::StreamMultipleModes,
            capture,
            &hlk_config(),
        );
        assert_eq!(
            product.skipped.as_deref(),
            Some("the pin allows 1 instance(s): the HLK skips below 2"),
            "{}",
            product.summary()
        );
        assert!(!product.passed() && !product.failed());
        // With DEFAULT alone, the mode count stops it first (the HLK's order).
        let one_mode = method_on(
            Fault::NoRawMode,
            HlkMethod::StreamMultipleModes,
            capture,
            &hlk_config(),
        );
        assert_eq!(
            one_mode.skipped.as_deref(),
            Some("1 mode(s): the HLK skips below 2"),
            "{}",
            one_mode.summary()
        );
    }
}

mod two_instances {
    //! `StreamMultipleModes` run for real: a host pin with two instances
    //! and two modes. Neither product pin has two instances (and a
    //! `Backend` drives one stream per direction), so the pin is built
    //! here: two faulty cables behind one render host pin, each instance a
    //! cable's render side, through the product's own `WaveMiniport` (its
    //! mode and format checks) and shared stream.

    use portcls_sys::{
        IPortWaveRT, IPortWaveRTStream, IResourceList, IUnknown, DEVICE_DESCRIPTION, GUID,
        PCFILTER_DESCRIPTOR, PCPIN_DESCRIPTOR,
    };
    use wavert_com::{new_wave_rt_miniport, ComPtr, Miniport, MiniportWaveRt, NtResult, NtStatus};
    use wavert_emulator::engine::{pins, streaming_pin};
    use wavert_emulator::faulty::{Fault, FaultyCable};
    use wavert_emulator::hlk::methods::{stream_multiple_modes, HlkConfig, HostPin, MethodReport};
    use wavert_miniport::wave::wave_filter;
    use wavert_miniport::{Direction, WaveMiniport, WaveRtStream};

    use super::{assert_clean, machine};

    /// A render host pin of two instances: a stream opens on the first
    /// instance that is free (a busy one answers
    /// `STATUS_INSUFFICIENT_RESOURCES`). Modes, formats and intersections
    /// are the first instance's.
    struct TwoInstancePin {
        instances: [WaveMiniport<FaultyCable>; 2],
        description: &'static PCFILTER_DESCRIPTOR,
    }

    impl TwoInstancePin {
        /// The cable's render filter with its host pin allowing two
        /// instances. Its format-property table is left out: those handlers
        /// are typed for a `WaveMiniport<FaultyCable>`, which this object
        /// is not.
        fn new(instances: [WaveMiniport<FaultyCable>; 2]) -> Self {
            let product = wave_filter::<FaultyCable>(Direction::Render);
            let mut pins: Vec<PCPIN_DESCRIPTOR> = pins(product).to_vec();
            let host = streaming_pin(product, false).unwrap() as usize;
            pins[host].MaxGlobalInstanceCount = 2;
            pins[host].MaxFilterInstanceCount = 2;
            let description = Box::leak(Box::new(PCFILTER_DESCRIPTOR {
                AutomationTable: std::ptr::null(),
                Pins: pins.leak().as_ptr(),
                ..*product
            }));
            Self {
                instances,
                description,
            }
        }
    }

    impl Miniport for TwoInstancePin {
        fn description(&self) -> &'static PCFILTER_DESCRIPTOR {
            self.description
        }

        fn data_range_intersection(
            &self,
            pin_id: u32,
            data_range: &[u8],
            matching_range: &[u8],
            result: &mut [u8],
            result_len: &mut u32,
        ) -> NtResult<()> {
            self.instances[0].data_range_intersection(
                pin_id,
                data_range,
                matching_range,
                result,
                result_len,
            )
        }
    }

    impl MiniportWaveRt for TwoInstancePin {
        type Stream = WaveRtStream<FaultyCable>;

        fn init(
            &self,
            _adapter: Option<ComPtr<IUnknown>>,
            _resources: Option<ComPtr<IResourceList>>,
            _port: ComPtr<IPortWaveRT>,
        ) -> NtResult<()> {
            Ok(())
        }

        fn new_stream(
            &self,
            port_stream: ComPtr<IPortWaveRTStream>,
            pin: u32,
            capture: bool,
            format: &[u8],
            attributes: Option<&[u8]>,
        ) -> NtResult<Self::Stream> {
            let mut last = NtStatus::INSUFFICIENT_RESOURCES;
            for instance in &self.instances {
                match instance.new_stream(port_stream.clone(), pin, capture, format, attributes) {
                    Err(busy) if busy == NtStatus::INSUFFICIENT_RESOURCES => last = busy,
                    other => return other,
                }
            }
            Err(last)
        }

        fn device_description(&self, description: &mut DEVICE_DESCRIPTION) -> NtResult<()> {
            self.instances[0].device_description(description)
        }

        fn has_signal_processing_modes(&self) -> bool {
            self.instances[0].has_signal_processing_modes()
        }

        fn signal_processing_modes(&self, pin: u32) -> NtResult<&'static [GUID]> {
            self.instances[0].signal_processing_modes(pin)
        }
    }

    /// `StreamMultipleModes` on a two-instance pin whose second instance
    /// has `second`.
    fn run_with_second_instance(second: Fault) -> MethodReport {
        let machine = machine();
        let report = {
            let instances = [Fault::None, second].map(|fault| {
                WaveMiniport::new(FaultyCable::new(&machine, fault), Direction::Render)
            });
            let pin = TwoInstancePin::new(instances);
            let description = pin.description;
            let wave = new_wave_rt_miniport(pin).unwrap();
            let host = HostPin {
                wave: &wave,
                description,
                pin: streaming_pin(description, false).unwrap(),
                capture: false,
            };
            stream_multiple_modes(&machine, &host, &HlkConfig::default())
        };
        assert_clean(&machine);
        report
    }

    fn outcome<'a>(report: &'a MethodReport, rule: &str) -> &'a Result<(), String> {
        &report
            .finding(rule)
            .unwrap_or_else(|| panic!("no finding {rule}: {}", report.summary()))
            .outcome
    }

    #[test]
    fn two_instances_in_two_modes_pass() {
        let report = run_with_second_instance(Fault::None);
        assert!(report.passed(), "{}", report.summary());
        // The resource of each mode, with the other mode beside it.
        let rules: Vec<&str> = report.findings.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(
            rules,
            [
                "streams in DEFAULT and RAW both move",
                "streams in RAW and DEFAULT both move"
            ]
        );
    }

    #[test]
    fn a_second_stream_that_does_not_move_fails() {
        // Every buffer of the second instance stalls.
        let report = run_with_second_instance(Fault::StallAbove { bytes: 0 });
        assert!(report.failed(), "{}", report.summary());
        for rule in [
            "streams in DEFAULT and RAW both move",
            "streams in RAW and DEFAULT both move",
        ] {
            let error = outcome(&report, rule).clone().unwrap_err();
            assert!(error.starts_with("second stream:"), "{rule}: {error}");
        }
    }

    #[test]
    fn a_second_instance_that_refuses_raw_fails() {
        // GetModes lists RAW, but the second instance refuses a RAW stream
        // (its back-end offers DEFAULT only): NewStream in RAW fails.
        let report = run_with_second_instance(Fault::NoRawMode);
        assert!(report.failed(), "{}", report.summary());
        let error = outcome(&report, "streams in DEFAULT and RAW both move")
            .clone()
            .unwrap_err();
        assert!(
            error.starts_with("second stream: NewStream failed with 0xc00000bb"),
            "{error}"
        );
        // With RAW on the first instance, DEFAULT opens on the second.
        assert_eq!(
            outcome(&report, "streams in RAW and DEFAULT both move"),
            &Ok(())
        );
    }
}

#[test]
fn verify_pin_wavert_conformance_fails_on_a_stream_that_never_signals() {
    fails_with(
        HlkMethod::VerifyPinWaveRTConformance,
        Fault::NoNotifications,
        "event-driven capable",
        &hlk_config(),
    );
}

#[test]
fn drift_and_jitter_fails_on_a_drifting_clock_and_on_a_coarse_position() {
    fails_with(
        HlkMethod::DriftAndJitter,
        Fault::FastClock { percent: 2 },
        "sample rate",
        &hlk_config(),
    );
    // Steps of 8 ms read every 10 ms: errors within +-3 ms, spread wide.
    fails_with(
        HlkMethod::DriftAndJitter,
        Fault::CoarsePosition { ms: 8 },
        "jitter std-dev",
        &hlk_config(),
    );
    // Steps of 12 ms: errors beyond 4 ms.
    fails_with(
        HlkMethod::DriftAndJitter,
        Fault::CoarsePosition { ms: 12 },
        "jitter max",
        &hlk_config(),
    );
}

#[test]
fn latency_fails_on_a_late_start() {
    fails_with(
        HlkMethod::Latency,
        Fault::LateStart { ms: 30 },
        "start latency",
        &hlk_config(),
    );
}

mod modes_and_constraints {
    //! The mode and packet-size checks of `wavert_emulator::modes`, each
    //! failing on the device (or `GetModes`) that breaks its rule.

    use core::ffi::c_void;
    use std::sync::atomic::{AtomicU8, Ordering};

    use portcls_sys::{
        windows_abi, DEVPKEY_KsAudio_PacketSize_Constraints2, IID_IMiniportAudioSignalProcessing,
        IID_IUnknown, IMiniportAudioSignalProcessing, IMiniportAudioSignalProcessingVtbl,
        AUDIO_SIGNALPROCESSINGMODE_DEFAULT, AUDIO_SIGNALPROCESSINGMODE_RAW, GUID, NTSTATUS,
        STATUS_BUFFER_TOO_SMALL, STATUS_NOT_SUPPORTED, STATUS_SUCCESS,
    };
    use wavert_com::{unknown_vtbl, ComClass, ComObject, ComPtr};
    use wavert_emulator::engine::{negotiate_format, streaming_pin, EngineError, Stream};
    use wavert_emulator::faulty::Fault;
    use wavert_emulator::modes::{
        check_packet_constraints, get_modes_of, with_signal_processing_mode,
    };

    use super::{assert_clean, setup};

    /// Both wave filters' constraint check, on a cable with `fault`.
    fn constraint_checks(fault: Fault) -> Vec<Result<(), String>> {
        let (machine, adapter) = setup(fault);
        let registrations = machine.registrations();
        let results = ["WaveRender", "WaveCapture"]
            .iter()
            .map(|name| {
                let filter = adapter.wave_filter(name).unwrap();
                check_packet_constraints(&registrations, &filter).map(|_| ())
            })
            .collect();
        adapter.remove();
        results
    }

    #[test]
    fn a_max_packet_under_ten_ms_fails_the_constraint_check() {
        assert_eq!(constraint_checks(Fault::None), [Ok(()), Ok(())]);
        for result in constraint_checks(Fault::ShortMaxPacket) {
            let error = result.unwrap_err();
            assert!(error.contains("less than 10 ms"), "{error}");
        }
    }

    #[test]
    fn a_constraint_for_a_mode_the_pin_lacks_fails_and_that_mode_is_refused() {
        for result in constraint_checks(Fault::NoRawMode) {
            let error = result.unwrap_err();
            assert!(error.contains("which the host pin lacks"), "{error}");
        }
        // The wave miniport refuses a RAW stream on a pin without RAW.
        let (machine, adapter) = setup(Fault::NoRawMode);
        let filter = adapter.wave_filter("WaveRender").unwrap();
        let pin = streaming_pin(filter.description, false).unwrap();
        let (_, bytes) = negotiate_format(
            &filter.miniport,
            filter.description,
            pin,
            &super::FormatRequest::default(),
        )
        .unwrap();
        let raw = with_signal_processing_mode(&bytes, AUDIO_SIGNALPROCESSINGMODE_RAW);
        match Stream::open(&machine, &filter.miniport, pin, false, &raw) {
            Err(EngineError::Call { status, .. }) => assert_eq!(status, STATUS_NOT_SUPPORTED),
            Ok(_) => panic!("a RAW stream opened on a pin without RAW"),
            Err(e) => panic!("{e}"),
        }
        let default = with_signal_processing_mode(&bytes, AUDIO_SIGNALPROCESSINGMODE_DEFAULT);
        drop(Stream::open(&machine, &filter.miniport, pin, false, &default).unwrap());
        adapter.remove();
        assert_clean(&machine);
    }

    #[test]
    fn constraints_set_after_registration_fail_and_are_a_violation() {
        let (machine, adapter) = setup(Fault::None);
        let filter = adapter.wave_filter("WaveRender").unwrap();
        let value = machine.registrations().interface_properties[0]
            .value
            .clone();
        // What a driver setting it after PcRegisterSubdevice does.
        machine.set_interface_property(
            "WaveRender",
            &DEVPKEY_KsAudio_PacketSize_Constraints2,
            &value,
        );
        let error = check_packet_constraints(&machine.registrations(), &filter).unwrap_err();
        assert!(error.contains("after PcRegisterSubdevice"), "{error}");
        assert!(
            machine
                .violations()
                .iter()
                .any(|v| v.contains("after PcRegisterSubdevice")),
            "{:?}",
            machine.violations()
        );
        // A truncated value fails too.
        machine.set_interface_property(
            "WaveCapture",
            &DEVPKEY_KsAudio_PacketSize_Constraints2,
            &value[..40],
        );
        let capture = adapter.wave_filter("WaveCapture").unwrap();
        let mut registrations = machine.registrations();
        for p in &mut registrations.interface_properties {
            p.before_registration = true;
        }
        let error = check_packet_constraints(&registrations, &capture).unwrap_err();
        assert!(error.contains("40 bytes for 2 mode constraints"), "{error}");
        adapter.remove();
    }

    /// How [`BrokenModes`] breaks the `GetModes` protocol.
    static BREAKAGE: AtomicU8 = AtomicU8::new(0);
    const CORRECT: u8 = 0;
    const SHORT_ARRAY_SUCCEEDS: u8 = 1;
    const SHORT_ARRAY_KEEPS_COUNT: u8 = 2;
    const NO_MODES_WITH_SUCCESS: u8 = 3;
    const WRITES_BEYOND_COUNT: u8 = 4;

    static MODES: [GUID; 2] = [
        AUDIO_SIGNALPROCESSINGMODE_DEFAULT,
        AUDIO_SIGNALPROCESSINGMODE_RAW,
    ];

    /// A hand-made `IMiniportAudioSignalProcessing` whose `GetModes`
    /// follows [`BREAKAGE`].
    struct BrokenModes;

    #[repr(C)]
    struct BrokenModesInterfaces {
        signal_processing: *const IMiniportAudioSignalProcessingVtbl,
    }
    // SAFETY: a pointer to an immutable static vtable.
    unsafe impl Send for BrokenModesInterfaces {}
    // SAFETY: as above.
    unsafe impl Sync for BrokenModesInterfaces {}

    static VTBL: IMiniportAudioSignalProcessingVtbl = IMiniportAudioSignalProcessingVtbl {
        base__: unknown_vtbl::<BrokenModes, 0>(),
        GetModes: broken_get_modes,
    };

    // SAFETY: one vtable pointer at offset 0 built with `unknown_vtbl::<Self, 0>`,
    // answered only for the interfaces it implements.
    unsafe impl ComClass for BrokenModes {
        type Interfaces = BrokenModesInterfaces;
        fn interfaces() -> Self::Interfaces {
            BrokenModesInterfaces {
                signal_processing: &raw const VTBL,
            }
        }
        fn query(&self, iid: &GUID) -> Option<usize> {
            [IID_IUnknown, IID_IMiniportAudioSignalProcessing]
                .contains(iid)
                .then_some(0)
        }
    }

    #[windows_abi]
    unsafe extern "system" fn broken_get_modes(
        _this: *mut c_void,
        _pin: u32,
        modes: *mut GUID,
        count: *mut u32,
    ) -> NTSTATUS {
        let breakage = BREAKAGE.load(Ordering::SeqCst);
        if breakage == NO_MODES_WITH_SUCCESS {
            // SAFETY: the caller's count is writable.
            unsafe { count.write(0) };
            return STATUS_SUCCESS;
        }
        if !modes.is_null() {
            // SAFETY: the caller's count is readable.
            let room = unsafe { count.read() } as usize;
            if room < MODES.len() {
                match breakage {
                    SHORT_ARRAY_SUCCEEDS => return STATUS_SUCCESS,
                    SHORT_ARRAY_KEEPS_COUNT => return STATUS_BUFFER_TOO_SMALL,
                    _ => {
                        // SAFETY: writable count.
                        unsafe { count.write(2) };
                        return STATUS_BUFFER_TOO_SMALL;
                    }
                }
            }
            // SAFETY: the caller's array holds `room` >= 2 GUIDs.
            let out = unsafe { std::slice::from_raw_parts_mut(modes, room) };
            out[..MODES.len()].copy_from_slice(&MODES);
            if breakage == WRITES_BEYOND_COUNT && room > MODES.len() {
                out[MODES.len()] = MODES[0];
            }
        }
        // SAFETY: writable count.
        unsafe { count.write(2) };
        STATUS_SUCCESS
    }

    #[test]
    fn each_break_of_the_get_modes_size_protocol_is_reported() {
        let raw = ComObject::create(BrokenModes).unwrap();
        // SAFETY: a new object's first interface, with its one reference.
        let sp: ComPtr<IMiniportAudioSignalProcessing> =
            unsafe { ComPtr::from_raw(raw.as_ptr().cast()) }.unwrap();
        BREAKAGE.store(CORRECT, Ordering::SeqCst);
        assert_eq!(get_modes_of(&sp, 0).unwrap(), MODES);
        for (breakage, expected) in [
            (
                SHORT_ARRAY_SUCCEEDS,
                "STATUS_BUFFER_TOO_SMALL and 2 expected",
            ),
            (SHORT_ARRAY_KEEPS_COUNT, "count 1"),
            (NO_MODES_WITH_SUCCESS, "no modes with STATUS_SUCCESS"),
            (WRITES_BEYOND_COUNT, "beyond the count"),
        ] {
            BREAKAGE.store(breakage, Ordering::SeqCst);
            let error = get_modes_of(&sp, 0).unwrap_err().to_string();
            assert!(error.contains(expected), "breakage {breakage}: {error}");
        }
        BREAKAGE.store(CORRECT, Ordering::SeqCst);
    }
}
