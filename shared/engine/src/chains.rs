//! Neural-encoder models with a linear regressor as chains of dense layers, so that an
//! ensemble of them runs on a GPU in one dispatch per shape
//! (`forexgpt_kernels::fused_forward`) instead of model after model.
//!
//! A model's pipeline is scaler → encoder layers → latent layer → linear regressor. The
//! latent layer has no activation, so it and the regressor are one affine map: folding the
//! regressor's coefficients into the latent layer (in float64) leaves a chain
//! `features → hidden… → horizons`. The scaler stays a per-column `(x − shift) · inv_scale`
//! that the kernel applies (folding it into the first layer would scale the raw values in
//! float32 before the centring, and lose digits on price-like columns); the rows are centred
//! on the first member's means in float64 on the host, so each member's shift is small.
//! Columns a scaler dropped read 0 through a zero scale.

use forexgpt_core::scaler::StandardScaler;
use forexgpt_models::DenseWeights;
use forexgpt_protocol::{Activation, FeatureSpec};
use forexgpt_regressors::LinearModel;

use crate::model::{Model, RegressorState};
use crate::neural::NeuralEncoder;

/// The layers of one member, in float32 as the kernel reads them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chain {
    /// `features → hidden… → horizons`.
    pub widths: Vec<usize>,
    pub activation: Activation,
    /// The scaler's means (raw columns).
    pub mean: Vec<f64>,
    /// `1 / scale` of each raw column, 0 for a dropped one.
    pub inv_scale: Vec<f64>,
    /// Each layer's `inputs × outputs` weight, then its bias.
    pub params: Vec<f32>,
}

/// Members that run together: the same features and chain shape.
pub(crate) struct ChainGroup {
    pub spec: FeatureSpec,
    pub widths: Vec<usize>,
    pub activation: Activation,
    /// Models of the ensemble, in member order.
    pub members: Vec<usize>,
    pub chains: Vec<Chain>,
}

impl ChainGroup {
    /// Where the host centres the rows: the first member's means.
    pub fn center(&self) -> &[f64] {
        &self.chains[0].mean
    }
}

/// The model's pipeline as a chain, with its regressor's outputs `columns` (the ensemble's
/// horizons) as the chain's outputs; `None` when it is not a neural encoder with a linear
/// regressor, or has a boundary wider than the kernels take (such a model runs its own
/// pipeline).
pub(crate) fn chain_of(model: &Model, columns: &[usize]) -> Option<Chain> {
    let state = &model.state;
    let (_, encoder) = state.encoder.network()?;
    let RegressorState::Linear(linear) = &state.regressor else {
        return None;
    };
    chain(&state.scaler, encoder, linear, columns)
        // The forward kernel keeps a row of every boundary in workgroup memory, twice: the
        // widths the fused kernels take fit the 16 KiB every device has.
        .filter(|c| c.widths.iter().all(|&w| w <= crate::fused::FUSED_MAX_WIDTH))
}

/// The encoder half of an autoencoder (of a VAE: its body and μ head, the posterior mean)
/// as a chain over scaled features, for encoding on a GPU by the forward kernel; `None` when
/// its layers do not fit together or a boundary is wider than the kernels take.
pub(crate) fn encoder_chain(encoder: &NeuralEncoder) -> Option<Chain> {
    let hidden = encoder.net.hidden.len();
    let layers: &[DenseWeights] = encoder.weights.layers.get(..=hidden)?;
    let d = encoder.d_input;
    let mut widths = vec![d];
    let mut params = Vec::new();
    for layer in layers {
        let fits = widths.last() == Some(&layer.inputs)
            && layer.weight.len() == layer.inputs * layer.outputs
            && layer.bias.len() == layer.outputs;
        if !fits {
            return None;
        }
        params.extend(&layer.weight);
        params.extend(&layer.bias);
        widths.push(layer.outputs);
    }
    if widths.iter().any(|&w| w > crate::fused::FUSED_MAX_WIDTH) {
        return None;
    }
    Some(Chain {
        widths,
        activation: encoder.net.activation,
        mean: vec![0.0; d],
        inv_scale: vec![1.0; d],
        params,
    })
}

