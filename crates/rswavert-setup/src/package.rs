//! The driver package on disk: which folder, which files, which devices its
//! INF installs on, and whether it is for this machine's processor.
//!
//! The package layout is `cargo xtask cross`'s: one folder per architecture
//! named as the INF decorates it (`amd64/`, `arm64/`), each holding
//! `rswavert.inf`, `rswavert.sys`, on Windows builds `rswavert.cat` and the
//! test certificate `rswavert.cer`, and this tool.

use std::path::{Path, PathBuf};

/// The package's file stem.
pub const DRIVER_NAME: &str = "rswavert";

/// The test certificate wdk-build's `cargo make` flow signs packages with
/// (`WDRLocalTestCert`, exported beside the package).
pub const WDK_BUILD_TEST_CERTIFICATE: &str = "WDRLocalTestCert.cer";

/// A driver package found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// The folder holding the INF.
    pub dir: PathBuf,
    /// `rswavert.inf`.
    pub inf: PathBuf,
    /// The catalog, if the package has one (a package signed on Windows).
    pub catalog: Option<PathBuf>,
    /// The test certificate, if the package has one.
    pub certificate: Option<PathBuf>,
    /// The INF's architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// Hardware IDs of root-enumerated models: devices this tool creates.
    pub root_hardware_ids: Vec<String>,
    /// Hardware IDs of bus-enumerated models (PCI): devices this tool updates
    /// if they exist.
    pub bus_hardware_ids: Vec<String>,
}

/// What the `[Manufacturer]` and Models sections of an INF say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InfModels {
    /// Architectures of the `NT<arch>...` decorations, lowercased.
    pub architectures: Vec<String>,
    /// Every model's hardware ID, in order.
    pub hardware_ids: Vec<String>,
}

/// Reads the decorations and hardware IDs of an INF (the parts `install`
/// needs; the INF's full rules are checked at build time, `tests/inf_rules.rs`).
#[must_use]
pub fn read_models(inf: &str) -> InfModels {
    let mut models = InfModels::default();
    let mut section = String::new();
    let mut models_sections: Vec<String> = Vec::new();
    // First pass: the [Manufacturer] entries name the Models sections.
    for line in inf.lines().map(strip_comment) {
        if let Some(name) = section_name(line) {
            section = name.to_ascii_lowercase();
        } else if section == "manufacturer" {
            let Some((_, value)) = line.split_once('=') else {
                continue;
            };
            let mut fields = value.split(',').map(str::trim);
            let base = fields.next().unwrap_or_default().to_owned();
            for decoration in fields {
                if let Some(architecture) = decoration
                    .get(2..)
                    .filter(|_| decoration.to_ascii_uppercase().starts_with("NT"))
                    .and_then(|rest| rest.split('.').next())
                {
                    models.architectures.push(architecture.to_ascii_lowercase());
                }
                models_sections.push(format!("{base}.{decoration}").to_ascii_lowercase());
            }
        }
    }
    for line in inf.lines().map(strip_comment) {
        if let Some(name) = section_name(line) {
            section = name.to_ascii_lowercase();
        } else if models_sections.contains(&section) {
            if let Some((_, value)) = line.split_once('=') {
                if let Some(id) = value.split(',').nth(1).map(str::trim) {
                    if !id.is_empty() && !models.hardware_ids.iter().any(|known| known == id) {
                        models.hardware_ids.push(id.to_owned());
                    }
                }
            }
        }
    }
    models
}

fn strip_comment(line: &str) -> &str {
    line.split(';').next().unwrap_or_default().trim()
}

fn section_name(line: &str) -> Option<&str> {
    line.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

/// Why no usable package was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageError {
    /// No `rswavert.inf` in the folder or its architecture subfolder.
    NotFound(PathBuf),
    /// The INF is there; files it installs are not.
    Incomplete(Vec<PathBuf>),
    /// The INF is for another processor.
    WrongArchitecture {
        /// What the INF is for.
        package: Vec<String>,
        /// What this machine is.
        host: String,
    },
    /// The INF cannot be read.
    Unreadable(String),
}

impl PackageError {
    /// The message for the user.
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            Self::NotFound(dir) => format!(
                "no {DRIVER_NAME}.inf in {} (nor in its amd64\\ or arm64\\ subfolder): \
                 run the tool from the unpacked package, or name it with --package",
                dir.display()
            ),
            Self::Incomplete(missing) => format!(
                "the package is incomplete, missing: {}",
                missing
                    .iter()
                    .map(|path| path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::WrongArchitecture { package, host } => format!(
                "this package is for {} but this Windows runs on {host}: use the package's {host}\\ folder",
                package.join(", ")
            ),
            Self::Unreadable(reason) => format!("the INF cannot be read: {reason}"),
        }
    }
}

