//! Running many models at once. Models whose whole pipeline is affine (scaler, PCA, linear
//! regressors) are stacked into one `features × (models·horizons)` matrix per feature spec,
//! so an ensemble of any size is one matrix product: on the CPU (float64, rayon over rows)
//! or on a GPU (float32, one dispatch of our forward kernel, each model a one-layer chain
//! `features → horizons` kept on the device). Models with a neural encoder and a linear
//! regressor are chains of dense layers ([`crate::chains`]): on a GPU, every member of one
//! shape runs in one dispatch of our forward kernel, the members kept on the device; on the
//! CPU each runs its own pipeline in float64. Models with a random forest run one by one,
//! the encoder and the forest's tree walk on the ensemble's device.

use forexgpt_core::candle::Candle;
use forexgpt_core::features::{FeatureMatrix, build_features};
use forexgpt_device::ComputeDevice;
use forexgpt_protocol::{BackendKind, Combine, FeatureSpec};
use forexgpt_regressors::Matrix;
use rayon::prelude::*;

use crate::chains::{ChainGroup, chain_of};
use crate::error::EngineError;
use crate::model::{Model, QUANTILE_LEVELS};

/// Models that forecast together: same series, and every model has the ensemble's horizons.
pub struct Ensemble {
    pub models: Vec<Model>,
    pub horizons: Vec<u32>,
    /// For each model, the column of each ensemble horizon in its own output.
    columns: Vec<Vec<usize>>,
    /// Affine models sharing a feature spec, stacked once when the ensemble is built.
    groups: Vec<Group>,
    /// Neural-encoder models with a linear regressor, grouped by features and shape.
    chain_groups: Vec<ChainGroup>,
    /// Each chain group's members on the devices they ran on.
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    resident: Vec<crate::chains::gpu::Resident>,
    /// The other models that are not affine (forests), run one by one.
    nonlinear: Vec<usize>,
}

struct Group {
    spec: FeatureSpec,
    members: Vec<usize>,
    stacked: StackedAffine,
    /// The members as one-layer chains for the forward kernel, and where they are resident.
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    chains: (ChainGroup, crate::chains::gpu::Resident),
}

/// Predicted log returns: `per_model[m]` is `rows × horizons`.
pub struct EnsemblePrediction {
    pub per_model: Vec<Matrix>,
}

/// Features built once per distinct spec, with the row of each bar time.
pub struct FeatureSets {
    sets: Vec<(FeatureSpec, FeatureMatrix)>,
}

impl FeatureSets {
    pub fn build(ensemble: &Ensemble, candles: &[Candle]) -> Result<FeatureSets, EngineError> {
        let mut sets: Vec<(FeatureSpec, FeatureMatrix)> = Vec::new();
        for model in &ensemble.models {
            if !sets.iter().any(|(s, _)| *s == model.info.features) {
                let fm = build_features(candles, &model.info.features)?;
                if fm.n_columns() != model.info.n_features {
                    return Err(EngineError::ModelMismatch(format!(
                        "{} was trained on {} features but its spec now gives {}",
                        model.info.id,
                        model.info.n_features,
                        fm.n_columns()
                    )));
                }
                sets.push((model.info.features.clone(), fm));
            }
        }
        Ok(FeatureSets { sets })
    }

    /// The feature set with the fewest rows: every other set has all of its bar times.
    pub fn shortest(&self) -> &FeatureMatrix {
        self.sets
            .iter()
            .map(|(_, fm)| fm)
            .min_by_key(|fm| fm.rows())
            .unwrap_or_else(|| unreachable!("an ensemble has at least one model"))
    }

    fn get(&self, spec: &FeatureSpec) -> Option<&FeatureMatrix> {
        self.sets.iter().find(|(s, _)| s == spec).map(|(_, fm)| fm)
    }
}

