//! Adam's step (width-scaled AdamW's, AdamC's, AdamP's) as CubeCL kernels: one launch for
//! the step, after one for the non-finite test under `Skip`, and for AdamP's projected
//! tensors two for the projection's coefficients (`projection`).
//!
//! ```text
//! launch 1 (Skip only)   read g: flag ← 1 where an element is NaN or ±∞
//! (AdamP, rank ≥ 2)      the coefficients k_c and the decay ratio r (`projection`)
//! last launch            read p, g, m, v, flag (k_c, r); write p, m, v:
//!                        flag set:  p, m, v copied as they were
//!                        otherwise: m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
//!                                   u = m / (√v / √(1 − β2^t) + ε)   (`rule`)
//!                                   AdamP: u ← u − k_c·p,  f = r·(−ηλ) + 1
//!                                   p ← p·f − η/(1 − β1^t) · u
//! ```
//!
//! The f32 scalars are the flex loops' (`kernels::adam`), computed on the host from
//! `math::adam` and `math::decay`.

use burn::backend::wgpu::CubeTensor;
use burn::cubecl;
use burn::cubecl::prelude::*;

use super::launch::contiguous;
use super::projection::Update;
use super::rule::{MomentArgs, WriteArgs, direction, first, projected_factor, second, write};
use crate::math::adam::Adam;
use crate::math::invariance::ScaleInvariance;

/// The f32 scalars of one Adam step, computed on the host from `math::adam` and
/// `math::decay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamScalars {
    /// Adam's moments and denominator at the step's count.
    pub moments: MomentArgs,
    /// The write of `p`: `1 − ηλ`, `−ηλ` and the step's scale `η / (1 − β1^t)`.
    pub write: WriteArgs,
    /// Whether a non-finite gradient skips the step (tested on the device).
    pub skip_non_finite: bool,
    /// AdamP's Nesterov form.
    pub nesterov: bool,
    /// AdamP's projection (applied to the tensors it applies to, see
    /// `ScaleInvariance::applies_to`).
    pub projection: Option<ScaleInvariance>,
}

impl AdamScalars {
    /// The scalars of step `time` at learning rate `lr` with decoupled decay `weight_decay`.
    pub fn new(adam: Adam, time: usize, lr: f64, weight_decay: f64, skip: bool) -> Self {
        let (bc1, _) = adam.bias_corrections(time);
        Self {
            moments: MomentArgs::adam(adam, time),
            write: WriteArgs::new(lr * weight_decay, lr / bc1),
            skip_non_finite: skip,
            nesterov: false,
            projection: None,
        }
    }

    /// The same step with AdamP's Nesterov form and projection.
    pub fn adamp(self, nesterov: bool, projection: Option<ScaleInvariance>) -> Self {
        Self {
            nesterov,
            projection,
            ..self
        }
    }
}

/// One Adam step per vector of `N` elements (see the module's doc); `skip[0] ≠ 0` copies the
/// inputs. `projected`: `u ← u − coef[c]·p` in channel `c` and the decay ratio `ratio[0]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adam_step<N: Size>(
    p: &[Vector<f32, N>],
    g: &[Vector<f32, N>],
    m: &[Vector<f32, N>],
    v: &[Vector<f32, N>],
    skip: &[u32],
    coef: &[f32],
    ratio: &[f32],
    p_out: &mut [Vector<f32, N>],
    m_out: &mut [Vector<f32, N>],
    v_out: &mut [Vector<f32, N>],
    rule: &MomentArgs,
    w: &WriteArgs,
    channels: usize,
    inner: usize,
    #[comptime] nesterov: bool,
    #[comptime] projected: bool,
) {
    let i = ABSOLUTE_POS;
    if i < p.len() {
        if skip[0] != 0u32 {
            p_out[i] = p[i];
            m_out[i] = m[i];
            v_out[i] = v[i];
        } else {
            let gi = g[i];
            let mi = first::<N>(m[i], gi, rule);
            let vi = second::<N>(v[i], gi, rule);
            let u = direction::<N>(gi, mi, vi, rule, true, nesterov);
            m_out[i] = mi;
            v_out[i] = vi;
            if projected {
                let c = (i * N::value() / inner) % channels;
                let u = u - p[i] * Vector::new(coef[c]);
                p_out[i] = write::<N>(p[i], u, projected_factor(ratio[0], w), w.scale);
            } else {
                p_out[i] = write::<N>(p[i], u, w.decay_factor, w.scale);
            }
        }
    }
}

/// Launches Adam's step on contiguous f32 tensors of one shape; returns `(p, m, v)`. AdamP's
/// projection applies to tensors of rank ≥ 2 (its channel axis an axis of them).
pub fn launch(
    p: CubeTensor,
    g: CubeTensor,
    m: CubeTensor,
    v: CubeTensor,
    s: AdamScalars,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let [p, g, m, v] = contiguous([p, g, m, v]);
    let rule = s.moments;
    let update = Update::new(
        [&p, &g, &m, &v],
        [&m, &v],
        s.projection,
        s.skip_non_finite,
        rule,
        true,
        s.nesterov,
    );
    let run = &update.run;
    let [p_out, m_out, v_out] = run.outputs();
    let (coef, ratio, channels) = update.bindings(&p);
    adam_step::launch(
        run.client(),
        run.count(),
        run.dim(),
        run.vector(),
        run.arg(&p),
        run.arg(&g),
        run.arg(&m),
        run.arg(&v),
        update.skip.arg(),
        coef,
        ratio,
        run.arg(&p_out),
        run.arg(&m_out),
        run.arg(&v_out),
        rule.launch(),
        s.write.launch(),
        channels.channels,
        channels.inner,
        s.nesterov,
        update.projects(),
    );
    (p_out, m_out, v_out)
}
