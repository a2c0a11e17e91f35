//! Miri over the COM layer: reference counting, `QueryInterface`, vtable
//! calls and the smart pointer are all raw-pointer code, so they run under
//! Miri's stacked-borrows and leak checks.
//!
//! Installs what it needs idempotently (`rustup component add miri` for the
//! nightly toolchain, `cargo +nightly miri setup`), then runs
//! `cargo +nightly miri test -p wavert-com -p portcls-sys`.

use std::process::Command;

use crate::util::{passed_tests, run_captured, workspace_root};

const TOOLCHAIN: &str = "nightly";
const PACKAGES: &[&str] = &["wavert-com", "portcls-sys"];

/// Runs the COM layer's and the ABI crate's tests under Miri.
///
/// # Errors
///
/// A tool that cannot be installed, or a test that fails or hits undefined
/// behaviour (the output says which).
pub fn run() -> Result<String, String> {
    crate::prereq::ensure_nightly()?;
    run_captured(
        "rustup component add miri",
        Command::new("rustup").args([
            "component",
            "add",
            "miri",
            "rust-src",
            "--toolchain",
            TOOLCHAIN,
        ]),
    )?;
    let root = workspace_root();
    // Miri builds into its own target directory, away from everyone else's.
    let target = root.join("target").join("miri");
    run_captured(
        "cargo miri setup",
        Command::new("cargo")
            .current_dir(&root)
            .args([&format!("+{TOOLCHAIN}"), "miri", "setup"]),
    )?;
    let mut test = Command::new("cargo");
    test.current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .args([&format!("+{TOOLCHAIN}"), "miri", "test"]);
    for p in PACKAGES {
        test.args(["-p", p]);
    }
    let out = run_captured("cargo miri test", &mut test)?;
    if out.contains("Undefined Behavior") {
        return Err(format!("Miri reported undefined behaviour:\n{out}"));
    }
    Ok(format!(
        "Miri: {} tests passed in {} with no undefined behaviour",
        passed_tests(&out),
        PACKAGES.join(", ")
    ))
}
