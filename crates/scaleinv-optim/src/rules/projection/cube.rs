//! AdamP's and SGDP's scale-invariance test and projection coefficients as CubeCL kernels
//! (`tensor` on the tensor ops, `flex` on flex): one launch before the step's update, and no
//! value read back to the host: every cube of the update decides for itself from the
//! statistics that launch wrote ([`decision`]).
//!
//! ```text
//! launch 1, one cube per channel c    read p, g, the state:
//!     s_p = max|p_c|, s_g = max|g_c|            (first sweep)
//!     ⟨p̃,g̃⟩, ‖p̃‖², ‖g̃‖², ⟨p̃,u⟩  on p̃ = p/s_p, g̃ = g/s_g   (second sweep, u the new direction)
//! the update, each of its cubes      per channel cos_c = |⟨p,g⟩| / (max(‖g‖,ε)·max(‖p‖,ε));
//!     the layer's sums, each channel's rescaled by s_c / max s;
//!     channel test max cos_c < δ/√K_c, else layer test cos < δ/√K;
//!     k_c = ⟨p_c,u_c⟩/(‖p_c‖+ε)² (channel), ⟨p,u⟩/(‖p‖+ε)² (layer) or 0,
//!     the decay ratio (wd_ratio when a view passed, else 1), and the non-finite test:
//!     some channel's ‖g̃‖² is NaN or ±∞ (an element NaN or ±∞ makes g̃ = g/s_g NaN
//!     there; a finite g̃ is at most 1, so its squares never overflow)
//! ```
//!
//! Every cube of the update finishes the same statistics in the same order, so all hold the
//! same bits (no cube waits for another: the shaders have no device-scope memory ordering);
//! the update of a projected tensor runs at most [`DECIDING_CUBES`] cubes (fewer on host
//! threads, see `deciding`), so that the repeated decision stays a small share of its work.
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

use super::{ProjectionView, ScaleInvariance};
use crate::engine::channels::Channels;
use crate::engine::cube::launch::{
    Launch, ONE_CUBE, non_finite_blocks, on_host_threads, reducing_units, units_per_cube,
};
use crate::engine::cube::reduce::{lane_max, lane_sum, tree};
use crate::rules::arith::cube::{MIN_POSITIVE, MomentArgs};

/// Statistics per channel in launch 1's output: `s_p, s_g, ⟨p̃,g̃⟩, ‖p̃‖², ‖g̃‖², ⟨p̃,u⟩`.
const STATS: usize = 6;

/// The direction of a step from the old state, for the statistics' `⟨p̃, u⟩`: Adam's
/// (`adam::cube::AdamMomentum`, state `[m, v]`) or SGD's (`sgd::cube::SgdMomentum`, state
/// `[b, b]`, the second unread). The counterpart of the flex form's `Part::advance`: the rule
/// plugs into the projection's kernels, which know nothing of it.
#[cube]
pub trait Momentum: Send + Sync + 'static {
    /// `u` from the gradient `g` and the old state `(s1, s2)` under `rule`.
    fn direction<N: Size>(
        g: Vector<f32, N>,
        s1: Vector<f32, N>,
        s2: Vector<f32, N>,
        rule: &MomentArgs,
        #[comptime] nesterov: bool,
    ) -> Vector<f32, N>;
}

/// The most cubes of a projected tensor's update, each of which decides for itself
/// ([`decision`]); its units walk the tensor in strides.
pub const DECIDING_CUBES: usize = 256;

/// The update of a projected tensor over the `channels` of `run`, each of whose cubes
/// repeats the decision over every channel: at most [`DECIDING_CUBES`] cubes; on host
/// threads ([`on_host_threads`]), which run them a few at a time, also at most one per
/// `DECISION_SHARE · channels` vectors, so that the decisions stay a small share of the
/// work.
fn deciding(run: Launch, channels: usize) -> Launch {
    if on_host_threads(run.client()) {
        let cubes = run.vectors() / (DECISION_SHARE * channels);
        run.at_most(cubes.clamp(1, DECIDING_CUBES))
    } else {
        run.at_most(DECIDING_CUBES)
    }
}

