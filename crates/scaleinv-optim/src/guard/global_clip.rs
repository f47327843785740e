//! Gradient clipping by the global L2 norm of all gradients of a step, with PyTorch's
//! `clip_grad_norm_` semantics. Burn's own [`GradientClipping`](burn::grad_clipping)
//! clips each tensor by its own norm; LLM recipes clip the whole step.

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{DType, FloatDType, Tensor};

use crate::error::{ConfigError, Range, check};
use crate::model::params::{ParamInfo, ParamVisitor, read_back, visit_params};

/// Clips all gradients of a step by their global L2 norm, as PyTorch's
/// `torch.nn.utils.clip_grad_norm_(params, max_norm)`:
///
/// ```text
/// total = √(Σ_i ‖g_i‖²)                   over every gradient of the step
/// g_i ← g_i · min(1, max_norm / (total + 1e-6))
/// ```
///
/// It works on the [`GradientsParams`] a step is given, so it goes in front of any optimizer,
/// this crate's or Burn's: in a hand-written loop before `optim.step`, and under Burn's
/// `Learner` in `TrainStep::optimize`, which gets the gradients after their accumulation over
/// micro-batches and their sum over devices (under `OptimSharded`, `optimize_multi` gets each
/// device's part, and the norm to clip by is that of their sum; `TrainStep::step` would clip
/// each micro-batch on each device by its own norm). The configs' `grad_clipping`, Burn's
/// per-tensor clipping, stays as it is. Everything runs on the device: the total norm comes back
/// as a [`GlobalNorm`], read on the host only if the caller asks ([`GlobalNorm::value`]). A
/// non-finite total (a NaN or ±∞ element anywhere, or squares whose f32 sum overflows, a norm
/// above about 1.8e19) makes every gradient NaN, so that the optimizers' default
/// [`NonFinitePolicy::Skip`](crate::NonFinitePolicy) skips the whole step. This differs from
/// PyTorch (`error_if_nonfinite = False`), whose coefficient for an infinite total is 0: there
/// the other gradients become zeros and the step moves on momentum alone.
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::optim::{AdamWConfig, GradientsParams};
/// use scaleinv_optim::GlobalNormClip;
///
/// # #[cfg(feature = "flex")] {
/// let device = Device::flex().autodiff();
/// let model: Linear = LinearConfig::new(4, 3).init(&device);
/// let mut optim = AdamWConfig::new().init();
/// let clip = GlobalNormClip::new(1.0);
///
/// let loss = model.forward(Tensor::<2>::ones([8, 4], &device)).square().mean();
/// let grads = GradientsParams::from_grads(loss.backward(), &model);
/// let (grads, norm) = clip.clip(&model, grads);
/// let model = optim.step(1e-3, model, grads);
/// println!("gradient norm before clipping: {}", norm.value()); // one host read
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlobalNormClip {
    max_norm: f64,
}

/// The global gradient norm of a step, before clipping, on the device.
#[derive(Debug, Clone)]
pub struct GlobalNorm {
    total: Option<Tensor<1>>,
}

impl GlobalNorm {
    /// The norm as a tensor of shape `[1]` on the device of the first gradient; `None` when
    /// the step had no gradient.
    pub fn tensor(&self) -> Option<Tensor<1>> {
        self.total.clone()
    }

    /// The norm on the host (one read; 0 when the step had no gradient).
    pub fn value(&self) -> f64 {
        self.total.clone().map_or(0.0, |total| {
            read_back(total).first().copied().unwrap_or(0.0)
        })
    }
}

/// PyTorch's guard in the clipping coefficient, `max_norm / (total + 1e-6)`.
const TOTAL_EPSILON: f64 = 1e-6;

impl GlobalNormClip {
    /// Clipping to `max_norm` (finite, > 0).
    pub fn try_new(max_norm: f64) -> Result<Self, ConfigError> {
        check("GlobalNormClip", "max_norm", max_norm, Range::Positive)?;
        Ok(Self { max_norm })
    }

    /// Like [`try_new`](Self::try_new); panics with the validation error.
    pub fn new(max_norm: f64) -> Self {
        Self::try_new(max_norm).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The largest global norm let through.
    pub fn max_norm(&self) -> f64 {
        self.max_norm
    }

    /// Scales every gradient of `module` in `grads` by `min(1, max_norm / (total + 1e-6))`
    /// and returns them with the total norm before clipping. Gradients of parameters that
    /// `module` does not have are left as they are and do not count.
    pub fn clip<M: Module>(
        &self,
        module: &M,
        grads: GradientsParams,
    ) -> (GradientsParams, GlobalNorm) {
        let total = global_norm(module, &grads);
        let Some(total) = total else {
            return (grads, GlobalNorm { total: None });
        };
        // A non-finite total gives a NaN coefficient (PyTorch's would be 0 for +∞, leaving the
        // other gradients zero and finite).
        let non_finite = total.clone().is_finite().bool_not();
        let coefficient = (total.clone().add_scalar(TOTAL_EPSILON))
            .recip()
            .mul_scalar(self.max_norm)
            .clamp_max(1.0)
            .mask_fill(non_finite, f32::NAN);
        let mut scale = Scale { grads, coefficient };
        visit_params(module, &mut scale);
        (scale.grads, GlobalNorm { total: Some(total) })
    }
}

/// `clip_grad_norm_(params, max_norm)`: [`GlobalNormClip::new`]`(max_norm).clip(module, grads)`.
/// Panics when `max_norm` is not finite and positive.
pub fn clip_grad_norm<M: Module>(
    module: &M,
    grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, GlobalNorm) {
    GlobalNormClip::new(max_norm).clip(module, grads)
}

/// `√(Σ‖g‖²)` over the gradients of `module`'s parameters (f32 sums), on the first gradient's
/// device; `None` without gradients.
pub fn global_norm<M: Module>(module: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    struct Squares<'a> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<1>>,
    }
    impl ParamVisitor for Squares<'_> {
        fn param<const D: usize>(&mut self, info: ParamInfo, _: &Param<Tensor<D>>) {
            let Some(grad) = self.grads.get::<D>(info.id) else {
                return;
            };
            let grad = match grad.dtype() {
                DType::F32 | DType::F64 => grad,
                _ => grad.cast(FloatDType::F32),
            };
            let square = grad.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(sum) => {
                    let square = square.to_device(&sum.device());
                    sum + square
                }
                None => square,
            });
        }
    }
    let mut squares = Squares { grads, sum: None };
    visit_params(module, &mut squares);
    squares.sum.map(Tensor::sqrt)
}

/// Multiplies every gradient of the module by the coefficient (moved to its device).
struct Scale {
    grads: GradientsParams,
    coefficient: Tensor<1>,
}

impl ParamVisitor for Scale {
    fn param<const D: usize>(&mut self, info: ParamInfo, _: &Param<Tensor<D>>) {
        let Some(grad) = self.grads.remove::<D>(info.id) else {
            return;
        };
        let coefficient = self.coefficient.clone().to_device(&grad.device());
        let coefficient = match grad.dtype() {
            DType::F16 => coefficient.cast(FloatDType::F16),
            DType::BF16 => coefficient.cast(FloatDType::BF16),
            DType::F64 => coefficient.cast(FloatDType::F64),
            _ => coefficient,
        }
        .unsqueeze::<D>();
        self.grads.register(info.id, grad * coefficient);
    }
}
