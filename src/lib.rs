//! Windows driver entry.
#![no_std]
