//! The frame every fused step shares: the statistics pass, the host-side tests, and the one
//! or two update passes, around an optimizer's per-element [`Kernel`].
//!
//! Every pass cuts the tensor into the fixed chunks of [`parallel`](super::parallel) (whole rows
//! for a last-axis layout), one task each; within a chunk the elements go in segments of at
//! most [`BLOCK`] that never cross a channel's run, through zipped slices: the kernel writes a
//! segment's updates into a scratch block, the frame reduces or applies them.

use std::ops::Range;

use super::elem::{Elem, fit, view};
use super::parallel::{CHUNK, Task, ranges, run_all, split, split_mut, take_front, take_front_mut};
use super::sums::{BLOCK, blocked_dot, blocked_dots, blocked_squares, finite, row_dots};
use crate::math::decay::factor;
use crate::math::invariance::{ProjectionView, ScaleInvariance};

/// The longest channel run projected in one pass (see [`Frame::runs`]): 1 MiB of updates.
const MAX_RUN: usize = 1 << 18;

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

    fn numel(self) -> usize {
        self.outer * self.count * self.inner
    }

    /// Whether each channel is one contiguous run, short enough for a scratch buffer in cache
    /// (the channel axis is the first, as in a convolution's kernel).
    fn by_runs(self) -> bool {
        self.outer == 1 && self.inner > 1 && self.inner <= MAX_RUN
    }

    /// Whether each element is its own channel's run (the channel axis is the last, as in
    /// Burn's `Linear`): rows of `count` elements, element `j` of a row in channel `j`.
    fn by_rows(self) -> bool {
        self.inner == 1
    }

    /// The fixed chunks: whole rows in a last-axis layout, [`CHUNK`] elements otherwise.
    fn chunks(self) -> Vec<Range<usize>> {
        let step = if self.by_rows() {
            (CHUNK / self.count).max(1) * self.count
        } else {
            CHUNK
        };
        ranges(self.numel(), step)
    }

    /// Consecutive segments of `range` (at most [`BLOCK`] long), as `(channel, len)`: within
    /// one channel's run, or for a last-axis layout within one row, starting at channel
    /// `channel`.
    #[inline(always)]
    fn segments(self, range: Range<usize>) -> Segments {
        Segments {
            channels: self,
            at: range.start,
            end: range.end,
        }
    }
}

/// The iterator of [`Channels::segments`] (an iterator rather than a callback, so that its loop
/// body is compiled inline into each task).
struct Segments {
    channels: Channels,
    at: usize,
    end: usize,
}

impl Iterator for Segments {
    type Item = (usize, usize);

    #[inline(always)]
    fn next(&mut self) -> Option<(usize, usize)> {
        let (i, ch) = (self.at, self.channels);
        if i >= self.end {
            return None;
        }
        let (channel, run_end) = if ch.by_rows() {
            let c = i % ch.count;
            (c, i - c + ch.count)
        } else {
            let run = i / ch.inner;
            (run % ch.count, (run + 1) * ch.inner)
        };
        let len = (run_end.min(self.end) - i).min(BLOCK);
        self.at += len;
        Some((channel, len))
    }
}

/// Per-channel sums of one chunk, `(channel, sums)` in the order met; [`combine`] adds the
/// chunks' entries in chunk order.
type Partial<const K: usize> = Vec<(usize, [f64; K])>;

/// Adds `value` to the last entry when it is `channel`'s, else opens an entry.
#[inline(always)]
fn accumulate<const K: usize>(partial: &mut Partial<K>, channel: usize, value: [f64; K]) {
    match partial.last_mut() {
        Some((c, sums)) if *c == channel => sums.iter_mut().zip(value).for_each(|(s, v)| *s += v),
        _ => partial.push((channel, value)),
    }
}

