//! SGDP's step as CubeCL kernels: one launch for the step, after one for the non-finite test
//! under `Skip` and, for a tensor of rank ≥ 2, two for the projection's coefficients
//! (`projection`).
//!
//! ```text
//! launch 1 (Skip only)   read g: flag ← 1 where an element is NaN or ±∞
//! (rank ≥ 2)             the coefficients k_c and the decay ratio r (`projection`)
//! last launch            read p, g, b, flag (k_c, r); write p, b:
//!                        flag set:  p, b copied as they were
//!                        otherwise: b ← μ·b + (1 − τ)·g ;  u = b (Nesterov: g + μ·b)  (`rule`)
//!                                   u ← u − k_c·p ;  b ← u (write-back, not Nesterov)
//!                                   p ← p·(r·(−ηλ/(1 − μ)) + 1) − η·u
//! ```
//!
//! The f32 scalars are the flex loops' (`kernels::sgd`), computed on the host from
//! `math::sgd` and `math::decay`.

use burn::backend::wgpu::CubeTensor;
use burn::cubecl;
use burn::cubecl::prelude::*;

use super::launch::contiguous;
use super::projection::Update;
use super::rule::{MomentArgs, WriteArgs, direction, first, projected_factor, write};
use crate::math::invariance::ScaleInvariance;

/// The f32 scalars of one SGDP step, computed on the host from `math::sgd` and `math::decay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdScalars {
    /// μ and 1 − τ.
    pub moments: MomentArgs,
    /// The write of `p`: `1 − rate`, `−rate` and η, with `rate = ηλ/(1 − μ)`.
    pub write: WriteArgs,
    pub nesterov: bool,
    /// Write the projected update back into the buffer.
    pub write_back: bool,
    pub skip_non_finite: bool,
    /// SGDP's projection (applied to the tensors it applies to, see
    /// `ScaleInvariance::applies_to`).
    pub projection: Option<ScaleInvariance>,
}

impl SgdScalars {
    /// The scalars of a step at learning rate `lr` with decoupled decay rate `decay_rate`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        momentum: f64,
        dampening: f64,
        nesterov: bool,
        write_back: bool,
        lr: f64,
        decay_rate: f64,
        skip: bool,
        projection: Option<ScaleInvariance>,
    ) -> Self {
        Self {
            moments: MomentArgs::sgd(momentum, dampening),
            write: WriteArgs::new(decay_rate, lr),
            nesterov,
            write_back,
            skip_non_finite: skip,
            projection,
        }
    }
}

/// One SGD step per vector of `N` elements (see the module's doc); `skip[0] ≠ 0` copies the
/// inputs. `projected`: `u ← u − coef[c]·p` in channel `c` and the decay ratio `ratio[0]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn sgd_step<N: Size>(
    p: &[Vector<f32, N>],
    g: &[Vector<f32, N>],
    b: &[Vector<f32, N>],
    skip: &[u32],
    coef: &[f32],
    ratio: &[f32],
    p_out: &mut [Vector<f32, N>],
    b_out: &mut [Vector<f32, N>],
    rule: &MomentArgs,
    w: &WriteArgs,
    channels: usize,
    inner: usize,
    #[comptime] nesterov: bool,
    #[comptime] projected: bool,
    #[comptime] write_back: bool,
) {
    let i = ABSOLUTE_POS;
    if i < p.len() {
        if skip[0] != 0u32 {
            p_out[i] = p[i];
            b_out[i] = b[i];
        } else {
            let gi = g[i];
            let bi = first::<N>(b[i], gi, rule);
            let u = direction::<N>(gi, bi, bi, rule, false, nesterov);
            if projected {
                let c = (i * N::value() / inner) % channels;
                let u = u - p[i] * Vector::new(coef[c]);
                if write_back {
                    b_out[i] = u;
                } else {
                    b_out[i] = bi;
                }
                p_out[i] = write::<N>(p[i], u, projected_factor(ratio[0], w), w.scale);
            } else {
                b_out[i] = bi;
                p_out[i] = write::<N>(p[i], u, w.decay_factor, w.scale);
            }
        }
    }
}

/// Launches SGDP's step on contiguous f32 tensors of one shape; returns `(p, b)`.
pub fn launch(
    p: CubeTensor,
    g: CubeTensor,
    b: CubeTensor,
    s: SgdScalars,
) -> (CubeTensor, CubeTensor) {
    let [p, g, b] = contiguous([p, g, b]);
    let rule = s.moments;
    let update = Update::new(
        [&p, &g, &b],
        [&b, &b],
        s.projection,
        s.skip_non_finite,
        rule,
        false,
        s.nesterov,
    );
    let run = &update.run;
    let [p_out, b_out] = run.outputs();
    let (coef, ratio, channels) = update.bindings(&p);
    sgd_step::launch(
        run.client(),
        run.count(),
        run.dim(),
        run.vector(),
        run.arg(&p),
        run.arg(&g),
        run.arg(&b),
        update.skip.arg(),
        coef,
        ratio,
        run.arg(&p_out),
        run.arg(&b_out),
        rule.launch(),
        s.write.launch(),
        channels.channels,
        channels.inner,
        s.nesterov,
        update.projects(),
        s.write_back,
    );
    (p_out, b_out)
}
