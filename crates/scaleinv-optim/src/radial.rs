//! Scale-invariance detection and radial projection (Heo et al., ICLR 2021, §3).
//!
//! A weight `w` that feeds a normalization layer is scale-invariant: `L(c·w) = L(w)` for
//! every `c > 0`. Its gradient is then orthogonal to `w`, and any radial component of the
//! update only grows `‖w‖`, which shrinks the effective step `η / ‖w‖²`. The projection
//! detects such weights from the cosine between the weight and its raw gradient and removes
//! the radial part of the update:
//!
//! ```text
//! for view V in (channel, layer):
//!     cos_i = |⟨G_i, P_i⟩| / (max(‖G_i‖, ε) · max(‖P_i‖, ε))        per row i of the view
//!     if max_i cos_i < δ / √K:                                       K = row width
//!         P̂_i = P_i / (‖P_i‖ + ε)
//!         U_i ← U_i − P̂_i ⟨P̂_i, U_i⟩                                 radial part removed
//!         return (U, wd_ratio)
//! return (U, 1)
//! ```
//!
//! The *channel view* keeps the parameter's channel axis and flattens the rest (one row per
//! output channel); the *layer view* is the whole tensor as one row. Both tests are computed
//! on the device and the branch is selected with tensor masks: no value is read back to the
//! host. Rank-0 and rank-1 tensors (biases, norm gains) are never projected.

use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::reduce::sum_except;

/// Which view of a parameter the scale-invariance test selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProjectionBranch {
    /// No view passed the test: the update is left unchanged.
    None,
    /// The channel-wise view passed: each output channel's radial part was removed.
    Channel,
    /// The channel-wise view failed and the layer-wise view passed.
    Layer,
}

impl ProjectionBranch {
    /// The branch's code in the tensor returned by [`ScaleInvariance::branch`].
    pub const fn code(self) -> i64 {
        match self {
            Self::None => 0,
            Self::Channel => 1,
            Self::Layer => 2,
        }
    }

    /// The branch for a code of [`ScaleInvariance::branch`], if it is one.
    pub const fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(Self::None),
            1 => Some(Self::Channel),
            2 => Some(Self::Layer),
            _ => None,
        }
    }

    /// The reference's name of the branch: `"none"`, `"channel"` or `"layer"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Channel => "channel",
            Self::Layer => "layer",
        }
    }
}

/// Which view of a parameter the projection uses.
///
/// The reference decides at every step from the cosine test ([`Detect`](Self::Detect)). When
/// the invariance of a weight is known in advance, e.g. from
/// [`ScaleProbe`](crate::ScaleProbe), the view can be fixed instead: the projection then
/// always fires in that view and no cosine is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ProjectionView {
    /// The reference's per-step cosine test, channel view first, then layer view.
    #[default]
    Detect,
    /// Always project each output channel's radial part.
    Channel,
    /// Always project the whole tensor's radial part.
    Layer,
    /// Never project (the base update, with the full weight decay).
    Off,
}

/// Hyperparameters of the scale-invariance test and projection, shared by SGDP, AdamP and
/// [`RadialProjection`](crate::RadialProjection).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleInvariance {
    /// Threshold δ of the cosine test (reference default 0.1).
    pub delta: f64,
    /// Factor applied to the decoupled weight decay of projected tensors (default 0.1).
    pub wd_ratio: f64,
    /// ε: clamps each cosine norm (`max(‖·‖, ε)`) and is added to the projection norm.
    pub epsilon: f64,
    /// Axis of the tensor that indexes its output channels (0 for convolutions, 1 for Burn's
    /// `Linear`, whose weight is stored `[d_input, d_output]`).
    pub channel_axis: usize,
    /// Whether the view is chosen by the cosine test at each step or fixed.
    pub view: ProjectionView,
    /// Whether an all-zero weight or gradient passes the test (its cosine is 0): `true` in the
    /// reference, so such a tensor's decay is cut by `wd_ratio`; `false` fails the test for it.
    pub zero_is_invariant: bool,
}

/// The projected update and the decay ratio of one step, both still on the device.
#[derive(Debug, Clone)]
pub struct Projected<const D: usize> {
    /// The update with its radial component removed in the selected view (unchanged when no
    /// view passed the test).
    pub update: Tensor<D>,
    /// `wd_ratio` when a view passed the test, `1` otherwise; shape `[1]`.
    pub decay_ratio: Tensor<1>,
    decision: Decision,
}

