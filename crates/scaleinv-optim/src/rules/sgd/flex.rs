//! SGD's rule on flex buffers: the momentum buffer of one tensor stepped element by element
//! with `super`'s formulas, inside the projection's passes (SGDP).

use std::ops::Range;

use crate::engine::flex::elem::{Elem, view};
use crate::engine::flex::parallel::{split, split_mut, take_front, take_front_mut};
use crate::engine::flex::passes::{Frame, Kernel, Outcome, Part};
use crate::engine::flex::{Buffer, Target, over_elements};
use crate::rules::projection::ScaleInvariance;
use crate::rules::projection::flex::step as passes;
use crate::rules::sgd;

/// Steps the parameter `target` with gradient `g` and momentum buffer `b` (zeros before the
/// first step; with μ = 0 scratch space the caller does not keep) in the projection's passes
/// (`projection`: SGDP's, or `None`) under `frame`. Nothing is written when the step is skipped
/// for a non-finite gradient (see [`Outcome`]).
pub(crate) fn step(
    frame: &Frame,
    rule: SgdRule,
    projection: Option<&ScaleInvariance>,
    target: &mut Target,
    g: &Buffer,
    b: &mut [f32],
) -> Outcome {
    let dims = target.dims();
    over_elements!(target, g, |p, g| {
        let mut kernel = SgdKernel { rule, g, b };
        passes(frame, projection, &dims, p, g, &mut kernel)
    })
}

/// SGD's formulas (`super`). From a zero buffer, `0·μ + x = x` exactly: the tensor path's
/// first step.
#[derive(Clone, Copy)]
pub(crate) struct SgdRule {
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    /// Write the projected update back into the buffer (SGDP's reference).
    pub write_back: bool,
}

/// SGD's momentum buffer of one tensor.
struct SgdKernel<'a, E> {
    rule: SgdRule,
    g: &'a [E],
    b: &'a mut [f32],
}

impl<E: Elem> Kernel for SgdKernel<'_, E> {
    type Part<'a>
        = SgdPart<'a, E>
    where
        Self: 'a;

    fn parts(&mut self, ranges: &[Range<usize>]) -> Vec<SgdPart<'_, E>> {
        let g = split(self.g, ranges);
        let b = split_mut(self.b, ranges);
        let rule = self.rule;
        g.into_iter()
            .zip(b)
            .map(|(g, b)| SgdPart {
                rule,
                g,
                b,
                pending: &mut [],
                scratch: Vec::new(),
            })
            .collect()
    }
}

/// SGD's momentum buffer of one chunk, and the buffer of the last segment stepped, whose
/// projected update may follow (the write-back).
struct SgdPart<'a, E> {
    rule: SgdRule,
    g: &'a [E],
    b: &'a mut [f32],
    pending: &'a mut [f32],
    /// The gradient's segment in f32, when it is f16/bf16.
    scratch: Vec<f32>,
}

impl<E: Elem> Part for SgdPart<'_, E> {
    #[inline(always)]
    fn advance(&mut self, u: &mut [f32]) {
        let SgdRule {
            momentum,
            dampening,
            nesterov,
            ..
        } = self.rule;
        let n = u.len();
        let (g, b) = (take_front(&mut self.g, n), take_front_mut(&mut self.b, n));
        let g = view(g, &mut self.scratch);
        for ((u, &g), b) in u.iter_mut().zip(g).zip(b.iter_mut()) {
            *b = sgd::buffer(*b, sgd::damped(g, dampening), momentum);
            *u = sgd::direction(g, *b, momentum, nesterov);
        }
        self.pending = b;
    }

    #[inline(always)]
    fn update(&mut self, u: &mut [f32]) {
        let SgdRule {
            momentum, nesterov, ..
        } = self.rule;
        let n = u.len();
        let (g, b) = (take_front(&mut self.g, n), take_front_mut(&mut self.b, n));
        let g = view(g, &mut self.scratch);
        for ((u, &g), &b) in u.iter_mut().zip(g).zip(&*b) {
            *u = sgd::direction(g, b, momentum, nesterov);
        }
        self.pending = b;
    }

    #[inline(always)]
    fn projected(&mut self, u: &[f32]) {
        let b = std::mem::take(&mut self.pending);
        if self.rule.write_back {
            b.copy_from_slice(u);
        }
    }
}
