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

use crate::reduce::sum_except;

/// Which view of a parameter the scale-invariance test selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// Hyperparameters of the scale-invariance test and projection, shared by SGDP and AdamP.
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
}

/// The projected update and the decay ratio of one step, both still on the device.
#[derive(Debug, Clone)]
pub struct Projected<const D: usize> {
    /// The update with its radial component removed in the selected view (unchanged when no
    /// view passed the test).
    pub update: Tensor<D>,
    /// `wd_ratio` when a view passed the test, `1` otherwise; shape `[1]`.
    pub decay_ratio: Tensor<1>,
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
struct Tests {
    channel: Tensor<1, Bool>,
    layer: Tensor<1, Bool>,
}

impl ScaleInvariance {
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
        let layer_cos = self.cosine(
            stats.dot.clone().sum(),
            stats.weight_sq.clone().sum(),
            stats.grad_sq.clone().sum(),
        );
        Tests {
            channel: channel_cos
                .max()
                .lower_scalar(self.delta / row_width.sqrt()),
            layer: layer_cos.lower_scalar(self.delta / (numel as f64).sqrt()),
        }
    }

    /// The row statistics and both tests, or `None` for a tensor that is never projected
    /// (rank < 2, or empty).
    fn decide<const D: usize>(
        &self,
        param: &Tensor<D>,
        grad: &Tensor<D>,
    ) -> Option<(RowStats<D>, Tests)> {
        let numel = param.shape().num_elements();
        if D < 2 || numel == 0 {
            return None;
        }
        self.check_axis::<D>();
        let stats = self.row_stats(param, grad);
        let tests = self.tests(&stats, numel);
        Some((stats, tests))
    }

    /// Which view the test selects for `param` and its raw gradient `grad`, as a one-element
    /// integer tensor holding a [`ProjectionBranch::code`]. Rank < 2 gives `None`.
    ///
    /// This is the decision [`project`](Self::project) makes; reading it back is a host sync,
    /// so use it for diagnostics and tests, not inside a training step.
    pub fn branch<const D: usize>(&self, param: &Tensor<D>, grad: &Tensor<D>) -> Tensor<1, Int> {
        let Some((_, tests)) = self.decide(param, grad) else {
            return Tensor::<1, Int>::zeros([1], &param.device());
        };
        let channel = tests.channel.clone().int();
        let layer = tests.layer.bool_and(tests.channel.bool_not()).int();
        channel * ProjectionBranch::Channel.code() + layer * ProjectionBranch::Layer.code()
    }

    /// Removes the radial component of `update` in the first view (channel, then layer) in
    /// which `param` and its raw gradient `grad` pass the scale-invariance test.
    ///
    /// Returns the update and the decay ratio (`wd_ratio` if a view passed, else 1).
    pub fn project<const D: usize>(
        &self,
        param: &Tensor<D>,
        grad: &Tensor<D>,
        update: Tensor<D>,
    ) -> Projected<D> {
        let device = param.device();
        let Some((stats, tests)) = self.decide(param, grad) else {
            return Projected {
                update,
                decay_ratio: ones(&device),
            };
        };
        // Radial coefficient ⟨P, U⟩ / (‖P‖ + ε)² per row (channel) and for the whole tensor (layer).
        let row_dot_update = self.row_sum(param.clone() * update.clone());
        let row_norm = stats.weight_sq.clone().sqrt() + self.epsilon;
        let channel_coef = row_dot_update.clone() / row_norm.square();
        let layer_norm = stats.weight_sq.sum().sqrt() + self.epsilon;
        let layer_coef = row_dot_update.sum() / layer_norm.square();

        let row_shape = channel_coef.shape();
        let channel_mask = tests
            .channel
            .clone()
            .unsqueeze::<D>()
            .expand(row_shape.clone());
        let layer_mask = tests
            .layer
            .clone()
            .unsqueeze::<D>()
            .expand(row_shape.clone());
        let coef = channel_coef
            .zeros_like()
            .mask_where(layer_mask, layer_coef.unsqueeze::<D>().expand(row_shape))
            .mask_where(channel_mask, channel_coef);
        let update = update - param.clone() * coef;

        let fired = tests.channel.bool_or(tests.layer);
        let decay_ratio = ones(&device).mask_fill(fired, self.wd_ratio);
        Projected {
            update,
            decay_ratio,
        }
    }
}

fn ones(device: &Device) -> Tensor<1> {
    Tensor::<1>::ones([1], device)
}
