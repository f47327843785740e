//! GradientStabilizer: every gradient keeps its direction and takes a running estimate of its
//! norm, in front of any per-tensor optimizer. See [`GradientStabilizer`].

use burn::config::Config;
use burn::module::Module;
use burn::optim::{LearningRate, ModuleOptimizer, Optimizer, RecordState};
use burn::tensor::{Bool, Device, Tensor};

use crate::engine::non_finite::{Checkpoint, NonFinitePolicy};
use crate::engine::step_frame::framed_wrapper_step;
use crate::error::{ConfigError, Range, check};
use crate::optimizers::constructors::wrapper_constructors;
use crate::rules::stabilizer::Stabilizer;

/// Configuration of [`GradientStabilizer`], with the reference's defaults
/// (`TianjinYellow/GradientStabilizer` @ d77016fe).
#[derive(Config, Debug)]
pub struct GradientStabilizerConfig {
    /// γ1, decay of the running average of the gradient norm.
    #[config(default = 0.6)]
    pub gamma_1: f64,
    /// γ2, decay of the running average of the squared gradient norm.
    #[config(default = 0.999)]
    pub gamma_2: f64,
    /// ε of the target norm `μ̂ / (√ν̂ + ε)` and floor of the norm in `g / max(n, ε)`
    /// (`gs_eps` in the reference).
    #[config(default = 1e-12)]
    pub epsilon: f64,
    /// Divide both averages by `1 − γ^t`, `t` the steps with a valid norm.
    #[config(default = true)]
    pub bias_correction: bool,
    /// What a step does when a gradient holds NaN or ±∞; under `Skip` the inner optimizer
    /// steps on a zero gradient, the parameter is kept and the averages do not move (see
    /// [`NonFinitePolicy::Skip`]). Under `Propagate` the gradient reaches the inner optimizer
    /// unchanged, as in the reference.
    #[config(default = "NonFinitePolicy::Skip")]
    pub non_finite: NonFinitePolicy,
}

wrapper_constructors!(GradientStabilizerConfig => GradientStabilizer);

/// GradientStabilizer (Huang et al., *Fix the Norm, Not the Gradient*, ICML 2026; the revision
/// of Stable-SPAM, [arXiv:2502.17055](https://arxiv.org/abs/2502.17055); reference
/// `TianjinYellow/GradientStabilizer`, MIT) in front of any per-tensor optimizer `O`: Burn's
/// SGD, Adam, AdamW, Lion, or this crate's. Per parameter, with its gradient `g`:
///
/// ```text
/// n = ‖g‖                                     in f32
/// if n is finite and n > 0:
///     t ← t + 1 ;  μ ← γ1·μ + (1 − γ1)·n ;  ν ← γ2·ν + (1 − γ2)·n²
///     μ̂ = μ / (1 − γ1^t) ;  ν̂ = ν / (1 − γ2^t)          (bias_correction; else μ, ν)
///     g ← g · (μ̂ / (√ν̂ + ε)) / max(n, ε)
/// p ← O.step(η, p, g)
/// ```
///
/// The gradient's direction is kept; its norm becomes the running estimate `μ̂ / √ν̂` (≈ 1 in a
/// steady state, below 1 after a spike), so a spike is tamed without clipping any element. An
/// invalid norm (zero, NaN, ±∞) passes the gradient as it is and leaves the averages and `t`
/// alone, except that under `Skip` a norm that overflows f32 from finite elements (`‖g‖` above
/// about 1.8e19) skips the step as a non-finite gradient does: the reference passes such a
/// spike to its inner optimizer, whose second moment overflows and never moves again.
/// Everything runs on the device (masks, no host read); on flex the norm is read where it lies
/// and the decision taken on the CPU.
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::optim::{AdamWConfig, GradientsParams};
/// use scaleinv_optim::GradientStabilizerConfig;
///
/// # #[cfg(feature = "flex")] {
/// let device = Device::flex().autodiff();
/// let model: Linear = LinearConfig::new(4, 3).init(&device);
/// let adamw = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(1e-2).build();
/// let mut optim = GradientStabilizerConfig::new().init(adamw);
///
/// let loss = model.forward(Tensor::<2>::ones([8, 4], &device)).square().mean();
/// let grads = GradientsParams::from_grads(loss.backward(), &model);
/// let model = optim.step(1e-3, model, grads);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct GradientStabilizer<O> {
    inner: O,
    stabilizer: Stabilizer,
    non_finite: NonFinitePolicy,
}

