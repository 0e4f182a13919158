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
pub use mlp::NetworkShape;
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

/// What builds an encoder network of one kind: its seeded initial weights, and the network
/// from weights.
pub trait NetworkConfig {
    type Network<B: Backend>: EncoderNetwork<B>;

    /// Inputs and outputs of every dense layer, in the order the weights are stored.
    fn layer_sizes(&self) -> Vec<(usize, usize)>;

    /// The seed of the initial weights.
    fn seed(&self) -> u64;

    /// The seeded initial weights, layer by layer from one stream: the same numbers on every
    /// device (PyTorch's `nn.Linear` rule, [`DenseWeights::seeded`]).
    fn seeded_weights(&self) -> NetworkWeights {
        let mut rng = forexgpt_random::SplitMix64::new(self.seed());
        let layers = self
            .layer_sizes()
            .into_iter()
            .map(|(inputs, outputs)| DenseWeights::seeded(inputs, outputs, &mut rng))
            .collect();
        NetworkWeights { layers }
    }

    /// The network with `weights` (from [`EncoderNetwork::weights`] or a model file).
    fn load<B: Backend>(
        &self,
        weights: &NetworkWeights,
        device: &B::Device,
    ) -> Result<Self::Network<B>, WeightsError>;

    /// A new network with the seeded initial weights.
    fn init<B: Backend>(&self, device: &B::Device) -> Self::Network<B> {
        self.load(&self.seeded_weights(), device)
            .unwrap_or_else(|e| unreachable!("seeded weights fit their own config: {e}"))
    }
}
