//! The emulator CLI's HD Audio session (`wavert-emulator --device hda`):
//! the HD Audio miniport on QEMU's `intel-hda` with `hda-duplex` through
//! the emulated PortCls, QEMU's `wav` output compared with the input, the
//! position and clock registers read through their mappings every
//! millisecond. Fails (never skips) when QEMU cannot be set up.
//!
//! With `RSWAVERT_IMAGE` naming the cross-built `rswavert.sys` (`cargo xtask
//! test`'s image stage), the sessions run the shipped image instead: its
//! BAR accesses trapped and forwarded to QEMU, the clock register read
//! through the port's user-mode view of the BAR.

use std::path::PathBuf;

use wavert_emulator::engine::FormatRequest;
use wavert_emulator::faulty::Ac97Fault;
use wavert_emulator::personality::{OrderOutcome, PortPersonality};
use wavert_emulator::qemu_card::{
    run_card_hlk, run_card_session, CardOptions, CardReport, QemuCard,
};

fn image() -> Option<PathBuf> {
    std::env::var_os("RSWAVERT_IMAGE").map(PathBuf::from)
}

fn output_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wavert-emulator-hda-{name}-{}", std::process::id()))
}

fn options(name: &str, rate: u32, seconds: f64, personality: PortPersonality) -> CardOptions {
    CardOptions {
        card: QemuCard::Hda,
        input: None,
        format: FormatRequest {
            rate,
            ..FormatRequest::default()
        },
        seconds,
        period_ms: 10,
        notifications: 2,
        output_dir: output_dir(&format!("{name}-{personality}")),
        image: image(),
        personality,
        fault: Ac97Fault::None,
    }
}

fn session(name: &str, rate: u32, seconds: f64, personality: PortPersonality) -> CardReport {
    let options = options(name, rate, seconds, personality);
    let report =
        run_card_session(&options).unwrap_or_else(|e| panic!("the HD Audio session failed: {e}"));
    for line in report.lines() {
        println!("{line}");
    }
    assert_eq!(report.format.sample_rate(), rate);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "test figures"
    )]
    let input_bytes = (f64::from(rate) * seconds) as usize * 4;
    assert_eq!(report.input_bytes, input_bytes);
    assert!(report.byte_exact(), "QEMU's output differs from the input");
    // The controller loops over the buffer by itself: the ISR only
    // acknowledges, in at most two register accesses.
    match (report.hda, image()) {
        (Some(hda), None) => {
            assert!(hda.interrupts > 0);
            assert!(hda.isr_max_register_accesses <= 2, "{hda:?}");
        }
        (None, Some(path)) => {
            assert!(
                report.build.contains(&path.display().to_string()),
                "{}",
                report.build
            );
            assert!(report.interrupts_delivered > 0);
        }
        (hda, image) => panic!("counters {hda:?} for image {image:?}"),
    }
    // Both registers were offered and kept to their rules at every
    // millisecond of the session.
    let virtual_ms = report.virtual_ms;
    assert_eq!(
        report.position_register.clone().map(Result::unwrap),
        Some(virtual_ms),
        "{:?}",
        report.position_register
    );
    let clock = report
        .clock_register
        .clone()
        .expect("GetClockRegister is offered")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(clock.readings, virtual_ms);
    assert!((clock.ticks_per_second - 24e6).abs() < 1.0, "{clock:?}");
    assert!(report.passed(), "{:?}", report.lines());
    for order in &report.orders {
        assert!(
            !matches!(order.outcome, OrderOutcome::Refused(_)),
            "{personality}: {} {:?}",
            order.order,
            order.outcome
        );
    }
    let written =
        std::fs::metadata(options.output_dir.join(QemuCard::Hda.output_wav())).map(|m| m.len());
    assert!(
        written.as_ref().is_ok_and(|&n| n > input_bytes as u64),
        "{written:?}"
    );
    std::fs::remove_dir_all(&options.output_dir).ok();
    report
}

#[test]
fn hda_session_plays_ten_seconds_at_48k_byte_exact_with_both_registers() {
    let report = session("48k", 48_000, 10.0, PortPersonality::Windows);
    // 10 ms packets of 48 kHz stereo are whole 128-byte multiples already.
    assert_eq!(report.buffer_bytes, 2 * 1920);
}

#[test]
fn hda_session_plays_ten_seconds_at_44k1_in_128_byte_packets() {
    let report = session("44k1", 44_100, 10.0, PortPersonality::Windows);
    // 441 frames (1764 bytes) per 10 ms packet asked: BDL entries start
    // on 128-byte boundaries and split at packet ends, so each packet is
    // rounded up to 448 frames (1792 bytes).
    assert_eq!(report.buffer_bytes, 2 * 1792);
}

#[test]
fn hda_session_under_the_reactos_and_hostile_ports() {
    for personality in [PortPersonality::ReactOs, PortPersonality::Hostile] {
        let _ = session("ports", 48_000, 1.0, personality);
    }
}

#[test]
fn hda_session_refuses_what_it_cannot_play_in_one_line() {
    let mut mono = options("mono", 8_000, 1.0, PortPersonality::Windows);
    mono.format.channels = 1;
    let error = run_card_session(&mono).unwrap_err();
    assert!(error.contains("16-bit stereo"), "{error}");
}

fn hlk_on(capture: bool) {
    let report = run_card_hlk(
        QemuCard::Hda,
        capture,
        image().as_deref(),
        PortPersonality::Windows,
    )
    .unwrap_or_else(|e| panic!("the HD Audio HLK run failed: {e}"));
    for method in &report.methods {
        println!(
            "HLK capture={capture} {}: {}",
            method.method.name(),
            method.summary()
        );
    }
    for finding in report.ks_formats.iter().chain(&report.ks_topology) {
        println!(
            "KS capture={capture} {}: {:?}",
            finding.rule, finding.outcome
        );
    }
    assert!(report.passed(), "{report:?}");
}

#[test]
fn hda_hlk_methods_pass_on_the_render_endpoint() {
    hlk_on(false);
}

#[test]
fn hda_hlk_methods_pass_on_the_capture_endpoint() {
    hlk_on(true);
}
