//! The hardware-independent heart of the WaveRT driver.
#![no_std]
#![forbid(unsafe_code)]
