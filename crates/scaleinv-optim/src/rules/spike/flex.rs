//! Stable-SPAM's step over one tensor's buffers: one read of `g` for `max|g|` and `Σg²` (a
//! second, `Σ clip(g)²`, only when some element is clipped), the per-tensor statistics on the
//! CPU, then one pass for the moments and the parameter.

use super::SpikeStep;
use crate::engine::flex::elem::{Elem, view};
use crate::engine::flex::parallel::{
    CHUNK, Task, ranges, run_all, split, split_mut, take_front, take_front_mut,
};
use crate::engine::flex::passes::{NewNorm, Outcome, Param};
use crate::engine::flex::sums::{BLOCK, max_abs_and_squares, squares};
use crate::engine::flex::{Buffer, Target, over_elements};
use crate::rules::adam::Adam;
use crate::rules::{decay, spike};

/// The per-tensor statistics: AdaClip's average of `max|g|`, AdaGN's averages of the norm and
/// of its square.
pub(crate) struct SpikeScalars<'a> {
    pub clip_threshold: &'a mut f32,
    pub norm_mean: &'a mut f32,
    pub norm_sq_mean: &'a mut f32,
}

/// Stable-SPAM's state buffers: the moments, AMSGrad's running maximum and the statistics.
pub(crate) struct SpikeState<'a> {
    pub m: &'a mut [f32],
    pub v: &'a mut [f32],
    pub max_v: Option<&'a mut [f32]>,
    pub scalars: SpikeScalars<'a>,
}

impl SpikeStep {
    /// Steps `p` with gradient `g`, moments `m`, `v` and AMSGrad's running maximum `max_v`.
    /// Under `skip_non_finite`, a non-finite clipped norm leaves `p`, the moments and the
    /// statistics as they were (a reset after the update still happens, as on the tensor path).
    /// With `measure`, a non-finite gradient is skipped whatever the policy and then nothing at
    /// all is written (no reset either), and a written step returns `Σ p'²` (see [`Outcome`]).
    pub fn run(&self, p: &mut Target, g: &Buffer, state: SpikeState<'_>, measure: bool) -> Outcome {
        over_elements!(p, g, |p, g| self.frame(p, g, state, measure))
    }

    fn frame<E: Elem>(
        &self,
        p: Param<'_, E>,
        g: &[E],
        state: SpikeState<'_>,
        measure: bool,
    ) -> Outcome {
        let SpikeState {
            m,
            v,
            max_v,
            scalars,
        } = state;
        let t = self.time;
        // AdaClip: the elements above the bias-corrected average of max|g| are scaled down.
        let (max_abs, all_squares) = max_abs_and_squares(g);
        let (threshold, limit) = spike::clip_limit(*scalars.clip_threshold, max_abs, self.theta, t);
        let spike_scale = spike::spike_scale(limit, max_abs);
        let clip = Clip { limit, spike_scale };
        // AdaGN: the norm of the clipped gradient (of `g` itself when nothing is clipped), and
        // the rescale to the averages' ratio.
        let clipped_squares = if max_abs > limit {
            squares(g, |x| clip.apply(x))
        } else {
            all_squares
        };
        // A norm whose square overflows f32 is infinite, as on the tensor path (whose `Σ clip(g)²`
        // is an f32 sum) and in the reference: AdaGN's `ν` could not hold it.
        let norm = if (clipped_squares as f32).is_finite() {
            clipped_squares.sqrt() as f32
        } else {
            f32::INFINITY
        };
        let skip = (self.skip_non_finite || measure) && !norm.is_finite();
        if skip && measure {
            return Outcome::Skipped;
        }
        let mut new_squares = None;
        if !skip {
            let (mean, sq_mean) = spike::norm_averages(
                *scalars.norm_mean,
                *scalars.norm_sq_mean,
                norm,
                self.gamma_1,
                self.gamma_2,
            );
            let target = spike::target_norm(
                spike::bias_corrected(mean, self.gamma_1, t),
                spike::bias_corrected(sq_mean, self.gamma_2, t),
                self.adam.epsilon,
            );
            let rescale = if norm <= 0.0 {
                1.0
            } else {
                spike::rescale(target, norm)
            };
            *scalars.clip_threshold = threshold;
            *scalars.norm_mean = mean;
            *scalars.norm_sq_mean = sq_mean;

            if self.reset && self.clean_reset {
                m.fill(0.0);
                v.fill(0.0);
            }
            let (bc1, bc2) = self.adam.bias_corrections(self.adam_time);
            let rule = SpikeRule {
                adam: self.adam,
                clip,
                rescale,
                bc2,
                step: (self.lr / bc1) as f32,
                rate: self.lr * self.weight_decay,
            };
            new_squares = rule.update(p, g, m, v, max_v, NewNorm(measure));
        }
        if self.reset && !self.clean_reset {
            m.fill(0.0);
            v.fill(0.0);
        }
        if skip {
            Outcome::Skipped
        } else {
            Outcome::Written(new_squares)
        }
    }
}

