//! SGDP's step as CubeCL kernels: one launch for the step, after one for the non-finite test
//! under `Skip` or, for a tensor of rank ≥ 2, one for the projection's statistics
//! (`projection`).
//!
//! ```text
//! launch 1 (Skip only)   read g: per block, flag ← 1 where an element is NaN or ±∞ (none for
//!                        a tensor of at most `ONE_CUBE` elements: its update, one cube,
//!                        tests g itself before it writes)
//! (rank ≥ 2)             the channels' statistics (`projection`); every cube of the update
//!                        decides from them: k_c, the decay ratio r, the non-finite test
//! last launch            read g, flags (k_c, r); p, b in place (a copy first if shared):
//!                        some flag set: nothing written (under a wrapper's `Skip`, the
//!                                   buffer steps on g = 0, p is kept; no write-back)
//!                        otherwise: b ← μ·b + (1 − τ)·g ;  u = b (Nesterov: g + μ·b)  (`rule`)
//!                                   u ← u − k_c·p ;  b ← u (write-back, not Nesterov)
//!                                   p ← p·(r·(−ηλ/(1 − μ)) + 1) − η·u
//! ```
//!
//! The f32 scalars are the flex loops' (`flex`), computed on the host from `super` and
//! `rules::decay`.

use burn::backend::wgpu::CubeTensor;
use burn::cubecl;
use burn::cubecl::prelude::*;

use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeBackend;
use burn::backend::{Dispatch, backend_extension};
use burn::tensor::Tensor;

use crate::engine::cube::launch::{contiguous, non_finite_test, writable};
use crate::engine::cube::{NonFiniteArgs, OnNonFinite};
use crate::rules::arith::cube::{MomentArgs, first};
use crate::rules::decay::cube::{WriteArgs, projected_factor, write};
use crate::rules::projection::ScaleInvariance;
use crate::rules::projection::cube::{DecideArgs, Momentum, Update, decided, radial_removed};

/// The f32 scalars of one SGDP step, computed on the host from `super` and `rules::decay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdScalars {
    /// μ and 1 − τ.
    pub moments: MomentArgs,
    /// The write of `p`: `1 − rate`, `−rate` and η, with `rate = ηλ/(1 − μ)`.
    pub write: WriteArgs,
    pub nesterov: bool,
    /// Write the projected update back into the buffer.
    pub write_back: bool,
    /// Whether a non-finite gradient skips the step, and whether a skipped step still steps
    /// the buffer on a zero gradient (a wrapper's `Skip`; not with the write-back of a
    /// projected tensor).
    pub non_finite: NonFiniteArgs,
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
            moments: moment_args(momentum, dampening),
            write: WriteArgs::new(decay_rate, lr),
            nesterov,
            write_back,
            non_finite: NonFiniteArgs::policy(skip),
            projection,
        }
    }

    /// The same step with a non-finite gradient treated as `on` says.
    pub fn on_non_finite(self, on: OnNonFinite) -> Self {
        let non_finite = self.non_finite.under(on);
        Self { non_finite, ..self }
    }
}

/// SGD's `(μ, 1 − τ)` (`super`); the other scalars are unread.
pub fn moment_args(momentum: f64, dampening: f64) -> MomentArgs {
    MomentArgs {
        decay_1: momentum as f32,
        weight_1: (1.0 - dampening) as f32,
        decay_2: 0.0,
        weight_2: 0.0,
        sqrt_bc2: 1.0,
        epsilon: 0.0,
    }
}

/// The update direction from the new buffer `b` ([`super::direction`]): `b`, or `g + μ·b`
/// with Nesterov.
#[cube]
pub fn direction<N: Size>(
    g: Vector<f32, N>,
    b: Vector<f32, N>,
    r: &MomentArgs,
    #[comptime] nesterov: bool,
) -> Vector<f32, N> {
    if nesterov {
        g + b * Vector::new(r.decay_1)
    } else {
        b
    }
}

/// SGD's rule as the projection's kernels step it: the new buffer from `b`, then
/// [`direction`].
pub struct SgdMomentum;

