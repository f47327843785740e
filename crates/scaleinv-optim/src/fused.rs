//! Fused steps for the flex CPU backend: AdamP, SGDP, Stable-SPAM and width-scaled AdamW as a
//! few tight loops over the raw buffers instead of one pass per tensor operation.
//!
//! ```text
//! pass 1  read p, g: per channel ⟨p, g⟩, ‖p‖², ‖g‖² (nothing written)
//!         → the non-finite test and the cosine test, computed here on the CPU
//! test failed:   one pass   read p, g, state; write state and p ← p·(1 − ηλ) − η·u
//! test passed:   pass 2     read g, state, p; write state; ⟨p, u⟩ per channel → c
//!                pass 3     read p, state; write p ← p·(1 − ηλr) − η·(u − c·p)
//! ```
//!
//! A tensor the projection does not apply to (rank 1) skips pass 1, after a read of `g` for
//! the non-finite test under [`NonFinitePolicy::Skip`]. Nothing is written before the
//! non-finite test, so a skipped step leaves the state as it was without a copy.
//!
//! The element-wise arithmetic is the tensor-op path's, in the same order and in f32; the
//! reductions are summed in eight f32 lanes per block of 1,024 elements, the blocks in f64, so
//! the statistics and the projection coefficients agree with the tensor ops to rounding. Both
//! paths replay the golden trajectories (`tests/fused.rs` compares them directly).
//! Any tensor not on flex or not f32, or observed by an armed
//! [`ProjectionObserver`](crate::ProjectionObserver), takes the tensor-op path.

use burn::backend::flex::FlexTensor;
use burn::backend::{DispatchDevice, Flex};
use burn::tensor::{DType, Tensor};

use crate::moments::{AdamMoments, MomentState};
use crate::non_finite::NonFinitePolicy;
use crate::radial::{ProjectionView, ScaleInvariance};
use crate::sgdp::SgdpState;
use crate::stable_spam::StableSpamState;
use crate::step_guard::check_lr;

/// Whether `tensor` is an f32 tensor on flex (the fused path applies).
fn on_flex_f32<const D: usize>(tensor: &Tensor<D>) -> bool {
    matches!(tensor.device().as_dispatch(), DispatchDevice::Flex(_)) && tensor.dtype() == DType::F32
}

/// Whether the fused path can step `param`: a non-empty f32 tensor on flex, and for an
/// optimizer that projects along `channel_axis`, an axis of it.
pub(crate) fn accepts<const D: usize>(param: &Tensor<D>, channel_axis: Option<usize>) -> bool {
    param.shape().num_elements() > 0
        && on_flex_f32(param)
        && channel_axis.is_none_or(|axis| D < 2 || axis < D)
}

/// Whether the gradient and the state tensors fit the fused path with `param`: f32 on flex,
/// of its shape.
pub(crate) fn fit<'a, const D: usize>(
    param: &Tensor<D>,
    grad: &Tensor<D>,
    state: impl IntoIterator<Item = &'a Tensor<D>>,
) -> bool {
    let shape = param.shape();
    let fits = |t: &Tensor<D>| on_flex_f32(t) && t.shape() == shape;
    fits(grad) && state.into_iter().all(fits)
}

/// Whether a per-tensor statistic (shape `[1]`) is an f32 flex tensor.
pub(crate) fn scalar_on_flex(tensor: &Tensor<1>) -> bool {
    on_flex_f32(tensor) && tensor.dims() == [1]
}

/// Lanes of the blocked sums below: eight f32 partial sums the compiler keeps in one vector
/// register, over blocks short enough (1,024 elements) that f32 loses nothing that matters,
/// each block then added in f64.
const LANES: usize = 8;
const BLOCK: usize = 1024;

/// `Σ f(x_i)` over `x`, blocked (see [`BLOCK`]).
fn blocked_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0.0f64;
    for block in x.chunks(BLOCK) {
        let mut lanes = [0.0f32; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += f(v);
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
        total += lanes.iter().map(|&l| f64::from(l)).sum::<f64>() + f64::from(tail);
    }
    total
}

