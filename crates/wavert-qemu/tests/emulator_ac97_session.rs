//! The emulator CLI's AC'97 session (`wavert-emulator --device ac97`):
//! the AC'97 miniport on QEMU's AC'97 through the emulated PortCls. Fails
//! (never skips) when QEMU cannot be set up.

use wavert_emulator::ac97::{run_ac97_session, Ac97Options, OUTPUT_WAV};
use wavert_emulator::engine::FormatRequest;

#[test]
fn ac97_session_plays_two_seconds_byte_exact_without_halts() {
    let dir = std::env::temp_dir().join(format!("wavert-emulator-ac97-{}", std::process::id()));
    let report = run_ac97_session(&Ac97Options {
        input: None,
        format: FormatRequest::default(),
        seconds: 2.0,
        period_ms: 20,
        notifications: 2,
        output_dir: dir.clone(),
    })
    .unwrap_or_else(|e| panic!("the AC'97 session failed: {e}"));
    for line in report.lines() {
        println!("{line}");
    }
    assert!(report.byte_exact(), "QEMU's output differs from the input");
    assert_eq!(report.input_bytes, 2 * 48_000 * 4);
    assert_eq!(report.channel.halts, 0);
    assert_eq!(report.channel.fifo_errors, 0);
    assert!(report.channel.interrupts > 0);
    assert_eq!(
        report.channel.interrupt_register_accesses,
        3 * report.channel.interrupts
    );
    assert!(report.notifications > 0);
    assert!(report.passed(), "{:?}", report.lines());
    let written = std::fs::metadata(dir.join(OUTPUT_WAV)).map(|m| m.len());
    assert!(
        written.as_ref().is_ok_and(|&n| n > 2 * 48_000 * 4),
        "{written:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
