//! The probe's model, whose invariances are known by construction, and its fixed batch.
//! Included by `tests/probe.rs` and `tests/grouping.rs` with `#[path]`.
#![allow(dead_code)]

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData, activation::relu};

/// A model whose invariances are known by construction:
///
/// ```text
/// x → conv (no bias) → BatchNorm → ReLU → mean over space → pre (Linear, bias)
///   → mid (Linear, no bias) → LayerNorm → ReLU → head (Linear) → cross-entropy
/// ```
///
/// `conv.weight` feeds BatchNorm: channel-wise invariant. `mid.weight` feeds a normalization
/// over all its outputs: layer-wise invariant only. Everything else changes the loss, except
/// the norms' offsets, which start at zero. The norms' ε is tiny so that "invariant" means
/// round-off here; with the usual 1e-5 the probe measures ε's own effect, up to ~3e-4 on
/// this model's small activations.
#[derive(Module, Debug)]
pub struct Known {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub pre: Linear,
    pub mid: Linear,
    pub ln: LayerNorm,
    pub head: Linear,
}

/// Tests that draw from Burn's global RNG take this lock, so each one sees its own seed.
pub static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Known {
    /// A freshly initialised model, seeded; holds the RNG lock until it is built.
    pub fn new(device: &Device) -> Self {
        let _lock = SEEDED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        device.seed(0);
        Self {
            conv: Conv2dConfig::new([2, 6], [3, 3])
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(6).with_epsilon(1e-10).init(device),
            pre: LinearConfig::new(6, 8).init(device),
            mid: LinearConfig::new(8, 8).with_bias(false).init(device),
            ln: LayerNormConfig::new(8).with_epsilon(1e-10).init(device),
            head: LinearConfig::new(8, 3).init(device),
        }
    }

    pub fn loss(&self, x: Tensor<4>, y: Tensor<1, Int>) -> Tensor<1> {
        let h = relu(self.bn.forward(self.conv.forward(x)));
        let h: Tensor<2> = h.mean_dim(3).mean_dim(2).flatten(1, 3);
        let h = relu(self.ln.forward(self.mid.forward(self.pre.forward(h))));
        burn::nn::loss::CrossEntropyLossConfig::new()
            .init(&h.device())
            .forward(self.head.forward(h), y)
    }
}

/// A fixed batch, from the host (no global RNG).
pub fn batch(device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let n = 16 * 2 * 6 * 6;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 2.0)
        .collect();
    let y: Vec<i64> = (0..16).map(|i| i % 3).collect();
    (
        Tensor::from_data(TensorData::new(x, [16, 2, 6, 6]), device),
        Tensor::from_data(TensorData::new(y, [16]), device),
    )
}
