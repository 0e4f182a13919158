//! Training the neural encoders (autoencoder, VAE) and encoding rows with them.
//!
//! The training rows go to the device once; each epoch uploads only a shuffled row order
//! (and the VAE's noise), slices its batches on the device, and reads one number back (the summed batch losses)
//! besides the validation loss that early stopping needs. Adam with PyTorch's defaults
//! (β = 0.9, 0.999, ε = 1e-8). The initial weights, the batch order and the VAE's sampling
//! noise come from the spec's seed on the host, so every device starts from the same network
//! and sees the same batches and draws (dropout alone differs: burn draws its masks from its
//! generator, the fused kernels hash theirs from the seed).

use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use forexgpt_device::cost::mirrored_mlp_parameters;
use forexgpt_device::{BackendJob, ComputeDevice, JobSupport, Workload, run_job};
use forexgpt_models::{
    Autoencoder, AutoencoderConfig, EncoderNetwork, NetworkConfig, NetworkWeights, Vae, VaeConfig,
};
use forexgpt_protocol::{EncoderSpec, EpochProgress, NeuralEncoderSpec, ProgressEvent, Stage};
use forexgpt_random::SplitMix64;
use forexgpt_regressors::Matrix;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::progress::{CancelToken, ProgressSink};

/// Rows per forward pass when encoding or validating: bounds device memory, not results.
const CHUNK_ROWS: usize = 16_384;

/// Mixed into the seed for the batch order, so that it is not the weights' random stream.
const BATCH_ORDER_STREAM: u64 = 0xBA7C_4057_2EED_0001;

/// Which network, with the VAE's KL schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NetworkKind {
    Autoencoder,
    Vae {
        kl_weight: f64,
        warmup_epochs: usize,
    },
}

impl NetworkKind {
    /// A trained VAE as encoding and loading see it: only its posterior mean is read, so
    /// the KL schedule it was trained with plays no part.
    pub const VAE_ENCODING: NetworkKind = NetworkKind::Vae {
        kl_weight: 0.0,
        warmup_epochs: 0,
    };

    /// The network kind of a neural encoder spec, after checking its parameters.
    pub fn of(
        spec: &EncoderSpec,
    ) -> Result<Option<(NetworkKind, &NeuralEncoderSpec)>, EngineError> {
        let (kind, net) = match spec {
            EncoderSpec::None | EncoderSpec::Pca { .. } => return Ok(None),
            EncoderSpec::Autoencoder { net } => (NetworkKind::Autoencoder, net),
            EncoderSpec::Vae {
                net,
                kl_weight,
                kl_warmup_epochs,
            } => {
                if !(kl_weight.is_finite() && *kl_weight >= 0.0) {
                    return Err(EngineError::InvalidRequest(format!(
                        "{}: kl_weight must be zero or positive, not {kl_weight}",
                        spec.label()
                    )));
                }
                let kind = NetworkKind::Vae {
                    kl_weight: *kl_weight,
                    warmup_epochs: *kl_warmup_epochs,
                };
                (kind, net)
            }
        };
        net.check()
            .map_err(|e| EngineError::InvalidRequest(format!("{}: {e}", spec.label())))?;
        Ok(Some((kind, net)))
    }

    /// The KL weight of 1-based `epoch`: rising linearly to the full weight at the end of
    /// the warm-up.
    pub fn kl_weight(self, epoch: usize) -> f64 {
        match self {
            NetworkKind::Autoencoder => 0.0,
            NetworkKind::Vae {
                kl_weight,
                warmup_epochs,
            } => kl_weight * (epoch as f64 / warmup_epochs.max(1) as f64).min(1.0),
        }
    }

    /// The weight validation losses are compared at: the final one.
    pub(crate) fn full_kl_weight(self) -> f64 {
        self.kl_weight(usize::MAX)
    }
}

/// A fitted neural encoder as a model file stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuralEncoder {
    pub d_input: usize,
    pub net: NeuralEncoderSpec,
    pub weights: NetworkWeights,
    /// The epoch whose weights were kept (best validation loss).
    pub best_epoch: usize,
    /// Losses of every epoch run.
    pub history: Vec<EpochProgress>,
}