/// GradientStabilizer's state for one parameter: the running averages, their step count and
/// the inner optimizer's state. Everything a resumed run needs, in the record.
#[derive(RecordState, Clone, Debug)]
pub struct GradientStabilizerState<S: RecordState + Clone> {
    /// Steps with a valid norm folded into the averages (`t`), shape `[1]` (an f32 count, exact
    /// up to 2²⁴ steps; it lives on the device because only the device knows whether a norm
    /// was valid).
    pub count: Tensor<1>,
    /// Running average of the gradient norm (`μ`), shape `[1]`.
    pub norm_mean: Tensor<1>,
    /// Running average of the squared gradient norm (`ν`), shape `[1]`.
    pub norm_sq_mean: Tensor<1>,
    /// The inner optimizer's state.
    pub inner: Option<S>,
}

impl GradientStabilizerConfig {
    /// Checks every hyperparameter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const C: &str = "GradientStabilizerConfig";
        check(C, "gamma_1", self.gamma_1, Range::UnitHalfOpen)?;
        check(C, "gamma_2", self.gamma_2, Range::UnitHalfOpen)?;
        check(C, "epsilon", self.epsilon, Range::Epsilon)?;
        Ok(())
    }

    /// The per-tensor wrapper around `inner`, for
    /// [`ModuleOptimizer::with_group`](burn::optim::ModuleOptimizer::with_group).
    pub fn try_wrap<O: Optimizer>(&self, inner: O) -> Result<GradientStabilizer<O>, ConfigError> {
        self.validate()?;
        Ok(GradientStabilizer {
            inner,
            stabilizer: Stabilizer {
                gamma_1: self.gamma_1,
                gamma_2: self.gamma_2,
                epsilon: self.epsilon,
                bias_correction: self.bias_correction,
            },
            non_finite: self.non_finite,
        })
    }

    /// A [`ModuleOptimizer`] stabilizing every parameter's gradient in front of `inner`.
    pub fn try_init<O: Optimizer>(&self, inner: O) -> Result<ModuleOptimizer, ConfigError> {
        Ok(ModuleOptimizer::from(self.try_wrap(inner)?))
    }

    /// The same as [`try_init`](Self::try_init): every parameter is stabilized, whatever its
    /// layer (for a uniform constructor family).
    pub fn try_init_for<O: Optimizer, M: Module>(
        &self,
        inner: O,
        _model: &M,
    ) -> Result<ModuleOptimizer, ConfigError> {
        self.try_init(inner)
    }
}

impl<O> GradientStabilizer<O> {
    /// The inner optimizer.
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// The stabilized gradient, the averages after it and, under `Skip`, a one-element flag
    /// that keeps the parameter where it is true, as tensor operations (no host read).
    ///
    /// Under `Skip` the frame has already replaced a gradient holding NaN or ±∞ by zeros, so a
    /// norm that is not finite here comes from finite elements whose squares overflow f32 (a
    /// spike with `‖g‖` above about 1.8e19): the step is skipped as for a non-finite gradient
    /// (the inner optimizer sees zeros, the parameter is kept, the averages stay). Under
    /// `Propagate` it passes unchanged, as in the reference.
    fn stabilize<const D: usize, S: RecordState + Clone>(
        &self,
        grad: Tensor<D>,
        old: GradientStabilizerState<S>,
    ) -> (
        Tensor<D>,
        GradientStabilizerState<S>,
        Option<Tensor<1, Bool>>,
    ) {
        let skip = self.non_finite == NonFinitePolicy::Skip;
        #[cfg(feature = "flex")]
        if let Some(host) = self.stabilize_on_host(&grad, &old) {
            let skipped = skip && !host.norm_finite;
            let grad = if skipped {
                grad.zeros_like()
            } else if host.factor == 1.0 {
                grad
            } else {
                grad * host.factor
            };
            // The decision is the host's; the flag only tells the caller to keep the parameter.
            let keep = skipped.then(|| Tensor::from_data([true], &grad.device()));
            return (
                grad,
                old.with_scalars(host.count, host.mean, host.sq_mean),
                keep,
            );
        }
        let s = &self.stabilizer;
        let norm = grad.clone().square().sum().sqrt();
        let not_finite = norm.clone().is_finite().bool_not();
        let valid = not_finite
            .clone()
            .bool_not()
            .bool_and(norm.clone().greater_elem(0.0));
        let invalid = valid.clone().bool_not();
        let (mean, sq_mean) = s.averages(
            old.norm_mean.clone(),
            old.norm_sq_mean.clone(),
            norm.clone(),
        );
        let mean = mean.mask_where(invalid.clone(), old.norm_mean);
        let sq_mean = sq_mean.mask_where(invalid.clone(), old.norm_sq_mean);
        let count = old.count + valid.float();
        let (mean_hat, sq_mean_hat) = s.debiased(mean.clone(), sq_mean.clone(), &count);
        let mut factor = s
            .factor(s.target(mean_hat, sq_mean_hat), norm)
            .mask_fill(invalid, 1.0);
        if skip {
            factor = factor.mask_fill(not_finite.clone(), 0.0);
        }
        let grad = grad * factor.unsqueeze::<D>();
        let state = GradientStabilizerState {
            count,
            norm_mean: mean,
            norm_sq_mean: sq_mean,
            inner: old.inner,
        };
        (grad, state, skip.then_some(not_finite))
    }

