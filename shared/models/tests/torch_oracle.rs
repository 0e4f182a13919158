//! The autoencoder and VAE against PyTorch (tests/oracle/gen_encoders.py): forward outputs
//! for the same weights, inputs and noise, and five Adam steps, on burn's CPU backend.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::path::PathBuf;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use forexgpt_device::{BackendJob, ComputeDevice, run_job};
use forexgpt_models::{
    Autoencoder, AutoencoderConfig, EncoderNetwork, NetworkConfig, NetworkShape, NetworkWeights,
    Vae, VaeConfig,
};
use forexgpt_protocol::Activation;
use serde::Deserialize;

/// Forward outputs: float32 on both sides, values of order 1, a handful of layers.
const FORWARD_TOL: f32 = 1e-5;
/// After five Adam steps (lr 0.01): rounding differences grow through the updates.
const ADAM_TOL: f32 = 1e-4;

#[derive(Deserialize)]
struct Oracle {
    hidden: Vec<usize>,
    latent: usize,
    d: usize,
    kl_weight: f64,
    adam_lr: f64,
    x: Vec<Vec<f32>>,
    eps: Vec<Vec<f32>>,
    steps_x: Vec<Vec<Vec<f32>>>,
    steps_eps: Vec<Vec<Vec<f32>>>,
    cases: Vec<Case>,
}

#[derive(Deserialize, Clone)]
struct Case {
    kind: String,
    activation: Activation,
    weights: Vec<forexgpt_models::DenseWeights>,
    reconstruction: Vec<Vec<f32>>,
    #[serde(default)]
    latent: Vec<Vec<f32>>,
    #[serde(default)]
    mu: Vec<Vec<f32>>,
    #[serde(default)]
    log_var: Vec<Vec<f32>>,
    #[serde(default)]
    mse: f32,
    #[serde(default)]
    kl: f32,
    loss: f32,
    #[serde(default)]
    mean_loss: f32,
    adam_losses: Vec<f32>,
    adam_weights: Vec<forexgpt_models::DenseWeights>,
}

fn oracle() -> Oracle {
    // Cargo's value when it runs the test first: a binary reused from a build in another
    // checkout (a shared target cache) must not read that checkout's files.
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../tests/fixtures/encoders_oracle.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tensor<B: Backend>(rows: &[Vec<f32>], device: &B::Device) -> Tensor<B, 2> {
    let cols = rows[0].len();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), cols]), device)
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

#[track_caller]
fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: off by {worst:e} (tolerance {tol:e})");
}

fn flat(rows: &[Vec<f32>]) -> Vec<f32> {
    rows.iter().flatten().copied().collect()
}

fn ae_config(o: &Oracle, c: &Case) -> AutoencoderConfig {
    AutoencoderConfig::new(
        NetworkShape::new(o.d)
            .with_hidden(o.hidden.clone())
            .with_latent(o.latent)
            .with_activation(c.activation),
    )
}

fn vae_config(o: &Oracle, c: &Case) -> VaeConfig {
    VaeConfig::new(
        NetworkShape::new(o.d)
            .with_hidden(o.hidden.clone())
            .with_latent(o.latent)
            .with_activation(c.activation),
    )
}

fn weights(c: &Case) -> NetworkWeights {
    NetworkWeights {
        layers: c.weights.clone(),
    }
}

/// Forward outputs of every case on one backend; returns how many cases it checked.
struct Forward<'a>(&'a Oracle, &'a str);

