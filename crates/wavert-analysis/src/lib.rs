//! The loopback analysis shared by the emulator's main job and the Windows
//! setup tool's `check`: the test signal, the bit-exact comparison and the
//! KS position test's rules, computed the same way on the emulator's traces
//! and on a real machine's WASAPI streams.
//!
//! Plain `std` and no platform calls, so it builds for Linux and for the
//! Windows targets alike.

pub mod position;
pub mod signal;
pub mod tone;
