//! `RandomForestRegressor` with scikit-learn's parameters and defaults, grown as histogram
//! trees: features are binned once ([`bins`]), then every tree is grown from per-node
//! histograms of the bins, on the CPU ([`grow`], in parallel over trees with rayon) or on a
//! CUDA GPU (`forexgpt_kernels::cuda_grow`, one thread block per tree running the same
//! algorithm from the same random streams), deterministic for a seed whatever the thread
//! count. The forest is stored flat ([`trees`]) and predicts many rows × many trees in one
//! pass on the CPU, or on a GPU ([`gpu`]: the CUDA C walk, or our CubeCL walk on wgpu).
//!
//! Own code: linfa has no random-forest regressor. Differences from scikit-learn, by design:
//! split thresholds sit on bin edges (at most `max_bins` per feature, halfway between two
//! training values, as scikit-learn's thresholds are); with at most `max_bins` distinct
//! values per feature the trees are the exact ones. Leaf values are stored as float32.

pub mod bins;
pub mod gpu;
mod grow;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod levels;
pub mod trees;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use forexgpt_device::{ComputeDevice, DeviceError, JobSupport};
use forexgpt_kernels::cuda_grow::{GrowLimits, TreeStart, cuda_grow_trees};
use forexgpt_protocol::{ForestSpec, MaxFeatures};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::FitError;
use crate::matrix::Matrix;
use bins::BinEdges;
use grow::{Data, Rules};
use trees::Trees;

/// Trees are grown by our CUDA kernel, a level at a time on wgpu ([`levels`]), or on the CPU.
pub const FOREST_FIT: JobSupport = JobSupport::everywhere("growing a random forest");

/// How the level-at-a-time grower of wgpu devices shares the work with the host.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(any(feature = "wgpu", feature = "cuda")), allow(dead_code))]
pub(crate) struct LevelOptions {
    /// When the open nodes of all trees hold at most this many rows, the host finishes the
    /// trees (0: the device searches every level).
    pub tail_rows: usize,
    /// Grow a level at a time on CUDA too (instead of the CUDA builder).
    pub on_cuda: bool,
    /// How the device walks: rows loaded together in the split search, the partition and
    /// the presort, and the size from which a node's walks go in chunks (`None`: the
    /// kernels' defaults for the data's outputs).
    pub tuning: Option<[usize; 4]>,
}

impl LevelOptions {
    /// A round trip to the device (~0.5–1 ms) against the host's search of a level's rows
    /// over every thread; `FOREXGPT_FOREST_TAIL_ROWS` overrides it, and
    /// `FOREXGPT_FOREST_TUNING=SCAN,PARTITION,PRESORT,BIG_ROWS` the kernels' batches of rows
    /// and the size from which a node's walks are split in chunks (both for measurements).
    pub(crate) fn for_this_machine() -> Self {
        let tail_rows = std::env::var("FOREXGPT_FOREST_TAIL_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000 * rayon::current_num_threads());
        let tuning = std::env::var("FOREXGPT_FOREST_TUNING")
            .ok()
            .and_then(|v| parse_tuning(&v));
        LevelOptions {
            tail_rows,
            on_cuda: false,
            tuning,
        }
    }
}

/// `SCAN,PARTITION,PRESORT,BIG_ROWS`, four positive counts.
fn parse_tuning(text: &str) -> Option<[usize; 4]> {
    let counts: Vec<usize> = text
        .split(',')
        .map(|part| part.trim().parse().ok().filter(|&c| c > 0))
        .collect::<Option<_>>()?;
    counts.try_into().ok()
}

/// `RandomForest::params()`: scikit-learn's defaults (100 trees, fully grown, every feature
/// at every split, bootstrap) with 256 bins and `random_state` 42.
pub struct RandomForest;

impl RandomForest {
    pub fn params() -> ForestParamsBuilder {
        ForestParamsBuilder(ForestSpec::default())
    }
}

/// Parameters before they are checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ForestParamsBuilder(pub ForestSpec);

impl ForestParamsBuilder {
    pub fn from_spec(spec: ForestSpec) -> Self {
        ForestParamsBuilder(spec)
    }

    pub fn check(self) -> Result<ValidForestParams, FitError> {
        self.0.check().map_err(|reason| FitError::InvalidParam {
            name: "random forest",
            reason,
        })?;
        Ok(ValidForestParams(self.0))
    }
}

param_setters!(ForestParamsBuilder {
    n_estimators: usize,
    max_depth: Option<usize>,
    min_samples_split: usize,
    min_samples_leaf: usize,
    max_features: MaxFeatures,
    bootstrap: bool,
    max_samples: Option<f64>,
    random_state: u64,
    max_bins: usize,
    oob_score: bool,
});

/// Checked parameters: the only way to a fitted forest.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidForestParams(ForestSpec);

impl ValidForestParams {
    pub fn spec(&self) -> &ForestSpec {
        &self.0
    }