/// `(Σ p·g, Σ p², Σ g²)`, blocked (see [`BLOCK`]).
fn blocked_dots(p: &[f32], g: &[f32]) -> (f64, f64, f64) {
    let (mut d, mut w, mut q) = (0.0f64, 0.0f64, 0.0f64);
    for (pb, gb) in p.chunks(BLOCK).zip(g.chunks(BLOCK)) {
        let (mut dl, mut wl, mut ql) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
        let (mut pc, mut gc) = (pb.chunks_exact(LANES), gb.chunks_exact(LANES));
        for (pch, gch) in (&mut pc).zip(&mut gc) {
            for j in 0..LANES {
                dl[j] += pch[j] * gch[j];
                wl[j] += pch[j] * pch[j];
                ql[j] += gch[j] * gch[j];
            }
        }
        let wide = |l: [f32; LANES]| l.iter().map(|&v| f64::from(v)).sum::<f64>();
        d += wide(dl);
        w += wide(wl);
        q += wide(ql);
        for (&pi, &gi) in pc.remainder().iter().zip(gc.remainder()) {
            let (pi, gi) = (f64::from(pi), f64::from(gi));
            d += pi * gi;
            w += pi * pi;
            q += gi * gi;
        }
    }
    (d, w, q)
}

/// Whether every element is finite: `x·0` is 0 for a finite `x` and NaN for ±∞ or NaN.
fn finite(x: &[f32]) -> bool {
    blocked_sum(x, |v| v * 0.0).is_finite()
}

/// Reads `tensor`'s elements in place when it is an f32 flex tensor (a CPU buffer: no device
/// to synchronise with), for the host-side decisions of the wrappers; `None` elsewhere.
fn read<const D: usize, R>(tensor: &Tensor<D>, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    if !on_flex_f32(tensor) {
        return None;
    }
    let buffer = Buffer::new(tensor.clone());
    Some(f(buffer.get()))
}

/// Whether every element of `tensor` is finite, read on flex; `None` on other backends.
pub(crate) fn all_finite<const D: usize>(tensor: &Tensor<D>) -> Option<bool> {
    read(tensor, finite)
}

/// `‖tensor‖` (summed in f64), read on flex; `None` on other backends.
pub(crate) fn norm<const D: usize>(tensor: &Tensor<D>) -> Option<f64> {
    read(tensor, |x| blocked_sum(x, |v| v * v).sqrt())
}

/// The value of a one-element tensor, read on flex; `None` on other backends.
pub(crate) fn single_value<const D: usize>(tensor: &Tensor<D>) -> Option<f64> {
    read(tensor, |x| (x.len() == 1).then(|| f64::from(x[0]))).flatten()
}

/// A contiguous f32 flex buffer.
struct Buffer(FlexTensor);

impl Buffer {
    fn new<const D: usize>(tensor: Tensor<D>) -> Self {
        let flex = tensor
            .try_into_primitive::<Flex>()
            .unwrap_or_else(|_| unreachable!("checked by `applies`"));
        Self(if flex.is_contiguous() {
            flex
        } else {
            flex.to_contiguous()
        })
    }

    fn zeros(like: &Self) -> Self {
        Self(FlexTensor::zeros(
            like.0.layout().shape().clone(),
            DType::F32,
        ))
    }

    fn get(&self) -> &[f32] {
        self.0.as_slice::<f32>().expect("contiguous f32")
    }

    /// The elements, writable (copied first if another tensor shares the buffer).
    fn get_mut(&mut self) -> &mut [f32] {
        let (start, end) = self.0.layout().contiguous_offsets().expect("contiguous");
        &mut self.0.storage_mut::<f32>()[start..end]
    }

    fn tensor<const D: usize>(self) -> Tensor<D> {
        Tensor::from_primitive::<Flex>(self.0)
    }

    fn dims(&self) -> Vec<usize> {
        self.0.layout().shape().iter().copied().collect()
    }
}

