//! The projection's statistics on flex buffers: pass 1's per-channel sums, the test, the
//! radial coefficients from them, and pass 2's `⟨p, u⟩` per channel, shared by the
//! projection's passes (`super`) and the cautious passes (`super::caution`).

use std::ops::Range;

use crate::engine::channels::Channels;
use crate::engine::flex::elem::{Elem, view};
use crate::engine::flex::parallel::{Task, run_all, split, take_front};
use crate::engine::flex::passes::{Kernel, Part};
use crate::engine::flex::sums::{BLOCK, blocked_dot, blocked_dots, row_dots};
use crate::rules::projection::{ProjectionView, ScaleInvariance, TestInputs};

/// Per-channel sums of one chunk, `(channel, sums)` in the order met; [`combine`] adds the
/// chunks' entries in chunk order.
pub(super) type Partial<const K: usize> = Vec<(usize, [f64; K])>;

/// Adds `value` to the last entry when it is `channel`'s, else opens an entry.
#[inline(always)]
pub(super) fn accumulate<const K: usize>(
    partial: &mut Partial<K>,
    channel: usize,
    value: [f64; K],
) {
    match partial.last_mut() {
        Some((c, sums)) if *c == channel => sums.iter_mut().zip(value).for_each(|(s, v)| *s += v),
        _ => partial.push((channel, value)),
    }
}

/// The chunks' partial sums added per channel, in chunk order.
pub(super) fn combine<const K: usize>(partials: Vec<Partial<K>>, channels: usize) -> [Vec<f64>; K] {
    let mut sums = std::array::from_fn(|_| vec![0.0; channels]);
    for (c, value) in partials.into_iter().flatten() {
        for (total, v) in sums.iter_mut().zip(value) {
            total[c] += v;
        }
    }
    sums
}

/// Per-channel sums of pass 1, and the test's verdict.
pub(super) struct Sums {
    /// `⟨P_c, G_c⟩`, `‖P_c‖²`, `‖G_c‖²`.
    pub dot: Vec<f64>,
    pub weight_sq: Vec<f64>,
    pub grad_sq: Vec<f64>,
}

pub(super) fn total(v: &[f64]) -> f64 {
    v.iter().sum()
}

impl Sums {
    /// Pass 1 over `p` and `g`.
    pub fn measure<E: Elem>(channels: Channels, chunks: &[Range<usize>], p: &[E], g: &[E]) -> Self {
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
    pub fn test(&self, projection: &ScaleInvariance, numel: usize) -> (bool, bool) {
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
    pub fn coefficients(
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
pub(super) fn coefficient(
    projection: &ScaleInvariance,
    param_dot_update: f64,
    weight_sq: f64,
) -> f32 {
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

/// The tasks of pass 2 of a projected step: the state, and `⟨P_c, U_c⟩` per channel.
pub(super) fn dots<'a, K: Kernel, E: Elem>(
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

/// Pass 2 over one chunk: the state, and per-channel `⟨P_c, U_c⟩`.
pub(super) struct Dots<'a, P, E> {
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