/// The chunks' partial sums added per channel, in chunk order.
fn combine<const K: usize>(partials: Vec<Partial<K>>, channels: usize) -> [Vec<f64>; K] {
    let mut sums = std::array::from_fn(|_| vec![0.0; channels]);
    for (c, value) in partials.into_iter().flatten() {
        for (total, v) in sums.iter_mut().zip(value) {
            total[c] += v;
        }
    }
    sums
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
    fn measure<E: Elem>(channels: Channels, chunks: &[Range<usize>], p: &[E], g: &[E]) -> Self {
        let pieces = split(p, chunks).into_iter().zip(split(g, chunks));
        let tasks = chunks.iter().cloned().zip(pieces);
        let tasks = tasks.map(|(range, (p, g))| Measure {
            channels,
            range,
            p,
            g,
        });
        let partials = run_all(tasks.collect(), channels.numel());
        let [dot, weight_sq, grad_sq] = combine(partials, channels.count);
        Self {
            dot,
            weight_sq,
            grad_sq,
        }
    }

    /// The view the test selects, channel first: `(channel, layer)`.
    fn test(&self, projection: &ScaleInvariance, numel: usize) -> (bool, bool) {
        let n = self.dot.len();
        let (d, w, q) = (
            total(&self.dot),
            total(&self.weight_sq),
            total(&self.grad_sq),
        );
        let nonzero = projection.zero_is_invariant || (w > 0.0 && q > 0.0);
        match projection.view {
            ProjectionView::Detect => {
                // The statistics are f64 sums of the unscaled rows: scale 1.
                let cosine =
                    |d: f64, w: f64, q: f64| projection.cosine(d, (w.sqrt(), 1.0), (q.sqrt(), 1.0));
                let max_cos = (0..n)
                    .map(|c| cosine(self.dot[c], self.weight_sq[c], self.grad_sq[c]))
                    .fold(f64::NEG_INFINITY, f64::max);
                let channel = nonzero && max_cos < projection.threshold(numel / n);
                let layer = nonzero && cosine(d, w, q) < projection.threshold(numel);
                (channel, layer && !channel)
            }
            ProjectionView::Channel => (true, false),
            ProjectionView::Layer => (false, true),
            ProjectionView::Off => (false, false),
        }
    }

    /// The coefficient `⟨P, U⟩ / (‖P‖ + ε)²` of each channel, per channel (`channel`) or for
    /// the whole tensor, from `⟨P_c, U_c⟩`.
    fn coefficients(
        &self,
        projection: &ScaleInvariance,
        channel: bool,
        param_dot_update: &[f64],
    ) -> Vec<f32> {
        let coef = |pu: f64, w: f64| coefficient(projection, pu, w);
        if channel {
            let per_channel = param_dot_update.iter().zip(&self.weight_sq);
            per_channel.map(|(&pu, &w)| coef(pu, w)).collect()
        } else {
            let layer = coef(total(param_dot_update), total(&self.weight_sq));
            vec![layer; self.dot.len()]
        }
    }
}

/// The radial coefficient `⟨P, U⟩ / (‖P‖ + ε)²` from `⟨P, U⟩` and `‖P‖²` (f64 sums of the
/// unscaled rows: scale 1).
#[inline(always)]
fn coefficient(projection: &ScaleInvariance, param_dot_update: f64, weight_sq: f64) -> f32 {
    projection.radial_coefficient(param_dot_update, weight_sq.sqrt(), 1.0) as f32
}

/// Pass 1 over one chunk: per-channel `(⟨P_c, G_c⟩, ‖P_c‖², ‖G_c‖²)`.
struct Measure<'a, E> {
    channels: Channels,
    range: Range<usize>,
    p: &'a [E],
    g: &'a [E],
}

impl<E: Elem> Task for Measure<'_, E> {
    type Output = Partial<3>;
    #[inline(always)]
    fn run(self) -> Partial<3> {
        let Self {
            channels,
            range,
            mut p,
            mut g,
        } = self;
        let mut partial = Partial::new();
        let (mut sp, mut sg) = (Vec::new(), Vec::new());
        if channels.by_rows() {
            let mut sums = std::array::from_fn(|_| vec![0.0; channels.count]);
            row_dots(
                view(p, &mut sp),
                view(g, &mut sg),
                channels.count,
                &mut sums,
            );
            let [d, w, q] = sums;
            for (c, ((d, w), q)) in d.into_iter().zip(w).zip(q).enumerate() {
                partial.push((c, [d, w, q]));
            }
        } else {
            for (c, len) in channels.segments(range) {
                let (p, g) = (take_front(&mut p, len), take_front(&mut g, len));
                let (d, w, q) = blocked_dots(view(p, &mut sp), view(g, &mut sg));
                accumulate(&mut partial, c, [d, w, q]);
            }
        }
        partial
    }
}

