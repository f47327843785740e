//! Normalize-and-Project: every projected weight is held at the norm it had before its first
//! step, over any base optimizer. See [`Nap`].

use burn::config::Config;
use burn::module::{Module, ParamGroup, ParamId};
use burn::optim::{LearningRate, ModuleOptimizer, Optimizer, RecordState};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::engine::non_finite::NonFinitePolicy;
use crate::engine::rows::{sum_all, sum_except};
#[cfg(any(feature = "flex", feature = "wgpu"))]
use crate::engine::step_frame::check_lr;
use crate::engine::step_frame::framed_wrapper_step;
use crate::error::{ConfigError, Range, check};
use crate::model::channel_axes::ChannelAxes;
use crate::model::norm_affine::{NormAffine, is_norm_affine, project_jointly};
use crate::model::params::{self, ParamInfo, read_back};
use crate::optimizers::constructors::wrapper_constructors;
#[cfg(any(feature = "flex", feature = "wgpu"))]
use crate::optimizers::fused_base;
use crate::rules::decay::tensor::decay;
use crate::rules::norm::factor;

/// Over which slices of a weight the norm is held fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NapScope {
    /// The whole tensor (Frobenius norm): the symmetry of a layer followed by LayerNorm or
    /// RMSNorm, which normalize across units. The default.
    #[default]
    Layer,
    /// Each output channel (row) on its own: exact for BatchNorm, over-constrained under
    /// LayerNorm.
    Row,
}

/// Configuration of [`Nap`]. The paper leaves several choices open (Lyle et al. 2024 give no
/// code); each is a field here, with the most faithful reading as the default.
#[derive(Config, Debug)]
pub struct NapConfig {
    /// Steps between projections (1: after every step, as in the paper).
    #[config(default = 1)]
    pub project_every: usize,
    /// Whole-tensor or per-row norms.
    #[config(default = "NapScope::Layer")]
    pub scope: NapScope,
    /// The output-channel axis for [`NapScope::Row`] when no model is given (`init_for`
    /// takes each weight's axis from its layer type, as [`ChannelAxes::infer`] does).
    #[config(default = 0)]
    pub channel_axis: usize,
    /// Tensors of rank ≥ `min_rank` are projected: by default the weight matrices and conv
    /// kernels, while biases and norm scales (rank 1) stay free.
    #[config(default = 2)]
    pub min_rank: usize,
    /// Floor of the current norm in the projection (guards 0/0 only; not in the paper).
    #[config(default = 1e-12)]
    pub epsilon: f64,
    /// What happens to the scale and offset of normalization layers (`init_for` only).
    #[config(default = "NormAffine::Free")]
    pub norm_affine: NormAffine,
    /// Module paths left to the base optimizer (`init_for` only; still inside NaP's step
    /// frame). A parameter is free when its path equals an entry or starts with an entry
    /// followed by `.`; e.g. `"head"` frees an output layer, which is not followed by a
    /// normalization and whose scale is the logits' scale. An entry that matches no parameter
    /// of the model is an error.
    #[config(default = "Vec::new()")]
    pub free: Vec<String>,
    /// What a step does when a gradient holds NaN or ±∞; under `Skip` the base optimizer
    /// steps on a zero gradient and the parameter is kept (see [`NonFinitePolicy::Skip`]).
    #[config(default = "NonFinitePolicy::Skip")]
    pub non_finite: NonFinitePolicy,
}

