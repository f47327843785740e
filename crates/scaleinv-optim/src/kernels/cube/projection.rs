//! AdamP's and SGDP's scale-invariance test and projection coefficients as CubeCL kernels
//! (`core::projection` on the tensor ops): two launches before the step's update, and no value
//! read back to the host: the update kernel reads the coefficients the second one writes.
//!
//! ```text
//! launch 1, one cube per channel c    read p, g, the state:
//!     s_p = max|p_c|, s_g = max|g_c|            (first sweep)
//!     ⟨p̃,g̃⟩, ‖p̃‖², ‖g̃‖², ⟨p̃,u⟩  on p̃ = p/s_p, g̃ = g/s_g   (second sweep, u the new direction)
//! launch 2, one cube                  per channel cos_c = |⟨p,g⟩| / (max(‖g‖,ε)·max(‖p‖,ε));
//!     the layer's sums, each channel's rescaled by s_c / max s;
//!     channel test max cos_c < δ/√K_c, else layer test cos < δ/√K;
//!     writes k_c = ⟨p_c,u_c⟩/(‖p_c‖+ε)² (channel), ⟨p,u⟩/(‖p‖+ε)² (layer) or 0,
//!     and the decay ratio (wd_ratio when a view passed, else 1)
//! ```
//!
//! Each channel is scaled by its own largest `|element|`, so no square or product overflows
//! f32 whatever the weights' magnitude; the cosines and coefficients are formed from factors
//! at most 1, as on the tensor-op path. The tensor is seen as `[outer, C, inner]` around its
//! channel axis; a channel's elements are read `inner` at a time (contiguous for a
//! convolution's output axis, strided for a last-axis layout such as Burn's `Linear`).

use burn::backend::wgpu::CubeTensor;
use burn::cubecl;
use burn::cubecl::prelude::*;
use burn::cubecl::server::Handle;

use super::launch::{Flag, Launch, flag, units_per_cube};
use super::reduce::{lane_max, lane_sum, tree};
use super::rule::{MIN_POSITIVE, MomentArgs, direction, first, second};
use crate::math::invariance::{ProjectionView, ScaleInvariance};

/// Statistics per channel in launch 1's output: `s_p, s_g, ⟨p̃,g̃⟩, ‖p̃‖², ‖g̃‖², ⟨p̃,u⟩`.
const STATS: usize = 6;

/// The tensor around its channel axis: `[outer, channels, inner]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channels {
    pub outer: usize,
    pub channels: usize,
    pub inner: usize,
}

impl Channels {
    /// The geometry of a tensor of shape `dims` around `axis` (`axis < dims.len()`).
    pub fn new(dims: &[usize], axis: usize) -> Self {
        Self {
            outer: dims[..axis].iter().product(),
            channels: dims[axis],
            inner: dims[axis + 1..].iter().product(),
        }
    }

    fn numel(&self) -> usize {
        self.outer * self.channels * self.inner
    }
}

/// The projection's result on the device: the radial coefficient of every channel (0 where
/// nothing is removed) and the decay ratio.
struct Coefficients {
    coef: Handle,
    ratio: Handle,
    channels: Channels,
}

/// What an update launch of AdamP or SGDP reads beside its tensors: its geometry (for a
/// projected tensor, vectors that never cross a channel's run), the skip flag and, for a
/// projected tensor, the coefficients of launches 1 and 2.
pub struct Update {
    pub run: Launch,
    pub skip: Flag,
    coefficients: Option<Coefficients>,
}

