//! A small convolutional network with BatchNorm for the 8×8 digits.
//!
//! Every convolution feeds a BatchNorm, so its weight is scale-invariant (per output channel):
//! exactly the case SGDP and AdamP are built for. The classifier head is a plain `Linear`.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Int, Tensor};

/// Convolution → BatchNorm → ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// 3×3 convolution, no bias (BatchNorm's offset replaces it).
    pub conv: Conv2d,
    /// Batch normalization over the convolution's output channels.
    pub norm: BatchNorm,
    activation: Relu,
}

impl ConvBlock {
    /// A block from `channels_in` to `channels_out` channels.
    pub fn new(channels_in: usize, channels_out: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([channels_in, channels_out], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(channels_out).init(device),
            activation: Relu::new(),
        }
    }

    /// `relu(bn(conv(x)))`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.activation
            .forward(self.norm.forward(self.conv.forward(x)))
    }
}

/// Hyperparameters of [`DigitsCnn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitsCnnConfig {
    /// Channels of the first block; the next two blocks use twice as many.
    pub width: usize,
    /// Number of classes.
    pub classes: usize,
}

impl Default for DigitsCnnConfig {
    fn default() -> Self {
        Self {
            width: 16,
            classes: crate::digits::CLASSES,
        }
    }
}

impl DigitsCnnConfig {
    /// Builds the network on `device`.
    pub fn init(&self, device: &Device) -> DigitsCnn {
        let w = self.width;
        DigitsCnn {
            block1: ConvBlock::new(1, w, device),
            block2: ConvBlock::new(w, 2 * w, device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            block3: ConvBlock::new(2 * w, 2 * w, device),
            global_pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            head: LinearConfig::new(2 * w, self.classes).init(device),
        }
    }
}

/// Three conv blocks (8×8 → pool → 4×4), global average pooling and a linear head.
#[derive(Module, Debug)]
pub struct DigitsCnn {
    /// First block, 1 → w channels.
    pub block1: ConvBlock,
    /// Second block, w → 2w channels.
    pub block2: ConvBlock,
    pool: MaxPool2d,
    /// Third block, 2w → 2w channels.
    pub block3: ConvBlock,
    global_pool: AdaptiveAvgPool2d,
    /// Linear classifier, 2w → classes.
    pub head: Linear,
}

impl DigitsCnn {
    /// Logits `[n, classes]` for images `[n, 1, 8, 8]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.block1.forward(images);
        let x = self.pool.forward(self.block2.forward(x));
        let x = self.global_pool.forward(self.block3.forward(x));
        self.head.forward(x.flatten(1, 3))
    }

    /// Mean cross-entropy of the logits against `labels`.
    pub fn loss(&self, images: Tensor<4>, labels: Tensor<1, Int>) -> Tensor<1> {
        let logits = self.forward(images);
        CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, labels)
    }
}