/// A tensor seen as `[outer, channels, inner]` around its channel axis.
#[derive(Clone, Copy)]
struct Channels {
    outer: usize,
    count: usize,
    inner: usize,
}

impl Channels {
    fn new(dims: &[usize], axis: usize) -> Self {
        Self {
            outer: dims[..axis].iter().product(),
            count: dims[axis],
            inner: dims[axis + 1..].iter().product(),
        }
    }

    /// Calls `f(channel, range)` for each contiguous run of one channel's elements.
    #[inline(always)]
    fn for_each(self, mut f: impl FnMut(usize, std::ops::Range<usize>)) {
        for o in 0..self.outer {
            for c in 0..self.count {
                let start = (o * self.count + c) * self.inner;
                f(c, start..start + self.inner);
            }
        }
    }
}

/// Per-channel sums of pass 1, and the test's verdict.
struct Sums {
    /// `⟨P_c, G_c⟩`, `‖P_c‖²`, `‖G_c‖²`.
    dot: Vec<f64>,
    weight_sq: Vec<f64>,
    grad_sq: Vec<f64>,
}

fn total(v: &[f64]) -> f64 {
    v.iter().sum()
}

impl Sums {
    /// Pass 1 over `p` and `g`.
    fn measure(channels: Channels, p: &[f32], g: &[f32]) -> Self {
        let n = channels.count;
        let mut sums = Self {
            dot: vec![0.0; n],
            weight_sq: vec![0.0; n],
            grad_sq: vec![0.0; n],
        };
        if channels.inner == 1 {
            // The channel axis is the last (Burn's Linear): rows of `count` channels, each
            // element its own run; sum row by row, one accumulator per channel.
            let rows = p.chunks_exact(n).zip(g.chunks_exact(n));
            for (pr, gr) in rows {
                for c in 0..n {
                    let (pi, gi) = (f64::from(pr[c]), f64::from(gr[c]));
                    sums.dot[c] += pi * gi;
                    sums.weight_sq[c] += pi * pi;
                    sums.grad_sq[c] += gi * gi;
                }
            }
            return sums;
        }
        channels.for_each(|c, range| {
            let (d, w, q) = blocked_dots(&p[range.clone()], &g[range]);
            sums.dot[c] += d;
            sums.weight_sq[c] += w;
            sums.grad_sq[c] += q;
        });
        sums
    }

    /// The view the test selects, channel first: `(channel, layer)`.
    fn test(&self, config: &ScaleInvariance, numel: usize) -> (bool, bool) {
        let eps = config.epsilon;
        let cosine = |d: f64, w: f64, q: f64| d.abs() / (q.sqrt().max(eps) * w.sqrt().max(eps));
        let n = self.dot.len();
        let (d, w, q) = (
            total(&self.dot),
            total(&self.weight_sq),
            total(&self.grad_sq),
        );
        let nonzero = config.zero_is_invariant || (w > 0.0 && q > 0.0);
        match config.view {
            ProjectionView::Detect => {
                let row_width = (numel / n) as f64;
                let max_cos = (0..n)
                    .map(|c| cosine(self.dot[c], self.weight_sq[c], self.grad_sq[c]))
                    .fold(f64::NEG_INFINITY, f64::max);
                let channel = nonzero && max_cos < config.delta / row_width.sqrt();
                let layer = nonzero && cosine(d, w, q) < config.delta / (numel as f64).sqrt();
                (channel, layer && !channel)
            }
            ProjectionView::Channel => (true, false),
            ProjectionView::Layer => (false, true),
            ProjectionView::Off => (false, false),
        }
    }

    /// The coefficient `⟨P, U⟩ / (‖P‖ + ε)²` of each channel, per channel (`channel`) or for
    /// the whole tensor, from `⟨P_c, U_c⟩`.
    fn coefficients(&self, eps: f64, channel: bool, param_dot_update: &[f64]) -> Vec<f32> {
        let coef = |pu: f64, w: f64| (pu / (w.sqrt() + eps).powi(2)) as f32;
        if channel {
            let per_channel = param_dot_update.iter().zip(&self.weight_sq);
            per_channel.map(|(&pu, &w)| coef(pu, w)).collect()
        } else {
            let layer = coef(total(param_dot_update), total(&self.weight_sq));
            vec![layer; self.dot.len()]
        }
    }
}