#[cube]
impl Momentum for SgdMomentum {
    fn direction<N: Size>(
        g: Vector<f32, N>,
        s1: Vector<f32, N>,
        _s2: Vector<f32, N>,
        rule: &MomentArgs,
        #[comptime] nesterov: bool,
    ) -> Vector<f32, N> {
        let b = first::<N>(s1, g, rule);
        direction::<N>(g, b, rule, nesterov)
    }
}

/// One SGDP step per vector of `N` elements, in place (see the module's doc): nothing is
/// written when a flag of `flags[0..flag_count]` is set (`tested`; every cube of `units` units
/// finishes the flags for itself) or, for the one cube of a small tensor, when `g` holds NaN or
/// ±∞ (`tests_itself`); or only the buffer on a zero gradient (`zeroing`).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn sgd_update<N: Size>(
    p: &mut [Vector<f32, N>],
    g: &[Vector<f32, N>],
    b: &mut [Vector<f32, N>],
    flags: &[f32],
    stats: &[f32],
    rule: &MomentArgs,
    w: &WriteArgs,
    args: &DecideArgs,
    flag_count: usize,
    channels: usize,
    inner: usize,
    #[comptime] units: usize,
    #[comptime] tested: bool,
    #[comptime] tests_itself: bool,
    #[comptime] decision_tests: bool,
    #[comptime] zeroing: bool,
    #[comptime] nesterov: bool,
    #[comptime] projected: bool,
    #[comptime] write_back: bool,
) {
    let verdict = decided(stats, channels, args, units, projected);
    let mut skip = non_finite_test::<N>(g, flags, flag_count, units, tested, tests_itself);
    if decision_tests {
        skip = skip || verdict.non_finite;
    }
    // One vector per unit, or every `units`-th for the one cube of a small tensor.
    let stride = CUBE_COUNT * units;
    let mut i = ABSOLUTE_POS;
    while i < p.len() {
        if skip {
            if zeroing {
                b[i] = first::<N>(b[i], Vector::<f32, N>::new(0.0f32), rule);
            }
        } else {
            let gi = g[i];
            let bi = first::<N>(b[i], gi, rule);
            let u = direction::<N>(gi, bi, rule, nesterov);
            if projected {
                let u = radial_removed::<N>(i, p[i], u, stats, &verdict, channels, inner, args);
                if write_back {
                    b[i] = u;
                } else {
                    b[i] = bi;
                }
                p[i] = write::<N>(p[i], u, projected_factor(verdict.ratio, w), w.scale);
            } else {
                b[i] = bi;
                p[i] = write::<N>(p[i], u, w.decay_factor, w.scale);
            }
        }
        i += stride;
    }
}

/// Launches SGDP's step on f32 tensors of one shape; returns `(p, b)`, written in place where
/// no other tensor shares their buffers.
fn launch(p: CubeTensor, g: CubeTensor, b: CubeTensor, s: SgdScalars) -> (CubeTensor, CubeTensor) {
    let [p, g, b] = contiguous([p, g, b]);
    let [p, b] = [p, b].map(writable);
    let rule = s.moments;
    let update = Update::new::<SgdMomentum, 3>(
        [&p, &g, &b],
        [&b, &b],
        s.projection,
        s.non_finite.skip,
        (rule, s.nesterov),
    );
    let run = &update.run;
    let (stats, channels, args) = update.bindings(&g);
    let (flags, flag_count) = update.skip.args(run, &g);
    sgd_update::launch(
        run.client(),
        run.count(),
        run.dim(),
        run.vector(),
        run.arg(&p),
        run.arg(&g),
        run.arg(&b),
        flags,
        stats,
        rule.launch(),
        s.write.launch(),
        args,
        flag_count,
        channels.count,
        channels.inner,
        run.units(),
        update.skip.tested(),
        update.skip.by_the_update(),
        update.skip.by_the_decision(),
        s.non_finite.zero_gradient,
        s.nesterov,
        update.projects(),
        s.write_back,
    );
    (p, b)
}