/// The decoupled decay factor `1 − rate·r` (`math::decay::factor`), or `None` when
/// `rate = 0` (no multiply).
fn decay_factor(rate: f64, ratio: f32) -> Option<f32> {
    (rate != 0.0).then(|| factor(ratio, rate))
}

/// A parameter's elements for one step: read from `src` and written to `dst`, or read and
/// written in place (`src` is `None`) — the copy-on-write of a shared buffer, in the pass that
/// writes. f16/bf16 elements are converted to f32 and back a segment at a time.
pub(crate) struct Param<'a, E = f32> {
    src: Option<&'a [E]>,
    dst: &'a mut [E],
}

impl<'a, E: Elem> Param<'a, E> {
    /// The elements of `p`, rewritten in place.
    pub fn in_place(p: &'a mut [E]) -> Self {
        Self { src: None, dst: p }
    }

    /// The elements of `src`, written to `dst` (of the same length).
    pub fn copied(src: &'a [E], dst: &'a mut [E]) -> Self {
        assert_eq!(src.len(), dst.len(), "a parameter and its new buffer");
        Self {
            src: Some(src),
            dst,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.dst.len()
    }

    /// The values before the step.
    pub fn old(&self) -> &[E] {
        match self.src {
            Some(src) => src,
            None => self.dst,
        }
    }

    /// The values before the step as f32 (converted into `scratch` unless they are f32).
    #[inline(always)]
    fn old_f32<'s>(&'s self, scratch: &'s mut Vec<f32>) -> &'s [f32] {
        view(self.old(), scratch)
    }

    /// The elements cut at `ranges` (consecutive, from 0).
    pub(super) fn split(self, ranges: &[Range<usize>]) -> Vec<Param<'a, E>> {
        let dst = split_mut(self.dst, ranges);
        match self.src {
            None => dst.into_iter().map(Param::in_place).collect(),
            Some(src) => split(src, ranges)
                .into_iter()
                .zip(dst)
                .map(|(s, d)| Param::copied(s, d))
                .collect(),
        }
    }

    /// The first `n` elements, taken off the front.
    #[inline(always)]
    pub(super) fn take(&mut self, n: usize) -> Param<'a, E> {
        Param {
            src: self.src.as_mut().map(|s| take_front(s, n)),
            dst: take_front_mut(&mut self.dst, n),
        }
    }

    /// `p ← new(p, u)` element by element, `u` of the same length; returns the new values in
    /// f32 (for f16/bf16, before their rounding: computed in `scratch`, then stored).
    #[inline(always)]
    pub(super) fn write<'s>(
        self,
        u: &[f32],
        new: impl Fn(f32, f32) -> f32,
        scratch: &'s mut Vec<f32>,
    ) -> &'s [f32]
    where
        'a: 's,
    {
        self.write_over(u, new, scratch, false)
    }

    /// [`write`](Self::write), where `viewed` says that `scratch` already holds the old values
    /// in f32 (from [`old_f32`](Self::old_f32)), so that a half type is not converted twice.
    #[inline(always)]
    fn write_over<'s>(
        self,
        u: &[f32],
        new: impl Fn(f32, f32) -> f32,
        scratch: &'s mut Vec<f32>,
        viewed: bool,
    ) -> &'s [f32]
    where
        'a: 's,
    {
        let Self { src, dst } = self;
        match E::as_f32_mut(dst) {
            Ok(dst) => {
                match src.map(|s| E::as_f32(s).expect("one element type")) {
                    None => {
                        for (p, &u) in dst.iter_mut().zip(u) {
                            *p = new(*p, u);
                        }
                    }
                    Some(src) => {
                        for ((p, &old), &u) in dst.iter_mut().zip(src).zip(u) {
                            *p = new(old, u);
                        }
                    }
                }
                dst
            }
            Err(dst) => {
                let values = fit(scratch, dst.len());
                if !viewed {
                    E::load(src.unwrap_or(dst), values);
                }
                for (p, &u) in values.iter_mut().zip(u) {
                    *p = new(*p, u);
                }
                E::store(values, dst);
                values
            }
        }
    }

    /// `p ← p·f − u·scale` (`p − u·scale` without a decay factor); returns the new values.
    /// `viewed`: `scratch` holds the old values from [`old_f32`](Self::old_f32).
    #[inline(always)]
    fn step<'s>(
        self,
        u: &[f32],
        (factor, scale): (Option<f32>, f32),
        scratch: &'s mut Vec<f32>,
        viewed: bool,
    ) -> &'s [f32]
    where
        'a: 's,
    {
        match factor {
            Some(f) => self.write_over(u, |p, u| p * f - u * scale, scratch, viewed),
            None => self.write_over(u, |p, u| p - u * scale, scratch, viewed),
        }
    }
}

