//! Networks with a normalization layer before each nonlinearity, for Normalize-and-Project.
//!
//! Normalize-and-Project (NaP; Lyle et al. 2024, "Normalization and effective learning rates in
//! reinforcement learning") puts a normalization layer in front of every nonlinearity and, after
//! each optimizer step, projects every weight that feeds such a layer back to its initial norm.
//! The layer makes the network's output invariant to the scale of that weight,
//! `norm(x · c W) = norm(x W)` for `c > 0`, so the projection changes nothing the network
//! computes, and only the direction of `W` is learned (at a fixed effective learning rate).
//!
//! [`NormedLinear`] (`Linear → Norm → ReLU`) and [`NormedConv2d`] (`Conv2d → Norm → ReLU`) are
//! the building blocks; [`NormMlp`] and [`NormCnn`] stack them under a plain `Linear` head.
//! [`NormKind`] picks the normalization; [`NormKind::None`] gives the plain network, the baseline
//! for the base optimizer alone. The norms are Burn's own [`LayerNorm`], [`RmsNorm`] and
//! [`GroupNorm`], so their affine parameters are the usual `gamma`/`beta` owned by those types.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{
    GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d,
    RmsNorm, RmsNormConfig,
};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor};

/// `ε` of every normalization: `(x - μ) / sqrt(σ² + ε)` or `x / sqrt(mean(x²) + ε)`.
pub const EPSILON: f64 = 1e-5;

/// The normalization put before each nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NormKind {
    /// No normalization: the plain network (the layers before the ReLUs keep their bias).
    None,
    /// `γ ⊙ (x - μ) / sqrt(σ² + ε) + β` over all features of a sample (for a feature map: over
    /// channels, height and width, with one `γ`, `β` per channel).
    #[default]
    LayerNorm,
    /// `γ ⊙ x / sqrt(mean(x²) + ε)` over the features (for a feature map: over the channels at
    /// each position).
    RmsNorm,
}

/// The normalization of a [`NormKind`] for `[batch, features]` or `[batch, channels, …]` inputs.
///
/// Axis 1 is always the feature (channel) axis. At most one field is set, and an `Option` adds
/// nothing to parameter paths, so the affine parameters are `layer_norm.gamma`/`.beta`,
/// `rms_norm.gamma` or `group_norm.gamma`/`.beta`. `γ = 1`, `β = 0` at initialisation.
///
/// The invariance to the scale of the weight before the norm holds up to `ε`: it is broken
/// slightly wherever the variance (mean square) of the normalized values is not much larger than
/// `ε`, e.g. at near-empty positions of a feature map under per-position RmsNorm.
#[derive(Module, Debug)]
pub struct Norm {
    /// LayerNorm over the features of a dense layer.
    pub layer_norm: Option<LayerNorm>,
    /// RmsNorm over the features (channels).
    pub rms_norm: Option<RmsNorm>,
    /// LayerNorm of a feature map: a `GroupNorm` with one group, which normalizes over
    /// `(C, H, W)` with a per-channel affine `γ_c`, `β_c`.
    pub group_norm: Option<GroupNorm>,
}

impl Norm {
    /// A norm for `[batch, features]` inputs: LayerNorm or RmsNorm over the features.
    pub fn dense(kind: NormKind, features: usize, device: &Device) -> Self {
        Self {
            layer_norm: (kind == NormKind::LayerNorm).then(|| {
                LayerNormConfig::new(features)
                    .with_epsilon(EPSILON)
                    .init(device)
            }),
            rms_norm: (kind == NormKind::RmsNorm).then(|| rms_norm(features, device)),
            group_norm: None,
        }
    }

    /// A norm for `[batch, channels, h, w]` feature maps: LayerNorm over `(C, H, W)` (as a
    /// one-group [`GroupNorm`], per-channel affine), or RmsNorm over the channels at each position.
    pub fn conv(kind: NormKind, channels: usize, device: &Device) -> Self {
        Self {
            layer_norm: None,
            rms_norm: (kind == NormKind::RmsNorm).then(|| rms_norm(channels, device)),
            group_norm: (kind == NormKind::LayerNorm).then(|| {
                GroupNormConfig::new(1, channels)
                    .with_epsilon(EPSILON)
                    .init(device)
            }),
        }
    }