/// SGDP's step as an operation of Burn's CubeCL backend (and of fusion around it).
#[backend_extension(Cube: cfg(feature = "wgpu"), Fusion: cfg(feature = "wgpu"))]
pub trait SgdKernel: burn::backend::Backend {
    /// SGDP's step (see the module's doc): the new `(p, b)`.
    #[fusion(meta = |p, _g, b, _s| (p.clone(), b.clone()))]
    fn sgd_step(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        b: FloatTensor<Self>,
        s: SgdScalars,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl SgdKernel for CubeBackend {
    fn sgd_step(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        b: FloatTensor<Self>,
        s: SgdScalars,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        launch(p, g, b, s)
    }
}

/// SGDP's step on a CubeCL device: the new parameter and buffer.
pub(crate) fn sgd_step<const D: usize>(
    p: Tensor<D>,
    g: Tensor<D>,
    b: Tensor<D>,
    s: SgdScalars,
) -> (Tensor<D>, Tensor<D>) {
    let (p, b) = Dispatch::sgd_step(p.into_dispatch(), g.into_dispatch(), b.into_dispatch(), s);
    (Tensor::from_dispatch(p), Tensor::from_dispatch(b))
}

/// SGD's forms above against [`super::buffer`] and [`super::direction`] on wgpu, element by
/// element.
#[cfg(test)]
mod parity {
    use burn::cubecl;
    use burn::cubecl::prelude::*;

    use super::{MomentArgs, SgdMomentum, direction, moment_args};
    use crate::engine::cube::parity::{Gpu, assert_close, inputs};
    use crate::rules::projection::cube::Momentum;
    use crate::rules::sgd;

    #[cube(launch)]
    fn buffers<N: Size>(
        g: &[Vector<f32, N>],
        b: &[Vector<f32, N>],
        out_direction: &mut [Vector<f32, N>],
        out_momentum: &mut [Vector<f32, N>],
        rule: &MomentArgs,
        #[comptime] nesterov: bool,
    ) {
        let i = ABSOLUTE_POS;
        if i < g.len() {
            out_direction[i] = direction::<N>(g[i], b[i], rule, nesterov);
            out_momentum[i] = SgdMomentum::direction::<N>(g[i], b[i], b[i], rule, nesterov);
        }
    }

    #[test]
    fn sgds_buffer_and_direction_match_their_formulas() {
        let Some(gpu) = Gpu::get() else { return };
        let n = 1024;
        let (g, b) = (inputs(n, 11, false), inputs(n, 12, false));
        let (hg, hb) = (gpu.upload(&g), gpu.upload(&b));
        for (momentum, dampening) in [(0.9, 0.0), (0.5, 0.5), (0.0, 0.0), (0.99, 0.1)] {
            for nesterov in [false, true] {
                let outs = [gpu.empty(n), gpu.empty(n)];
                let (count, dim) = gpu.elementwise(n / 4);
                buffers::launch(
                    &gpu.client,
                    count,
                    dim,
                    4,
                    gpu.arg(&hg, n),
                    gpu.arg(&hb, n),
                    gpu.arg(&outs[0], n),
                    gpu.arg(&outs[1], n),
                    moment_args(momentum, dampening).launch(),
                    nesterov,
                );
                let [out_direction, out_momentum] = outs;
                let input =
                    |i: usize| format!("g {:e}, b {:e}, μ {momentum}, τ {dampening}", g[i], b[i]);
                let want: Vec<f32> = (0..n)
                    .map(|i| sgd::direction(g[i], b[i], momentum, nesterov))
                    .collect();
                assert_close("SGD's direction", &gpu.read(out_direction), &want, input);
                let want: Vec<f32> = (0..n)
                    .map(|i| {
                        let b = sgd::buffer(b[i], sgd::damped(g[i], dampening), momentum);
                        sgd::direction(g[i], b, momentum, nesterov)
                    })
                    .collect();
                assert_close("SGD's momentum", &gpu.read(out_momentum), &want, input);
            }
        }
    }
}