impl NeuralEncoder {
    /// The latent code of `x` (scaled features), computed on `device`.
    pub fn encode(
        &self,
        kind: NetworkKind,
        x: &Matrix,
        device: &ComputeDevice,
    ) -> Result<Matrix, EngineError> {
        if x.cols != self.d_input {
            return Err(EngineError::ModelMismatch(format!(
                "the encoder reads {} columns, not {}",
                self.d_input, x.cols
            )));
        }
        // On a GPU, the forward kernel of our own (one small kernel, compiled in well under a
        // second); burn encodes on the CPU.
        if device.is_gpu() {
            return self.encode_on_gpu(x, device);
        }
        run_job(
            device,
            EncodeJob {
                encoder: self,
                kind,
                x,
            },
        )?
    }
}

impl NeuralEncoder {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    fn encode_on_gpu(&self, x: &Matrix, device: &ComputeDevice) -> Result<Matrix, EngineError> {
        match crate::chains::encoder_chain(self) {
            Some(chain) => crate::chains::gpu::encode(&chain, x, device),
            None => Err(wide_network(device)),
        }
    }

    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    fn encode_on_gpu(&self, _: &Matrix, device: &ComputeDevice) -> Result<Matrix, EngineError> {
        Err(wide_network(device))
    }
}

/// A GPU asked to encode with a network its forward kernel does not take.
fn wide_network(device: &ComputeDevice) -> EngineError {
    EngineError::Device(forexgpt_device::DeviceError::Unsupported {
        job: "encoding with this network".into(),
        device: device.label().to_string(),
        why: format!(
            "the GPU kernels take layers up to {} wide (or this build has none); it runs on \
             the CPU",
            crate::fused::FUSED_MAX_WIDTH
        ),
    })
}

struct EncodeJob<'a> {
    encoder: &'a NeuralEncoder,
    kind: NetworkKind,
    x: &'a Matrix,
}

impl BackendJob for EncodeJob<'_> {
    type Output = Result<Matrix, EngineError>;

    fn run<B: Backend>(self, device: &B::Device) -> Self::Output {
        let e = self.encoder;
        Ok(match self.kind {
            NetworkKind::Autoencoder => {
                let net: Autoencoder<B> =
                    AutoencoderConfig::from_spec(e.d_input, &e.net).load(&e.weights, device)?;
                encode_rows(&net, self.x, device)
            }
            NetworkKind::Vae { .. } => {
                let net: Vae<B> =
                    VaeConfig::from_spec(e.d_input, &e.net).load(&e.weights, device)?;
                encode_rows(&net, self.x, device)
            }
        })
    }
}

fn upload<B: Backend>(
    x: &Matrix,
    rows: std::ops::Range<usize>,
    device: &B::Device,
) -> Tensor<B, 2> {
    let values: Vec<f32> = x.values[rows.start * x.cols..rows.end * x.cols]
        .iter()
        .map(|&v| v as f32)
        .collect();
    Tensor::from_data(TensorData::new(values, [rows.len(), x.cols]), device)
}

fn read_rows<B: Backend>(t: Tensor<B, 2>) -> Vec<f64> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
        .into_iter()
        .map(f64::from)
        .collect()
}

fn read_scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    read_rows(t.reshape([1, 1]))
        .first()
        .copied()
        .unwrap_or(f64::NAN)
}

/// Encodes `x` in chunks on `device`.
fn encode_rows<B: Backend, M: EncoderNetwork<B>>(
    net: &M,
    x: &Matrix,
    device: &B::Device,
) -> Matrix {
    let mut values = Vec::new();
    let mut cols = 0;
    for start in (0..x.rows).step_by(CHUNK_ROWS) {
        let end = (start + CHUNK_ROWS).min(x.rows);
        let z = net.encode(upload::<B>(x, start..end, device));
        cols = z.dims()[1];
        values.extend(read_rows(z));
    }
    Matrix {
        rows: x.rows,
        cols,
        values,
    }
}

