//! Idempotent installation of everything the tasks need on a Debian host.
//!
//! A fresh CI machine has only the Rust toolchain: the cross build needs clang
//! and libclang (bindgen), LLVM's `llvm-dlltool` (import libraries) and the
//! MinGW-w64 headers and import libraries (the WDK stand-in). Each step checks
//! first and says what it installs.

use std::{process::Command, sync::OnceLock};

use crate::inf::{self, Architecture};
use crate::util::{on_path, output, run, StepResult};

/// Debian packages the cross build and the ABI check rely on.
const DEBIAN_PACKAGES: &[&str] = &[
    "clang",
    "libclang-dev",
    "llvm",
    "mingw-w64-common",
    "mingw-w64-x86-64-dev",
    // The linker of rswavert-setup.exe (x86_64-pc-windows-gnu): MinGW-w64's
    // GCC driver with its CRT and import libraries.
    "gcc-mingw-w64-x86-64-win32",
];

/// The target `rswavert-setup.exe` is linked for (see `xtask/src/setup_tool.rs`).
pub const SETUP_TOOL_TARGET: &str = "x86_64-pc-windows-gnu";

/// One Windows architecture the driver is built for, with every name the
/// build and the package use for it.
#[derive(Debug)]
pub struct WindowsTarget {
    /// The Rust target triple.
    pub triple: &'static str,
    /// The COFF machine the image must carry (`IMAGE_FILE_MACHINE_*`, winnt.h).
    pub machine: u16,
    /// The machine's name in messages.
    pub machine_name: &'static str,
    /// How its INF is rendered; its decoration names the package folder.
    pub inf: &'static Architecture,
    /// The folder of the WDK's kernel import libraries, `Lib/<ver>/km/<this>`,
    /// as wdk-build 0.6 spells it (`CpuArchitecture::as_windows_str`; the
    /// file system here is case-sensitive).
    pub wdk_library_folder: &'static str,
    /// `llvm-dlltool -m` for the import libraries.
    pub dlltool_machine: &'static str,
}

/// x64: the cable and the AC'97.
pub const X64: WindowsTarget = WindowsTarget {
    triple: "x86_64-pc-windows-msvc",
    machine: object::pe::IMAGE_FILE_MACHINE_AMD64,
    machine_name: "AMD64",
    inf: &inf::ARCH_AMD64,
    wdk_library_folder: "x64",
    dlltool_machine: "i386:x86-64",
};

/// Windows on ARM: the cable only (see `inf::ARCH_ARM64`).
pub const ARM64: WindowsTarget = WindowsTarget {
    triple: "aarch64-pc-windows-msvc",
    machine: object::pe::IMAGE_FILE_MACHINE_ARM64,
    machine_name: "ARM64",
    inf: &inf::ARCH_ARM64,
    wdk_library_folder: "ARM64",
    dlltool_machine: "arm64",
};

/// Every architecture the package holds, x64 first.
pub const WINDOWS_TARGETS: [&WindowsTarget; 2] = [&X64, &ARM64];

impl WindowsTarget {
    /// The target a triple names, if the package has it.
    pub fn from_triple(triple: &str) -> Option<&'static Self> {
        WINDOWS_TARGETS
            .into_iter()
            .find(|target| target.triple == triple)
    }
}

/// Installs what is missing; returns a summary of what was installed.
pub fn ensure_all() -> StepResult {
    static RESULT: OnceLock<StepResult> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let mut installed = Vec::new();
            installed.extend(ensure_debian_packages()?);
            installed.extend(ensure_rustup_parts()?);
            if installed.is_empty() {
                Ok("all prerequisites present".to_owned())
            } else {
                Ok(format!("installed {}", installed.join(", ")))
            }
        })
        .clone()
}

fn debian_package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|result| {
            String::from_utf8_lossy(&result.stdout).contains("install ok installed")
        })
}

fn ensure_debian_packages() -> Result<Vec<String>, String> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|package| !debian_package_installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    if !on_path("apt-get") {
        return Err(format!(
            "missing Debian packages {} and no apt-get to install them",
            missing.join(" ")
        ));
    }
    println!("    installing Debian packages: {}", missing.join(" "));
    let as_root = output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0");
    let apt = |arguments: &[&str]| {
        let mut command = if as_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command
            .args(arguments)
            .env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    run(&mut apt(&["update", "-q"]))?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    run(&mut install)?;
    Ok(missing
        .iter()
        .map(|package| format!("deb:{package}"))
        .collect())
}

fn ensure_rustup_parts() -> Result<Vec<String>, String> {
    let mut installed = Vec::new();
    let targets = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    let triples = WINDOWS_TARGETS
        .into_iter()
        .map(|target| target.triple)
        .chain([SETUP_TOOL_TARGET]);
    for triple in triples {
        if !targets.lines().any(|line| line.trim() == triple) {
            println!("    installing rustup target {triple}");
            run(Command::new("rustup").args(["target", "add", triple]))?;
            installed.push(format!("rustup:{triple}"));
        }
    }
    let components = output(Command::new("rustup").args(["component", "list", "--installed"]))?;
    for component in ["clippy", "rustfmt"] {
        if !components.lines().any(|line| line.starts_with(component)) {
            println!("    installing rustup component {component}");
            run(Command::new("rustup").args(["component", "add", component]))?;
            installed.push(format!("rustup:{component}"));
        }
    }
    Ok(installed)
}

/// Installs the nightly toolchain (minimal profile) when it is missing; Miri
/// and cargo-fuzz need it. An existing nightly is left as it is.
pub fn ensure_nightly() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let present = Command::new("rustup")
                .args(["run", "nightly", "rustc", "--version"])
                .output()
                .is_ok_and(|result| result.status.success());
            if present {
                return Ok(());
            }
            println!("    installing the nightly toolchain (minimal profile)");
            run(Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
            ]))
        })
        .clone()
}
