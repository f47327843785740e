//! Stable-SPAM's step as CubeCL kernels: three launches and no host read. The per-tensor
//! statistics are reduced by at most 64 blocks; every cube of the next launch finishes the
//! blocks' partial results for itself (in block order: the same bits in every cube), so no
//! launch exists only to finish a reduction.
//!
//! ```text
//! launch 1, blocks   read g: max|g| per block
//! launch 2, blocks   every cube: max|g|; AdaClip M ← θ·M + (1 − θ)·max|g|,
//!                    limit M̂ = M / (1 − θ^t), scale M̂ / max|g|;
//!                    read g: Σ clip(g)² per block   (clip: |g_i| > M̂ scaled by M̂ / max|g|);
//!                    the first unit copies the old M, μ, ν beside the blocks' results
//! launch 3           every cube: AdaClip as in launch 2; n = √Σ; AdaGN
//!                    μ ← γ1·μ + (1 − γ1)·n, ν ← γ2·ν + (1 − γ2)·n²,
//!                    factor μ̂ / (√ν̂ + ε) / n (1 when n = 0), all from the copies; under
//!                    Skip a non-finite n skips the step and keeps M, μ, ν; the first unit
//!                    writes the new M, μ, ν in place;
//!                    p, m, v (v̄) in place (a copy first if shared):
//!                    g ← clip(g)·factor; Adam's moments (AMSGrad: v̄ ← max(v̄, v));
//!                    p ← p·(1 − ηλ) − η/(1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
//!                    (nothing written when the step is skipped)
//! ```
//!
//! A tensor of at most `ONE_CUBE` elements (a bias, a norm's scale) is stepped by one cube in
//! one launch: `max|g|` and `Σ clip(g)²` reduced in the cube, the statistics and the update
//! as in launch 3 (the same kernel), one vector of scratch without AMSGrad.
//!
//! Scratch from the pool: the blocks' `max|g|`, and `[Σ clip(g)² per block | M, μ, ν]`.
//! Every cube of launch 3 reads the old statistics from the copies, so the one that writes
//! the new ones in place races with none.
//!
//! The f32 scalars are the flex loops' (`flex`), from `super` and `rules::adam` on the host.

use burn::backend::wgpu::CubeTensor;
use burn::cubecl;
use burn::cubecl::prelude::*;

use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeBackend;
use burn::backend::{Dispatch, backend_extension};
use burn::tensor::Tensor;

use super::SpikeStep;
use crate::engine::cube::launch::{Blocks, Launch, ONE_CUBE, contiguous, writable};
use crate::engine::cube::reduce::{finish_in_cube, lane_max, lane_sum, tree};
use crate::rules::adam::cube::{direction, moment_args, second};
use crate::rules::arith::cube::{MomentArgs, first, ratio};
use crate::rules::decay::cube::{WriteArgs, write};

/// The f32 scalars of one Stable-SPAM step, computed on the host (β1 and γ1 already scaled by
/// the cosine multiplier, the bias corrections at the step's counts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpikeScalars {
    clip: ClipArgs,
    norm: NormArgs,
    /// Adam's moments at the step's count, and the write of `p`.
    adam: MomentArgs,
    write: WriteArgs,
    amsgrad: bool,
    /// The moments start from zeros at this step (a clean reset).
    zero_moments: bool,
}

impl SpikeScalars {
    /// The scalars of `step` (`super`'s formulas, in f32 as the flex loops use them).
    pub fn new(step: &SpikeStep, amsgrad: bool) -> Self {
        let (bc1, _) = step.adam.bias_corrections(step.adam_time);
        Self {
            clip: ClipArgs::new(step.theta, step.time),
            norm: NormArgs::new(
                (step.gamma_1, step.gamma_2),
                step.adam.epsilon,
                step.time,
                step.skip_non_finite,
            ),
            adam: moment_args(step.adam, step.adam_time),
            write: WriteArgs::new(step.lr * step.weight_decay, step.lr / bc1),
            amsgrad,
            zero_moments: step.reset && step.clean_reset,
        }
    }
}

/// A bias correction `1 − decay^t` in f32.
fn correction(decay: f64, time: usize) -> f32 {
    (1.0 - decay.powi(time as i32)) as f32
}

impl ClipArgs {
    /// AdaClip's scalars for decay `θ` at count `t`.
    fn new(theta: f64, time: usize) -> Self {
        Self {
            theta: theta as f32,
            one_minus_theta: (1.0 - theta) as f32,
            theta_bc: correction(theta, time),
        }
    }

