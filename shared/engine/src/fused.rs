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
pub(crate) fn train(
    run: &TrainRun<'_>,
    device: &ComputeDevice,
) -> Result<NeuralEncoder, EngineError> {
    let mut trained = train_together(&[run], device)?;
    Ok(trained.swap_remove(0))
}

/// Trains the networks of several runs together on `device`, one workgroup each in every
/// launch. They share the training and validation rows, the network shape, the batch size
/// and the learning rate (seeds, epochs and patience may differ: a network that stops early
/// sits out the later launches). Each network gets what it would get trained alone.
pub fn train_together(
    runs: &[&TrainRun<'_>],
    device: &ComputeDevice,
) -> Result<Vec<NeuralEncoder>, EngineError> {
    let Some(first) = runs.first() else {
        return Ok(Vec::new());
    };
    for run in runs {
        if let Some(why) = not_covered(run) {
            return Err(EngineError::InvalidRequest(format!("{}: {why}", run.label)));
        }
        let same = std::ptr::eq(run.train, first.train)
            && std::ptr::eq(run.validation, first.validation)
            && run.spec.hidden == first.spec.hidden
            && run.spec.latent == first.spec.latent
            && run.spec.activation == first.spec.activation
            && run.spec.batch_size == first.spec.batch_size
            && run.spec.learning_rate == first.spec.learning_rate;
        if !same {
            return Err(EngineError::InvalidRequest(format!(
                "{} cannot train together with {}: they differ in data, shape, batch size or learning rate",
                run.label, first.label
            )));
        }
    }
    trained_on(runs, device)
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn trained_on(
    runs: &[&TrainRun<'_>],
    device: &ComputeDevice,
) -> Result<Vec<NeuralEncoder>, EngineError> {
    use forexgpt_device::cube::run_cube_job;

    run_cube_job(
        device,
        "training an encoder network",
        FusedJob { runs, device },
    )?
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn trained_on(
    runs: &[&TrainRun<'_>],
    device: &ComputeDevice,
) -> Result<Vec<NeuralEncoder>, EngineError> {
    let _ = (runs, device, flatten, unflatten);
    Err(EngineError::InvalidRequest(
        "this build has no GPU kernels".into(),
    ))
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
struct FusedJob<'a, 'b> {
    runs: &'a [&'a TrainRun<'b>],
    device: &'a ComputeDevice,
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl forexgpt_device::cube::CubeJob for FusedJob<'_, '_> {
    type Output = Result<Vec<NeuralEncoder>, EngineError>;

    fn run<R: forexgpt_device::cube::cubecl::Runtime>(self, device: &R::Device) -> Self::Output {
        use std::time::Instant;

        use forexgpt_kernels::fused_mlp::{AdamConstants, ChainTrainer};

        use crate::neural::{EpochBook, batch_order_rng, shuffled_rows};

        let runs = self.runs;
        let first = runs[0];
        let failed = |message: String| {
            EngineError::Device(forexgpt_device::DeviceError::BackendFailed {
                device: self.device.label().to_string(),
                message,
            })
        };
        let chains: Vec<_> = runs.iter().map(|run| chain(run)).collect();
        let (shape, _, sizes) = chains[0].clone();
        let initial: Vec<Vec<f32>> = chains.into_iter().map(|(_, weights, _)| weights).collect();
        let as_f32 = |values: &[f64]| values.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let mut trainer = ChainTrainer::<R>::new(
            device,
            shape,
            &as_f32(&first.train.values),
            &as_f32(&first.validation.values),
            &initial,
        )
        .map_err(failed)?;
        let n = first.train.rows;
        let adam = AdamConstants::with_lr(first.spec.learning_rate as f32);
        let mut rngs: Vec<_> = runs.iter().map(|run| batch_order_rng(run.spec)).collect();
        let mut books: Vec<_> = runs.iter().map(|run| EpochBook::new(run)).collect();
        let mut active: Vec<bool> = runs.iter().map(|run| run.spec.epochs > 0).collect();
        let cancelled = || runs.iter().any(|run| run.cancel.is_cancelled());
        let mut epoch = 0;
        while active.iter().any(|&a| a) {
            epoch += 1;
            let started = Instant::now();
            let order: Vec<u32> = rngs
                .iter_mut()
                .flat_map(|rng| shuffled_rows(n, rng).into_iter().map(|r| r as u32))
                .collect();
            let Some(train_loss) = trainer
                .epoch(&order, &active, adam, &cancelled)
                .map_err(failed)?
            else {
                return Err(EngineError::Cancelled);
            };
            let validation_loss = trainer.validation_loss(&active).map_err(failed)?;
            let seconds = started.elapsed().as_secs_f64();
            // Read back once per epoch, and only if some network improved.
            let mut weights: Option<Vec<Vec<f32>>> = None;
            for (k, book) in books.iter_mut().enumerate() {
                if !active[k] {
                    continue;
                }
                let mut read = || -> Result<Vec<f32>, EngineError> {
                    if weights.is_none() {
                        weights = Some(trainer.parameters().map_err(failed)?);
                    }
                    Ok(weights
                        .as_ref()
                        .map(|all| all[k].clone())
                        .unwrap_or_default())
                };
                let goes_on =
                    book.record(epoch, train_loss[k], validation_loss[k], seconds, &mut read)?;
                active[k] = goes_on && epoch < runs[k].spec.epochs;
            }
        }
        books
            .into_iter()
            .zip(runs)
            .map(|(book, run)| {
                let (params, best_epoch, history) = book.finish()?;
                Ok(NeuralEncoder {
                    d_input: run.train.cols,
                    net: run.spec.clone(),
                    weights: unflatten(&params, &sizes),
                    best_epoch,
                    history,
                })
            })
            .collect()
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