    /// Grows the forest on the CPU. `observe(trees_done)` is called after each tree; when it
    /// returns false the fit stops and returns [`FitError::Cancelled`].
    pub fn fit(
        &self,
        x: &Matrix,
        y: &Matrix,
        observe: &(dyn Fn(usize) -> bool + Sync),
    ) -> Result<RandomForestModel, FitError> {
        self.fit_on(x, y, None, observe)
    }

    /// Grows the forest on `device`: a CUDA device grows every tree on the GPU
    /// (`forexgpt_kernels::cuda_grow`, the CPU's algorithm and random streams, so the same
    /// forest up to the order of floating-point sums), anything else on the CPU. Progress
    /// comes per tree on the CPU, per batch of trees on the GPU.
    pub fn fit_on(
        &self,
        x: &Matrix,
        y: &Matrix,
        device: Option<&ComputeDevice>,
        observe: &(dyn Fn(usize) -> bool + Sync),
    ) -> Result<RandomForestModel, FitError> {
        self.fit_with(x, y, device, observe, LevelOptions::for_this_machine())
    }

    /// Grows the forest a level at a time on `device` (the grower of wgpu devices), whatever
    /// the device: on CUDA through cubecl's CUDA runtime, so that the benchmark sets it beside
    /// the CUDA builder (one kernel source for both GPUs, if it keeps up).
    pub fn fit_by_levels(
        &self,
        x: &Matrix,
        y: &Matrix,
        device: &ComputeDevice,
        observe: &(dyn Fn(usize) -> bool + Sync),
    ) -> Result<RandomForestModel, FitError> {
        let options = LevelOptions {
            on_cuda: true,
            ..LevelOptions::for_this_machine()
        };
        self.fit_with(x, y, Some(device), observe, options)
    }