    fn launch(self) -> ClipArgsLaunch {
        ClipArgsLaunch::new(self.theta, self.one_minus_theta, self.theta_bc)
    }
}

impl NormArgs {
    /// AdaGN's scalars for the decays `(γ1, γ2)` and `ε` at count `t`.
    fn new((gamma_1, gamma_2): (f64, f64), epsilon: f64, time: usize, skip: bool) -> Self {
        Self {
            gamma_1: gamma_1 as f32,
            one_minus_gamma_1: (1.0 - gamma_1) as f32,
            gamma_1_bc: correction(gamma_1, time),
            gamma_2: gamma_2 as f32,
            one_minus_gamma_2: (1.0 - gamma_2) as f32,
            gamma_2_bc: correction(gamma_2, time),
            epsilon: epsilon as f32,
            skip_non_finite: u32::from(skip),
        }
    }

    fn launch(self) -> NormArgsLaunch {
        NormArgsLaunch::new(
            self.gamma_1,
            self.one_minus_gamma_1,
            self.gamma_1_bc,
            self.gamma_2,
            self.one_minus_gamma_2,
            self.gamma_2_bc,
            self.epsilon,
            self.skip_non_finite,
        )
    }
}

/// AdaClip's scalars: `θ`, `1 − θ`, `1 − θ^t`.
#[derive(CubeLaunch, CubeType, Debug, Clone, Copy, PartialEq)]
pub struct ClipArgs {
    theta: f32,
    one_minus_theta: f32,
    theta_bc: f32,
}

/// AdaGN's scalars: `γ1`, `1 − γ1`, `1 − γ1^t`, `γ2`, `1 − γ2`, `1 − γ2^t`, `ε`.
#[derive(CubeLaunch, CubeType, Debug, Clone, Copy, PartialEq)]
pub struct NormArgs {
    gamma_1: f32,
    one_minus_gamma_1: f32,
    gamma_1_bc: f32,
    gamma_2: f32,
    one_minus_gamma_2: f32,
    gamma_2_bc: f32,
    epsilon: f32,
    /// 1: a non-finite norm skips the step.
    skip_non_finite: u32,
}

/// AdaClip on the device: the new average `M`, the limit `M̂` and the scale `M̂ / max|g|`
/// ([`super::clip_limit`], [`super::spike_scale`]).
#[cube]
pub fn ada_clip(average: f32, max_abs: f32, args: &ClipArgs) -> (f32, f32, f32) {
    let avg = average * args.theta + max_abs * args.one_minus_theta;
    let limit = avg / args.theta_bc;
    (avg, limit, ratio(limit, max_abs))
}

/// AdaGN on the device: the new averages `(μ, ν)` of the norm `n` and the factor on the
/// gradient, `μ̂ / (√ν̂ + ε) / n`, 1 where `n ≤ 0` ([`super::norm_averages`],
/// [`super::target_norm`], [`super::rescale`]).
#[cube]
pub fn ada_gn(mean: f32, sq_mean: f32, n: f32, args: &NormArgs) -> (f32, f32, f32) {
    let mu = mean * args.gamma_1 + n * args.one_minus_gamma_1;
    let nu = sq_mean * args.gamma_2 + (n * n) * args.one_minus_gamma_2;
    let target = (mu / args.gamma_1_bc) / (f32::sqrt(nu / args.gamma_2_bc) + args.epsilon);
    (mu, nu, select(n <= 0.0, 1.0f32, ratio(target, n)))
}

/// AdaClip's clipped element: `g·scale` where `|g| > limit`.
#[cube]
fn clip<N: Size>(g: Vector<f32, N>, limit: f32, scale: f32) -> Vector<f32, N> {
    let spikes = Vector::abs(g).greater_than(&Vector::new(limit));
    select_many(spikes, g * Vector::new(scale), g)
}

/// Launches 1 and 2: per block, into `partial[first + b]`, `max|g|` (`squares` false:
/// `limit` and `scale` unread) or `Σ clip(g)²` under AdaClip's `limit` and `scale`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn block_reduce<N: Size>(
    g: &[Vector<f32, N>],
    partial: &mut [f32],
    first: usize,
    limit: f32,
    scale: f32,
    #[comptime] units: usize,
    #[comptime] squares: bool,
) {
    let reduced = cube_reduce::<N>(g, limit, scale, units, squares);
    if UNIT_POS == 0 {
        partial[first + CUBE_POS] = reduced;
    }
}

