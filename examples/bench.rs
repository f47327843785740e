//! Time per optimizer step on four parameter sets, at 1 thread and at all cores, against Burn's
//! own optimizers measured in the same run, round-robin.
//!
//! ```text
//! cargo run --release --example bench [-- --device flex[,ndarray,wgpu]] [--sizes 1,4,16]
//!     [--sets conv-random,conv-firing,linear,transformer,resnet50,gpt2-small] [--threads 1,2]
//!     [--optimizers adamp,sgdp,...] [--rounds N] [--warmup N] [--pairs] [--mem-gb G]
//!     [--json out.json]
//! ```
//!
//! # Parameter sets
//!
//! Each set (`--sets`, default the first four) is built at every size of `--sizes` (millions
//! of parameters):
//!
//! - `conv-random`: 16 conv kernels `[c, c, 3, 3]` plus 16 biases `[c]`; random gradients drawn
//!   once per optimizer. The projection of AdamP and SGDP almost never fires on them.
//! - `conv-firing`: the same shapes; at every round, outside the timer, each optimizer's
//!   gradients are drawn afresh, each kernel's with its per-output-channel radial component
//!   removed against that optimizer's current weights (`g_c ← g_c − ⟨g_c, w_c⟩/‖w_c‖² · w_c`
//!   for every channel `c` of axis 0), as a convolution feeding a BatchNorm gives: AdamP's and
//!   SGDP's channel-wise projection fires at every step. Biases get plain random gradients.
//! - `linear`: 16 Burn `Linear` layers `[d, d]` with biases `[d]` (output channels on the last
//!   axis, axis 1); random gradients drawn once.
//! - `transformer`: the tensors of a small GPT: a token embedding `[vocab, d]`, blocks of qkv
//!   `[d, 3d]`, output projection `[d, d]`, MLP `[d, 4d]` and `[4d, d]` (Burn `Linear`, with
//!   biases) and two LayerNorms, and a final LayerNorm; random gradients drawn once. From 4M
//!   parameters the embedding has GPT-2's vocabulary (50,257 tokens) and at least 4M elements.
//! - `resnet50`, `gpt2-small`: the tensors of the real models (161 and 148 tensors, 25.6M and
//!   124M parameters; `scaleinv::models::shapes`), with every width, the classes, the
//!   vocabulary and the context divided by the integer that brings the model nearest the size
//!   (1 from 25.6M and 124M up): the same tensor list at a size a software device steps in
//!   reasonable time. ResNet's kernels, BatchNorm scales and offsets are raw parameters (the
//!   kernels project along axis 0), its head a Burn `Linear`; GPT-2's are Burn's `Embedding`,
//!   `LayerNorm` and `Linear` layers. Random gradients drawn once.
//!
//! Random gradients drawn once are copied afresh before every step (outside the timer), each
//! tensor owning its buffer as a backward pass's do. The projected optimizers are built from the
//! set itself (`init_for(&set)`, `ChannelAxes::infer`): conv kernels and the embedding project
//! along axis 0, the `Linear` weights along axis 1.
//!
//! # Round-robin
//!
//! For each device, set, size and thread count, every optimizer's parameters and state are
//! built first and stepped `--warmup` times untimed (default 3), and then untimed rounds go on
//! until the A/A pair settles (the median of its last three ratios within 10 % of 1; at most
//! 50 more rounds: a GPU backend's autotune and fusion settle over the first rounds, and
//! `--warmup` is a minimum); then every timed round
//! (`--rounds`, default 20) steps every optimizer once, round `r` starting at optimizer
//! `r mod n`. The device is synchronised before and at the end of every timed step. A noisy
//! machine's slow spells then fall on all optimizers alike, and each row is compared with its
//! base round by round: `ratio = base ms / row ms` within one round (> 1: faster than the base),
//! reported as the median and the interquartile range (p25–p75) over the rounds. The `ms/step`
//! column is the median over rounds. `burn_adam_built` against `burn_adam` is an A/A pair (the
//! same algorithm), always run: its spread is the bench's noise floor.
//!
//! Bases: Burn Adam for the Adam family, Burn AdamW for width-scaled AdamW, Burn SGD with
//! momentum 0.9 for SGDP, and the wrapped optimizer for the wrappers: `burn_adam_built` for NaP
//! and `projected_adam` around Burn's Adam, `adamp` for `nap_adamp` (NaP around this crate's
//! AdamP). `--optimizers` picks rows; their bases are added.
//!
//! # Threads
//!
//! Every row is measured at 1 thread and at the machine's core count (`--threads` overrides):
//! the whole round-robin runs inside a rayon pool of that many threads, which Burn's flex
//! backend and the fused loops use. Only one set and one thread count's slots are alive at a
//! time.
//!
//! # Branch and roofline
//!
//! For the optimizers that project (`adamp*`, `sgdp*`, `projected_adam`, `nap_adamp`), the branch the
//! scale-invariance test takes (`channel`, `layer` or `none`; `-` for the others) is read outside
//! the timer after the warm-up and again at the last round, with the optimizer's own
//! [`ScaleInvariance::branch`] on every projected weight and the gradients it is about to get;
//! the row reports the majority over the weights at the last round (ties: channel > layer >
//! none). A `conv-firing` row whose branch is not `channel` prints a warning.
//!
//! Each device's copy bandwidth is measured at each thread count, in the same pool; a row's
//! roofline is the bytes its step must move per parameter for its branch (see `traffic`) times
//! the parameters, over the bandwidth of its own thread count, as a percentage of its measured
//! time.
//!
//! On the CPU backends the copy loop is not the machine's limit for an optimizer step (one
//! stream in place, on a 256 MB footprint of its own). The bench also measures, for each
//! parameter count and thread count, the best bandwidth several kernels reach for a step's own
//! read/write mix (Adam's `p, g, m, v` read and `p, m, v` written; SGD's `p, g, b` read and
//! `p, b` written) on the step's own footprint (see `bench/limit.rs`); a row's `limit` is its
//! bytes over that bandwidth (Adam's mix for the Adam family, SGD's for the SGD family), as a
//! percentage of its measured time.
//!
//! # Memory
//!
//! All slots of one set and size live at once (about 16 B per parameter for an Adam-type
//! optimizer, parameters and gradients included: some 4 GB at 16M parameters). When the
//! estimate exceeds the memory budget (`--mem-gb`; by default 80 % of the host's available
//! memory for the CPU backends, no limit for others), the bench says so and falls back to
//! pairs for that set and size: each row round-robin with its base alone (`--pairs` forces
//! that mode).
//!
//! # Launches
//!
//! On a CubeCL device (wgpu), each row's kernel launches per step are counted by the runtime
//! (a launch observer) over one more untimed step after the timed rounds: Burn's operations
//! and this crate's kernels alike.
//!
//! # JSON
//!
//! `--json PATH` writes an array with one record per row: `optimizer, device, set, params,
//! threads, ms_per_step, mparams_per_s, base, ratio_median, ratio_iqr` (`[p25, p75]`), `branch,
//! bytes_per_param, roofline_pct`, then `branch_after_warmup, channel_axes, ms_p25, ms_p75,
//! state_bytes_per_param, copy_gb_per_s, mode, rounds, ms_rounds, ratio_rounds, dtype,
//! warmup_rounds, launches_per_step` (null off CubeCL devices). A base row has
//! `base`, `ratio_median` and `ratio_iqr` null, then `limit_gb_per_s, limit_kernel, limit_mix,
//! limit_pct` (null off the CPU backends). `examples/bench_plot.rs` draws it.

#[path = "bench/limit.rs"]
mod limit;

use std::collections::HashMap;
use std::time::Instant;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Distribution, FloatDType, Int, Tensor};
use clap::Parser;
use clap::builder::PossibleValuesParser;
use rayon::ThreadPool;
use rayon::prelude::*;
use scaleinv::models::cli::{DevicesArg, positive, positive_finite};
use scaleinv::models::device::device_from_name;
use scaleinv::models::progress::Progress;
use scaleinv::models::shapes;
use scaleinv::{
    AdamPConfig, ChannelAxes, NapConfig, NonFinitePolicy, ProjectionBranch, ProjectionObserver,
    RadialProjectionConfig, RotationalAdamWConfig, ScaleInvariance, SgdpConfig, StableSpamConfig,
    WidthRole, WidthScaledAdamWConfig,
};
use serde::Serialize;

// ---------------------------------------------------------------------------------------------
// Parameter sets
// ---------------------------------------------------------------------------------------------

