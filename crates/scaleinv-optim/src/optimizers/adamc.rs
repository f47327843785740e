//! AdamC: AdamW whose weights that feed a normalization layer are decayed in proportion to
//! `η_t² / η_max`, so that a decaying schedule does not make the gradient norm climb at the
//! end of training. See [`AdamC`].

use burn::config::Config;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::{Module, ParamId};
use burn::optim::{LearningRate, ModuleOptimizer, RecordState};
use burn::tensor::{Device, Tensor};

use crate::diagnostics::probe::{Invariance, ProbeReport};
use crate::engine::dispatch::{
    StateTensors, StepOptions, StepPolicy, TwoPaths, step_setters, two_paths_optimizer,
};
use crate::engine::non_finite::{Checkpoint, Revert};
use crate::error::{ConfigError, Range, check};
use crate::model::channel_axes::grouped;
use crate::model::norm_affine::feeds_normalization;
use crate::model::params::{self, ParamInfo};
use crate::optimizers::constructors::{OptimizerConfig, constructors, or_panic};
use crate::rules::adam::Adam;
use crate::rules::adam::tensor::MomentState;
use crate::rules::decay::corrected_scale;
use crate::rules::decay::tensor::decay;

/// Configuration of [`AdamC`], with the defaults of its reference (`pytorch_optimizer`
/// 4.1.0 `AdamC`): β (0.9, 0.999), ε 1e-8, no weight decay (set
/// [`weight_decay`](Self::weight_decay): without it AdamC is Adam).
///
/// Which weights are "normalized" (feed a normalization layer) is a property of the model, not
/// of one tensor: [`init_from_probe`](Self::init_from_probe) takes it from a
/// [`ScaleProbe`](crate::ScaleProbe)'s verdicts (the recommended route),
/// [`init_for`](Self::init_for) from the layer types (see
/// [`normalized_paths`](Self::normalized_paths)); both apply the overrides
/// [`normalized`](Self::normalized) and [`not_normalized`](Self::not_normalized).
#[derive(Config, Debug)]
pub struct AdamCConfig {
    /// β1 of the first moment.
    #[config(default = 0.9)]
    pub beta_1: f64,
    /// β2 of the second moment.
    #[config(default = 0.999)]
    pub beta_2: f64,
    /// ε of the denominator `(√v + ε) / √(1 − β2^t)` (added before the bias correction, as in
    /// the reference; torch's Adam adds it after).
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// Decoupled weight decay λ: `p ← p·(1 − s·λ)`, `s = η_t²/η_max` on normalized weights and
    /// `s = η_t` elsewhere.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// The schedule's peak learning rate `η_max` (`max_lr` in the reference). `None`: the
    /// largest learning rate seen so far by each parameter, kept in the record (while it is
    /// 0, normalized weights are not decayed).
    pub peak_lr: Option<f64>,
    /// Module paths taken as normalized whatever the rule or probe says (a path matches the
    /// parameter itself or everything under it).
    #[config(default = "Vec::new()")]
    pub normalized: Vec<String>,
    /// Module paths taken as not normalized whatever the rule or probe says.
    #[config(default = "Vec::new()")]
    pub not_normalized: Vec<String>,
    /// Fused path (on flex: one pass over memory, after a read of the gradient for the
    /// non-finite test), non-finite policy, gradient clipping.
    #[config(default = "StepOptions::new()")]
    pub step: StepOptions,
}

step_setters!(AdamCConfig);
constructors!(AdamCConfig => AdamC: init_for);