/// This cube's `max|g|` or `Σ clip(g)²` (see [`block_reduce`]) over its strided share of `g`
/// (all of it when the launch is one cube), for every unit.
#[cube]
fn cube_reduce<N: Size>(
    g: &[Vector<f32, N>],
    limit: f32,
    scale: f32,
    #[comptime] units: usize,
    #[comptime] squares: bool,
) -> f32 {
    let unit = UNIT_POS as usize;
    let stride = CUBE_COUNT * units;
    let mut acc = Vector::new(0.0f32);
    let mut j = CUBE_POS * units + unit;
    while j < g.len() {
        if squares {
            let x = clip::<N>(g[j], limit, scale);
            acc += x * x;
        } else {
            acc = <Vector<f32, N> as FloatOps>::max(acc, Vector::abs(g[j]));
        }
        j += stride;
    }
    let mut shared = Shared::<[Vector<f32, N>]>::new_slice(units);
    shared[unit] = acc;
    tree::<N>(&mut shared, 1usize, units, squares);
    if squares {
        lane_sum::<N>(shared[0])
    } else {
        lane_max::<N>(shared[0])
    }
}

/// Launch 1: `max|g|` per block.
#[cube(launch)]
fn block_max<N: Size>(g: &[Vector<f32, N>], partial: &mut [f32], #[comptime] units: usize) {
    block_reduce::<N>(g, partial, 0usize, 0.0f32, 0.0f32, units, false);
}

/// AdaClip's `(M, M̂, M̂ / max|g|)` from the blocks' `max|g|` and the old average `average`,
/// finished by the cube of `units` units (every unit calls it).
#[cube]
fn clipping(
    maxima: &[f32],
    blocks: usize,
    average: f32,
    args: &ClipArgs,
    #[comptime] units: usize,
) -> (f32, f32, f32) {
    let max_abs = finish_in_cube(maxima, 0usize, blocks, units, false);
    ada_clip(average, max_abs, args)
}

/// Launch 2: AdaClip, then `Σ clip(g)²` per block into `squares[b]`; the first unit copies
/// the old `M, μ, ν` to `squares[blocks..]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn block_clipped_squares<N: Size>(
    g: &[Vector<f32, N>],
    maxima: &[f32],
    squares: &mut [f32],
    blocks: usize,
    average: &[f32],
    mean: &[f32],
    sq_mean: &[f32],
    args: &ClipArgs,
    #[comptime] units: usize,
) {
    let (_, limit, scale) = clipping(maxima, blocks, average[0], args, units);
    block_reduce::<N>(g, squares, 0usize, limit, scale, units, true);
    if ABSOLUTE_POS == 0 {
        squares[blocks] = average[0];
        squares[blocks + 1] = mean[0];
        squares[blocks + 2] = sq_mean[0];
    }
}

/// Launch 3: the statistics (see the module's doc) from the blocks' results and the copies,
/// written in place by the first unit, then the moments and the parameter in place; `max_v`
/// is scratch without AMSGrad. `one_cube`: the whole step of a tensor of at most `ONE_CUBE`
/// elements in this one cube, `max|g|` and `Σ clip(g)²` reduced here from `g` and the old
/// statistics read by every unit before the first writes the new ones (the reductions'
/// barriers come between); `maxima` and `squares` are then unread.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn spike_update<N: Size>(
    p: &mut [Vector<f32, N>],
    g: &[Vector<f32, N>],
    m: &mut [Vector<f32, N>],
    v: &mut [Vector<f32, N>],
    max_v: &mut [Vector<f32, N>],
    maxima: &[f32],
    squares: &[f32],
    blocks: usize,
    clip_average: &mut [f32],
    mean: &mut [f32],
    sq_mean: &mut [f32],
    clip_args: &ClipArgs,
    norm_args: &NormArgs,
    rule: &MomentArgs,
    w: &WriteArgs,
    #[comptime] units: usize,
    #[comptime] amsgrad: bool,
    #[comptime] zero_moments: bool,
    #[comptime] one_cube: bool,
) {
    let (old_average, old_mean, old_sq_mean) = if one_cube {
        (clip_average[0], mean[0], sq_mean[0])
    } else {
        (squares[blocks], squares[blocks + 1], squares[blocks + 2])
    };
    let max_abs = if one_cube {
        cube_reduce::<N>(g, 0.0f32, 0.0f32, units, false)
    } else {
        finish_in_cube(maxima, 0usize, blocks, units, false)
    };
    let (avg, limit, scale) = ada_clip(old_average, max_abs, clip_args);
    let sum = if one_cube {
        cube_reduce::<N>(g, limit, scale, units, true)
    } else {
        finish_in_cube(squares, 0usize, blocks, units, true)
    };
    let n = f32::sqrt(sum);
    let (mu, nu, factor) = ada_gn(old_mean, old_sq_mean, n, norm_args);
    let skip = norm_args.skip_non_finite == 1u32 && (n.is_nan() || n.is_inf());
    if ABSOLUTE_POS == 0 && !skip {
        clip_average[0] = avg;
        mean[0] = mu;
        sq_mean[0] = nu;
    }
    // One vector per unit, or every `units`-th for the one cube of a small tensor.
    let stride = CUBE_COUNT * units;
    let mut i = ABSOLUTE_POS;
    while i < p.len() && !skip {
        let gi = clip::<N>(g[i], limit, scale) * Vector::new(factor);
        spike_element::<N>(i, gi, p, m, v, max_v, rule, w, amsgrad, zero_moments);
        i += stride;
    }
}