/// AdaClip's scaling of the elements above the limit.
#[derive(Clone, Copy)]
struct Clip {
    limit: f32,
    spike_scale: f32,
}

impl Clip {
    #[inline(always)]
    fn apply(self, x: f32) -> f32 {
        if x.abs() > self.limit {
            x * self.spike_scale
        } else {
            x
        }
    }
}

/// The update pass's formulas at one step.
#[derive(Clone, Copy)]
struct SpikeRule {
    adam: Adam,
    clip: Clip,
    rescale: f32,
    bc2: f64,
    step: f32,
    rate: f64,
}

impl SpikeRule {
    /// The moments (and AMSGrad's maximum) and `p ← p·(1 − ηλ) − η/(1 − β1^t)·m/denom`, over
    /// fixed chunks in parallel; `Σ p'²` when `new_norm` asks for it.
    fn update<E: Elem>(
        self,
        p: Param<'_, E>,
        g: &[E],
        m: &mut [f32],
        v: &mut [f32],
        max_v: Option<&mut [f32]>,
        new_norm: NewNorm,
    ) -> Option<f64> {
        let chunks = ranges(g.len(), CHUNK);
        let max_v: Vec<Option<&mut [f32]>> = match max_v {
            Some(x) => split_mut(x, &chunks).into_iter().map(Some).collect(),
            None => chunks.iter().map(|_| None).collect(),
        };
        let moments = split_mut(m, &chunks).into_iter().zip(split_mut(v, &chunks));
        let tasks: Vec<_> = p
            .split(&chunks)
            .into_iter()
            .zip(split(g, &chunks))
            .zip(moments.zip(max_v))
            .collect();
        let tasks = tasks
            .into_iter()
            .map(|((p, g), ((m, v), max_v))| SpikeChunk {
                rule: self,
                p,
                g,
                m,
                v,
                max_v,
                new_norm,
            });
        new_norm.total(run_all(tasks.collect(), g.len()))
    }

    /// The clipped, rescaled gradient.
    #[inline(always)]
    fn gradient(self, g: f32) -> f32 {
        self.clip.apply(g) * self.rescale
    }

    /// `η'·m / denom` from the second moment (or its running maximum) `second`.
    #[inline(always)]
    fn step(self, m: f32, second: f32) -> f32 {
        m / self.adam.denominator(second, self.bc2) * self.step
    }

    #[inline(always)]
    fn moments(self, u: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((u, &g), m), v) in u.iter_mut().zip(g).zip(m).zip(v) {
            let g = self.gradient(g);
            *m = self.adam.first(*m, g);
            *v = self.adam.second(*v, g);
            *u = self.step(*m, *v);
        }
    }

    #[inline(always)]
    fn moments_ams(
        self,
        u: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        max_v: &mut [f32],
    ) {
        let state = m.iter_mut().zip(v).zip(max_v);
        for ((u, &g), ((m, v), max)) in u.iter_mut().zip(g).zip(state) {
            let g = self.gradient(g);
            *m = self.adam.first(*m, g);
            *v = self.adam.second(*v, g);
            *max = max.max(*v);
            *u = self.step(*m, *max);
        }
    }
}

/// The update pass over one chunk.
struct SpikeChunk<'a, E> {
    rule: SpikeRule,
    p: Param<'a, E>,
    g: &'a [E],
    m: &'a mut [f32],
    v: &'a mut [f32],
    max_v: Option<&'a mut [f32]>,
    new_norm: NewNorm,
}

impl<E: Elem> Task for SpikeChunk<'_, E> {
    type Output = f64;
    #[inline(always)]
    fn run(self) -> f64 {
        let Self {
            rule,
            mut p,
            mut g,
            mut m,
            mut v,
            mut max_v,
            new_norm,
        } = self;
        let (mut u, mut sg, mut sp) = ([0.0f32; BLOCK], Vec::new(), Vec::new());
        let mut squares = 0.0;
        while p.len() > 0 {
            let n = p.len().min(BLOCK);
            let u = &mut u[..n];
            let (g, m, v) = (
                view(take_front(&mut g, n), &mut sg),
                take_front_mut(&mut m, n),
                take_front_mut(&mut v, n),
            );
            match max_v.as_mut() {
                Some(max_v) => rule.moments_ams(u, g, m, v, take_front_mut(max_v, n)),
                None => rule.moments(u, g, m, v),
            }
            let rate = rule.rate;
            let written = if rate != 0.0 {
                p.take(n)
                    .write(u, |p, u| decay::plain(p, rate) - u, &mut sp)
            } else {
                p.take(n).write(u, |p, u| p - u, &mut sp)
            };
            squares += new_norm.of(written);
        }
        squares
    }
}