/// The decoupled decay factor `1 − rate·r` as the tensor path computes it (`r·(−rate) + 1` in
/// f32), or `None` when `rate = 0` (no multiply).
fn decay_factor(rate: f64, ratio: f32) -> Option<f32> {
    (rate != 0.0).then(|| ratio * (-rate as f32) + 1.0)
}

/// What the optimizer-specific part of a fused step provides, per element `i`.
trait Kernel {
    /// Writes element `i`'s new state and returns its update `u`.
    fn advance(&mut self, i: usize) -> f32;
    /// The update `u` of element `i` from the state [`advance`](Self::advance) wrote.
    fn update(&self, i: usize) -> f32;
    /// Receives the projected update `u − c·p` of element `i`.
    fn projected(&mut self, _i: usize, _update: f32) {}
}

/// The frame every fused step shares: the passes and the decisions between them. Returns
/// `false`, with nothing written, when the step is skipped for a non-finite gradient.
struct Frame<'a> {
    /// The projection, for a tensor it applies to (rank ≥ 2, a view that can fire).
    projection: Option<&'a ScaleInvariance>,
    skip_non_finite: bool,
    /// Decoupled decay rate `η·λ` (before the ratio `r`), and the step's scale on `u`.
    decay_rate: f64,
    scale: f32,
}

impl Frame<'_> {
    fn run<K: Kernel>(&self, dims: &[usize], p: &mut [f32], g: &[f32], kernel: &mut K) -> bool {
        let axis = self.projection.map_or(0, |proj| proj.channel_axis);
        let channels = Channels::new(dims, axis.min(dims.len() - 1));
        let (sums, channel, layer) = if let Some(projection) = self.projection {
            let sums = Sums::measure(channels, p, g);
            if self.skip_non_finite && !total(&sums.grad_sq).is_finite() {
                return false;
            }
            let (channel, layer) = sums.test(projection, p.len());
            (Some((sums, projection)), channel, layer)
        } else {
            if self.skip_non_finite && !finite(g) {
                return false;
            }
            (None, false, false)
        };
        let scale = self.scale;
        match sums.filter(|_| channel || layer) {
            None => {
                let factor = decay_factor(self.decay_rate, 1.0);
                for (i, p) in p.iter_mut().enumerate() {
                    let u = kernel.advance(i);
                    *p = factor.map_or(*p, |f| *p * f) - u * scale;
                }
            }
            Some((sums, projection)) => {
                let mut dots = vec![0.0; channels.count];
                channels.for_each(|c, range| {
                    let ps = &p[range.clone()];
                    let start = range.start;
                    let dot: f64 = range
                        .map(|i| f64::from(ps[i - start]) * f64::from(kernel.advance(i)))
                        .sum();
                    dots[c] += dot;
                });
                let coefs = sums.coefficients(projection.epsilon, channel, &dots);
                let factor = decay_factor(self.decay_rate, projection.wd_ratio as f32);
                channels.for_each(|c, range| {
                    for i in range {
                        let projected = kernel.update(i) - p[i] * coefs[c];
                        kernel.projected(i, projected);
                        p[i] = factor.map_or(p[i], |f| p[i] * f) - projected * scale;
                    }
                });
            }
        }
        true
    }
}

/// An Adam-type step's hyperparameters, as the fused step needs them: AdamP's (with its
/// projection), or AdamW's (width-scaled AdamW, no projection).
pub(crate) struct AdamStep<'a> {
    pub moments: &'a AdamMoments,
    pub projection: Option<&'a ScaleInvariance>,
    pub weight_decay: f64,
    pub nesterov: bool,
    pub non_finite: NonFinitePolicy,
}

