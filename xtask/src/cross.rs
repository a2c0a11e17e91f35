//! `cargo xtask cross`: the Windows driver, built on Linux and checked.

use std::{fs, path::PathBuf, sync::OnceLock};

use object::pe::{IMAGE_SCN_MEM_EXECUTE, IMAGE_SCN_MEM_WRITE};

use crate::{
    exports, inf, pe_check, pe_checksum,
    prereq::{self, WindowsTarget, ARM64, WINDOWS_TARGETS, X64},
    util::{cargo, run, target_dir, workspace_root, StepResult},
    wdk_host,
};

/// The driver package's name (and the `.sys`/`.inf` stem).
pub const DRIVER_NAME: &str = "rswavert";

/// Where `cargo xtask cross` puts the driver packages: one folder per
/// architecture (`amd64/`, `arm64/`, the INF decorations), each a complete
/// package (`.sys`, `.inf`, the setup tool) that `pnputil /add-driver` or
/// `rswavert-setup install` takes as it is.
pub fn package_root() -> PathBuf {
    target_dir().join("package").join(DRIVER_NAME)
}

/// The driver package of one architecture.
pub fn package_dir(target: &WindowsTarget) -> PathBuf {
    package_root().join(target.inf.decoration)
}

/// Prepares the patched wdk-build and the WDK stand-in; returns the export lists.
/// Runs once per process; later calls return the first result.
pub fn prepare() -> Result<Vec<exports::ModuleExports>, String> {
    static PREPARED: OnceLock<Result<Vec<exports::ModuleExports>, String>> = OnceLock::new();
    PREPARED
        .get_or_init(|| {
            prereq::ensure_all()?;
            let modules = exports::load_all()?;
            println!(
                "    kernel export lists: {}",
                exports::cross_check_all(&modules)?
            );
            wdk_host::prepare_patched_wdk_build()?;
            wdk_host::prepare_wdk_root(&modules)?;
            Ok(modules)
        })
        .clone()
}

/// A cargo command for the driver package on a Windows target.
pub fn driver_cargo(
    subcommand: &str,
    target: &WindowsTarget,
) -> Result<std::process::Command, String> {
    let mut command = cargo();
    command
        .current_dir(workspace_root())
        .arg(subcommand)
        .args(["--package", DRIVER_NAME, "--target", target.triple])
        .args(wdk_host::cross_cargo_config(target))
        .envs(wdk_host::cross_environment()?);
    Ok(command)
}

/// The cross stage: the driver for every architecture the headers here can
/// serve, packaged and checked; an architecture they cannot serve is named
/// in the summary with the reason (never dropped silently).
pub fn run_cross() -> StepResult {
    let mut summaries = Vec::new();
    for target in WINDOWS_TARGETS {
        println!("    --- {} ---", target.triple);
        match build_blocker(target)? {
            None => summaries.push(run_cross_for(target)?),
            Some(reason) => {
                println!("    {} not built: {reason}", target.triple);
                summaries.push(format!(
                    "{} NOT BUILT (MinGW-w64 headers lack ARM64 kernel definitions)",
                    target.machine_name
                ));
            }
        }
    }
    Ok(summaries.join("; "))
}

/// What keeps a target from being built on this host, if anything.
fn build_blocker(target: &WindowsTarget) -> Result<Option<String>, String> {
    if target.machine == ARM64.machine {
        wdk_host::installed_arm64_header_blocker()
    } else {
        Ok(None)
    }
}