impl Ensemble {
    pub fn new(models: Vec<Model>) -> Result<Ensemble, EngineError> {
        let Some(first) = models.first() else {
            return Err(EngineError::NoModels("the selection is empty".into()));
        };
        let horizons = first.info.horizons.clone();
        let mut columns = Vec::with_capacity(models.len());
        for m in &models {
            if (&m.info.symbol, m.info.timeframe) != (&first.info.symbol, first.info.timeframe) {
                return Err(EngineError::ModelMismatch(format!(
                    "{} is for {} {} but {} is for {} {}",
                    m.info.id,
                    m.info.symbol,
                    m.info.timeframe,
                    first.info.id,
                    first.info.symbol,
                    first.info.timeframe
                )));
            }
            let cols = horizons
                .iter()
                .map(|h| m.info.horizons.iter().position(|x| x == h))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| {
                    EngineError::ModelMismatch(format!(
                        "{} forecasts horizons {:?}, not all of {horizons:?}",
                        m.info.id, m.info.horizons
                    ))
                })?;
            columns.push(cols);
        }
        let mut ensemble = Ensemble {
            models,
            horizons,
            columns,
            groups: Vec::new(),
            chain_groups: Vec::new(),
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            resident: Vec::new(),
            nonlinear: Vec::new(),
        };
        let mut members: Vec<(FeatureSpec, Vec<usize>)> = Vec::new();
        for (i, m) in ensemble.models.iter().enumerate() {
            if let Some(chain) = chain_of(m, &ensemble.columns[i]) {
                let same = |g: &&mut ChainGroup| {
                    g.spec == m.info.features
                        && g.widths == chain.widths
                        && g.activation == chain.activation
                };
                match ensemble.chain_groups.iter_mut().find(same) {
                    Some(group) => {
                        group.members.push(i);
                        group.chains.push(chain);
                    }
                    None => ensemble.chain_groups.push(ChainGroup {
                        spec: m.info.features.clone(),
                        widths: chain.widths.clone(),
                        activation: chain.activation,
                        members: vec![i],
                        chains: vec![chain],
                    }),
                }
                continue;
            }
            if !m.is_affine() {
                ensemble.nonlinear.push(i);
                continue;
            }
            match members.iter_mut().find(|(s, _)| *s == m.info.features) {
                Some((_, list)) => list.push(i),
                None => members.push((m.info.features.clone(), vec![i])),
            }
        }
        for (spec, members) in members {
            let stacked = ensemble.stack(&members)?;
            ensemble.groups.push(Group {
                #[cfg(any(feature = "wgpu", feature = "cuda"))]
                chains: (
                    stacked.as_chains(&spec, &members, ensemble.horizons.len()),
                    Default::default(),
                ),
                spec,
                members,
                stacked,
            });
        }
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        ensemble
            .resident
            .resize_with(ensemble.chain_groups.len(), Default::default);
        Ok(ensemble)
    }

    /// The models a GPU runs as chains, one dispatch per group (a neural encoder with a
    /// linear regressor; grouped by features and network shape).
    pub fn chained(&self) -> Vec<Vec<usize>> {
        self.chain_groups
            .iter()
            .map(|g| g.members.clone())
            .collect()
    }

    /// Predictions of every model for the rows of `features` at bar times `ts` (every time
    /// must have a feature row in each set).
    pub fn predict(
        &self,
        features: &FeatureSets,
        ts: &[i64],
        device: &ComputeDevice,
    ) -> Result<EnsemblePrediction, EngineError> {
        let h = self.horizons.len();
        let mut per_model: Vec<Option<Matrix>> = vec![None; self.models.len()];
        for group in &self.groups {
            let fm = features.get(&group.spec).ok_or_else(not_built)?;
            let x = rows_at(fm, ts)?;
            let out = match device.backend() {
                BackendKind::Cpu => group.stacked.apply_cpu(&x),
                _ => group.apply_on(device, &x)?,
            };
            let k = group.stacked.b.len();
            for (slot, &m) in group.members.iter().enumerate() {
                let mut pm = Matrix::zeros(x.rows, h);
                for r in 0..x.rows {
                    pm.values[r * h..(r + 1) * h]
                        .copy_from_slice(&out[r * k + slot * h..r * k + (slot + 1) * h]);
                }
                per_model[m] = Some(pm);
            }
        }
        for (g, group) in self.chain_groups.iter().enumerate() {
            if !device.is_gpu() {
                for &m in &group.members {
                    per_model[m] = Some(self.predict_one(m, features, ts, device)?);
                }
                continue;
            }
            let x = rows_at(features.get(&group.spec).ok_or_else(not_built)?, ts)?;
            let out = self.run_chains(g, &x, device)?;
            let k = group.members.len();
            for (slot, &m) in group.members.iter().enumerate() {
                let mut pm = Matrix::zeros(x.rows, h);
                for r in 0..x.rows {
                    pm.values[r * h..(r + 1) * h]
                        .copy_from_slice(&out[(r * k + slot) * h..(r * k + slot + 1) * h]);
                }
                per_model[m] = Some(pm);
            }
        }
        for &m in &self.nonlinear {
            per_model[m] = Some(self.predict_one(m, features, ts, device)?);
        }
        Ok(EnsemblePrediction {
            per_model: per_model
                .into_iter()
                .map(|m| m.unwrap_or_else(|| Matrix::zeros(0, 0)))
                .collect(),
        })
    }

    /// Model `m`'s own pipeline at `ts`, its outputs in ensemble horizon order.
    fn predict_one(
        &self,
        m: usize,
        features: &FeatureSets,
        ts: &[i64],
        device: &ComputeDevice,
    ) -> Result<Matrix, EngineError> {
        let model = &self.models[m];
        let fm = features.get(&model.info.features).ok_or_else(not_built)?;
        let own = model.predict_on(&rows_at(fm, ts)?, device)?;
        let h = self.horizons.len();
        let mut pm = Matrix::zeros(own.rows, h);
        for r in 0..own.rows {
            for (j, &col) in self.columns[m].iter().enumerate() {
                pm.values[r * h + j] = own.get(r, col);
            }
        }
        Ok(pm)
    }

    /// Chain group `g`'s members over `x` on a GPU, in one dispatch: `rows × members ×
    /// horizons`.
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    fn run_chains(
        &self,
        g: usize,
        x: &Matrix,
        device: &ComputeDevice,
    ) -> Result<Vec<f64>, EngineError> {
        crate::chains::gpu::run(&self.chain_groups[g], &self.resident[g], x, device)
    }

    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    fn run_chains(
        &self,
        g: usize,
        x: &Matrix,
        device: &ComputeDevice,
    ) -> Result<Vec<f64>, EngineError> {
        let _ = (g, x);
        Err(EngineError::Device(
            forexgpt_device::DeviceError::Unsupported {
                job: "running an ensemble of encoder models".into(),
                device: device.label().to_string(),
                why: "this build has no GPU kernels".into(),
            },
        ))
    }

    /// One affine map for `members` (all reading the same features), horizons in ensemble
    /// order, model after model.
    fn stack(&self, members: &[usize]) -> Result<StackedAffine, EngineError> {
        let h = self.horizons.len();
        let first = &self.models[members[0]];
        let d = first.info.n_features;
        let k = members.len() * h;
        let mut a = vec![0.0; d * k];
        let mut b = vec![0.0; k];
        for (slot, &m) in members.iter().enumerate() {
            let model = &self.models[m];
            let affine = model.affine()?.ok_or_else(|| {
                EngineError::ModelMismatch(format!("{} is not an affine model", model.info.id))
            })?;
            let own_h = model.info.horizons.len();
            for (j, &col) in self.columns[m].iter().enumerate() {
                b[slot * h + j] = affine.b[col];
                for i in 0..d {
                    a[i * k + slot * h + j] = affine.a[i * own_h + col];
                }
            }
        }
        Ok(StackedAffine {
            d,
            a,
            b,
            center: first.state.scaler.mean.clone(),
        })
    }
}

