//! Build script of the driver package.
//!
//! For the Windows target it hands over to `wdk-build`, which finds the WDK and
//! emits the kernel-image link arguments (`/DRIVER`, `/KERNEL`,
//! `/ENTRY:DriverEntry`, `/INTEGRITYCHECK`, ...). Host builds of the workspace
//! never build this package (it is not a default member), but a stray
//! `cargo check -p rswavert` on Linux should say what to do instead of failing
//! deep inside wdk-build.

fn main() -> Result<(), wdk_build::ConfigError> {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "windows" {
        wdk_build::configure_wdk_binary_build()
    } else {
        println!(
            "cargo::warning=rswavert is a Windows kernel driver; build it with \
             `cargo xtask cross` on Linux or `cargo make` on Windows"
        );
        Ok(())
    }
}
