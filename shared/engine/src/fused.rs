//! Encoder training on a GPU through our fused kernels (`forexgpt_kernels::fused_mlp`): the
//! same network, initial weights, batch order and epochs as burn's path
//! ([`crate::neural`]), with each dispatch running many whole Adam steps instead of hundreds
//! of small burn kernels per step. What the kernels do not cover yet trains through burn,
//! with the reason logged ([`not_covered`]).

use forexgpt_device::ComputeDevice;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
use forexgpt_models::{AutoencoderConfig, NetworkConfig, VaeConfig};
use forexgpt_models::{DenseWeights, NetworkWeights};

use crate::error::EngineError;
use forexgpt_protocol::NeuralEncoderSpec;

use crate::neural::{NetworkKind, NeuralEncoder, TrainRun};

/// Why the fused kernels cannot train this run's network (burn's path then does), or `None`
/// when they can.
pub(crate) fn not_covered(run: &TrainRun<'_>) -> Option<String> {
    not_covered_spec(run.spec).or_else(|| {
        (run.train.cols > FUSED_MAX_WIDTH).then(|| {
            format!(
                "the fused kernels take inputs up to {FUSED_MAX_WIDTH} wide, not {}",
                run.train.cols
            )
        })
    })
}

/// The widest layer and batch the fused kernels take: any device with the 16 KiB of
/// workgroup memory WebGPU guarantees stages a padded column of such a batch and a padded row
/// of such a layer's inputs (`fused_mlp`'s chunks).
pub(crate) const FUSED_MAX_WIDTH: usize = 2048;

/// [`not_covered`] for a network spec.
pub(crate) fn not_covered_spec(net: &NeuralEncoderSpec) -> Option<String> {
    if !cfg!(any(feature = "wgpu", feature = "cuda")) {
        return Some("this build has no GPU kernels".into());
    }
    if net.batch_size > FUSED_MAX_WIDTH {
        return Some(format!(
            "the fused kernels take batches up to {FUSED_MAX_WIDTH} rows, not {}",
            net.batch_size
        ));
    }
    if let Some(&w) = net.hidden.iter().find(|&&w| w > FUSED_MAX_WIDTH) {
        return Some(format!(
            "the fused kernels take layers up to {FUSED_MAX_WIDTH} wide, not {w}"
        ));
    }
    None
}

/// Whether two networks can train in the same launches: the same kind (with its KL schedule),
/// shape, activation, batch size, learning rate and dropout. Seeds, epochs and patience may
/// differ.
pub(crate) fn train_alike(
    (kind_a, a): (NetworkKind, &NeuralEncoderSpec),
    (kind_b, b): (NetworkKind, &NeuralEncoderSpec),
) -> bool {
    kind_a == kind_b
        && a.hidden == b.hidden
        && a.latent == b.latent
        && a.activation == b.activation
        && a.batch_size == b.batch_size
        && a.learning_rate == b.learning_rate
        && a.dropout == b.dropout
}

/// The network as one chain of dense layers, its seeded initial weights in the chain's
/// parameter layout (each layer's `inputs × outputs` weight, then its bias), and where the
/// VAE's μ head is among burn's layers.
///
/// - Autoencoder: the encoder's widths then the decoder's; every layer activated but the
///   latent one and the output.
/// - VAE: the body (every layer activated), the μ and log σ² heads as one layer of twice the
///   latent width (`[μ | log σ²]` per row), then the decoder from the latent sample.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn chain(run: &TrainRun<'_>) -> (forexgpt_kernels::fused_mlp::ChainShape, Vec<f32>, Layout) {
    let d = run.train.cols;
    let (sizes, seeded, head) = match run.kind {
        NetworkKind::Autoencoder => {
            let config = AutoencoderConfig::from_spec(d, run.spec);
            (config.layer_sizes(), config.seeded_weights(), None)
        }
        NetworkKind::Vae { .. } => {
            let config = VaeConfig::from_spec(d, run.spec);
            (
                config.layer_sizes(),
                config.seeded_weights(),
                Some(run.spec.hidden.len()),
            )
        }
    };
    let layout = Layout { sizes, head };
    let mut widths = vec![d];
    let mut activated = Vec::new();
    let mut l = 0;
    while l < layout.sizes.len() {
        if Some(l) == head {
            widths.push(2 * run.spec.latent);
            activated.push(false);
            l += 2;
            continue;
        }
        widths.push(layout.sizes[l].1);
        let last_of_encoder = head.is_none() && l == run.spec.hidden.len();
        activated.push(!last_of_encoder && l + 1 != layout.sizes.len());
        l += 1;
    }
    let shape = forexgpt_kernels::fused_mlp::ChainShape {
        widths,
        activated,
        activation: run.spec.activation.into(),
        batch: run.spec.batch_size,
        vae_head: head,
        dropout: forexgpt_kernels::fused_mlp::dropout_threshold(run.spec.dropout),
    };
    let params = flatten(&seeded, head);
    (shape, params, layout)
}

