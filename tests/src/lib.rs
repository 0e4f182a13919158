//! Helpers shared by the end-to-end tests live in `tests/`; this library is empty on purpose.