/// AdamC (Defazio et al., *Why Gradients Rapidly Increase Near the End of Training*, 2025,
/// [arXiv:2506.02285](https://arxiv.org/abs/2506.02285); reference `pytorch_optimizer` 4.1.0).
///
/// On a weight followed by a normalization layer the loss does not depend on the weight's
/// norm, and with decoupled decay the norm settles where decay and gradient balance, at an
/// equilibrium that follows `η_t`; when the schedule takes `η_t` to zero the balance breaks and
/// the gradient norm climbs. Decaying those weights with `λ·η_t²/η_max` keeps the balance
/// independent of the schedule. Per parameter `p` with gradient `g` at learning rate `η_t`:
///
/// ```text
/// s = η_t² / η_max   (normalized)      s = η_t   (elsewhere)
/// p ← p · (1 − s·λ)                              decoupled decay, before the moments
/// t ← t + 1
/// m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
/// p ← p − η_t · (m / (1 − β1^t)) / ((√v + ε) / √(1 − β2^t))
/// ```
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
/// use burn::optim::GradientsParams;
/// use scaleinv_optim::AdamCConfig;
///
/// #[derive(Module, Debug)]
/// struct Block {
///     fc: Linear,
///     norm: LayerNorm,
/// }
///
/// # #[cfg(feature = "flex")] {
/// let device = Device::flex().autodiff();
/// let model = Block {
///     fc: LinearConfig::new(4, 8).init(&device),
///     norm: LayerNormConfig::new(8).init(&device),
/// };
/// let config = AdamCConfig::new().with_weight_decay(0.1).with_peak_lr(Some(1e-3));
/// // `fc.weight` feeds the LayerNorm: it gets the corrected decay.
/// assert_eq!(config.normalized_paths(&model).unwrap(), ["fc.weight"]);
/// let mut optim = config.init_for(&model);
///
/// let x = Tensor::<2>::ones([2, 4], &device);
/// let loss = model.norm.forward(model.fc.forward(x)).square().mean();
/// let grads = GradientsParams::from_grads(loss.backward(), &model);
/// let model = optim.step(1e-3, model, grads);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AdamC {
    adam: Adam,
    weight_decay: f64,
    peak_lr: Option<f64>,
    normalized: bool,
    policy: StepPolicy,
}

/// AdamC's state for one parameter.
#[derive(RecordState, Clone, Debug)]
pub struct AdamCState<const D: usize> {
    /// Adam's moments and step count.
    pub moments: MomentState<D>,
    /// The largest learning rate this parameter has seen, this step's included (`η_max` when
    /// [`AdamCConfig::peak_lr`] is `None`).
    pub peak_lr: f64,
}

impl<const D: usize> AdamCState<D> {
    /// Moves the moments to `device`.
    pub fn to_device(self, device: &Device) -> Self {
        Self {
            moments: self.moments.to_device(device),
            peak_lr: self.peak_lr,
        }
    }
}

