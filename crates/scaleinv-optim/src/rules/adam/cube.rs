//! Adam's step (width-scaled AdamW's, AdamC's, AdamP's) as CubeCL kernels: one launch for
//! the step, after one for the non-finite test under `Skip` or, for AdamP's projected
//! tensors, one for the projection's statistics (`projection`).
//!
//! ```text
//! launch 1 (Skip only)   read g: per block, flag ← 1 where an element is NaN or ±∞ (none for
//!                        a tensor of at most `ONE_CUBE` elements: its update, one cube,
//!                        tests g itself before it writes)
//! (AdamP, rank ≥ 2)      the channels' statistics (`projection`); every cube of the update
//!                        decides from them: k_c, the decay ratio r, the non-finite test
//! last launch            read g, flags (k_c, r); p, m, v in place (a copy first if shared):
//!                        some flag set: nothing written (under a wrapper's `Skip`, the
//!                                   moments step on g = 0, p is kept)
//!                        otherwise: m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
//!                                   u = m / (√v / √(1 − β2^t) + ε)   (`direction`)
//!                                   AdamP: u ← u − k_c·p,  f = r·(−ηλ) + 1
//!                                   p ← p·f − η/(1 − β1^t) · u
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

use super::Adam;
use super::tensor::MomentState;
use crate::engine::cube::launch::{contiguous, non_finite_test, writable};
use crate::engine::cube::{CubeStep, NonFiniteArgs, OnNonFinite, on_cube};
use crate::rules::arith::cube::{MomentArgs, first};
use crate::rules::decay::cube::{WriteArgs, projected_factor, write};
use crate::rules::projection::ScaleInvariance;
use crate::rules::projection::cube::{DecideArgs, Momentum, Update, decided, radial_removed};

/// The f32 scalars of one Adam step, computed on the host from `super` and `rules::decay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamScalars {
    /// Adam's moments and denominator at the step's count.
    pub moments: MomentArgs,
    /// The write of `p`: `1 − ηλ`, `−ηλ` and the step's scale `η / (1 − β1^t)`.
    pub write: WriteArgs,
    /// Whether a non-finite gradient skips the step (tested on the device), and whether a
    /// skipped step still steps the moments, on a zero gradient (a wrapper's `Skip`).
    pub non_finite: NonFiniteArgs,
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
            moments: moment_args(adam, time),
            write: WriteArgs::new(lr * weight_decay, lr / bc1),
            non_finite: NonFiniteArgs::policy(skip),
            nesterov: false,
            projection: None,
        }
    }

    /// The same step with a non-finite gradient treated as `on` says.
    pub fn on_non_finite(self, on: OnNonFinite) -> Self {
        let non_finite = self.non_finite.under(on);
        Self { non_finite, ..self }
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

/// Adam's scalars at step `time` (`super`): `(β1, 1 − β1, β2, 1 − β2, √(1 − β2^t), ε)`.
pub fn moment_args(adam: Adam, time: usize) -> MomentArgs {
    let (_, bc2) = adam.bias_corrections(time);
    MomentArgs {
        decay_1: adam.beta_1 as f32,
        weight_1: (1.0 - adam.beta_1) as f32,
        decay_2: adam.beta_2 as f32,
        weight_2: (1.0 - adam.beta_2) as f32,
        sqrt_bc2: bc2.sqrt() as f32,
        epsilon: adam.epsilon as f32,
    }
}

/// Adam's second moment after `g`, `v·β2 + g²·(1 − β2)` ([`Adam::second`]).
#[cube]
pub fn second<N: Size>(v: Vector<f32, N>, g: Vector<f32, N>, r: &MomentArgs) -> Vector<f32, N> {
    crate::rules::arith::cube::ema::<N>(v, g * g, r.decay_2, r.weight_2)
}

/// The update direction from the new moments `m`, `v` ([`Adam::denominator`] and
/// [`Adam::direction`]): `m / (√v / √(1 − β2^t) + ε)`, or AdamP's Nesterov form
/// `(β1·m + (1 − β1)·g) / denom`.
#[cube]
pub fn direction<N: Size>(
    g: Vector<f32, N>,
    m: Vector<f32, N>,
    v: Vector<f32, N>,
    r: &MomentArgs,
    #[comptime] nesterov: bool,
) -> Vector<f32, N> {
    let denom = Vector::sqrt(v) / Vector::new(r.sqrt_bc2) + Vector::new(r.epsilon);
    if nesterov {
        first::<N>(m, g, r) / denom
    } else {
        m / denom
    }
}

/// Adam's rule as the projection's kernels step it: the new moments from `(m, v)`, then
/// [`direction`].
pub struct AdamMomentum;

#[cube]
impl Momentum for AdamMomentum {
    fn direction<N: Size>(
        g: Vector<f32, N>,
        s1: Vector<f32, N>,
        s2: Vector<f32, N>,
        rule: &MomentArgs,
        #[comptime] nesterov: bool,
    ) -> Vector<f32, N> {
        let m = first::<N>(s1, g, rule);
        let v = second::<N>(s2, g, rule);
        direction::<N>(g, m, v, rule, nesterov)
    }
}

/// One Adam step per vector of `N` elements, in place (see the module's doc): nothing is
/// written when a flag of `flags[0..flag_count]` is set (`tested`; every cube of `units` units
/// finishes the flags for itself) or, for the one cube of a small tensor, when `g` holds NaN or
/// ±∞ (`tests_itself`); or only the moments on a zero gradient (`zeroing`).
/// `projected`: `u ← u − k_c·p` in channel `c` and the decay ratio, as `decided` holds them.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adam_update<N: Size>(
    p: &mut [Vector<f32, N>],
    g: &[Vector<f32, N>],
    m: &mut [Vector<f32, N>],
    v: &mut [Vector<f32, N>],
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
                let zero = Vector::<f32, N>::new(0.0f32);
                m[i] = first::<N>(m[i], zero, rule);
                v[i] = second::<N>(v[i], zero, rule);
            }
        } else {
            let gi = g[i];
            let mi = first::<N>(m[i], gi, rule);
            let vi = second::<N>(v[i], gi, rule);
            let u = direction::<N>(gi, mi, vi, rule, nesterov);
            m[i] = mi;
            v[i] = vi;
            if projected {
                let u = radial_removed::<N>(i, p[i], u, stats, &verdict, channels, inner, args);
                p[i] = write::<N>(p[i], u, projected_factor(verdict.ratio, w), w.scale);
            } else {
                p[i] = write::<N>(p[i], u, w.decay_factor, w.scale);
            }
        }
        i += stride;
    }
}