/// Adam's moments of one tensor, updated element by element as `AdamMoments` and AdamP's step
/// do with tensor operations.
struct AdamKernel<'a> {
    g: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    b1: f32,
    b2: f32,
    c1: f32,
    c2: f32,
    root_bc2: f32,
    eps: f32,
    nesterov: bool,
}

impl AdamKernel<'_> {
    /// `(m', v')` of element `i`.
    #[inline(always)]
    fn moments(&self, i: usize) -> (f32, f32) {
        let g = self.g[i];
        (
            self.m[i] * self.b1 + g * self.c1,
            self.v[i] * self.b2 + g * g * self.c2,
        )
    }

    #[inline(always)]
    fn update_from(&self, i: usize, m: f32, v: f32) -> f32 {
        let denom = v.sqrt() / self.root_bc2 + self.eps;
        if self.nesterov {
            (m * self.b1 + self.g[i] * self.c1) / denom
        } else {
            m / denom
        }
    }
}

impl Kernel for AdamKernel<'_> {
    #[inline(always)]
    fn advance(&mut self, i: usize) -> f32 {
        let (m, v) = self.moments(i);
        self.m[i] = m;
        self.v[i] = v;
        self.update_from(i, m, v)
    }

    #[inline(always)]
    fn update(&self, i: usize) -> f32 {
        self.update_from(i, self.m[i], self.v[i])
    }
}

/// The projection, when it applies to a rank-`D` tensor (rank ≥ 2, a view that can fire).
fn projection_for<const D: usize>(projection: &ScaleInvariance) -> Option<&ScaleInvariance> {
    (D >= 2 && projection.view != ProjectionView::Off).then_some(projection)
}

impl AdamStep<'_> {
    /// One AdamP step (see [`AdamP`](crate::AdamP)), or AdamW's without a projection; the
    /// caller checked [`accepts`] and [`fit`].
    pub fn run<const D: usize>(
        &self,
        lr: f64,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<MomentState<D>>,
    ) -> (Tensor<D>, Option<MomentState<D>>) {
        check_lr(lr);
        let mut p = Buffer::new(param);
        let g = Buffer::new(grad);
        let (time, mut m, mut v) = match state {
            Some(s) => (s.time + 1, Buffer::new(s.moment_1), Buffer::new(s.moment_2)),
            None => (1, Buffer::zeros(&p), Buffer::zeros(&p)),
        };
        let adam = self.moments;
        let (bc1, bc2) = adam.bias_corrections(time);
        let frame = Frame {
            projection: self.projection.and_then(projection_for::<D>),
            skip_non_finite: self.non_finite == NonFinitePolicy::Skip,
            decay_rate: lr * self.weight_decay,
            scale: (lr / bc1) as f32,
        };
        let dims = p.dims();
        let mut kernel = AdamKernel {
            g: g.get(),
            m: m.get_mut(),
            v: v.get_mut(),
            b1: adam.beta_1 as f32,
            b2: adam.beta_2 as f32,
            c1: (1.0 - adam.beta_1) as f32,
            c2: (1.0 - adam.beta_2) as f32,
            root_bc2: bc2.sqrt() as f32,
            eps: adam.epsilon as f32,
            nesterov: self.nesterov,
        };
        frame.run(&dims, p.get_mut(), g.get(), &mut kernel);
        let state = MomentState {
            time,
            moment_1: m.tensor(),
            moment_2: v.tensor(),
        };
        (p.tensor(), Some(state))
    }
}

/// SGDP's hyperparameters, as the fused step needs them.
pub(crate) struct SgdpStep<'a> {
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub project_momentum_buffer: bool,
    pub projection: &'a ScaleInvariance,
    pub non_finite: NonFinitePolicy,
}

/// SGDP's momentum buffer of one tensor, updated element by element as SGDP's step does with
/// tensor operations. The buffer starts from zeros (`0·μ + x = x` exactly, the tensor path's
/// first step) and with μ = 0 it is scratch space that is not kept.
struct SgdKernel<'a> {
    g: &'a [f32],
    b: &'a mut [f32],
    mu: f32,
    /// `1 − τ` (1 for τ = 0, an exact multiply).
    damping: f32,
    nesterov: bool,
    write_back: bool,
}

