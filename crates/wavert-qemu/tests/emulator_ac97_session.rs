//! The emulator CLI's AC'97 session (`wavert-emulator --device ac97`):
//! the AC'97 miniport on QEMU's AC'97 through the emulated PortCls. Fails
//! (never skips) when QEMU cannot be set up.
//!
//! With `RSWAVERT_IMAGE` naming the cross-built `rswavert.sys` (`cargo xtask
//! test`'s image stage), the sessions run the shipped image instead: its
//! `in`/`out` instructions trapped and forwarded to QEMU over qtest, its ISR
//! called through the emulated interrupt line, its DPC run by the kernel
//! stand-in.

use std::path::PathBuf;

use wavert_emulator::engine::FormatRequest;
use wavert_emulator::faulty::Ac97Fault;
use wavert_emulator::memory::HIGH_RAM_BASE;
use wavert_emulator::personality::{OrderOutcome, PortPersonality};
use wavert_emulator::qemu_card::{
    run_card_hlk, run_card_session, CardOptions, CardReport, QemuCard,
};

fn image() -> Option<PathBuf> {
    std::env::var_os("RSWAVERT_IMAGE").map(PathBuf::from)
}

fn output_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "wavert-emulator-ac97-{name}-{}",
        std::process::id()
    ))
}

fn session(
    name: &str,
    format: FormatRequest,
    seconds: f64,
    notifications: u32,
    personality: PortPersonality,
) -> CardReport {
    let dir = output_dir(&format!("{name}-{personality}"));
    let report = run_card_session(&CardOptions {
        card: QemuCard::Ac97,
        input: None,
        format,
        seconds,
        period_ms: 20,
        notifications,
        output_dir: dir.clone(),
        image: image(),
        personality,
        fault: Ac97Fault::None,
    })
    .unwrap_or_else(|e| panic!("the AC'97 session failed: {e}"));
    for line in report.lines() {
        println!("{line}");
    }
    // Half of guest RAM is above 4 GiB, yet the 32-bit bus master got
    // only pages it reaches.
    assert!(report.memory.contains("from 4 GiB"), "{}", report.memory);
    assert!(
        report.buffer_pages.iter().all(|&p| p < HIGH_RAM_BASE),
        "{:x?}",
        report.buffer_pages
    );
    let frame_bytes = 4.0;
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "test figures"
    )]
    let input_bytes = (f64::from(format.rate) * seconds) as u64 * frame_bytes as u64;
    assert!(report.byte_exact(), "QEMU's output differs from the input");
    assert_eq!(report.input_bytes as u64, input_bytes);
    match (&report.channel, image()) {
        (Some(channel), None) => {
            assert_eq!(channel.halts, 0);
            assert_eq!(channel.fifo_errors, 0);
            assert!(channel.interrupts > 0);
            assert_eq!(channel.interrupt_register_accesses, 3 * channel.interrupts);
        }
        (None, Some(path)) => {
            assert!(
                report.build.contains(&path.display().to_string()),
                "{}",
                report.build
            );
            assert!(report.interrupts_delivered > 0);
        }
        (channel, image) => panic!("counters {channel:?} for image {image:?}"),
    }
    assert!(report.notifications > 0);
    assert!(report.passed(), "{:?}", report.lines());
    assert_eq!(report.personality, personality);
    // Every order a real port may use is one the miniport must take.
    for order in &report.orders {
        assert!(
            !matches!(order.outcome, OrderOutcome::Refused(_)),
            "{personality}: {} {:?}",
            order.order,
            order.outcome
        );
    }
    let written = std::fs::metadata(dir.join(QemuCard::Ac97.output_wav())).map(|m| m.len());
    assert!(
        written.as_ref().is_ok_and(|&n| n > input_bytes),
        "{written:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
    report
}

#[test]
fn ac97_session_plays_two_seconds_byte_exact_without_halts() {
    let _ = session(
        "48k",
        FormatRequest::default(),
        2.0,
        2,
        PortPersonality::Windows,
    );
}

#[test]
fn ac97_session_is_byte_exact_under_the_reactos_port() {
    let report = session(
        "48k",
        FormatRequest::default(),
        2.0,
        2,
        PortPersonality::ReactOs,
    );
    assert!(
        report
            .orders
            .iter()
            .any(|o| o.order.contains("in one call")),
        "the ReactOS port jumped states: {:?}",
        report.orders
    );
}

#[test]
fn ac97_session_is_byte_exact_under_the_hostile_port() {
    let report = session(
        "48k",
        FormatRequest::default(),
        2.0,
        2,
        PortPersonality::Hostile,
    );
    assert!(
        report
            .orders
            .iter()
            .any(|o| o.order.contains("second buffer")),
        "the hostile port reallocated: {:?}",
        report.orders
    );
}

