//! Stable-SPAM's step as CubeCL kernels: five launches and no host read. The per-tensor
//! statistics are reduced by blocks, then finished by one cube that writes them for the next
//! launch.
//!
//! ```text
//! launch 1, blocks   read g: max|g| per block
//! launch 2, 1 cube   max|g|; AdaClip M ← θ·M + (1 − θ)·max|g|, limit M̂ = M / (1 − θ^t),
//!                    scale M̂ / max|g| (M kept in the work buffer until launch 4)
//! launch 3, blocks   read g: Σ clip(g)² per block   (clip: |g_i| > M̂ scaled by M̂ / max|g|)
//! launch 4, 1 cube   n = √Σ; AdaGN μ ← γ1·μ + (1 − γ1)·n, ν ← γ2·ν + (1 − γ2)·n²,
//!                    factor μ̂ / (√ν̂ + ε) / n (1 when n = 0); under Skip a non-finite n sets the
//!                    skip flag and keeps M, μ, ν; writes the new M, μ, ν
//! launch 5           read p, g, m, v (v̄), the scalars; write p, m, v (v̄):
//!                    g ← clip(g)·factor; Adam's moments (AMSGrad: v̄ ← max(v̄, v));
//!                    p ← p·(1 − ηλ) − η/(1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
//!                    (a skipped step copies p and the state)
//! ```
//!
//! The f32 scalars are the flex loops' (`kernels::spike`), from `math::spike` and
//! `math::adam` on the host.

use burn::backend::wgpu::CubeTensor;
use burn::cubecl;
use burn::cubecl::prelude::*;

use super::launch::{Blocks, Launch, contiguous};
use super::reduce::{finish, lane_max, lane_sum, tree};
use super::rule::{MomentArgs, WriteArgs, direction, first, ratio, second, write};
use crate::math::spike::SpikeStep;

/// The step's work scalars on the device, in one buffer: written by launches 2 and 4, read by
/// launches 3, 4 and 5.
const CLIP_AVERAGE: usize = 0;
const LIMIT: usize = 1;
const SPIKE_SCALE: usize = 2;
const FACTOR: usize = 3;
const SKIP: usize = 4;
const WORK: usize = 5;

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
    /// The scalars of `step` (`math::spike`'s formulas, in f32 as the flex loops use them).
    pub fn new(step: &SpikeStep, amsgrad: bool) -> Self {
        let bc = |decay: f64| (1.0 - decay.powi(step.time as i32)) as f32;
        let (bc1, _) = step.adam.bias_corrections(step.adam_time);
        Self {
            clip: ClipArgs {
                theta: step.theta as f32,
                one_minus_theta: (1.0 - step.theta) as f32,
                theta_bc: bc(step.theta),
            },
            norm: NormArgs {
                gamma_1: step.gamma_1 as f32,
                one_minus_gamma_1: (1.0 - step.gamma_1) as f32,
                gamma_1_bc: bc(step.gamma_1),
                gamma_2: step.gamma_2 as f32,
                one_minus_gamma_2: (1.0 - step.gamma_2) as f32,
                gamma_2_bc: bc(step.gamma_2),
                epsilon: step.adam.epsilon as f32,
                skip_non_finite: u32::from(step.skip_non_finite),
            },
            adam: MomentArgs::adam(step.adam, step.adam_time),
            write: WriteArgs::new(step.lr * step.weight_decay, step.lr / bc1),
            amsgrad,
            zero_moments: step.reset && step.clean_reset,
        }
    }
}

impl ClipArgs {
    fn launch(self) -> ClipArgsLaunch {
        ClipArgsLaunch::new(self.theta, self.one_minus_theta, self.theta_bc)
    }
}

