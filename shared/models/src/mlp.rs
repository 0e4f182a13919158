//! A stack of dense layers with one activation between them: the body of both encoders.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, leaky_relu, relu, tanh};
use burn::tensor::backend::Backend;
use forexgpt_protocol::Activation;
use forexgpt_random::SplitMix64;

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

/// How an [`Mlp`] is built: its widths, activation and dropout.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpShape {
    pub widths: Vec<usize>,
    pub activation: Activation,
    pub dropout: f64,
    pub activate_last: bool,
}

impl MlpShape {
    /// Seeded initial weights, PyTorch's `nn.Linear` rule: `U(-k, k)`, `k = 1/√inputs`.
    pub fn seeded_weights(&self, rng: &mut SplitMix64) -> Vec<DenseWeights> {
        self.widths
            .windows(2)
            .map(|w| DenseWeights::seeded(w[0], w[1], rng))
            .collect()
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