impl<const D: usize> Projected<D> {
    /// The branch taken, as a one-element [`ProjectionBranch::code`] tensor (no host read).
    pub fn branch(&self) -> Tensor<1, Int> {
        let device = self.decay_ratio.device();
        match &self.decision {
            Decision::Fixed(branch) => Tensor::<1, Int>::full([1], branch.code(), &device),
            Decision::Tested(tests) => tests.code(),
        }
    }
}

/// How the branch of one step was decided.
#[derive(Debug, Clone)]
enum Decision {
    Fixed(ProjectionBranch),
    Tested(Box<Tests>),
}

/// Per-row statistics of a (weight, gradient) pair, kept in the channel view's shape
/// (every axis but the channel axis reduced to length 1).
struct RowStats<const D: usize> {
    /// `⟨P_i, G_i⟩`
    dot: Tensor<D>,
    /// `‖P_i‖²`
    weight_sq: Tensor<D>,
    /// `‖G_i‖²`
    grad_sq: Tensor<D>,
}

/// The outcome of the two cosine tests, as one-element boolean tensors.
#[derive(Debug, Clone)]
struct Tests {
    channel: Tensor<1, Bool>,
    layer: Tensor<1, Bool>,
}

impl Tests {
    fn code(&self) -> Tensor<1, Int> {
        let channel = self.channel.clone().int();
        let layer = self
            .layer
            .clone()
            .bool_and(self.channel.clone().bool_not())
            .int();
        channel * ProjectionBranch::Channel.code() + layer * ProjectionBranch::Layer.code()
    }
}

impl ScaleInvariance {
    /// The reference's test and projection (`view` = [`ProjectionView::Detect`]).
    pub fn detect(delta: f64, wd_ratio: f64, epsilon: f64, channel_axis: usize) -> Self {
        Self {
            delta,
            wd_ratio,
            epsilon,
            channel_axis,
            view: ProjectionView::Detect,
            zero_is_invariant: true,
        }
    }

    /// The same test with `zero_is_invariant` set (see the field).
    pub fn with_zero_is_invariant(self, zero_is_invariant: bool) -> Self {
        Self {
            zero_is_invariant,
            ..self
        }
    }

    /// The same projection with the view fixed.
    pub fn with_view(self, view: ProjectionView) -> Self {
        Self { view, ..self }
    }

    /// Panics with a clear message when the channel axis is not an axis of a rank-`D` tensor
    /// (configs built through `init_for`/`try_init_with` are checked before any step).
    fn check_axis<const D: usize>(&self) {
        assert!(
            self.channel_axis < D,
            "scaleinv: channel_axis {} is out of range for a parameter of rank {D}; \
             set it per parameter with ChannelAxes (see `init_for`)",
            self.channel_axis
        );
    }