/// Adam's moments (from zeros with `zero_moments`; AMSGrad's maximum) and the write of `p` at
/// vector `i`, on the clipped and rescaled gradient `gi`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn spike_element<N: Size>(
    i: usize,
    gi: Vector<f32, N>,
    p: &mut [Vector<f32, N>],
    m: &mut [Vector<f32, N>],
    v: &mut [Vector<f32, N>],
    max_v: &mut [Vector<f32, N>],
    rule: &MomentArgs,
    w: &WriteArgs,
    #[comptime] amsgrad: bool,
    #[comptime] zero_moments: bool,
) {
    let mut m0 = m[i];
    let mut v0 = v[i];
    if zero_moments {
        m0 = Vector::new(0.0f32);
        v0 = Vector::new(0.0f32);
    }
    let mi = first::<N>(m0, gi, rule);
    let vi = second::<N>(v0, gi, rule);
    m[i] = mi;
    v[i] = vi;
    let mut denom_v = vi;
    if amsgrad {
        denom_v = <Vector<f32, N> as FloatOps>::max(max_v[i], vi);
        max_v[i] = denom_v;
    }
    let u = direction::<N>(gi, mi, denom_v, rule, false);
    p[i] = write::<N>(p[i], u, w.decay_factor, w.scale);
}

/// The new parameter and state of a Stable-SPAM step.
struct SpikeOutputs {
    pub p: CubeTensor,
    pub m: CubeTensor,
    pub v: CubeTensor,
    /// AMSGrad's running maximum (`max_v` as given without AMSGrad).
    pub max_v: CubeTensor,
    pub clip_average: CubeTensor,
    pub norm_mean: CubeTensor,
    pub norm_sq_mean: CubeTensor,
}