/// On host threads, a deciding cube's vectors per channel it decides over ([`deciding`]).
const DECISION_SHARE: usize = 16;

/// What every cube of a projected tensor's update decides from the statistics
/// ([`decision`]).
#[derive(CubeType, Clone, Copy)]
pub struct Decision {
    /// Some channel's gradient holds NaN or ±∞.
    pub non_finite: bool,
    /// The decay ratio: `wd_ratio` when a view passed the test, else 1.
    pub ratio: f32,
    /// Each channel's own coefficient applies (the channel view passed).
    pub channel_view: bool,
    /// The layer's coefficient when the layer view passed, else 0 (and 0 under the
    /// channel view, where it is unread).
    pub layer: f32,
}

/// The update's [`decision`] when it is `projected`, else nothing decided (no test, ratio 1,
/// no radial part). Every unit must call it.
#[cube]
pub fn decided(
    stats: &[f32],
    channels: usize,
    args: &DecideArgs,
    #[comptime] units: usize,
    #[comptime] projected: bool,
) -> Decision {
    let mut non_finite = false;
    let mut ratio = 1.0f32;
    let mut channel_view = false;
    let mut layer = 0.0f32;
    if projected {
        let d = decision(stats, channels, args, units);
        non_finite = d.non_finite;
        ratio = d.ratio;
        channel_view = d.channel_view;
        layer = d.layer;
    }
    Decision {
        non_finite,
        ratio,
        channel_view,
        layer,
    }
}

/// `u − k_c·p` for vector `i` of the update kernels, in channel `c = (i·N / inner) mod C`: the
/// radial part removed with the coefficient `decided` selects, channel `c`'s own from its
/// statistics or the layer's (vectors never cross a channel's run, see `Launch::in_runs`).
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn radial_removed<N: Size>(
    i: usize,
    p: Vector<f32, N>,
    u: Vector<f32, N>,
    stats: &[f32],
    decided: &Decision,
    channels: usize,
    inner: usize,
    args: &DecideArgs,
) -> Vector<f32, N> {
    let b = ((i * N::value() / inner) % channels) * STATS;
    let norm_c = f32::sqrt(stats[b + 3]) * stats[b];
    let own = coefficient(stats[b + 5], norm_c, stats[b], args.epsilon);
    u - p * Vector::new(select(decided.channel_view, own, decided.layer))
}

/// The non-finite test an update runs: flags on the device (1.0 where the gradient held NaN or
/// ±∞, else 0.0) written before it by [`non_finite_blocks`]; the test the update's one cube
/// runs itself; the one every cube's [`decision`] makes for a projected tensor; or none when
/// the policy does not skip.
pub enum NonFinite {
    None,
    Blocks { flags: Handle, count: usize },
    InCube,
    InDecision,
}

impl NonFinite {
    /// Whether the update reads flags (a comptime switch of the update kernels).
    pub fn tested(&self) -> bool {
        matches!(self, Self::Blocks { .. })
    }

    /// Whether the update's one cube tests the gradient itself (a comptime switch).
    pub fn by_the_update(&self) -> bool {
        matches!(self, Self::InCube)
    }

    /// Whether the decision's test skips the step (a comptime switch).
    pub fn by_the_decision(&self) -> bool {
        matches!(self, Self::InDecision)
    }

    /// The flags as a kernel's slice (`fill`'s buffer, unread, without flags), and their
    /// count.
    pub fn args(&self, run: &Launch, fill: &CubeTensor) -> (BufferArg, usize) {
        match self {
            Self::Blocks { flags, count } => (run.floats(flags, *count), *count),
            _ => (run.floats(&fill.handle, 1), 0),
        }
    }
}

