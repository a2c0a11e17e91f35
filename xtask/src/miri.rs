//! Miri over the COM layer: reference counting, `QueryInterface`, vtable
//! calls and the smart pointer are all raw-pointer code, so they run under
//! Miri's stacked-borrows and leak checks.
//!
//! Installs what it needs idempotently (`rustup component add miri` for the
//! nightly toolchain, `cargo +nightly miri setup`), then runs
//! `cargo +nightly miri test -p wavert-com -p portcls-sys`.

use std::process::Command;

use crate::util::workspace_root;

const TOOLCHAIN: &str = "nightly";
const PACKAGES: &[&str] = &["wavert-com", "portcls-sys"];

fn step(what: &str, cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(format!("{stdout}{stderr}"))
    } else {
        Err(format!("{what} failed ({}):\n{stdout}{stderr}", out.status))
    }
}

/// Counts the `test result: ok. N passed` lines of a libtest run.
fn passed(output: &str) -> usize {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("test result: ok. "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<usize>().ok())
        .sum()
}

/// Runs the COM layer's and the ABI crate's tests under Miri.
///
/// # Errors
///
/// A tool that cannot be installed, or a test that fails or hits undefined
/// behaviour (the output says which).
pub fn run() -> Result<String, String> {
    crate::prereq::ensure_nightly()?;
    step(
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
    step(
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
    let out = step("cargo miri test", &mut test)?;
    if out.contains("Undefined Behavior") {
        return Err(format!("Miri reported undefined behaviour:\n{out}"));
    }
    Ok(format!(
        "Miri: {} tests passed in {} with no undefined behaviour",
        passed(&out),
        PACKAGES.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::passed;

    #[test]
    fn counts_passed_tests() {
        let out =
            "test result: ok. 12 passed; 0 failed\nnoise\ntest result: ok. 3 passed; 0 failed";
        assert_eq!(passed(out), 15);
    }
}