impl Update {
    /// The launches before the update of `tensors` (parameter and gradient first, all
    /// contiguous), whose state after `rule` gives the direction (`adam`: Adam's `[m, v]`,
    /// else SGD's `[b, b]`); `projection` applies where `ScaleInvariance::applies_to` says,
    /// around a channel axis the caller checked (`Projector::fuses_on_cube`).
    pub fn new<const N: usize>(
        tensors: [&CubeTensor; N],
        [s1, s2]: [&CubeTensor; 2],
        projection: Option<ScaleInvariance>,
        skip_non_finite: bool,
        rule: MomentArgs,
        adam: bool,
        nesterov: bool,
    ) -> Self {
        let (p, g) = (tensors[0], tensors[1]);
        let dims = p.meta.shape().to_vec();
        let projection = projection
            .filter(|inv| inv.applies_to(dims.len()))
            .map(|inv| (inv, Channels::new(&dims, inv.channel_axis)));
        let run = Launch::in_runs(tensors, projection.map(|(_, c)| c.inner));
        let skip = flag(g, skip_non_finite);
        let coefficients = projection.map(|(inv, channels)| {
            let rule = (rule, adam, nesterov);
            coefficients(&run, [p, g, s1, s2], channels, rule, &inv)
        });
        Self {
            run,
            skip,
            coefficients,
        }
    }

    /// Whether the update removes a radial part (the tensor is projected).
    pub fn projects(&self) -> bool {
        self.coefficients.is_some()
    }

    /// The update kernel's `coef` and `ratio` bindings and the geometry it reads them with;
    /// without a projection they are unread, and `p`'s buffer fills them.
    pub fn bindings(&self, p: &CubeTensor) -> (BufferArg, BufferArg, Channels) {
        let run = &self.run;
        match &self.coefficients {
            Some(k) => (
                run.floats(&k.coef, k.channels.channels),
                run.floats(&k.ratio, 1),
                k.channels,
            ),
            None => (
                run.floats(&p.handle, 1),
                run.floats(&p.handle, 1),
                Channels::new(&[1], 0),
            ),
        }
    }
}

/// The test's thresholds and the projection's constants, as the kernels read them.
#[derive(CubeLaunch, CubeType, Debug, Clone, Copy, PartialEq)]
struct DecideArgs {
    channel_threshold: f32,
    layer_threshold: f32,
    epsilon: f32,
    wd_ratio: f32,
    /// 0: test (channel, then layer); 1: channel view fixed; 2: layer view fixed.
    view: u32,
    /// 1: a zero weight or gradient can pass the test (the reference); 0: it cannot.
    zero_is_invariant: u32,
}

/// The index of vector `j` of channel `c` (vectors of `N` never cross an `inner` run).
#[cube]
fn channel_index(j: usize, c: usize, channels: usize, inner: usize, #[comptime] n: usize) -> usize {
    let e = j * n;
    let o = e / inner;
    let i = e % inner;
    ((o * channels + c) * inner + i) / n
}

/// Launch 1: the statistics of channel `CUBE_POS` (see the module's doc).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn channel_stats<N: Size>(
    p: &[Vector<f32, N>],
    g: &[Vector<f32, N>],
    s1: &[Vector<f32, N>],
    s2: &[Vector<f32, N>],
    stats: &mut [f32],
    channels: usize,
    inner: usize,
    per_channel: usize,
    rule: &MomentArgs,
    #[comptime] units: usize,
    #[comptime] adam: bool,
    #[comptime] nesterov: bool,
) {
    let c = CUBE_POS;
    if c >= channels {
        terminate!();
    }
    let unit = UNIT_POS as usize;
    let n = N::value();
    let zero = Vector::new(0.0f32);

    let mut lp = zero;
    let mut lg = zero;
    let mut j = unit;
    while j < per_channel {
        let i = channel_index(j, c, channels, inner, n);
        lp = <Vector<f32, N> as FloatOps>::max(lp, Vector::abs(p[i]));
        lg = <Vector<f32, N> as FloatOps>::max(lg, Vector::abs(g[i]));
        j += units;
    }
    let mut maxima = Shared::<[Vector<f32, N>]>::new_slice(2 * units);
    maxima[unit] = lp;
    maxima[units + unit] = lg;
    tree::<N>(&mut maxima, 2usize, units, false);
    let sp = f32::max(lane_max::<N>(maxima[0]), MIN_POSITIVE);
    let sg = f32::max(lane_max::<N>(maxima[units]), MIN_POSITIVE);

    let mut dot = zero;
    let mut pp = zero;
    let mut gg = zero;
    let mut pu = zero;
    j = unit;
    while j < per_channel {
        let i = channel_index(j, c, channels, inner, n);
        let (a, b, d, e) = terms::<N>(p[i], g[i], s1[i], s2[i], (sp, sg), rule, adam, nesterov);
        dot += a;
        pp += b;
        gg += d;
        pu += e;
        j += units;
    }
    let mut sums = Shared::<[Vector<f32, N>]>::new_slice(4 * units);
    sums[unit] = dot;
    sums[units + unit] = pp;
    sums[2 * units + unit] = gg;
    sums[3 * units + unit] = pu;
    tree::<N>(&mut sums, 4usize, units, true);
    let dot = lane_sum::<N>(sums[0]);
    let pp = lane_sum::<N>(sums[units]);
    let gg = lane_sum::<N>(sums[2 * units]);
    let pu = lane_sum::<N>(sums[3 * units]);
    if unit == 0 {
        store(stats, c, (sp, sg), (dot, pp, gg, pu));
    }
}