    /// Which normalization this is.
    pub fn kind(&self) -> NormKind {
        if self.layer_norm.is_some() || self.group_norm.is_some() {
            NormKind::LayerNorm
        } else if self.rms_norm.is_some() {
            NormKind::RmsNorm
        } else {
            NormKind::None
        }
    }

    /// Normalizes `x`, `[batch, features]` or `[batch, channels, …]`; the identity for
    /// [`NormKind::None`].
    ///
    /// # Panics
    /// If a norm built by [`Norm::dense`] with [`NormKind::LayerNorm`] gets a rank other than 2,
    /// or if axis 1 does not have the configured size.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if let Some(norm) = &self.layer_norm {
            assert_eq!(
                D, 2,
                "a dense LayerNorm takes [batch, features]; use Norm::conv for feature maps"
            );
            norm.forward(x)
        } else if let Some(norm) = &self.group_norm {
            norm.forward(x)
        } else if let Some(norm) = &self.rms_norm {
            if D == 2 {
                norm.forward(x)
            } else {
                // Channels last, normalize, channels back to axis 1.
                norm.forward(x.movedim(1, D - 1)).movedim(D - 1, 1)
            }
        } else {
            x
        }
    }
}

fn rms_norm(features: usize, device: &Device) -> RmsNorm {
    RmsNormConfig::new(features)
        .with_epsilon(EPSILON)
        .init(device)
}

/// `relu(norm(x W))`, or `relu(x W + b)` for [`NormKind::None`].
///
/// With a norm the `Linear` has no bias: the norm would remove it (LayerNorm subtracts the mean)
/// or make `W` no longer scale-invariant (RmsNorm), and the norm's offset `β` takes its place.
#[derive(Module, Debug)]
pub struct NormedLinear {
    /// `d_input → d_output`; bias only for [`NormKind::None`].
    pub linear: Linear,
    /// The normalization of the `d_output` features.
    pub norm: Norm,
}

impl NormedLinear {
    /// A layer from `d_input` to `d_output` features with the normalization `kind`.
    pub fn new(d_input: usize, d_output: usize, kind: NormKind, device: &Device) -> Self {
        Self {
            linear: LinearConfig::new(d_input, d_output)
                .with_bias(kind == NormKind::None)
                .init(device),
            norm: Norm::dense(kind, d_output, device),
        }
    }

    /// `[batch, d_input]` → `[batch, d_output]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        relu(self.norm.forward(self.linear.forward(x)))
    }
}

/// `relu(norm(conv(x)))` with a 3×3 "same"-padded convolution; for [`NormKind::None`] the
/// convolution has a bias and there is no norm.
///
/// With a norm the convolution has no bias, which the norm's offset `β` replaces (see
/// [`NormedLinear`]).
#[derive(Module, Debug)]
pub struct NormedConv2d {
    /// 3×3 convolution, "same" padding; bias only for [`NormKind::None`].
    pub conv: Conv2d,
    /// The normalization of the output feature map.
    pub norm: Norm,
}

impl NormedConv2d {
    /// A block from `channels_in` to `channels_out` channels; `stride` 2 halves height and width
    /// (rounding up).
    pub fn new(
        channels_in: usize,
        channels_out: usize,
        stride: usize,
        kind: NormKind,
        device: &Device,
    ) -> Self {
        Self {
            conv: Conv2dConfig::new([channels_in, channels_out], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(kind == NormKind::None)
                .init(device),
            norm: Norm::conv(kind, channels_out, device),
        }
    }

    /// `[batch, channels_in, h, w]` → `[batch, channels_out, ⌈h/stride⌉, ⌈w/stride⌉]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.norm.forward(self.conv.forward(x)))
    }
}