/// Which parameter set a row steps.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SetKind {
    /// 16 conv kernels [c, c, 3, 3] + 16 biases [c], random gradients drawn once
    ConvRandom,
    /// the same, gradients redrawn every round without their per-channel radial part
    /// (AdamP/SGDP's channel-wise projection fires)
    ConvFiring,
    /// 16 Burn Linear layers [d, d] + biases [d] (channel axis 1), random gradients
    Linear,
    /// a small GPT: embedding [vocab, d] (from 4M parameters GPT-2's 50,257 tokens, at least
    /// 4M elements), blocks of qkv, out, MLP and LayerNorms, random gradients
    Transformer,
    /// ResNet-50's 161 tensors, widths divided to come near the size, random gradients
    Resnet50,
    /// GPT-2 small's 148 tensors, widths divided to come near the size, random gradients
    #[value(name = "gpt2-small")]
    Gpt2Small,
}

impl SetKind {
    /// The name in `--sets`, the table and the JSON.
    fn name(self) -> &'static str {
        match self {
            Self::ConvRandom => "conv-random",
            Self::ConvFiring => "conv-firing",
            Self::Linear => "linear",
            Self::Transformer => "transformer",
            Self::Resnet50 => "resnet50",
            Self::Gpt2Small => "gpt2-small",
        }
    }

    /// Whether the gradients are redrawn every round with the weights' radial part removed.
    fn fires(self) -> bool {
        self == Self::ConvFiring
    }

    /// The set of about `millions` million parameters.
    fn shape(self, millions: f64) -> SetShape {
        let n = millions * 1e6;
        match self {
            Self::ConvRandom | Self::ConvFiring => SetShape::Conv {
                channels: ((n / LAYERS as f64 / 9.0).sqrt().round() as usize).max(1),
            },
            Self::Linear => SetShape::Linear {
                width: ((n / LAYERS as f64).sqrt().round() as usize).max(1),
            },
            Self::Transformer => transformer_shape(n),
            Self::Resnet50 => SetShape::Resnet50 {
                divisor: divisor_near(shapes::parameters(&shapes::resnet50(1)), n),
            },
            Self::Gpt2Small => SetShape::Gpt2Small {
                divisor: divisor_near(shapes::parameters(&shapes::gpt2_small(1)), n),
            },
        }
    }
}

/// The width divisor that brings a model of `full` parameters nearest `n` (parameters scale
/// with the square of the width): at least 1.
fn divisor_near(full: usize, n: f64) -> usize {
    ((full as f64 / n).sqrt().round() as usize).max(1)
}

/// Layers of the conv and linear sets.
const LAYERS: usize = 16;
/// GPT-2's vocabulary: the transformer set's from 4M parameters.
const GPT2_VOCAB: usize = 50257;
/// The smallest embedding of the transformer set from 4M parameters, in elements.
const MIN_EMBEDDING: usize = 4_000_000;
/// The transformer set's width below 4M parameters.
const SMALL_WIDTH: usize = 64;

/// The tensor sizes of one set at one size.
#[derive(Clone, Copy, Debug)]
enum SetShape {
    /// `LAYERS` kernels `[c, c, 3, 3]` and biases `[c]`.
    Conv { channels: usize },
    /// `LAYERS` Burn `Linear` layers `[d, d]` with biases `[d]`.
    Linear { width: usize },
    /// A token embedding `[vocab, d]`, `layers` GPT blocks and a final LayerNorm.
    Transformer {
        width: usize,
        vocab: usize,
        layers: usize,
    },
    /// ResNet-50 with its widths divided by `divisor`.
    Resnet50 { divisor: usize },
    /// GPT-2 small with its widths divided by `divisor`.
    Gpt2Small { divisor: usize },
}

/// Parameters of one GPT block of width `d`: qkv `[d, 3d] + 3d`, output `[d, d] + d`, MLP
/// `[d, 4d] + 4d` and `[4d, d] + d`, two LayerNorms `2 · 2d`.
fn gpt_block_params(d: usize) -> usize {
    12 * d * d + 13 * d
}

/// The transformer set of about `n` parameters. From 4M: GPT-2's vocabulary, the width that
/// makes the embedding about half the set but at least `MIN_EMBEDDING` elements (a multiple of
/// 16, at least 80), and the blocks that fill the rest (at least one). Below: width 64, half
/// the set in blocks (at least one), the rest in the embedding.
fn transformer_shape(n: f64) -> SetShape {
    if n >= MIN_EMBEDDING as f64 {
        let min_width = MIN_EMBEDDING.div_ceil(GPT2_VOCAB).next_multiple_of(16);
        let width = ((n / 2.0 / GPT2_VOCAB as f64 / 16.0).round() as usize * 16).max(min_width);
        let rest = n - (GPT2_VOCAB * width + 2 * width) as f64;
        let layers = (rest / gpt_block_params(width) as f64).round().max(1.0) as usize;
        return SetShape::Transformer {
            width,
            vocab: GPT2_VOCAB,
            layers,
        };
    }
    let width = SMALL_WIDTH;
    let block = gpt_block_params(width) as f64;
    let layers = (n / 2.0 / block).round().max(1.0) as usize;
    let rest = n - layers as f64 * block - 2.0 * width as f64;
    let vocab = (rest / width as f64).round().max(1.0) as usize;
    SetShape::Transformer {
        width,
        vocab,
        layers,
    }
}

impl SetShape {
    /// The number of parameters.
    fn params(self) -> usize {
        match self {
            Self::Conv { channels: c } => LAYERS * (c * c * 9 + c),
            Self::Linear { width: d } => LAYERS * (d * d + d),
            Self::Transformer {
                width,
                vocab,
                layers,
            } => vocab * width + layers * gpt_block_params(width) + 2 * width,
            Self::Resnet50 { divisor } => shapes::parameters(&shapes::resnet50(divisor)),
            Self::Gpt2Small { divisor } => shapes::parameters(&shapes::gpt2_small(divisor)),
        }
    }
}

/// One GPT block's parameters, in Burn's layers (`Linear` weights `[d_input, d_output]`).
#[derive(Module, Debug)]
struct Block {
    norm_1: LayerNorm,
    qkv: Linear,
    out: Linear,
    norm_2: LayerNorm,
    mlp_in: Linear,
    mlp_out: Linear,
}

impl Block {
    fn new(d: usize, device: &Device) -> Self {
        let linear = |d_in, d_out| LinearConfig::new(d_in, d_out).init(device);
        Self {
            norm_1: LayerNormConfig::new(d).init(device),
            qkv: linear(d, 3 * d),
            out: linear(d, d),
            norm_2: LayerNormConfig::new(d).init(device),
            mlp_in: linear(d, 4 * d),
            mlp_out: linear(4 * d, d),
        }
    }
}

/// The benchmark's parameters; each set fills only its own fields.
#[derive(Module, Debug)]
struct ParamSet {
    /// Conv kernels `[c, c, 3, 3]` (conv sets).
    kernels: Vec<Param<Tensor<4>>>,
    /// The kernels' biases `[c]` (conv sets).
    biases: Vec<Param<Tensor<1>>>,
    /// `Linear` layers `[d, d]` (linear set).
    layers: Vec<Linear>,
    /// Token embedding `[vocab, d]` (transformer sets).
    embedding: Option<Embedding>,
    /// Position embedding `[context, d]` (GPT-2).
    positions: Option<Embedding>,
    /// GPT blocks (transformer set).
    blocks: Vec<Block>,
    /// Final LayerNorm (transformer set).
    norm: Option<LayerNorm>,
}

impl ParamSet {
    fn empty() -> Self {
        Self {
            kernels: Vec::new(),
            biases: Vec::new(),
            layers: Vec::new(),
            embedding: None,
            positions: None,
            blocks: Vec::new(),
            norm: None,
        }
    }

