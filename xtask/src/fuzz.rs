//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `wavert-core`.
//!
//! Installs cargo-fuzz when missing, then runs every target of
//! `crates/wavert-core/fuzz` for a fixed time with the nightly toolchain
//! (libFuzzer needs `-Z sanitizer`). Corpora and crash artifacts stay in
//! `crates/wavert-core/fuzz/{corpus,artifacts}` (ignored by git).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Targets run when `cargo fuzz list` cannot be asked.
const KNOWN_TARGETS: [&str; 3] = ["parse_format", "intersect", "build_descriptors"];

/// A `cargo` command for the nightly toolchain, free of the variables an
/// outer `cargo run` leaves behind (they would pin the stable toolchain).
fn nightly_cargo(dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly")
        .current_dir(dir)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO");
    cmd
}

fn cargo_fuzz_installed() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs cargo-fuzz unless present. Returns what was done.
fn ensure_cargo_fuzz() -> Result<&'static str, String> {
    if cargo_fuzz_installed() {
        return Ok("cargo-fuzz already installed");
    }
    eprintln!("xtask fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .map_err(|e| format!("cannot run cargo install cargo-fuzz: {e}"))?;
    if !status.success() || !cargo_fuzz_installed() {
        return Err(format!("cargo install cargo-fuzz failed ({status})"));
    }
    Ok("installed cargo-fuzz")
}

fn list_targets(crate_dir: &Path) -> Vec<String> {
    let listed = nightly_cargo(crate_dir)
        .args(["fuzz", "list"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if listed.is_empty() {
        KNOWN_TARGETS.iter().map(|t| (*t).to_string()).collect()
    } else {
        listed
    }
}

/// The run count libFuzzer reports on its "Done N runs in S second(s)" line.
fn runs_done(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("Done "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Runs every fuzz target of `wavert-core` for `seconds_per_target` seconds.
///
/// Returns a one-line summary, or the reason it failed (a crash names the
/// target; its input is in `crates/wavert-core/fuzz/artifacts/<target>/`).
///
/// # Errors
/// Missing toolchain, cargo-fuzz that cannot be installed, a target that
/// does not build, or a target that finds a crash.
pub fn run(seconds_per_target: u64) -> Result<String, String> {
    if seconds_per_target == 0 {
        return Err("fuzz: seconds per target must be at least 1".into());
    }
    crate::prereq::ensure_nightly()?;
    let installed = ensure_cargo_fuzz()?;
    let root = crate::util::workspace_root();
    let crate_dir = root.join("crates").join("wavert-core");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target").join("fuzz"), PathBuf::from);
    let mut results = Vec::new();
    for target in list_targets(&crate_dir) {
        eprintln!("xtask fuzz: {target} for {seconds_per_target} s");
        let output = nightly_cargo(&crate_dir)
            .env("CARGO_TARGET_DIR", &target_dir)
            .args(["fuzz", "run", &target, "--"])
            .arg(format!("-max_total_time={seconds_per_target}"))
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("fuzz: cannot run cargo fuzz for {target}: {e}"))?;
        let log = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines
                .get(lines.len().saturating_sub(15)..)
                .unwrap_or_default();
            return Err(format!(
                "fuzz: target {target} failed ({}); see crates/wavert-core/fuzz/artifacts/{target}/\n{}",
                output.status,
                tail.join("\n")
            ));
        }
        let runs = runs_done(&log).map_or_else(|| "?".to_string(), |n| n.to_string());
        results.push(format!("{target} {runs} runs"));
    }
    Ok(format!(
        "fuzz: {} ({seconds_per_target} s each, no crash; {installed})",
        results.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::runs_done;

    #[test]
    fn reads_libfuzzer_run_count() {
        let log = "#1024 pulse cov: 10\nDone 123456 runs in 61 second(s)\n";
        assert_eq!(runs_done(log), Some(123_456));
        assert_eq!(runs_done("nothing"), None);
    }
}
