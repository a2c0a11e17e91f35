//! `rswavert-setup`: installs the rswavert driver package on Windows without
//! the WDK, lists what Windows made of it, and checks the cable end to end.
//!
//! The logic is portable and tested on any host: the command line
//! ([`cli`]), the package on disk ([`package`]), the usual failures and
//! their messages ([`diagnose`]) and the loopback analysis ([`check`], the
//! emulator main job's own code from wavert-analysis). The Windows calls
//! (`SetupAPI`, newdev, `CfgMgr32`, `MMDevice`, `WASAPI`) are in `windows`, built
//! only for Windows targets.

pub mod check;
pub mod cli;
pub mod diagnose;
pub mod package;

#[cfg(windows)]
pub mod windows;
