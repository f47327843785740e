//! Adam's step (AdamP's, with its projection; AdamW's without) over one tensor's buffers.

use std::ops::Range;

use super::buffer::{Buffer, OverElements, Target};
use super::elem::{Elem, view};
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
        p: &mut Target,
        g: &Buffer,
        (m, v): (&mut [f32], &mut [f32]),
        measure: bool,
    ) -> Outcome {
        let dims = &p.dims();
        p.step(
            g,
            AdamRun {
                pass: self,
                dims,
                moments: (m, v),
                measure,
            },
        )
    }
}

/// [`AdamPass::run`] over one element type.
struct AdamRun<'a, 'm> {
    pass: &'a AdamPass<'a>,
    dims: &'a [usize],
    moments: (&'m mut [f32], &'m mut [f32]),
    measure: bool,
}

impl OverElements for AdamRun<'_, '_> {
    type Output = Outcome;

    fn run<E: Elem>(self, p: Param<'_, E>, g: &[E]) -> Outcome {
        let Self {
            pass,
            dims,
            moments: (m, v),
            measure,
        } = self;
        pass.frame(dims, p, g, (m, v), measure)
    }
}

impl AdamPass<'_> {
    fn frame<E: Elem>(
        &self,
        dims: &[usize],
        p: Param<'_, E>,
        g: &[E],
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
struct AdamKernel<'a, E> {
    rule: AdamRule,
    g: &'a [E],
    m: &'a mut [f32],
    v: &'a mut [f32],
}

impl<E: Elem> Kernel for AdamKernel<'_, E> {
    type Part<'a>
        = AdamPart<'a, E>
    where
        Self: 'a;

    fn parts(&mut self, ranges: &[Range<usize>]) -> Vec<AdamPart<'_, E>> {
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
                scratch: Vec::new(),
            })
            .collect()
    }
}

/// Adam's moments of one chunk, and the gradient's segment in f32 when it is f16/bf16.
struct AdamPart<'a, E> {
    rule: AdamRule,
    g: &'a [E],
    m: &'a mut [f32],
    v: &'a mut [f32],
    scratch: Vec<f32>,
}

impl<'a, E: Elem> AdamPart<'a, E> {
    /// The next `n` elements' gradient (in f32) and moments.
    #[inline(always)]
    fn next(&mut self, n: usize) -> (&[f32], &'a mut [f32], &'a mut [f32]) {
        let g = take_front(&mut self.g, n);
        let (m, v) = (
            take_front_mut(&mut self.m, n),
            take_front_mut(&mut self.v, n),
        );
        (view(g, &mut self.scratch), m, v)
    }
}

impl<E: Elem> Part for AdamPart<'_, E> {
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
