//! Stable-SPAM: Adam behind spike-aware clipping, gradient-norm normalisation and periodic
//! momentum resets. See [`StableSpam`].

use core::f64::consts::PI;

use burn::config::Config;
use burn::module::Module;
use burn::optim::{LearningRate, ModuleOptimizer, RecordState};
use burn::tensor::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::engine::dispatch::{
    StateTensors, StepOptions, StepPolicy, TwoPaths, step_setters, two_paths_optimizer,
};
use crate::engine::non_finite::{Checkpoint, NonFinitePolicy, Revert};
use crate::error::{ConfigError, Range, check};
use crate::optimizers::constructors::{OptimizerConfig, constructors};
use crate::rules::adam::Adam;
use crate::rules::adam::tensor::MomentState;
use crate::rules::decay::tensor::decay;
use crate::rules::spike::{self, SpikeStep};

/// When a momentum reset (MoRet) takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ResetMode {
    /// As the authors' code: the reset step still updates the old moments, bias-corrected as if
    /// it were step 1, and the zeroed moments are first used on the next step. The default,
    /// which the golden trajectories follow.
    #[default]
    Reference,
    /// The moments are zeroed before the reset step's update, which then starts from zero
    /// moments at step 1 (as in `pytorch_optimizer`).
    Clean,
}

/// Configuration of [`StableSpam`], with the reference's defaults.
///
/// The learning rate is not part of the config: Burn passes it to every step (reference
/// default 1e-3; the authors train 4-bit LLMs with 4e-4).
#[derive(Config, Debug)]
pub struct StableSpamConfig {
    /// β1 of Adam's first moment (scaled by the cosine multiplier when
    /// [`total_steps`](Self::total_steps) is set).
    #[config(default = 0.9)]
    pub beta_1: f64,
    /// β2 of Adam's second moment.
    #[config(default = 0.999)]
    pub beta_2: f64,
    /// ε of Adam's denominator and of AdaGN's ratio.
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// Decoupled weight decay λ, applied first: `p ← p·(1 − η·λ)`.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// AMSGrad: divide by the running maximum of the second moment.
    #[config(default = false)]
    pub amsgrad: bool,
    /// γ1, decay of AdaGN's average of the gradient norm (0.85 in the authors' BF16 runs).
    #[config(default = 0.7)]
    pub gamma_1: f64,
    /// γ2, decay of AdaGN's average of the squared gradient norm.
    #[config(default = 0.9)]
    pub gamma_2: f64,
    /// θ, decay of AdaClip's average of `max|g|` (`gamma3` in the reference code).
    #[config(default = 0.999)]
    pub theta: f64,
    /// ΔT: Adam's moments are reset every `reset_interval` steps; 0 disables the reset
    /// (`update_proj_gap` in the reference code).
    #[config(default = 1000)]
    pub reset_interval: usize,
    /// When a reset takes effect.
    #[config(default = "ResetMode::Reference")]
    pub reset_mode: ResetMode,
    /// Length `T` of the cosine decay of β1 and γ1 (`total_T` in the reference code); `None`
    /// keeps them constant. The authors set it to the number of training steps.
    pub total_steps: Option<usize>,
    /// Floor of the cosine multiplier of β1 and γ1 (`eta_min` in the reference code).
    #[config(default = 0.5)]
    pub eta_min: f64,
    /// Fused path (on flex: two reads of the gradient, then one pass for the moments and the
    /// parameter), non-finite policy, gradient clipping (off in the authors' runs).
    #[config(default = "StepOptions::new()")]
    pub step: StepOptions,
}

step_setters!(StableSpamConfig);
constructors!(StableSpamConfig => StableSpam: build, init, init_for);