/// The fused kernels' dropout seed of a network (its dropout masks are hashed from it; the
/// module docs of `forexgpt_kernels::fused_mlp` say how): the spec's seed, folded to 32 bits
/// and apart from the streams that draw the weights and the batch order.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn dropout_seed(seed: u64) -> u32 {
    let mut rng = forexgpt_random::SplitMix64::new(seed ^ DROPOUT_STREAM);
    (rng.next_u64() >> 32) as u32
}

/// Mixed into a network's seed for its dropout seed.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
const DROPOUT_STREAM: u64 = 0xD20F_0A75_EED5_0003;

/// burn's layer sizes, and where the VAE's μ head is (its log σ² head follows it).
#[derive(Debug, Clone)]
struct Layout {
    sizes: Vec<(usize, usize)>,
    head: Option<usize>,
}

/// burn's layers in the chain's parameter layout; the VAE's two heads become one layer whose
/// weight rows are `[μ row | log σ² row]` and whose bias is `[μ bias | log σ² bias]`.
fn flatten(weights: &NetworkWeights, head: Option<usize>) -> Vec<f32> {
    let mut out = Vec::with_capacity(weights.parameters());
    let mut l = 0;
    while l < weights.layers.len() {
        let layer = &weights.layers[l];
        if Some(l) == head {
            let log_var = &weights.layers[l + 1];
            let latent = layer.outputs;
            for i in 0..layer.inputs {
                out.extend_from_slice(&layer.weight[i * latent..(i + 1) * latent]);
                out.extend_from_slice(&log_var.weight[i * latent..(i + 1) * latent]);
            }
            out.extend_from_slice(&layer.bias);
            out.extend_from_slice(&log_var.bias);
            l += 2;
        } else {
            out.extend_from_slice(&layer.weight);
            out.extend_from_slice(&layer.bias);
            l += 1;
        }
    }
    out
}

/// The inverse of [`flatten`].
fn unflatten(params: &[f32], layout: &Layout) -> NetworkWeights {
    let mut at = 0;
    let mut take = |n: usize| {
        let part = params[at..at + n].to_vec();
        at += n;
        part
    };
    let mut layers = Vec::with_capacity(layout.sizes.len());
    let mut l = 0;
    while l < layout.sizes.len() {
        let (inputs, outputs) = layout.sizes[l];
        if Some(l) == layout.head {
            let latent = outputs;
            let (mut mu, mut log_var) = (Vec::new(), Vec::new());
            for _ in 0..inputs {
                mu.extend(take(latent));
                log_var.extend(take(latent));
            }
            let (mu_bias, log_var_bias) = (take(latent), take(latent));
            layers.push(DenseWeights {
                inputs,
                outputs,
                weight: mu,
                bias: mu_bias,
            });
            layers.push(DenseWeights {
                inputs,
                outputs,
                weight: log_var,
                bias: log_var_bias,
            });
            l += 2;
        } else {
            let weight = take(inputs * outputs);
            let bias = take(outputs);
            layers.push(DenseWeights {
                inputs,
                outputs,
                weight,
                bias,
            });
            l += 1;
        }
    }
    NetworkWeights { layers }
}

