//! The setup-tool stage: `rswavert-setup` linted for both Windows targets,
//! linked for x64 and put in the x64 driver package.
//!
//! The x64 executable is linked for `x86_64-pc-windows-gnu` with MinGW-w64's
//! GCC and import libraries (Debian `gcc-mingw-w64-x86-64-win32`): the MSVC
//! target needs the Windows SDK's `kernel32.lib` and the MSVC CRT
//! (`libcmt.lib`), which only Microsoft distributes. An ARM64 executable
//! would need an `aarch64-w64-mingw32` toolchain (llvm-mingw), which no
//! registry reachable here carries, so ARM64 is type-checked and linted
//! only. The link is checked: machine AMD64, a console program, and the
//! DLLs the tool's Windows calls live in among its imports.

use std::fs;

use object::pe::{IMAGE_FILE_MACHINE_AMD64, IMAGE_SUBSYSTEM_WINDOWS_CUI};
use object::read::pe::PeFile64;
use object::Object;

use crate::cross;
use crate::prereq::{ARM64, SETUP_TOOL_TARGET, X64};
use crate::util::{cargo, run, target_dir, workspace_root, StepResult};

/// The crate and executable name.
const TOOL: &str = "rswavert-setup";

/// DLLs the executable must import: the `SetupAPI`, newdev and `CfgMgr32`
/// calls of `install`/`uninstall`/`status`, COM and the property store for
/// `MMDevice`, and crypt32 for `--trust-certificate`.
const REQUIRED_DLLS: &[&str] = &[
    "setupapi.dll",
    "newdev.dll",
    "cfgmgr32.dll",
    "ole32.dll",
    "crypt32.dll",
];

/// What the check reads from the linked executable.
#[derive(Debug, Default)]
struct ExeFacts {
    machine: u16,
    subsystem: u16,
    /// Imported DLL names, lowercased.
    dlls: Vec<String>,
}

fn read_facts(data: &[u8]) -> Result<ExeFacts, String> {
    let pe = PeFile64::parse(data).map_err(|error| format!("not a PE32+ image: {error}"))?;
    let headers = pe.nt_headers();
    let mut dlls: Vec<String> = pe
        .imports()
        .map_err(|error| format!("imports: {error}"))?
        .iter()
        .map(|import| String::from_utf8_lossy(import.library()).to_ascii_lowercase())
        .collect();
    dlls.sort();
    dlls.dedup();
    Ok(ExeFacts {
        machine: headers.file_header.machine.get(object::LittleEndian),
        subsystem: headers.optional_header.subsystem.get(object::LittleEndian),
        dlls,
    })
}

/// Every way the executable falls short.
fn problems(facts: &ExeFacts) -> Vec<String> {
    let mut problems = Vec::new();
    if facts.machine != IMAGE_FILE_MACHINE_AMD64 {
        problems.push(format!("machine {:#06x}, not AMD64", facts.machine));
    }
    if facts.subsystem != IMAGE_SUBSYSTEM_WINDOWS_CUI {
        problems.push(format!(
            "subsystem {}, not a console program (3)",
            facts.subsystem
        ));
    }
    for dll in REQUIRED_DLLS {
        if !facts.dlls.iter().any(|imported| imported == dll) {
            problems.push(format!("does not import {dll}"));
        }
    }
    problems
}

/// The stage.
pub fn run_stage() -> StepResult {
    for target in [X64.triple, ARM64.triple] {
        run(cargo().current_dir(workspace_root()).args([
            "clippy",
            "--package",
            TOOL,
            "--all-targets",
            "--target",
            target,
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    run(cargo().current_dir(workspace_root()).args([
        "build",
        "--release",
        "--package",
        TOOL,
        "--target",
        SETUP_TOOL_TARGET,
    ]))?;
    let built = target_dir()
        .join(SETUP_TOOL_TARGET)
        .join("release")
        .join(format!("{TOOL}.exe"));
    let data = fs::read(&built).map_err(|error| format!("read {}: {error}", built.display()))?;
    let facts = read_facts(&data)?;
    let found = problems(&facts);
    if !found.is_empty() {
        return Err(format!(
            "{} fails its check: {}",
            built.display(),
            found.join("; ")
        ));
    }
    let package = cross::package_dir(&X64);
    fs::create_dir_all(&package)
        .map_err(|error| format!("create {}: {error}", package.display()))?;
    let packaged = package.join(format!("{TOOL}.exe"));
    fs::write(&packaged, &data)
        .map_err(|error| format!("write {}: {error}", packaged.display()))?;
    Ok(format!(
        "clippy clean for {} and {}; {} ({} bytes, AMD64 console, imports {})",
        X64.triple,
        ARM64.triple,
        packaged.display(),
        data.len(),
        facts.dlls.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ExeFacts {
        ExeFacts {
            machine: IMAGE_FILE_MACHINE_AMD64,
            subsystem: IMAGE_SUBSYSTEM_WINDOWS_CUI,
            dlls: REQUIRED_DLLS.iter().map(|dll| (*dll).to_owned()).collect(),
        }
    }

    #[test]
    fn a_complete_console_x64_tool_passes() {
        assert!(problems(&good()).is_empty());
    }

    #[test]
    fn a_wrong_machine_a_gui_program_or_a_missing_dll_fails() {
        let mut arm64 = good();
        arm64.machine = object::pe::IMAGE_FILE_MACHINE_ARM64;
        assert_eq!(problems(&arm64), ["machine 0xaa64, not AMD64"]);
        let mut gui = good();
        gui.subsystem = object::pe::IMAGE_SUBSYSTEM_WINDOWS_GUI;
        assert_eq!(problems(&gui), ["subsystem 2, not a console program (3)"]);
        let mut no_newdev = good();
        no_newdev.dlls.retain(|dll| dll != "newdev.dll");
        assert_eq!(problems(&no_newdev), ["does not import newdev.dll"]);
    }

    #[test]
    fn a_non_pe_file_is_refused() {
        assert!(read_facts(b"MZ not really").is_err());
    }
}
