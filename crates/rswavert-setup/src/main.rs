//! The `rswavert-setup` command (see [`rswavert_setup::cli::USAGE`]).

use std::process::ExitCode;

use rswavert_setup::cli::{self, Command};

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&arguments) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("error: {error}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if command == Command::Help {
        println!("{}", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    run(&command)
}

#[cfg(windows)]
fn run(command: &Command) -> ExitCode {
    match rswavert_setup::windows::run(command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(windows))]
fn run(_command: &Command) -> ExitCode {
    eprintln!(
        "rswavert-setup installs and checks the driver on Windows; this build has no Windows calls"
    );
    ExitCode::FAILURE
}
