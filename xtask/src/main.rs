//! `cargo xtask`: the project's task runner.
//!
//! * `cargo xtask cross` builds the Windows driver on Linux with the real
//!   windows-drivers-rs crates, for x64 and ARM64, packages `rswavert.sys`
//!   and `rswavert.inf` under `target/package/rswavert/<arch>/` and checks
//!   the images.
//! * `cargo xtask test` is the one test command: every stage, in order, with a
//!   summary line each; it exits non-zero if any stage fails. A stage that
//!   cannot run is a failure with a reason, never a silent skip.

mod abi_check;
mod bench;
mod cross;
mod exports;
mod fuzz;
mod image;
mod inf;
mod miri;
mod pe_check;
mod pe_checksum;
mod prereq;
mod qemu;
mod setup_tool;
mod util;
mod wdk_host;

use std::{process::ExitCode, time::Instant};

use util::{cargo, run, workspace_root, StepResult};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  cross [--target TRIPLE]
          build the Windows driver on this Linux host for x86_64-pc-windows-msvc
          and aarch64-pc-windows-msvc (or the one TRIPLE), package rswavert.sys,
          rswavert.inf and rswavert-setup.exe under
          target/package/rswavert/{amd64,arm64}/ and check the images
  abi     check portcls-sys against the MinGW-w64 headers (the abi-conformance
          stage of `test`)
  clippy-driver
          clippy (-D warnings) on the driver package for the Windows target
  fuzz [SECONDS]
          run every fuzz target of wavert-core for SECONDS each (default 300)
  bench [--quick]
          run the hot-path benchmarks and write docs/performance.md
          (--quick: build them and run each once)
  setup-tool
          lint rswavert-setup for both Windows targets, link it for x64 and put
          rswavert-setup.exe in target/package/rswavert/amd64/
  qemu    set up QEMU with the qtest accelerator and run the AC'97 and HD
          Audio tests on QEMU's device models
  image   run the emulated-cable suite and the negative controls on the packaged
          rswavert.sys (after cross)
  play [ARGS...]
          cross-build the driver and run the emulator's main job on the shipped
          image (wavert-emulator --image target/package/rswavert/amd64/rswavert.sys ARGS)
  test    run every test stage (format, lints, tests, cross build + image checks)
  help    show this text";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match arguments
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["cross"] => report(&[run_stage("cross", cross::run_cross)]),
        ["cross", "--target", triple] => prereq::WindowsTarget::from_triple(triple).map_or_else(
            || {
                eprintln!(
                    "error: `cargo xtask cross --target` takes one of {}, got {triple:?}",
                    prereq::WINDOWS_TARGETS
                        .map(|target| target.triple)
                        .join(", ")
                );
                ExitCode::from(2)
            },
            |target| report(&[run_stage("cross", || cross::run_cross_for(target))]),
        ),
        ["abi"] => report(&[run_stage("abi-conformance", abi_check::run)]),
        ["clippy-driver"] => report(&[run_stage("clippy-driver", cross::run_driver_clippy)]),
        ["fuzz"] => report(&[run_stage("fuzz", || {
            fuzz::run(LONG_FUZZ_SECONDS_PER_TARGET)
        })]),
        ["fuzz", seconds] => seconds.parse::<u64>().map_or_else(
            |_| {
                eprintln!("error: `cargo xtask fuzz` takes seconds per target, got {seconds:?}");
                ExitCode::from(2)
            },
            |seconds| report(&[run_stage("fuzz", || fuzz::run(seconds))]),
        ),
        ["bench"] => report(&[run_stage("bench", || bench::run_bench(false))]),
        ["bench", "--quick"] => report(&[run_stage("bench", || bench::run_bench(true))]),
        ["qemu"] => report(&[run_stage("qemu", qemu::run)]),
        ["setup-tool"] => report(&[run_stage("setup-tool", setup_tool::run_stage)]),
        ["test"] => report(&test_stages()),
        ["image"] => report(&[run_stage("image", image::run_stage)]),
        ["play", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| (*s).to_owned()).collect();
            report(&[run_stage("play", || image::play(&rest))])
        }
        ["help" | "--help" | "-h"] | [] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("error: unknown task {:?}\n\n{USAGE}", other.join(" "));
            ExitCode::from(2)
        }
    }
}