impl BackendJob for Forward<'_> {
    type Output = usize;

    fn run<B: Backend>(self, device: &B::Device) -> usize {
        let (o, label) = (self.0, self.1);
        let x = tensor::<B>(&o.x, device);
        for c in &o.cases {
            let what = format!("{label} {} {}", c.kind, c.activation.name());
            if c.kind == "autoencoder" {
                let net: Autoencoder<B> = ae_config(o, c).load(&weights(c), device).unwrap();
                let (recon, latent) = net.forward(x.clone());
                assert_close(&values(recon), &flat(&c.reconstruction), FORWARD_TOL, &what);
                assert_close(&values(latent), &flat(&c.latent), FORWARD_TOL, &what);
                let loss = net.objective(x.clone(), 0.0, None).loss;
                assert_close(&values(loss), &[c.loss], FORWARD_TOL, &what);
            } else {
                let net: Vae<B> = vae_config(o, c).load(&weights(c), device).unwrap();
                let eps = tensor::<B>(&o.eps, device);
                let (recon, p) = net.forward_with_noise(x.clone(), eps.clone());
                assert_close(&values(recon), &flat(&c.reconstruction), FORWARD_TOL, &what);
                assert_close(&values(p.mu), &flat(&c.mu), FORWARD_TOL, &what);
                assert_close(&values(p.log_var), &flat(&c.log_var), FORWARD_TOL, &what);
                let parts = net.objective(x.clone(), o.kl_weight, Some(eps));
                assert_close(&values(parts.reconstruction), &[c.mse], FORWARD_TOL, &what);
                assert_close(&values(parts.kl), &[c.kl], FORWARD_TOL, &what);
                // The loss sums over features: scale the tolerance with it.
                assert_close(&values(parts.loss), &[c.loss], 10.0 * FORWARD_TOL, &what);
                let mean = net.objective(x.clone(), o.kl_weight, None).loss;
                assert_close(&values(mean), &[c.mean_loss], 10.0 * FORWARD_TOL, &what);
            }
        }
        o.cases.len()
    }
}

/// burn's networks (on the CPU, where burn runs) against PyTorch. The GPUs run our own
/// kernels, checked against these networks in `forexgpt-engine` (`chains`, `fused`) and
/// against float64 in `forexgpt-kernels`.
#[test]
fn forward_outputs_match_pytorch() {
    let o = oracle();
    assert_eq!(o.cases.len(), 8, "4 activations × (autoencoder, VAE)");
    let cpu = ComputeDevice::cpu("cpu");
    let checked = run_job(&cpu, Forward(&o, cpu.label())).unwrap();
    assert_eq!(checked, 8);
}

fn adam<B: AutodiffBackend, M>(mut net: M, o: &Oracle, c: &Case, device: &B::Device) -> M
where
    M: AutodiffModule<B> + EncoderNetwork<B>,
{
    let mut optimizer = AdamConfig::new().with_epsilon(1e-8).init::<B, M>();
    for (k, (xb, eb)) in o.steps_x.iter().zip(&o.steps_eps).enumerate() {
        let noise = (c.kind == "vae").then(|| tensor::<B>(eb, device));
        let loss = net
            .objective(tensor::<B>(xb, device), o.kl_weight, noise)
            .loss;
        let what = format!("{} {} step {k}", c.kind, c.activation.name());
        assert_close(
            &values(loss.clone()),
            &[c.adam_losses[k]],
            10.0 * FORWARD_TOL,
            &what,
        );
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optimizer.step(o.adam_lr, net, grads);
    }
    net
}

#[test]
fn five_adam_steps_match_pytorch() {
    type B = Autodiff<forexgpt_device::CpuBackend>;
    let o = oracle();
    let device = Default::default();
    for c in &o.cases {
        let trained = if c.kind == "autoencoder" {
            let net: Autoencoder<B> = ae_config(&o, c).load(&weights(c), &device).unwrap();
            adam(net, &o, c, &device).weights()
        } else {
            let net: Vae<B> = vae_config(&o, c).load(&weights(c), &device).unwrap();
            adam(net, &o, c, &device).weights()
        };
        for (k, (got, want)) in trained.layers.iter().zip(&c.adam_weights).enumerate() {
            let what = format!("{} {} layer {k}", c.kind, c.activation.name());
            assert_close(&got.weight, &want.weight, ADAM_TOL, &what);
            assert_close(&got.bias, &want.bias, ADAM_TOL, &what);
        }
    }
}

#[test]
fn weights_of_the_wrong_shape_are_refused_with_the_layer() {
    let o = oracle();
    let c = &o.cases[0];
    let mut w = weights(c);
    w.layers[1].bias.pop();
    let device = Default::default();
    let err = ae_config(&o, c)
        .load::<forexgpt_device::CpuBackend>(&w, &device)
        .unwrap_err();
    assert!(err.to_string().contains("layer 1"), "{err}");
    w.layers.pop();
    let err = ae_config(&o, c)
        .load::<forexgpt_device::CpuBackend>(&w, &device)
        .unwrap_err();
    assert!(err.to_string().contains("layers"), "{err}");
    let mut w = weights(c);
    w.layers[0].weight[0] = f32::NAN;
    let err = ae_config(&o, c)
        .load::<forexgpt_device::CpuBackend>(&w, &device)
        .unwrap_err();
    assert!(err.to_string().contains("not finite"), "{err}");
}