/// Encoder networks train on CUDA or wgpu by our fused kernels, on the CPU by burn.
pub const NEURAL_TRAINING: JobSupport = JobSupport::everywhere("training an encoder network");

/// A network the fused kernels do not cover ([`crate::fused::not_covered`]) trains by burn,
/// on the CPU only.
pub const NEURAL_TRAINING_BY_BURN: JobSupport =
    JobSupport::cpu_only("training an encoder network with an input, layer or batch over 2,048");

/// What a training run needs besides the network.
pub struct TrainRun<'a> {
    pub kind: NetworkKind,
    pub spec: &'a NeuralEncoderSpec,
    /// Scaled training and validation rows.
    pub train: &'a Matrix,
    pub validation: &'a Matrix,
    /// Label shown with progress.
    pub label: String,
    pub progress: &'a dyn ProgressSink,
    pub cancel: &'a CancelToken,
}

/// The training of `runs` (networks trained together) as one job for placement, sized for the
/// cost model: the number of networks, the longest run's epochs, the first network's rows and
/// size (networks train together only when they are alike). A network the fused kernels do
/// not cover trains on the CPU only.
pub fn training_job(runs: &[&TrainRun<'_>]) -> JobSupport {
    let Some(first) = runs.first() else {
        return NEURAL_TRAINING;
    };
    if let Some(why) = crate::fused::not_covered(first) {
        tracing::info!("{}: trained by burn on the CPU ({why})", first.label);
        return NEURAL_TRAINING_BY_BURN;
    }
    let parameters = mirrored_mlp_parameters(
        first.train.cols,
        &first.spec.hidden,
        first.spec.latent,
        matches!(first.kind, NetworkKind::Vae { .. }),
    );
    let epochs = runs.iter().map(|r| r.spec.epochs).max().unwrap_or(0);
    let workload = Workload::encoder_training(
        first.train.rows,
        first.train.cols,
        epochs,
        parameters,
        runs.len(),
    );
    NEURAL_TRAINING.sized(workload)
}

impl TrainRun<'_> {
    /// Trains on `device`: a GPU by the fused kernels (a network they do not cover is refused
    /// there, as its [`training_job`] says), the CPU by burn.
    pub fn fit_on(&self, device: &ComputeDevice) -> Result<NeuralEncoder, EngineError> {
        if self.train.rows == 0 || self.validation.rows == 0 {
            return Err(EngineError::InvalidRequest(format!(
                "{}: the training and validation parts need rows",
                self.label
            )));
        }
        if device.is_gpu() {
            return match crate::fused::not_covered(self) {
                None => crate::fused::train(self, device),
                Some(why) => {
                    tracing::warn!("{}: {why}", self.label);
                    Err(EngineError::Device(NEURAL_TRAINING_BY_BURN.refusal(device)))
                }
            };
        }
        run_job(device, TrainJob { run: self })?
    }
}

struct TrainJob<'a, 'b> {
    run: &'a TrainRun<'b>,
}

impl BackendJob for TrainJob<'_, '_> {
    type Output = Result<NeuralEncoder, EngineError>;

    fn run<B: Backend>(self, device: &B::Device) -> Self::Output {
        let run = self.run;
        let d = run.train.cols;
        B::seed(device, run.spec.seed);
        let (weights, best_epoch, history) = match run.kind {
            NetworkKind::Autoencoder => {
                let net: Autoencoder<Autodiff<B>> =
                    AutoencoderConfig::from_spec(d, run.spec).init(device);
                train_network(net, run, device)?
            }
            NetworkKind::Vae { .. } => {
                let net: Vae<Autodiff<B>> = VaeConfig::from_spec(d, run.spec).init(device);
                train_network(net, run, device)?
            }
        };
        Ok(NeuralEncoder {
            d_input: d,
            net: run.spec.clone(),
            weights,
            best_epoch,
            history,
        })
    }
}

