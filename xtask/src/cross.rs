//! `cargo xtask cross`: the Windows driver, built on Linux and checked.

use std::{fs, path::PathBuf, sync::OnceLock};

use object::pe::{IMAGE_SCN_MEM_EXECUTE, IMAGE_SCN_MEM_WRITE};

use crate::{
    exports, inf, pe_check, pe_checksum,
    prereq::{self, WINDOWS_TARGET},
    util::{cargo, run, target_dir, workspace_root, StepResult},
    wdk_host,
};

/// The driver package's name (and the `.sys`/`.inf` stem).
pub const DRIVER_NAME: &str = "rswavert";

/// Where `cargo xtask cross` puts the driver package.
pub fn package_dir() -> PathBuf {
    target_dir().join("package").join(DRIVER_NAME)
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

/// A cargo command for the driver package on the Windows target.
pub fn driver_cargo(subcommand: &str) -> Result<std::process::Command, String> {
    let mut command = cargo();
    command
        .current_dir(workspace_root())
        .arg(subcommand)
        .args(["--package", DRIVER_NAME, "--target", WINDOWS_TARGET])
        .args(wdk_host::cross_cargo_config())
        .envs(wdk_host::cross_environment()?);
    Ok(command)
}

/// Builds the driver, packages it and checks the image.
pub fn run_cross() -> StepResult {
    let modules = prepare()?;
    run(driver_cargo("build")?.arg("--release"))?;

    let built = target_dir()
        .join(WINDOWS_TARGET)
        .join("release")
        .join(format!("{DRIVER_NAME}.dll"));
    let package = package_dir();
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
    let stamped = inf::stamp(&inx, inf::ARCH_AMD64, inf::Date::today(), &version)?;
    let inf_path = package.join(format!("{DRIVER_NAME}.inf"));
    fs::write(&inf_path, stamped)
        .map_err(|error| format!("write {}: {error}", inf_path.display()))?;

    let image = fs::read(&sys).map_err(|error| format!("read {}: {error}", sys.display()))?;
    let facts = pe_check::read_facts(&image)?;
    let problems = pe_check::check(&facts, &modules);
    if !problems.is_empty() {
        return Err(format!(
            "{} fails the image check:\n  {}",
            sys.display(),
            problems.join("\n  ")
        ));
    }
    negative_controls(&image, &facts, &modules)?;

    println!("    driver image: {}", sys.display());
    println!("    driver INF:   {}", inf_path.display());
    print!("{}", pe_check::summary(&facts));
    Ok(format!(
        "{} ({} bytes, {} imports) and {} pass the image checks",
        sys.display(),
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
fn build_controls(image: &[u8], facts: &pe_check::ImageFacts) -> Vec<NegativeControl> {
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
    vec![
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
    modules: &[exports::ModuleExports],
) -> Result<(), String> {
    let controls = build_controls(image, facts);
    for control in &controls {
        let what = control.what;
        let mutated = control
            .image
            .as_deref()
            .ok_or_else(|| format!("negative control `{what}`: could not build it"))?;
        let facts = pe_check::read_facts(mutated)
            .map_err(|error| format!("negative control `{what}`: {error}"))?;
        let problems = pe_check::check(&facts, modules);
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

/// Clippy on the driver for the Windows target.
pub fn run_driver_clippy() -> StepResult {
    prepare()?;
    run(driver_cargo("clippy")?.args(["--", "-D", "warnings"]))?;
    Ok(format!(
        "clippy clean for {DRIVER_NAME} on {WINDOWS_TARGET}"
    ))
}
