//! A small ResNet with BatchNorm for 28×28 digits (MNIST): a stem, three stages of residual
//! blocks (the last two halve the resolution), global average pooling and a linear head.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor};

/// A convolution without bias (BatchNorm follows it) and its BatchNorm.
#[derive(Module, Debug)]
pub struct ConvNorm {
    /// The convolution.
    pub conv: Conv2d,
    /// Batch normalization over its output channels.
    pub norm: BatchNorm,
}

impl ConvNorm {
    fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize, device: &Device) -> Self {
        let padding = if kernel == 1 {
            PaddingConfig2d::Valid
        } else {
            PaddingConfig2d::Explicit(kernel / 2, kernel / 2, kernel / 2, kernel / 2)
        };
        Self {
            conv: Conv2dConfig::new([c_in, c_out], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(padding)
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(c_out).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.norm.forward(self.conv.forward(x))
    }
}

/// `relu(x + F(x))` with `F` = conv-BN-ReLU-conv-BN; a strided 1×1 conv-BN on the shortcut
/// when the shape changes.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    /// First 3×3 convolution (strided when the block downsamples).
    pub first: ConvNorm,
    /// Second 3×3 convolution.
    pub second: ConvNorm,
    /// Projection of the shortcut, when the block changes width or resolution.
    pub shortcut: Option<ConvNorm>,
}

impl ResidualBlock {
    fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        Self {
            first: ConvNorm::new(c_in, c_out, 3, stride, device),
            second: ConvNorm::new(c_out, c_out, 3, 1, device),
            shortcut: (stride != 1 || c_in != c_out)
                .then(|| ConvNorm::new(c_in, c_out, 1, stride, device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let skip = match &self.shortcut {
            Some(shortcut) => shortcut.forward(x.clone()),
            None => x.clone(),
        };
        relu(self.second.forward(relu(self.first.forward(x))) + skip)
    }
}

/// Hyperparameters of [`ResNet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Width of each stage; every stage after the first halves the resolution.
    pub widths: Vec<usize>,
    /// Residual blocks per stage.
    pub blocks_per_stage: usize,
    /// Number of classes.
    pub classes: usize,
}

impl Default for ResNetConfig {
    /// One grey channel, stages of 8, 16 and 32 channels, one block each, 10 classes.
    fn default() -> Self {
        Self {
            in_channels: 1,
            widths: vec![8, 16, 32],
            blocks_per_stage: 1,
            classes: 10,
        }
    }
}

impl ResNetConfig {
    /// Builds the network on `device`.
    ///
    /// # Panics
    /// If `widths` is empty.
    pub fn init(&self, device: &Device) -> ResNet {
        let first = *self.widths.first().expect("at least one stage");
        let mut blocks = Vec::new();
        let mut c_in = first;
        for (stage, &width) in self.widths.iter().enumerate() {
            for block in 0..self.blocks_per_stage.max(1) {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                blocks.push(ResidualBlock::new(c_in, width, stride, device));
                c_in = width;
            }
        }
        ResNet {
            stem: ConvNorm::new(self.in_channels, first, 3, 1, device),
            blocks,
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            head: LinearConfig::new(c_in, self.classes).init(device),
        }
    }
}

/// A small ResNet for digit images `[n, 1, 28, 28]`.
#[derive(Module, Debug)]
pub struct ResNet {
    /// 3×3 conv-BN-ReLU to the first stage's width.
    pub stem: ConvNorm,
    /// The residual blocks, stage after stage.
    pub blocks: Vec<ResidualBlock>,
    pool: AdaptiveAvgPool2d,
    /// Linear classifier after global average pooling.
    pub head: Linear,
}

impl ResNet {
    /// Logits `[n, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = relu(self.stem.forward(images));
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.head.forward(self.pool.forward(x).flatten(1, 3))
    }

    /// Mean cross-entropy of the logits against `labels`.
    pub fn loss(&self, images: Tensor<4>, labels: Tensor<1, Int>) -> Tensor<1> {
        let logits = self.forward(images);
        CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, labels)
    }
}
