//! Installing QEMU and building the qtest accelerator module Debian leaves out.
//!
//! Debian's `qemu-system-x86` ships the qtest protocol server but not the
//! `accel-qtest-x86_64.so` module, so `-machine accel=qtest` fails. The
//! module is rebuilt from Debian's own source package for exactly the
//! installed version, configured with the installed binary's package version
//! string (QEMU refuses modules whose build stamp differs), and loaded
//! through `QEMU_MODULE_DIR`. The result is cached outside the repository,
//! keyed by the installed package version, so it is built once per QEMU
//! update.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The Debian package providing `qemu-system-x86_64`.
const PACKAGE: &str = "qemu-system-x86";
/// The module this harness needs.
pub const MODULE_FILE: &str = "accel-qtest-x86_64.so";
/// Default cache root (override with `RSWAVERT_QEMU_CACHE`).
const DEFAULT_CACHE: &str = "/var/cache/rswavert-qemu";
/// The deb-src list this harness adds.
const SOURCES_FILE: &str = "/etc/apt/sources.list.d/rswavert-qemu-src.sources";
/// Packages needed to configure and build the module.
const BUILD_DEPS: &[&str] = &[
    "dpkg-dev",
    "flex",
    "bison",
    "libglib2.0-dev",
    "libpixman-1-dev",
    "libslirp-dev",
    "ninja-build",
    "meson",
    "libfdt-dev",
    "python3-venv",
];

/// A usable QEMU: the binary and a module directory holding the qtest
/// accelerator built for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuInstall {
    /// `qemu-system-x86_64`.
    pub binary: PathBuf,
    /// Directory to pass as `QEMU_MODULE_DIR`.
    pub module_dir: PathBuf,
    /// Installed Debian package version, the cache key.
    pub package_version: String,
    /// The binary's `--with-pkgversion` string.
    pub pkgversion: String,
    /// Seconds the module build took when it was built (read back from the
    /// cache afterwards).
    pub build_seconds: Option<u64>,
    /// Whether this call built the module (false: cache hit).
    pub built_now: bool,
}

fn command_output(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn run_logged(command: &mut Command, log: &Path) -> Result<(), String> {
    let file =
        fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = file
        .try_clone()
        .map_err(|e| format!("cannot reuse {}: {e}", log.display()))?;
    let status = command
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        let text = fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let mut message = format!(
            "{command:?} failed ({status}); last lines of {}:",
            log.display()
        );
        for line in tail.iter().rev() {
            let _ = write!(message, "\n  {line}");
        }
        Err(message)
    }
}

fn installed_version() -> Option<String> {
    command_output("dpkg-query", &["-W", "-f=${Version}\t${Status}", PACKAGE])
        .ok()
        .and_then(|text| {
            let (version, status) = text.split_once('\t')?;
            status.ends_with(" installed").then(|| version.to_owned())
        })
}

fn is_root() -> bool {
    command_output("id", &["-u"]).is_ok_and(|uid| uid == "0")
}

fn apt_install(packages: &[&str], log: &Path) -> Result<(), String> {
    if !is_root() {
        return Err(format!(
            "{} missing and not running as root: install them with apt-get",
            packages.join(" ")
        ));
    }
    let mut command = Command::new("apt-get");
    command
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(packages);
    run_logged(&mut command, log)
}

/// `pkgversion` from `QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)`.
fn pkgversion_of(binary: &Path) -> Result<String, String> {
    let text = command_output(&binary.to_string_lossy(), &["--version"])?;
    let first = text.lines().next().unwrap_or_default();
    let open = first.find('(');
    let close = first.rfind(')');
    match (open, close) {
        (Some(open), Some(close)) if close > open => Ok(first[open + 1..close].to_owned()),
        _ => Err(format!("no package version in `{first}`")),
    }
}

/// The source version of a binary package version: a binary-only rebuild
/// (`+bN`) has no source package of its own.
fn source_version(binary_version: &str) -> &str {
    match binary_version.rfind("+b") {
        Some(at) if binary_version[at + 2..].chars().all(|c| c.is_ascii_digit()) => {
            &binary_version[..at]
        }
        _ => binary_version,
    }
}