/// Launches Adam's step on f32 tensors of one shape; returns `(p, m, v)`, written in place
/// where no other tensor shares their buffers. AdamP's projection applies to tensors of rank
/// ≥ 2 (its channel axis an axis of them).
fn launch(
    p: CubeTensor,
    g: CubeTensor,
    m: CubeTensor,
    v: CubeTensor,
    s: AdamScalars,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let [p, g, m, v] = contiguous([p, g, m, v]);
    let [p, m, v] = [p, m, v].map(writable);
    let rule = s.moments;
    let update = Update::new::<AdamMomentum, 4>(
        [&p, &g, &m, &v],
        [&m, &v],
        s.projection,
        s.non_finite.skip,
        (rule, s.nesterov),
    );
    let run = &update.run;
    let (stats, channels, args) = update.bindings(&g);
    let (flags, flag_count) = update.skip.args(run, &g);
    adam_update::launch(
        run.client(),
        run.count(),
        run.dim(),
        run.vector(),
        run.arg(&p),
        run.arg(&g),
        run.arg(&m),
        run.arg(&v),
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
    );
    (p, m, v)
}

impl<const D: usize> MomentState<D> {
    /// One Adam-type step as the CubeCL kernels: the moments (zeros before the first step)
    /// and the parameter go through [`AdamKernel::adam_step`] with the scalars of step `t`.
    /// `Err` hands the inputs back when a tensor does not fit the kernels.
    pub(crate) fn on_cube(
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self>,
        scalars: impl FnOnce(usize) -> AdamScalars,
    ) -> CubeStep<D, Self> {
        let state_tensors = state.iter().flat_map(|s| s.tensors());
        if !crate::engine::fits::fit(&param, &grad, state_tensors, on_cube) {
            return Err(Box::new((param, grad, state)));
        }
        let (time, m, v) = match state {
            Some(s) => (s.time + 1, s.moment_1, s.moment_2),
            None => (1, grad.zeros_like(), grad.zeros_like()),
        };
        let (param, moment_1, moment_2) = adam_step(param, grad, m, v, scalars(time));
        let state = MomentState {
            time,
            moment_1,
            moment_2,
        };
        Ok((param, Some(state)))
    }
}