/// Builds the driver for one target, packages it and checks the image.
pub fn run_cross_for(target: &WindowsTarget) -> StepResult {
    let modules = prepare()?;
    if let Some(reason) = build_blocker(target)? {
        return Err(format!("{} cannot be built here: {reason}", target.triple));
    }
    run(driver_cargo("build", target)?.arg("--release"))?;

    let built = target_dir()
        .join(target.triple)
        .join("release")
        .join(format!("{DRIVER_NAME}.dll"));
    let package = package_dir(target);
    fs::create_dir_all(&package)
        .map_err(|error| format!("create {}: {error}", package.display()))?;
    let sys = package.join(format!("{DRIVER_NAME}.sys"));
    // Post-link step: rust-lld leaves CheckSum at 0, which Windows refuses in
    // a kernel image. Only the packaged copy is stamped, after every byte of
    // it is final (signing on Windows leaves the field out of its hash).
    let mut linked =
        fs::read(&built).map_err(|error| format!("read {}: {error}", built.display()))?;
    let checksum = pe_checksum::write_checksum(&mut linked)
        .map_err(|error| format!("{}: {error}", built.display()))?;
    fs::write(&sys, &linked).map_err(|error| format!("write {}: {error}", sys.display()))?;
    println!("    checksum {checksum:#010x} written to {}", sys.display());
    let pdb = built.with_extension("pdb");
    if pdb.is_file() {
        fs::copy(&pdb, package.join(format!("{DRIVER_NAME}.pdb")))
            .map_err(|error| format!("copy {}: {error}", pdb.display()))?;
    }

    let inx_path = workspace_root()
        .join("inf")
        .join(format!("{DRIVER_NAME}.inx"));
    let inx = fs::read_to_string(&inx_path)
        .map_err(|error| format!("read {}: {error}", inx_path.display()))?;
    let version = inf::four_part_version(env!("CARGO_PKG_VERSION"))?;
    let stamped = inf::stamp(&inx, target.inf, inf::Date::today(), &version)?;
    let inf_path = package.join(format!("{DRIVER_NAME}.inf"));
    fs::write(&inf_path, stamped)
        .map_err(|error| format!("write {}: {error}", inf_path.display()))?;

    let image = fs::read(&sys).map_err(|error| format!("read {}: {error}", sys.display()))?;
    let facts = pe_check::read_facts(&image)?;
    let problems = pe_check::check(&facts, target, &modules);
    if !problems.is_empty() {
        return Err(format!(
            "{} fails the image check:\n  {}",
            sys.display(),
            problems.join("\n  ")
        ));
    }
    negative_controls(&image, &facts, target, &modules)?;

    println!("    driver image: {}", sys.display());
    println!("    driver INF:   {}", inf_path.display());
    print!("{}", pe_check::summary(&facts, target));
    Ok(format!(
        "{} ({}, {} bytes, {} imports) and {} pass the image checks",
        sys.display(),
        target.machine_name,
        facts.file_size,
        facts.imports.len(),
        inf_path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    ))
}

/// A byte-patched copy of the real image that the check must reject.
struct NegativeControl {
    /// What was broken, for the messages.
    what: &'static str,
    /// The broken copy, or `None` if the image lacks what the patch needs.
    image: Option<Vec<u8>>,
    /// Text one of the problems must contain: the control's own reason.
    expected: &'static str,
    /// A checksum control: the only copy allowed a checksum problem.
    breaks_checksum: bool,
}

/// The name a control renames an import to: the classic executable-pool
/// allocator, the first DDI the memory-integrity page lists.
const FORBIDDEN_IMPORT: &str = "ExAllocatePoolWithTag";