/// Launch 1 for a tensor whose channel axis is its last (`inner` = 1: Burn's `Linear`, an
/// embedding): one unit per channel walks the `rows`, so a cube's units read consecutive
/// addresses and no tree is needed.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn column_stats(
    p: &[f32],
    g: &[f32],
    s1: &[f32],
    s2: &[f32],
    stats: &mut [f32],
    channels: usize,
    rows: usize,
    rule: &MomentArgs,
    #[comptime] adam: bool,
    #[comptime] nesterov: bool,
) {
    let c = ABSOLUTE_POS;
    if c < channels {
        let mut sp = 0.0f32;
        let mut sg = 0.0f32;
        for o in 0..rows {
            sp = f32::max(sp, f32::abs(p[o * channels + c]));
            sg = f32::max(sg, f32::abs(g[o * channels + c]));
        }
        let sp = f32::max(sp, MIN_POSITIVE);
        let sg = f32::max(sg, MIN_POSITIVE);
        let mut dot = 0.0f32;
        let mut pp = 0.0f32;
        let mut gg = 0.0f32;
        let mut pu = 0.0f32;
        for o in 0..rows {
            let i = o * channels + c;
            let (a, b, d, e) = terms::<Const<1>>(
                Vector::new(p[i]),
                Vector::new(g[i]),
                Vector::new(s1[i]),
                Vector::new(s2[i]),
                (sp, sg),
                rule,
                adam,
                nesterov,
            );
            dot += a.extract(0usize);
            pp += b.extract(0usize);
            gg += d.extract(0usize);
            pu += e.extract(0usize);
        }
        store(stats, c, (sp, sg), (dot, pp, gg, pu));
    }
}

/// `(p̃·g̃, p̃², g̃², p̃·u)` of one element (or vector of elements).
type Terms<N> = (
    Vector<f32, N>,
    Vector<f32, N>,
    Vector<f32, N>,
    Vector<f32, N>,
);

/// One element's terms of its channel's sums, `(p̃·g̃, p̃², g̃², p̃·u)` on `p̃ = p/s_p`,
/// `g̃ = g/s_g`, with `u` the direction from the new state (`rule`).
#[cube]
#[allow(clippy::too_many_arguments)]
fn terms<N: Size>(
    p: Vector<f32, N>,
    g: Vector<f32, N>,
    s1: Vector<f32, N>,
    s2: Vector<f32, N>,
    scales: (f32, f32),
    rule: &MomentArgs,
    #[comptime] adam: bool,
    #[comptime] nesterov: bool,
) -> Terms<N> {
    let m = first::<N>(s1, g, rule);
    let v = if adam { second::<N>(s2, g, rule) } else { m };
    let u = direction::<N>(g, m, v, rule, adam, nesterov);
    let pt = p / Vector::new(scales.0);
    let gt = g / Vector::new(scales.1);
    (pt * gt, pt * pt, gt * gt, pt * u)
}