    /// The set of `shape` on `device` (an autodiff device: `ModuleOptimizer` steps such).
    fn new(shape: SetShape, device: &Device) -> Self {
        match shape {
            SetShape::Conv { channels: c } => Self {
                kernels: (0..LAYERS)
                    .map(|_| normal_param([c, c, 3, 3], device))
                    .collect(),
                biases: (0..LAYERS).map(|_| normal_param([c], device)).collect(),
                ..Self::empty()
            },
            SetShape::Linear { width: d } => Self {
                layers: (0..LAYERS)
                    .map(|_| LinearConfig::new(d, d).init(device))
                    .collect(),
                ..Self::empty()
            },
            SetShape::Transformer {
                width,
                vocab,
                layers,
            } => Self {
                embedding: Some(EmbeddingConfig::new(vocab, width).init(device)),
                blocks: (0..layers).map(|_| Block::new(width, device)).collect(),
                norm: Some(LayerNormConfig::new(width).init(device)),
                ..Self::empty()
            },
            SetShape::Resnet50 { divisor } => {
                let mut list = shapes::resnet50(divisor);
                // The head, `Linear [d_in, classes]` with its bias: the last two shapes.
                let head = list[list.len() - 2].clone();
                list.truncate(list.len() - 2);
                let (kernels, norms): (Vec<_>, Vec<_>) = list.iter().partition(|s| s.len() == 4);
                Self {
                    kernels: (kernels.iter())
                        .map(|s| normal_param([s[0], s[1], s[2], s[3]], device))
                        .collect(),
                    biases: (norms.iter())
                        .map(|s| normal_param([s[0]], device))
                        .collect(),
                    layers: vec![LinearConfig::new(head[0], head[1]).init(device)],
                    ..Self::empty()
                }
            }
            SetShape::Gpt2Small { divisor } => {
                let list = shapes::gpt2_small(divisor);
                let (vocab, context, width) = (list[0][0], list[1][0], list[0][1]);
                Self {
                    embedding: Some(EmbeddingConfig::new(vocab, width).init(device)),
                    positions: Some(EmbeddingConfig::new(context, width).init(device)),
                    blocks: (0..12).map(|_| Block::new(width, device)).collect(),
                    norm: Some(LayerNormConfig::new(width).init(device)),
                    ..Self::empty()
                }
            }
        }
    }
}

impl ParamSet {
    /// The set with every parameter in `dtype`.
    fn cast(self, dtype: ElemType) -> Self {
        struct Cast(FloatDType);
        impl ModuleMapper for Cast {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let dtype = self.0;
                param.map(|t| t.cast(dtype))
            }
        }
        match dtype {
            ElemType::F32 => self,
            _ => self.map(&mut Cast(dtype.float())),
        }
    }
}

/// A parameter of shape `dims` drawn from N(0, 1).
fn normal_param<const D: usize>(dims: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::random(dims, Distribution::Normal(0.0, 1.0), device))
}

/// The channel axis of every weight (rank ≥ 2) of `set`, as the projected optimizers'
/// `init_for(&set)` see them.
fn weight_axes(set: &ParamSet) -> Vec<(ParamId, usize)> {
    ChannelAxes::infer(set)
        .iter()
        .map(|p| (p.id, p.axis))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Gradients
// ---------------------------------------------------------------------------------------------

/// `g` without its radial component along each channel of `axis`:
/// `g_c ← g_c − ⟨g_c, w_c⟩ / ‖w_c‖² · w_c` (the gradient of a weight feeding a normalization).
fn without_radial<const D: usize>(g: Tensor<D>, w: Tensor<D>, axis: usize) -> Tensor<D> {
    let others: Vec<usize> = (0..D).filter(|&d| d != axis).collect();
    let dot = (g.clone() * w.clone()).sum_dims(&others);
    let norm = (w.clone() * w.clone()).sum_dims(&others).clamp_min(1e-30);
    g - w * (dot / norm)
}

/// Random normal gradients for every parameter of `set`, on `device` (the inner, non-autodiff
/// one); the weights listed in `tangent` (id, channel axis) get theirs without the radial
/// component against their current value.
fn draw_gradients(
    set: &ParamSet,
    device: &Device,
    tangent: &[(ParamId, usize)],
) -> GradientsParams {
    struct Draw<'a> {
        device: &'a Device,
        tangent: &'a [(ParamId, usize)],
        out: GradientsParams,
    }

    impl ModuleVisitor for Draw<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let weight = param.val().inner();
            let dtype = weight.dtype();
            let g = Tensor::random(weight.shape(), Distribution::Normal(0.0, 1.0), self.device);
            let g = match self.tangent.iter().find(|(id, _)| *id == param.id) {
                // In f32 for half-precision weights, then rounded once.
                Some(&(_, axis)) => without_radial(g, weight.cast(FloatDType::F32), axis),
                None => g,
            };
            self.out.register(param.id, g.cast(dtype));
        }
    }

    let mut draw = Draw {
        device,
        tangent,
        out: GradientsParams::new(),
    };
    set.visit(&mut draw);
    draw.out
}

/// A fresh copy of `fixed`, each tensor owning its buffer as a real backward pass's gradients
/// do: a shared buffer would keep the backend from updating in place, and slow the tensor-op
/// optimizers down for a reason training does not have.
fn fresh_copy(set: &ParamSet, fixed: &GradientsParams) -> GradientsParams {
    struct CopyGrads<'a> {
        fixed: &'a GradientsParams,
        out: GradientsParams,
    }

    impl ModuleVisitor for CopyGrads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.fixed.get::<D>(param.id) {
                self.out.register(param.id, g * 1.0);
            }
        }
    }

    let mut copy = CopyGrads {
        fixed,
        out: GradientsParams::new(),
    };
    set.visit(&mut copy);
    copy.out
}

/// Where a slot's gradients come from.
enum Gradients {
    /// Drawn once, copied afresh before every step.
    Fixed(GradientsParams),
    /// Drawn afresh before every step, these weights' (id, axis) without their radial part.
    Firing(Vec<(ParamId, usize)>),
}

// ---------------------------------------------------------------------------------------------
// Projection branch
// ---------------------------------------------------------------------------------------------

/// The branch each projected weight of `set` takes for `grads`, by its optimizer's own test
/// (`tests`: weight id and the test the optimizer applies to it). A host read per weight: only
/// outside the timer.
fn branches(
    set: &ParamSet,
    grads: &GradientsParams,
    tests: &[(ParamId, ScaleInvariance)],
) -> Vec<ProjectionBranch> {
    struct Test<'a> {
        grads: &'a GradientsParams,
        tests: &'a [(ParamId, ScaleInvariance)],
        out: Vec<ProjectionBranch>,
    }

    impl ModuleVisitor for Test<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let Some((_, test)) = self.tests.iter().find(|(id, _)| *id == param.id) else {
                return;
            };
            if let Some(grad) = self.grads.get::<D>(param.id) {
                let code = test.branch(&param.val().inner(), &grad);
                self.out.push(read_branch(code));
            }
        }
    }

    let mut test = Test {
        grads,
        tests,
        out: Vec::new(),
    };
    set.visit(&mut test);
    test.out
}

/// The branch of a one-element [`ScaleInvariance::branch`] code tensor.
fn read_branch(code: Tensor<1, Int>) -> ProjectionBranch {
    let code = code.into_data().iter::<i64>().next();
    code.and_then(ProjectionBranch::from_code)
        .expect("ScaleInvariance::branch returns a branch code")
}

/// The most frequent branch (ties: channel > layer > none); `None` when there is none.
fn majority(branches: &[ProjectionBranch]) -> Option<ProjectionBranch> {
    let count = |b: &ProjectionBranch| branches.iter().filter(|x| *x == b).count();
    // `max_by_key` keeps the last of equal maxima: the order is the tie-break, lowest first.
    [
        ProjectionBranch::None,
        ProjectionBranch::Layer,
        ProjectionBranch::Channel,
    ]
    .into_iter()
    .filter(|b| count(b) > 0)
    .max_by_key(count)
}

/// A branch's name, `-` when not applicable.
fn branch_name(branch: Option<ProjectionBranch>) -> &'static str {
    branch.map_or("-", ProjectionBranch::name)
}

// ---------------------------------------------------------------------------------------------
// Optimizers
// ---------------------------------------------------------------------------------------------

/// Every row the bench can run, in table order.
const OPTIMIZERS: [&str; 20] = [
    "burn_adam",
    "burn_adam_built",
    "burn_adamw",
    "burn_sgd_momentum",
    "adamp",
    "adamp_tensor_ops",
    "adamp_observed",
    "adamp_cautious",
    "projected_adam",
    "width_scaled_adamw",
    "width_scaled_adamw_tensor_ops",
    "nap_adam",
    "nap_adamp",
    "sgdp",
    "sgdp_tensor_ops",
    "sgdp_cautious",
    "rotational_adamw",
    "stable_spam",
    "stable_spam_tensor_ops",
    "stable_spam_propagate",
];

/// The A/A pair: two names for the same per-tensor Adam.
const AA: (&str, &str) = ("burn_adam_built", "burn_adam");

/// Burn's Adam with AdamP's ε, the base of the Adam family and of the wrappers.
fn adam() -> AdamConfig {
    AdamConfig::new().with_epsilon(1e-8)
}

/// AdamP with its defaults (δ 0.1, wd_ratio 0.1, ε 1e-8).
fn adamp() -> AdamPConfig {
    AdamPConfig::new()
}