/// The chain of a scaler, a neural encoder (autoencoder or VAE) and a linear regressor;
/// `None` when their shapes do not fit together.
fn chain(
    scaler: &StandardScaler,
    encoder: &NeuralEncoder,
    linear: &LinearModel,
    columns: &[usize],
) -> Option<Chain> {
    let hidden = encoder.net.hidden.len();
    // The autoencoder's encoder layers and the VAE's body then μ head: the first
    // `hidden + 1` layers in both.
    let layers: &[DenseWeights] = encoder.weights.layers.get(..=hidden)?;
    let d = scaler.mean.len();
    if scaler.scale.len() != d {
        return None;
    }
    let mut kept = vec![true; d];
    for &j in &scaler.dropped {
        *kept.get_mut(j)? = false;
    }
    let raw_columns: Vec<usize> = (0..d).filter(|&j| kept[j]).collect();
    let mut widths = vec![d];
    let mut params = Vec::new();
    for (l, layer) in layers.iter().enumerate() {
        let (fin, fout) = (layer.inputs, layer.outputs);
        if layer.weight.len() != fin * fout || layer.bias.len() != fout {
            return None;
        }
        if l > 0 && widths.last() != Some(&fin) {
            return None;
        }
        if l == 0 {
            // The first layer over every raw column, zero rows for the dropped ones.
            if fin != raw_columns.len() {
                return None;
            }
            let mut w = vec![0.0f32; d * fout];
            for (k, &j) in raw_columns.iter().enumerate() {
                w[j * fout..(j + 1) * fout]
                    .copy_from_slice(&layer.weight[k * fout..(k + 1) * fout]);
            }
            if l + 1 < layers.len() {
                params.extend(w);
                params.extend(&layer.bias);
                widths.push(fout);
                continue;
            }
            // A network without hidden layers: its one layer is the latent one.
            let folded = fold(&w, &layer.bias, d, fout, linear, columns)?;
            params.extend(folded);
            widths.push(columns.len());
        } else if l + 1 < layers.len() {
            params.extend(&layer.weight);
            params.extend(&layer.bias);
            widths.push(fout);
        } else {
            let folded = fold(&layer.weight, &layer.bias, fin, fout, linear, columns)?;
            params.extend(folded);
            widths.push(columns.len());
        }
    }
    let inv_scale = (0..d)
        .map(|j| if kept[j] { 1.0 / scaler.scale[j] } else { 0.0 })
        .collect();
    Some(Chain {
        widths,
        activation: encoder.net.activation,
        mean: scaler.mean.clone(),
        inv_scale,
        params,
    })
}

/// The latent layer (`fin × latent` weight, bias) followed by the regressor, as one layer
/// `fin × columns` (weight then bias), in float64 then rounded once.
fn fold(
    weight: &[f32],
    bias: &[f32],
    fin: usize,
    latent: usize,
    linear: &LinearModel,
    columns: &[usize],
) -> Option<Vec<f32>> {
    let outputs = linear.coef.rows.min(linear.intercept.len());
    if linear.coef.cols != latent || columns.iter().any(|&c| c >= outputs) {
        return None;
    }
    let h = columns.len();
    let mut out = vec![0.0f32; fin * h + h];
    for (j, &col) in columns.iter().enumerate() {
        let coef = linear.coef.row(col);
        for i in 0..fin {
            let w = &weight[i * latent..(i + 1) * latent];
            out[i * h + j] = w
                .iter()
                .zip(coef)
                .map(|(&w, c)| f64::from(w) * c)
                .sum::<f64>() as f32;
        }
        out[fin * h + j] = (linear.intercept[col]
            + bias
                .iter()
                .zip(coef)
                .map(|(&b, c)| f64::from(b) * c)
                .sum::<f64>()) as f32;
    }
    Some(out)
}