/// Normalize-and-Project (Lyle et al., *Normalization and effective learning rates in
/// reinforcement learning*, NeurIPS 2024, [arXiv:2407.01800](https://arxiv.org/abs/2407.01800))
/// around any per-tensor optimizer `O`: Burn's SGD, Adam, AdamW, Lion or this crate's.
///
/// With a normalization layer before every nonlinearity, the loss is invariant to the scale
/// of each weight `W` that feeds one, and its effective learning rate is `η / ‖W‖²` (SGD) or
/// `η / ‖W‖` (Adam): norm growth silently decays it. NaP fixes the norm, so the learning-rate
/// schedule `η_t` is the whole schedule. For a projected tensor with `ρ = ‖W⁽⁰⁾‖`, measured
/// before its first step:
///
/// ```text
/// W ← O.step(η_t, W, ∇W)                     base step; its state is left as it is
/// W ← W · ρ / max(‖W‖, ε)   every project_every steps   (per row for NapScope::Row)
/// ```
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::optim::{AdamConfig, GradientsParams};
/// use scaleinv_optim::NapConfig;
///
/// # #[cfg(feature = "flex")] {
/// let device = Device::flex().autodiff();
/// let model: Linear = LinearConfig::new(4, 3).init(&device);
/// let adam = AdamConfig::new().with_epsilon(1e-8).build();
/// // Projects the weight (rank 2) and leaves the bias free.
/// let mut optim = NapConfig::new().init_for(adam, &model);
///
/// let loss = model.forward(Tensor::<2>::ones([8, 4], &device)).square().mean();
/// let grads = GradientsParams::from_grads(loss.backward(), &model);
/// let model = optim.step(1e-2, model, grads);
/// # }
/// ```
///
/// The only read-back is on a tensor's first step: a zero initial norm cannot be projected,
/// and the step panics saying so (`init_for` reports it as an error before training).
#[derive(Debug, Clone)]
pub struct Nap<O> {
    inner: O,
    min_rank: usize,
    row_axis: Option<usize>,
    project_every: usize,
    epsilon: f64,
    scale_decay: f64,
    non_finite: NonFinitePolicy,
}

/// NaP's state for one parameter: the base optimizer's state and the radius.
#[derive(RecordState, Clone, Debug)]
pub struct NapState<const D: usize, S: RecordState + Clone> {
    /// Steps taken by this parameter.
    pub steps: usize,
    /// The norm the tensor is held at, `ρ`: shape `[1, …, 1]`, or one value per row (kept
    /// dimensions); `None` for a tensor that is not projected.
    pub radius: Option<Tensor<D>>,
    /// The base optimizer's state.
    pub inner: Option<S>,
}

wrapper_constructors!(NapConfig => Nap);