/// SGDP with momentum 0.9 and the projection's defaults.
fn sgdp() -> SgdpConfig {
    SgdpConfig::new().with_momentum(0.9)
}

/// The radial projection with AdamP's defaults.
fn radial() -> RadialProjectionConfig {
    RadialProjectionConfig::new()
}

/// The optimizer of row `name` for `set`. The projected ones read each weight's channel axis
/// from the set (`init_for`).
fn build_optimizer(name: &str, set: &ParamSet) -> ModuleOptimizer {
    let momentum = MomentumConfig {
        momentum: 0.9,
        dampening: 0.0,
        nesterov: false,
    };
    match name {
        "burn_adam" => adam().init(),
        // NaP's base as NaP holds it: the bare per-tensor Adam in a ModuleOptimizer.
        "burn_adam_built" => adam().build().into(),
        "burn_adamw" => AdamWConfig::new().with_epsilon(1e-8).init(),
        "burn_sgd_momentum" => SgdConfig::new().with_momentum(Some(momentum)).init(),
        "adamp" => adamp().init_for(set),
        // The tensor-op path, which other backends take, on the same device.
        "adamp_tensor_ops" => adamp().with_fused(false).init_for(set),
        // One observed group per weight, observer never armed: the cost of being observable.
        "adamp_observed" => adamp()
            .try_init_observed(&ChannelAxes::infer(set), &ProjectionObserver::new())
            .expect("AdamP's defaults are valid"),
        // timm's cautious mask: the tensor-op path on every backend.
        "adamp_cautious" => adamp().with_caution(true).init_for(set),
        "projected_adam" => radial().init_for(adam().build(), set),
        // Every tensor with the matrix role (the one with decay): the costlier of the two.
        "width_scaled_adamw" => WidthScaledAdamWConfig::new(64, 256)
            .with_weight_decay(0.1)
            .build(WidthRole::Matrix)
            .into(),
        "width_scaled_adamw_tensor_ops" => WidthScaledAdamWConfig::new(64, 256)
            .with_weight_decay(0.1)
            .with_fused(false)
            .build(WidthRole::Matrix)
            .into(),
        "nap_adam" => NapConfig::new().init(adam().build()),
        // NaP around this crate's AdamP (channel axis 0: the conv sets' weights).
        "nap_adamp" => NapConfig::new().init(adamp().build()),
        "sgdp" => sgdp().init_for(set),
        "sgdp_tensor_ops" => sgdp().with_fused(false).init_for(set),
        "sgdp_cautious" => sgdp().with_caution(true).init_for(set),
        // Its defaults (λ 1e-2: every tensor of rank ≥ 2 rotational), the model not prepared
        // (the step's cost does not depend on it).
        "rotational_adamw" => RotationalAdamWConfig::new().resume_for(set),
        "stable_spam" => StableSpamConfig::new().init(),
        "stable_spam_tensor_ops" => StableSpamConfig::new().with_fused(false).init(),
        "stable_spam_propagate" => StableSpamConfig::new()
            .with_non_finite(NonFinitePolicy::Propagate)
            .init(),
        other => unreachable!("{other} is not in OPTIMIZERS"),
    }
}

/// The scale-invariance test row `name` applies to a weight whose output channels lie on
/// `axis` (the very one its optimizer holds for that axis), for the rows that project.
fn invariance_of(name: &str, axis: usize) -> Option<ScaleInvariance> {
    match name {
        "adamp" | "adamp_tensor_ops" | "adamp_observed" | "adamp_cautious" => {
            Some(*adamp().with_channel_axis(axis).build().scale_invariance())
        }
        "nap_adamp" => Some(*adamp().build().scale_invariance()),
        "sgdp" | "sgdp_tensor_ops" | "sgdp_cautious" => {
            Some(*sgdp().with_channel_axis(axis).build().scale_invariance())
        }
        "projected_adam" => Some(
            *radial()
                .with_channel_axis(axis)
                .wrap(adam().build())
                .scale_invariance(),
        ),
        _ => None,
    }
}

/// The row each optimizer is compared with, round by round: Burn's Adam for the Adam family,
/// Burn's AdamW for the width-scaled AdamW, Burn's SGD with momentum 0.9 for SGDP, and for a
/// wrapper the very optimizer it wraps (`adam().build()`, i.e. `burn_adam_built`). `None`: a
/// base itself.
fn base_of(optimizer: &str) -> Option<&'static str> {
    match optimizer {
        "burn_adam" | "burn_sgd_momentum" => None,
        // `burn_adam_built` against `burn_adam` is the A/A pair.
        "burn_adam_built" | "burn_adamw" => Some("burn_adam"),
        "width_scaled_adamw" | "width_scaled_adamw_tensor_ops" => Some("burn_adamw"),
        "projected_adam" | "nap_adam" => Some("burn_adam_built"),
        "nap_adamp" | "adamp_cautious" => Some("adamp"),
        "sgdp_cautious" => Some("sgdp"),
        "rotational_adamw" => Some("burn_adamw"),
        o if o.starts_with("sgdp") => Some("burn_sgd_momentum"),
        _ => Some("burn_adam"),
    }
}

/// The rows to run: `requested` (all when empty), their bases (and theirs), and the A/A pair,
/// in table order.
fn selected(requested: &[String]) -> Vec<&'static str> {
    let mut want: Vec<&str> = requested.iter().map(String::as_str).collect();
    if want.is_empty() {
        want = OPTIMIZERS.to_vec();
    }
    want.extend([AA.0, AA.1]);
    let mut i = 0;
    while i < want.len() {
        if let Some(base) = base_of(want[i]).filter(|b| !want.contains(b)) {
            want.push(base);
        }
        i += 1;
    }
    OPTIMIZERS
        .into_iter()
        .filter(|o| want.contains(o))
        .collect()
}

/// Bytes one step must move per parameter (f32 reads + writes of an implementation with the
/// fewest passes the algorithm allows) for the projection branch it takes, and the optimizer
/// state per parameter, both in bytes. `branch` is `None` for the optimizers that do not
/// project (and a projecting one of unknown branch counts as firing).
///
/// - Adam, AdamW, width-scaled AdamW: one pass, read p, g, m, v, write p, m, v (7 words).
/// - SGD with momentum: read p, g, b, write p, b (5).
/// - AdamP, and the radial projection around Adam, firing (channel or layer): the radial
///   coefficients need `⟨p, u⟩` over the update before it is applied, so two passes: read
///   p, g, m, v, write m, v; then read p, m, v, write p (10). Not firing: a read-only pass over
///   p, g for the cosine test, then Adam's pass (2 + 7 = 9).
/// - SGDP firing: read p, g, b for the statistics, then SGD momentum's pass (3 + 5 = 8); not
///   firing: the test's pass over p, g, then SGD momentum's (2 + 5 = 7).
/// - Stable-SPAM: a pass over g for max|g| and ‖g‖, then Adam's (1 + 7 = 8).
/// - NaP: Adam's pass with the new weight's norm accumulated, then a rescale, read p, write p
///   (7 + 2 = 9).
/// - AdamP cautious, firing: the statistics (read p, g, m, v), the mask's count and the second
///   projection's dot (read p, g, m, v), the write (7): 15; not firing: the test and the count
///   in one pass (4), then the write (7): 11. SGDP cautious likewise: 3 + 3 + 5 = 11, or 8.
/// - RotationalAdamW: the moments and the per-neuron sums (read p, g, m, v, write m, v), the
///   step with the new norms summed (read p, m, v, write p), the rescale (read p, write p):
///   6 + 4 + 2 = 12.
fn traffic(optimizer: &str, branch: Option<ProjectionBranch>, dtype: ElemType) -> (u32, u32) {
    let fires = !matches!(branch, Some(ProjectionBranch::None));
    let (words, state_words) = match optimizer {
        "burn_sgd_momentum" => (5, 1),
        "sgdp" | "sgdp_tensor_ops" => (if fires { 8 } else { 7 }, 1),
        "adamp" | "adamp_tensor_ops" | "adamp_observed" | "projected_adam" => {
            (if fires { 10 } else { 9 }, 2)
        }
        "stable_spam" | "stable_spam_tensor_ops" | "stable_spam_propagate" => (8, 2),
        "nap_adam" => (9, 2),
        // AdamP's, plus NaP's rescale (read and write p) after the norm summed in its last pass.
        "nap_adamp" => (if fires { 12 } else { 11 }, 2),
        "adamp_cautious" => (if fires { 15 } else { 11 }, 2),
        "sgdp_cautious" => (if fires { 11 } else { 8 }, 1),
        "rotational_adamw" => (12, 2),
        _ => (7, 2),
    };
    // Every state word is read and written once; the other words are the parameter's and
    // the gradient's, in `dtype` (Burn's own optimizers keep their state in it too).
    let elem = dtype.bytes();
    let state = if optimizer.starts_with("burn_") {
        elem
    } else {
        4
    };
    let accesses = 2 * state_words;
    (
        state * accesses + elem * (words - accesses),
        state * state_words,
    )
}

