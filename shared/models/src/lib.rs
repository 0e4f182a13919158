//! Neural feature encoders: [`Autoencoder`] and [`Vae`] burn modules, generic over the
//! backend, built from their configs. Weights are created on the host from a seed (the same
//! initial network on every device) and move in and out of modules as [`NetworkWeights`], the
//! device-independent form that model files store.

pub mod autoencoder;
pub mod mlp;
pub mod vae;
pub mod weights;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

pub use autoencoder::{Autoencoder, AutoencoderConfig};
pub use vae::{Vae, VaeConfig};
pub use weights::{DenseWeights, NetworkWeights, WeightsError};

/// A batch's training objective, split into its parts (each a one-element tensor).
#[derive(Debug, Clone)]
pub struct Objective<B: Backend> {
    /// What the optimizer minimizes.
    pub loss: Tensor<B, 1>,
    /// Mean squared reconstruction error per feature: comparable between the autoencoder,
    /// the VAE and PCA.
    pub reconstruction: Tensor<B, 1>,
    /// Mean KL divergence per row (VAE); zero for the autoencoder.
    pub kl: Tensor<B, 1>,
}

/// What the training loop needs of an encoder network.
pub trait EncoderNetwork<B: Backend> {
    /// The latent code of each row (the VAE's posterior mean).
    fn encode(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;

    /// The objective on a batch. `kl_weight` scales the VAE's KL term. With `noise`
    /// (standard normal, `rows × latent`) the VAE samples its latent as `μ + σ·noise`
    /// (training); without, it takes the mean (validation). The autoencoder ignores both.
    fn objective(
        &self,
        x: Tensor<B, 2>,
        kl_weight: f64,
        noise: Option<Tensor<B, 2>>,
    ) -> Objective<B>;

    /// The weights on the host.
    fn weights(&self) -> NetworkWeights;
}
