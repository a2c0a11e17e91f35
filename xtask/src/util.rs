//! Small helpers shared by the tasks: paths, running commands, reporting.

use std::{
    env,
    ffi::OsStr,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// Outcome of a task step: a one-line summary, or the reason it failed.
pub type StepResult = Result<String, String>;

/// The workspace root (the driver package's directory), or
/// `RSWAVERT_WORKSPACE` when set.
pub fn workspace_root() -> PathBuf {
    if let Some(root) = env::var_os("RSWAVERT_WORKSPACE") {
        return PathBuf::from(root);
    }
    let manifest_dir =
        env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from("xtask"), PathBuf::from);
    manifest_dir
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The workspace's target directory (kept inside the workspace: wdk-build looks
/// for `Cargo.lock` above `OUT_DIR`).
pub fn target_dir() -> PathBuf {
    workspace_root().join("target")
}

/// Renders a command line for logs.
pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for argument in command.get_args() {
        let argument = argument.to_string_lossy();
        if argument.contains(' ') {
            let _ = write!(text, " '{argument}'");
        } else {
            let _ = write!(text, " {argument}");
        }
    }
    text
}

/// Runs a command with inherited output; fails with the command line and exit status.
pub fn run(command: &mut Command) -> Result<(), String> {
    println!("    $ {}", describe(command));
    let status = command
        .status()
        .map_err(|error| format!("could not start `{}`: {error}", describe(command)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", describe(command)))
    }
}

/// Runs a command and captures its standard output (standard error passes through).
pub fn output(command: &mut Command) -> Result<String, String> {
    let result = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| format!("could not start `{}`: {error}", describe(command)))?;
    if result.status.success() {
        Ok(String::from_utf8_lossy(&result.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({})",
            describe(command),
            result.status
        ))
    }
}

/// `cargo` as invoked by the user (honours `$CARGO`).
pub fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Whether an executable is on `PATH`.
pub fn on_path(program: impl AsRef<OsStr>) -> bool {
    let program = program.as_ref();
    env::var_os("PATH").is_some_and(|paths| {
        env::split_paths(&paths).any(|directory| directory.join(program).is_file())
    })
}

/// Runs a command and captures standard output and error together; on failure
/// the error carries both, so a stage can show why.
pub fn run_captured(what: &str, command: &mut Command) -> Result<String, String> {
    let result = command
        .output()
        .map_err(|error| format!("{what}: cannot run: {error}"))?;
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    if result.status.success() {
        Ok(format!("{stdout}{stderr}"))
    } else {
        Err(format!(
            "{what} failed ({}):\n{stdout}{stderr}",
            result.status
        ))
    }
}

/// Sums the `test result: ok. N passed` lines of libtest output.
pub fn passed_tests(output: &str) -> usize {
    output
        .lines()
        .filter_map(|line| line.trim().strip_prefix("test result: ok. "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<usize>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::passed_tests;

    #[test]
    fn counts_passed_tests() {
        let output =
            "test result: ok. 12 passed; 0 failed\nnoise\ntest result: ok. 3 passed; 0 failed";
        assert_eq!(passed_tests(output), 15);
    }
}
