//! The Windows side of `rswavert-setup`: `SetupAPI`, newdev and `CfgMgr32` for
//! the package and the devices ([`devices`]), `MMDevice` and `WASAPI` for the
//! endpoints and the loopback run ([`audio`]).
//!
//! Every call here is one the portable modules cannot make; their results go
//! straight to the portable logic (package discovery, diagnosis, analysis).

mod audio;
mod devices;

use crate::cli::Command;

/// Runs a command; `Ok(false)` when it ran and found problems.
///
/// # Errors
///
/// A Windows call failed in a way the tool does not recognise.
pub fn run(command: &Command) -> Result<bool, String> {
    match command {
        Command::Install(options) => devices::install(options),
        Command::Uninstall => devices::uninstall(),
        Command::Status => {
            let devices_ok = devices::status()?;
            let endpoints_ok = audio::status()?;
            Ok(devices_ok && endpoints_ok)
        }
        Command::Check(options) => audio::check(options),
        Command::Help => Ok(true),
    }
}

/// A UTF-16, NUL-terminated copy of a string for the `W` functions.
fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The text of a UTF-16 buffer up to its first NUL.
fn from_wide(buffer: &[u16]) -> String {
    let end = buffer.iter().position(|&c| c == 0).unwrap_or(buffer.len());
    String::from_utf16_lossy(&buffer[..end])
}
