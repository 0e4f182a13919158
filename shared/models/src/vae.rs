//! The variational autoencoder: `input → hidden… → (μ, log σ²) → z → …hidden → input`.
//!
//! Training draws `z = μ + σ·ε` (ε standard normal, given by the caller so that every device
//! can use the same draws) and minimizes, per row,
//! `½‖x̂ − x‖² + w·KL(N(μ, σ²) ‖ N(0, 1))`, the negative ELBO of a unit-variance Gaussian
//! decoder, with `KL = −½ Σ (1 + log σ² − μ² − σ²)`; `w` rises during warm-up so that the
//! posterior does not collapse before the decoder learns. The encoding is `μ`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use forexgpt_protocol::NeuralEncoderSpec;

use crate::mlp::{Mlp, MlpShape, NetworkShape};
use crate::weights::{DenseWeights, NetworkWeights, WeightsError};
use crate::{EncoderNetwork, NetworkConfig, Objective};

#[derive(Config, Debug)]
pub struct VaeConfig {
    pub shape: NetworkShape,
}

#[derive(Module, Debug)]
pub struct Vae<B: Backend> {
    /// Input to the last hidden layer (activated).
    pub body: Mlp<B>,
    pub mu: Linear<B>,
    pub log_var: Linear<B>,
    pub decoder: Mlp<B>,
}

/// What the encoder half says about a batch.
pub struct Posterior<B: Backend> {
    pub mu: Tensor<B, 2>,
    pub log_var: Tensor<B, 2>,
}

impl VaeConfig {
    pub fn from_spec(d_input: usize, spec: &NeuralEncoderSpec) -> Self {
        VaeConfig::new(NetworkShape::from_spec(d_input, spec))
    }

    fn shapes(&self) -> (MlpShape, usize, MlpShape) {
        let (body, decoder) = self.shape.halves(true);
        let last = body.widths.last().copied().unwrap_or(self.shape.d_input);
        (body, last, decoder)
    }
}

impl NetworkConfig for VaeConfig {
    type Network<B: Backend> = Vae<B>;

    fn layer_sizes(&self) -> Vec<(usize, usize)> {
        let (body, last, decoder) = self.shapes();
        let heads = [(last, self.shape.latent); 2];
        body.layer_sizes()
            .chain(heads)
            .chain(decoder.layer_sizes())
            .collect()
    }

    fn seed(&self) -> u64 {
        self.shape.seed
    }

    /// The network with `weights`: body layers, μ head, log σ² head, decoder layers.
    fn load<B: Backend>(
        &self,
        weights: &NetworkWeights,
        device: &B::Device,
    ) -> Result<Vae<B>, WeightsError> {
        let (body, last, decoder) = self.shapes();
        let n_body = body.widths.len() - 1;
        let n_dec = decoder.widths.len() - 1;
        let l = weights.expect_layers(n_body + 2 + n_dec)?;
        Ok(Vae {
            body: body.build(&l[..n_body], 0, device)?,
            mu: l[n_body].to_linear(n_body, last, self.shape.latent, device)?,
            log_var: l[n_body + 1].to_linear(n_body + 1, last, self.shape.latent, device)?,
            decoder: decoder.build(&l[n_body + 2..], n_body + 2, device)?,
        })
    }
}

impl<B: Backend> Vae<B> {
    pub fn posterior(&self, x: Tensor<B, 2>) -> Posterior<B> {
        let h = self.body.forward(x);
        Posterior {
            mu: self.mu.forward(h.clone()),
            log_var: self.log_var.forward(h),
        }
    }

    /// Reconstruction from a given noise `eps` (`rows × latent`): what a reference
    /// implementation can reproduce exactly.
    pub fn forward_with_noise(
        &self,
        x: Tensor<B, 2>,
        eps: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Posterior<B>) {
        let p = self.posterior(x);
        let z = p.mu.clone() + (p.log_var.clone() * 0.5).exp() * eps;
        (self.decoder.forward(z), p)
    }

    fn loss_parts(
        &self,
        x: Tensor<B, 2>,
        reconstruction: Tensor<B, 2>,
        p: Posterior<B>,
        kl_weight: f64,
    ) -> Objective<B> {
        let d = x.dims()[1] as f64;
        let mse = (reconstruction - x).square().mean();
        let kl = ((p.log_var.clone() + 1.0) - p.mu.square() - p.log_var.exp())
            .sum_dim(1)
            .mean()
            * -0.5;
        Objective {
            loss: mse.clone() * (0.5 * d) + kl.clone() * kl_weight,
            reconstruction: mse,
            kl,
        }
    }

    /// The objective with a given noise `eps` (see [`Vae::forward_with_noise`]).
    pub fn objective_with_noise(
        &self,
        x: Tensor<B, 2>,
        eps: Tensor<B, 2>,
        kl_weight: f64,
    ) -> Objective<B> {
        let (reconstruction, p) = self.forward_with_noise(x.clone(), eps);
        self.loss_parts(x, reconstruction, p, kl_weight)
    }
}

impl<B: Backend> EncoderNetwork<B> for Vae<B> {
    fn encode(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.posterior(x).mu
    }

    fn objective(
        &self,
        x: Tensor<B, 2>,
        kl_weight: f64,
        noise: Option<Tensor<B, 2>>,
    ) -> Objective<B> {
        if let Some(eps) = noise {
            return self.objective_with_noise(x, eps, kl_weight);
        }
        let p = self.posterior(x.clone());
        let reconstruction = self.decoder.forward(p.mu.clone());
        self.loss_parts(x, reconstruction, p, kl_weight)
    }

    fn weights(&self) -> NetworkWeights {
        let mut layers = self.body.weights();
        layers.push(DenseWeights::from_linear(&self.mu));
        layers.push(DenseWeights::from_linear(&self.log_var));
        layers.extend(self.decoder.weights());
        NetworkWeights { layers }
    }
}