/// The read/write mix whose limit judges `optimizer`'s row: SGD with momentum's for the SGD
/// family, the Adam family's for every other.
fn mix_of(optimizer: &str) -> Mix {
    if optimizer.contains("sgd") {
        Mix::SGD
    } else {
        Mix::ADAM
    }
}

/// The parameters' element type (`--dtype`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum ElemType {
    F32,
    F16,
    Bf16,
}

impl ElemType {
    fn bytes(self) -> u32 {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }

    fn float(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::F16 => FloatDType::F16,
            Self::Bf16 => FloatDType::BF16,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Slots and the round-robin
// ---------------------------------------------------------------------------------------------

fn sync(device: &Device) {
    device.sync().expect("device sync");
}

/// One optimizer under test with its own parameters and gradients, alive for the whole
/// round-robin.
struct Slot {
    optimizer: &'static str,
    set: Option<ParamSet>,
    optim: ModuleOptimizer,
    gradients: Gradients,
    /// Each projected weight and the test the optimizer applies to it (empty: no projection).
    tests: Vec<(ParamId, ScaleInvariance)>,
    /// The majority branch at each check (after the warm-up, at the last round).
    branches: Vec<Option<ProjectionBranch>>,
}

impl Slot {
    fn new(optimizer: &'static str, case: &Case) -> Self {
        let (device, fires) = (case.device, case.set.fires());
        // ModuleOptimizer steps parameters that live on an autodiff device.
        let set = ParamSet::new(case.shape, &device.clone().autodiff()).cast(case.dtype);
        let axes = weight_axes(&set);
        let optim = build_optimizer(optimizer, &set);
        let tests = axes
            .iter()
            .filter_map(|&(id, axis)| invariance_of(optimizer, axis).map(|t| (id, t)))
            .collect();
        let gradients = match fires {
            true => Gradients::Firing(axes),
            false => Gradients::Fixed(draw_gradients(&set, device, &[])),
        };
        Self {
            optimizer,
            set: Some(set),
            optim,
            gradients,
            tests,
            branches: Vec::new(),
        }
    }

    fn set(&self) -> &ParamSet {
        self.set.as_ref().expect("a parameter set")
    }

    /// The gradients of the next step: a fresh copy of the fixed ones, or freshly drawn.
    fn next_gradients(&self, device: &Device) -> GradientsParams {
        match &self.gradients {
            Gradients::Fixed(fixed) => fresh_copy(self.set(), fixed),
            Gradients::Firing(tangent) => draw_gradients(self.set(), device, tangent),
        }
    }

    /// Records the majority branch the projection takes on `grads` (nothing if it does not
    /// project).
    fn check_branch(&mut self, grads: &GradientsParams) {
        if !self.tests.is_empty() {
            let taken = branches(self.set(), grads, &self.tests);
            self.branches.push(majority(&taken));
        }
    }

    /// One step, the branch checked first with `check`; returns its time in seconds, gradient
    /// preparation and check excluded.
    fn step(&mut self, device: &Device, check: bool) -> f64 {
        let grads = self.next_gradients(device);
        if check {
            self.check_branch(&grads);
        }
        let set = self.set.take().expect("a parameter set");
        sync(device);
        let start = Instant::now();
        let set = self.optim.step(1e-3, set, grads);
        sync(device);
        let t = start.elapsed().as_secs_f64();
        self.set = Some(set);
        t
    }

    /// The branch after the warm-up and at the last round.
    fn branch_checks(&self) -> (Option<ProjectionBranch>, Option<ProjectionBranch>) {
        let first = self.branches.first().copied().flatten();
        (first, self.branches.last().copied().flatten())
    }
}

/// Untimed and timed rounds.
#[derive(Clone, Copy)]
struct Schedule {
    warmup: usize,
    rounds: usize,
}

/// The most untimed rounds after `--warmup` spent waiting for the A/A pair to settle.
const MAX_SETTLE_ROUNDS: usize = 50;

/// Whether the A/A pair has settled: the median of its last three ratios within 10 % of 1.
fn settled(aa_ratios: &[f64]) -> bool {
    aa_ratios.len() >= 3 && (quantile(&aa_ratios[aa_ratios.len() - 3..], 0.5) - 1.0).abs() <= 0.1
}

/// What a round-robin measured: each slot's step times in milliseconds (one per timed round),
/// the untimed rounds it ran and each slot's launches per step (CubeCL devices).
struct Measured {
    times: Vec<Vec<f64>>,
    warmup_rounds: usize,
    launches: Vec<Option<usize>>,
}

/// One round over `slots`, round `r` starting at slot `r mod n`: each slot's step time in
/// seconds.
fn one_round(slots: &mut [Slot], device: &Device, r: usize, check: bool) -> Vec<f64> {
    let n = slots.len();
    let mut times = vec![0.0; n];
    for k in 0..n {
        let i = (r + k) % n;
        times[i] = slots[i].step(device, check);
    }
    times
}

/// Steps `slots` round-robin: at least `warmup` untimed rounds, more until the A/A pair (when
/// both are among the slots) settles, then `rounds` timed ones; the branches are checked in
/// the first and the last timed round, and the launches counted over one more step.
fn round_robin(
    slots: &mut [Slot],
    device: &Device,
    schedule: Schedule,
    progress: &Progress,
) -> Measured {
    let Schedule { warmup, rounds } = schedule;
    let n = slots.len();
    let position = |name: &str| slots.iter().position(|s| s.optimizer == name);
    let aa = position(AA.0).zip(position(AA.1));
    let mut aa_ratios = Vec::new();
    let mut r = 0;
    while r < warmup || (aa.is_some() && !settled(&aa_ratios) && r < warmup + MAX_SETTLE_ROUNDS) {
        let t = one_round(slots, device, r, false);
        if let Some((a, b)) = aa {
            aa_ratios.push(t[b] / t[a]);
        }
        if r < warmup {
            progress.inc(n as u64);
        }
        r += 1;
    }
    let warmup_rounds = r;
    let mut times = vec![Vec::with_capacity(rounds); n];
    for timed in 0..rounds {
        let check = timed == 0 || timed + 1 == rounds;
        for (i, t) in one_round(slots, device, r + timed, check)
            .into_iter()
            .enumerate()
        {
            times[i].push(t * 1e3);
        }
        progress.inc(n as u64);
    }
    let launches = slots
        .iter_mut()
        .map(|s| launches_per_step(s, device))
        .collect();
    Measured {
        times,
        warmup_rounds,
        launches,
    }
}

/// The kernel launches of one step of `slot`, counted by the CubeCL runtime (`None` off a
/// CubeCL device).
fn launches_per_step(slot: &mut Slot, device: &Device) -> Option<usize> {
    #[cfg(feature = "wgpu")]
    if matches!(device.as_dispatch(), burn::backend::DispatchDevice::Cube(_)) {
        use burn::cubecl::logging::{LaunchObservation, LaunchObserver};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        #[derive(Default)]
        struct Count(AtomicUsize);
        impl LaunchObserver for Count {
            fn launched(&self, _kernel: &'static str) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let grads = slot.next_gradients(device);
        sync(device);
        let count = Arc::new(Count::default());
        let watching = LaunchObservation::new(count.clone());
        let set = slot.set.take().expect("a parameter set");
        slot.set = Some(slot.optim.step(1e-3, set, grads));
        sync(device);
        drop(watching);
        return Some(count.0.load(Ordering::Relaxed));
    }
    let _ = (slot, device);
    None
}

// ---------------------------------------------------------------------------------------------
// Statistics and memory
// ---------------------------------------------------------------------------------------------

/// The `q` quantile (0..=1) of `xs`, interpolated linearly between order statistics.
fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Median, p25 and p75.
fn summary(xs: &[f64]) -> (f64, f64, f64) {
    (quantile(xs, 0.5), quantile(xs, 0.25), quantile(xs, 0.75))
}

/// `base ms / row ms`, round by round.
fn ratios(base: &[f64], ms: &[f64]) -> Vec<f64> {
    base.iter().zip(ms).map(|(b, t)| b / t).collect()
}

/// Bytes held per parameter by one slot: its parameters, its gradients and its state, with a
/// quarter more for the allocator's slack and the step's temporaries (counted in f32: an upper
/// bound for the half types).
fn slot_bytes_per_param(optimizer: &str) -> f64 {
    let (_, state) = traffic(optimizer, None, ElemType::F32);
    1.25 * (4.0 + 4.0 + f64::from(state))
}

/// The memory the slots of `optimizers` need at once for `params` parameters each.
fn state_bytes(params: usize, optimizers: &[&str]) -> f64 {
    optimizers
        .iter()
        .map(|o| slot_bytes_per_param(o) * params as f64)
        .sum()
}

/// The host's available memory in bytes, from `/proc/meminfo`.
fn mem_available() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// The process's peak resident memory in bytes, from `/proc/self/status`.
fn peak_rss() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// Whether the device named `name` is a CPU backend (its tensors in host memory).
fn on_host(name: &str) -> bool {
    matches!(name, "flex" | "ndarray")
}

/// The memory budget of a device: the CPU backends hold everything in host memory.
fn budget_of(name: &str, mem_gb: Option<f64>) -> Option<f64> {
    mem_gb
        .map(|g| g * 1e9)
        .or_else(|| on_host(name).then(mem_available).flatten().map(|m| 0.8 * m))
}

/// Whether a set and size fall back to pairs: forced, or all slots over the memory budget.
fn falls_back(params: usize, optimizers: &[&str], budget: Option<f64>, forced: bool) -> bool {
    forced || budget.is_some_and(|b| state_bytes(params, optimizers) > b)
}

/// Optimizer steps one case takes: every slot in every round, each row's base again in pairs.
fn steps_per_case(optimizers: &[&str], pairs: bool, schedule: Schedule) -> u64 {
    let slots: usize = match pairs {
        false => optimizers.len(),
        true => optimizers
            .iter()
            .map(|o| 1 + base_of(o).is_some() as usize)
            .sum(),
    };
    (slots * (schedule.warmup + schedule.rounds)) as u64
}

/// The device's memory bandwidth in bytes per second, in the current rayon pool:
/// `x ← 1.0001 · x` in place (read 4 B, write 4 B per element, no fresh allocation to fault
/// in), best of 10 after warm-up. On the CPU backends it is timed as a plain loop over 64M f32
/// of host memory (256 MB, beyond the caches of any two cores) split over the pool's threads:
/// the machine's bandwidth, not the backend's element-wise op (flex's in-place multiply did not
/// reach it on 2 threads). On others, the backend's own multiply over 16M f32.
fn copy_bandwidth(name: &str, device: &Device) -> f64 {
    let host = on_host(name);
    let n = if host { 64 << 20 } else { 16 << 20 };
    let best = if host {
        let mut x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
        best_of(|| {
            x.par_chunks_mut(1 << 16)
                .for_each(|c| c.iter_mut().for_each(|v| *v *= 1.0001));
        })
    } else {
        let mut x = Some(Tensor::<1>::random([n], Distribution::Default, device));
        best_of(|| {
            sync(device);
            x = x.take().map(|x| x * 1.0001);
            sync(device);
        })
    };
    8.0 * n as f64 / best
}

use limit::{Limit, Mix, best_of};

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

/// One device, set, size and thread count.
struct Case<'a> {
    device_name: &'a str,
    device: &'a Device,
    set: SetKind,
    shape: SetShape,
    /// The parameters' and gradients' element type.
    dtype: ElemType,
    threads: usize,
    /// The device's copy bandwidth at this thread count, bytes per second.
    copy_bandwidth: f64,
    /// The machine's limit for each step mix on this footprint and thread count (CPU
    /// backends; empty elsewhere).
    limits: Vec<Limit>,
}

struct Row {
    optimizer: &'static str,
    device: String,
    set: SetKind,
    params: usize,
    threads: usize,
    dtype: ElemType,
    /// "round-robin" (all optimizers at once) or "pairs" (each with its base alone).
    mode: &'static str,
    /// Step times in ms, one per timed round.
    ms: Vec<f64>,
    base: Option<&'static str>,
    /// `base ms / row ms` per round, the base stepped in the same round.
    ratios: Vec<f64>,
    /// The device's copy bandwidth at this thread count, bytes per second.
    copy_bandwidth: f64,
    /// The machine's limit for the row's step mix (CPU backends).
    limit: Option<Limit>,
    /// The majority branch after the warm-up and at the last round (`None`: no projection).
    branch_after_warmup: Option<ProjectionBranch>,
    branch: Option<ProjectionBranch>,
    /// The distinct channel axes of the projected weights (empty: no projection).
    channel_axes: Vec<usize>,
    /// The untimed rounds before the timed ones.
    warmup_rounds: usize,
    /// Kernel launches per step (CubeCL devices).
    launches: Option<usize>,
}

impl Row {
    fn new(case: &Case, slot: &Slot, mode: &'static str, ms: Vec<f64>, ratios: Vec<f64>) -> Self {
        let (branch_after_warmup, branch) = slot.branch_checks();
        let mut channel_axes: Vec<usize> = slot.tests.iter().map(|(_, t)| t.channel_axis).collect();
        channel_axes.sort_unstable();
        channel_axes.dedup();
        Self {
            optimizer: slot.optimizer,
            device: case.device_name.to_string(),
            set: case.set,
            params: case.shape.params(),
            threads: case.threads,
            dtype: case.dtype,
            mode,
            ms,
            base: base_of(slot.optimizer),
            ratios,
            copy_bandwidth: case.copy_bandwidth,
            limit: case
                .limits
                .iter()
                .find(|l| l.mix == mix_of(slot.optimizer))
                .cloned(),
            branch_after_warmup,
            branch,
            channel_axes,
            warmup_rounds: 0,
            launches: None,
        }
    }

    /// The row with its untimed rounds and launches per step.
    fn with_counts(self, warmup_rounds: usize, launches: Option<usize>) -> Self {
        Self {
            warmup_rounds,
            launches,
            ..self
        }
    }

    fn ms_per_step(&self) -> f64 {
        quantile(&self.ms, 0.5)
    }

    fn mparams_per_s(&self) -> f64 {
        self.params as f64 / self.ms_per_step() / 1e3
    }

    /// Bytes per parameter a step must move for its branch, and state bytes per parameter.
    fn traffic(&self) -> (u32, u32) {
        traffic(self.optimizer, self.branch, self.dtype)
    }

    /// The step's floor (`bytes · params / bandwidth`) as a percentage of its measured time.
    fn roofline_pct(&self) -> f64 {
        self.share_of(self.copy_bandwidth)
    }

    /// The step's floor at the machine's limit for its mix, as a percentage of its time.
    fn limit_pct(&self) -> Option<f64> {
        self.limit.as_ref().map(|l| self.share_of(l.bytes_per_s))
    }

    /// The step's floor at `bytes_per_s` (its bytes · params / bandwidth) as a percentage of
    /// its measured time.
    fn share_of(&self, bytes_per_s: f64) -> f64 {
        let floor_s = f64::from(self.traffic().0) * self.params as f64 / bytes_per_s;
        100.0 * floor_s / (self.ms_per_step() / 1e3)
    }

    /// A projecting row on `conv-firing` whose branch is not the channel-wise one.
    fn misses_firing(&self) -> bool {
        self.set.fires()
            && !self.channel_axes.is_empty()
            && self.branch != Some(ProjectionBranch::Channel)
    }
}

/// Times every optimizer of `optimizers` on one case, all at once.
fn bench_round_robin(
    case: &Case,
    optimizers: &[&'static str],
    schedule: Schedule,
    progress: &Progress,
) -> Vec<Row> {
    let mut slots: Vec<Slot> = optimizers.iter().map(|o| Slot::new(o, case)).collect();
    let measured = round_robin(&mut slots, case.device, schedule, progress);
    let times = &measured.times;
    let index = |o: &str| slots.iter().position(|s| s.optimizer == o);
    slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let r = base_of(s.optimizer)
                .and_then(index)
                .map_or_else(Vec::new, |b| ratios(&times[b], &times[i]));
            Row::new(case, s, "round-robin", times[i].clone(), r)
                .with_counts(measured.warmup_rounds, measured.launches[i])
        })
        .collect()
}

/// Times every optimizer of `optimizers` on one case, each round-robin with its base alone.
fn bench_pairs(
    case: &Case,
    optimizers: &[&'static str],
    schedule: Schedule,
    progress: &Progress,
) -> Vec<Row> {
    optimizers
        .iter()
        .map(|&o| {
            let mut slots = vec![Slot::new(o, case)];
            if let Some(b) = base_of(o) {
                slots.push(Slot::new(b, case));
            }
            let measured = round_robin(&mut slots, case.device, schedule, progress);
            let times = &measured.times;
            let r = match times.len() {
                2 => ratios(&times[1], &times[0]),
                _ => Vec::new(),
            };
            Row::new(case, &slots[0], "pairs", times[0].clone(), r)
                .with_counts(measured.warmup_rounds, measured.launches[0])
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/// Time per optimizer step against Burn's own optimizers, round-robin.
///
/// Four parameter sets (conv with random and with projection-firing gradients, Burn Linear
/// layers, a small GPT), each at every size, at 1 thread and at all cores. Each row reports its
/// median ms/step, its ratio to its base round by round (base ms / row ms, > 1: faster), the
/// projection branch it took and its share of the memory roofline. See the top of
/// examples/bench.rs.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    devices: DevicesArg,
    /// Parameter sets, comma-separated.
    #[arg(
        long,
        value_enum,
        value_name = "SETS",
        value_delimiter = ',',
        default_value = "conv-random,conv-firing,linear,transformer"
    )]
    sets: Vec<SetKind>,
    /// Parameter-set sizes in millions of parameters, comma-separated.
    #[arg(long, value_name = "MILLIONS", value_delimiter = ',', default_value = "1,4,16", value_parser = positive_finite)]
    sizes: Vec<f64>,
    /// Thread counts, comma-separated; every row is measured at each [default: 1 and the
    /// machine's core count].
    #[arg(long, value_name = "N", value_delimiter = ',', value_parser = positive::<usize>)]
    threads: Vec<usize>,
    /// Rows to run, comma-separated [default: all; the *_tensor_ops rows are the slow ones].
    /// Their bases and the A/A pair (burn_adam_built vs burn_adam, the noise floor) are added.
    #[arg(long, value_name = "NAMES", value_delimiter = ',', value_parser = PossibleValuesParser::new(OPTIMIZERS))]
    optimizers: Vec<String>,
    /// Timed rounds; each steps every optimizer once.
    #[arg(long, visible_alias = "steps", value_name = "N", default_value = "20", value_parser = positive::<usize>)]
    rounds: usize,
    /// Untimed rounds before the timed ones.
    #[arg(long, value_name = "N", default_value = "3")]
    warmup: usize,
    /// Round-robin each optimizer with its base alone (less memory).
    #[arg(long)]
    pairs: bool,
    /// Memory budget in GB for all slots of one set and size at once [default: 80 % of the
    /// available memory on the CPU backends, no limit on others]; over it the bench falls back
    /// to pairs.
    #[arg(long, value_name = "G", value_parser = positive_finite)]
    mem_gb: Option<f64>,
    /// The parameters' and gradients' element type (this crate's optimizers keep their state
    /// in f32).
    #[arg(long, value_enum, default_value = "f32")]
    dtype: ElemType,
    /// The widest vectors the fused flex loops may use, in bits (128, 256 or 512) [default:
    /// the widest the CPU has].
    #[arg(long, value_name = "BITS", value_parser = clap::builder::PossibleValuesParser::new(["128", "256", "512"]))]
    vector_bits: Option<String>,
    /// Writes one JSON record per row here.
    #[arg(long, value_name = "PATH")]
    json: Option<String>,
}

impl Args {
    fn schedule(&self) -> Schedule {
        Schedule {
            warmup: self.warmup,
            rounds: self.rounds,
        }
    }

    /// The thread counts, in order, without repeats: `--threads`, or 1 and the core count.
    fn thread_counts(&self) -> Vec<usize> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut counts = match self.threads.is_empty() {
            true => vec![1, cores],
            false => self.threads.clone(),
        };
        let mut seen = Vec::new();
        counts.retain(|k| {
            let new = !seen.contains(k);
            seen.push(*k);
            new
        });
        counts
    }
}

/// Prints `message` as an error and exits with status 1.
fn fail(message: String) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

/// One rayon pool per thread count.
fn thread_pools(counts: &[usize]) -> Vec<(usize, ThreadPool)> {
    counts
        .iter()
        .map(|&k| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(k)
                .build()
                .unwrap_or_else(|e| fail(format!("cannot start {k} threads: {e}")));
            (k, pool)
        })
        .collect()
}

/// Optimizer steps the whole run takes, for the progress bar.
fn total_steps(args: &Args, optimizers: &[&str], thread_counts: usize) -> u64 {
    let mut total = 0;
    for name in &args.devices.names {
        let budget = budget_of(name, args.mem_gb);
        for set in &args.sets {
            for &millions in &args.sizes {
                let params = set.shape(millions).params();
                let pairs = falls_back(params, optimizers, budget, args.pairs);
                total += steps_per_case(optimizers, pairs, args.schedule()) * thread_counts as u64;
            }
        }
    }
    total
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// A ratio's median and `p25-p75`, `-` for a base row.
fn ratio_columns(r: &Row) -> (String, String) {
    if r.base.is_none() {
        return ("-".into(), "-".into());
    }
    let (med, p25, p75) = summary(&r.ratios);
    (format!("{med:.2}x"), format!("{p25:.2}-{p75:.2}"))
}

fn print_table(rows: &[Row], schedule: Schedule) {
    let mode = match rows.iter().any(|r| r.mode == "pairs") {
        true => "pairs (some sets and sizes)",
        false => "round-robin",
    };
    println!(
        "# {mode}: {} warm-up + {} timed rounds; ms/step = median over rounds; ratio = base ms / \
         row ms in the same round (> 1: faster than the base), median [p25-p75] over rounds; \
         B/param = bytes a step must move for its branch; roofline = that over the copy \
         bandwidth at the row's thread count, as a share of ms/step; limit = that over the \
         machine's limit for the row's mix, footprint and thread count (CPU backends); \
         parameters in {}",
        schedule.warmup,
        schedule.rounds,
        rows.first().map_or("f32", |r| r.dtype.name())
    );
    println!(
        "{:<22} {:<11} {:<7} {:>9} {:>3} {:>9} {:>8} {:<17} {:>7} {:>11} {:<7} {:>7} {:>8} {:>6} {:>6}",
        "optimizer",
        "set",
        "device",
        "params",
        "thr",
        "ms/step",
        "Mparam/s",
        "base",
        "ratio",
        "p25-p75",
        "branch",
        "B/param",
        "roofline",
        "limit",
        "state"
    );
    for r in rows {
        let (ratio, iqr) = ratio_columns(r);
        let (bytes, state) = r.traffic();
        println!(
            "{:<22} {:<11} {:<7} {:>9} {:>3} {:>9.2} {:>8.0} {:<17} {:>7} {:>11} {:<7} {:>7} {:>7.0}% {:>6} {:>4} B",
            r.optimizer,
            r.set.name(),
            r.device,
            r.params,
            r.threads,
            r.ms_per_step(),
            r.mparams_per_s(),
            r.base.unwrap_or("-"),
            ratio,
            iqr,
            branch_name(r.branch),
            bytes,
            r.roofline_pct(),
            r.limit_pct().map_or("-".into(), |p| format!("{p:.0}%")),
            state
        );
    }
}

/// The A/A pair's line of one case.
fn aa_line(r: &Row) -> String {
    let (med, p25, p75) = summary(&r.ratios);
    format!(
        "A/A {} vs {} on {} {} at {} params, {} thread(s): ratio {med:.3}x [{p25:.3}-{p75:.3}] ({})",
        AA.0,
        AA.1,
        r.device,
        r.set.name(),
        r.params,
        r.threads,
        r.mode
    )
}

/// The warning of a `conv-firing` row whose projection did not fire channel-wise.
fn firing_warning(r: &Row) -> String {
    format!(
        "warning: {} on conv-firing at {} params, {} thread(s) took branch {} (after warm-up: \
         {}), not channel: its gradients should make the channel-wise projection fire",
        r.optimizer,
        r.params,
        r.threads,
        branch_name(r.branch),
        branch_name(r.branch_after_warmup)
    )
}

/// One JSON record: the fixed keys first, then the extras.
#[derive(Serialize)]
struct Record {
    optimizer: &'static str,
    device: String,
    set: &'static str,
    params: usize,
    threads: usize,
    ms_per_step: f64,
    mparams_per_s: f64,
    base: Option<&'static str>,
    ratio_median: Option<f64>,
    ratio_iqr: Option<[f64; 2]>,
    branch: &'static str,
    bytes_per_param: u32,
    roofline_pct: f64,
    branch_after_warmup: &'static str,
    channel_axes: Vec<usize>,
    ms_p25: f64,
    ms_p75: f64,
    state_bytes_per_param: u32,
    copy_gb_per_s: f64,
    mode: &'static str,
    rounds: usize,
    ms_rounds: Vec<f64>,
    ratio_rounds: Vec<f64>,
    dtype: &'static str,
    warmup_rounds: usize,
    launches_per_step: Option<usize>,
    limit_gb_per_s: Option<f64>,
    limit_kernel: Option<&'static str>,
    limit_mix: Option<&'static str>,
    limit_pct: Option<f64>,
}

/// `x` rounded to `decimals` decimals.
fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

impl Record {
    fn new(r: &Row) -> Self {
        let (ms, ms_p25, ms_p75) = summary(&r.ms);
        let (med, p25, p75) = summary(&r.ratios);
        let has_base = r.base.is_some();
        let (bytes_per_param, state_bytes_per_param) = r.traffic();
        Self {
            optimizer: r.optimizer,
            device: r.device.clone(),
            set: r.set.name(),
            params: r.params,
            threads: r.threads,
            ms_per_step: round(ms, 4),
            mparams_per_s: round(r.mparams_per_s(), 2),
            base: r.base,
            ratio_median: has_base.then(|| round(med, 4)),
            ratio_iqr: has_base.then(|| [round(p25, 4), round(p75, 4)]),
            branch: branch_name(r.branch),
            bytes_per_param,
            roofline_pct: round(r.roofline_pct(), 1),
            branch_after_warmup: branch_name(r.branch_after_warmup),
            channel_axes: r.channel_axes.clone(),
            ms_p25: round(ms_p25, 4),
            ms_p75: round(ms_p75, 4),
            state_bytes_per_param,
            copy_gb_per_s: round(r.copy_bandwidth / 1e9, 2),
            mode: r.mode,
            rounds: r.ms.len(),
            ms_rounds: r.ms.iter().map(|&t| round(t, 4)).collect(),
            ratio_rounds: r.ratios.iter().map(|&x| round(x, 4)).collect(),
            dtype: r.dtype.name(),
            warmup_rounds: r.warmup_rounds,
            launches_per_step: r.launches,
            limit_gb_per_s: r.limit.as_ref().map(|l| round(l.bytes_per_s / 1e9, 2)),
            limit_kernel: r.limit.as_ref().map(|l| l.kernel),
            limit_mix: r.limit.as_ref().map(|l| l.mix.name),
            limit_pct: r.limit_pct().map(|p| round(p, 1)),
        }
    }
}

/// Writes the rows to `path` as a JSON array, one record per line.
fn write_json(path: &str, rows: &[Row]) {
    let records: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(&Record::new(r)).expect("a record serializes"))
        .collect();
    let text = format!("[\n{}\n]\n", records.join(",\n"));
    std::fs::write(path, text).unwrap_or_else(|e| fail(format!("cannot write {path}: {e}")));
    println!("wrote {path}");
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

/// Runs one case in its thread pool and prints its progress lines.
fn run_case(
    case: &Case,
    pool: &ThreadPool,
    (optimizers, pairs): (&[&'static str], bool),
    schedule: Schedule,
    progress: &Progress,
) -> Vec<Row> {
    let label = format!(
        "{:<7} {:<11} {:>9} {:>2} thr",
        case.device_name,
        case.set.name(),
        case.shape.params(),
        case.threads
    );
    progress.set_message(label.clone());
    let t0 = Instant::now();
    let rows = pool.install(|| match pairs {
        true => bench_pairs(case, optimizers, schedule, progress),
        false => bench_round_robin(case, optimizers, schedule, progress),
    });
    progress.println(format!(
        "  {label}: {} rounds in {:.1} s, estimated {:.2} GB, peak RSS {}",
        schedule.rounds,
        t0.elapsed().as_secs_f64(),
        state_bytes(case.shape.params(), optimizers) / 1e9,
        peak_rss().map_or("?".into(), |b| format!("{:.2} GB", b / 1e9))
    ));
    for r in &rows {
        let launches = r
            .launches
            .map_or(String::new(), |n| format!("  {n} launches"));
        progress.println(format!(
            "  {label} {:<22} {:9.2} ms/step  branch {}{launches}",
            r.optimizer,
            r.ms_per_step(),
            branch_name(r.branch)
        ));
    }
    if let Some(r) = rows.first() {
        progress.println(format!("  {label}: {} untimed rounds", r.warmup_rounds));
    }
    if let Some(aa) = rows.iter().find(|r| r.optimizer == AA.0) {
        progress.println(format!("  {}", aa_line(aa)));
    }
    rows
}

/// The limits measured for one footprint and thread count, as a progress line.
fn limits_line(name: &str, params: usize, threads: usize, limits: &[Limit]) -> String {
    let each: Vec<String> = limits
        .iter()
        .map(|l| {
            let all: Vec<String> = l
                .kernels
                .iter()
                .map(|(k, b)| format!("{k} {:.1}", b / 1e9))
                .collect();
            format!(
                "{} {:.1} GB/s ({}; {})",
                l.mix.name,
                l.bytes_per_s / 1e9,
                l.kernel,
                all.join(", ")
            )
        })
        .collect();
    format!(
        "  {name:<7} limit at {params} params, {threads} thread(s): {}",
        each.join(", ")
    )
}

/// Every set, size and thread count on one device.
fn bench_device(
    name: &str,
    args: &Args,
    optimizers: &[&'static str],
    pools: &[(usize, ThreadPool)],
    progress: &Progress,
) -> Vec<Row> {
    let device = device_from_name(name).expect("--device was checked when parsed");
    let bandwidths: Vec<f64> = pools
        .iter()
        .map(|(k, pool)| {
            let copy = pool.install(|| copy_bandwidth(name, &device));
            progress.println(format!(
                "  {name:<7} copy bandwidth {:.1} GB/s at {k} thread(s)",
                copy / 1e9
            ));
            copy
        })
        .collect();
    let budget = budget_of(name, args.mem_gb);
    let host = on_host(name);
    let mut limits: HashMap<(usize, usize), Vec<Limit>> = HashMap::new();
    let mut rows = Vec::new();
    for &set in &args.sets {
        for &millions in &args.sizes {
            let shape = set.shape(millions);
            let params = shape.params();
            let pairs = falls_back(params, optimizers, budget, args.pairs);
            if pairs && !args.pairs {
                progress.println(format!(
                    "  {name:<7} {:<11} {params:>9}: all slots at once need about {:.2} GB, over \
                     the {:.2} GB budget: falling back to pairs (each row round-robin with its \
                     base)",
                    set.name(),
                    state_bytes(params, optimizers) / 1e9,
                    budget.unwrap_or(f64::NAN) / 1e9
                ));
            }
            for ((threads, pool), &copy_bandwidth) in pools.iter().zip(&bandwidths) {
                let limits = match host {
                    true => limits
                        .entry((params, *threads))
                        .or_insert_with(|| {
                            let found = pool.install(|| {
                                [Mix::ADAM, Mix::SGD].map(|mix| limit::measure(mix, params))
                            });
                            progress.println(limits_line(name, params, *threads, &found));
                            found.to_vec()
                        })
                        .clone(),
                    false => Vec::new(),
                };
                let case = Case {
                    device_name: name,
                    device: &device,
                    set,
                    shape,
                    dtype: args.dtype,
                    threads: *threads,
                    copy_bandwidth,
                    limits,
                };
                let run = (optimizers, pairs);
                rows.extend(run_case(&case, pool, run, args.schedule(), progress));
            }
        }
    }
    rows
}

fn main() {
    let args = Args::parse();
    #[cfg(feature = "flex")]
    if let Some(bits) = &args.vector_bits {
        scaleinv::limit_flex_vector_width(bits.parse().expect("one of the listed widths"));
    }
    let started = Instant::now();
    let optimizers = selected(&args.optimizers);
    let pools = thread_pools(&args.thread_counts());
    let progress = Progress::new(total_steps(&args, &optimizers, pools.len()), "steps");
    let rows: Vec<Row> = args
        .devices
        .names
        .iter()
        .flat_map(|name| bench_device(name, &args, &optimizers, &pools, &progress))
        .collect();
    progress.finish();

    print_table(&rows, args.schedule());
    for r in rows.iter().filter(|r| r.optimizer == AA.0) {
        println!("{}", aa_line(r));
    }
    for r in rows.iter().filter(|r| r.misses_firing()) {
        println!("{}", firing_warning(r));
    }
    eprintln!("  total {:.1} s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        write_json(path, &rows);
    }
}
