//! Installs QEMU and builds (or finds cached) the qtest accelerator module;
//! prints one summary line. Used by `cargo xtask` before the QEMU tests.

use std::process::ExitCode;

fn main() -> ExitCode {
    match wavert_qemu::ensure_qemu() {
        Ok(install) => {
            let how = if install.built_now { "built" } else { "cached" };
            let seconds = install
                .build_seconds
                .map_or_else(|| "unknown".to_owned(), |s| format!("{s} s"));
            println!(
                "QEMU {} ({}); qtest module {how} in {} (build took {seconds})",
                install.package_version,
                install.pkgversion,
                install.module_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("QEMU setup failed: {reason}");
            ExitCode::FAILURE
        }
    }
}