/// Stable-SPAM: Adam behind spike-aware clipping (AdaClip), gradient-norm normalisation
/// (AdaGN) and periodic momentum resets (MoRet).
///
/// Huang et al., *Stable-SPAM: How to Train in 4-Bit More Stably than 16-Bit Adam*, 2025,
/// [arXiv:2502.17055](https://arxiv.org/abs/2502.17055). Per parameter `p` with gradient `g`,
/// all statistics per tensor, `t` the steps since the last reset and `k` all steps:
///
/// ```text
/// s = η_min + (1 − η_min)·(1 + cos(π·k / (T + 1))) / 2      (1 without total_steps)
/// p ← p·(1 − η·λ)                                           decoupled decay first
/// t ← t + 1
/// M ← θ·M + (1 − θ)·max|g| ;  M̂ = M / (1 − θ^t)            AdaClip
/// g_i ← g_i · M̂ / max|g|   where |g_i| > M̂
/// n = ‖g‖ ;  μ ← γ1s·μ + (1 − γ1s)·n ;  ν ← γ2·ν + (1 − γ2)·n²      AdaGN
/// g ← g · (μ̂ / (√ν̂ + ε)) / n   if n > 0,   μ̂ = μ/(1 − (γ1s)^t), ν̂ = ν/(1 − γ2^t)
/// if k mod ΔT = 0: m, v ← 0 and t ← 1                      MoRet (timing: ResetMode)
/// m ← β1s·m + (1 − β1s)·g ;  v ← β2·v + (1 − β2)·g²         (AMSGrad: v̄ = max(v̄, v))
/// p ← p − η / (1 − (β1s)^t) · m / (√v / √(1 − β2^t) + ε)
/// ```
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::optim::GradientsParams;
/// use scaleinv_optim::StableSpamConfig;
///
/// # #[cfg(feature = "flex")] {
/// let device = Device::flex().autodiff();
/// let model: Linear = LinearConfig::new(4, 3).init(&device);
/// // The authors' 4-bit settings: reset every 500 steps, cosine β1/γ1 over the run.
/// let mut optim = StableSpamConfig::new()
///     .with_reset_interval(500)
///     .with_total_steps(Some(10_000))
///     .init();
///
/// let loss = model.forward(Tensor::<2>::ones([8, 4], &device)).square().mean();
/// let grads = GradientsParams::from_grads(loss.backward(), &model);
/// let model = optim.step(4e-4, model, grads);
/// # }
/// ```
///
/// The reset leaves the AdaClip and AdaGN averages alone; only their bias-correction counter
/// `t` restarts. The reference counts `k` once per optimizer call for all parameters; here
/// each parameter counts its own steps, which is the same count when every parameter gets a
/// gradient at every step (as in the usual training loop).
#[derive(Debug, Clone)]
pub struct StableSpam {
    beta_1: f64,
    beta_2: f64,
    epsilon: f64,
    weight_decay: f64,
    amsgrad: bool,
    gamma_1: f64,
    gamma_2: f64,
    theta: f64,
    reset_interval: usize,
    reset_mode: ResetMode,
    total_steps: Option<usize>,
    eta_min: f64,
    policy: StepPolicy,
}

/// Stable-SPAM's state for one parameter.
#[derive(RecordState, Clone, Debug)]
pub struct StableSpamState<const D: usize> {
    /// Steps taken by this parameter, never reset (`k`).
    pub global_step: usize,
    /// Adam's moments; their `time` is the step count since the last reset (`t`).
    pub moments: MomentState<D>,
    /// Running maximum of the second moment (AMSGrad only).
    pub max_moment_2: Option<Tensor<D>>,
    /// AdaClip's average of `max|g|` (`M`), shape `[1]`.
    pub clip_threshold: Tensor<1>,
    /// AdaGN's average of the gradient norm (`μ`), shape `[1]`.
    pub norm_mean: Tensor<1>,
    /// AdaGN's average of the squared gradient norm (`ν`), shape `[1]`.
    pub norm_sq_mean: Tensor<1>,
}