/// The environment variable that overrides the fused kernels' cube plan: `ROWS,UNITS`
/// (rows of a batch per workgroup, units per workgroup; e.g. `8,256`). For timing a plan
/// through the whole pipeline on a GPU machine (`bench/device/encoders.sh`); unset, training
/// uses the kernels' default ([`forexgpt_kernels::fused_mlp::CubePlan::for_grid`]).
pub const FUSED_PLAN_ENV: &str = "FOREXGPT_FUSED_PLAN";

/// `ROWS,UNITS[,UNROLL]` as a plan: rows ≥ 1, units ≥ 64, unrolling a power of two up to
/// 64 (default [`forexgpt_kernels::fused_mlp::MAX_UNROLL`] on every device; without the
/// override the engine unrolls by backend, see [`cube_plan`]).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn parse_plan(text: &str) -> Option<forexgpt_kernels::fused_mlp::CubePlan> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    let (rows, units, unroll) = match fields[..] {
        [rows, units] => (rows, units, None),
        [rows, units, unroll] => (rows, units, Some(unroll)),
        _ => return None,
    };
    Some(forexgpt_kernels::fused_mlp::CubePlan {
        rows_per_cube: rows.parse().ok().filter(|&r| r > 0)?,
        units: units.parse().ok().filter(|&u| u >= 64)?,
        unroll: match unroll {
            None => forexgpt_kernels::fused_mlp::MAX_UNROLL,
            Some(u) => u
                .parse()
                .ok()
                .filter(|u: &usize| u.is_power_of_two() && *u <= 64)?,
        },
    })
}

