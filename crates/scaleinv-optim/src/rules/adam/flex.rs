//! Adam's rule on flex buffers: the moments of one tensor stepped element by element with
//! `super`'s formulas, inside the projection's passes (`rules::projection::flex::step`: AdamP's
//! projection, or none for AdamW and AdamC).

use std::ops::Range;

use burn::tensor::Tensor;

use super::Adam;
use super::tensor::MomentState;
use crate::engine::flex::elem::{Elem, view};
use crate::engine::flex::parallel::{split, split_mut, take_front, take_front_mut};
use crate::engine::flex::passes::{Frame, Kernel, Outcome, Part};
use crate::engine::flex::{Buffer, Fused, Target, over_elements};
use crate::rules::projection::ScaleInvariance;
use crate::rules::projection::flex::step as passes;

/// One fused step of `param` with gradient `grad` from `state` (moments of zeros before the
/// first step): the moments become buffers, the projection's passes (`projection`: AdamP's, or
/// `None`) step them with the parameter under `frame` (built for the step count
/// [`MomentState::next_time`] of `state`), and they come back as the new state (as given, for a
/// step skipped under the frame's measure: see `TwoPaths::fused`). Nothing is written when the
/// step is skipped for a non-finite gradient. The caller checked
/// [`accepts`](crate::engine::flex::accepts) and [`fit`](crate::engine::fits::fit).
pub(crate) fn step<const D: usize>(
    frame: &Frame,
    rule: AdamRule,
    projection: Option<&ScaleInvariance>,
    param: Tensor<D>,
    grad: Tensor<D>,
    state: Option<MomentState<D>>,
) -> Fused<D, MomentState<D>> {
    let time = MomentState::next_time(&state);
    let first = state.is_none();
    let g = Buffer::new(grad);
    let (mut m, mut v) = match state {
        Some(s) => (Buffer::new(s.moment_1), Buffer::new(s.moment_2)),
        None => (Buffer::zeros(&g), Buffer::zeros(&g)),
    };
    let (mut target, moments) = (Target::new(param), (m.get_mut(), v.get_mut()));
    let dims = target.dims();
    let outcome = over_elements!(target, g, |p, g| {
        let mut kernel = AdamKernel {
            rule,
            g,
            m: moments.0,
            v: moments.1,
        };
        passes(frame, projection, &dims, p, g, &mut kernel)
    });
    let given_back = frame.new_norm.0 && outcome == Outcome::Skipped;
    let state = MomentState {
        time: if given_back { time - 1 } else { time },
        moment_1: m.tensor(),
        moment_2: v.tensor(),
    };
    Fused {
        param: target.tensor(outcome),
        state: (!(given_back && first)).then_some(state),
        outcome,
    }
}

/// Adam's formulas at one step (`super`): `bc2 = 1 − β2^t`, and AdamP's Nesterov form.
#[derive(Clone, Copy)]
pub(crate) struct AdamRule {
    pub adam: Adam,
    pub bc2: f64,
    pub nesterov: bool,
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