impl<const D: usize> StableSpamState<D> {
    /// Moves every tensor to `device`.
    pub fn to_device(self, device: &Device) -> Self {
        Self {
            global_step: self.global_step,
            moments: self.moments.to_device(device),
            max_moment_2: self.max_moment_2.map(|t| t.to_device(device)),
            clip_threshold: self.clip_threshold.to_device(device),
            norm_mean: self.norm_mean.to_device(device),
            norm_sq_mean: self.norm_sq_mean.to_device(device),
        }
    }

    /// The state before the first step: zero moments and averages.
    pub(crate) fn zeros(param: &Tensor<D>, amsgrad: bool) -> Self {
        let device = param.device();
        let scalar = Tensor::zeros([1], &device);
        // An f16/bf16 parameter keeps its state in f32, as the tensor ops do.
        let dtype = match param.dtype() {
            DType::F16 | DType::BF16 => DType::F32,
            dtype => dtype,
        };
        let zeros = || Tensor::zeros(param.shape(), (&device, dtype));
        Self {
            global_step: 0,
            moments: MomentState {
                time: 0,
                moment_1: zeros(),
                moment_2: zeros(),
            },
            max_moment_2: amsgrad.then(zeros),
            clip_threshold: scalar.clone(),
            norm_mean: scalar.clone(),
            norm_sq_mean: scalar,
        }
    }
}

impl StableSpamConfig {
    /// Checks every hyperparameter against its accepted range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const C: &str = "StableSpamConfig";
        check(C, "beta_1", self.beta_1, Range::UnitHalfOpen)?;
        check(C, "beta_2", self.beta_2, Range::UnitHalfOpen)?;
        check(C, "epsilon", self.epsilon, Range::Epsilon)?;
        check(C, "weight_decay", self.weight_decay, Range::NonNegative)?;
        check(C, "gamma_1", self.gamma_1, Range::UnitOpen)?;
        check(C, "gamma_2", self.gamma_2, Range::UnitOpen)?;
        check(C, "theta", self.theta, Range::UnitOpen)?;
        check(C, "eta_min", self.eta_min, Range::UnitClosed)?;
        if let Some(total) = self.total_steps {
            // `None` turns the cosine decay off; a length must be at least one step.
            check(C, "total_steps", total as f64, Range::AtLeastOne)?;
        }
        self.step.validate_in(C)
    }
}

impl OptimizerConfig for StableSpamConfig {
    type Optim = StableSpam;

    fn for_axis(&self, _: usize) -> StableSpam {
        StableSpam {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            amsgrad: self.amsgrad,
            gamma_1: self.gamma_1,
            gamma_2: self.gamma_2,
            theta: self.theta,
            reset_interval: self.reset_interval,
            reset_mode: self.reset_mode,
            total_steps: self.total_steps,
            eta_min: self.eta_min,
            policy: self.step.policy(),
        }
    }

    /// Stable-SPAM does not project: one optimizer for every parameter.
    fn for_model<M: Module>(&self, _: &M) -> Result<ModuleOptimizer, ConfigError> {
        self.single_group()
    }
}

impl StableSpam {
    /// The cosine multiplier `s` of β1 and γ1 at global step `k` (1-based). As in the
    /// reference it is not clamped past `T + 1`: it rises again, with period `2(T + 1)`.
    pub fn momentum_scale(&self, k: usize) -> f64 {
        match self.total_steps {
            None => 1.0,
            Some(t) => {
                let cosine = (1.0 + (PI * k as f64 / (t as f64 + 1.0)).cos()) / 2.0;
                self.eta_min + (1.0 - self.eta_min) * cosine
            }
        }
    }