    /// Sums `x` over every axis but the channel axis, keeping the rank (`[1, …, C, …, 1]`).
    fn row_sum<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        sum_except(x, self.channel_axis)
    }

    fn row_stats<const D: usize>(&self, param: &Tensor<D>, grad: &Tensor<D>) -> RowStats<D> {
        RowStats {
            dot: self.row_sum(param.clone() * grad.clone()),
            weight_sq: self.row_sum(param.clone().square()),
            grad_sq: self.row_sum(grad.clone().square()),
        }
    }

    /// `|dot| / (max(√grad_sq, ε) · max(√weight_sq, ε))`: the reference's cosine, with each
    /// norm clamped separately.
    fn cosine<const R: usize>(
        &self,
        dot: Tensor<R>,
        weight_sq: Tensor<R>,
        grad_sq: Tensor<R>,
    ) -> Tensor<R> {
        let eps = self.epsilon;
        dot.abs() / (grad_sq.sqrt().clamp_min(eps) * weight_sq.sqrt().clamp_min(eps))
    }

    fn tests<const D: usize>(&self, stats: &RowStats<D>, numel: usize) -> Tests {
        let channels = stats.dot.dims()[self.channel_axis];
        let row_width = (numel / channels) as f64;
        let channel_cos = self.cosine(
            stats.dot.clone(),
            stats.weight_sq.clone(),
            stats.grad_sq.clone(),
        );
        let weight_sq = stats.weight_sq.clone().sum();
        let grad_sq = stats.grad_sq.clone().sum();
        let layer_cos = self.cosine(stats.dot.clone().sum(), weight_sq.clone(), grad_sq.clone());
        let channel = channel_cos
            .max()
            .lower_scalar(self.delta / row_width.sqrt());
        let layer = layer_cos.lower_scalar(self.delta / (numel as f64).sqrt());
        if self.zero_is_invariant {
            return Tests { channel, layer };
        }
        let nonzero = weight_sq
            .greater_elem(0.0)
            .bool_and(grad_sq.greater_elem(0.0));
        Tests {
            channel: channel.bool_and(nonzero.clone()),
            layer: layer.bool_and(nonzero),
        }
    }

    /// Whether a rank-`D` tensor with `numel` elements can be projected at all (rank ≥ 2,
    /// non-empty, view not `Off`); checks the channel axis when it can.
    fn projects<const D: usize>(&self, numel: usize) -> bool {
        if D < 2 || numel == 0 || self.view == ProjectionView::Off {
            return false;
        }
        self.check_axis::<D>();
        true
    }

    /// Which view the test selects for `param` and its raw gradient `grad`, as a one-element
    /// integer tensor holding a [`ProjectionBranch::code`]. Rank < 2 gives `None`; a fixed
    /// view gives that view.
    ///
    /// This is the decision [`project`](Self::project) makes; reading it back is a host sync,
    /// so use it for diagnostics and tests, not inside a training step.
    pub fn branch<const D: usize>(&self, param: &Tensor<D>, grad: &Tensor<D>) -> Tensor<1, Int> {
        let device = param.device();
        let fixed = |b: ProjectionBranch| Tensor::<1, Int>::full([1], b.code(), &device);
        if !self.projects::<D>(param.shape().num_elements()) {
            return fixed(ProjectionBranch::None);
        }
        match self.view {
            ProjectionView::Channel => fixed(ProjectionBranch::Channel),
            ProjectionView::Layer => fixed(ProjectionBranch::Layer),
            ProjectionView::Off => fixed(ProjectionBranch::None),
            ProjectionView::Detect => {
                let numel = param.shape().num_elements();
                self.tests(&self.row_stats(param, grad), numel).code()
            }
        }
    }

    /// Removes the radial component of `update` in the first view (channel, then layer) in
    /// which `param` and its raw gradient `grad` pass the scale-invariance test, or in the
    /// fixed [`view`](Self::view).
    ///
    /// Returns the update and the decay ratio (`wd_ratio` if a view passed, else 1).
    pub fn project<const D: usize>(
        &self,
        param: &Tensor<D>,
        grad: &Tensor<D>,
        update: Tensor<D>,
    ) -> Projected<D> {
        let device = param.device();
        if !self.projects::<D>(param.shape().num_elements()) {
            return Projected {
                update,
                decay_ratio: ones(&device),
                decision: Decision::Fixed(ProjectionBranch::None),
            };
        }
        let fixed = |update, branch| Projected {
            update,
            decay_ratio: ones(&device) * self.wd_ratio,
            decision: Decision::Fixed(branch),
        };
        // Radial coefficient ⟨P, U⟩ / (‖P‖ + ε)² per row (channel) or for the whole tensor
        // (layer).
        let row_dot_update = self.row_sum(param.clone() * update.clone());
        let channel_coef = |weight_sq: Tensor<D>| {
            row_dot_update.clone() / (weight_sq.sqrt() + self.epsilon).square()
        };
        let layer_coef = |weight_sq: Tensor<D>| {
            row_dot_update.clone().sum() / (weight_sq.sum().sqrt() + self.epsilon).square()
        };
        match self.view {
            ProjectionView::Channel => {
                let coef = channel_coef(self.row_sum(param.clone().square()));
                fixed(update - param.clone() * coef, ProjectionBranch::Channel)
            }
            ProjectionView::Layer => {
                let coef = layer_coef(self.row_sum(param.clone().square()));
                fixed(
                    update - param.clone() * coef.unsqueeze::<D>(),
                    ProjectionBranch::Layer,
                )
            }
            // Excluded by `projects`.
            ProjectionView::Off => unreachable!("an Off view never projects"),
            ProjectionView::Detect => {
                let stats = self.row_stats(param, grad);
                let tests = self.tests(&stats, param.shape().num_elements());
                let channel = channel_coef(stats.weight_sq.clone());
                let layer = layer_coef(stats.weight_sq);

                let row_shape = channel.shape();
                let mask = |test: &Tensor<1, Bool>| {
                    test.clone().unsqueeze::<D>().expand(row_shape.clone())
                };
                let coef = channel
                    .zeros_like()
                    .mask_where(
                        mask(&tests.layer),
                        layer.unsqueeze::<D>().expand(row_shape.clone()),
                    )
                    .mask_where(mask(&tests.channel), channel);
                let update = update - param.clone() * coef;

                let fired = tests.channel.clone().bool_or(tests.layer.clone());
                let decay_ratio = ones(&device).mask_fill(fired, self.wd_ratio);
                Projected {
                    update,
                    decay_ratio,
                    decision: Decision::Tested(Box::new(tests)),
                }
            }
        }
    }
}

fn ones(device: &Device) -> Tensor<1> {
    Tensor::<1>::ones([1], device)
}