/// Runs chains on a GPU by the forward kernel: a group's members over `rows` (raw features,
/// `n × features`), kept resident on the device between calls, or one trained encoder's
/// layers for one call.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub(crate) mod gpu {
    use std::any::Any;
    use std::sync::Mutex;

    use forexgpt_device::ComputeDevice;
    use forexgpt_device::cube::{CubeJob, cubecl, run_cube_job};
    use forexgpt_kernels::fused_forward::{ForwardEnsemble, ForwardMember, ForwardShape};
    use forexgpt_protocol::Activation;
    use forexgpt_regressors::Matrix;

    use super::{Chain, ChainGroup};
    use crate::error::EngineError;

    /// A group's members uploaded to each device they ran on (by device label).
    #[derive(Default)]
    pub(crate) struct Resident {
        on: Mutex<Vec<(String, Box<dyn Any + Send>)>>,
    }

    /// The members a dispatch runs.
    enum Members<'a> {
        /// An ensemble's group, uploaded on its first run on a device and kept there.
        Kept {
            group: &'a ChainGroup,
            resident: &'a Resident,
            label: &'a str,
        },
        /// One chain, uploaded for this dispatch only.
        Once(&'a Chain),
    }

    struct ForwardJob<'a> {
        members: Members<'a>,
        /// The rows, centred on the first member's means.
        rows: Vec<f32>,
    }

    impl CubeJob for ForwardJob<'_> {
        type Output = Result<Vec<f32>, String>;

        fn run<R: cubecl::Runtime>(self, device: &R::Device) -> Self::Output {
            let (group, resident, label) = match self.members {
                Members::Once(chain) => {
                    let member = member(chain, &chain.mean);
                    let shape = shape(&chain.widths, chain.activation);
                    return ForwardEnsemble::<R>::new(device, shape, &[member])?.run(&self.rows);
                }
                Members::Kept {
                    group,
                    resident,
                    label,
                } => (group, resident, label),
            };
            let mut on = resident.on.lock().unwrap_or_else(|e| e.into_inner());
            let found = on
                .iter()
                .position(|(l, e)| l == label && e.is::<ForwardEnsemble<R>>());
            let at = match found {
                Some(at) => at,
                None => {
                    let center = group.center();
                    let members: Vec<ForwardMember> =
                        group.chains.iter().map(|c| member(c, center)).collect();
                    let shape = shape(&group.widths, group.activation);
                    let ensemble = ForwardEnsemble::<R>::new(device, shape, &members)?;
                    on.push((label.to_string(), Box::new(ensemble)));
                    on.len() - 1
                }
            };
            let ensemble = on[at]
                .1
                .downcast_ref::<ForwardEnsemble<R>>()
                .ok_or("the resident ensemble changed type")?;
            ensemble.run(&self.rows)
        }
    }

    fn shape(widths: &[usize], activation: Activation) -> ForwardShape {
        ForwardShape {
            widths: widths.to_vec(),
            activation: activation.into(),
        }
    }

    /// A chain as the kernel reads it, for rows centred on `center`: its scaler's shift
    /// relative to that centre.
    fn member(chain: &Chain, center: &[f64]) -> ForwardMember {
        ForwardMember {
            shift: chain
                .mean
                .iter()
                .zip(center)
                .zip(&chain.inv_scale)
                .map(|((m, c), &k)| if k == 0.0 { 0.0 } else { (m - c) as f32 })
                .collect(),
            inv_scale: chain.inv_scale.iter().map(|&k| k as f32).collect(),
            params: chain.params.clone(),
        }
    }

    /// `x`'s rows minus `center`, in float64, then rounded to the kernel's float32.
    fn centred(x: &Matrix, center: &[f64]) -> Vec<f32> {
        x.values
            .chunks_exact(x.cols)
            .flat_map(|row| row.iter().zip(center).map(|(v, c)| (v - c) as f32))
            .collect()
    }

    fn dispatch(
        device: &ComputeDevice,
        what: &str,
        job: ForwardJob<'_>,
    ) -> Result<Vec<f64>, EngineError> {
        let out = run_cube_job(device, what, job)?.map_err(|message| {
            EngineError::Device(forexgpt_device::DeviceError::BackendFailed {
                device: device.label().to_string(),
                message,
            })
        })?;
        Ok(out.into_iter().map(f64::from).collect())
    }

    /// One chain's outputs for `x` (`n × outputs`): a trained encoder's latent code.
    pub(crate) fn encode(
        chain: &Chain,
        x: &Matrix,
        device: &ComputeDevice,
    ) -> Result<Matrix, EngineError> {
        let cols = chain.widths.last().copied().unwrap_or(0);
        let values = if x.rows == 0 {
            Vec::new()
        } else {
            let job = ForwardJob {
                members: Members::Once(chain),
                rows: centred(x, &chain.mean),
            };
            dispatch(device, "encoding with a trained network", job)?
        };
        Ok(Matrix {
            rows: x.rows,
            cols,
            values,
        })
    }

    /// Every member's outputs for `x`: `n × members × horizons`.
    pub(crate) fn run(
        group: &ChainGroup,
        resident: &Resident,
        x: &Matrix,
        device: &ComputeDevice,
    ) -> Result<Vec<f64>, EngineError> {
        let job = ForwardJob {
            members: Members::Kept {
                group,
                resident,
                label: device.label(),
            },
            rows: centred(x, group.center()),
        };
        dispatch(device, "running an ensemble of encoder models", job)
    }
}