impl NapConfig {
    /// Checks every hyperparameter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const C: &str = "NapConfig";
        check(
            C,
            "project_every",
            self.project_every as f64,
            Range::AtLeastOne,
        )?;
        check(C, "epsilon", self.epsilon, Range::Epsilon)?;
        if let NormAffine::DecayScale { rate } = self.norm_affine {
            check(C, "norm_affine.rate", rate, Range::NonNegative)?;
        }
        Ok(())
    }

    /// The per-tensor wrapper, projecting every tensor of rank ≥
    /// [`min_rank`](Self::min_rank), for
    /// [`ModuleOptimizer::with_group`](burn::optim::ModuleOptimizer::with_group).
    pub fn try_wrap<O: Optimizer>(&self, inner: O) -> Result<Nap<O>, ConfigError> {
        self.validate()?;
        Ok(self.nap(inner, self.default_axis()))
    }

    /// A [`ModuleOptimizer`] applying [`wrap`](Self::wrap)`(inner)` to every parameter.
    /// [`norm_affine`](Self::norm_affine) and [`free`](Self::free) need the model: use
    /// [`init_for`](Self::init_for) when either is set.
    pub fn try_init<O: Optimizer>(&self, inner: O) -> Result<ModuleOptimizer, ConfigError> {
        if self.norm_affine != NormAffine::Free || !self.free.is_empty() {
            return Err(ConfigError::Conflict {
                config: "NapConfig",
                reason: "norm_affine and free name parameters of a model: use init_for(inner, &model)",
            });
        }
        Ok(ModuleOptimizer::from(self.try_wrap(inner)?))
    }

    /// A [`ModuleOptimizer`] for `model`, with one parameter group per role:
    ///
    /// - projected: every tensor of rank ≥ [`min_rank`](Self::min_rank) that is neither
    ///   [`free`](Self::free) nor a normalization layer's scale or offset (per row along its
    ///   layer's output-channel axis for [`NapScope::Row`]);
    /// - normalization scale and offset: as [`norm_affine`](Self::norm_affine) says;
    /// - everything else: `inner`, unprojected, inside the same step frame as the rest
    ///   (learning-rate check, f32 for half precision, [`non_finite`](Self::non_finite)).
    ///
    /// Fails on an invalid config, on a [`free`](Self::free) entry that names no parameter of
    /// `model`, and on a projected tensor whose norm is zero (a zero-initialised weight cannot
    /// be projected: free it with [`free`](Self::free)).
    pub fn try_init_for<O: Optimizer, M: Module>(
        &self,
        inner: O,
        model: &M,
    ) -> Result<ModuleOptimizer, ConfigError> {
        self.validate()?;
        let params = params::walk(model, true);
        if let Some(path) = self
            .free
            .iter()
            .find(|prefix| !params.iter().any(|p| p.is_under(prefix)))
        {
            return Err(ConfigError::UnknownParameter { path: path.clone() });
        }
        let axes = (self.scope == NapScope::Row).then(|| ChannelAxes::infer(model));
        let mut projected: Vec<(Option<usize>, Vec<ParamId>)> = Vec::new();
        let mut decayed = Vec::new();
        for param in params {
            match self.role(&param) {
                Role::Free => {}
                Role::DecayScale => decayed.push(param.id),
                Role::Projected => {
                    if !param.norm.is_some_and(|n| n > 0.0 && n.is_finite()) {
                        return Err(ConfigError::UnprojectableNorm {
                            path: param.path,
                            norm: param.norm.unwrap_or(f64::NAN),
                        });
                    }
                    let axis = axes
                        .as_ref()
                        .map(|a| a.axis_of(&param.path).unwrap_or(self.channel_axis));
                    match projected.iter_mut().find(|(a, _)| *a == axis) {
                        Some((_, ids)) => ids.push(param.id),
                        None => projected.push((axis, vec![param.id])),
                    }
                }
            }
        }

        // The fallback (first) optimizer takes the free parameters: `inner` inside NaP's
        // frame (learning-rate check, f32 for half precision, the non-finite policy), with
        // nothing projected or decayed.
        let mut optim = ModuleOptimizer::from(self.pass_through(inner.clone()));
        for (axis, ids) in projected {
            optim = optim.with_group(
                ParamGroup::from_ids(ids),
                self.nap(inner.clone(), axis),
                None,
            );
        }
        if let (NormAffine::DecayScale { rate }, false) = (self.norm_affine, decayed.is_empty()) {
            let decay_only = Nap {
                scale_decay: rate,
                ..self.pass_through(inner.clone())
            };
            optim = optim.with_group(ParamGroup::from_ids(decayed), decay_only, None);
        }
        Ok(optim)
    }

    /// Applies the module-level part of [`norm_affine`](Self::norm_affine) after a step:
    /// with [`NormAffine::ProjectJointly`], rescales `[γ; β]` of every normalization layer
    /// to `√d`; otherwise returns `model` unchanged. All on the device.
    pub fn project_norm_affine<M: Module>(&self, model: M) -> M {
        match self.norm_affine {
            NormAffine::ProjectJointly => project_jointly(model, self.epsilon),
            _ => model,
        }
    }

    fn default_axis(&self) -> Option<usize> {
        (self.scope == NapScope::Row).then_some(self.channel_axis)
    }

    fn nap<O>(&self, inner: O, row_axis: Option<usize>) -> Nap<O> {
        Nap {
            inner,
            min_rank: self.min_rank,
            row_axis,
            project_every: self.project_every,
            epsilon: self.epsilon,
            scale_decay: 0.0,
            non_finite: self.non_finite,
        }
    }

    /// `inner` in NaP's step frame, projecting nothing: for the parameters `init_for` leaves
    /// free.
    fn pass_through<O>(&self, inner: O) -> Nap<O> {
        Nap {
            min_rank: usize::MAX,
            ..self.nap(inner, None)
        }
    }

    fn role(&self, param: &ParamInfo) -> Role {
        if self.free.iter().any(|prefix| param.is_under(prefix)) {
            Role::Free
        } else if is_norm_affine(param) {
            match self.norm_affine {
                NormAffine::DecayScale { .. } if param.field() == "gamma" => Role::DecayScale,
                _ => Role::Free,
            }
        } else if param.rank >= self.min_rank {
            Role::Projected
        } else {
            Role::Free
        }
    }
}

/// How `init_for` routes one parameter.
enum Role {
    Projected,
    Free,
    DecayScale,
}

impl<O> Nap<O> {
    /// The base optimizer.
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// Whether tensors of rank `rank` are projected.
    pub fn projects(&self, rank: usize) -> bool {
        rank >= self.min_rank
    }