/// `Σ p'²` of the values a pass just wrote, when the step measures the new parameter (NaP's
/// projection, see [`Outcome`]): they are still in the L1 cache, so the sum costs no read of
/// memory. The segments' sums are added in order within a chunk, the chunks' in chunk order.
#[derive(Clone, Copy)]
pub(super) struct NewNorm(pub bool);

impl NewNorm {
    #[inline(always)]
    pub fn of(self, written: &[f32]) -> f64 {
        if self.0 {
            blocked_squares(written, |x| x)
        } else {
            0.0
        }
    }

    /// The chunks' sums, added in chunk order, when measured.
    pub fn total(self, chunks: Vec<f64>) -> Option<f64> {
        self.0.then(|| chunks.into_iter().sum())
    }
}

/// What a fused step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Skipped for a non-finite gradient: nothing written.
    Skipped,
    /// The parameter and the state written, with `Σ p'²` of the new parameter when the step
    /// was asked to measure it.
    Written(Option<f64>),
}

impl Outcome {
    pub fn written(self) -> bool {
        matches!(self, Self::Written(_))
    }

    /// `Σ p'²` of the new parameter, when measured and written.
    pub fn new_squares(self) -> Option<f64> {
        match self {
            Self::Written(squares) => squares,
            Self::Skipped => None,
        }
    }
}

/// The optimizer-specific part of a fused step: its state, cut into the parts the frame's
/// tasks step.
pub(super) trait Kernel {
    type Part<'a>: Part
    where
        Self: 'a;
    /// The state of each of `ranges` (consecutive, from element 0), one part each.
    fn parts(&mut self, ranges: &[Range<usize>]) -> Vec<Self::Part<'_>>;
}

/// One chunk's state, stepped front to back in segments: each call takes the next `u.len()`
/// elements.
pub(super) trait Part: Send {
    /// Writes the elements' new state and their updates `u`.
    fn advance(&mut self, u: &mut [f32]);
    /// The elements' updates `u` from the state [`advance`](Self::advance) wrote.
    fn update(&mut self, u: &mut [f32]);
    /// Receives the projected updates `u − c·p` of the elements the last call to
    /// [`advance`](Self::advance) or [`update`](Self::update) gave.
    fn projected(&mut self, _u: &[f32]) {}
}

/// The frame every fused step shares: the passes and the decisions between them.
pub(super) struct Frame<'a> {
    /// The projection, if the optimizer projects (it applies to tensors of rank ≥ 2, with a
    /// view that can fire).
    pub projection: Option<&'a ScaleInvariance>,
    pub skip_non_finite: bool,
    /// Whether the pass that writes `p` also sums `p'²`.
    pub new_norm: NewNorm,
    /// Decoupled decay rate `η·λ` (before the ratio `r`), and the step's scale on `u`.
    pub decay_rate: f64,
    pub scale: f32,
}