#[cfg(test)]
mod tests {
    use forexgpt_device::ComputeDevice;
    use forexgpt_models::{AutoencoderConfig, NetworkConfig, VaeConfig};
    use forexgpt_protocol::NeuralEncoderSpec;
    use forexgpt_random::SplitMix64;
    use forexgpt_regressors::{Matrix, Ridge};

    use super::*;
    use crate::neural::NetworkKind;

    /// A fitted ridge with these coefficients (`horizons × latent`) and intercepts.
    fn ridge(coef: Matrix, intercept: Vec<f64>) -> LinearModel {
        let horizons = intercept.len();
        LinearModel {
            params: Ridge::params().check().unwrap().params().clone(),
            coef,
            intercept,
            n_iter: vec![0; horizons],
            not_converged: Vec::new(),
        }
    }

    /// An autoencoder (or a VAE) over `d` columns with these hidden layers and a latent of 2,
    /// at its seeded initial weights, and the kind to encode it with.
    fn seeded_encoder(
        d: usize,
        vae: bool,
        hidden: &[usize],
        activation: Activation,
    ) -> (NetworkKind, NeuralEncoder) {
        let spec = NeuralEncoderSpec {
            hidden: hidden.to_vec(),
            latent: 2,
            activation,
            ..NeuralEncoderSpec::default()
        };
        let (kind, weights) = if vae {
            let config = VaeConfig::from_spec(d, &spec);
            (NetworkKind::VAE_ENCODING, config.seeded_weights())
        } else {
            let config = AutoencoderConfig::from_spec(d, &spec);
            (NetworkKind::Autoencoder, config.seeded_weights())
        };
        let encoder = NeuralEncoder {
            d_input: d,
            net: spec,
            weights,
            best_epoch: 1,
            history: Vec::new(),
        };
        (kind, encoder)
    }

    /// The chain's forward pass in float64.
    fn eval(chain: &Chain, row: &[f64]) -> Vec<f64> {
        let mut a: Vec<f64> = row
            .iter()
            .zip(&chain.mean)
            .zip(&chain.inv_scale)
            .map(|((x, m), k)| (x - m) * k)
            .collect();
        let mut at = 0;
        let layers = chain.widths.len() - 1;
        for (l, w) in chain.widths.windows(2).enumerate() {
            let (fin, fout) = (w[0], w[1]);
            let p = &chain.params[at..at + fin * fout + fout];
            at += fin * fout + fout;
            a = (0..fout)
                .map(|j| {
                    let z = f64::from(p[fin * fout + j])
                        + (0..fin)
                            .map(|i| a[i] * f64::from(p[i * fout + j]))
                            .sum::<f64>();
                    if l + 1 < layers { z.tanh() } else { z }
                })
                .collect();
        }
        a
    }