impl AdamCConfig {
    /// Checks every hyperparameter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const C: &str = "AdamCConfig";
        check(C, "beta_1", self.beta_1, Range::UnitHalfOpen)?;
        check(C, "beta_2", self.beta_2, Range::UnitHalfOpen)?;
        check(C, "epsilon", self.epsilon, Range::Epsilon)?;
        check(C, "weight_decay", self.weight_decay, Range::NonNegative)?;
        if let Some(peak) = self.peak_lr {
            check(C, "peak_lr", peak, Range::Positive)?;
        }
        if self
            .normalized
            .iter()
            .any(|path| self.not_normalized.contains(path))
        {
            return Err(ConfigError::Conflict {
                config: C,
                reason: "a path is listed in both normalized and not_normalized",
            });
        }
        self.step.validate_in(C)
    }

    /// The validated per-tensor optimizer for a normalized weight (`true`: corrected decay)
    /// or any other tensor (`false`: AdamW's decay), for
    /// [`ModuleOptimizer::with_group`].
    pub fn try_build(&self, normalized: bool) -> Result<AdamC, ConfigError> {
        self.validate()?;
        Ok(self.optimizer(normalized))
    }

    /// Like [`try_build`](Self::try_build); panics with the validation error.
    pub fn build(&self, normalized: bool) -> AdamC {
        or_panic(self.try_build(normalized))
    }

    /// The paths of `model`'s parameters that [`init_for`](Self::init_for) decays as
    /// normalized: a `weight` of rank ≥ 2 whose layer is followed, as the next layer with
    /// parameters of the same parent module, by a normalization layer (LayerNorm, RmsNorm,
    /// GroupNorm, BatchNorm, InstanceNorm), the overrides applied. Fields must be declared in
    /// forward order for the rule to see it; [`init_from_probe`](Self::init_from_probe)
    /// measures instead. Fails on an override path that names no parameter.
    pub fn normalized_paths<M: Module>(&self, model: &M) -> Result<Vec<String>, ConfigError> {
        Ok(self
            .normalized_params(model)?
            .into_iter()
            .map(|p| p.path)
            .collect())
    }

    /// A [`ModuleOptimizer`] whose normalized weights are those a
    /// [`ScaleProbe`](crate::ScaleProbe) found channel- or layer-invariant, the overrides applied; every
    /// other parameter gets AdamW's decay. Fails on an invalid config or an override path
    /// the report does not have.
    pub fn try_init_from_probe(
        &self,
        report: &ProbeReport,
    ) -> Result<ModuleOptimizer, ConfigError> {
        self.validate()?;
        let paths: Vec<&str> = report.entries.iter().map(|e| e.path.as_str()).collect();
        self.check_overrides(&paths)?;
        let ids = report
            .entries
            .iter()
            .filter(|e| {
                let found = matches!(e.invariance, Invariance::Channel | Invariance::Layer);
                self.overridden(&e.path).unwrap_or(found)
            })
            .map(|e| e.id)
            .collect();
        Ok(self.grouped(ids))
    }

    /// Like [`try_init_from_probe`](Self::try_init_from_probe); panics with the error.
    pub fn init_from_probe(&self, report: &ProbeReport) -> ModuleOptimizer {
        or_panic(self.try_init_from_probe(report))
    }

    fn optimizer(&self, normalized: bool) -> AdamC {
        AdamC {
            adam: Adam {
                beta_1: self.beta_1,
                beta_2: self.beta_2,
                epsilon: self.epsilon,
            },
            weight_decay: self.weight_decay,
            peak_lr: self.peak_lr,
            normalized,
            policy: self.step.policy(),
        }
    }

    /// The module optimizer: AdamW's decay for every parameter, the corrected decay for `ids`.
    fn grouped(&self, ids: Vec<ParamId>) -> ModuleOptimizer {
        let group = (!ids.is_empty()).then(|| (ids, self.optimizer(true)));
        let clipping = self.clipping().map(GradientClippingConfig::init);
        grouped(self.optimizer(false), group, clipping)
    }

    /// `Some(true)` / `Some(false)` when an override names `path` (or a module above it).
    fn overridden(&self, path: &str) -> Option<bool> {
        let under = |prefix: &String| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        };
        if self.not_normalized.iter().any(under) {
            Some(false)
        } else if self.normalized.iter().any(under) {
            Some(true)
        } else {
            None
        }
    }

    /// Every override must name at least one of `paths`.
    fn check_overrides(&self, paths: &[&str]) -> Result<(), ConfigError> {
        for prefix in self.normalized.iter().chain(&self.not_normalized) {
            let matches = |path: &&str| {
                path.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            };
            if !paths.iter().any(matches) {
                return Err(ConfigError::UnknownParameter {
                    path: prefix.clone(),
                });
            }
        }
        Ok(())
    }

    fn normalized_params<M: Module>(&self, model: &M) -> Result<Vec<ParamInfo>, ConfigError> {
        let params = params::walk(model, false);
        let paths: Vec<&str> = params.iter().map(|p| p.path.as_str()).collect();
        self.check_overrides(&paths)?;
        let rule = feeds_normalization(&params);
        Ok(params
            .iter()
            .zip(rule)
            .filter(|(p, found)| self.overridden(&p.path).unwrap_or(*found))
            .map(|(p, _)| p.clone())
            .collect())
    }
}

impl OptimizerConfig for AdamCConfig {
    type Optim = AdamC;

    /// The optimizer for tensors that are not normalized.
    fn for_axis(&self, _: usize) -> AdamC {
        self.optimizer(false)
    }

    /// One group for the normalized weights (see
    /// [`normalized_paths`](AdamCConfig::normalized_paths)), AdamW's decay elsewhere.
    fn for_model<M: Module>(&self, model: &M) -> Result<ModuleOptimizer, ConfigError> {
        self.validate()?;
        let ids = self
            .normalized_params(model)?
            .into_iter()
            .map(|p| p.id)
            .collect();
        Ok(self.grouped(ids))
    }
}

impl AdamC {
    /// Whether this optimizer decays as for a normalized weight (`λ·η_t²/η_max`).
    pub fn is_normalized(&self) -> bool {
        self.normalized
    }

    /// The fixed peak learning rate, or `None` for the largest seen so far.
    pub fn peak_lr(&self) -> Option<f64> {
        self.peak_lr
    }

    /// The step's hyperparameters for both paths: Adam with the reference's ε placement at
    /// step `time`, the decay λ' such that the decay rate is `η_t·λ'`, and the largest learning
    /// rate seen after this step.
    fn step_at(&self, lr: LearningRate, time: usize, old_peak: f64) -> (Adam, f64, f64) {
        let seen = old_peak.max(lr);
        let scale = if self.normalized {
            corrected_scale(lr, self.peak_lr.unwrap_or(seen))
        } else {
            1.0
        };
        let adam = self.adam.with_epsilon_before_correction(time);
        (adam, self.weight_decay * scale, seen)
    }
}