/// The plan for `networks` networks in batches of `batch` rows on `device`:
/// [`FUSED_PLAN_ENV`]'s when set, else the default, unrolled as fits the backend: more on
/// CUDA, less on a software rasterizer, which only pays compile time for it.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn cube_plan(
    batch: usize,
    networks: usize,
    device: &ComputeDevice,
) -> Result<forexgpt_kernels::fused_mlp::CubePlan, EngineError> {
    use forexgpt_kernels::fused_mlp::{CUDA_UNROLL, CubePlan, MAX_UNROLL, SOFTWARE_UNROLL};
    match std::env::var(FUSED_PLAN_ENV) {
        Err(_) => {
            let unroll = if device.is_software() {
                SOFTWARE_UNROLL
            } else if device.cuda_index().is_some() {
                CUDA_UNROLL
            } else {
                MAX_UNROLL
            };
            Ok(CubePlan {
                unroll,
                ..CubePlan::for_grid(batch, networks)
            })
        }
        Ok(text) => parse_plan(&text).ok_or_else(|| {
            EngineError::InvalidRequest(format!(
                "{FUSED_PLAN_ENV}={text:?}: expected ROWS,UNITS or ROWS,UNITS,UNROLL (rows of a \
                 batch per workgroup ≥ 1, units ≥ 64, unrolling a power of two up to 64; e.g. \
                 8,256)"
            ))
        }),
    }
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
/// sits out the later launches, but for one that may already be queued on CUDA, whose
/// result is dropped). Each network gets what it would get trained alone.
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
            && train_alike((run.kind, run.spec), (first.kind, first.spec));
        if !same {
            return Err(EngineError::InvalidRequest(format!(
                "{} cannot train together with {}: they differ in kind, data, shape, batch size, KL schedule or learning rate",
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
        FusedJob {
            runs,
            device,
            ahead: queues_ahead(device),
        },
    )?
}

/// Whether the epochs are queued one ahead of reading their losses on `device`: on CUDA, where
/// a read-back waits for a fence where it was queued. wgpu's read-backs wait for the device's
/// latest submission (cubecl polls with `Wait` for the most recent one while any read is
/// pending), so there a read queued ahead waits for the next epoch too, and the polling while
/// the next epoch is queued made training 10–20 % slower on the H100's Vulkan.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn queues_ahead(device: &ComputeDevice) -> bool {
    device.cuda_index().is_some()
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn trained_on(
    runs: &[&TrainRun<'_>],
    device: &ComputeDevice,
) -> Result<Vec<NeuralEncoder>, EngineError> {
    let _ = (runs, device, flatten, unflatten, Layout::clone);
    Err(EngineError::InvalidRequest(
        "this build has no GPU kernels".into(),
    ))
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
struct FusedJob<'a, 'b> {
    runs: &'a [&'a TrainRun<'b>],
    device: &'a ComputeDevice,
    /// Queue each epoch before the last one's losses are read ([`queues_ahead`]).
    ahead: bool,
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl forexgpt_device::cube::CubeJob for FusedJob<'_, '_> {
    type Output = Result<Vec<NeuralEncoder>, EngineError>;

    fn run<R: forexgpt_device::cube::cubecl::Runtime>(self, device: &R::Device) -> Self::Output {
        use std::time::Instant;

        use forexgpt_kernels::fused_mlp::{AdamConstants, ChainTrainer};

        use crate::neural::{EpochBook, batch_order_rng, normal_draws, shuffled_rows};

        let runs = self.runs;
        let first = runs[0];
        let job_started = Instant::now();
        let failed = |message: String| {
            EngineError::Device(forexgpt_device::DeviceError::BackendFailed {
                device: self.device.label().to_string(),
                message,
            })
        };
        let chains: Vec<_> = runs.iter().map(|run| chain(run)).collect();
        let (shape, _, layout) = chains[0].clone();
        let initial: Vec<Vec<f32>> = chains.into_iter().map(|(_, weights, _)| weights).collect();
        let shape_latent = shape.latent();
        let as_f32 = |values: &[f64]| values.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let plan = cube_plan(shape.batch, initial.len(), self.device)?;
        let mut trainer = ChainTrainer::<R>::with_plan(
            device,
            shape,
            &as_f32(&first.train.values),
            &as_f32(&first.validation.values),
            &initial,
            plan,
        )
        .map_err(failed)?;
        if self.device.cuda_index().is_some() {
            trainer.set_adam_stage_values(forexgpt_kernels::fused_mlp::CUDA_ADAM_STAGE);
        }
        let seeds: Vec<u32> = runs.iter().map(|run| dropout_seed(run.spec.seed)).collect();
        trainer.set_dropout_seeds(&seeds).map_err(failed)?;
        let n = first.train.rows;
        let adam = AdamConstants::with_lr(first.spec.learning_rate as f32);
        let mut rngs: Vec<_> = runs.iter().map(|run| batch_order_rng(run.spec)).collect();
        let latent = shape_latent;
        // The books keep each network's history and best epoch; its best weights stay on the
        // device (`ChainTrainer::keep_snapshot`), read back once at the end.
        let mut books: Vec<EpochBook<'_, ()>> =
            runs.iter().map(|run| EpochBook::new(run)).collect();
        let mut active: Vec<bool> = runs.iter().map(|run| run.spec.epochs > 0).collect();
        let cancelled = || runs.iter().any(|run| run.cancel.is_cancelled());
        let setup = job_started.elapsed();
        // Each epoch's orders (and a VAE's noise) are drawn on another thread, an epoch
        // ahead, while the device runs the current one: each network's order, then its
        // noise, from its own generator (as burn's path), every epoch for every network
        // whether it still trains or not, so the draws are those of a loop drawing them in
        // turn.
        let (draws, drawn) = std::sync::mpsc::sync_channel::<(Vec<u32>, Vec<f32>)>(1);
        let draw_epochs = move || {
            loop {
                let mut order = Vec::with_capacity(rngs.len() * n);
                let mut noise = Vec::new();
                for rng in &mut rngs {
                    order.extend(shuffled_rows(n, rng).into_iter().map(|r| r as u32));
                    if let Some(latent) = latent {
                        noise.extend(normal_draws(n, latent, rng));
                    }
                }
                // The training loop has stopped (finished, cancelled or failed): so does this.
                if draws.send((order, noise)).is_err() {
                    break;
                }
            }
        };
        // On CUDA (`queues_ahead`) epochs are queued one ahead of the host's reading their
        // losses, so the device never waits for the host between epochs (the read, the books,
        // the next epoch's upload): epoch `e + 1` is queued before epoch `e`'s losses are
        // read. It trains the networks still training as far as the host knows then, so one
        // that stops at `e` (early stopping) trains one more epoch on the device, which is
        // dropped: its history ends at `e` and its best weights are kept apart. Each epoch's
        // weights wait in a snapshot slot (`e % 2`) until the host knows whether they are the
        // best so far.
        struct Queued<'r> {
            epoch: usize,
            networks: Vec<bool>,
            train: forexgpt_kernels::fused_mlp::PendingLosses<'r>,
            validation: forexgpt_kernels::fused_mlp::PendingLosses<'r>,
        }
        let reader = trainer.reader();
        std::thread::scope(|scope| {
            scope.spawn(draw_epochs);
            let mut queued_epochs = 0;
            let mut pending: Option<Queued> = None;
            let mut last_read = Instant::now();
            loop {
                let networks: Vec<bool> = runs
                    .iter()
                    .zip(&active)
                    .map(|(run, &on)| on && queued_epochs < run.spec.epochs)
                    .collect();
                let next = if networks.iter().any(|&on| on) {
                    queued_epochs += 1;
                    let epoch = queued_epochs;
                    // (The drawing thread stops only if it panicked, and the scope passes
                    // that on.)
                    let (order, noise) = drawn.recv().map_err(|_| {
                        failed("the thread drawing the epochs' row orders stopped".into())
                    })?;
                    let kl_weight = first.kind.kl_weight(epoch) as f32;
                    let noise = latent.map(|_| noise.as_slice());
                    let Some(train) = trainer
                        .queue_epoch(
                            &reader, &order, noise, &networks, adam, kl_weight, &cancelled,
                        )
                        .map_err(failed)?
                    else {
                        return Err(EngineError::Cancelled);
                    };
                    let validation = trainer
                        .queue_validation(&reader, &networks, first.kind.full_kl_weight() as f32)
                        .map_err(failed)?;
                    trainer.snapshot(epoch % 2, &networks).map_err(failed)?;
                    Some(Queued {
                        epoch,
                        networks,
                        train,
                        validation,
                    })
                } else {
                    None
                };
                let finished = next.is_none();
                // The epoch whose losses are read now: the one queued before this one, or
                // (not queued ahead) this one.
                let to_read = if self.ahead {
                    std::mem::replace(&mut pending, next)
                } else {
                    next
                };
                if let Some(done) = to_read {
                    let train_loss = trainer.losses(done.train).map_err(failed)?;
                    let validation_loss = trainer.losses(done.validation).map_err(failed)?;
                    let seconds = last_read.elapsed().as_secs_f64();
                    last_read = Instant::now();
                    // The networks that improved keep this epoch's weights, on the device.
                    let mut improved = vec![false; runs.len()];
                    for (k, book) in books.iter_mut().enumerate() {
                        if !(done.networks[k] && active[k]) {
                            continue;
                        }
                        let goes_on = book.record(
                            done.epoch,
                            train_loss[k],
                            validation_loss[k],
                            seconds,
                            || {
                                improved[k] = true;
                                Ok(())
                            },
                        )?;
                        active[k] = goes_on && done.epoch < runs[k].spec.epochs;
                    }
                    trainer
                        .keep_snapshot(done.epoch % 2, &improved)
                        .map_err(failed)?;
                }
                if finished {
                    break;
                }
            }
            drop(drawn);
            Ok::<(), EngineError>(())
        })?;
        let epochs_done = job_started.elapsed();
        let best = trainer.best_parameters().map_err(failed)?;
        let timing = trainer.timing();
        tracing::info!(
            networks = runs.len(),
            units = trainer.units(),
            cubes_per_network = trainer.cubes_per_network(),
            dispatches = timing.dispatches,
            queuing_ms = timing.queuing.as_secs_f64() * 1e3,
            waiting_ms = timing.waiting.as_secs_f64() * 1e3,
            setup_ms = setup.as_secs_f64() * 1e3,
            epochs_ms = (epochs_done - setup).as_secs_f64() * 1e3,
            finish_ms = (job_started.elapsed() - epochs_done).as_secs_f64() * 1e3,
            "fused training: the host queued the steps for queuing_ms and waited for the device for waiting_ms; setup (weights, buffers, the trainer) took setup_ms, the epochs epochs_ms (the rest of it host work between dispatches), the best weights' read-back finish_ms"
        );
        books
            .into_iter()
            .zip(runs)
            .zip(best)
            .map(|((book, run), params)| {
                let ((), best_epoch, history) = book.finish()?;
                Ok(NeuralEncoder {
                    d_input: run.train.cols,
                    net: run.spec.clone(),
                    weights: unflatten(&params, &layout),
                    best_epoch,
                    history,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use forexgpt_models::{AutoencoderConfig, NetworkConfig, VaeConfig};

    use super::*;

    #[test]
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    fn wide_batches_and_layers_are_left_to_burns_path_with_a_reason() {
        let mut spec = forexgpt_protocol::NeuralEncoderSpec::default();
        assert_eq!(not_covered_spec(&spec), None);
        spec.dropout = 0.5;
        assert_eq!(not_covered_spec(&spec), None);
        spec.batch_size = FUSED_MAX_WIDTH + 1;
        let why = not_covered_spec(&spec).unwrap();
        assert!(why.contains("batches up to 2048 rows, not 2049"), "{why}");
        spec.batch_size = 64;
        spec.hidden = vec![64, 3000];
        let why = not_covered_spec(&spec).unwrap();
        assert!(why.contains("layers up to 2048 wide, not 3000"), "{why}");
    }

    /// Epochs queued one ahead of reading their losses (as on CUDA) and read one by one (as
    /// on wgpu) give every network the same history, best epoch and weights, bit for bit,
    /// early stopping included (queued ahead, a network that stops has been given one more
    /// epoch, which is dropped).
    #[test]
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    fn epochs_queued_ahead_or_read_one_by_one_train_the_same() {
        use forexgpt_device::cube::run_cube_job;

        use crate::neural::{NetworkKind, TrainRun};
        use crate::progress::{CancelToken, NoProgress};

        let (x, v) = crate::bench::encoders::manifold_split(200, 40, 6, 3);
        let base = forexgpt_protocol::NeuralEncoderSpec {
            hidden: vec![12],
            latent: 2,
            learning_rate: 0.05,
            patience: None,
            ..forexgpt_protocol::NeuralEncoderSpec::default()
        };
        let specs = [
            forexgpt_protocol::NeuralEncoderSpec {
                seed: 1,
                epochs: 5,
                ..base.clone()
            },
            forexgpt_protocol::NeuralEncoderSpec {
                seed: 2,
                epochs: 40,
                patience: Some(1),
                ..base.clone()
            },
        ];
        let cancel = CancelToken::new();
        let runs: Vec<TrainRun<'_>> = specs
            .iter()
            .map(|spec| TrainRun {
                kind: NetworkKind::Autoencoder,
                spec,
                train: &x,
                validation: &v,
                label: format!("seed {}", spec.seed),
                progress: &NoProgress,
                cancel: &cancel,
            })
            .collect();
        let runs: Vec<&TrainRun<'_>> = runs.iter().collect();
        for device in forexgpt_device::testing::test_gpus("the fused training loop") {
            let train = |ahead: bool| {
                run_cube_job(
                    &device,
                    "test",
                    FusedJob {
                        runs: &runs,
                        device: &device,
                        ahead,
                    },
                )
                .unwrap()
                .unwrap()
            };
            let (queued, one_by_one) = (train(true), train(false));
            assert!(
                queued[1].history.len() < 40,
                "{}: patience 1 must stop the second network early",
                device.label()
            );
            for (a, b) in queued.iter().zip(&one_by_one) {
                let losses = |e: &NeuralEncoder| -> Vec<(f64, f64)> {
                    e.history
                        .iter()
                        .map(|p| (p.train_loss, p.validation_loss))
                        .collect()
                };
                assert_eq!(losses(a), losses(b), "{}", device.label());
                assert_eq!(a.best_epoch, b.best_epoch, "{}", device.label());
                assert_eq!(a.weights, b.weights, "{}", device.label());
            }
        }
    }

    /// A network the fused kernels do not cover trains by burn on the CPU: a GPU named for
    /// it is refused with the reason, `auto` and "if available" place it on the CPU and say
    /// why; a covered one is weighed by the fused kernels' line.
    #[test]
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    fn a_network_left_to_burn_trains_on_the_cpu_only() {
        use forexgpt_device::cost::CostOp;
        use forexgpt_protocol::{BackendKind, DevicePreference, DeviceRequest};

        use crate::neural::{NetworkKind, TrainRun, training_job};
        use crate::progress::{CancelToken, NoProgress};

        let rows = forexgpt_regressors::Matrix::new(4, 3, vec![0.5; 12]).unwrap();
        let cancel = CancelToken::new();
        let covered = forexgpt_protocol::NeuralEncoderSpec::default();
        let wide = forexgpt_protocol::NeuralEncoderSpec {
            hidden: vec![64, 3000],
            ..covered.clone()
        };
        let run = |spec| TrainRun {
            kind: NetworkKind::Autoencoder,
            spec,
            train: &rows,
            validation: &rows,
            label: "test".into(),
            progress: &NoProgress,
            cancel: &cancel,
        };
        let fused = training_job(&[&run(&covered)]);
        assert!(fused.serves(BackendKind::Wgpu) && fused.serves(BackendKind::Cuda));
        assert_eq!(fused.workload.unwrap().op, CostOp::EncoderTraining);
        let by_burn = training_job(&[&run(&wide)]);
        assert!(!by_burn.serves(BackendKind::Wgpu) && !by_burn.serves(BackendKind::Cuda));

        let machine = forexgpt_device::testing::described_machine(true);
        let named = DeviceRequest::exactly(DevicePreference::Wgpu(Some(0)));
        let err = machine.placement(named, by_burn).unwrap_err().to_string();
        assert_eq!(
            err,
            "training an encoder network with an input, layer or batch over 2,048 cannot run \
             on wgpu:0 (Test GPU, Vulkan): it runs on the CPU only"
        );
        assert!(machine.placement(named, fused).unwrap().0.is_gpu());
        for request in [
            DeviceRequest::GPU_IF_AVAILABLE,
            DeviceRequest::exactly(DevicePreference::Auto),
        ] {
            let (device, why) = machine.placement(request, by_burn).unwrap();
            assert_eq!(device.backend(), BackendKind::Cpu);
            assert!(
                why.unwrap().contains("it runs on the CPU only"),
                "{request:?}"
            );
        }
    }

    #[test]
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    fn a_plan_override_reads_rows_units_and_unrolling() {
        let plan = parse_plan(" 8, 256").unwrap();
        assert_eq!(
            (plan.rows_per_cube, plan.units, plan.unroll),
            (8, 256, forexgpt_kernels::fused_mlp::MAX_UNROLL)
        );
        let plan = parse_plan("2,256,4").unwrap();
        assert_eq!((plan.rows_per_cube, plan.units, plan.unroll), (2, 256, 4));
        for bad in [
            "8",
            "0,256",
            "8,32",
            "x,256",
            "8,1024,3",
            "8,256,128",
            "8,256,4,1",
            "",
        ] {
            assert!(parse_plan(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn weights_flatten_into_the_chain_layout_and_back() {
        let spec = forexgpt_protocol::NeuralEncoderSpec {
            hidden: vec![5, 3],
            latent: 2,
            ..Default::default()
        };
        let config = AutoencoderConfig::from_spec(7, &spec);
        let weights = config.seeded_weights();
        let layout = Layout {
            sizes: config.layer_sizes(),
            head: None,
        };
        let flat = flatten(&weights, None);
        assert_eq!(flat.len(), weights.parameters());
        assert_eq!(unflatten(&flat, &layout), weights);

        // The VAE's two heads (layers 2 and 3 after a body of 2) become one layer.
        let config = VaeConfig::from_spec(7, &spec);
        let weights = config.seeded_weights();
        let layout = Layout {
            sizes: config.layer_sizes(),
            head: Some(2),
        };
        let flat = flatten(&weights, Some(2));
        assert_eq!(flat.len(), weights.parameters());
        assert_eq!(unflatten(&flat, &layout), weights);
        // Body: 7·5+5 + 5·3+3 = 58 values; then the first row of the combined head.
        let (mu, log_var) = (&weights.layers[2], &weights.layers[3]);
        assert_eq!(flat[58..60], mu.weight[..2]);
        assert_eq!(flat[60..62], log_var.weight[..2]);
    }
}