    /// The hyperparameters of the step after `old`, for both paths: the global step `k`, the
    /// cosine multiplier on β1 and γ1, the bias-correction counts and the reset.
    fn step_at<const D: usize>(&self, old: &StableSpamState<D>, lr: LearningRate) -> SpikeStep {
        let k = old.global_step + 1;
        let s = self.momentum_scale(k);
        let reset = self.resets_at(k);
        let time = old.moments.time + 1;
        SpikeStep {
            global_step: k,
            adam: Adam {
                beta_1: self.beta_1 * s,
                beta_2: self.beta_2,
                epsilon: self.epsilon,
            },
            weight_decay: self.weight_decay,
            gamma_1: self.gamma_1 * s,
            gamma_2: self.gamma_2,
            theta: self.theta,
            time,
            adam_time: if reset { 1 } else { time },
            reset,
            clean_reset: self.reset_mode == ResetMode::Clean,
            skip_non_finite: self.policy.skips(),
            lr,
        }
    }

    /// Whether Adam's moments are reset at global step `k` (1-based).
    fn resets_at(&self, k: usize) -> bool {
        self.reset_interval != 0 && k.is_multiple_of(self.reset_interval)
    }
}

/// AdaClip: the elements above the threshold `limit` are scaled by `limit / max|g|`.
fn clip_spikes<const D: usize>(grad: Tensor<D>, max_abs: Tensor<1>, limit: Tensor<1>) -> Tensor<D> {
    let shape = grad.shape();
    let scale = spike::spike_scale(limit.clone(), max_abs);
    let limit = limit.unsqueeze::<D>();
    let spikes = grad.clone().abs().greater(limit.expand(shape.clone()));
    let scale = scale.unsqueeze::<D>().expand(shape);
    grad.clone().mask_where(spikes, grad * scale)
}

/// AdaGN: `g · target / n` when `n > 0`, `g` unchanged when `n = 0`.
fn rescale_norm<const D: usize>(grad: Tensor<D>, norm: Tensor<1>, target: Tensor<1>) -> Tensor<D> {
    let zero = norm.clone().lower_equal_elem(0.0);
    let factor = spike::rescale(target, norm).mask_fill(zero, 1.0);
    grad * factor.unsqueeze::<D>()
}

impl TwoPaths for StableSpam {
    fn policy(&self) -> &StepPolicy {
        &self.policy
    }

    /// Stable-SPAM tests its clipped gradient norm, which it computes anyway, and restores its
    /// state itself: the frame passes non-finite gradients through.
    fn frame_policy(&self) -> NonFinitePolicy {
        NonFinitePolicy::Propagate
    }

    #[cfg(feature = "flex")]
    fn fuses_param<const D: usize>(&self, param: &Tensor<D>) -> bool {
        self.policy.fuses(param, None, false)
    }

