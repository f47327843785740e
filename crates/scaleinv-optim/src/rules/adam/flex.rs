//! Adam's rule on flex buffers: the moments of one tensor stepped element by element with
//! `super`'s formulas, inside the projection's passes (AdamP) or the plain pass (AdamW, AdamC).

use std::ops::Range;

use burn::tensor::Tensor;

use super::Adam;
use super::tensor::MomentState;
use crate::engine::flex::elem::{Elem, view};
use crate::engine::flex::parallel::{split, split_mut, take_front, take_front_mut};
use crate::engine::flex::passes::{Frame, Kernel, NewNorm, Outcome, Param, Part};
use crate::engine::flex::{Buffer, Fused, OverElements, Target};
use crate::rules::projection::ScaleInvariance;
use crate::rules::projection::flex::step;

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
    /// One fused step of `param` with gradient `grad` from `state` (moments of zeros before the
    /// first step; `time` is [`MomentState::next_time`] of it): the moments become buffers,
    /// the passes step them with the parameter, and they come back as the new state (as given,
    /// for a step skipped under `measure`: see `TwoPaths::fused`). Nothing is written when the
    /// step is skipped for a non-finite gradient. The caller checked
    /// [`accepts`](crate::engine::flex::accepts) and [`fit`](crate::engine::fits::fit).
    pub fn step<const D: usize>(
        &self,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<MomentState<D>>,
        measure: bool,
    ) -> Fused<D, MomentState<D>> {
        let g = Buffer::new(grad);
        let first = state.is_none();
        let (mut m, mut v) = match state {
            Some(s) => (Buffer::new(s.moment_1), Buffer::new(s.moment_2)),
            None => (Buffer::zeros(&g), Buffer::zeros(&g)),
        };
        let mut p = Target::new(param);
        let dims = &p.dims();
        let run = AdamRun {
            pass: self,
            dims,
            moments: (m.get_mut(), v.get_mut()),
            measure,
        };
        let outcome = p.step(&g, run);
        let given_back = measure && outcome == Outcome::Skipped;
        let time = self.time;
        let state = MomentState {
            time: if given_back { time - 1 } else { time },
            moment_1: m.tensor(),
            moment_2: v.tensor(),
        };
        Fused {
            param: p.tensor(outcome),
            state: (!(given_back && first)).then_some(state),
            outcome,
        }
    }
}

/// [`AdamPass::step`] over one element type: the frame's scalars and Adam's kernel, through
/// the projection's passes.
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
        let (bc1, bc2) = pass.adam.bias_corrections(pass.time);
        let frame = Frame {
            skip_non_finite: pass.skip_non_finite || measure,
            new_norm: NewNorm(measure),
            decay_rate: pass.lr * pass.weight_decay,
            scale: (pass.lr / bc1) as f32,
        };
        let mut kernel = AdamKernel {
            rule: AdamRule {
                adam: pass.adam,
                bc2,
                nesterov: pass.nesterov,
            },
            g,
            m,
            v,
        };
        step(&frame, pass.projection, dims, p, g, &mut kernel)
    }
}

/// Adam's formulas at one step (`super`).
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
