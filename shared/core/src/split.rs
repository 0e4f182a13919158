//! Chronological train / validation / test split with a purge gap between the parts.

use forexgpt_protocol::{SplitSpec, SplitSummary};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SplitError {
    #[error(
        "split fractions must be positive and leave room for a test part (train {train}, validation {validation})"
    )]
    BadFractions { train: f64, validation: f64 },
    #[error(
        "{rows} labelled rows are too few to split with a purge of {purge} rows: a part would be empty"
    )]
    TooFewRows { rows: usize, purge: usize },
}

/// The purge a split uses when none is given: no input window of a part may overlap the
/// targets of the part before it.
pub fn default_purge(window: u32, max_horizon: u32) -> usize {
    (window + max_horizon) as usize
}

/// Splits `rows` labelled rows in time order. Rows in the purge gaps belong to no part.
pub fn chronological_split(
    rows: usize,
    spec: &SplitSpec,
    default_purge: usize,
) -> Result<SplitSummary, SplitError> {
    let (train, validation) = (spec.train_fraction, spec.validation_fraction);
    if !(train > 0.0 && validation > 0.0 && train + validation < 1.0) {
        return Err(SplitError::BadFractions { train, validation });
    }
    let purge = spec.purge.map_or(default_purge, |p| p as usize);
    let usable = rows.saturating_sub(2 * purge);
    let n_train = (usable as f64 * train).floor() as usize;
    let n_val = (usable as f64 * validation).floor() as usize;
    let val_start = n_train + purge;
    let test_start = val_start + n_val + purge;
    if n_train == 0 || n_val == 0 || test_start >= rows {
        return Err(SplitError::TooFewRows { rows, purge });
    }
    Ok(SplitSummary {
        train: (0, n_train),
        validation: (val_start, val_start + n_val),
        test: (test_start, rows),
        purge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_ordered_disjoint_and_purged() {
        let s = chronological_split(1000, &SplitSpec::default(), 40).unwrap();
        assert_eq!(s.train, (0, 644));
        assert_eq!(s.validation, (684, 822));
        assert_eq!(s.test, (862, 1000));
        assert_eq!(s.validation.0 - s.train.1, 40);
        assert_eq!(s.test.0 - s.validation.1, 40);
    }

    #[test]
    fn rejects_bad_fractions_and_tiny_data() {
        let bad = SplitSpec {
            train_fraction: 0.9,
            validation_fraction: 0.2,
            purge: None,
        };
        assert!(matches!(
            chronological_split(1000, &bad, 10),
            Err(SplitError::BadFractions { .. })
        ));
        assert!(matches!(
            chronological_split(50, &SplitSpec::default(), 40),
            Err(SplitError::TooFewRows { .. })
        ));
    }
}
