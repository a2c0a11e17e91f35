//! Integration tests across the driver's portable layers live in `tests/`
//! of this package: they check that the layers agree with each other where
//! they meet (the core's byte-level codecs against the ABI crate's layouts,
//! and, as they land, the miniport driven through the emulator).