/// The projection's statistics on the device (launch 1) and what the update decides with.
struct Statistics {
    stats: Handle,
    channels: Channels,
    args: DecideArgs,
}

/// What an update launch of AdamP or SGDP reads beside its tensors: its geometry (for a
/// projected tensor, vectors that never cross a channel's run), the non-finite test and, for
/// a projected tensor, the statistics of launch 1.
pub struct Update {
    pub run: Launch,
    pub skip: NonFinite,
    statistics: Option<Statistics>,
}

impl Update {
    /// The launches before the update of `tensors` (parameter and gradient first, all
    /// contiguous), whose state `[s1, s2]` after `rule` gives the direction `R`;
    /// `projection` applies where `ScaleInvariance::applies_to` says, around a channel axis
    /// the caller checked (`Projector::fuses_on_cube`).
    pub fn new<R: Momentum, const N: usize>(
        tensors: [&CubeTensor; N],
        [s1, s2]: [&CubeTensor; 2],
        projection: Option<ScaleInvariance>,
        skip_non_finite: bool,
        (rule, nesterov): (MomentArgs, bool),
    ) -> Self {
        let (p, g) = (tensors[0], tensors[1]);
        let dims = p.meta.shape().to_vec();
        let projection = projection
            .filter(|inv| inv.applies_to(dims.len()))
            .map(|inv| (inv, Channels::new(&dims, inv.channel_axis)));
        let mut run =
            Launch::in_runs(tensors, projection.map(|(_, c)| c.inner)).strided_with_barriers();
        if let Some((_, channels)) = projection {
            run = deciding(run, channels.count);
        }
        let statistics = projection.map(|(inv, channels)| {
            statistics::<R>(&run, [p, g, s1, s2], channels, (rule, nesterov), &inv)
        });
        let skip = match &statistics {
            _ if !skip_non_finite => NonFinite::None,
            Some(_) => NonFinite::InDecision,
            None if run.elements() <= ONE_CUBE => {
                run = run.one_cube();
                NonFinite::InCube
            }
            None => {
                let (flags, count) = non_finite_blocks(&run, g);
                NonFinite::Blocks { flags, count }
            }
        };
        Self {
            run,
            skip,
            statistics,
        }
    }

    /// Whether the update removes a radial part (the tensor is projected).
    pub fn projects(&self) -> bool {
        self.statistics.is_some()
    }

    /// The update kernel's `stats` binding, the geometry it reads them with and the test's
    /// arguments; without a projection they are unread, and the gradient's buffer `g`
    /// (read-only in the update, so that no buffer is bound both read-only and writable)
    /// fills the binding.
    pub fn bindings(&self, g: &CubeTensor) -> (BufferArg, Channels, DecideArgsLaunch) {
        let run = &self.run;
        match &self.statistics {
            Some(k) => (
                run.floats(&k.stats, k.channels.count * STATS),
                k.channels,
                k.args.launch(),
            ),
            None => (
                run.floats(&g.handle, 1),
                Channels::new(&[1], 0),
                DecideArgs::default().launch(),
            ),
        }
    }
}

/// The test's thresholds and the projection's constants, as the kernels read them.
#[derive(CubeLaunch, CubeType, Debug, Default, Clone, Copy, PartialEq)]
pub struct DecideArgs {
    pub channel_threshold: f32,
    pub layer_threshold: f32,
    pub epsilon: f32,
    pub wd_ratio: f32,
    /// 0: test (channel, then layer); 1: channel view fixed; 2: layer view fixed.
    pub view: u32,
    /// 1: a zero weight or gradient can pass the test (the reference); 0: it cannot.
    pub zero_is_invariant: u32,
}