impl NormArgs {
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
struct ClipArgs {
    theta: f32,
    one_minus_theta: f32,
    theta_bc: f32,
}

/// AdaGN's scalars: `γ1`, `1 − γ1`, `1 − γ1^t`, `γ2`, `1 − γ2`, `1 − γ2^t`, `ε`.
#[derive(CubeLaunch, CubeType, Debug, Clone, Copy, PartialEq)]
struct NormArgs {
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

/// AdaClip's clipped element: `g·scale` where `|g| > limit`.
#[cube]
fn clip<N: Size>(g: Vector<f32, N>, limit: f32, scale: f32) -> Vector<f32, N> {
    let spikes = Vector::abs(g).greater_than(&Vector::new(limit));
    select_many(spikes, g * Vector::new(scale), g)
}

/// Launches 1 and 3: per block, `max|g|` (`squares` false) or `Σ clip(g)²` (true).
#[cube(launch)]
fn block_reduce<N: Size>(
    g: &[Vector<f32, N>],
    work: &[f32],
    partial: &mut [f32],
    #[comptime] units: usize,
    #[comptime] squares: bool,
) {
    let unit = UNIT_POS as usize;
    let stride = CUBE_COUNT * units;
    let mut acc = Vector::new(0.0f32);
    let mut j = CUBE_POS * units + unit;
    while j < g.len() {
        if squares {
            let x = clip::<N>(g[j], work[LIMIT], work[SPIKE_SCALE]);
            acc += x * x;
        } else {
            acc = <Vector<f32, N> as FloatOps>::max(acc, Vector::abs(g[j]));
        }
        j += stride;
    }
    let mut shared = Shared::<[Vector<f32, N>]>::new_slice(units);
    shared[unit] = acc;
    tree::<N>(&mut shared, 1usize, units, squares);
    if unit == 0 {
        if squares {
            partial[CUBE_POS] = lane_sum::<N>(shared[0]);
        } else {
            partial[CUBE_POS] = lane_max::<N>(shared[0]);
        }
    }
}

/// Launch 2: AdaClip's average, limit and scale.
#[cube(launch)]
fn clip_limit(
    partial: &[f32],
    blocks: usize,
    average: &[f32],
    work: &mut [f32],
    args: &ClipArgs,
    #[comptime] units: usize,
) {
    let max_abs = finish(partial, blocks, units, false);
    if UNIT_POS == 0 {
        let avg = average[0] * args.theta + max_abs * args.one_minus_theta;
        let limit = avg / args.theta_bc;
        work[CLIP_AVERAGE] = avg;
        work[LIMIT] = limit;
        work[SPIKE_SCALE] = ratio(limit, max_abs);
    }
}

/// Launch 4: AdaGN's averages and factor, and the skip flag; the step's new statistics (the
/// old ones when it is skipped).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn norm_factor(
    partial: &[f32],
    blocks: usize,
    clip_average: &[f32],
    mean: &[f32],
    sq_mean: &[f32],
    work: &mut [f32],
    clip_average_out: &mut [f32],
    mean_out: &mut [f32],
    sq_mean_out: &mut [f32],
    args: &NormArgs,
    #[comptime] units: usize,
) {
    let sum = finish(partial, blocks, units, true);
    if UNIT_POS == 0 {
        let n = f32::sqrt(sum);
        let mu = mean[0] * args.gamma_1 + n * args.one_minus_gamma_1;
        let nu = sq_mean[0] * args.gamma_2 + (n * n) * args.one_minus_gamma_2;
        let target = (mu / args.gamma_1_bc) / (f32::sqrt(nu / args.gamma_2_bc) + args.epsilon);
        work[FACTOR] = select(n <= 0.0, 1.0f32, ratio(target, n));
        let skip = args.skip_non_finite == 1u32 && (n.is_nan() || n.is_inf());
        work[SKIP] = select(skip, 1.0f32, 0.0f32);
        mean_out[0] = select(skip, mean[0], mu);
        sq_mean_out[0] = select(skip, sq_mean[0], nu);
        clip_average_out[0] = select(skip, clip_average[0], work[CLIP_AVERAGE]);
    }
}

/// Launch 5: the moments and the parameter (see the module's doc).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn spike_step<N: Size>(
    p: &[Vector<f32, N>],
    g: &[Vector<f32, N>],
    m: &[Vector<f32, N>],
    v: &[Vector<f32, N>],
    max_v: &[Vector<f32, N>],
    work: &[f32],
    p_out: &mut [Vector<f32, N>],
    m_out: &mut [Vector<f32, N>],
    v_out: &mut [Vector<f32, N>],
    max_v_out: &mut [Vector<f32, N>],
    rule: &MomentArgs,
    w: &WriteArgs,
    #[comptime] amsgrad: bool,
    #[comptime] zero_moments: bool,
) {
    let i = ABSOLUTE_POS;
    if i < p.len() {
        if work[SKIP] != 0.0 {
            p_out[i] = p[i];
            m_out[i] = m[i];
            v_out[i] = v[i];
            if amsgrad {
                max_v_out[i] = max_v[i];
            }
        } else {
            let gi = clip::<N>(g[i], work[LIMIT], work[SPIKE_SCALE]) * Vector::new(work[FACTOR]);
            let mut m0 = m[i];
            let mut v0 = v[i];
            if zero_moments {
                m0 = Vector::new(0.0f32);
                v0 = Vector::new(0.0f32);
            }
            let mi = first::<N>(m0, gi, rule);
            let vi = second::<N>(v0, gi, rule);
            m_out[i] = mi;
            v_out[i] = vi;
            let mut denom_v = vi;
            if amsgrad {
                denom_v = <Vector<f32, N> as FloatOps>::max(max_v[i], vi);
                max_v_out[i] = denom_v;
            }
            let u = direction::<N>(gi, mi, denom_v, rule, true, false);
            p_out[i] = write::<N>(p[i], u, w.decay_factor, w.scale);
        }
    }
}

