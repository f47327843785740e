//! Adam's step (AdamP's, with its projection; AdamW's without) over one tensor's buffers.

use std::ops::Range;

use super::frame::{Frame, Kernel, NewNorm, Outcome, Param, Part};
use super::parallel::{split, split_mut, take_front, take_front_mut};
use crate::math::adam::Adam;
use crate::math::invariance::ScaleInvariance;

/// One Adam-type step's hyperparameters.
pub(crate) struct AdamPass<'a> {
    pub adam: Adam,
    /// AdamP's Nesterov form.
    pub nesterov: bool,
    /// The step count `t` after this step.
    pub time: usize,
    pub lr: f64,
    /// Decoupled decay λ (multiplied by `lr`, and by `wd_ratio` where the projection fires).
    pub weight_decay: f64,
    /// AdamP's projection; `None` for AdamW.
    pub projection: Option<&'a ScaleInvariance>,
    pub skip_non_finite: bool,
}

impl AdamPass<'_> {
    /// Steps `p` with gradient `g` and moments `m`, `v` (zeros before the first step) of a
    /// tensor of shape `dims`. Nothing is written when the step is skipped for a non-finite
    /// gradient. With `measure`, a non-finite gradient is skipped whatever the policy, and a
    /// written step returns `Σ p'²` (see [`Outcome`]).
    pub fn run(
        &self,
        dims: &[usize],
        p: Param<'_>,
        g: &[f32],
        (m, v): (&mut [f32], &mut [f32]),
        measure: bool,
    ) -> Outcome {
        let (bc1, bc2) = self.adam.bias_corrections(self.time);
        let frame = Frame {
            projection: self.projection,
            skip_non_finite: self.skip_non_finite || measure,
            new_norm: NewNorm(measure),
            decay_rate: self.lr * self.weight_decay,
            scale: (self.lr / bc1) as f32,
        };
        let mut kernel = AdamKernel {
            rule: AdamRule {
                adam: self.adam,
                bc2,
                nesterov: self.nesterov,
            },
            g,
            m,
            v,
        };
        frame.run(dims, p, g, &mut kernel)
    }
}

/// Adam's formulas at one step (`math::adam`).
#[derive(Clone, Copy)]
struct AdamRule {
    adam: Adam,
    bc2: f64,
    nesterov: bool,
}

impl AdamRule {
    #[inline(always)]
    fn direction(self, m: f32, g: f32, v: f32) -> f32 {
        let denom = self.adam.denominator(v, self.bc2);
        self.adam.direction(m, g, denom, self.nesterov)
    }
}

/// Adam's moments of one tensor.
struct AdamKernel<'a> {
    rule: AdamRule,
    g: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
}

impl Kernel for AdamKernel<'_> {
    type Part<'a>
        = AdamPart<'a>
    where
        Self: 'a;

    fn parts(&mut self, ranges: &[Range<usize>]) -> Vec<AdamPart<'_>> {
        let g = split(self.g, ranges);
        let m = split_mut(self.m, ranges);
        let v = split_mut(self.v, ranges);
        let moments = g.into_iter().zip(m.into_iter().zip(v));
        moments
            .map(|(g, (m, v))| AdamPart {
                rule: self.rule,
                g,
                m,
                v,
            })
            .collect()
    }
}

/// Adam's moments of one chunk.
struct AdamPart<'a> {
    rule: AdamRule,
    g: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
}

impl<'a> AdamPart<'a> {
    /// The next `n` elements' gradient and moments.
    #[inline(always)]
    fn next(&mut self, n: usize) -> (&'a [f32], &'a mut [f32], &'a mut [f32]) {
        (
            take_front(&mut self.g, n),
            take_front_mut(&mut self.m, n),
            take_front_mut(&mut self.v, n),
        )
    }
}

impl Part for AdamPart<'_> {
    #[inline(always)]
    fn advance(&mut self, u: &mut [f32]) {
        let (rule, adam) = (self.rule, self.rule.adam);
        let (g, m, v) = self.next(u.len());
        for (((u, &g), m), v) in u.iter_mut().zip(g).zip(m).zip(v) {
            *m = adam.first(*m, g);
            *v = adam.second(*v, g);
            *u = rule.direction(*m, g, *v);
        }
    }

    #[inline(always)]
    fn update(&mut self, u: &mut [f32]) {
        let rule = self.rule;
        let (g, m, v) = self.next(u.len());
        for (((u, &g), m), v) in u.iter_mut().zip(g).zip(&*m).zip(&*v) {
            *u = rule.direction(*m, g, *v);
        }
    }
}
