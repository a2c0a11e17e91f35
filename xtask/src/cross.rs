//! `cargo xtask cross`: the Windows driver, built on Linux and checked.

use std::{fs, path::PathBuf, sync::OnceLock};

use crate::{
    exports, inf, pe_check,
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
    fs::copy(&built, &sys).map_err(|error| format!("copy {}: {error}", built.display()))?;
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

/// Proves, on every run, that the checker rejects broken copies of the real image.
fn negative_controls(
    image: &[u8],
    facts: &pe_check::ImageFacts,
    modules: &[exports::ModuleExports],
) -> Result<(), String> {
    let redirected = facts
        .imports
        .iter()
        .map(|(library, _)| library.as_str())
        .find_map(|library| pe_check::importing_user_mode_dll(image, library));
    let controls = [
        (
            "FORCE_INTEGRITY cleared",
            pe_check::without_force_integrity(image),
            "FORCE_INTEGRITY",
        ),
        (
            "an import redirected to user32.dll",
            redirected,
            "user32.dll",
        ),
    ];
    for (what, mutated, expected) in controls {
        let mutated =
            mutated.ok_or_else(|| format!("negative control `{what}`: could not build it"))?;
        let problems = pe_check::check(&pe_check::read_facts(&mutated)?, modules);
        if !problems.iter().any(|problem| problem.contains(expected)) {
            return Err(format!(
                "negative control `{what}` was not rejected (problems: {problems:?}): \
                 the image check is broken"
            ));
        }
    }
    println!("    negative controls: both broken copies of the image were rejected");
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