/// Channel `c`'s statistics, in the order of [`STATS`].
#[cube]
fn store(stats: &mut [f32], c: usize, scales: (f32, f32), sums: (f32, f32, f32, f32)) {
    let base = c * STATS;
    stats[base] = scales.0;
    stats[base + 1] = scales.1;
    stats[base + 2] = sums.0;
    stats[base + 3] = sums.1;
    stats[base + 4] = sums.2;
    stats[base + 5] = sums.3;
}

/// `|⟨p̃,g̃⟩| · (s_g / max(‖g‖, ε)) · (s_p / max(‖p‖, ε))` (`ScaleInvariance::cosine`).
#[cube]
fn cosine(dot: f32, norm_p: f32, sp: f32, norm_g: f32, sg: f32, eps: f32) -> f32 {
    f32::abs(dot) * (sg / f32::max(norm_g, eps)) * (sp / f32::max(norm_p, eps))
}

/// `⟨p̃,u⟩ · s / (‖p‖ + ε)²`, formed as two factors (`ScaleInvariance::radial_coefficient`
/// with the scale moved onto `p`).
#[cube]
fn coefficient(pu: f32, norm_p: f32, sp: f32, eps: f32) -> f32 {
    (pu / (norm_p + eps)) * (sp / (norm_p + eps))
}

/// Launch 2: the branch and the coefficients (see the module's doc), one cube of `units`.
#[cube(launch)]
fn decide(
    stats: &[f32],
    coef: &mut [f32],
    ratio: &mut [f32],
    channels: usize,
    args: &DecideArgs,
    #[comptime] units: usize,
) {
    let unit = UNIT_POS as usize;
    let eps = args.epsilon;

    // The largest channel cosine and scales.
    let mut cos_max = 0.0f32;
    let mut sp_max = 0.0f32;
    let mut sg_max = 0.0f32;
    let mut c = unit;
    while c < channels {
        let b = c * STATS;
        let sp = stats[b];
        let sg = stats[b + 1];
        let norm_p = f32::sqrt(stats[b + 3]) * sp;
        let norm_g = f32::sqrt(stats[b + 4]) * sg;
        cos_max = f32::max(cos_max, cosine(stats[b + 2], norm_p, sp, norm_g, sg, eps));
        sp_max = f32::max(sp_max, sp);
        sg_max = f32::max(sg_max, sg);
        c += units;
    }
    let mut maxima = Shared::<[Vector<f32, Const<1>>]>::new_slice(3 * units);
    maxima[unit] = Vector::new(cos_max);
    maxima[units + unit] = Vector::new(sp_max);
    maxima[2 * units + unit] = Vector::new(sg_max);
    tree::<Const<1>>(&mut maxima, 3usize, units, false);
    let cos_max = maxima[0].extract(0usize);
    let sp = maxima[units].extract(0usize);
    let sg = maxima[2 * units].extract(0usize);

    // The layer's sums, each channel's rescaled to the largest scales.
    let mut dot = 0.0f32;
    let mut pp = 0.0f32;
    let mut gg = 0.0f32;
    let mut pu = 0.0f32;
    c = unit;
    while c < channels {
        let b = c * STATS;
        let wp = stats[b] / sp;
        let wg = stats[b + 1] / sg;
        dot += stats[b + 2] * wp * wg;
        pp += stats[b + 3] * wp * wp;
        gg += stats[b + 4] * wg * wg;
        pu += stats[b + 5] * wp;
        c += units;
    }
    let mut sums = Shared::<[Vector<f32, Const<1>>]>::new_slice(4 * units);
    sums[unit] = Vector::new(dot);
    sums[units + unit] = Vector::new(pp);
    sums[2 * units + unit] = Vector::new(gg);
    sums[3 * units + unit] = Vector::new(pu);
    tree::<Const<1>>(&mut sums, 4usize, units, true);
    let dot = sums[0].extract(0usize);
    let pp = sums[units].extract(0usize);
    let gg = sums[2 * units].extract(0usize);
    let pu = sums[3 * units].extract(0usize);
    let norm_p = f32::sqrt(pp) * sp;
    let norm_g = f32::sqrt(gg) * sg;
    let layer_cos = cosine(dot, norm_p, sp, norm_g, sg, eps);

    let nonzero = args.zero_is_invariant == 1u32 || (pp > 0.0 && gg > 0.0);
    let tested = args.view == 0u32;
    let channel_view = (tested && cos_max < args.channel_threshold && nonzero) || args.view == 1u32;
    let layer_view = !channel_view
        && ((tested && layer_cos < args.layer_threshold && nonzero) || args.view == 2u32);
    let layer = select(layer_view, coefficient(pu, norm_p, sp, eps), 0.0f32);

    c = unit;
    while c < channels {
        let b = c * STATS;
        let norm_c = f32::sqrt(stats[b + 3]) * stats[b];
        let own = coefficient(stats[b + 5], norm_c, stats[b], eps);
        coef[c] = select(channel_view, own, layer);
        c += units;
    }
    if unit == 0 {
        ratio[0] = select(channel_view || layer_view, args.wd_ratio, 1.0f32);
    }
}