/// Launches Stable-SPAM's step (see the module's doc) on f32 tensors: `p`, `g`, `m`, `v`,
/// `max_v` of one shape (`max_v` unread without AMSGrad), the statistics of shape `[1]`. The
/// parameter and the state are written in place where no other tensor shares their buffers;
/// the statistics, which every cube reads from the scratch's copies, too.
fn launch(
    [p, g, m, v, max_v]: [CubeTensor; 5],
    [clip_average, norm_mean, norm_sq_mean]: [CubeTensor; 3],
    s: SpikeScalars,
) -> SpikeOutputs {
    let [p, g, m, v, max_v] = contiguous([p, g, m, v, max_v]);
    let [p, m, v] = [p, m, v].map(writable);
    let [clip_average, norm_mean, norm_sq_mean] =
        contiguous([clip_average, norm_mean, norm_sq_mean]).map(writable);
    let max_v = if s.amsgrad { writable(max_v) } else { max_v };
    let run = Launch::new([&p, &g, &m, &v, &max_v]).strided_with_barriers();
    let client = &run.client().clone();
    // Without AMSGrad one vector of scratch fills the maximum's binding.
    let unwritten = client.empty(run.vector() * size_of::<f32>());
    let max_v_arg = match s.amsgrad {
        true => run.arg(&max_v),
        false => run.floats(&unwritten, run.vector()),
    };
    // A small tensor: one cube, its reductions in the cube (the blocks' bindings unread, the
    // gradient fills them, read-only here too). Otherwise the blocks' launches 1 and 2.
    let one_cube = run.elements() <= ONE_CUBE;
    let (run, maxima, squares, blocks) = if one_cube {
        let unread = || (g.handle.clone(), 1);
        (run.one_cube(), unread(), unread(), 0)
    } else {
        let blocks = Blocks::few(client, p.meta.num_elements() / run.vector());
        // [Σ clip(g)² per block | the old M, μ, ν].
        let squares_len = blocks.count + 3;
        let squares = client.empty(squares_len * size_of::<f32>());
        block_max::launch(
            client,
            blocks.cubes(),
            blocks.dim(),
            run.vector(),
            run.arg(&g),
            blocks.partial(),
            blocks.units,
        );
        block_clipped_squares::launch(
            client,
            blocks.cubes(),
            blocks.dim(),
            run.vector(),
            run.arg(&g),
            blocks.partial(),
            run.floats(&squares, squares_len),
            blocks.count,
            run.floats(&clip_average.handle, 1),
            run.floats(&norm_mean.handle, 1),
            run.floats(&norm_sq_mean.handle, 1),
            s.clip.launch(),
            blocks.units,
        );
        let maxima = (blocks.partial.clone(), blocks.count);
        (run, maxima, (squares, squares_len), blocks.count)
    };
    spike_update::launch(
        client,
        run.count(),
        run.dim(),
        run.vector(),
        run.arg(&p),
        run.arg(&g),
        run.arg(&m),
        run.arg(&v),
        max_v_arg,
        run.floats(&maxima.0, maxima.1),
        run.floats(&squares.0, squares.1),
        blocks,
        run.floats(&clip_average.handle, 1),
        run.floats(&norm_mean.handle, 1),
        run.floats(&norm_sq_mean.handle, 1),
        s.clip.launch(),
        s.norm.launch(),
        s.adam.launch(),
        s.write.launch(),
        run.units(),
        s.amsgrad,
        s.zero_moments,
        one_cube,
    );
    SpikeOutputs {
        p,
        m,
        v,
        max_v,
        clip_average,
        norm_mean,
        norm_sq_mean,
    }
}

/// Stable-SPAM's step as an operation of Burn's CubeCL backend (and of fusion around it).
#[backend_extension(Cube: cfg(feature = "wgpu"), Fusion: cfg(feature = "wgpu"))]
pub trait SpikeKernel: burn::backend::Backend {
    /// Stable-SPAM's step (see the module's doc): the new `(p, m, v, v̄, M, μ, ν)` (`v̄` as
    /// given without AMSGrad).
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    #[fusion(meta = |p, _g, m, v, max_v, c, mu, nu, _s| (
        p.clone(), m.clone(), v.clone(), max_v.clone(), c.clone(), mu.clone(), nu.clone()
    ))]
    fn spike_step(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        max_v: FloatTensor<Self>,
        clip_average: FloatTensor<Self>,
        norm_mean: FloatTensor<Self>,
        norm_sq_mean: FloatTensor<Self>,
        s: SpikeScalars,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );
}

impl SpikeKernel for CubeBackend {
    fn spike_step(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        max_v: FloatTensor<Self>,
        clip_average: FloatTensor<Self>,
        norm_mean: FloatTensor<Self>,
        norm_sq_mean: FloatTensor<Self>,
        s: SpikeScalars,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let o = launch(
            [p, g, m, v, max_v],
            [clip_average, norm_mean, norm_sq_mean],
            s,
        );
        (
            o.p,
            o.m,
            o.v,
            o.max_v,
            o.clip_average,
            o.norm_mean,
            o.norm_sq_mean,
        )
    }
}

/// Stable-SPAM's step on a CubeCL device: the new parameter, moments, AMSGrad maximum (`max_v`
/// as given without AMSGrad) and statistics `(M, μ, ν)`.
#[allow(clippy::type_complexity)]
pub(crate) fn spike_step<const D: usize>(
    [p, g, m, v, max_v]: [Tensor<D>; 5],
    [clip_average, norm_mean, norm_sq_mean]: [Tensor<1>; 3],
    s: SpikeScalars,
) -> ([Tensor<D>; 4], [Tensor<1>; 3]) {
    let (p, m, v, max_v, c, mu, nu) = Dispatch::spike_step(
        p.into_dispatch(),
        g.into_dispatch(),
        m.into_dispatch(),
        v.into_dispatch(),
        max_v.into_dispatch(),
        clip_average.into_dispatch(),
        norm_mean.into_dispatch(),
        norm_sq_mean.into_dispatch(),
        s,
    );
    let d = |t| Tensor::<D>::from_dispatch(t);
    let one = |t| Tensor::<1>::from_dispatch(t);
    ([d(p), d(m), d(v), d(max_v)], [one(c), one(mu), one(nu)])
}