    /// One step as the CubeCL kernels (`rules::spike::cube`: the statistics by blocks and one
    /// cube, then one update), on the same formulas; the state (zeros before the first step)
    /// stays on the device.
    #[cfg(feature = "wgpu")]
    fn cube<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<StableSpamState<D>>,
        on_non_finite: crate::engine::cube::OnNonFinite,
    ) -> crate::engine::cube::CubeStep<D, StableSpamState<D>> {
        use crate::engine::cube::{on_cube, scalar_fits};
        use crate::rules::spike::cube::{SpikeScalars, spike_step};
        // A wrapper's zero-gradient step is the tensor ops' (the statistics of a zero
        // gradient are not the kernels').
        let zeroing = on_non_finite == crate::engine::cube::OnNonFinite::ZeroGradient;
        let fits = !zeroing
            && self.policy.fuses_on_cube(&param, false)
            && crate::engine::fits::fit(
                &param,
                &grad,
                state.iter().flat_map(|s| s.tensors()),
                on_cube,
            )
            && state.iter().flat_map(|s| s.scalars()).all(scalar_fits);
        if !fits {
            return Err(Box::new((param, grad, state)));
        }
        let old = state.unwrap_or_else(|| StableSpamState::zeros(&param, self.amsgrad));
        let step = self.step_at(&old, lr);
        let scalars = SpikeScalars::new(&step, self.amsgrad);
        // Without AMSGrad the kernels read no maximum: the gradient stands in (read-only, so
        // that the moments' buffers stay unshared and are written in place).
        let max_v = old.max_moment_2.unwrap_or_else(|| grad.clone());
        let ([param, m, v, max_v], [clip_threshold, norm_mean, norm_sq_mean]) = spike_step(
            [
                param,
                grad,
                old.moments.moment_1,
                old.moments.moment_2,
                max_v,
            ],
            [old.clip_threshold, old.norm_mean, old.norm_sq_mean],
            scalars,
        );
        let moments = if step.reset && self.reset_mode == ResetMode::Reference {
            MomentState {
                time: 1,
                moment_1: m.zeros_like(),
                moment_2: v.zeros_like(),
            }
        } else {
            MomentState {
                time: step.adam_time,
                moment_1: m,
                moment_2: v,
            }
        };
        let next = StableSpamState {
            global_step: step.global_step,
            moments,
            max_moment_2: self.amsgrad.then_some(max_v),
            clip_threshold,
            norm_mean,
            norm_sq_mean,
        };
        Ok((param, Some(next)))
    }

    /// One step as tensor operations, in f32 (the frame's checks done).
    fn tensor_ops<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<StableSpamState<D>>,
    ) -> (Tensor<D>, Option<StableSpamState<D>>) {
        let old = state.unwrap_or_else(|| StableSpamState::zeros(&param, self.amsgrad));
        let step = self.step_at(&old, lr);
        let t = step.time;
        let new_param = decay(param.clone(), lr * step.weight_decay);

        // AdaClip: clip the elements above the bias-corrected average of max|g|.
        let max_abs = grad.clone().max_abs();
        let (clip_threshold, limit) =
            spike::clip_limit(old.clip_threshold.clone(), max_abs.clone(), step.theta, t);
        let grad = clip_spikes(grad, max_abs, limit);

        // AdaGN: rescale the gradient to the ratio of the bias-corrected norm averages.
        let norm = grad.clone().square().sum().sqrt();
        let gamma_1 = step.gamma_1;
        let (norm_mean, norm_sq_mean) = spike::norm_averages(
            old.norm_mean.clone(),
            old.norm_sq_mean.clone(),
            norm.clone(),
            gamma_1,
            step.gamma_2,
        );
        let target = spike::target_norm(
            spike::bias_corrected(norm_mean.clone(), gamma_1, t),
            spike::bias_corrected(norm_sq_mean.clone(), step.gamma_2, t),
            step.adam.epsilon,
        );
        let grad = rescale_norm(grad, norm.clone(), target);

        // MoRet and Adam. `into` is what this step updates, `time` its bias-correction count.
        let reset = step.reset;
        let into = match (reset, self.reset_mode) {
            (false, _) => Some(old.moments.clone()),
            (true, ResetMode::Reference) => Some(MomentState {
                time: 0,
                ..old.moments.clone()
            }),
            (true, ResetMode::Clean) => None,
        };
        let adam = step.adam;
        let moments = adam.update(&grad, into);
        let max_moment_2 = old
            .max_moment_2
            .clone()
            .map(|max| max.max_pair(moments.moment_2.clone()));
        let new_param = new_param - adam.update_step(&moments, max_moment_2.clone(), lr);

        let mut next = StableSpamState {
            global_step: step.global_step,
            moments,
            max_moment_2,
            clip_threshold,
            norm_mean,
            norm_sq_mean,
        };
        let new_param = match self.policy.non_finite {
            NonFinitePolicy::Propagate => new_param,
            NonFinitePolicy::Skip => {
                let checkpoint = Checkpoint::with_flag(norm.is_finite().bool_not(), &param);
                next = next.revert(&checkpoint, Some(old));
                checkpoint.param(new_param)
            }
        };
        if reset && self.reset_mode == ResetMode::Reference {
            next.moments = MomentState {
                time: 1,
                moment_1: next.moments.moment_1.zeros_like(),
                moment_2: next.moments.moment_2.zeros_like(),
            };
        }
        (new_param, Some(next))
    }

    /// One step as the fused flex loops (`rules::spike::flex`), on the same formulas: the
    /// state (zeros before the first step) becomes buffers and comes back.
    #[cfg(feature = "flex")]
    fn fused<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<StableSpamState<D>>,
        measure: bool,
    ) -> crate::engine::flex::Fused<D, StableSpamState<D>> {
        use crate::engine::flex::{Buffer, Target};
        use crate::rules::spike::flex::{SpikeScalars, SpikeState};
        let first = state.is_none();
        let old = state.unwrap_or_else(|| StableSpamState::zeros(&param, self.amsgrad));
        let (old_global_step, old_time) = (old.global_step, old.moments.time);
        let pass = self.step_at(&old, lr);
        let mut p = Target::new(param);
        let g = Buffer::new(grad);
        let mut m = Buffer::new(old.moments.moment_1);
        let mut v = Buffer::new(old.moments.moment_2);
        let mut max_v = old.max_moment_2.map(Buffer::new);
        let mut clip = Buffer::new(old.clip_threshold);
        let mut norm_mean = Buffer::new(old.norm_mean);
        let mut norm_sq_mean = Buffer::new(old.norm_sq_mean);
        let scalars = SpikeScalars {
            clip_threshold: &mut clip.get_mut()[0],
            norm_mean: &mut norm_mean.get_mut()[0],
            norm_sq_mean: &mut norm_sq_mean.get_mut()[0],
        };
        let buffers = SpikeState {
            m: m.get_mut(),
            v: v.get_mut(),
            max_v: max_v.as_mut().map(Buffer::get_mut),
            scalars,
        };
        let outcome = pass.run(&mut p, &g, buffers, measure);
        // A step skipped under `measure` wrote nothing: its state goes back as it came.
        let given_back = measure && !outcome.written();
        let (global_step, time) = if given_back {
            (old_global_step, old_time)
        } else {
            (pass.global_step, pass.adam_time)
        };
        let state = StableSpamState {
            global_step,
            moments: MomentState {
                time,
                moment_1: m.tensor(),
                moment_2: v.tensor(),
            },
            max_moment_2: max_v.map(Buffer::tensor),
            clip_threshold: clip.tensor(),
            norm_mean: norm_mean.tensor(),
            norm_sq_mean: norm_sq_mean.tensor(),
        };
        crate::engine::flex::Fused {
            param: p.tensor(outcome),
            state: (!(given_back && first)).then_some(state),
            outcome,
        }
    }
}

