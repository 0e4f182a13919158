//! Property tests of the model-file loader, on the released fixtures of every model kind:
//! - damage to the bytes on disk (bit flips, truncation, another format version, bytes
//!   appended) is always refused, with the file named;
//! - damage behind valid checksums (the file re-encoded around a corrupted state or forest
//!   section, or a manifest that disagrees with its state) never panics, neither when loading
//!   nor when predicting: a load either fails naming the file, or gives a model that predicts.
//!
//! Case counts are capped so CI stays fast; `docs/reliability.md` has the totals.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use forexgpt_engine::artifact;
use forexgpt_engine::model::Model;
use forexgpt_regressors::Matrix;
use proptest::prelude::*;

const CASES: u32 = 96;
const FIXTURES: [&str; 5] = [
    "v1-ridge.fxm",
    "v1-elasticnet.fxm",
    "v1-pca-lasso.fxm",
    "v1-ae-ridge.fxm",
    "v1-rf.fxm",
];
/// Section names of format 1 (the file format, so spelled out here).
const STATE: &str = "state.json";
const FOREST: &str = "forest.bin";

fn fixture(name: &str) -> PathBuf {
    Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../tests/fixtures/models")
    .join(name)
}

/// Damage to a file's bytes.
#[derive(Debug, Clone)]
enum Damage {
    /// XOR bytes at positions given as shares of the length.
    Flip(Vec<(f64, u8)>),
    Truncate(f64),
    Version(u32),
    Append(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        prop::collection::vec((0.0..1.0_f64, 1_u8..=255), 1..5).prop_map(Damage::Flip),
        (0.0..1.0_f64).prop_map(Damage::Truncate),
        prop_oneof![Just(0_u32), 2_u32..1000, Just(u32::MAX)].prop_map(Damage::Version),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Append),
    ]
}

fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    let at = |share: f64, len: usize| ((share * len as f64) as usize).min(len - 1);
    match d {
        Damage::Flip(flips) => {
            for &(share, mask) in flips {
                let i = at(share, bytes.len());
                bytes[i] ^= mask;
            }
        }
        Damage::Truncate(share) => bytes.truncate(at(*share, bytes.len())),
        Damage::Version(v) => bytes[8..12].copy_from_slice(&v.to_le_bytes()),
        Damage::Append(extra) => bytes.extend_from_slice(extra),
    }
}

/// Damage to a section's content, re-encoded so every checksum is right.
#[derive(Debug, Clone)]
enum Deep {
    /// Bytes of the state JSON or the forest replaced (positions as shares of the length).
    Overwrite { forest: bool, at: Vec<(f64, u8)> },
    /// The section cut short.
    Cut { forest: bool, share: f64 },
    /// The manifest claims other shapes than the state has.
    Manifest { n_features: usize, horizons: usize },
}

fn deep() -> impl Strategy<Value = Deep> {
    prop_oneof![
        (
            any::<bool>(),
            prop::collection::vec((0.0..1.0_f64, any::<u8>()), 1..8)
        )
            .prop_map(|(forest, at)| Deep::Overwrite { forest, at }),
        (any::<bool>(), 0.0..1.0_f64).prop_map(|(forest, share)| Deep::Cut { forest, share }),
        (0_usize..200, 0_usize..6).prop_map(|(n_features, horizons)| Deep::Manifest {
            n_features,
            horizons
        }),
    ]
}

fn load_and_predict(path: &Path) -> Result<(), String> {
    let model = Model::load(path).map_err(|e| e.to_string())?;
    let x = Matrix::zeros(2, model.info.n_features);
    // A model that loads must predict without panicking; an error is acceptable.
    let _ = model.predict(&x);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn damaged_files_are_refused_by_name(
        name in prop::sample::select(FIXTURES.to_vec()),
        d in damage(),
    ) {
        let mut bytes = std::fs::read(fixture(name)).unwrap();
        apply(&mut bytes, &d);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        match load_and_predict(&path) {
            Ok(()) => prop_assert!(false, "{:?} of {} was accepted", d, name),
            Err(message) => prop_assert!(
                message.contains(&path.display().to_string()),
                "the file is not named: {}", message
            ),
        }
    }

    #[test]
    fn damage_behind_valid_checksums_never_panics(
        name in prop::sample::select(FIXTURES.to_vec()),
        d in deep(),
    ) {
        let file = artifact::read(&fixture(name)).unwrap();
        let mut info = file.info.clone();
        let mut state = file.section(STATE).unwrap().to_vec();
        let mut forest = file.section(FOREST).ok().map(<[u8]>::to_vec);
        match &d {
            Deep::Overwrite { forest: f, at } => {
                let bytes = section_to_damage(*f, &mut state, &mut forest);
                for &(share, value) in at {
                    let i = ((share * bytes.len() as f64) as usize).min(bytes.len() - 1);
                    bytes[i] = value;
                }
            }
            Deep::Cut { forest: f, share } => {
                let bytes = section_to_damage(*f, &mut state, &mut forest);
                let keep = (share * bytes.len() as f64) as usize;
                bytes.truncate(keep);
            }
            Deep::Manifest { n_features, horizons } => {
                info.n_features = *n_features;
                info.horizons = (1..=*horizons as u32).collect();
            }
        }
        let mut sections = vec![(STATE, state)];
        if let Some(f) = forest {
            sections.push((FOREST, f));
        }
        let bytes = artifact::encode(&info, &sections).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        if let Err(message) = load_and_predict(&path) {
            prop_assert!(
                message.contains(&path.display().to_string()),
                "the file is not named: {}", message
            );
        }
    }
}

/// The section a deep damage goes to: the forest when asked and present, else the state.
fn section_to_damage<'a>(
    forest_wanted: bool,
    state: &'a mut Vec<u8>,
    forest: &'a mut Option<Vec<u8>>,
) -> &'a mut Vec<u8> {
    match forest {
        Some(f) if forest_wanted => f,
        _ => state,
    }
}