/// Finds the package in `dir`, or in `dir/<host_architecture>/`, for a
/// machine whose processor is `host_architecture` (`amd64`, `arm64`).
///
/// # Errors
///
/// No INF, files missing, or the INF is for another processor.
pub fn discover(dir: &Path, host_architecture: &str) -> Result<Package, PackageError> {
    let inf_name = format!("{DRIVER_NAME}.inf");
    let folder = [dir.to_path_buf(), dir.join(host_architecture)]
        .into_iter()
        .find(|candidate| candidate.join(&inf_name).is_file())
        .ok_or_else(|| PackageError::NotFound(dir.to_path_buf()))?;
    let inf = folder.join(&inf_name);
    let text = std::fs::read(&inf)
        .map_err(|error| PackageError::Unreadable(format!("{}: {error}", inf.display())))?;
    let models = read_models(&String::from_utf8_lossy(&text));
    if !models
        .architectures
        .iter()
        .any(|architecture| architecture == host_architecture)
    {
        return Err(PackageError::WrongArchitecture {
            package: models.architectures,
            host: host_architecture.to_owned(),
        });
    }
    let sys = folder.join(format!("{DRIVER_NAME}.sys"));
    if !sys.is_file() {
        return Err(PackageError::Incomplete(vec![sys]));
    }
    let existing = |name: String| Some(folder.join(name)).filter(|path| path.is_file());
    let (root_hardware_ids, bus_hardware_ids) = models
        .hardware_ids
        .iter()
        .cloned()
        .partition(|id| id.to_ascii_uppercase().starts_with("ROOT\\"));
    Ok(Package {
        catalog: existing(format!("{DRIVER_NAME}.cat")),
        // Ours, or the one wdk-build's `cargo make` generates and signs with.
        certificate: existing(format!("{DRIVER_NAME}.cer"))
            .or_else(|| existing(WDK_BUILD_TEST_CERTIFICATE.to_owned())),
        dir: folder.clone(),
        inf,
        architecture: host_architecture.to_owned(),
        root_hardware_ids,
        bus_hardware_ids,
    })
}

/// The INF architecture of the machine's own processor.
///
/// From the native machine `IsWow64Process2` reports (`IMAGE_FILE_MACHINE_*`,
/// winnt.h): an x64 tool running emulated on ARM64 must still pick the ARM64
/// driver.
#[must_use]
pub const fn architecture_of_machine(native_machine: u16) -> Option<&'static str> {
    match native_machine {
        0x8664 => Some("amd64"),
        0xAA64 => Some("arm64"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real template, stamped as `cargo xtask cross` does for each
    /// architecture (its `$ARCH$`; the AC'97 and HD Audio left out of ARM64 the
    /// same way).
    const INX: &str = include_str!("../../../inf/rswavert.inx");

    #[test]
    fn the_templates_models_and_hardware_ids() {
        let models = read_models(&INX.replace("$ARCH$", "amd64"));
        assert_eq!(models.architectures, ["amd64"]);
        assert_eq!(
            models.hardware_ids,
            [
                "ROOT\\rswavert_cable",
                "PCI\\VEN_8086&DEV_2415",
                "PCI\\VEN_8086&DEV_2668",
                "PCI\\VEN_8086&DEV_293E"
            ]
        );
    }

    fn package_dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("rswavert-setup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (file, content) in files {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        dir
    }

    #[test]
    fn a_package_root_with_architecture_folders_finds_this_machines() {
        let amd64 = INX.replace("$ARCH$", "amd64");
        let arm64 = INX.replace("$ARCH$", "arm64");
        let dir = package_dir(
            "root",
            &[
                ("amd64/rswavert.inf", &amd64),
                ("amd64/rswavert.sys", "MZ"),
                ("amd64/rswavert.cat", "cat"),
                ("arm64/rswavert.inf", &arm64),
                ("arm64/rswavert.sys", "MZ"),
                ("arm64/WDRLocalTestCert.cer", "cert"),
            ],
        );
        let package = discover(&dir, "amd64").unwrap();
        assert_eq!(package.dir, dir.join("amd64"));
        assert_eq!(package.root_hardware_ids, ["ROOT\\rswavert_cable"]);
        assert_eq!(
            package.bus_hardware_ids,
            [
                "PCI\\VEN_8086&DEV_2415",
                "PCI\\VEN_8086&DEV_2668",
                "PCI\\VEN_8086&DEV_293E"
            ]
        );
        assert_eq!(
            package.catalog,
            Some(dir.join("amd64").join("rswavert.cat"))
        );
        assert_eq!(package.certificate, None);
        let arm64 = discover(&dir, "arm64").unwrap();
        assert_eq!(arm64.dir, dir.join("arm64"));
        assert_eq!(
            arm64.certificate,
            Some(dir.join("arm64").join("WDRLocalTestCert.cer"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_incomplete_and_foreign_packages_are_refused() {
        let dir = package_dir("bad", &[("rswavert.inf", &INX.replace("$ARCH$", "arm64"))]);
        let error = discover(&dir, "amd64").unwrap_err();
        assert_eq!(
            error,
            PackageError::WrongArchitecture {
                package: vec!["arm64".to_owned()],
                host: "amd64".to_owned()
            }
        );
        assert!(error.message().contains("use the package's amd64\\ folder"));
        assert_eq!(
            discover(&dir, "arm64").unwrap_err(),
            PackageError::Incomplete(vec![dir.join("rswavert.sys")])
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            discover(&dir, "amd64"),
            Err(PackageError::NotFound(_))
        ));
    }

    #[test]
    fn native_machines_name_their_package_folder() {
        assert_eq!(architecture_of_machine(0x8664), Some("amd64"));
        assert_eq!(architecture_of_machine(0xAA64), Some("arm64"));
        assert_eq!(architecture_of_machine(0x014C), None);
    }
}