/// The broken copies, one per rule of the image check that a byte patch can
/// break. Every copy but the checksum ones gets its checksum recomputed, so it
/// is rejected for its own rule and not merely for a stale checksum.
fn build_controls(
    image: &[u8],
    facts: &pe_check::ImageFacts,
    target: &WindowsTarget,
) -> Vec<NegativeControl> {
    let fixed = |copy: Option<Vec<u8>>| copy.and_then(pe_check::with_checksum_fixed);
    let redirected = facts
        .imports
        .iter()
        .map(|(library, _)| library.as_str())
        .find_map(|library| pe_check::importing_user_mode_dll(image, library));
    let made_writable = facts
        .sections
        .iter()
        .find(|section| section.characteristics & IMAGE_SCN_MEM_EXECUTE != 0)
        .and_then(|section| {
            pe_check::with_section_flags(image, &section.name, IMAGE_SCN_MEM_WRITE)
        });
    let iat_made_executable = facts
        .import_address_table
        .and_then(|table| {
            facts
                .sections
                .iter()
                .find(|section| section.contains(table))
        })
        .and_then(|section| {
            pe_check::with_section_flags(image, &section.name, IMAGE_SCN_MEM_EXECUTE)
        });
    let forbidden = facts
        .imports
        .iter()
        .find(|(_, symbol)| symbol.len() >= FORBIDDEN_IMPORT.len())
        .and_then(|(_, symbol)| pe_check::importing_renamed(image, symbol, FORBIDDEN_IMPORT));
    // The other architecture's machine: an image of the right shape for the
    // wrong processor.
    let other_machine = WINDOWS_TARGETS
        .into_iter()
        .find(|other| other.machine != target.machine)
        .map_or(0, |other| other.machine);
    vec![
        NegativeControl {
            what: "the COFF machine set to the other architecture's",
            image: fixed(pe_check::with_machine(image, other_machine)),
            expected: "machine is",
            breaks_checksum: false,
        },
        NegativeControl {
            what: "FORCE_INTEGRITY cleared",
            image: fixed(pe_check::without_force_integrity(image)),
            expected: "FORCE_INTEGRITY",
            breaks_checksum: false,
        },
        NegativeControl {
            what: "an import redirected to user32.dll",
            image: fixed(redirected),
            expected: "user32.dll",
            breaks_checksum: false,
        },
        NegativeControl {
            what: "CheckSum zeroed",
            image: pe_check::with_checksum(image, 0),
            expected: "CheckSum is 0 ",
            breaks_checksum: true,
        },
        NegativeControl {
            what: "CheckSum off by one",
            image: pe_check::with_checksum(image, facts.computed_checksum.wrapping_add(1)),
            expected: "but the image sums to",
            breaks_checksum: true,
        },
        NegativeControl {
            what: "the executable section made writable",
            image: fixed(made_writable),
            expected: "is both writable and executable",
            breaks_checksum: false,
        },
        NegativeControl {
            what: "SectionAlignment set to 0x200",
            image: fixed(pe_check::with_section_alignment(image, 0x200)),
            expected: "SectionAlignment 0x200 is not a multiple of the page size",
            breaks_checksum: false,
        },
        NegativeControl {
            what: "the import address table's section made executable",
            image: fixed(iat_made_executable),
            expected: "the import address table",
            breaks_checksum: false,
        },
        NegativeControl {
            what: "an import renamed to ExAllocatePoolWithTag",
            image: fixed(forbidden),
            expected: "memory integrity: imports ExAllocatePoolWithTag",
            breaks_checksum: false,
        },
    ]
}

/// Proves, on every run, that the checker rejects broken copies of the real image.
fn negative_controls(
    image: &[u8],
    facts: &pe_check::ImageFacts,
    target: &WindowsTarget,
    modules: &[exports::ModuleExports],
) -> Result<(), String> {
    let controls = build_controls(image, facts, target);
    for control in &controls {
        let what = control.what;
        let mutated = control
            .image
            .as_deref()
            .ok_or_else(|| format!("negative control `{what}`: could not build it"))?;
        let facts = pe_check::read_facts(mutated)
            .map_err(|error| format!("negative control `{what}`: {error}"))?;
        let problems = pe_check::check(&facts, target, modules);
        let Some(reason) = problems
            .iter()
            .find(|problem| problem.contains(control.expected))
        else {
            return Err(format!(
                "negative control `{what}` was not rejected for its own reason \
                 (problems: {problems:?}): the image check is broken"
            ));
        };
        if !control.breaks_checksum
            && problems
                .iter()
                .any(|problem| problem.starts_with("CheckSum"))
        {
            return Err(format!(
                "negative control `{what}` still has a stale checksum (problems: {problems:?})"
            ));
        }
        println!("    negative control `{what}` rejected: {reason}");
    }
    println!(
        "    negative controls: all {} broken copies of the image were rejected",
        controls.len()
    );
    Ok(())
}

/// Clippy on the driver for every Windows target (the ARM64 build compiles
/// other code: the AC'97 glue is x64-only).
pub fn run_driver_clippy() -> StepResult {
    prepare()?;
    let mut checked = Vec::new();
    for target in WINDOWS_TARGETS {
        if build_blocker(target)?.is_none() {
            // In the release profile, as `cross` builds: the build scripts
            // (wdk-sys's bindgen above all) and the proc-macros are then
            // built once for both stages.
            run(driver_cargo("clippy", target)?.args(["--release", "--", "-D", "warnings"]))?;
            checked.push(target.triple);
        } else {
            println!(
                "    {} not checked: it cannot be built here (see `cross`)",
                target.triple
            );
        }
    }
    Ok(format!(
        "clippy clean for {DRIVER_NAME} on {}",
        checked.join(" and ")
    ))
}

/// The x64 package, the one the emulator runs.
pub fn x64_package_dir() -> PathBuf {
    package_dir(&X64)
}