/// deb-src stanzas mirroring the machine's deb822 `deb` stanzas (same URIs,
/// suites, components and keys).
fn deb_src_stanzas(sources_dir: &Path) -> String {
    let mut out = String::from(
        "# Added by rswavert's QEMU harness (crates/wavert-qemu): source packages\n\
         # for rebuilding the qtest accelerator module Debian leaves out.\n",
    );
    let Ok(entries) = fs::read_dir(sources_dir) else {
        return out;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "sources")
                && p.file_name()
                    .is_some_and(|n| n != "rswavert-qemu-src.sources")
        })
        .collect();
    paths.sort();
    for path in paths {
        let text = fs::read_to_string(&path).unwrap_or_default();
        for stanza in text.split("\n\n") {
            let is_deb = stanza
                .lines()
                .any(|l| l.trim() == "Types: deb" || l.trim().starts_with("Types: deb "));
            let debian = stanza.lines().any(|l| l.contains("debian.org/debian"));
            if !is_deb || !debian {
                continue;
            }
            out.push('\n');
            for line in stanza.lines().filter(|l| !l.trim_start().starts_with('#')) {
                if line.trim_start().starts_with("Types:") {
                    out.push_str("Types: deb-src\n");
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
    }
    out
}

fn ensure_deb_src(source: &str, log_dir: &Path) -> Result<(), String> {
    let wanted = format!("qemu={source}");
    let known = command_output("apt-cache", &["showsrc", "--only-source", "qemu"])
        .unwrap_or_default()
        .lines()
        .any(|l| l == format!("Version: {source}"));
    if known {
        return Ok(());
    }
    let stanzas = deb_src_stanzas(Path::new("/etc/apt/sources.list.d"));
    if !stanzas.contains("Types: deb-src") {
        return Err("no deb822 Debian source list found to derive a deb-src line from".into());
    }
    fs::write(SOURCES_FILE, stanzas).map_err(|e| format!("cannot write {SOURCES_FILE}: {e}"))?;
    run_logged(
        Command::new("apt-get").arg("update"),
        &log_dir.join("apt-update.log"),
    )?;
    let known = command_output("apt-cache", &["showsrc", "--only-source", "qemu"])
        .unwrap_or_default()
        .lines()
        .any(|l| l == format!("Version: {source}"));
    if known {
        Ok(())
    } else {
        Err(format!(
            "apt has no source for {wanted} even with {SOURCES_FILE}"
        ))
    }
}

fn cache_root() -> PathBuf {
    env::var_os("RSWAVERT_QEMU_CACHE").map_or_else(|| PathBuf::from(DEFAULT_CACHE), PathBuf::from)
}

fn build_module(
    cache: &Path,
    version: &str,
    pkgversion: &str,
    module_dir: &Path,
) -> Result<u64, String> {
    let started = Instant::now();
    let logs = cache.join("logs");
    fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    let missing: Vec<&str> = BUILD_DEPS
        .iter()
        .copied()
        .filter(|p| {
            command_output("dpkg-query", &["-W", "-f=${Status}", p])
                .map_or(true, |s| !s.ends_with(" installed"))
        })
        .collect();
    if !missing.is_empty() {
        apt_install(&missing, &logs.join("build-deps.log"))?;
    }
    let source = source_version(version);
    let upstream = source
        .split_once(':')
        .map_or(source, |(_, rest)| rest)
        .split('-')
        .next()
        .unwrap_or_default();
    let tree = cache.join(format!("qemu-{upstream}"));
    if !tree.join("configure").is_file() {
        ensure_deb_src(source, &logs)?;
        run_logged(
            Command::new("apt-get").current_dir(cache).args([
                "source",
                "--only-source",
                &format!("qemu={source}"),
            ]),
            &logs.join("apt-source.log"),
        )?;
    }
    if !tree.join("configure").is_file() {
        return Err(format!(
            "apt-get source left no {}",
            tree.join("configure").display()
        ));
    }
    let build = cache.join("build");
    if !build.join("build.ninja").is_file() {
        fs::create_dir_all(&build)
            .map_err(|e| format!("cannot create {}: {e}", build.display()))?;
        run_logged(
            Command::new(tree.join("configure"))
                .current_dir(&build)
                .args([
                    "--enable-modules",
                    "--target-list=x86_64-softmmu",
                    &format!("--with-pkgversion={pkgversion}"),
                ]),
            &logs.join("configure.log"),
        )?;
    }
    run_logged(
        Command::new("ninja")
            .current_dir(&build)
            .args(["-j2", MODULE_FILE]),
        &logs.join("ninja.log"),
    )?;
    fs::create_dir_all(module_dir)
        .map_err(|e| format!("cannot create {}: {e}", module_dir.display()))?;
    // Copy then rename, so a concurrent reader never sees half a module.
    let partial = module_dir.join(format!("{MODULE_FILE}.partial"));
    fs::copy(build.join(MODULE_FILE), &partial)
        .map_err(|e| format!("cannot copy the module: {e}"))?;
    fs::rename(&partial, module_dir.join(MODULE_FILE))
        .map_err(|e| format!("cannot place the module: {e}"))?;
    let seconds = started.elapsed().as_secs();
    let _ = fs::write(cache.join("build-seconds"), seconds.to_string());
    Ok(seconds)
}

/// Makes sure QEMU and its qtest accelerator module are usable.
///
/// Installs and builds what is missing. Idempotent: a second call finds the
/// cached module for the installed package version and returns at once.
///
/// # Errors
/// Why QEMU cannot be set up (not Debian, not root for a missing package,
/// no source package, a failed build), with the log to read.
pub fn ensure_qemu() -> Result<QemuInstall, String> {
    let cache_base = cache_root();
    fs::create_dir_all(&cache_base)
        .map_err(|e| format!("cannot create {}: {e}", cache_base.display()))?;
    let version = if let Some(version) = installed_version() {
        version
    } else {
        apt_install(&[PACKAGE], &cache_base.join("install-qemu.log"))?;
        installed_version().ok_or_else(|| format!("{PACKAGE} still not installed"))?
    };
    let binary = PathBuf::from("/usr/bin/qemu-system-x86_64");
    if !binary.is_file() {
        return Err(format!(
            "{PACKAGE} {version} installed but {} missing",
            binary.display()
        ));
    }
    let pkgversion = pkgversion_of(&binary)?;
    let key: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+.-~".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cache = cache_base.join(key);
    let module_dir = cache.join("modules");
    let mut built_now = false;
    let build_seconds = if module_dir.join(MODULE_FILE).is_file() {
        fs::read_to_string(cache.join("build-seconds"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    } else {
        fs::create_dir_all(&cache)
            .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
        built_now = true;
        Some(build_module(&cache, &version, &pkgversion, &module_dir)?)
    };
    Ok(QemuInstall {
        binary,
        module_dir,
        package_version: version,
        pkgversion,
        build_seconds,
        built_now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_rebuilds_map_to_their_source_version() {
        assert_eq!(
            source_version("1:7.2+dfsg-7+deb12u18+b3"),
            "1:7.2+dfsg-7+deb12u18"
        );
        assert_eq!(
            source_version("1:7.2+dfsg-7+deb12u15"),
            "1:7.2+dfsg-7+deb12u15"
        );
        assert_eq!(source_version("1:8.0+bigversion-1"), "1:8.0+bigversion-1");
    }

    #[test]
    fn deb_src_mirrors_deb_stanzas() {
        let dir = env::temp_dir().join(format!("wavert-qemu-src-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("debian.sources"),
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n\n\
             Types: deb\nURIs: https://example.invalid/apt\nSuites: x\nComponents: main\n",
        )
        .unwrap();
        let text = deb_src_stanzas(&dir);
        fs::remove_dir_all(&dir).unwrap();
        assert!(
            text.contains("Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n")
        );
        assert!(!text.contains("example.invalid"));
    }
}