/// A named stage of `cargo xtask test`.
type Stage = (&'static str, fn() -> StepResult);

/// A stage's name, outcome and duration.
struct StageOutcome {
    name: &'static str,
    result: StepResult,
    seconds: f64,
}

fn run_stage(name: &'static str, stage: impl FnOnce() -> StepResult) -> StageOutcome {
    println!("==> {name}");
    let started = Instant::now();
    let result = stage();
    let seconds = started.elapsed().as_secs_f64();
    match &result {
        Ok(summary) => println!("<== {name}: ok ({seconds:.0} s): {summary}"),
        Err(reason) => println!("<== {name}: FAILED ({seconds:.0} s): {reason}"),
    }
    StageOutcome {
        name,
        result,
        seconds,
    }
}

fn report(outcomes: &[StageOutcome]) -> ExitCode {
    println!("\nsummary:");
    for outcome in outcomes {
        match &outcome.result {
            Ok(summary) => println!(
                "  ok     {:<14} {:>5.0} s  {summary}",
                outcome.name, outcome.seconds
            ),
            Err(reason) => {
                let first_line = reason.lines().next().unwrap_or_default();
                println!(
                    "  FAILED {:<14} {:>5.0} s  {first_line}",
                    outcome.name, outcome.seconds
                );
            }
        }
    }
    let failed = outcomes
        .iter()
        .filter(|outcome| outcome.result.is_err())
        .count();
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn test_stages() -> Vec<StageOutcome> {
    let stages: &[Stage] = &[
        ("prerequisites", prereq::ensure_all),
        ("fmt", stage_fmt),
        ("clippy-host", stage_clippy_host),
        ("clippy-driver", cross::run_driver_clippy),
        ("test", stage_test),
        ("cross", cross::run_cross),
        ("setup-tool", setup_tool::run_stage),
        ("abi-conformance", abi_check::run),
        ("miri", miri::run),
        ("qemu-ac97", qemu::run),
        ("image", image::run_stage),
        ("fuzz", stage_fuzz),
        ("bench-smoke", || bench::run_bench(true)),
    ];
    stages
        .iter()
        .map(|(name, stage)| run_stage(name, *stage))
        .collect()
}

/// How long each fuzz target runs in `cargo xtask test` (see docs/testing.md
/// for longer campaigns).
const FUZZ_SECONDS_PER_TARGET: u64 = 30;

/// Default length of a stand-alone `cargo xtask fuzz` campaign, per target.
const LONG_FUZZ_SECONDS_PER_TARGET: u64 = 300;

fn stage_fuzz() -> StepResult {
    fuzz::run(FUZZ_SECONDS_PER_TARGET)
}

fn stage_fmt() -> StepResult {
    run(cargo()
        .current_dir(workspace_root())
        .args(["fmt", "--all", "--check"]))?;
    Ok("formatted".to_owned())
}

/// Host crates only: `default-members` leaves out the Windows-only driver
/// package, which `clippy-driver` checks for its own target.
fn stage_clippy_host() -> StepResult {
    run(cargo().current_dir(workspace_root()).args([
        "clippy",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    Ok("no warnings in the host crates (all targets)".to_owned())
}

/// Every host crate's tests but wavert-qemu's, which the `qemu-ac97` stage
/// runs (after its setup, with its figures in the summary) over the same
/// build: running them here too ran every QEMU session twice.
fn stage_test() -> StepResult {
    run(cargo().current_dir(workspace_root()).args([
        "test",
        "--workspace",
        // The driver package (the root) builds for Windows only.
        "--exclude",
        "rswavert",
        "--exclude",
        "wavert-qemu",
    ]))?;
    Ok("host test suites passed (wavert-qemu's in the qemu-ac97 stage)".to_owned())
}