    /// `W · ρ / max(‖W‖, ε)`. A whole-tensor projection on flex reads `‖W‖` and `ρ` where they
    /// lie and scales by one number (in place when the backend can); on a CubeCL device it is
    /// two kernels (`rules::norm::cube`).
    fn project<const D: usize>(&self, param: Tensor<D>, radius: &Tensor<D>) -> Tensor<D> {
        #[cfg(feature = "flex")]
        if self.row_axis.is_none()
            && let (Some(norm), Some(radius)) = (
                crate::engine::flex::norm(&param),
                crate::engine::flex::single_value(radius),
            )
        {
            return param * factor(radius, norm, self.epsilon);
        }
        #[cfg(feature = "wgpu")]
        if self.row_axis.is_none() && crate::rules::norm::cube::rescales(&param, radius) {
            return crate::rules::norm::cube::nap_rescale(param, radius, None, self.epsilon);
        }
        let norm = self.norm(&param);
        param * factor(radius.clone(), norm, self.epsilon)
    }

    /// `ρ` when step `steps` (counted from 1) projects: every `project_every` steps, for a
    /// projected tensor.
    fn radius_due<'a, const D: usize>(
        &self,
        radius: &'a Option<Tensor<D>>,
        steps: usize,
    ) -> Option<&'a Tensor<D>> {
        radius
            .as_ref()
            .filter(|_| steps.is_multiple_of(self.project_every))
    }

    /// `‖W‖` over the scope: shape `[1, …, 1]`, or per row with kept dimensions.
    fn norm<const D: usize>(&self, tensor: &Tensor<D>) -> Tensor<D> {
        let squares = tensor.clone().square();
        match self.row_axis {
            None => sum_all(squares),
            Some(axis) => {
                assert!(
                    axis < D,
                    "scaleinv NaP: channel_axis {axis} is out of range for a parameter of rank {D}; \
                     use NapConfig::init_for to take each weight's axis from its layer"
                );
                sum_except(squares, axis)
            }
        }
        .sqrt()
    }

    /// The state before `param`'s first step: no step taken, `ρ` measured when it is
    /// projected.
    fn first_state<const D: usize, S>(&self, param: &Tensor<D>) -> NapState<D, S>
    where
        S: RecordState + Clone,
    {
        NapState {
            steps: 0,
            radius: self.projects(D).then(|| self.radius(param)),
            inner: None,
        }
    }

    /// `ρ` of a tensor about to take its first step; panics when it is zero or not finite.
    fn radius<const D: usize>(&self, tensor: &Tensor<D>) -> Tensor<D> {
        let radius = self.norm(tensor);
        let smallest = read_back(radius.clone().min())[0];
        assert!(
            smallest > 0.0 && smallest.is_finite(),
            "scaleinv NaP: a projected tensor of shape {:?} has norm {smallest} before its first \
             step; a zero-initialised tensor cannot be projected (leave it free with a parameter \
             group, or NapConfig::free with init_for)",
            tensor.dims()
        );
        radius
    }
}

/// NaP around one of this crate's fused optimizers on flex, for a whole-tensor projection (or
/// none) under `Skip`: the base's pass that writes `W` also sums `‖W‖²`, and one more pass
/// rescales `W` — no read of the gradient for the finiteness test (the base's loops test it
/// before writing) nor of `W` for its norm. A non-finite gradient leaves the base's state as it
/// was, and the wrapper's rule follows: the base steps on a zero gradient and `W` is kept.
#[cfg(feature = "flex")]
impl<O: Optimizer> Nap<O> {
    /// Whether [`fused_step`](Self::fused_step) takes this step. Not for f16/bf16 parameters,
    /// whose projection the tensor ops compute in f32 before one rounding.
    fn fuses<const D: usize>(
        &self,
        param: &Tensor<D>,
        grad: &Tensor<D>,
        state: Option<&NapState<D, O::State<D>>>,
    ) -> bool {
        let radius = state.and_then(|s| s.radius.as_ref());
        self.non_finite == NonFinitePolicy::Skip
            && self.scale_decay == 0.0
            && !(self.projects(D) && self.row_axis.is_some())
            && param.dtype() == burn::tensor::DType::F32
            && crate::engine::flex::accepts(param, None)
            && radius.is_none_or(crate::engine::flex::readable)
            && fused_base::fuses(
                &self.inner,
                param,
                grad,
                state.and_then(|s| s.inner.as_ref()),
            )
    }