    #[test]
    fn a_chain_computes_the_models_pipeline_for_either_network_and_dropped_columns() {
        let mut rng = SplitMix64::new(5);
        let mut draw = |n: usize, lo: f64, hi: f64| -> Vec<f64> {
            (0..n).map(|_| lo + (hi - lo) * rng.uniform()).collect()
        };
        // Six raw columns, two of them dropped (constant when the scaler was fit).
        let scaler = StandardScaler {
            mean: draw(6, 0.5, 1.5),
            scale: draw(6, 0.01, 2.0),
            dropped: vec![1, 4],
        };
        let linear = ridge(
            Matrix::new(3, 2, draw(6, -1.0, 1.0)).unwrap(),
            draw(3, -0.1, 0.1),
        );
        let raw = Matrix::new(5, 6, draw(30, 0.0, 2.0)).unwrap();
        // The ensemble's horizons are the regressor's third and first outputs.
        let columns = [2, 0];
        let cpu = ComputeDevice::cpu("CPU");
        for (vae, hidden) in [(false, vec![5, 3]), (true, vec![5]), (false, vec![])] {
            let (kind, encoder) = seeded_encoder(4, vae, &hidden, Activation::Tanh);
            let chain = chain(&scaler, &encoder, &linear, &columns).unwrap();
            let mut widths = vec![6];
            widths.extend(&hidden);
            widths.push(2);
            assert_eq!(chain.widths, widths);
            let scaled = Matrix::new(5, 4, scaler.transform(&raw.values).unwrap()).unwrap();
            let encoded = encoder.encode(kind, &scaled, &cpu).unwrap();
            let want = linear.predict(&encoded).unwrap();
            for r in 0..5 {
                let got = eval(&chain, raw.row(r));
                for (j, &col) in columns.iter().enumerate() {
                    let w = want.get(r, col);
                    // The folded layer is rounded to f32 once; burn's encoder runs in f32.
                    assert!(
                        (got[j] - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "vae {vae}, hidden {hidden:?}, row {r}, horizon {j}: {} vs {w}",
                        got[j]
                    );
                }
            }
        }
    }

    /// A trained encoder's latent code on a GPU (the forward kernel) against burn's on the
    /// CPU: autoencoders and a VAE (its posterior mean), with and without hidden layers.
    #[test]
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    fn encoding_on_a_gpu_gives_burns_latent_code() {
        let gpus = forexgpt_device::testing::test_gpus("encoding by the forward kernel");
        let cpu = ComputeDevice::cpu("CPU");
        let mut rng = SplitMix64::new(9);
        let x = Matrix::new(
            37,
            6,
            (0..37 * 6).map(|_| 4.0 * rng.uniform() - 2.0).collect(),
        )
        .unwrap();
        for (vae, hidden, activation) in [
            (false, vec![5, 3], Activation::Relu),
            (true, vec![5], Activation::Tanh),
            (false, vec![], Activation::Gelu),
        ] {
            let (kind, encoder) = seeded_encoder(6, vae, &hidden, activation);
            assert!(encoder_chain(&encoder).is_some());
            let want = encoder.encode(kind, &x, &cpu).unwrap();
            for gpu in &gpus {
                let got = encoder.encode(kind, &x, gpu).unwrap();
                assert_eq!((got.rows, got.cols), (want.rows, want.cols));
                for (g, w) in got.values.iter().zip(&want.values) {
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{}: vae {vae}, hidden {hidden:?}: {g} vs {w}",
                        gpu.label()
                    );
                }
                let none = Matrix::new(0, 6, Vec::new()).unwrap();
                assert_eq!(encoder.encode(kind, &none, gpu).unwrap().cols, 2);
            }
        }
    }

    #[test]
    fn models_that_are_not_an_encoder_and_a_linear_regressor_are_not_chains() {
        let scaler = StandardScaler {
            mean: vec![0.0; 3],
            scale: vec![1.0; 3],
            dropped: Vec::new(),
        };
        let spec = NeuralEncoderSpec {
            hidden: vec![4],
            latent: 2,
            ..NeuralEncoderSpec::default()
        };
        let encoder = NeuralEncoder {
            d_input: 3,
            weights: AutoencoderConfig::from_spec(3, &spec).seeded_weights(),
            net: spec,
            best_epoch: 1,
            history: Vec::new(),
        };
        let linear = |latent: usize| {
            ridge(
                Matrix::new(1, latent, vec![1.0; latent]).unwrap(),
                vec![0.0],
            )
        };
        assert!(chain(&scaler, &encoder, &linear(2), &[0]).is_some());
        // A regressor that reads another latent size, an encoder that reads other columns.
        assert!(chain(&scaler, &encoder, &linear(3), &[0]).is_none());
        let wider = StandardScaler {
            mean: vec![0.0; 4],
            scale: vec![1.0; 4],
            dropped: Vec::new(),
        };
        assert!(chain(&wider, &encoder, &linear(2), &[0]).is_none());
        // A horizon the regressor does not have.
        assert!(chain(&scaler, &encoder, &linear(2), &[1]).is_none());
    }
}
