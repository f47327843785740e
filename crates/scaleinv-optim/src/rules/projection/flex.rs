//! The projection's fused flex passes (`super`'s formulas on flex buffers), around an
//! optimizer's per-element [`Kernel`]:
//!
//! ```text
//! pass 1  read p, g: per channel ⟨p, g⟩, ‖p‖², ‖g‖² (nothing written)
//!         → the non-finite test and the cosine test (`super::ScaleInvariance::decide`), on the CPU
//! test failed:   one pass   read p, g, state; write state and p ← p·(1 − ηλ) − η·u
//! channel-wise, one contiguous run per channel (a convolution's kernel):
//!                one pass   per run: state, u in cache, ⟨p, u⟩ → c, p ← p·(1 − ηλr) − η·(u − c·p)
//! otherwise:     pass 2     read g, state, p; write state; ⟨p, u⟩ per channel → c
//!                pass 3     read p, state; write p ← p·(1 − ηλr) − η·(u − c·p)
//! ```
//!
//! A tensor the projection does not apply to (rank 1, or no projection) skips pass 1, after a
//! read of `g` for the non-finite test. Nothing is written before the non-finite test, so a
//! skipped step leaves the state as it was without a copy. The statistics are summed in f64
//! (`engine::flex::sums`), the chunks combined in chunk order: the same bits on any number of
//! threads.

use std::ops::Range;

use super::{ProjectionView, ScaleInvariance, TestInputs};
use crate::engine::channels::Channels;
use crate::engine::flex::elem::{Elem, view};
use crate::engine::flex::parallel::{CHUNK, Task, ranges, run_all, split, take_front};
use crate::engine::flex::passes::{Frame, Kernel, NewNorm, Outcome, Param, Part};
use crate::engine::flex::sums::{BLOCK, blocked_dot, blocked_dots, finite, row_dots};

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

    /// The view the test selects, channel first: `(channel, layer)` (`super::decide`).
    fn test(&self, projection: &ScaleInvariance, numel: usize) -> (bool, bool) {
        let n = self.dot.len();
        let (d, w, q) = (
            total(&self.dot),
            total(&self.weight_sq),
            total(&self.grad_sq),
        );
        match projection.view {
            ProjectionView::Detect => {
                // The statistics are f64 sums of the unscaled rows: scale 1.
                let cosine =
                    |d: f64, w: f64, q: f64| projection.cosine(d, (w.sqrt(), 1.0), (q.sqrt(), 1.0));
                let max_cos = (0..n)
                    .map(|c| cosine(self.dot[c], self.weight_sq[c], self.grad_sq[c]))
                    .fold(f64::NEG_INFINITY, f64::max);
                projection.decide(TestInputs {
                    channel_cosine: (max_cos, numel / n),
                    layer_cosine: (cosine(d, w, q), numel),
                    squares: (w, q),
                })
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

/// One fused step of a kernel with AdamP's and SGDP's projection (`projection`, where it
/// applies) or without (`None`): the statistics pass, the test, then the plain pass, the
/// channel runs, or the dots and projected passes, each a list of tasks for `run_all`.
pub(crate) fn step<K: Kernel, E: Elem>(
    frame: &Frame,
    projection: Option<&ScaleInvariance>,
    dims: &[usize],
    p: Param<'_, E>,
    g: &[E],
    kernel: &mut K,
) -> Outcome {
    let (numel, new_norm) = (p.len(), frame.new_norm);
    let projection = projection.filter(|proj| proj.applies_to(dims.len()));
    let Some(projection) = projection else {
        if frame.skip_non_finite && !finite(g) {
            return Outcome::Skipped;
        }
        let squares = run_all(frame.plain(p, kernel, frame.factor(1.0)), numel);
        return Outcome::Written(new_norm.total(squares));
    };
    let channels = Channels::new(dims, projection.channel_axis.min(dims.len() - 1));
    let chunks = channels.chunks();
    let sums = Sums::measure(channels, &chunks, p.old(), g);
    if frame.skip_non_finite && !total(&sums.grad_sq).is_finite() {
        return Outcome::Skipped;
    }
    let (channel, layer) = sums.test(projection, channels.numel());
    let squares = if !(channel || layer) {
        run_all(frame.plain(p, kernel, frame.factor(1.0)), numel)
    } else {
        let factor = frame.factor(projection.wd_ratio as f32);
        if channel && channels.by_runs() {
            let weight_sq = (projection, &sums.weight_sq[..]);
            run_all(runs(frame, channels, p, kernel, weight_sq, factor), numel)
        } else {
            let partials = run_all(dots(channels, &chunks, p.old(), kernel), numel);
            let [dots] = combine(partials, channels.count);
            let coefs = sums.coefficients(projection, channel, &dots);
            let tasks = projected(frame, channels, &chunks, p, kernel, &coefs, factor);
            run_all(tasks, numel)
        }
    };
    Outcome::Written(new_norm.total(squares))
}

/// The tasks of a channel-wise projection one channel's run at a time: its state,
/// `⟨P_c, U_c⟩`, the coefficient and `p ← p·f − η'·(u − c·p)`, with the run's updates kept in
/// a scratch buffer (in cache) in between — one pass after the statistics.
fn runs<'a, K: Kernel, E: Elem>(
    frame: &Frame,
    channels: Channels,
    p: Param<'a, E>,
    kernel: &'a mut K,
    (projection, weight_sq): (&'a ScaleInvariance, &'a [f64]),
    factor: Option<f32>,
) -> Vec<Runs<'a, K::Part<'a>, E>> {
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
        scale: frame.scale,
        new_norm: frame.new_norm,
    });
    tasks.collect()
}

/// The tasks of pass 2 of a projected step: the state, and `⟨P_c, U_c⟩` per channel.
fn dots<'a, K: Kernel, E: Elem>(
    channels: Channels,
    chunks: &[Range<usize>],
    p: &'a [E],
    kernel: &'a mut K,
) -> Vec<Dots<'a, K::Part<'a>, E>> {
    let parts = split(p, chunks).into_iter().zip(kernel.parts(chunks));
    let tasks = chunks.iter().cloned().zip(parts);
    let tasks = tasks.map(|(range, (p, part))| Dots {
        channels,
        range,
        p,
        part,
    });
    tasks.collect()
}

/// The tasks of pass 3 of a projected step: `p ← p·f − η'·(u − c·p)`.
fn projected<'a, K: Kernel, E: Elem>(
    frame: &Frame,
    channels: Channels,
    chunks: &[Range<usize>],
    p: Param<'a, E>,
    kernel: &'a mut K,
    coefs: &'a [f32],
    factor: Option<f32>,
) -> Vec<Project<'a, K::Part<'a>, E>> {
    let parts = p.split(chunks).into_iter().zip(kernel.parts(chunks));
    let tasks = chunks.iter().cloned().zip(parts);
    let tasks = tasks.map(|(range, (p, part))| Project {
        channels,
        range,
        p,
        part,
        coefs,
        factor,
        scale: frame.scale,
        new_norm: frame.new_norm,
    });
    tasks.collect()
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

/// A channel-wise projection over one chunk of whole runs (see [`runs`]).
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