/// The generator of a run's batch orders (and the VAE's noise): the same on every device
/// and trainer.
pub(crate) fn batch_order_rng(spec: &NeuralEncoderSpec) -> SplitMix64 {
    SplitMix64::new(spec.seed ^ BATCH_ORDER_STREAM)
}

/// A Fisher–Yates shuffle of `0..n`.
pub(crate) fn shuffled_rows(n: usize, rng: &mut SplitMix64) -> Vec<i32> {
    let mut order: Vec<i32> = (0..n as i32).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Standard normal draws (`rows × cols`, row-major) from the host generator: the VAE's
/// sampling noise for one epoch, the same on every device and trainer.
pub(crate) fn normal_draws(rows: usize, cols: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let mut values = Vec::with_capacity(rows * cols + 1);
    while values.len() < rows * cols {
        // Box–Muller gives two independent draws per pair of uniforms.
        let (u1, u2) = (rng.uniform(), rng.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        values.push((r * angle.cos()) as f32);
        values.push((r * angle.sin()) as f32);
    }
    values.truncate(rows * cols);
    values
}

/// [`normal_draws`] on the device.
fn normal_noise<B: Backend>(
    rows: usize,
    cols: usize,
    rng: &mut SplitMix64,
    device: &B::Device,
) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(normal_draws(rows, cols, rng), [rows, cols]),
        device,
    )
}

/// Mean validation objective (at the full KL weight, latent = posterior mean).
fn validation_loss<B: Backend, M: EncoderNetwork<B>>(
    net: &M,
    x: &Tensor<B, 2>,
    kl_weight: f64,
) -> f64 {
    let rows = x.dims()[0];
    let mut sum: Option<Tensor<B, 1>> = None;
    for start in (0..rows).step_by(CHUNK_ROWS) {
        let end = (start + CHUNK_ROWS).min(rows);
        let part = net
            .objective(x.clone().slice(start..end), kl_weight, None)
            .loss
            * ((end - start) as f64);
        sum = Some(match sum {
            Some(s) => s + part,
            None => part,
        });
    }
    sum.map(|s| read_scalar(s) / rows as f64)
        .unwrap_or(f64::NAN)
}

type Trained = (NetworkWeights, usize, Vec<EpochProgress>);

/// The bookkeeping every trainer shares after each epoch: the history, progress, the
/// divergence check, the best epoch's weights and early stopping.
pub(crate) struct EpochBook<'a, W> {
    run: &'a TrainRun<'a>,
    history: Vec<EpochProgress>,
    best: Option<(f64, usize, W)>,
}

impl<'a, W> EpochBook<'a, W> {
    pub(crate) fn new(run: &'a TrainRun<'a>) -> Self {
        EpochBook {
            run,
            history: Vec::with_capacity(run.spec.epochs),
            best: None,
        }
    }

    /// Records 1-based `epoch`; `weights` reads the network when this epoch is the best so
    /// far. Returns whether training goes on (early stopping says when it does not).
    pub(crate) fn record(
        &mut self,
        epoch: usize,
        train_loss: f64,
        validation_loss: f64,
        seconds: f64,
        weights: impl FnOnce() -> Result<W, EngineError>,
    ) -> Result<bool, EngineError> {
        let (run, spec) = (self.run, self.run.spec);
        if !train_loss.is_finite() {
            return Err(EngineError::InvalidRequest(format!(
                "{}: the training loss became {train_loss} in epoch {epoch}; lower the learning rate",
                run.label
            )));
        }
        let point = EpochProgress {
            epoch,
            epochs: spec.epochs,
            train_loss,
            validation_loss,
            samples_per_s: run.train.rows as f64 / seconds.max(1e-9),
        };
        self.history.push(point);
        run.progress.report(ProgressEvent {
            epoch: Some(point),
            ..ProgressEvent::new(
                Stage::Encoder,
                epoch as u64,
                Some(spec.epochs as u64),
                Some(run.label.clone()),
            )
        });
        let improved = self
            .best
            .as_ref()
            .is_none_or(|(loss, _, _)| validation_loss < *loss);
        if improved {
            self.best = Some((validation_loss, epoch, weights()?));
        } else if let (Some(patience), Some((_, best_epoch, _))) = (spec.patience, &self.best)
            && epoch - best_epoch >= patience
        {
            return Ok(false);
        }
        Ok(true)
    }

