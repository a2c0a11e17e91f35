//! `wavert-emulator`: loads the driver's virtual loopback cable
//! (`wavert-miniport`) through the emulated PortCls, plays a test signal
//! through its render endpoint, records its capture endpoint and checks it
//! bit for bit, then runs the HLK position rules on both endpoints.
//!
//! Exit code 0: every check passed; 1: a check failed; 2: the session could
//! not run (bad options or files, a driver that did not start).

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::args::Args::parse();
    match cli::run::run(&args) {
        Ok(outcome) => {
            for line in outcome.report_lines() {
                println!("{line}");
            }
            if outcome.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
