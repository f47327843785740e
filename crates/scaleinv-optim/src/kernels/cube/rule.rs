//! What the step kernels share, element by element: the momentum rules (Adam's moments, SGD's
//! buffer) and the write of the parameter, as `math::adam`, `math::sgd` and `math::decay`
//! compute them, in the same order (CubeCL's kernel language cannot call those generic
//! functions, so the formulas are written here once more, once for every kernel).
//!
//! ```text
//! Adam:  m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
//!        u = m / (√v / √(1 − β2^t) + ε)          (Nesterov: (β1·m + (1 − β1)·g) / denom)
//! SGD:   b ← μ·b + (1 − τ)·g ;  u = b              (Nesterov: u = g + μ·b)
//! write: p ← p·f − u·s,  f = 1 − ηλ (the host's), or r·(−ηλ) + 1 with the projection's ratio r
//! ```

use burn::cubecl;
use burn::cubecl::prelude::*;

use crate::math::adam::Adam;

/// The smallest positive normal f32: the floor of a scale and of a denominator (the tensor
/// path's `Scaled`, `math::ratio`).
pub const MIN_POSITIVE: f32 = f32::MIN_POSITIVE;

/// The f32 scalars of a momentum rule: Adam's `(β1, 1 − β1, β2, 1 − β2, √(1 − β2^t), ε)`, or
/// SGD's `(μ, 1 − τ)` in the first two (the others unread).
#[derive(CubeLaunch, CubeType, Debug, Clone, Copy, PartialEq)]
pub struct MomentArgs {
    pub decay_1: f32,
    pub weight_1: f32,
    pub decay_2: f32,
    pub weight_2: f32,
    pub sqrt_bc2: f32,
    pub epsilon: f32,
}

/// The f32 scalars of the parameter's write `p ← p·f − u·scale`: the host's decay factor
/// `f = 1 − ηλ` (used without a projection), `−ηλ` (with one, `f = r·(−ηλ) + 1` on the
/// device), and the step's scale.
#[derive(CubeLaunch, CubeType, Debug, Clone, Copy, PartialEq)]
pub struct WriteArgs {
    pub decay_factor: f32,
    pub neg_decay_rate: f32,
    pub scale: f32,
}

impl MomentArgs {
    /// Adam's scalars at step `time` (`math::adam`).
    pub fn adam(adam: Adam, time: usize) -> Self {
        let (_, bc2) = adam.bias_corrections(time);
        Self {
            decay_1: adam.beta_1 as f32,
            weight_1: (1.0 - adam.beta_1) as f32,
            decay_2: adam.beta_2 as f32,
            weight_2: (1.0 - adam.beta_2) as f32,
            sqrt_bc2: bc2.sqrt() as f32,
            epsilon: adam.epsilon as f32,
        }
    }

    /// SGD's `(μ, 1 − τ)` (`math::sgd`); the other scalars are unread.
    pub fn sgd(momentum: f64, dampening: f64) -> Self {
        Self {
            decay_1: momentum as f32,
            weight_1: (1.0 - dampening) as f32,
            decay_2: 0.0,
            weight_2: 0.0,
            sqrt_bc2: 1.0,
            epsilon: 0.0,
        }
    }

    /// The kernel argument.
    pub fn launch(self) -> MomentArgsLaunch {
        MomentArgsLaunch::new(
            self.decay_1,
            self.weight_1,
            self.decay_2,
            self.weight_2,
            self.sqrt_bc2,
            self.epsilon,
        )
    }
}

impl WriteArgs {
    /// The write of a step with decay rate `rate = ηλ` (`math::decay::factor`) and scale
    /// `scale` on `u`.
    pub fn new(rate: f64, scale: f64) -> Self {
        Self {
            decay_factor: crate::math::decay::factor(1.0, rate) as f32,
            neg_decay_rate: (-rate) as f32,
            scale: scale as f32,
        }
    }

    /// The kernel argument.
    pub fn launch(self) -> WriteArgsLaunch {
        WriteArgsLaunch::new(self.decay_factor, self.neg_decay_rate, self.scale)
    }
}

/// `prev·decay + x·weight` (`math::ema`, SGD's buffer).
#[cube]
pub fn ema<N: Size>(
    prev: Vector<f32, N>,
    x: Vector<f32, N>,
    decay: f32,
    weight: f32,
) -> Vector<f32, N> {
    prev * Vector::new(decay) + x * Vector::new(weight)
}

/// The first state after `g`: Adam's `m`, SGD's `b`.
#[cube]
pub fn first<N: Size>(s1: Vector<f32, N>, g: Vector<f32, N>, r: &MomentArgs) -> Vector<f32, N> {
    ema::<N>(s1, g, r.decay_1, r.weight_1)
}

/// Adam's second moment after `g` (`v·β2 + g²·(1 − β2)`).
#[cube]
pub fn second<N: Size>(s2: Vector<f32, N>, g: Vector<f32, N>, r: &MomentArgs) -> Vector<f32, N> {
    ema::<N>(s2, g * g, r.decay_2, r.weight_2)
}

/// The update direction from the new state `s1` (and Adam's `s2`).
#[cube]
pub fn direction<N: Size>(
    g: Vector<f32, N>,
    s1: Vector<f32, N>,
    s2: Vector<f32, N>,
    r: &MomentArgs,
    #[comptime] adam: bool,
    #[comptime] nesterov: bool,
) -> Vector<f32, N> {
    if adam {
        let denom = Vector::sqrt(s2) / Vector::new(r.sqrt_bc2) + Vector::new(r.epsilon);
        if nesterov {
            first::<N>(s1, g, r) / denom
        } else {
            s1 / denom
        }
    } else if nesterov {
        g + s1 * Vector::new(r.decay_1)
    } else {
        s1
    }
}

/// `p·f − u·scale`.
#[cube]
pub fn write<N: Size>(
    p: Vector<f32, N>,
    u: Vector<f32, N>,
    factor: f32,
    scale: f32,
) -> Vector<f32, N> {
    p * Vector::new(factor) - u * Vector::new(scale)
}

/// The decay factor of a projected step: `r·(−ηλ) + 1` (`math::decay::factor`).
#[cube]
pub fn projected_factor(ratio: f32, w: &WriteArgs) -> f32 {
    ratio * w.neg_decay_rate + 1.0
}

/// `a / max(b, MIN_POSITIVE)`: a ratio whose denominator cannot be zero (`math::ratio`).
#[cube]
pub fn ratio(a: f32, b: f32) -> f32 {
    a / f32::max(b, MIN_POSITIVE)
}