/// The moments and the largest learning rate before a step (`None`, 0 at first).
fn split<const D: usize>(state: Option<AdamCState<D>>) -> (Option<MomentState<D>>, f64) {
    match state {
        Some(s) => (Some(s.moments), s.peak_lr),
        None => (None, 0.0),
    }
}

impl TwoPaths for AdamC {
    fn policy(&self) -> &StepPolicy {
        &self.policy
    }

    #[cfg(feature = "flex")]
    fn fuses_param<const D: usize>(&self, param: &Tensor<D>) -> bool {
        self.policy.fuses(param, None, false)
    }

    /// The step as the CubeCL kernels (width-scaled AdamW's: one launch, after the
    /// non-finite test under `Skip`), on the same formulas.
    #[cfg(feature = "wgpu")]
    fn cube<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamCState<D>>,
        on_non_finite: crate::engine::cube::OnNonFinite,
    ) -> crate::engine::cube::CubeStep<D, AdamCState<D>> {
        if !self.policy.fuses_on_cube(&param, false) {
            return Err(Box::new((param, grad, state)));
        }
        let (moments, old_peak) = split(state);
        let mut peak_lr = old_peak;
        let scalars = |time| {
            let (adam, weight_decay, seen) = self.step_at(lr, time, old_peak);
            peak_lr = seen;
            crate::rules::adam::cube::AdamScalars::new(
                adam,
                time,
                lr,
                weight_decay,
                self.policy.skips(),
            )
            .on_non_finite(on_non_finite)
        };
        match MomentState::on_cube(param, grad, moments, scalars) {
            Ok((param, moments)) => {
                let state = moments.map(|moments| AdamCState { moments, peak_lr });
                Ok((param, state))
            }
            Err(inputs) => {
                let (param, grad, moments) = *inputs;
                let state = moments.map(|moments| AdamCState {
                    moments,
                    peak_lr: old_peak,
                });
                Err(Box::new((param, grad, state)))
            }
        }
    }

    /// The step as tensor operations (any backend).
    fn tensor_ops<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamCState<D>>,
    ) -> (Tensor<D>, Option<AdamCState<D>>) {
        let (moments, old_peak) = split(state);
        let time = moments.as_ref().map_or(0, |m| m.time) + 1;
        let (adam, weight_decay, peak_lr) = self.step_at(lr, time, old_peak);
        let param = decay(param, lr * weight_decay);
        let moments = adam.update(&grad, moments);
        let param = param - adam.update_step(&moments, None, lr);
        (param, Some(AdamCState { moments, peak_lr }))
    }

    /// The step as the fused flex loops (`rules::adam::flex`, no projection), on the same
    /// formulas.
    #[cfg(feature = "flex")]
    fn fused<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamCState<D>>,
        measure: bool,
    ) -> crate::engine::flex::Fused<D, AdamCState<D>> {
        use crate::engine::flex::passes::Frame;
        use crate::rules::adam::flex::{AdamRule, step};
        let (moments, old_peak) = split(state);
        let time = MomentState::next_time(&moments);
        let (adam, weight_decay, peak_lr) = self.step_at(lr, time, old_peak);
        let (bc1, bc2) = adam.bias_corrections(time);
        let frame = Frame::new(self.policy.skips(), measure, lr * weight_decay, lr / bc1);
        let rule = AdamRule {
            adam,
            bc2,
            nesterov: false,
        };
        let fused = step(&frame, rule, None, param, grad, moments);
        // A step skipped under `measure` gives its state back as it came.
        let skipped = measure && !fused.outcome.written();
        let peak_lr = if skipped { old_peak } else { peak_lr };
        crate::engine::flex::Fused {
            param: fused.param,
            state: fused.state.map(|moments| AdamCState { moments, peak_lr }),
            outcome: fused.outcome,
        }
    }
}

two_paths_optimizer!(AdamC => AdamCState);

impl<const D: usize> StateTensors<D> for AdamCState<D> {
    fn tensors(&self) -> impl Iterator<Item = &Tensor<D>> {
        self.moments.tensors().into_iter()
    }
}

impl<const D: usize> Revert<D> for AdamCState<D> {
    fn revert(self, checkpoint: &Checkpoint<D>, old: Option<Self>) -> Self {
        Self {
            moments: self.moments.revert(checkpoint, old.map(|old| old.moments)),
            peak_lr: self.peak_lr,
        }
    }
}