/// Hyperparameters of [`NormMlp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormMlpConfig {
    /// Input features.
    pub input: usize,
    /// Width of each hidden layer, in order (may be empty: a linear model).
    pub hidden: Vec<usize>,
    /// Output features (classes).
    pub output: usize,
    /// The normalization before each ReLU.
    pub norm: NormKind,
}

impl NormMlpConfig {
    /// `input → hidden[0] → … → output` with LayerNorm (the [`NormKind`] default).
    pub fn new(input: usize, hidden: Vec<usize>, output: usize) -> Self {
        Self {
            input,
            hidden,
            output,
            norm: NormKind::default(),
        }
    }

    /// The same network with the normalization `norm`.
    pub fn with_norm(mut self, norm: NormKind) -> Self {
        self.norm = norm;
        self
    }

    /// Builds the network on `device` (Burn's default initialisation).
    pub fn init(&self, device: &Device) -> NormMlp {
        let mut d_input = self.input;
        let mut hidden = Vec::with_capacity(self.hidden.len());
        for &d_output in &self.hidden {
            hidden.push(NormedLinear::new(d_input, d_output, self.norm, device));
            d_input = d_output;
        }
        NormMlp {
            hidden,
            head: LinearConfig::new(d_input, self.output).init(device),
        }
    }
}

/// A multilayer perceptron `head(h_n(… h_1(x)))` of [`NormedLinear`] layers; see
/// [`NormMlpConfig`].
#[derive(Module, Debug)]
pub struct NormMlp {
    /// The hidden layers, each `Linear → Norm → ReLU`.
    pub hidden: Vec<NormedLinear>,
    /// Linear classifier with bias, no norm after it.
    pub head: Linear,
}

impl NormMlp {
    /// Logits `[batch, output]` for `x`, `[batch, input]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.hidden.iter().fold(x, |x, layer| layer.forward(x));
        self.head.forward(x)
    }

    /// Mean cross-entropy (shape `[1]`) of the logits against `labels`, `[batch]`.
    pub fn loss(&self, x: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        cross_entropy(self.forward(x), labels)
    }

    /// Fraction of `x` whose arg-max logit equals the label, as a `[1]` tensor on the device
    /// (NaN for an empty batch).
    pub fn accuracy(&self, x: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        accuracy(self.forward(x), labels)
    }
}

/// Hyperparameters of [`NormCnn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormCnnConfig {
    /// Channels of the input images.
    pub in_channels: usize,
    /// Output channels of each block, in order (may be empty: pooling and the head only).
    pub channels: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
    /// The normalization before each ReLU.
    pub norm: NormKind,
}

impl NormCnnConfig {
    /// `in_channels → channels[0] → … → classes` with LayerNorm (the [`NormKind`] default).
    pub fn new(in_channels: usize, channels: Vec<usize>, classes: usize) -> Self {
        Self {
            in_channels,
            channels,
            classes,
            norm: NormKind::default(),
        }
    }

    /// The same network with the normalization `norm`.
    pub fn with_norm(mut self, norm: NormKind) -> Self {
        self.norm = norm;
        self
    }

    /// Builds the network on `device` (Burn's default initialisation).
    pub fn init(&self, device: &Device) -> NormCnn {
        let mut channels_in = self.in_channels;
        let mut blocks = Vec::with_capacity(self.channels.len());
        for (i, &channels_out) in self.channels.iter().enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            blocks.push(NormedConv2d::new(
                channels_in,
                channels_out,
                stride,
                self.norm,
                device,
            ));
            channels_in = channels_out;
        }
        NormCnn {
            blocks,
            head: LinearConfig::new(channels_in, self.classes).init(device),
        }
    }
}

/// [`NormedConv2d`] blocks (the first with stride 1, every later one with stride 2, so 8×8 →
/// 8×8 → 4×4 → 2×2 …), global average pooling and a linear head; see [`NormCnnConfig`].
#[derive(Module, Debug)]
pub struct NormCnn {
    /// The convolution blocks, each `Conv2d → Norm → ReLU`.
    pub blocks: Vec<NormedConv2d>,
    /// Linear classifier with bias on the pooled channels.
    pub head: Linear,
}

