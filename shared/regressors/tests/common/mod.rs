//! Helpers shared by the regressor test files: the oracle fixtures and matrices from rows.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::path::PathBuf;

use forexgpt_regressors::Matrix;
use serde::de::DeserializeOwned;

/// `tests/fixtures/NAME` of this checkout, parsed. Cargo's value of `CARGO_MANIFEST_DIR` when
/// it runs the test comes first: a binary reused from a build in another checkout (a shared
/// target cache) must not read that checkout's files.
pub fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../tests/fixtures")
    .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A matrix from its rows.
pub fn matrix(rows: &[Vec<f64>]) -> Matrix {
    Matrix::new(
        rows.len(),
        rows[0].len(),
        rows.iter().flatten().copied().collect(),
    )
    .unwrap()
}
