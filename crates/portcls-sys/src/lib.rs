//! Hand-written `#[repr(C)]` PortCls / KS / ksmedia definitions, C names kept.
#![no_std]
