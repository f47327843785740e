//! The frame every fused step shares: the statistics pass, the host-side tests, and the one
//! or two update passes, around an optimizer's per-element [`Kernel`].

use super::sums::{blocked_dots, finite};
use crate::math::decay::factor;
use crate::math::invariance::{ProjectionView, ScaleInvariance};

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
        let coef = |pu: f64, w: f64| projection.radial_coefficient(pu, w.sqrt(), 1.0) as f32;
        if channel {
            let per_channel = param_dot_update.iter().zip(&self.weight_sq);
            per_channel.map(|(&pu, &w)| coef(pu, w)).collect()
        } else {
            let layer = coef(total(param_dot_update), total(&self.weight_sq));
            vec![layer; self.dot.len()]
        }
    }
}

/// The decoupled decay factor `1 − rate·r` (`math::decay::factor`), or `None` when
/// `rate = 0` (no multiply).
fn decay_factor(rate: f64, ratio: f32) -> Option<f32> {
    (rate != 0.0).then(|| factor(ratio, rate))
}

/// What the optimizer-specific part of a fused step provides, per element `i`.
pub(super) trait Kernel {
    /// Writes element `i`'s new state and returns its update `u`.
    fn advance(&mut self, i: usize) -> f32;
    /// The update `u` of element `i` from the state [`advance`](Self::advance) wrote.
    fn update(&self, i: usize) -> f32;
    /// Receives the projected update `u − c·p` of element `i`.
    fn projected(&mut self, _i: usize, _update: f32) {}
}

/// The frame every fused step shares: the passes and the decisions between them. Returns
/// `false`, with nothing written, when the step is skipped for a non-finite gradient.
pub(super) struct Frame<'a> {
    /// The projection, if the optimizer projects (it applies to tensors of rank ≥ 2, with a
    /// view that can fire).
    pub projection: Option<&'a ScaleInvariance>,
    pub skip_non_finite: bool,
    /// Decoupled decay rate `η·λ` (before the ratio `r`), and the step's scale on `u`.
    pub decay_rate: f64,
    pub scale: f32,
}

impl Frame<'_> {
    pub fn run<K: Kernel>(&self, dims: &[usize], p: &mut [f32], g: &[f32], kernel: &mut K) -> bool {
        let projection = self
            .projection
            .filter(|proj| dims.len() >= 2 && proj.view != ProjectionView::Off);
        let axis = projection.map_or(0, |proj| proj.channel_axis);
        let channels = Channels::new(dims, axis.min(dims.len() - 1));
        let (sums, channel, layer) = if let Some(projection) = projection {
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
                let coefs = sums.coefficients(projection, channel, &dots);
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