/// The new parameter and state of a Stable-SPAM step.
pub struct SpikeOutputs {
    pub p: CubeTensor,
    pub m: CubeTensor,
    pub v: CubeTensor,
    /// AMSGrad's running maximum (`max_v` as given without AMSGrad).
    pub max_v: CubeTensor,
    pub clip_average: CubeTensor,
    pub norm_mean: CubeTensor,
    pub norm_sq_mean: CubeTensor,
}

/// Launches Stable-SPAM's step (see the module's doc) on contiguous f32 tensors: `p`, `g`,
/// `m`, `v`, `max_v` of one shape (`max_v` unread without AMSGrad), the statistics of shape
/// `[1]`.
pub fn launch(
    [p, g, m, v, max_v]: [CubeTensor; 5],
    [clip_average, norm_mean, norm_sq_mean]: [CubeTensor; 3],
    s: SpikeScalars,
) -> SpikeOutputs {
    let [p, g, m, v, max_v] = contiguous([p, g, m, v, max_v]);
    let [clip_average, norm_mean, norm_sq_mean] =
        contiguous([clip_average, norm_mean, norm_sq_mean]);
    let run = Launch::new([&p, &g, &m, &v, &max_v]);
    let client = run.client();
    let blocks = Blocks::new(client, p.meta.num_elements() / run.vector());
    let work = client.empty(WORK * size_of::<f32>());
    let scalar = |t: &CubeTensor| run.floats(&t.handle, 1);
    let one = || CubeCount::new_1d(1);

    // Launches 1 and 2: max|g|, then AdaClip.
    let reduce = |squares: bool| {
        block_reduce::launch(
            client,
            blocks.cubes(),
            blocks.dim(),
            run.vector(),
            run.arg(&g),
            run.floats(&work, WORK),
            blocks.partial(),
            blocks.units,
            squares,
        )
    };
    reduce(false);
    clip_limit::launch(
        client,
        one(),
        blocks.dim(),
        blocks.partial(),
        blocks.count,
        scalar(&clip_average),
        run.floats(&work, WORK),
        s.clip.launch(),
        blocks.units,
    );
    // Launches 3 and 4: Σ clip(g)², then AdaGN, the skip flag and the new statistics.
    reduce(true);
    let [clip_out, mean_out, sq_mean_out] = Launch::new([&clip_average]).outputs();
    norm_factor::launch(
        client,
        one(),
        blocks.dim(),
        blocks.partial(),
        blocks.count,
        scalar(&clip_average),
        scalar(&norm_mean),
        scalar(&norm_sq_mean),
        run.floats(&work, WORK),
        scalar(&clip_out),
        scalar(&mean_out),
        scalar(&sq_mean_out),
        s.norm.launch(),
        blocks.units,
    );

    // Launch 5: the moments and the parameter.
    let [p_out, m_out, v_out] = run.outputs();
    let max_v_out = s.amsgrad.then(|| {
        let [out] = run.outputs();
        out
    });
    // Unwritten without AMSGrad: one vector fills the binding.
    let unwritten = client.empty(run.vector() * size_of::<f32>());
    spike_step::launch(
        client,
        run.count(),
        run.dim(),
        run.vector(),
        run.arg(&p),
        run.arg(&g),
        run.arg(&m),
        run.arg(&v),
        run.arg(&max_v),
        run.floats(&work, WORK),
        run.arg(&p_out),
        run.arg(&m_out),
        run.arg(&v_out),
        match &max_v_out {
            Some(out) => run.arg(out),
            None => run.floats(&unwritten, run.vector()),
        },
        s.adam.launch(),
        s.write.launch(),
        s.amsgrad,
        s.zero_moments,
    );
    SpikeOutputs {
        p: p_out,
        m: m_out,
        v: v_out,
        max_v: max_v_out.unwrap_or(max_v),
        clip_average: clip_out,
        norm_mean: mean_out,
        norm_sq_mean: sq_mean_out,
    }
}