fn not_built() -> EngineError {
    EngineError::InvalidRequest("features were not built".into())
}

/// The feature rows at bar times `ts`.
fn rows_at(fm: &FeatureMatrix, ts: &[i64]) -> Result<Matrix, EngineError> {
    let d = fm.n_columns();
    let mut values = Vec::with_capacity(ts.len() * d);
    for t in ts {
        let r = fm.ts.binary_search(t).map_err(|_| {
            EngineError::InvalidRequest(format!(
                "no feature row at {}",
                forexgpt_core::timestamp::format_ts(*t)
            ))
        })?;
        values.extend_from_slice(fm.row(r));
    }
    Ok(Matrix {
        rows: ts.len(),
        cols: d,
        values,
    })
}

/// `out = b + x·A`, with `x` centred on the training means before the product so that float32
/// on a GPU works with well-scaled numbers (`b` absorbs the shift).
struct StackedAffine {
    d: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    center: Vec<f64>,
}

impl StackedAffine {
    fn shifted_bias(&self) -> Vec<f64> {
        let k = self.b.len();
        let mut b = self.b.clone();
        for (i, c) in self.center.iter().enumerate() {
            b.iter_mut()
                .zip(&self.a[i * k..(i + 1) * k])
                .for_each(|(b, a)| *b += c * a);
        }
        b
    }

    fn apply_cpu(&self, x: &Matrix) -> Vec<f64> {
        let k = self.b.len();
        let b = self.shifted_bias();
        let mut out = vec![0.0; x.rows * k];
        out.par_chunks_mut(k)
            .zip(x.values.par_chunks(self.d))
            .for_each(|(o, row)| {
                o.copy_from_slice(&b);
                for (i, (v, c)) in row.iter().zip(&self.center).enumerate() {
                    let v = v - c;
                    o.iter_mut()
                        .zip(&self.a[i * k..(i + 1) * k])
                        .for_each(|(o, a)| *o += v * a);
                }
            });
        out
    }