/// Adam's step as an operation of Burn's CubeCL backend (and of fusion around it): registered
/// lazily like any other operation, run on the `CubeTensor` handles when the stream flushes.
#[backend_extension(Cube: cfg(feature = "wgpu"), Fusion: cfg(feature = "wgpu"))]
pub trait AdamKernel: burn::backend::Backend {
    /// Adam's step (see the module's doc): the new `(p, m, v)`.
    #[fusion(meta = |p, _g, m, v, _s| (p.clone(), m.clone(), v.clone()))]
    fn adam_step(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        s: AdamScalars,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl AdamKernel for CubeBackend {
    fn adam_step(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        s: AdamScalars,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        launch(p, g, m, v, s)
    }
}

/// Adam's step on a CubeCL device: the new parameter and moments.
fn adam_step<const D: usize>(
    p: Tensor<D>,
    g: Tensor<D>,
    m: Tensor<D>,
    v: Tensor<D>,
    s: AdamScalars,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (p, m, v) = Dispatch::adam_step(
        p.into_dispatch(),
        g.into_dispatch(),
        m.into_dispatch(),
        v.into_dispatch(),
        s,
    );
    (
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m),
        Tensor::from_dispatch(v),
    )
}

/// Adam's forms above against [`Adam::second`], [`Adam::denominator`] and [`Adam::direction`]
/// on wgpu, element by element.
#[cfg(test)]
mod parity {
    use burn::cubecl;
    use burn::cubecl::prelude::*;

    use super::{Adam, AdamMomentum, MomentArgs, direction, moment_args, second};
    use crate::engine::cube::parity::{Gpu, assert_close, inputs};
    use crate::rules::projection::cube::Momentum;

    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    fn moments<N: Size>(
        g: &[Vector<f32, N>],
        m: &[Vector<f32, N>],
        v: &[Vector<f32, N>],
        out_second: &mut [Vector<f32, N>],
        out_direction: &mut [Vector<f32, N>],
        out_momentum: &mut [Vector<f32, N>],
        rule: &MomentArgs,
        #[comptime] nesterov: bool,
    ) {
        let i = ABSOLUTE_POS;
        if i < g.len() {
            out_second[i] = second::<N>(v[i], g[i], rule);
            out_direction[i] = direction::<N>(g[i], m[i], v[i], rule, nesterov);
            out_momentum[i] = AdamMomentum::direction::<N>(g[i], m[i], v[i], rule, nesterov);
        }
    }

    #[test]
    fn adams_moments_and_direction_match_their_formulas() {
        let Some(gpu) = Gpu::get() else { return };
        let n = 1024;
        let (g, m, v) = (
            inputs(n, 8, false),
            inputs(n, 9, false),
            inputs(n, 10, true),
        );
        let (hg, hm, hv) = (gpu.upload(&g), gpu.upload(&m), gpu.upload(&v));
        let adams = [
            (
                Adam {
                    beta_1: 0.9,
                    beta_2: 0.999,
                    epsilon: 1e-8,
                },
                1,
            ),
            (
                Adam {
                    beta_1: 0.9,
                    beta_2: 0.999,
                    epsilon: 1e-8,
                },
                1000,
            ),
            (
                Adam {
                    beta_1: 0.5,
                    beta_2: 0.9,
                    epsilon: 1e-3,
                },
                7,
            ),
            (
                Adam {
                    beta_1: 0.0,
                    beta_2: 0.0,
                    epsilon: 0.0,
                },
                3,
            ),
        ];
        for (adam, time) in adams {
            for nesterov in [false, true] {
                let outs = [gpu.empty(n), gpu.empty(n), gpu.empty(n)];
                let (count, dim) = gpu.elementwise(n / 4);
                moments::launch(
                    &gpu.client,
                    count,
                    dim,
                    4,
                    gpu.arg(&hg, n),
                    gpu.arg(&hm, n),
                    gpu.arg(&hv, n),
                    gpu.arg(&outs[0], n),
                    gpu.arg(&outs[1], n),
                    gpu.arg(&outs[2], n),
                    moment_args(adam, time).launch(),
                    nesterov,
                );
                let [out_second, out_direction, out_momentum] = outs;
                let (_, bc2) = adam.bias_corrections(time);
                let u = |g: f32, m: f32, v: f32| {
                    adam.direction(m, g, adam.denominator(v, bc2), nesterov)
                };
                let input = |i: usize| {
                    format!(
                        "g {:e}, m {:e}, v {:e}, {adam:?} t={time}",
                        g[i], m[i], v[i]
                    )
                };
                let want: Vec<f32> = (0..n).map(|i| adam.second(v[i], g[i])).collect();
                assert_close("Adam's second moment", &gpu.read(out_second), &want, input);
                let want: Vec<f32> = (0..n).map(|i| u(g[i], m[i], v[i])).collect();
                assert_close("Adam's direction", &gpu.read(out_direction), &want, input);
                let want: Vec<f32> = (0..n)
                    .map(|i| u(g[i], adam.first(m[i], g[i]), adam.second(v[i], g[i])))
                    .collect();
                assert_close("Adam's momentum", &gpu.read(out_momentum), &want, input);
            }
        }
    }
}
