//! Example models and bundled data for `scaleinv`.
//!
//! - [`digits`]: the UCI 8×8 handwritten digits (CC BY 4.0) and 10,000 MNIST digits (CC BY-SA
//!   3.0), embedded.
//! - [`cli`]: what the examples' command lines share.
//! - [`cnn`]: a small convolutional network with BatchNorm for them.
//! - [`resnet`]: a small ResNet with BatchNorm for MNIST.
//! - [`learner`]: what the examples that train with Burn's `Learner` share.
//! - [`normalized`]: MLP and CNN layers with a norm before each ReLU, for Normalize-and-Project.
//! - [`device`]: picks a Burn device from a backend name.
//! - [`shakespeare`]: the "tiny shakespeare" text, embedded, as a character-level corpus.
//! - [`quant`]: fake quantisation (straight-through) and a quantised `Linear` wrapper.
//! - [`transformer`]: a small pre-norm causal transformer language model.
//! - [`lm_train`]: a training loop for it, with per-step loss and gradient norm.
//! - [`plasticity`]: a sequence of tasks that wears plasticity down, and its training loop.
//! - [`plot`]: line plots as standalone SVG.
//! - [`rng`]: a small deterministic generator for batch orders.

#![warn(missing_docs)]

pub mod cli;
pub mod cnn;
pub mod device;
pub mod digits;
pub mod learner;
pub mod lm_train;
pub mod normalized;
pub mod plasticity;
pub mod plot;
pub mod progress;
pub mod quant;
pub mod resnet;
pub mod rng;
pub mod shakespeare;
pub mod shapes;
pub mod train;
pub mod transformer;

pub use cnn::{ConvBlock, DigitsCnn, DigitsCnnConfig};
pub use digits::Digits;
pub use normalized::{
    Norm, NormCnn, NormCnnConfig, NormKind, NormMlp, NormMlpConfig, NormedConv2d, NormedLinear,
};
pub use quant::{QuantLinear, fake_quantize, fake_quantize_rows};
pub use resnet::{ResNet, ResNetConfig};
pub use shakespeare::{BatchSampler, CharCorpus};
pub use transformer::{TinyLm, TinyLmConfig};