    /// The stacked map as chains for the forward kernel: member `slot` is model `slot`'s
    /// `features → horizons` layer (its columns of `A`, its shifted bias), reading rows
    /// centred on [`center`](Self::center) as the CPU's product does (shift 0, scale 1).
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    fn as_chains(&self, spec: &FeatureSpec, members: &[usize], h: usize) -> ChainGroup {
        let k = self.b.len();
        let bias = self.shifted_bias();
        // One layer, the output one: no activation is ever applied.
        let activation = forexgpt_protocol::Activation::Tanh;
        let chains = (0..members.len())
            .map(|slot| {
                let mut params: Vec<f32> = Vec::with_capacity(self.d * h + h);
                for i in 0..self.d {
                    let row = &self.a[i * k + slot * h..i * k + (slot + 1) * h];
                    params.extend(row.iter().map(|&v| v as f32));
                }
                params.extend(bias[slot * h..(slot + 1) * h].iter().map(|&v| v as f32));
                crate::chains::Chain {
                    widths: vec![self.d, h],
                    activation,
                    mean: self.center.clone(),
                    inv_scale: vec![1.0; self.d],
                    params,
                }
            })
            .collect();
        ChainGroup {
            spec: spec.clone(),
            widths: vec![self.d, h],
            activation,
            members: members.to_vec(),
            chains,
        }
    }
}

impl Group {
    /// The stacked product on a GPU: every member in one dispatch of the forward kernel
    /// (float32, each output summed in order; no tensor cores). Features or horizons wider
    /// than the kernel takes run the CPU's float64 product instead (the GPU would only add a
    /// transfer to this one product).
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    fn apply_on(&self, device: &ComputeDevice, x: &Matrix) -> Result<Vec<f64>, EngineError> {
        let (group, resident) = &self.chains;
        if group
            .widths
            .iter()
            .any(|&w| w > crate::fused::FUSED_MAX_WIDTH)
        {
            return Ok(self.stacked.apply_cpu(x));
        }
        let out = crate::chains::gpu::run(group, resident, x, device)?;
        if out.len() != x.rows * self.stacked.b.len() {
            return Err(EngineError::InvalidRequest(format!(
                "{} returned {} values for a {} × {} product",
                device.label(),
                out.len(),
                x.rows,
                self.stacked.b.len()
            )));
        }
        Ok(out)
    }

    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    fn apply_on(&self, device: &ComputeDevice, _: &Matrix) -> Result<Vec<f64>, EngineError> {
        Err(EngineError::Device(
            forexgpt_device::DeviceError::Unsupported {
                job: "an ensemble's affine models".into(),
                device: device.label().to_string(),
                why: "this build has no GPU kernels".into(),
            },
        ))
    }
}

/// Combines the models' predictions of one row and horizon, and the 5/50/95 % quantiles of the
/// mixture of each model's prediction plus its validation residual quantiles.
pub struct Combined {
    pub point: f64,
    pub q05: f64,
    pub q50: f64,
    pub q95: f64,
}

/// Per-model weights for one horizon column `j` (they sum to 1).
pub fn weights(ensemble: &Ensemble, combine: Combine, j: usize) -> Vec<f64> {
    let n = ensemble.models.len();
    let raw: Vec<f64> = match combine {
        Combine::Mean | Combine::Median => vec![1.0; n],
        Combine::Weighted => ensemble
            .models
            .iter()
            .zip(&ensemble.columns)
            .map(|(m, cols)| 1.0 / m.state.validation_mse[cols[j]].max(f64::MIN_POSITIVE))
            .collect(),
    };
    let total: f64 = raw.iter().sum();
    raw.iter().map(|w| w / total).collect()
}

/// The residual quantiles of model `m` for ensemble horizon `j`.
pub fn residual_quantiles(ensemble: &Ensemble, m: usize, j: usize) -> &[f64] {
    &ensemble.models[m].state.residual_quantiles[ensemble.columns[m][j]]
}

/// The naive forecast's return quantiles for ensemble horizon `j` (of the first model).
pub fn baseline_quantiles(ensemble: &Ensemble, j: usize) -> &[f64] {
    &ensemble.models[0].state.baseline_quantiles[ensemble.columns[0][j]]
}