impl Frame<'_> {
    pub fn run<K: Kernel, E: Elem>(
        &self,
        dims: &[usize],
        p: Param<'_, E>,
        g: &[E],
        kernel: &mut K,
    ) -> Outcome {
        let new_norm = self.new_norm;
        let projection = self.projection.filter(|proj| proj.applies_to(dims.len()));
        let Some(projection) = projection else {
            if self.skip_non_finite && !finite(g) {
                return Outcome::Skipped;
            }
            let squares = self.plain(p, kernel, decay_factor(self.decay_rate, 1.0));
            return Outcome::Written(new_norm.total(squares));
        };
        let channels = Channels::new(dims, projection.channel_axis.min(dims.len() - 1));
        let chunks = channels.chunks();
        let sums = Sums::measure(channels, &chunks, p.old(), g);
        if self.skip_non_finite && !total(&sums.grad_sq).is_finite() {
            return Outcome::Skipped;
        }
        let (channel, layer) = sums.test(projection, channels.numel());
        let squares = if !(channel || layer) {
            self.plain(p, kernel, decay_factor(self.decay_rate, 1.0))
        } else {
            let factor = decay_factor(self.decay_rate, projection.wd_ratio as f32);
            if channel && channels.by_runs() {
                self.runs(channels, p, kernel, (projection, &sums.weight_sq), factor)
            } else {
                let dots = Self::dots(channels, &chunks, p.old(), kernel);
                let coefs = sums.coefficients(projection, channel, &dots);
                self.projected(channels, &chunks, p, kernel, &coefs, factor)
            }
        };
        Outcome::Written(new_norm.total(squares))
    }

    /// A channel-wise projection one channel's run at a time: its state, `⟨P_c, U_c⟩`, the
    /// coefficient and `p ← p·f − η'·(u − c·p)`, with the run's updates kept in a scratch
    /// buffer (in cache) in between — one pass after the statistics.
    fn runs<K: Kernel, E: Elem>(
        &self,
        channels: Channels,
        p: Param<'_, E>,
        kernel: &mut K,
        (projection, weight_sq): (&ScaleInvariance, &[f64]),
        factor: Option<f32>,
    ) -> Vec<f64> {
        let chunks = ranges(
            channels.numel(),
            (CHUNK / channels.inner).max(1) * channels.inner,
        );
        let tasks = p.split(&chunks).into_iter().zip(kernel.parts(&chunks));
        let tasks = chunks.iter().zip(tasks).map(|(range, (p, part))| Runs {
            first: range.start / channels.inner,
            inner: channels.inner,
            p,
            part,
            projection,
            weight_sq,
            factor,
            scale: self.scale,
            new_norm: self.new_norm,
        });
        run_all(tasks.collect(), channels.numel())
    }

    /// One pass: the state and `p ← p·f − η'·u`.
    fn plain<K: Kernel, E: Elem>(
        &self,
        p: Param<'_, E>,
        kernel: &mut K,
        factor: Option<f32>,
    ) -> Vec<f64> {
        let numel = p.len();
        let chunks = ranges(numel, CHUNK);
        let tasks = p.split(&chunks).into_iter().zip(kernel.parts(&chunks));
        let (scale, new_norm) = (self.scale, self.new_norm);
        let tasks = tasks.map(|(p, part)| Plain {
            p,
            part,
            factor,
            scale,
            new_norm,
        });
        run_all(tasks.collect(), numel)
    }

    /// Pass 2 of a projected step: the state, and `⟨P_c, U_c⟩` per channel.
    fn dots<K: Kernel, E: Elem>(
        channels: Channels,
        chunks: &[Range<usize>],
        p: &[E],
        kernel: &mut K,
    ) -> Vec<f64> {
        let parts = split(p, chunks).into_iter().zip(kernel.parts(chunks));
        let tasks = chunks.iter().cloned().zip(parts);
        let tasks = tasks.map(|(range, (p, part))| Dots {
            channels,
            range,
            p,
            part,
        });
        let partials = run_all(tasks.collect(), channels.numel());
        let [dots] = combine(partials, channels.count);
        dots
    }

    /// Pass 3 of a projected step: `p ← p·f − η'·(u − c·p)`.
    fn projected<K: Kernel, E: Elem>(
        &self,
        channels: Channels,
        chunks: &[Range<usize>],
        p: Param<'_, E>,
        kernel: &mut K,
        coefs: &[f32],
        factor: Option<f32>,
    ) -> Vec<f64> {
        let parts = p.split(chunks).into_iter().zip(kernel.parts(chunks));
        let tasks = chunks.iter().cloned().zip(parts);
        let tasks = tasks.map(|(range, (p, part))| Project {
            channels,
            range,
            p,
            part,
            coefs,
            factor,
            scale: self.scale,
            new_norm: self.new_norm,
        });
        run_all(tasks.collect(), channels.numel())
    }
}

/// One pass over one chunk: the state and `p ← p·f − η'·u`.
struct Plain<'a, P, E> {
    p: Param<'a, E>,
    part: P,
    factor: Option<f32>,
    scale: f32,
    new_norm: NewNorm,
}

impl<P: Part, E: Elem> Task for Plain<'_, P, E> {
    type Output = f64;
    #[inline(always)]
    fn run(self) -> f64 {
        let Self {
            mut p,
            mut part,
            factor,
            scale,
            new_norm,
        } = self;
        let (mut u, mut scratch) = ([0.0f32; BLOCK], Vec::new());
        let mut squares = 0.0;
        while p.len() > 0 {
            let u = &mut u[..p.len().min(BLOCK)];
            part.advance(u);
            let written = p
                .take(u.len())
                .step(u, (factor, scale), &mut scratch, false);
            squares += new_norm.of(written);
        }
        squares
    }
}

