//! The image stage and `cargo xtask play`: the shipped `rswavert.sys` run
//! by the emulator (`wavert_emulator::image`).
//!
//! The stage runs the emulated-cable suite with `RSWAVERT_IMAGE` naming the
//! packaged image (every session, the format sweep, notification counts 1
//! and 2, the HLK rules on both endpoints, fault injection at PortCls's
//! exports), the negative controls on patched copies of it, and the
//! emulator's AC'97 sessions on QEMU with the image's port I/O trapped and
//! forwarded, and the image on QEMU's HD Audio controller with its MMIO
//! trapped and forwarded (`hda_image`, and the emulator's HD Audio
//! sessions; after the QEMU stage, whose setup and build it reuses); `play`
//! is
//! the main job over the image: cross-build, then the default loopback
//! session with `--image`.

use std::path::PathBuf;

use crate::cross;
use crate::util::{cargo, passed_tests, run, run_captured, workspace_root, StepResult};

/// The packaged image `cargo xtask cross` writes.
fn packaged_image() -> PathBuf {
    cross::x64_package_dir().join("rswavert.sys")
}

fn existing_image() -> Result<PathBuf, String> {
    let image = packaged_image();
    if image.is_file() {
        Ok(image)
    } else {
        Err(format!(
            "{} is missing: the cross stage (cargo xtask cross) builds it",
            image.display()
        ))
    }
}

/// The image stage of `cargo xtask test` (after `cross`).
///
/// # Errors
///
/// The image is missing, or a test fails.
pub fn run_stage() -> StepResult {
    let image = existing_image()?;
    let mut passed = 0;
    for (package, suite, extra) in [
        ("wavert-tests", "emulated_cable", None),
        ("wavert-tests", "emulated_cables", None),
        ("wavert-tests", "image_controls", Some("--include-ignored")),
        ("wavert-qemu", "emulator_ac97_session", None),
        ("wavert-qemu", "emulator_hda_session", None),
        ("wavert-qemu", "hda_image", Some("--include-ignored")),
    ] {
        let mut command = cargo();
        command
            .current_dir(workspace_root())
            .env("RSWAVERT_IMAGE", &image)
            .args(["test", "-p", package, "--test", suite, "--"]);
        if let Some(extra) = extra {
            command.arg(extra);
        }
        let output = run_captured(&format!("{suite} with the image"), &mut command)?;
        let count = passed_tests(&output);
        if count == 0 {
            return Err(format!("{suite} ran no test with the image"));
        }
        passed += count;
    }
    Ok(format!(
        "{passed} tests passed on the shipped image {} (cable sessions, several cables from its registry parameters, sweep, HLK rules, fault injection, negative controls, AC'97 and HD Audio on QEMU)",
        image.display()
    ))
}

/// `cargo xtask play [ARGS...]`: cross-builds the image and runs the
/// emulator's main job on it, passing `ARGS` on (`--input`, `--format`, ...).
///
/// # Errors
///
/// The cross build fails, or the session's checks do.
pub fn play(arguments: &[String]) -> StepResult {
    let built = cross::run_cross()?;
    println!("{built}");
    let image = existing_image()?;
    run(cargo()
        .current_dir(workspace_root())
        .args(["run", "--release", "-p", "wavert-emulator", "--"])
        .arg("--image")
        .arg(&image)
        .args(arguments))?;
    Ok(format!(
        "the shipped image {} played and passed its checks",
        image.display()
    ))
}
