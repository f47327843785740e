//! Adam's step (width-scaled AdamW's, AdamC's) as CubeCL kernels: one launch for the step,
//! after one for the non-finite test under `Skip`.
//!
//! ```text
//! launch 1 (Skip only)   read g: flag ← 1 where an element is NaN or ±∞
//! launch 2               read p, g, m, v, flag; write p, m, v:
//!                        flag set:  p, m, v copied as they were
//!                        otherwise: m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
//!                                   u = m / (√v / √(1 − β2^t) + ε)
//!                                   p ← p·(1 − ηλ) − η/(1 − β1^t) · u
//! ```
//!
//! The formulas are `math::adam`'s and `math::decay`'s, in the same order and with the same
//! f32 scalars as the flex loops (`kernels::adam`); CubeCL's kernel language cannot call
//! those generic functions, so they are written here once more, element by element.

use burn::backend::wgpu::CubeTensor;
use burn::cubecl;
use burn::cubecl::prelude::*;

use super::launch::{Launch, contiguous, flag};
use crate::math::adam::Adam;

/// The f32 scalars of one Adam step, computed on the host from `math::adam`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamScalars {
    /// β1, 1 − β1, β2, 1 − β2 (as `math::ema` converts them).
    pub beta_1: f32,
    pub one_minus_beta_1: f32,
    pub beta_2: f32,
    pub one_minus_beta_2: f32,
    /// √(1 − β2^t) and ε of the denominator.
    pub sqrt_bc2: f32,
    pub epsilon: f32,
    /// The decay factor `1 − ηλ` (1 without decay) and the step's scale `η / (1 − β1^t)`.
    pub decay_factor: f32,
    pub scale: f32,
    /// Whether a non-finite gradient skips the step (tested on the device).
    pub skip_non_finite: bool,
}

impl AdamScalars {
    /// The scalars of step `time` at learning rate `lr` with decoupled decay `weight_decay`.
    pub fn new(adam: Adam, time: usize, lr: f64, weight_decay: f64, skip: bool) -> Self {
        let (bc1, bc2) = adam.bias_corrections(time);
        let rate = lr * weight_decay;
        Self {
            beta_1: adam.beta_1 as f32,
            one_minus_beta_1: (1.0 - adam.beta_1) as f32,
            beta_2: adam.beta_2 as f32,
            one_minus_beta_2: (1.0 - adam.beta_2) as f32,
            sqrt_bc2: bc2.sqrt() as f32,
            epsilon: adam.epsilon as f32,
            decay_factor: if rate == 0.0 {
                1.0
            } else {
                crate::math::decay::factor(1.0, rate) as f32
            },
            scale: (lr / bc1) as f32,
            skip_non_finite: skip,
        }
    }
}

/// One Adam step per vector of `N` elements (see the module's doc); `skip[0] ≠ 0` copies the
/// inputs.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adam_step<F: Float + LaunchArg, N: Size>(
    p: &[Vector<F, N>],
    g: &[Vector<F, N>],
    m: &[Vector<F, N>],
    v: &[Vector<F, N>],
    skip: &[u32],
    p_out: &mut [Vector<F, N>],
    m_out: &mut [Vector<F, N>],
    v_out: &mut [Vector<F, N>],
    beta_1: F,
    one_minus_beta_1: F,
    beta_2: F,
    one_minus_beta_2: F,
    sqrt_bc2: F,
    epsilon: F,
    decay_factor: F,
    scale: F,
) {
    let i = ABSOLUTE_POS;
    if i < p.len() {
        if skip[0] != 0u32 {
            p_out[i] = p[i];
            m_out[i] = m[i];
            v_out[i] = v[i];
        } else {
            let gi = g[i];
            let mi = m[i] * Vector::new(beta_1) + gi * Vector::new(one_minus_beta_1);
            let vi = v[i] * Vector::new(beta_2) + gi * gi * Vector::new(one_minus_beta_2);
            let denom = Vector::sqrt(vi) / Vector::new(sqrt_bc2) + Vector::new(epsilon);
            let u = mi / denom;
            m_out[i] = mi;
            v_out[i] = vi;
            p_out[i] = p[i] * Vector::new(decay_factor) - u * Vector::new(scale);
        }
    }
}

/// Launches Adam's step on contiguous f32 tensors of one shape; returns `(p, m, v)`.
pub fn launch(
    p: CubeTensor,
    g: CubeTensor,
    m: CubeTensor,
    v: CubeTensor,
    s: AdamScalars,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let [p, g, m, v] = contiguous([p, g, m, v]);
    let run = Launch::new([&p, &g, &m, &v]);
    let skip = flag(&g, s.skip_non_finite);
    let [p_out, m_out, v_out] = run.outputs();
    adam_step::launch::<f32>(
        run.client(),
        run.count(),
        run.dim(),
        run.vector(),
        run.arg(&p),
        run.arg(&g),
        run.arg(&m),
        run.arg(&v),
        skip.arg(),
        run.arg(&p_out),
        run.arg(&m_out),
        run.arg(&v_out),
        s.beta_1,
        s.one_minus_beta_1,
        s.beta_2,
        s.one_minus_beta_2,
        s.sqrt_bc2,
        s.epsilon,
        s.decay_factor,
        s.scale,
    );
    (p_out, m_out, v_out)
}