/// Launches 1 and 2 for `p` (contiguous, like `g`, `s1`, `s2`) around its `channels`, stepped
/// with the momentum rule `(rule, adam, nesterov)` (`adam`: Adam's, else SGD's, `s2` unread),
/// under `invariance`. `run` is the launch the update will use.
fn coefficients(
    run: &Launch,
    [p, g, s1, s2]: [&CubeTensor; 4],
    channels: Channels,
    (rule, adam, nesterov): (MomentArgs, bool, bool),
    invariance: &ScaleInvariance,
) -> Coefficients {
    let client = run.client();
    let vector = run.vector();
    let stats = client.empty(channels.channels * STATS * size_of::<f32>());
    if channels.inner == 1 {
        let units = units_per_cube(client, channels.channels);
        let dim = CubeDim::new_1d(units as u32);
        column_stats::launch(
            client,
            cubecl::calculate_cube_count_elemwise(client, channels.channels, dim),
            dim,
            run.floats(&p.handle, channels.numel()),
            run.floats(&g.handle, channels.numel()),
            run.floats(&s1.handle, channels.numel()),
            run.floats(&s2.handle, channels.numel()),
            run.floats(&stats, channels.channels * STATS),
            channels.channels,
            channels.outer,
            rule.launch(),
            adam,
            nesterov,
        );
    } else {
        let per_channel = channels.numel() / channels.channels / vector;
        let units = units_per_cube(client, per_channel);
        let dim = CubeDim::new_1d(units as u32);
        let count = cubecl::calculate_cube_count_elemwise(client, channels.channels * units, dim);
        channel_stats::launch(
            client,
            count,
            dim,
            vector,
            run.arg(p),
            run.arg(g),
            run.arg(s1),
            run.arg(s2),
            run.floats(&stats, channels.channels * STATS),
            channels.channels,
            channels.inner,
            per_channel,
            rule.launch(),
            units,
            adam,
            nesterov,
        );
    }

    let coef = client.empty(channels.channels * size_of::<f32>());
    let ratio = client.empty(size_of::<f32>());
    let numel = channels.numel();
    let view = match invariance.view {
        ProjectionView::Channel => 1,
        ProjectionView::Layer => 2,
        ProjectionView::Detect | ProjectionView::Off => 0,
    };
    let units = units_per_cube(client, channels.channels);
    decide::launch(
        client,
        CubeCount::new_1d(1),
        CubeDim::new_1d(units as u32),
        run.floats(&stats, channels.channels * STATS),
        run.floats(&coef, channels.channels),
        run.floats(&ratio, 1),
        channels.channels,
        DecideArgsLaunch::new(
            invariance.threshold(numel / channels.channels) as f32,
            invariance.threshold(numel) as f32,
            invariance.epsilon as f32,
            invariance.wd_ratio as f32,
            view,
            u32::from(invariance.zero_is_invariant),
        ),
        units,
    );
    Coefficients {
        coef,
        ratio,
        channels,
    }
}
