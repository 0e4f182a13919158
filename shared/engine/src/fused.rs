//! Encoder training on a GPU through our fused kernels (`forexgpt_kernels::fused_mlp`): the
//! same network, initial weights, batch order and epochs as burn's path
//! ([`crate::neural`]), with each dispatch running many whole Adam steps instead of hundreds
//! of small burn kernels per step. What the kernels do not cover yet trains through burn,
//! with the reason logged ([`not_covered`]).

use forexgpt_device::ComputeDevice;
use forexgpt_models::NetworkWeights;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
use forexgpt_models::{AutoencoderConfig, NetworkConfig};

use crate::error::EngineError;
use crate::neural::{NetworkKind, NeuralEncoder, TrainRun};

/// Why the fused kernels cannot train this run's network (burn's path then does), or `None`
/// when they can.
pub(crate) fn not_covered(run: &TrainRun<'_>) -> Option<String> {
    if !cfg!(any(feature = "wgpu", feature = "cuda")) {
        return Some("this build has no GPU kernels".into());
    }
    if run.kind != NetworkKind::Autoencoder {
        return Some("the fused kernels train the autoencoder; the VAE is not in them yet".into());
    }
    if run.spec.dropout > 0.0 {
        return Some("the fused kernels have no dropout yet".into());
    }
    None
}

/// The autoencoder as one chain of dense layers: the encoder's widths then the decoder's,
/// every layer activated but the latent one and the output. With the seeded initial weights
/// in the chain's parameter layout (each layer's `inputs × outputs` weight, then its bias).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn chain(
    run: &TrainRun<'_>,
) -> (
    forexgpt_kernels::fused_mlp::ChainShape,
    Vec<f32>,
    Vec<(usize, usize)>,
) {
    let config = AutoencoderConfig::from_spec(run.train.cols, run.spec);
    let sizes = config.layer_sizes();
    let mut widths = vec![run.train.cols];
    widths.extend(sizes.iter().map(|&(_, outputs)| outputs));
    let encoder_layers = run.spec.hidden.len() + 1;
    let activated = (0..sizes.len())
        .map(|l| l + 1 != encoder_layers && l + 1 != sizes.len())
        .collect();
    let shape = forexgpt_kernels::fused_mlp::ChainShape {
        widths,
        activated,
        activation: run.spec.activation.into(),
        batch: run.spec.batch_size,
    };
    (shape, flatten(&config.seeded_weights()), sizes)
}

fn flatten(weights: &NetworkWeights) -> Vec<f32> {
    weights
        .layers
        .iter()
        .flat_map(|l| l.weight.iter().chain(&l.bias).copied())
        .collect()
}

fn unflatten(params: &[f32], sizes: &[(usize, usize)]) -> NetworkWeights {
    let mut at = 0;
    let layers = sizes
        .iter()
        .map(|&(inputs, outputs)| {
            let weight = params[at..at + inputs * outputs].to_vec();
            at += inputs * outputs;
            let bias = params[at..at + outputs].to_vec();
            at += outputs;
            forexgpt_models::DenseWeights {
                inputs,
                outputs,
                weight,
                bias,
            }
        })
        .collect();
    NetworkWeights { layers }
}

/// Trains the run's network on `device` (a GPU) with the fused kernels.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub(crate) fn train(
    run: &TrainRun<'_>,
    device: &ComputeDevice,
) -> Result<NeuralEncoder, EngineError> {
    use forexgpt_device::cube::run_cube_job;

    let job = FusedJob { run, device };
    run_cube_job(device, "training an encoder network", job)?
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
pub(crate) fn train(
    run: &TrainRun<'_>,
    device: &ComputeDevice,
) -> Result<NeuralEncoder, EngineError> {
    let _ = (run, device, flatten, unflatten);
    Err(EngineError::InvalidRequest(
        "this build has no GPU kernels".into(),
    ))
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
struct FusedJob<'a, 'b> {
    run: &'a TrainRun<'b>,
    device: &'a ComputeDevice,
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl forexgpt_device::cube::CubeJob for FusedJob<'_, '_> {
    type Output = Result<NeuralEncoder, EngineError>;

    fn run<R: forexgpt_device::cube::cubecl::Runtime>(self, device: &R::Device) -> Self::Output {
        use std::time::Instant;

        use forexgpt_kernels::fused_mlp::{AdamConstants, ChainTrainer};

        use crate::neural::{EpochBook, batch_order_rng, shuffled_rows};

        let run = self.run;
        let failed = |message: String| {
            EngineError::Device(forexgpt_device::DeviceError::BackendFailed {
                device: self.device.label().to_string(),
                message,
            })
        };
        let (shape, initial, sizes) = chain(run);
        let as_f32 = |values: &[f64]| values.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let mut trainer = ChainTrainer::<R>::new(
            device,
            shape,
            &as_f32(&run.train.values),
            &as_f32(&run.validation.values),
            &[initial],
        )
        .map_err(failed)?;
        let n = run.train.rows;
        let adam = AdamConstants::with_lr(run.spec.learning_rate as f32);
        let mut rng = batch_order_rng(run.spec);
        let mut book = EpochBook::new(run);
        let cancelled = || run.cancel.is_cancelled();
        for epoch in 1..=run.spec.epochs {
            let started = Instant::now();
            let order: Vec<u32> = shuffled_rows(n, &mut rng)
                .into_iter()
                .map(|r| r as u32)
                .collect();
            let Some(train_loss) = trainer
                .epoch(&order, &[true], adam, &cancelled)
                .map_err(failed)?
            else {
                return Err(EngineError::Cancelled);
            };
            let validation_loss = trainer.validation_loss(&[true]).map_err(failed)?;
            let seconds = started.elapsed().as_secs_f64();
            let weights = || {
                let mut all = trainer.parameters().map_err(failed)?;
                Ok(all.swap_remove(0))
            };
            if !book.record(epoch, train_loss[0], validation_loss[0], seconds, weights)? {
                break;
            }
        }
        let (params, best_epoch, history) = book.finish()?;
        Ok(NeuralEncoder {
            d_input: run.train.cols,
            net: run.spec.clone(),
            weights: unflatten(&params, &sizes),
            best_epoch,
            history,
        })
    }
}

#[cfg(test)]
mod tests {
    use forexgpt_models::{AutoencoderConfig, NetworkConfig};

    use super::*;

    #[test]
    fn weights_flatten_into_the_chain_layout_and_back() {
        let spec = forexgpt_protocol::NeuralEncoderSpec {
            hidden: vec![5, 3],
            latent: 2,
            ..Default::default()
        };
        let config = AutoencoderConfig::from_spec(7, &spec);
        let weights = config.seeded_weights();
        let flat = flatten(&weights);
        assert_eq!(flat.len(), weights.parameters());
        assert_eq!(unflatten(&flat, &config.layer_sizes()), weights);
    }
}