    fn fit_with(
        &self,
        x: &Matrix,
        y: &Matrix,
        device: Option<&ComputeDevice>,
        observe: &(dyn Fn(usize) -> bool + Sync),
        options: LevelOptions,
    ) -> Result<RandomForestModel, FitError> {
        crate::linear::check_xy(x, y)?;
        if x.cols >= trees::LEAF as usize {
            return Err(FitError::ShapeMismatch(format!(
                "{} features; a forest takes at most {}",
                x.cols,
                trees::LEAF - 1
            )));
        }
        let spec = &self.0;
        let started = std::time::Instant::now();
        let edges = BinEdges::fit(x, spec.max_bins);
        let binned = edges.bin_columns(x);
        let n_bins = edges.n_bins();
        let data = Data {
            bins: &binned,
            n: x.rows,
            d: x.cols,
            y: &y.values,
            k: y.cols,
            n_bins: &n_bins,
        };
        let n_draws = spec
            .max_samples
            .map_or(x.rows, |s| ((s * x.rows as f64).round() as usize).max(1));
        let rules = Rules {
            limits: GrowLimits {
                max_depth: spec.max_depth.unwrap_or(usize::MAX),
                min_samples_split: spec.min_samples_split,
                min_samples_leaf: spec.min_samples_leaf,
                max_features: spec.max_features.resolve(x.cols),
            },
            bootstrap: spec.bootstrap,
            n_draws,
            out_of_bag: spec.oob_score,
        };
        let binned_at = started.elapsed();
        let grown = match device.filter(|d| d.is_gpu()) {
            Some(device) if device.cuda_index().is_some() && !options.on_cuda => {
                grow_on_cuda(device, &data, &rules, spec, observe)?
            }
            Some(device) => grow_by_levels(device, &data, &rules, spec, observe, options)?,
            None => grow_on_cpu(&data, &rules, spec, observe)?,
        };
        let grown_at = started.elapsed();
        let feature_importances = importances(&grown, x.cols);
        let oob_score = spec.oob_score.then(|| out_of_bag_r2(&grown, y)).flatten();
        let trees = Trees::from_trees(grown.into_iter().map(|g| g.tree).collect(), y.cols);
        tracing::debug!(
            bin_ms = binned_at.as_secs_f64() * 1e3,
            grow_ms = (grown_at - binned_at).as_secs_f64() * 1e3,
            assemble_ms = (started.elapsed() - grown_at).as_secs_f64() * 1e3,
            "forest fitted"
        );
        Ok(RandomForestModel {
            spec: spec.clone(),
            n_features: x.cols,
            n_outputs: y.cols,
            bins: edges,
            feature_importances,
            oob_score,
            trees,
        })
    }
}

fn grow_on_cpu(
    data: &Data,
    rules: &Rules,
    spec: &ForestSpec,
    observe: &(dyn Fn(usize) -> bool + Sync),
) -> Result<Vec<grow::Grown>, FitError> {
    // Counted and reported under one lock, so that the observer sees 1, 2, 3… in order.
    let done = Mutex::new(0usize);
    let stop = AtomicBool::new(false);
    let grown: Vec<Option<grow::Grown>> = (0..spec.n_estimators)
        .into_par_iter()
        .map(|t| {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let tree = grow::grow(data, rules, tree_seed(spec.random_state, t));
            let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
            *done += 1;
            if !observe(*done) {
                stop.store(true, Ordering::Relaxed);
            }
            Some(tree)
        })
        .collect();
    if stop.load(Ordering::Relaxed) {
        return Err(FitError::Cancelled);
    }
    Ok(grown.into_iter().flatten().collect())
}

/// Every tree grown on a CUDA device from the CPU's bootstraps; the out-of-bag leaves are
/// found on the host, as the CPU grower finds them.
fn grow_on_cuda(
    device: &ComputeDevice,
    data: &Data,
    rules: &Rules,
    spec: &ForestSpec,
    observe: &(dyn Fn(usize) -> bool + Sync),
) -> Result<Vec<grow::Grown>, FitError> {
    let start = |t: usize| {
        let (weight, rows, seed) = grow::bootstrap(data.n, rules, tree_seed(spec.random_state, t));
        TreeStart { weight, rows, seed }
    };
    let Some(grown) = cuda_grow_trees(
        device,
        data,
        &rules.limits,
        spec.n_estimators,
        &start,
        observe,
    )?
    else {
        return Err(FitError::Cancelled);
    };
    assembled(device, data, rules, spec, grown)
}

/// The trees a device grew (nodes numbered as grown), each in the CPU's order, checked like
/// a tree from a file before anything walks it (a broken one is a device failure: the caller
/// may grow on the CPU instead), with its out-of-bag rows found on the host.
fn assembled(
    device: &ComputeDevice,
    data: &Data,
    rules: &Rules,
    spec: &ForestSpec,
    grown: Vec<forexgpt_kernels::cuda_grow::GrownTree>,
) -> Result<Vec<grow::Grown>, FitError> {
    grown
        .into_par_iter()
        .enumerate()
        .map(|(t, g)| assembled_tree(device, data, rules, spec, t, g))
        .collect()
}

fn assembled_tree(
    device: &ComputeDevice,
    data: &Data,
    rules: &Rules,
    spec: &ForestSpec,
    t: usize,
    g: forexgpt_kernels::cuda_grow::GrownTree,
) -> Result<grow::Grown, FitError> {
    let broken = |e: String| DeviceError::BackendFailed {
        device: device.label().to_string(),
        message: format!("grew a broken tree {t}: {e}"),
    };
    let tree = grow::depth_first(&g, data.k).map_err(broken)?;
    Trees::from_trees(vec![tree.clone()], data.k)
        .check(data.d, data.k)
        .map_err(|e| broken(e.to_string()))?;
    // The bootstrap again (cheap next to the tree) for the out-of-bag rows.
    let out_of_bag = if rules.out_of_bag {
        let (weight, _, _) = grow::bootstrap(data.n, rules, tree_seed(spec.random_state, t));
        grow::out_of_bag(data, rules, &weight, &tree)
    } else {
        Vec::new()
    };
    Ok(grow::Grown {
        tree,
        importance: g.importance,
        out_of_bag,
    })
}

/// Every tree grown a level at a time on a wgpu device ([`levels`]): the device searches the
/// splits, the host keeps the trees.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn grow_by_levels(
    device: &ComputeDevice,
    data: &Data,
    rules: &Rules,
    spec: &ForestSpec,
    observe: &(dyn Fn(usize) -> bool + Sync),
    options: LevelOptions,
) -> Result<Vec<grow::Grown>, FitError> {
    let failed = |message: String| {
        FitError::Device(DeviceError::BackendFailed {
            device: device.label().to_string(),
            message,
        })
    };
    let job = levels::LevelJob {
        data,
        rules,
        seeds: (0..spec.n_estimators)
            .map(|t| tree_seed(spec.random_state, t))
            .collect(),
        options,
        observe,
    };
    let Some(grown) =
        forexgpt_device::cube::run_cube_job(device, FOREST_FIT.job, job)?.map_err(failed)?
    else {
        return Err(FitError::Cancelled);
    };
    assembled(device, data, rules, spec, grown)
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn grow_by_levels(
    device: &ComputeDevice,
    _data: &Data,
    _rules: &Rules,
    _spec: &ForestSpec,
    _observe: &(dyn Fn(usize) -> bool + Sync),
    _options: LevelOptions,
) -> Result<Vec<grow::Grown>, FitError> {
    Err(FitError::Device(DeviceError::Unsupported {
        job: FOREST_FIT.job.into(),
        device: device.label().to_string(),
        why: "this build has no GPU kernels".into(),
    }))
}

/// Each tree's own seed, independent of which thread grows it.
fn tree_seed(random_state: u64, t: usize) -> u64 {
    random_state.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (t as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// scikit-learn's mean decrease in impurity: each tree's decreases normalized to sum to 1,
/// averaged over trees, normalized again.
fn importances(grown: &[grow::Grown], d: usize) -> Vec<f64> {
    let mut total = vec![0.0; d];
    for g in grown {
        let sum: f64 = g.importance.iter().sum();
        if sum > 0.0 {
            total
                .iter_mut()
                .zip(&g.importance)
                .for_each(|(t, v)| *t += v / sum);
        }
    }
    let sum: f64 = total.iter().sum();
    if sum > 0.0 {
        total.iter_mut().for_each(|v| *v /= sum);
    }
    total
}

/// The out-of-bag R² (averaged over outputs, as scikit-learn's `oob_score_`), over the rows
/// that at least one tree left out.
fn out_of_bag_r2(grown: &[grow::Grown], y: &Matrix) -> Option<f64> {
    let k = y.cols;
    let mut sums = vec![0.0f64; y.rows * k];
    let mut counts = vec![0u32; y.rows];
    for g in grown {
        for &(r, leaf) in &g.out_of_bag {
            let (r, leaf) = (r as usize, leaf as usize);
            counts[r] += 1;
            sums[r * k..(r + 1) * k]
                .iter_mut()
                .zip(&g.tree.values[leaf * k..(leaf + 1) * k])
                .for_each(|(s, &v)| *s += f64::from(v));
        }
    }
    let rows: Vec<usize> = (0..y.rows).filter(|&r| counts[r] > 0).collect();
    if rows.len() < 2 {
        return None;
    }
    let r2: f64 = (0..k)
        .map(|j| {
            let mean = rows.iter().map(|&r| y.get(r, j)).sum::<f64>() / rows.len() as f64;
            let (mut res, mut tot) = (0.0, 0.0);
            for &r in &rows {
                let pred = sums[r * k + j] / f64::from(counts[r]);
                res += (y.get(r, j) - pred).powi(2);
                tot += (y.get(r, j) - mean).powi(2);
            }
            if tot > 0.0 { 1.0 - res / tot } else { 0.0 }
        })
        .sum();
    Some(r2 / k as f64)
}

/// A fitted forest. The trees are serialized apart from the rest ([`Trees::to_bytes`]):
/// they are large, and JSON would triple them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomForestModel {
    pub spec: ForestSpec,
    pub n_features: usize,
    pub n_outputs: usize,
    pub bins: BinEdges,
    /// Mean decrease in impurity per feature, summing to 1.
    pub feature_importances: Vec<f64>,
    /// Out-of-bag R² (with `oob_score`).
    pub oob_score: Option<f64>,
    #[serde(skip)]
    pub trees: Trees,
}

impl RandomForestModel {
    /// Puts trees read from their own section back, checking that they fit this forest.
    pub fn attach_trees(&mut self, trees: Trees) -> Result<(), FitError> {
        trees.check(self.n_features, self.n_outputs)?;
        self.trees = trees;
        Ok(())
    }

    /// Checks the parts a file could get wrong.
    pub fn check(&self) -> Result<(), FitError> {
        if self.bins.n_features() != self.n_features
            || self.bins.edges.iter().any(|e| e.len() > 255)
        {
            return Err(FitError::ShapeMismatch(format!(
                "the forest's bins cover {} features, not {}",
                self.bins.n_features(),
                self.n_features
            )));
        }
        self.trees.check(self.n_features, self.n_outputs)?;
        Ok(())
    }

    /// Predictions (`rows × outputs`) on the CPU.
    pub fn predict(&self, x: &Matrix) -> Result<Matrix, FitError> {
        x.check_features(self.n_features)?;
        let bins = self.bins.bin_rows(x);
        Matrix::new(
            x.rows,
            self.n_outputs,
            self.trees.predict_binned(&bins, x.cols),
        )
    }

    /// Predictions on `device`: the CPU path for the CPU, the CUDA walk on CUDA, our CubeCL
    /// walk on wgpu (float32 sums on a GPU; the CPU sums in float64).
    pub fn predict_on(&self, x: &Matrix, device: &ComputeDevice) -> Result<Matrix, FitError> {
        if !device.is_gpu() {
            return self.predict(x);
        }
        let values = if device.cuda_index().is_some() {
            x.check_features(self.n_features)?;
            gpu::predict_cuda(&self.trees, &self.bins, x, device)?
        } else {
            // It checks `x` itself.
            gpu::predict_rows(&self.trees, &self.bins, x, device)?
        };
        Matrix::new(
            x.rows,
            self.n_outputs,
            values.into_iter().map(f64::from).collect(),
        )
    }
}