#[test]
fn ac97_session_plays_ten_seconds_at_44k1() {
    let format = FormatRequest {
        rate: 44_100,
        ..FormatRequest::default()
    };
    let report = session("44k1", format, 10.0, 2, PortPersonality::Windows);
    assert_eq!(report.format.sample_rate(), 44_100);
}

fn hlk_on(capture: bool, personality: PortPersonality) {
    let report = run_card_hlk(QemuCard::Ac97, capture, image().as_deref(), personality)
        .unwrap_or_else(|e| panic!("the AC'97 HLK run failed: {e}"));
    println!("{}", report.build);
    for method in &report.methods {
        println!(
            "HLK capture={capture} {}: {}",
            method.method.name(),
            method.summary()
        );
    }
    for finding in &report.ks_formats {
        println!(
            "ks formats capture={capture} {}: {:?}",
            finding.rule, finding.outcome
        );
    }
    assert_eq!(report.ks_formats.len(), 6, "every format rule ran");
    if let Some(path) = image() {
        assert!(
            report.build.contains(&path.display().to_string()),
            "{}",
            report.build
        );
    }
    assert!(report.passed(), "{report:?}");
    // Skipped only where the HLK would not run the method on this card
    // (no loopback pin) or where the mode list is not wired yet.
    for method in &report.methods {
        use wavert_emulator::hlk::methods::HlkMethod;
        let may_skip = matches!(
            method.method,
            HlkMethod::StreamMultipleModes
                | HlkMethod::LoopbackStreamStateControl
                | HlkMethod::LoopbackStreamDifferentFormat
        );
        assert!(
            method.passed() || (may_skip && method.skipped.is_some()),
            "{}: {}",
            method.method.name(),
            method.summary()
        );
    }
}

#[test]
fn ac97_hlk_wavetest_and_ks_position_on_render() {
    hlk_on(false, PortPersonality::Windows);
}

#[test]
fn ac97_hlk_wavetest_and_ks_position_on_capture() {
    hlk_on(true, PortPersonality::Windows);
}

#[test]
fn ac97_hlk_on_render_under_the_hostile_port() {
    hlk_on(false, PortPersonality::Hostile);
}

#[test]
fn ac97_hlk_on_capture_under_the_reactos_port() {
    hlk_on(true, PortPersonality::ReactOs);
}

/// The host build with `fault`, 1 s at 48 kHz with 100 ms packets (a
/// 10-page buffer: with half of guest RAM above 4 GiB and the frames
/// shuffled, a buffer without the 32-bit limit gets high pages).
fn faulty_session(name: &str, fault: Ac97Fault) -> Result<CardReport, String> {
    let dir = output_dir(name);
    let result = run_card_session(&CardOptions {
        card: QemuCard::Ac97,
        input: None,
        format: FormatRequest::default(),
        seconds: 1.0,
        period_ms: 100,
        notifications: 2,
        output_dir: dir.clone(),
        image: None,
        personality: PortPersonality::Windows,
        fault,
    });
    std::fs::remove_dir_all(&dir).ok();
    if let Ok(report) = &result {
        for line in report.lines() {
            println!("{fault:?}: {line}");
        }
    }
    result
}

#[test]
fn the_fault_control_passes_with_pages_below_4_gib() {
    let report = faulty_session("control", Ac97Fault::None).unwrap();
    assert!(report.passed(), "{:?}", report.lines());
    assert!(report.buffer_pages.iter().all(|&p| p < HIGH_RAM_BASE));
    assert_eq!(report.buffer_pages.len(), 10);
}

#[test]
fn a_page_above_4_gib_handed_cut_to_the_bus_master_is_a_violation() {
    let report = faulty_session("truncated", Ac97Fault::TruncatedAddresses).unwrap();
    let high: Vec<u64> = report
        .buffer_pages
        .iter()
        .copied()
        .filter(|&p| p >= HIGH_RAM_BASE)
        .collect();
    assert!(!high.is_empty(), "{:x?}", report.buffer_pages);
    let cut: Vec<&String> = report
        .violations
        .iter()
        .filter(|v| {
            v.contains("AC'97 bus master") && v.contains("cut to the device's address bits")
        })
        .collect();
    assert!(!cut.is_empty(), "{:?}", report.violations);
    // Each one names a page the driver holds above 4 GiB.
    assert!(cut
        .iter()
        .all(|v| high.iter().any(|p| v.contains(&format!("page {p:#x} cut")))));
    assert!(!report.passed());
}

#[test]
fn a_back_end_that_forgets_the_32_bit_limit_gets_no_buffer_when_pages_are_high() {
    // The shared stream's descriptor builder refuses a page the AC'97
    // profile cannot address: the buffer is not granted, so nothing wrong
    // reaches the device.
    let error = faulty_session("unlimited", Ac97Fault::NoAddressLimit).unwrap_err();
    assert!(
        error.contains("AllocateAudioBuffer failed with 0xc0000001"),
        "{error}"
    );
}