impl SgdKernel<'_> {
    /// `u` from the buffer value `b` of element `i`.
    #[inline(always)]
    fn update_from(&self, i: usize, b: f32) -> f32 {
        if self.nesterov {
            self.g[i] + b * self.mu
        } else {
            b
        }
    }
}

impl Kernel for SgdKernel<'_> {
    #[inline(always)]
    fn advance(&mut self, i: usize) -> f32 {
        let b = self.b[i] * self.mu + self.g[i] * self.damping;
        self.b[i] = b;
        self.update_from(i, b)
    }

    #[inline(always)]
    fn update(&self, i: usize) -> f32 {
        self.update_from(i, self.b[i])
    }

    #[inline(always)]
    fn projected(&mut self, i: usize, update: f32) {
        if self.write_back {
            self.b[i] = update;
        }
    }
}

impl SgdpStep<'_> {
    /// One SGDP step (see [`Sgdp`](crate::Sgdp)); the caller checked [`accepts`] and [`fit`].
    pub fn run<const D: usize>(
        &self,
        lr: f64,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<SgdpState<D>>,
    ) -> (Tensor<D>, Option<SgdpState<D>>) {
        check_lr(lr);
        let mu = self.momentum;
        let mut p = Buffer::new(param);
        let g = Buffer::new(grad);
        let previous = state.filter(|_| mu != 0.0).map(|s| Buffer::new(s.momentum));
        let mut buffer = previous.unwrap_or_else(|| Buffer::zeros(&p));
        let frame = Frame {
            projection: projection_for::<D>(self.projection),
            skip_non_finite: self.non_finite == NonFinitePolicy::Skip,
            decay_rate: lr * self.weight_decay / (1.0 - mu),
            scale: lr as f32,
        };
        let dims = p.dims();
        let mut kernel = SgdKernel {
            g: g.get(),
            b: buffer.get_mut(),
            mu: mu as f32,
            damping: (1.0 - self.dampening) as f32,
            nesterov: self.nesterov,
            write_back: !self.nesterov && self.project_momentum_buffer,
        };
        frame.run(&dims, p.get_mut(), g.get(), &mut kernel);
        let state = (mu != 0.0).then(|| SgdpState {
            momentum: buffer.tensor(),
        });
        (p.tensor(), state)
    }
}

/// Stable-SPAM's hyperparameters at one step (β1 and γ1 already scaled by the cosine
/// multiplier), as the fused step needs them.
pub(crate) struct StableSpamStep {
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
    pub gamma_1: f64,
    pub gamma_2: f64,
    pub theta: f64,
    /// Whether Adam's moments are reset at this step, and whether before the update (`Clean`)
    /// or after it (`Reference`).
    pub reset: bool,
    pub clean_reset: bool,
    pub skip_non_finite: bool,
}

/// `prev·decay + x·(1 − decay)` in f32, as `moments::ema` computes it on tensors.
fn ema(prev: f32, x: f32, decay: f64) -> f32 {
    prev * decay as f32 + x * (1.0 - decay) as f32
}

