//! The QEMU stage: wavert-core's AC'97 and HD Audio back-ends against
//! QEMU's device models over qtest.
//!
//! Setup first, with its own binary (`wavert-qemu-setup`: installs Debian's
//! `qemu-system-x86` and builds the qtest accelerator module Debian leaves
//! out, cached per package version under `/var/cache/rswavert-qemu`), so a
//! setup failure is reported as such rather than as failing tests. Then
//! `cargo test -p wavert-qemu`; the tests call the same idempotent setup
//! themselves and fail (never skip) when QEMU is unusable.
//!
//! xtask shells out instead of depending on wavert-qemu, so the task runner
//! builds without the harness.

use std::time::Instant;

use crate::util::{cargo, passed_tests, run_captured, workspace_root};

/// The `wavert-qemu figures:` lines the tests print, without the prefix.
fn figures(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("wavert-qemu figures: "))
        .collect()
}

/// Sets QEMU up and runs the AC'97 and HD Audio tests on it.
///
/// # Errors
///
/// QEMU cannot be set up (the reason and the log to read), or a test fails.
pub fn run() -> Result<String, String> {
    let root = workspace_root();
    let setup = run_captured(
        "QEMU setup (cargo run -p wavert-qemu --bin wavert-qemu-setup)",
        cargo().current_dir(&root).args([
            "run",
            "--quiet",
            "-p",
            "wavert-qemu",
            "--bin",
            "wavert-qemu-setup",
        ]),
    )?;
    let started = Instant::now();
    let output = run_captured(
        "cargo test -p wavert-qemu",
        cargo()
            .current_dir(&root)
            // The workspace's own target directory: the test stage built
            // everything these tests link.
            // Each test runs its own QEMU; two at a time suits small machines.
            .args([
                "test",
                "-p",
                "wavert-qemu",
                "--",
                "--nocapture",
                "--test-threads=2",
            ]),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let mut summary = format!(
        "{} QEMU tests passed in {seconds:.1} s (build included); {}",
        passed_tests(&output),
        setup.lines().last().unwrap_or("QEMU ready").trim()
    );
    for line in figures(&output) {
        summary.push_str("\n    ");
        summary.push_str(line);
    }
    Ok(summary)
}