    /// On flex: the norm and the averages read where they lie, the step's factor and the new
    /// averages computed on the CPU; `None` on other backends.
    #[cfg(feature = "flex")]
    fn stabilize_on_host<const D: usize, S: RecordState + Clone>(
        &self,
        grad: &Tensor<D>,
        old: &GradientStabilizerState<S>,
    ) -> Option<HostStep> {
        use crate::engine::flex::{norm, single_value};
        let count = single_value(&old.count)?;
        let mean = single_value(&old.norm_mean)?;
        let sq_mean = single_value(&old.norm_sq_mean)?;
        let n = norm(grad)?;
        // The norm as the tensor path sees it: ∞ where its squares summed in f32 overflow,
        // else rounded to f32.
        let n = if n * n > f64::from(f32::MAX) {
            f64::INFINITY
        } else {
            f64::from(n as f32)
        };
        let kept = HostStep {
            factor: 1.0,
            count,
            mean,
            sq_mean,
            norm_finite: n.is_finite(),
        };
        if !(n.is_finite() && n > 0.0) {
            return Some(kept);
        }
        let s = &self.stabilizer;
        let count = count + 1.0;
        let (mean, sq_mean) = s.averages(mean, sq_mean, n);
        let (mean_hat, sq_mean_hat) = s.debiased_host(mean, sq_mean, count);
        Some(HostStep {
            factor: s.factor(s.target(mean_hat, sq_mean_hat), n),
            count,
            mean,
            sq_mean,
            ..kept
        })
    }
}

/// One step's stabilizer decided on the host (flex): the factor on the gradient, the new `t`,
/// `μ` and `ν`, and whether the norm, as f32 sees it, is finite.
#[cfg(feature = "flex")]
struct HostStep {
    factor: f64,
    count: f64,
    mean: f64,
    sq_mean: f64,
    norm_finite: bool,
}

impl<S: RecordState + Clone> GradientStabilizerState<S> {
    /// The state before the first step: zero averages and count, on `device`.
    fn zeros(device: &Device) -> Self {
        let zero = Tensor::zeros([1], device);
        Self {
            count: zero.clone(),
            norm_mean: zero.clone(),
            norm_sq_mean: zero,
            inner: None,
        }
    }

    /// The state with the count and averages given on the host (the flex path).
    #[cfg(feature = "flex")]
    fn with_scalars(self, count: f64, mean: f64, sq_mean: f64) -> Self {
        let device = self.count.device();
        let scalar = |x: f64| Tensor::from_data([x as f32], &device);
        Self {
            count: scalar(count),
            norm_mean: scalar(mean),
            norm_sq_mean: scalar(sq_mean),
            inner: self.inner,
        }
    }
}

impl<O: Optimizer> Optimizer for GradientStabilizer<O> {
    type State<const D: usize> = GradientStabilizerState<O::State<D>>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        // Under `Skip` the frame replaces a non-finite gradient by zeros, whose norm is not
        // valid: the averages stay, and the inner optimizer never sees the NaN.
        framed_wrapper_step(
            lr,
            self.non_finite,
            param,
            grad,
            state,
            |param, grad, state| {
                let old = state.unwrap_or_else(|| GradientStabilizerState::zeros(&param.device()));
                let (grad, mut next, overflow) = self.stabilize(grad, old);
                let checkpoint = overflow.map(|bad| Checkpoint::with_flag(bad, &param));
                let (param, inner) = self.inner.step(lr, param, grad, next.inner.take());
                next.inner = inner;
                let param = match &checkpoint {
                    Some(checkpoint) => checkpoint.param(param),
                    None => param,
                };
                (param, Some(next))
            },
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        GradientStabilizerState {
            count: state.count.to_device(device),
            norm_mean: state.norm_mean.to_device(device),
            norm_sq_mean: state.norm_sq_mean.to_device(device),
            inner: state.inner.map(|s| O::to_device(s, device)),
        }
    }
}
