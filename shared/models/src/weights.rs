//! Network weights on the host: how a network is seeded, saved into a model file and moved
//! to another device. Layouts follow burn's `Linear` (`weight` is `inputs × outputs`,
//! row-major), which is PyTorch's `weight.T`.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use forexgpt_random::SplitMix64;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightsError {
    #[error("the network has {found} layers, its configuration needs {expected}")]
    LayerCount { expected: usize, found: usize },
    #[error("layer {layer} is {found}, its configuration needs {expected}")]
    Shape {
        layer: usize,
        expected: String,
        found: String,
    },
    #[error("layer {layer} holds a value that is not finite")]
    NotFinite { layer: usize },
}

/// One dense layer: `y = x·weight + bias`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseWeights {
    pub inputs: usize,
    pub outputs: usize,
    /// `inputs × outputs`, row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Every dense layer of a network, in the order its config builds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkWeights {
    pub layers: Vec<DenseWeights>,
}

impl DenseWeights {
    /// PyTorch's `nn.Linear` initialisation: weight and bias from `U(-k, k)`, `k = 1/√inputs`.
    pub fn seeded(inputs: usize, outputs: usize, rng: &mut SplitMix64) -> Self {
        let k = 1.0 / (inputs as f64).sqrt();
        let mut draw = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| ((2.0 * rng.uniform() - 1.0) * k) as f32)
                .collect()
        };
        let weight = draw(inputs * outputs);
        let bias = draw(outputs);
        DenseWeights {
            inputs,
            outputs,
            weight,
            bias,
        }
    }

    /// The layer on `device`, after checking that it is `inputs × outputs` and finite.
    pub fn to_linear<B: Backend>(
        &self,
        layer: usize,
        inputs: usize,
        outputs: usize,
        device: &B::Device,
    ) -> Result<Linear<B>, WeightsError> {
        let shape_ok = self.inputs == inputs
            && self.outputs == outputs
            && self.weight.len() == inputs * outputs
            && self.bias.len() == outputs;
        if !shape_ok {
            return Err(WeightsError::Shape {
                layer,
                expected: format!("{inputs} × {outputs}"),
                found: format!(
                    "{} × {} ({} weights, {} biases)",
                    self.inputs,
                    self.outputs,
                    self.weight.len(),
                    self.bias.len()
                ),
            });
        }
        if !self.weight.iter().chain(&self.bias).all(|v| v.is_finite()) {
            return Err(WeightsError::NotFinite { layer });
        }
        let weight = Tensor::<B, 2>::from_data(
            TensorData::new(self.weight.clone(), [inputs, outputs]),
            device,
        );
        let bias = Tensor::<B, 1>::from_data(TensorData::new(self.bias.clone(), [outputs]), device);
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias: Some(Param::from_tensor(bias)),
        })
    }

    /// Reads a layer back to the host (waits for the device).
    pub fn from_linear<B: Backend>(linear: &Linear<B>) -> Self {
        let weight = linear.weight.val();
        let [inputs, outputs] = weight.dims();
        let read = |data: TensorData| data.convert::<f32>().to_vec::<f32>().unwrap_or_default();
        let bias = match &linear.bias {
            Some(b) => read(b.val().into_data()),
            None => vec![0.0; outputs],
        };
        DenseWeights {
            inputs,
            outputs,
            weight: read(weight.into_data()),
            bias,
        }
    }
}

impl NetworkWeights {
    /// The layers, when there are `expected` of them; else the error that says how many.
    pub fn expect_layers(&self, expected: usize) -> Result<&[DenseWeights], WeightsError> {
        if self.layers.len() == expected {
            Ok(&self.layers)
        } else {
            Err(WeightsError::LayerCount {
                expected,
                found: self.layers.len(),
            })
        }
    }

    /// Number of trainable values.
    pub fn parameters(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weight.len() + l.bias.len())
            .sum()
    }
}
