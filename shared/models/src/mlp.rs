//! A stack of dense layers with one activation between them: the body of both encoders.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, leaky_relu, relu, tanh};
use burn::tensor::backend::Backend;
use forexgpt_protocol::{Activation, NeuralEncoderSpec};

use crate::weights::{DenseWeights, WeightsError};

/// PyTorch's `LeakyReLU` default slope.
const LEAKY_SLOPE: f64 = 0.01;

pub fn activate<B: Backend>(activation: Activation, x: Tensor<B, 2>) -> Tensor<B, 2> {
    match activation {
        Activation::Relu => relu(x),
        Activation::LeakyRelu => leaky_relu(x, LEAKY_SLOPE),
        Activation::Tanh => tanh(x),
        Activation::Gelu => gelu(x),
    }
}

/// Dense layers `widths[0] → widths[1] → … → widths[n]`, activated (and dropped out while
/// training) after every layer but the last, or after every layer with `activate_last`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub layers: Vec<Linear<B>>,
    dropout: Dropout,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    activate_last: bool,
}

/// The shape the autoencoder and the VAE share, as burn config: input width, the encoder's
/// hidden widths (the decoder mirrors them), latent size, activation, dropout and the seed of
/// the initial weights.
#[derive(Config, Debug)]
pub struct NetworkShape {
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

impl NetworkShape {
    /// The shape a stored or requested encoder spec describes, for `d_input` features.
    pub fn from_spec(d_input: usize, spec: &NeuralEncoderSpec) -> Self {
        NetworkShape::new(d_input)
            .with_hidden(spec.hidden.clone())
            .with_latent(spec.latent)
            .with_activation(spec.activation)
            .with_dropout(spec.dropout)
            .with_seed(spec.seed)
    }

    /// The encoder's layers from the input through the hidden widths (`activate_last` says
    /// whether the last of them is activated too), and its widths' mirror image ending at
    /// the input: the decoder from the latent size.
    pub(crate) fn halves(&self, activate_last: bool) -> (MlpShape, MlpShape) {
        let mut widths = vec![self.d_input];
        widths.extend(&self.hidden);
        let encoder = MlpShape {
            widths: widths.clone(),
            activation: self.activation,
            dropout: self.dropout,
            activate_last,
        };
        widths.push(self.latent);
        widths.reverse();
        let decoder = MlpShape {
            widths,
            activation: self.activation,
            dropout: self.dropout,
            activate_last: false,
        };
        (encoder, decoder)
    }
}

/// How an [`Mlp`] is built: its widths, activation and dropout.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpShape {
    pub widths: Vec<usize>,
    pub activation: Activation,
    pub dropout: f64,
    pub activate_last: bool,
}

impl MlpShape {
    /// Inputs and outputs of each layer.
    pub fn layer_sizes(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.widths.windows(2).map(|w| (w[0], w[1]))
    }

    /// The network with these weights on `device`; the weights must have this shape.
    pub fn build<B: Backend>(
        &self,
        weights: &[DenseWeights],
        first_layer: usize,
        device: &B::Device,
    ) -> Result<Mlp<B>, WeightsError> {
        let expected = self.widths.len().saturating_sub(1);
        if weights.len() != expected {
            return Err(WeightsError::LayerCount {
                expected: first_layer + expected,
                found: first_layer + weights.len(),
            });
        }
        let layers = weights
            .iter()
            .zip(self.widths.windows(2))
            .enumerate()
            .map(|(i, (w, io))| w.to_linear(first_layer + i, io[0], io[1], device))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Mlp {
            layers,
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: self.activation,
            activate_last: self.activate_last,
        })
    }
}

impl<B: Backend> Mlp<B> {
    pub fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i + 1 < n || self.activate_last {
                x = self.dropout.forward(activate(self.activation, x));
            }
        }
        x
    }

    pub fn weights(&self) -> Vec<DenseWeights> {
        self.layers.iter().map(DenseWeights::from_linear).collect()
    }
}
