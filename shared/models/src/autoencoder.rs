//! The autoencoder: `input → hidden… → latent → …hidden → input`, trained to reconstruct its
//! input (mean squared error, PyTorch's `nn.MSELoss`); the latent layer is the encoding.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use forexgpt_protocol::NeuralEncoderSpec;

use crate::mlp::{Mlp, MlpShape, NetworkShape};
use crate::weights::{NetworkWeights, WeightsError};
use crate::{EncoderNetwork, NetworkConfig, Objective};

#[derive(Config, Debug)]
pub struct AutoencoderConfig {
    pub shape: NetworkShape,
}

#[derive(Module, Debug)]
pub struct Autoencoder<B: Backend> {
    pub encoder: Mlp<B>,
    pub decoder: Mlp<B>,
}

impl AutoencoderConfig {
    pub fn from_spec(d_input: usize, spec: &NeuralEncoderSpec) -> Self {
        AutoencoderConfig::new(NetworkShape::from_spec(d_input, spec))
    }

    fn shapes(&self) -> (MlpShape, MlpShape) {
        let (mut encoder, decoder) = self.shape.halves(false);
        encoder.widths.push(self.shape.latent);
        (encoder, decoder)
    }
}

impl NetworkConfig for AutoencoderConfig {
    type Network<B: Backend> = Autoencoder<B>;

    fn layer_sizes(&self) -> Vec<(usize, usize)> {
        let (encoder, decoder) = self.shapes();
        encoder.layer_sizes().chain(decoder.layer_sizes()).collect()
    }

    fn seed(&self) -> u64 {
        self.shape.seed
    }

    /// The network with `weights` (from [`EncoderNetwork::weights`] or a model file).
    fn load<B: Backend>(
        &self,
        weights: &NetworkWeights,
        device: &B::Device,
    ) -> Result<Autoencoder<B>, WeightsError> {
        let (encoder, decoder) = self.shapes();
        let n_enc = encoder.widths.len() - 1;
        let n_dec = decoder.widths.len() - 1;
        let l = weights.expect_layers(n_enc + n_dec)?;
        Ok(Autoencoder {
            encoder: encoder.build(&l[..n_enc], 0, device)?,
            decoder: decoder.build(&l[n_enc..], n_enc, device)?,
        })
    }
}

impl<B: Backend> Autoencoder<B> {
    /// Reconstruction and latent code of each row.
    pub fn forward(&self, x: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let latent = self.encoder.forward(x);
        (self.decoder.forward(latent.clone()), latent)
    }
}

impl<B: Backend> EncoderNetwork<B> for Autoencoder<B> {
    fn encode(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.encoder.forward(x)
    }

    fn objective(
        &self,
        x: Tensor<B, 2>,
        _kl_weight: f64,
        _noise: Option<Tensor<B, 2>>,
    ) -> Objective<B> {
        let (reconstruction, _) = self.forward(x.clone());
        let mse = (reconstruction - x).square().mean();
        Objective {
            loss: mse.clone(),
            kl: mse.zeros_like(),
            reconstruction: mse,
        }
    }

    fn weights(&self) -> NetworkWeights {
        let mut layers = self.encoder.weights();
        layers.extend(self.decoder.weights());
        NetworkWeights { layers }
    }
}