    fn fused_step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<NapState<D, O::State<D>>>,
    ) -> (Tensor<D>, Option<NapState<D, O::State<D>>>) {
        check_lr(lr);
        let state = state.unwrap_or_else(|| self.first_state(&param));
        let steps = state.steps + 1;
        // ρ, when this step projects (one element on flex, checked by `fuses`).
        let radius = self
            .radius_due(&state.radius, steps)
            .map(|r| crate::engine::flex::single_value(r).expect("ρ on flex"));
        let fused = fused_base::measured_step(&self.inner, lr, param, grad, state.inner);
        let (param, inner) = match (fused.outcome.new_squares(), radius) {
            (Some(squares), Some(rho)) => {
                let factor = factor(rho, squares.sqrt(), self.epsilon);
                let param = crate::engine::flex::scaled(fused.param, factor as f32);
                (param, fused.state)
            }
            (Some(_), None) => (fused.param, fused.state),
            // A non-finite gradient: nothing was written.
            (None, _) => {
                let zeros = fused.param.zeros_like();
                let (_, inner) = self.inner.step(lr, fused.param.clone(), zeros, fused.state);
                (fused.param, inner)
            }
        };
        let state = NapState {
            steps,
            radius: state.radius,
            inner,
        };
        (param, Some(state))
    }
}

/// NaP around one of this crate's optimizers on a CubeCL device, for a whole-tensor projection
/// (or none): the base's kernels apply the wrapper's non-finite rule themselves (under `Skip`,
/// the state steps on a zero gradient and the parameter is kept) and the projection's kernels
/// test the gradient again where they read `W`, so no tensor-op frame runs around them: the
/// base's launches and two more, `W`, the state and `ρ` untouched by any other.
#[cfg(feature = "wgpu")]
impl<O: Optimizer> Nap<O> {
    /// Whether NaP's projection of `param` runs as the kernels: a whole-tensor projection (or
    /// none) whose `ρ` they read.
    fn rescales_on_device<const D: usize>(
        &self,
        param: &Tensor<D>,
        state: Option<&NapState<D, O::State<D>>>,
    ) -> bool {
        let radius = state.and_then(|s| s.radius.as_ref());
        !(self.projects(D) && self.row_axis.is_some())
            && radius.is_none_or(|r| crate::rules::norm::cube::rescales(param, r))
    }

    fn cube_step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<NapState<D, O::State<D>>>,
    ) -> crate::engine::cube::CubeStep<D, NapState<D, O::State<D>>> {
        use crate::engine::cube::OnNonFinite;
        use crate::rules::norm::cube::nap_rescale;
        let fits = self.scale_decay == 0.0
            && crate::engine::cube::accepts(&param)
            && self.rescales_on_device(&param, state.as_ref());
        if !fits {
            return Err(Box::new((param, grad, state)));
        }
        check_lr(lr);
        let NapState {
            steps,
            radius,
            inner,
        } = state.unwrap_or_else(|| self.first_state(&param));
        let skip = self.non_finite == NonFinitePolicy::Skip;
        let on_non_finite = match skip {
            true => OnNonFinite::ZeroGradient,
            false => OnNonFinite::Policy,
        };
        // The projection's guard reads the gradient the base's kernels read (read-only in both).
        let guard = skip.then(|| grad.clone());
        match fused_base::cube_step(&self.inner, lr, param, grad, inner, on_non_finite) {
            Ok((param, inner)) => {
                let steps = steps + 1;
                let param = match self.radius_due(&radius, steps) {
                    Some(rho) => nap_rescale(param, rho, guard.as_ref(), self.epsilon),
                    None => param,
                };
                let state = NapState {
                    steps,
                    radius,
                    inner,
                };
                Ok((param, Some(state)))
            }
            Err(inputs) => {
                let (param, grad, inner) = *inputs;
                let state = NapState {
                    steps,
                    radius,
                    inner,
                };
                Err(Box::new((param, grad, Some(state))))
            }
        }
    }
}

