//! The command line: `install`, `uninstall`, `status`, `check`.

use std::path::PathBuf;

/// How `check` opens the endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareMode {
    /// Through the audio engine (the mix format; what most applications do).
    Shared,
    /// Straight to the driver (the device's own format; bit-exact expected).
    Exclusive,
}

impl ShareMode {
    /// The mode's name in reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Exclusive => "exclusive",
        }
    }
}

/// What `install` was asked to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstallOptions {
    /// The package folder; default: the folder of the tool itself.
    pub package: Option<PathBuf>,
    /// Add the package's test certificate to the machine's Root and
    /// `TrustedPublisher` stores first.
    pub trust_certificate: bool,
}

/// What `check` was asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckOptions {
    /// Seconds of test signal per mode.
    pub seconds: f64,
    /// The modes to run, in order.
    pub modes: Vec<ShareMode>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            seconds: DEFAULT_CHECK_SECONDS,
            modes: vec![ShareMode::Shared, ShareMode::Exclusive],
        }
    }
}

/// The default length of each `check` run (the emulator's main job plays
/// a few seconds too; enough for the KS position test's 100 reads).
pub const DEFAULT_CHECK_SECONDS: f64 = 3.0;

/// A parsed command line.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Add the driver package and create / update the devices.
    Install(InstallOptions),
    /// Remove the devices and the driver package.
    Uninstall,
    /// List the devices, the driver and the endpoints.
    Status,
    /// Play through the cable and analyse what comes back.
    Check(CheckOptions),
    /// Print the usage.
    Help,
}

/// The usage text.
pub const USAGE: &str = "\
usage: rswavert-setup <command> [options]

commands:
  install [--package DIR] [--trust-certificate]
          add the driver package (default: the folder this tool is in, or its
          amd64/ or arm64/ subfolder), create the virtual cable device and
          install the driver on it; the AC'97 model installs on its PCI device
          if there is one. --trust-certificate first adds the package's test
          certificate (rswavert.cer) to the machine's Root and TrustedPublisher
          stores. Needs an elevated prompt.
  uninstall
          remove the cable device(s) and the driver package. Needs elevation.
  status  the devices, their state and problem code, the driver version, and
          the audio endpoints Windows made from them with their default format.
  check [--seconds N] [--shared | --exclusive]
          play a test signal into the cable's render endpoint (WASAPI,
          event-driven; shared and exclusive unless one is named), record the
          cable's capture endpoint, and report bit-exactness, latency,
          glitches and the position rate as the emulator's main job does.
  help    show this text";

/// Parses the arguments after the program name.
///
/// # Errors
///
/// An unknown command or option, or an option without its value.
pub fn parse(arguments: &[String]) -> Result<Command, String> {
    let mut words = arguments.iter().map(String::as_str);
    let command = words.next().unwrap_or("help");
    let rest: Vec<&str> = words.collect();
    match command {
        "install" => parse_install(&rest).map(Command::Install),
        "uninstall" | "status" if !rest.is_empty() => {
            Err(format!("`{command}` takes no options, got {rest:?}"))
        }
        "uninstall" => Ok(Command::Uninstall),
        "status" => Ok(Command::Status),
        "check" => parse_check(&rest).map(Command::Check),
        "help" | "--help" | "-h" | "/?" => Ok(Command::Help),
        other => Err(format!("unknown command {other:?}")),
    }
}

fn parse_install(options: &[&str]) -> Result<InstallOptions, String> {
    let mut install = InstallOptions::default();
    let mut iter = options.iter();
    while let Some(&option) = iter.next() {
        match option {
            "--package" => {
                let dir = iter.next().ok_or("--package needs a folder")?;
                install.package = Some(PathBuf::from(dir));
            }
            "--trust-certificate" => install.trust_certificate = true,
            other => return Err(format!("unknown install option {other:?}")),
        }
    }
    Ok(install)
}

fn parse_check(options: &[&str]) -> Result<CheckOptions, String> {
    let mut check = CheckOptions::default();
    let mut iter = options.iter();
    while let Some(&option) = iter.next() {
        match option {
            "--seconds" => {
                let value = iter.next().ok_or("--seconds needs a number")?;
                let seconds: f64 = value
                    .parse()
                    .map_err(|_| format!("--seconds: {value:?} is not a number"))?;
                if !(1.0..=600.0).contains(&seconds) {
                    return Err(format!(
                        "--seconds {seconds}: between 1 and 600 (the position test needs 1 s of reads)"
                    ));
                }
                check.seconds = seconds;
            }
            "--shared" => check.modes = vec![ShareMode::Shared],
            "--exclusive" => check.modes = vec![ShareMode::Exclusive],
            other => return Err(format!("unknown check option {other:?}")),
        }
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn commands_and_their_options() {
        assert_eq!(parse(&[]), Ok(Command::Help));
        assert_eq!(
            parse(&args("install --package D:\\pkg --trust-certificate")),
            Ok(Command::Install(InstallOptions {
                package: Some(PathBuf::from("D:\\pkg")),
                trust_certificate: true
            }))
        );
        assert_eq!(
            parse(&args("install")),
            Ok(Command::Install(InstallOptions::default()))
        );
        assert_eq!(parse(&args("uninstall")), Ok(Command::Uninstall));
        assert_eq!(parse(&args("status")), Ok(Command::Status));
        assert_eq!(
            parse(&args("check --seconds 5 --exclusive")),
            Ok(Command::Check(CheckOptions {
                seconds: 5.0,
                modes: vec![ShareMode::Exclusive]
            }))
        );
        assert_eq!(
            parse(&args("check")),
            Ok(Command::Check(CheckOptions::default()))
        );
    }

    #[test]
    fn bad_command_lines_are_refused_with_the_reason() {
        assert!(parse(&args("instal"))
            .unwrap_err()
            .contains("unknown command"));
        assert!(parse(&args("install --package"))
            .unwrap_err()
            .contains("needs a folder"));
        assert!(parse(&args("status --verbose"))
            .unwrap_err()
            .contains("no options"));
        assert!(parse(&args("check --seconds x"))
            .unwrap_err()
            .contains("not a number"));
        assert!(parse(&args("check --seconds 0.5"))
            .unwrap_err()
            .contains("between 1"));
        assert!(parse(&args("check --loud"))
            .unwrap_err()
            .contains("unknown check option"));
    }
}