pub fn combine(
    ensemble: &Ensemble,
    combine: Combine,
    weights: &[f64],
    j: usize,
    predictions: &[f64],
) -> Combined {
    let point = match combine {
        Combine::Median => median(predictions),
        Combine::Mean | Combine::Weighted => {
            predictions.iter().zip(weights).map(|(p, w)| p * w).sum()
        }
    };
    if weights.iter().all(|&w| w == weights[0]) {
        let mut pool: Vec<f64> = Vec::with_capacity(predictions.len() * QUANTILE_LEVELS);
        for (m, &p) in predictions.iter().enumerate() {
            pool.extend(residual_quantiles(ensemble, m, j).iter().map(|r| p + r));
        }
        let [q05, q50, q95] = equal_weight_quantiles(&mut pool);
        return Combined {
            point,
            q05,
            q50,
            q95,
        };
    }
    let per_point = 1.0 / QUANTILE_LEVELS as f64;
    let mut pool: Vec<(f64, f64)> = Vec::with_capacity(predictions.len() * QUANTILE_LEVELS);
    for (m, (&p, &w)) in predictions.iter().zip(weights).enumerate() {
        pool.extend(
            residual_quantiles(ensemble, m, j)
                .iter()
                .map(|r| (p + r, w * per_point)),
        );
    }
    pool.sort_by(|a, b| a.0.total_cmp(&b.0));
    Combined {
        point,
        q05: sorted_weighted_quantile(&pool, 0.05),
        q50: sorted_weighted_quantile(&pool, 0.5),
        q95: sorted_weighted_quantile(&pool, 0.95),
    }
}

/// The 5/50/95 % quantiles of equally weighted points by selection instead of a full sort
/// (O(n); a 50-model backtest combines 5,050 points per bar and horizon). Same definition as
/// [`sorted_weighted_quantile`]: the first point whose cumulative share reaches `q`.
fn equal_weight_quantiles(pool: &mut [f64]) -> [f64; 3] {
    let n = pool.len();
    if n == 0 {
        return [0.0; 3];
    }
    let rank = |q: f64| ((n as f64 * (q - 1e-12)).ceil() as usize).clamp(1, n) - 1;
    let (k05, k50, k95) = (rank(0.05), rank(0.5), rank(0.95));
    let (below, mid, above) = pool.select_nth_unstable_by(k50, f64::total_cmp);
    let q50 = *mid;
    let q05 = if k05 < k50 {
        *below.select_nth_unstable_by(k05, f64::total_cmp).1
    } else {
        q50
    };
    let q95 = if k95 > k50 {
        *above
            .select_nth_unstable_by(k95 - k50 - 1, f64::total_cmp)
            .1
    } else {
        q50
    };
    [q05, q50, q95]
}

/// The median; of an even count, the mean of the middle two.
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => 0.0,
        n if n % 2 == 0 => 0.5 * (v[mid - 1] + v[mid]),
        _ => v[mid],
    }
}

/// The first value whose cumulative weight reaches `q` (weights summing to 1). For one model
/// with 101 equal points this is exactly its stored 5 %, 50 % and 95 % quantiles.
fn sorted_weighted_quantile(points: &[(f64, f64)], q: f64) -> f64 {
    let total: f64 = points.iter().map(|p| p.1).sum();
    let target = q * total - 1e-12 * total;
    let mut acc = 0.0;
    for &(v, w) in points {
        acc += w;
        if acc >= target {
            return v;
        }
    }
    points.last().map_or(0.0, |p| p.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_quantile_of_equal_points_picks_the_stored_levels() {
        let pool: Vec<(f64, f64)> = (0..101).map(|i| (f64::from(i), 1.0 / 101.0)).collect();
        assert_eq!(sorted_weighted_quantile(&pool, 0.05), 5.0);
        assert_eq!(sorted_weighted_quantile(&pool, 0.5), 50.0);
        assert_eq!(sorted_weighted_quantile(&pool, 0.95), 95.0);
    }

    #[test]
    fn selected_quantiles_equal_the_sorted_cumulative_ones() {
        for n in [1usize, 2, 7, 101, 2020, 5050] {
            let values: Vec<f64> = (0..n)
                .map(|i| ((i * 7919) % 1009) as f64 * 0.5 - 3.0)
                .collect();
            let mut sorted: Vec<(f64, f64)> = values.iter().map(|&v| (v, 1.0 / n as f64)).collect();
            sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
            let want = [0.05, 0.5, 0.95].map(|q| sorted_weighted_quantile(&sorted, q));
            assert_eq!(equal_weight_quantiles(&mut values.clone()), want, "n = {n}");
        }
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[4.0, 1.0, 3.0]), 3.0);
    }
}