/// NaP around one of Burn's optimizers under `Skip` on a CubeCL device, for a whole-tensor
/// projection (or none): the gradient screened by kernels (`engine::cube::guard`), the base's
/// step as Burn's (fused) operations, and the projection's second kernel putting back the
/// parameter before the step where the screen found NaN or ±∞ (the guard's restore
/// otherwise).
#[cfg(feature = "wgpu")]
impl<O: Optimizer> Nap<O> {
    fn screened_step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<NapState<D, O::State<D>>>,
    ) -> crate::engine::cube::CubeStep<D, NapState<D, O::State<D>>> {
        use crate::engine::cube::guard::{Screen, screens};
        use crate::rules::norm::cube::{nap_rescale_or_restore, rescales};
        let fits = self.non_finite == NonFinitePolicy::Skip
            && screens(&param, &grad)
            && self.rescales_on_device(&param, state.as_ref());
        if !fits {
            return Err(Box::new((param, grad, state)));
        }
        check_lr(lr);
        let state = state.unwrap_or_else(|| self.first_state(&param));
        let (grad, screen) = Screen::new(&param, grad);
        let (param, inner) = self.inner.step(lr, param, grad, state.inner);
        let param = decay(param, lr * self.scale_decay);
        let steps = state.steps + 1;
        let param = match self.radius_due(&state.radius, steps) {
            Some(rho) if rescales(&param, rho) => {
                nap_rescale_or_restore(param, rho, &screen, self.epsilon)
            }
            _ => screen.restore(param),
        };
        let next = NapState {
            steps,
            radius: state.radius,
            inner,
        };
        Ok((param, Some(next)))
    }
}

impl<O: Optimizer> Optimizer for Nap<O> {
    type State<const D: usize> = NapState<D, O::State<D>>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        #[cfg(feature = "flex")]
        if self.fuses(&param, &grad, state.as_ref()) {
            return self.fused_step(lr, param, grad, state);
        }
        #[cfg(feature = "wgpu")]
        let (param, grad, state) = match self.cube_step(lr, param, grad, state) {
            Ok(stepped) => return stepped,
            Err(inputs) => *inputs,
        };
        #[cfg(feature = "wgpu")]
        let (param, grad, state) = match self.screened_step(lr, param, grad, state) {
            Ok(stepped) => return stepped,
            Err(inputs) => *inputs,
        };
        framed_wrapper_step(
            lr,
            self.non_finite,
            param,
            grad,
            state,
            |param, grad, state| {
                let state = state.unwrap_or_else(|| self.first_state(&param));
                let (param, inner) = self.inner.step(lr, param, grad, state.inner);
                let param = decay(param, lr * self.scale_decay);
                let steps = state.steps + 1;
                let param = match self.radius_due(&state.radius, steps) {
                    Some(radius) => self.project(param, radius),
                    None => param,
                };
                let next = NapState {
                    steps,
                    radius: state.radius,
                    inner,
                };
                (param, Some(next))
            },
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        NapState {
            steps: state.steps,
            radius: state.radius.map(|r| r.to_device(device)),
            inner: state.inner.map(|s| O::to_device(s, device)),
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::optim::{AdamConfig, Optimizer};
    use burn::tensor::{Device, Tensor};

    use super::{Nap, NapConfig, NapScope};
    use crate::{
        AdamCConfig, AdamPConfig, SgdpConfig, StableSpamConfig, WidthRole, WidthScaledAdamWConfig,
    };

    /// Whether NaP's first step of a `[6, 5]` weight takes the fused route.
    fn fuses<O: Optimizer>(nap: &Nap<O>) -> bool {
        let device = Device::flex();
        let values = |seed: f32| {
            let v: Vec<f32> = (0..30).map(|i| (i as f32 * 0.7 + seed).sin()).collect();
            Tensor::<2>::from_data(burn::tensor::TensorData::new(v, [6, 5]), &device)
        };
        nap.fuses(&values(0.0), &values(1.0), None)
    }

    #[test]
    fn nap_joins_the_passes_of_this_crates_fused_optimizers_only() {
        let nap = NapConfig::new();
        assert!(fuses(&nap.wrap(AdamPConfig::new().build())));
        assert!(fuses(&nap.wrap(SgdpConfig::new().build())));
        assert!(fuses(&nap.wrap(StableSpamConfig::new().build())));
        let adamw = WidthScaledAdamWConfig::new(16, 32).build(WidthRole::Matrix);
        assert!(fuses(&nap.wrap(adamw)));
        assert!(fuses(&nap.wrap(AdamCConfig::new().build(true))));
        // The fused loops switched off, Burn's Adam, a per-row projection.
        assert!(!fuses(
            &nap.wrap(AdamPConfig::new().with_fused(false).build())
        ));
        assert!(!fuses(&nap.wrap(AdamConfig::new().build())));
        let rows = NapConfig::new().with_scope(NapScope::Row);
        assert!(!fuses(&rows.wrap(AdamPConfig::new().build())));
    }
}