/// Pass 2 over one chunk: the state, and per-channel `⟨P_c, U_c⟩`.
struct Dots<'a, P, E> {
    channels: Channels,
    range: Range<usize>,
    p: &'a [E],
    part: P,
}

impl<P: Part, E: Elem> Task for Dots<'_, P, E> {
    type Output = Partial<1>;
    #[inline(always)]
    fn run(self) -> Partial<1> {
        let Self {
            channels,
            range,
            mut p,
            mut part,
        } = self;
        let (mut u, mut scratch) = ([0.0f32; BLOCK], Vec::new());
        let mut partial = Partial::new();
        let mut row = vec![
            0.0f64;
            if channels.by_rows() {
                channels.count
            } else {
                0
            }
        ];
        for (c, len) in channels.segments(range) {
            let u = &mut u[..len];
            part.advance(u);
            let p = view(take_front(&mut p, len), &mut scratch);
            if channels.by_rows() {
                let dots = row[c..c + len].iter_mut().zip(p.iter().zip(u.iter()));
                for (d, (&p, &u)) in dots {
                    *d += f64::from(p) * f64::from(u);
                }
            } else {
                accumulate(&mut partial, c, [blocked_dot(p, u)]);
            }
        }
        partial.extend(row.into_iter().enumerate().map(|(c, d)| (c, [d])));
        partial
    }
}

/// Pass 3 over one chunk: `p ← p·f − η'·(u − c·p)`.
struct Project<'a, P, E> {
    channels: Channels,
    range: Range<usize>,
    p: Param<'a, E>,
    part: P,
    coefs: &'a [f32],
    factor: Option<f32>,
    scale: f32,
    new_norm: NewNorm,
}

impl<P: Part, E: Elem> Task for Project<'_, P, E> {
    type Output = f64;
    #[inline(always)]
    fn run(self) -> f64 {
        let Self {
            channels,
            range,
            mut p,
            mut part,
            coefs,
            factor,
            scale,
            new_norm,
        } = self;
        let (mut u, mut scratch) = ([0.0f32; BLOCK], Vec::new());
        let mut squares = 0.0;
        for (c, len) in channels.segments(range) {
            let u = &mut u[..len];
            part.update(u);
            let p = p.take(len);
            let old = p.old_f32(&mut scratch);
            if channels.by_rows() {
                let coefs = &coefs[c..c + len];
                for ((u, &p), &coef) in u.iter_mut().zip(old).zip(coefs) {
                    *u -= p * coef;
                }
            } else {
                let coef = coefs[c];
                for (u, &p) in u.iter_mut().zip(old) {
                    *u -= p * coef;
                }
            }
            part.projected(u);
            squares += new_norm.of(p.step(u, (factor, scale), &mut scratch, true));
        }
        squares
    }
}

/// A channel-wise projection over one chunk of whole runs (see [`Frame::runs`]).
struct Runs<'a, P, E> {
    /// The first run's channel.
    first: usize,
    inner: usize,
    p: Param<'a, E>,
    part: P,
    projection: &'a ScaleInvariance,
    weight_sq: &'a [f64],
    factor: Option<f32>,
    scale: f32,
    new_norm: NewNorm,
}

impl<P: Part, E: Elem> Task for Runs<'_, P, E> {
    type Output = f64;
    #[inline(always)]
    fn run(self) -> f64 {
        let Self {
            first,
            inner,
            mut p,
            mut part,
            projection,
            weight_sq,
            factor,
            scale,
            new_norm,
        } = self;
        let (mut u, mut scratch) = (vec![0.0f32; inner], Vec::new());
        let mut squares = 0.0;
        let runs = p.len() / inner;
        for &weight_sq in &weight_sq[first..first + runs] {
            part.advance(&mut u);
            let p = p.take(inner);
            let old = p.old_f32(&mut scratch);
            let coef = coefficient(projection, blocked_dot(old, &u), weight_sq);
            for (u, &p) in u.iter_mut().zip(old) {
                *u -= p * coef;
            }
            part.projected(&u);
            squares += new_norm.of(p.step(&u, (factor, scale), &mut scratch, true));
        }
        squares
    }
}