impl DecideArgs {
    /// The scalars of `invariance` for a tensor of `numel` elements in rows of
    /// `channel_width`.
    pub fn new(invariance: &ScaleInvariance, channel_width: usize, numel: usize) -> Self {
        Self {
            channel_threshold: invariance.threshold(channel_width) as f32,
            layer_threshold: invariance.threshold(numel) as f32,
            epsilon: invariance.epsilon as f32,
            wd_ratio: invariance.wd_ratio as f32,
            view: match invariance.view {
                ProjectionView::Channel => 1,
                ProjectionView::Layer => 2,
                ProjectionView::Detect | ProjectionView::Off => 0,
            },
            zero_is_invariant: u32::from(invariance.zero_is_invariant),
        }
    }

    /// The kernel argument.
    pub fn launch(self) -> DecideArgsLaunch {
        DecideArgsLaunch::new(
            self.channel_threshold,
            self.layer_threshold,
            self.epsilon,
            self.wd_ratio,
            self.view,
            self.zero_is_invariant,
        )
    }
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
fn channel_stats<R: Momentum, N: Size>(
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
        let (a, b, d, e) = terms::<R, N>(p[i], g[i], s1[i], s2[i], (sp, sg), rule, nesterov);
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
fn column_stats<R: Momentum>(
    p: &[f32],
    g: &[f32],
    s1: &[f32],
    s2: &[f32],
    stats: &mut [f32],
    channels: usize,
    rows: usize,
    rule: &MomentArgs,
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
            let (a, b, d, e) = terms::<R, Const<1>>(
                Vector::new(p[i]),
                Vector::new(g[i]),
                Vector::new(s1[i]),
                Vector::new(s2[i]),
                (sp, sg),
                rule,
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
fn terms<R: Momentum, N: Size>(
    p: Vector<f32, N>,
    g: Vector<f32, N>,
    s1: Vector<f32, N>,
    s2: Vector<f32, N>,
    scales: (f32, f32),
    rule: &MomentArgs,
    #[comptime] nesterov: bool,
) -> Terms<N> {
    let u = R::direction::<N>(g, s1, s2, rule, nesterov);
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
pub fn cosine(dot: f32, norm_p: f32, sp: f32, norm_g: f32, sg: f32, eps: f32) -> f32 {
    f32::abs(dot) * (sg / f32::max(norm_g, eps)) * (sp / f32::max(norm_p, eps))
}

/// The coefficient `c = ⟨p̃,u⟩ · s / (‖p‖ + ε)²` on the unscaled weight (`u − c·p`), formed as
/// two factors: [`ScaleInvariance::radial_coefficient`]'s `c̃` on `p̃ = p / s`, divided by `s`.
#[cube]
pub fn coefficient(pu: f32, norm_p: f32, sp: f32, eps: f32) -> f32 {
    (pu / (norm_p + eps)) * (sp / (norm_p + eps))
}

/// The view the test selects, `(channel, layer)` ([`ScaleInvariance::decide`] for a detected
/// view, channel first and only where `‖P‖ > 0` and `‖G‖ > 0` unless zero tensors count as
/// invariant; a fixed view selects itself), from the largest channel cosine, the layer's
/// cosine and `(‖P̃‖², ‖G̃‖²)`.
#[cube]
pub fn views(cos_max: f32, layer_cos: f32, squares: (f32, f32), args: &DecideArgs) -> (bool, bool) {
    let nonzero = args.zero_is_invariant == 1u32 || (squares.0 > 0.0 && squares.1 > 0.0);
    let tested = args.view == 0u32;
    let channel_view = (tested && cos_max < args.channel_threshold && nonzero) || args.view == 1u32;
    let layer_view = !channel_view
        && ((tested && layer_cos < args.layer_threshold && nonzero) || args.view == 2u32);
    (channel_view, layer_view)
}

/// The branch, the layer's coefficient, the decay ratio and the non-finite test from the
/// statistics of `channels` channels (see the module's doc), for every unit of a cube of
/// `units` (every unit must call it; the same bits in every cube).
#[cube]
pub fn decision(
    stats: &[f32],
    channels: usize,
    args: &DecideArgs,
    #[comptime] units: usize,
) -> Decision {
    let unit = UNIT_POS as usize;
    let eps = args.epsilon;

    // The largest channel cosine and scales, and whether some channel's ‖g̃‖² is not finite.
    let mut cos_max = 0.0f32;
    let mut sp_max = 0.0f32;
    let mut sg_max = 0.0f32;
    let mut bad = 0.0f32;
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
        let gg = Vector::<f32, Const<1>>::new(stats[b + 4]);
        if gg.is_nan().extract(0usize) || gg.is_inf().extract(0usize) {
            bad = 1.0f32;
        }
        c += units;
    }
    let mut maxima = Shared::<[Vector<f32, Const<1>>]>::new_slice(4 * units);
    maxima[unit] = Vector::new(cos_max);
    maxima[units + unit] = Vector::new(sp_max);
    maxima[2 * units + unit] = Vector::new(sg_max);
    maxima[3 * units + unit] = Vector::new(bad);
    tree::<Const<1>>(&mut maxima, 4usize, units, false);
    let cos_max = maxima[0].extract(0usize);
    let sp = maxima[units].extract(0usize);
    let sg = maxima[2 * units].extract(0usize);
    let bad = maxima[3 * units].extract(0usize);

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

    let (channel_view, layer_view) = views(cos_max, layer_cos, (pp, gg), args);
    Decision {
        non_finite: bad > 0.0f32,
        ratio: select(channel_view || layer_view, args.wd_ratio, 1.0f32),
        channel_view,
        layer: select(layer_view, coefficient(pu, norm_p, sp, eps), 0.0f32),
    }
}

/// Launch 1 for `p` (contiguous, like `g`, `s1`, `s2`) around its `channels`, stepped with the
/// momentum rule `R` under `(rule, nesterov)`, under `invariance`. `run` is the launch the
/// update will use.
fn statistics<R: Momentum>(
    run: &Launch,
    [p, g, s1, s2]: [&CubeTensor; 4],
    channels: Channels,
    (rule, nesterov): (MomentArgs, bool),
    invariance: &ScaleInvariance,
) -> Statistics {
    let client = run.client();
    let vector = run.vector();
    let stats = client.empty(channels.count * STATS * size_of::<f32>());
    if channels.inner == 1 {
        let units = units_per_cube(client, channels.count);
        let dim = CubeDim::new_1d(units as u32);
        column_stats::launch::<R>(
            client,
            cubecl::calculate_cube_count_elemwise(client, channels.count, dim),
            dim,
            run.floats(&p.handle, channels.numel()),
            run.floats(&g.handle, channels.numel()),
            run.floats(&s1.handle, channels.numel()),
            run.floats(&s2.handle, channels.numel()),
            run.floats(&stats, channels.count * STATS),
            channels.count,
            channels.outer,
            rule.launch(),
            nesterov,
        );
    } else {
        let per_channel = channels.numel() / channels.count / vector;
        let units = reducing_units(client, per_channel);
        let dim = CubeDim::new_1d(units as u32);
        let count = cubecl::calculate_cube_count_elemwise(client, channels.count * units, dim);
        channel_stats::launch::<R>(
            client,
            count,
            dim,
            vector,
            run.arg(p),
            run.arg(g),
            run.arg(s1),
            run.arg(s2),
            run.floats(&stats, channels.count * STATS),
            channels.count,
            channels.inner,
            per_channel,
            rule.launch(),
            units,
            nesterov,
        );
    }

    let numel = channels.numel();
    Statistics {
        stats,
        channels,
        args: DecideArgs::new(invariance, numel / channels.count, numel),
    }
}

/// The cosine, the radial coefficient and the decision above against `super`'s formulas on
/// wgpu, element by element.
#[cfg(test)]
mod parity {
    use burn::cubecl;
    use burn::cubecl::prelude::*;

    use super::{DecideArgs, coefficient, cosine, views};
    use crate::engine::cube::parity::{Gpu, assert_close, inputs};
    use crate::rules::projection::{ProjectionView, ScaleInvariance, TestInputs};

    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    fn statistics(
        dot: &[f32],
        norm_p: &[f32],
        scale_p: &[f32],
        norm_g: &[f32],
        scale_g: &[f32],
        out_cosine: &mut [f32],
        out_coefficient: &mut [f32],
        epsilon: f32,
    ) {
        let i = ABSOLUTE_POS;
        if i < dot.len() {
            out_cosine[i] = cosine(
                dot[i], norm_p[i], scale_p[i], norm_g[i], scale_g[i], epsilon,
            );
            out_coefficient[i] = coefficient(dot[i], norm_p[i], scale_p[i], epsilon);
        }
    }

    #[cube(launch)]
    fn decisions(
        channel_cos: &[f32],
        layer_cos: &[f32],
        weight_sq: &[f32],
        grad_sq: &[f32],
        out: &mut [f32],
        args: &DecideArgs,
    ) {
        let i = ABSOLUTE_POS;
        if i < channel_cos.len() {
            let (channel, layer) = views(
                channel_cos[i],
                layer_cos[i],
                (weight_sq[i], grad_sq[i]),
                args,
            );
            out[i] = select(channel, 1.0f32, select(layer, 2.0f32, 0.0f32));
        }
    }

    /// Per element: `(norm, scale)` as the kernels form them, `‖x‖ = √(‖x̃‖²)·s` with
    /// `s = max|x|` and `‖x̃‖²` in `[1, 4096]` (a row of up to 4,096 elements scaled by its
    /// largest).
    fn norms(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let scales: Vec<f32> = inputs(n, seed, true)
            .iter()
            .map(|s| s.max(f32::MIN_POSITIVE))
            .collect();
        let width = inputs(n, seed + 1, true);
        let norms = (0..n)
            .map(|i| (1.0 + width[i].min(4095.0)).sqrt() * scales[i])
            .collect();
        (norms, scales)
    }

    #[test]
    fn the_cosine_and_the_radial_coefficient_match_their_formulas() {
        let Some(gpu) = Gpu::get() else { return };
        let n = 1024;
        let (norm_p, scale_p) = norms(n, 20);
        let (norm_g, scale_g) = norms(n, 22);
        // ⟨p̃, g̃⟩ and ⟨p̃, u⟩ of rows whose scaled elements are at most 1.
        let dot: Vec<f32> = inputs(n, 24, false)
            .iter()
            .map(|d| d.clamp(-4096.0, 4096.0))
            .collect();
        let all = [&dot, &norm_p, &scale_p, &norm_g, &scale_g].map(|v| gpu.upload(v));
        for epsilon in [1e-8, 1e-5, 0.0] {
            let inv = ScaleInvariance::detect(0.1, 0.1, epsilon, 0);
            let (out_cos, out_coef) = (gpu.empty(n), gpu.empty(n));
            let (count, dim) = gpu.elementwise(n);
            statistics::launch(
                &gpu.client,
                count,
                dim,
                gpu.arg(&all[0], n),
                gpu.arg(&all[1], n),
                gpu.arg(&all[2], n),
                gpu.arg(&all[3], n),
                gpu.arg(&all[4], n),
                gpu.arg(&out_cos, n),
                gpu.arg(&out_coef, n),
                epsilon as f32,
            );
            let input = |i: usize| {
                format!(
                    "dot {:e}, ‖p‖ {:e} (s {:e}), ‖g‖ {:e} (s {:e}), ε {epsilon}",
                    dot[i], norm_p[i], scale_p[i], norm_g[i], scale_g[i]
                )
            };
            let want: Vec<f32> = (0..n)
                .map(|i| inv.cosine(dot[i], (norm_p[i], scale_p[i]), (norm_g[i], scale_g[i])))
                .collect();
            assert_close("cosine", &gpu.read(out_cos), &want, input);
            // The kernel's coefficient multiplies the unscaled weight (`u − c·p`): the formula's
            // `c̃` on `p̃ = p / s_P` divided by `s_P`, in f64 where `c̃` cannot underflow.
            let want: Vec<f32> = (0..n)
                .map(|i| {
                    let [d, w, s] = [dot[i], norm_p[i], scale_p[i]].map(f64::from);
                    let inv = ScaleInvariance {
                        epsilon: f64::from(epsilon as f32),
                        ..inv
                    };
                    (inv.radial_coefficient(d, w, s) / s) as f32
                })
                .collect();
            assert_close("radial coefficient", &gpu.read(out_coef), &want, input);
        }
    }

    #[test]
    fn the_decision_matches_its_formula() {
        let Some(gpu) = Gpu::get() else { return };
        let n = 1024;
        let (width, numel) = (64, 4096);
        // Cosines spread around the two thresholds (0.0125 and 0.0015625 at δ = 0.1), squares
        // with zeros among them.
        let spread = |step: usize, top: f32| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * step) % 1009) as f32 / 1009.0 * top)
                .collect()
        };
        let channel_cos = spread(389, 0.025);
        let layer_cos = spread(743, 0.003);
        let zeros = |seed: u64| -> Vec<f32> {
            inputs(n, seed, true)
                .iter()
                .enumerate()
                .map(|(i, x)| if i % 5 == 0 { 0.0 } else { *x })
                .collect()
        };
        let (weight_sq, grad_sq) = (zeros(32), zeros(33));
        let all = [&channel_cos, &layer_cos, &weight_sq, &grad_sq].map(|v| gpu.upload(v));
        let views_of = [
            ProjectionView::Detect,
            ProjectionView::Channel,
            ProjectionView::Layer,
        ];
        for view in views_of {
            for zero_is_invariant in [true, false] {
                let inv = ScaleInvariance::detect(0.1, 0.1, 1e-8, 0)
                    .with_view(view)
                    .with_zero_is_invariant(zero_is_invariant);
                let out = gpu.empty(n);
                let (count, dim) = gpu.elementwise(n);
                decisions::launch(
                    &gpu.client,
                    count,
                    dim,
                    gpu.arg(&all[0], n),
                    gpu.arg(&all[1], n),
                    gpu.arg(&all[2], n),
                    gpu.arg(&all[3], n),
                    gpu.arg(&out, n),
                    DecideArgs::new(&inv, width, numel).launch(),
                );
                let got = gpu.read(out);
                let (thr_c, thr_l) = (inv.threshold(width), inv.threshold(numel));
                for i in 0..n {
                    let (c, l) = (f64::from(channel_cos[i]), f64::from(layer_cos[i]));
                    // Within f32 rounding of a threshold the f32 and f64 comparisons may differ.
                    if (c - thr_c).abs() < 1e-6 * thr_c || (l - thr_l).abs() < 1e-6 * thr_l {
                        continue;
                    }
                    let (channel, layer) = match view {
                        ProjectionView::Detect => inv.decide(TestInputs {
                            channel_cosine: (c, width),
                            layer_cosine: (l, numel),
                            squares: (f64::from(weight_sq[i]), f64::from(grad_sq[i])),
                        }),
                        ProjectionView::Channel => (true, false),
                        ProjectionView::Layer => (false, true),
                        ProjectionView::Off => (false, false),
                    };
                    let want = if channel {
                        1.0
                    } else if layer {
                        2.0
                    } else {
                        0.0
                    };
                    assert_eq!(
                        got[i], want,
                        "decision: element {i}: cos_c {c:e}, cos {l:e}, ‖P̃‖² {:e}, ‖G̃‖² {:e}, \
                         {view:?}, zero_is_invariant {zero_is_invariant}",
                        weight_sq[i], grad_sq[i]
                    );
                }
            }
        }
    }
}
