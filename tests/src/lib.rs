//! Integration tests of the driver's portable layers live in `tests/tests/`.
