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

use wavert_emulator::ac97::{run_ac97_session, Ac97Options, Ac97Report, OUTPUT_WAV};
use wavert_emulator::engine::FormatRequest;
use wavert_emulator::personality::{OrderOutcome, PortPersonality};

fn image() -> Option<PathBuf> {
    std::env::var_os("RSWAVERT_IMAGE").map(PathBuf::from)
}

fn session(
    name: &str,
    format: FormatRequest,
    seconds: f64,
    notifications: u32,
    personality: PortPersonality,
) -> Ac97Report {
    let dir = std::env::temp_dir().join(format!(
        "wavert-emulator-ac97-{name}-{personality}-{}",
        std::process::id()
    ));
    let report = run_ac97_session(&Ac97Options {
        input: None,
        format,
        seconds,
        period_ms: 20,
        notifications,
        output_dir: dir.clone(),
        image: image(),
        personality,
    })
    .unwrap_or_else(|e| panic!("the AC'97 session failed: {e}"));
    for line in report.lines() {
        println!("{line}");
    }
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
    let written = std::fs::metadata(dir.join(OUTPUT_WAV)).map(|m| m.len());
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
    let report = wavert_emulator::ac97::run_ac97_hlk(capture, image().as_deref(), personality)
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
    assert_eq!(report.ks_formats.len(), 5, "every format rule ran");
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