/// AdaClip's and AdaGN's forms above against `super`'s formulas on wgpu, element by element.
#[cfg(test)]
mod parity {
    use burn::cubecl;
    use burn::cubecl::prelude::*;

    use super::{ClipArgs, NormArgs, ada_clip, ada_gn};
    use crate::engine::cube::parity::{Gpu, assert_close, inputs};
    use crate::rules::spike;

    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    fn statistics(
        average: &[f32],
        max_abs: &[f32],
        mean: &[f32],
        sq_mean: &[f32],
        norm: &[f32],
        out: &mut [f32],
        clip: &ClipArgs,
        gn: &NormArgs,
    ) {
        let i = ABSOLUTE_POS;
        if i < average.len() {
            let (avg, limit, scale) = ada_clip(average[i], max_abs[i], clip);
            let (mu, nu, factor) = ada_gn(mean[i], sq_mean[i], norm[i], gn);
            let n = average.len();
            out[i] = avg;
            out[n + i] = limit;
            out[2 * n + i] = scale;
            out[3 * n + i] = mu;
            out[4 * n + i] = nu;
            out[5 * n + i] = factor;
        }
    }

    #[test]
    fn adaclip_and_adagn_match_their_formulas() {
        let Some(gpu) = Gpu::get() else { return };
        let n = 1024;
        let values = [13, 14, 15, 16, 17].map(|seed| inputs(n, seed, true));
        let [average, max_abs, mean, sq_mean, norm] = &values;
        let handles = values.each_ref().map(|v| gpu.upload(v));
        let settings = [(0.999, (0.7, 0.9), 1e-8, 1), (0.9, (0.85, 0.99), 1e-6, 50)];
        for (theta, (gamma_1, gamma_2), epsilon, time) in settings {
            let out = gpu.empty(6 * n);
            let (count, dim) = gpu.elementwise(n);
            statistics::launch(
                &gpu.client,
                count,
                dim,
                gpu.arg(&handles[0], n),
                gpu.arg(&handles[1], n),
                gpu.arg(&handles[2], n),
                gpu.arg(&handles[3], n),
                gpu.arg(&handles[4], n),
                gpu.arg(&out, 6 * n),
                ClipArgs::new(theta, time).launch(),
                NormArgs::new((gamma_1, gamma_2), epsilon, time, true).launch(),
            );
            let got = gpu.read(out);
            let input = |i: usize| {
                format!(
                    "M {:e}, max|g| {:e}, μ {:e}, ν {:e}, n {:e}, θ {theta}, t {time}",
                    average[i], max_abs[i], mean[i], sq_mean[i], norm[i]
                )
            };
            let clip: Vec<(f32, f32)> = (0..n)
                .map(|i| spike::clip_limit(average[i], max_abs[i], theta, time))
                .collect();
            let gn: Vec<(f32, f32)> = (0..n)
                .map(|i| spike::norm_averages(mean[i], sq_mean[i], norm[i], gamma_1, gamma_2))
                .collect();
            let factor = |i: usize| {
                let (mu, nu) = gn[i];
                let target = spike::target_norm(
                    spike::bias_corrected(mu, gamma_1, time),
                    spike::bias_corrected(nu, gamma_2, time),
                    f64::from(epsilon as f32),
                );
                if norm[i] <= 0.0 {
                    1.0
                } else {
                    spike::rescale(target, norm[i])
                }
            };
            let part = |k: usize| &got[k * n..(k + 1) * n];
            let want = |f: &dyn Fn(usize) -> f32| (0..n).map(f).collect::<Vec<f32>>();
            assert_close("AdaClip average", part(0), &want(&|i| clip[i].0), input);
            assert_close("AdaClip limit", part(1), &want(&|i| clip[i].1), input);
            let scale = |i: usize| spike::spike_scale(clip[i].1, max_abs[i]);
            assert_close("AdaClip scale", part(2), &want(&scale), input);
            assert_close("AdaGN μ", part(3), &want(&|i| gn[i].0), input);
            assert_close("AdaGN ν", part(4), &want(&|i| gn[i].1), input);
            assert_close("AdaGN factor", part(5), &want(&factor), input);
        }
    }
}
