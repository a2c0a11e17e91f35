//! COM object layer for PortCls miniports.
#![no_std]