two_paths_optimizer!(StableSpam => StableSpamState);

impl<const D: usize> StateTensors<D> for StableSpamState<D> {
    fn tensors(&self) -> impl Iterator<Item = &Tensor<D>> {
        self.moments.tensors().into_iter().chain(&self.max_moment_2)
    }

    fn scalars(&self) -> impl Iterator<Item = &Tensor<1>> {
        [&self.clip_threshold, &self.norm_mean, &self.norm_sq_mean].into_iter()
    }
}

impl<const D: usize> Revert<D> for StableSpamState<D> {
    fn revert(self, checkpoint: &Checkpoint<D>, old: Option<Self>) -> Self {
        let Some(old) = old else {
            // The step always starts from a state (zeros at first).
            return self;
        };
        let keep = |new: Tensor<1>, old: Tensor<1>| checkpoint.keep(new, old);
        Self {
            global_step: self.global_step,
            moments: self.moments.revert(checkpoint, Some(old.moments)),
            max_moment_2: self
                .max_moment_2
                .zip(old.max_moment_2)
                .map(|(new, old)| checkpoint.keep(new, old)),
            clip_threshold: keep(self.clip_threshold, old.clip_threshold),
            norm_mean: keep(self.norm_mean, old.norm_mean),
            norm_sq_mean: keep(self.norm_sq_mean, old.norm_sq_mean),
        }
    }
}