impl NormCnn {
    /// Logits `[batch, classes]` for images `[batch, in_channels, h, w]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.blocks.iter().fold(images, |x, block| block.forward(x));
        let [batch, channels, _, _] = x.dims();
        self.head
            .forward(x.mean_dim(3).mean_dim(2).reshape([batch, channels]))
    }

    /// Mean cross-entropy (shape `[1]`) of the logits against `labels`, `[batch]`.
    pub fn loss(&self, images: Tensor<4>, labels: Tensor<1, Int>) -> Tensor<1> {
        cross_entropy(self.forward(images), labels)
    }

    /// Fraction of `images` whose arg-max logit equals the label, as a `[1]` tensor on the
    /// device (NaN for an empty batch).
    pub fn accuracy(&self, images: Tensor<4>, labels: Tensor<1, Int>) -> Tensor<1> {
        accuracy(self.forward(images), labels)
    }
}

fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, labels)
}

fn accuracy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    logits
        .argmax(1)
        .squeeze_dim::<1>(1)
        .equal(labels)
        .float()
        .mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu_device;
    use crate::digits::Digits;
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::{AdamConfig, GradientsParams};

    const KINDS: [NormKind; 3] = [NormKind::None, NormKind::LayerNorm, NormKind::RmsNorm];

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()[0]
    }

    /// The first `n` digits: images `[n, 1, 8, 8]`, labels `[n]`.
    fn digits(n: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let all = Digits::load().unwrap();
        all.select(&(0..n).collect::<Vec<_>>()).to_tensors(device)
    }

    fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
        scalar((a - b).abs().max())
    }

    /// `(path, owning container type)` of every float parameter, in visit order.
    #[derive(Default)]
    struct Paths {
        path: Vec<String>,
        owners: Vec<String>,
        found: Vec<(String, String)>,
    }

    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.push(name.to_string());
            self.owners.push(container_type.to_string());
        }

        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
            self.owners.pop();
        }

        fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
            let owner = self.owners.last().cloned().unwrap_or_default();
            self.found.push((self.path.join("."), owner));
        }
    }

    fn paths<M: Module>(module: &M) -> Vec<(String, String)> {
        let mut visitor = Paths::default();
        module.visit(&mut visitor);
        visitor.found
    }

    #[test]
    fn mlp_forward_shapes() {
        let device = cpu_device();
        let (images, labels) = digits(5, &device);
        let x = images.flatten::<2>(1, 3);
        for kind in KINDS {
            let model = NormMlpConfig::new(64, vec![32, 16], 10)
                .with_norm(kind)
                .init(&device);
            assert_eq!(model.forward(x.clone()).dims(), [5, 10], "{kind:?}");
            assert_eq!(model.loss(x.clone(), labels.clone()).dims(), [1]);
            let accuracy = model.accuracy(x.clone(), labels.clone());
            assert_eq!(accuracy.dims(), [1]);
            assert!((0.0..=1.0).contains(&scalar(accuracy)), "{kind:?}");
            assert_eq!(model.hidden[0].norm.kind(), kind);
        }
    }

    #[test]
    fn cnn_forward_shapes() {
        let device = cpu_device();
        let (images, labels) = digits(5, &device);
        for kind in KINDS {
            let model = NormCnnConfig::new(1, vec![4, 8, 8], 10)
                .with_norm(kind)
                .init(&device);
            let x = model.blocks[0].forward(images.clone());
            assert_eq!(x.dims(), [5, 4, 8, 8], "{kind:?}");
            let x = model.blocks[1].forward(x);
            assert_eq!(x.dims(), [5, 8, 4, 4], "{kind:?}");
            assert_eq!(model.blocks[2].forward(x).dims(), [5, 8, 2, 2]);
            assert_eq!(model.forward(images.clone()).dims(), [5, 10]);
            assert_eq!(model.loss(images.clone(), labels.clone()).dims(), [1]);
            let accuracy = model.accuracy(images.clone(), labels.clone());
            assert!((0.0..=1.0).contains(&scalar(accuracy)), "{kind:?}");
            assert_eq!(model.blocks[0].norm.kind(), kind);
        }
    }

    #[test]
    fn conv_norms_normalize_as_documented() {
        let device = cpu_device();
        device.seed(4);
        let x = Tensor::<4>::random(
            [2, 3, 4, 5],
            burn::tensor::Distribution::Normal(1.0, 2.0),
            &device,
        );
        // LayerNorm of a feature map: zero mean, unit variance over (C, H, W) of each sample.
        let y = Norm::conv(NormKind::LayerNorm, 3, &device).forward(x.clone());
        let y = y.reshape([2, 60]);
        assert!(scalar(y.clone().mean_dim(1).abs().max()) < 1e-5);
        let var = y.square().mean_dim(1);
        assert!(scalar((var - 1.0).abs().max()) < 1e-3);
        // RmsNorm of a feature map: unit mean square over the channels at each position.
        let y = Norm::conv(NormKind::RmsNorm, 3, &device).forward(x.clone());
        let ms = y.square().mean_dim(1).reshape([2, 20]);
        assert!(scalar((ms - 1.0).abs().max()) < 1e-3);
        // None: the identity.
        let y = Norm::conv(NormKind::None, 3, &device).forward(x.clone());
        assert_eq!(y.into_data(), x.into_data());
    }

    #[test]
    fn norm_makes_output_invariant_to_hidden_weight_scale() {
        let device = cpu_device();
        let (images, _) = digits(32, &device);
        let x = images.flatten::<2>(1, 3);
        // Dense random images for the CNN: sparse digits leave near-empty positions (see below).
        device.seed(8);
        let images = Tensor::<4>::random(
            [32, 1, 8, 8],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        for kind in KINDS {
            device.seed(7);
            let mut mlp = NormMlpConfig::new(64, vec![32, 32], 10)
                .with_norm(kind)
                .init(&device);
            let before = mlp.forward(x.clone());
            mlp.hidden[0].linear.weight = mlp.hidden[0].linear.weight.clone().map(|w| w * 3.0);
            let mlp_diff = max_abs_diff(before, mlp.forward(x.clone()));

            let mut cnn = NormCnnConfig::new(1, vec![8, 16], 10)
                .with_norm(kind)
                .init(&device);
            let before = cnn.forward(images.clone());
            cnn.blocks[0].conv.weight = cnn.blocks[0].conv.weight.clone().map(|w| w * 3.0);
            let cnn_diff = max_abs_diff(before, cnn.forward(images.clone()));

            match kind {
                NormKind::None => {
                    assert!(mlp_diff > 1e-2, "{kind:?}: MLP logits moved by {mlp_diff}");
                    assert!(cnn_diff > 1e-2, "{kind:?}: CNN logits moved by {cnn_diff}");
                }
                NormKind::LayerNorm => {
                    assert!(mlp_diff < 1e-4, "{kind:?}: MLP logits moved by {mlp_diff}");
                    assert!(cnn_diff < 1e-4, "{kind:?}: CNN logits moved by {cnn_diff}");
                }
                NormKind::RmsNorm => {
                    assert!(mlp_diff < 1e-4, "{kind:?}: MLP logits moved by {mlp_diff}");
                    // Per-position RmsNorm over 8 channels of a 1-channel input: where
                    // mean(x²) is small, ε breaks the invariance a little (~1e-4 here).
                    assert!(cnn_diff < 1e-3, "{kind:?}: CNN logits moved by {cnn_diff}");
                }
            }
        }
    }

    #[test]
    fn parameter_paths_and_owners() {
        let device = cpu_device();
        let expected = |kind| -> Vec<(&str, &str)> {
            let mut out = Vec::new();
            match kind {
                NormKind::None => out.extend([
                    ("hidden.0.linear.weight", "Struct:Linear"),
                    ("hidden.0.linear.bias", "Struct:Linear"),
                    ("hidden.1.linear.weight", "Struct:Linear"),
                    ("hidden.1.linear.bias", "Struct:Linear"),
                ]),
                NormKind::LayerNorm => out.extend([
                    ("hidden.0.linear.weight", "Struct:Linear"),
                    ("hidden.0.norm.layer_norm.gamma", "Struct:LayerNorm"),
                    ("hidden.0.norm.layer_norm.beta", "Struct:LayerNorm"),
                    ("hidden.1.linear.weight", "Struct:Linear"),
                    ("hidden.1.norm.layer_norm.gamma", "Struct:LayerNorm"),
                    ("hidden.1.norm.layer_norm.beta", "Struct:LayerNorm"),
                ]),
                NormKind::RmsNorm => out.extend([
                    ("hidden.0.linear.weight", "Struct:Linear"),
                    ("hidden.0.norm.rms_norm.gamma", "Struct:RmsNorm"),
                    ("hidden.1.linear.weight", "Struct:Linear"),
                    ("hidden.1.norm.rms_norm.gamma", "Struct:RmsNorm"),
                ]),
            }
            out.extend([
                ("head.weight", "Struct:Linear"),
                ("head.bias", "Struct:Linear"),
            ]);
            out
        };
        for kind in KINDS {
            let model = NormMlpConfig::new(64, vec![32, 32], 10)
                .with_norm(kind)
                .init(&device);
            let found = paths(&model);
            let found: Vec<(&str, &str)> = found
                .iter()
                .map(|(p, o)| (p.as_str(), o.as_str()))
                .collect();
            assert_eq!(found, expected(kind), "{kind:?}");
            // NaP projects weights back to their initial norm, so it must not be zero.
            for layer in &model.hidden {
                assert!(scalar(layer.linear.weight.val().square().sum()) > 0.0);
            }
        }

        let cnn = NormCnnConfig::new(1, vec![4, 8], 10).init(&device);
        let found = paths(&cnn);
        let gamma = ("blocks.1.norm.group_norm.gamma", "Struct:GroupNorm");
        assert!(
            found.iter().any(|(p, o)| (p.as_str(), o.as_str()) == gamma),
            "{found:?}"
        );
        assert!(!found.iter().any(|(p, _)| p.ends_with("conv.bias")));
        let cnn = NormCnnConfig::new(1, vec![4, 8], 10)
            .with_norm(NormKind::RmsNorm)
            .init(&device);
        let found = paths(&cnn);
        let gamma = ("blocks.0.norm.rms_norm.gamma", "Struct:RmsNorm");
        assert!(
            found.iter().any(|(p, o)| (p.as_str(), o.as_str()) == gamma),
            "{found:?}"
        );
    }

    #[test]
    fn adam_reduces_the_loss_on_digits() {
        let device = cpu_device().autodiff();
        let (images, labels) = digits(64, &device);
        let x = images.clone().flatten::<2>(1, 3);
        for kind in KINDS {
            device.seed(3);
            let mut model = NormMlpConfig::new(64, vec![32, 32], 10)
                .with_norm(kind)
                .init(&device);
            let mut optim = AdamConfig::new().init();
            let first = scalar(model.loss(x.clone(), labels.clone()));
            for _ in 0..20 {
                let loss = model.loss(x.clone(), labels.clone());
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(1e-2, model, grads);
            }
            let last = scalar(model.loss(x.clone(), labels.clone()));
            assert!(last < 0.5 * first, "{kind:?}: loss {first} -> {last}");
        }

        device.seed(3);
        let mut cnn = NormCnnConfig::new(1, vec![8, 16], 10).init(&device);
        let mut optim = AdamConfig::new().init();
        let first = scalar(cnn.loss(images.clone(), labels.clone()));
        for _ in 0..10 {
            let loss = cnn.loss(images.clone(), labels.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &cnn);
            cnn = optim.step(1e-2, cnn, grads);
        }
        let last = scalar(cnn.loss(images, labels));
        assert!(last < first, "CNN: loss {first} -> {last}");
    }
}
