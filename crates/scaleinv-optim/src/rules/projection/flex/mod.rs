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
//! With the cautious mask (`Frame::caution`) the passes are `caution`'s. A tensor the
//! projection does not apply to (rank 1, or no projection) skips pass 1, after a read of `g`
//! for the non-finite test. Nothing is written before the non-finite test, so a
//! skipped step leaves the state as it was without a copy. The statistics are summed in f64
//! (`engine::flex::sums`), the chunks combined in chunk order: the same bits on any number of
//! threads.

mod caution;
mod stats;

use std::ops::Range;

use self::stats::{Sums, coefficient, combine, dots, total};
use super::ScaleInvariance;
use crate::engine::channels::Channels;
use crate::engine::flex::elem::Elem;
use crate::engine::flex::parallel::{CHUNK, Task, ranges, run_all};
use crate::engine::flex::passes::{Frame, Kernel, NewNorm, Outcome, Param, Part};
use crate::engine::flex::sums::{BLOCK, blocked_dot, finite};

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
    if frame.caution {
        return caution::step(frame, projection, dims, p, g, kernel);
    }
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