    /// The best epoch's weights, that epoch, and the history.
    pub(crate) fn finish(self) -> Result<(W, usize, Vec<EpochProgress>), EngineError> {
        let (_, best_epoch, weights) = self.best.ok_or_else(|| {
            EngineError::InvalidRequest(format!("{}: no epoch was trained", self.run.label))
        })?;
        Ok((weights, best_epoch, self.history))
    }
}

fn train_network<B, M>(
    mut net: M,
    run: &TrainRun<'_>,
    device: &B::Device,
) -> Result<Trained, EngineError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + EncoderNetwork<B>,
    M::InnerModule: EncoderNetwork<B::InnerBackend>,
{
    let spec = run.spec;
    let n = run.train.rows;
    let train = upload::<B::InnerBackend>(run.train, 0..n, device);
    let validation = upload::<B::InnerBackend>(run.validation, 0..run.validation.rows, device);
    let mut optimizer = AdamConfig::new().with_epsilon(1e-8).init::<B, M>();
    let mut rng = batch_order_rng(spec);
    let mut book = EpochBook::new(run);
    for epoch in 1..=spec.epochs {
        let started = Instant::now();
        let kl_weight = run.kind.kl_weight(epoch);
        let order = Tensor::<B::InnerBackend, 1, Int>::from_data(
            TensorData::new(shuffled_rows(n, &mut rng), [n]),
            device,
        );
        let epoch_rows = train.clone().select(0, order);
        let epoch_noise = match run.kind {
            NetworkKind::Autoencoder => None,
            NetworkKind::Vae { .. } => Some(normal_noise::<B::InnerBackend>(
                n,
                spec.latent,
                &mut rng,
                device,
            )),
        };
        let mut loss_sum: Option<Tensor<B::InnerBackend, 1>> = None;
        for start in (0..n).step_by(spec.batch_size) {
            if run.cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            let end = (start + spec.batch_size).min(n);
            let batch = Tensor::<B, 2>::from_inner(epoch_rows.clone().slice(start..end));
            let noise = epoch_noise
                .as_ref()
                .map(|e| Tensor::<B, 2>::from_inner(e.clone().slice(start..end)));
            let loss = net.objective(batch, kl_weight, noise).loss;
            let weighted = loss.clone().inner() * ((end - start) as f64);
            loss_sum = Some(match loss_sum {
                Some(s) => s + weighted,
                None => weighted,
            });
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optimizer.step(spec.learning_rate, net, grads);
        }
        let train_loss = loss_sum
            .map(|s| read_scalar(s) / n as f64)
            .unwrap_or(f64::NAN);
        let seconds = started.elapsed().as_secs_f64();
        let inner = net.valid();
        let validation_loss = validation_loss(&inner, &validation, run.kind.full_kl_weight());
        if !book.record(epoch, train_loss, validation_loss, seconds, || Ok(inner))? {
            break;
        }
    }
    let (best_net, best_epoch, history) = book.finish()?;
    Ok((best_net.weights(), best_epoch, history))
}

/// Checks that stored weights fit their network (layer count, shapes, finite values).
pub fn check_weights(kind: NetworkKind, e: &NeuralEncoder) -> Result<(), EngineError> {
    let device = burn::backend::flex::FlexDevice;
    match kind {
        NetworkKind::Autoencoder => {
            AutoencoderConfig::from_spec(e.d_input, &e.net)
                .load::<forexgpt_device::CpuBackend>(&e.weights, &device)?;
        }
        NetworkKind::Vae { .. } => {
            VaeConfig::from_spec(e.d_input, &e.net)
                .load::<forexgpt_device::CpuBackend>(&e.weights, &device)?;
        }
    }
    Ok(())
}