impl StableSpamStep {
    /// One Stable-SPAM step (see [`StableSpam`](crate::StableSpam)) from the state `old`
    /// (zeros before the first step): two reads of `g` (`max|g|`, then the clipped norm), the
    /// per-tensor statistics on the CPU, then one pass for the moments and the parameter.
    pub fn run<const D: usize>(
        &self,
        lr: f64,
        param: Tensor<D>,
        grad: Tensor<D>,
        old: StableSpamState<D>,
    ) -> (Tensor<D>, StableSpamState<D>) {
        let t = old.moments.time + 1;
        let time = if self.reset { 1 } else { t };
        let mut p = Buffer::new(param);
        let g = Buffer::new(grad);
        let mut m = Buffer::new(old.moments.moment_1);
        let mut v = Buffer::new(old.moments.moment_2);
        let mut max_v = old.max_moment_2.map(Buffer::new);
        let mut clip = Buffer::new(old.clip_threshold);
        let mut norm_mean = Buffer::new(old.norm_mean);
        let mut norm_sq_mean = Buffer::new(old.norm_sq_mean);
        let gs = g.get();

        // AdaClip: the elements above the bias-corrected average of max|g| are scaled down.
        let max_abs = gs.iter().fold(0.0f32, |a, x| a.max(x.abs()));
        let threshold = ema(clip.get()[0], max_abs, self.theta);
        let limit = threshold / (1.0 - self.theta.powi(t as i32)) as f32;
        let spike_scale = limit / max_abs.max(f32::MIN_POSITIVE);
        let clipped = |x: f32| if x.abs() > limit { x * spike_scale } else { x };
        // AdaGN: the norm of the clipped gradient, and the rescale to the averages' ratio.
        let norm_sq = blocked_sum(gs, |x| {
            let c = clipped(x);
            c * c
        });
        let norm = norm_sq.sqrt() as f32;
        let skip = self.skip_non_finite && !norm.is_finite();
        if !skip {
            let mean = ema(norm_mean.get()[0], norm, self.gamma_1);
            let sq_mean = ema(norm_sq_mean.get()[0], norm * norm, self.gamma_2);
            let mean_hat = mean / (1.0 - self.gamma_1.powi(t as i32)) as f32;
            let sq_mean_hat = sq_mean / (1.0 - self.gamma_2.powi(t as i32)) as f32;
            let target = mean_hat / (sq_mean_hat.sqrt() + self.epsilon as f32);
            let rescale = if norm <= 0.0 {
                1.0
            } else {
                target / norm.max(f32::MIN_POSITIVE)
            };
            clip.get_mut()[0] = threshold;
            norm_mean.get_mut()[0] = mean;
            norm_sq_mean.get_mut()[0] = sq_mean;

            if self.reset && self.clean_reset {
                m.get_mut().fill(0.0);
                v.get_mut().fill(0.0);
            }
            let adam = AdamMoments {
                beta_1: self.beta_1,
                beta_2: self.beta_2,
                epsilon: self.epsilon,
            };
            let (bc1, bc2) = adam.bias_corrections(time);
            let (b1, b2) = (self.beta_1 as f32, self.beta_2 as f32);
            let (c1, c2) = ((1.0 - self.beta_1) as f32, (1.0 - self.beta_2) as f32);
            let (root_bc2, eps, step) = (bc2.sqrt() as f32, self.epsilon as f32, (lr / bc1) as f32);
            let decay = (self.weight_decay != 0.0).then_some((1.0 - lr * self.weight_decay) as f32);
            let (ps, ms, vs) = (p.get_mut(), m.get_mut(), v.get_mut());
            let mut max_vs = max_v.as_mut().map(Buffer::get_mut);
            for i in 0..ps.len() {
                let g = clipped(gs[i]) * rescale;
                ms[i] = ms[i] * b1 + g * c1;
                vs[i] = vs[i] * b2 + g * g * c2;
                let second = match &mut max_vs {
                    Some(max) => {
                        max[i] = max[i].max(vs[i]);
                        max[i]
                    }
                    None => vs[i],
                };
                let update = ms[i] / (second.sqrt() / root_bc2 + eps) * step;
                ps[i] = decay.map_or(ps[i], |d| ps[i] * d) - update;
            }
        }
        if self.reset && !self.clean_reset {
            m.get_mut().fill(0.0);
            v.get_mut().fill(0.0);
        }
        let state = StableSpamState {
            global_step: old.global_step + 1,
            moments: MomentState {
                time,
                moment_1: m.tensor(),
                moment_2: v.tensor(),
            },
            max_moment_2: max_v.map(Buffer::tensor),
            clip_threshold: clip.tensor(),
            norm_mean: norm_mean.tensor(),
            norm_sq_mean: norm_sq_mean.tensor(),
        };
        (p.tensor(), state)
    }
}
