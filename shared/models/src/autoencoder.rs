//! The autoencoder: `input → hidden… → latent → …hidden → input`, trained to reconstruct its
//! input (mean squared error, PyTorch's `nn.MSELoss`); the latent layer is the encoding.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use forexgpt_protocol::{Activation, NeuralEncoderSpec};
use forexgpt_random::SplitMix64;

use crate::mlp::{Mlp, MlpShape};
use crate::weights::{NetworkWeights, WeightsError};
use crate::{EncoderNetwork, Objective};

#[derive(Config, Debug)]
pub struct AutoencoderConfig {
    /// Feature columns.
    pub d_input: usize,
    /// Encoder hidden widths; the decoder mirrors them.
    #[config(default = "vec![128, 64]")]
    pub hidden: Vec<usize>,
    #[config(default = 16)]
    pub latent: usize,
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Seeds the initial weights.
    #[config(default = 42)]
    pub seed: u64,
}

#[derive(Module, Debug)]
pub struct Autoencoder<B: Backend> {
    pub encoder: Mlp<B>,
    pub decoder: Mlp<B>,
}

impl AutoencoderConfig {
    pub fn from_spec(d_input: usize, spec: &NeuralEncoderSpec) -> Self {
        AutoencoderConfig::new(d_input)
            .with_hidden(spec.hidden.clone())
            .with_latent(spec.latent)
            .with_activation(spec.activation)
            .with_dropout(spec.dropout)
            .with_seed(spec.seed)
    }

    fn shapes(&self) -> (MlpShape, MlpShape) {
        let mut widths = vec![self.d_input];
        widths.extend(&self.hidden);
        widths.push(self.latent);
        let encoder = MlpShape {
            widths: widths.clone(),
            activation: self.activation,
            dropout: self.dropout,
            activate_last: false,
        };
        widths.reverse();
        let decoder = MlpShape {
            widths,
            ..encoder.clone()
        };
        (encoder, decoder)
    }

    /// The seeded initial weights: the same numbers on every device.
    pub fn seeded_weights(&self) -> NetworkWeights {
        let mut rng = SplitMix64::new(self.seed);
        let (encoder, decoder) = self.shapes();
        let mut layers = encoder.seeded_weights(&mut rng);
        layers.extend(decoder.seeded_weights(&mut rng));
        NetworkWeights { layers }
    }

    /// A new network with the seeded initial weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Autoencoder<B> {
        self.load(&self.seeded_weights(), device)
            .unwrap_or_else(|e| unreachable!("seeded weights fit their own config: {e}"))
    }

    /// The network with `weights` (from [`EncoderNetwork::weights`] or a model file).
    pub fn load<B: Backend>(
        &self,
        weights: &NetworkWeights,
        device: &B::Device,
    ) -> Result<Autoencoder<B>, WeightsError> {
        let (encoder, decoder) = self.shapes();
        let n_enc = encoder.widths.len() - 1;
        let n_dec = decoder.widths.len() - 1;
        if weights.layers.len() != n_enc + n_dec {
            return Err(WeightsError::LayerCount {
                expected: n_enc + n_dec,
                found: weights.layers.len(),
            });
        }
        Ok(Autoencoder {
            encoder: encoder.build(&weights.layers[..n_enc], 0, device)?,
            decoder: decoder.build(&weights.layers[n_enc..], n_enc, device)?,
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
