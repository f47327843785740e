//! SGD's rule on flex buffers: the momentum buffer of one tensor stepped element by element
//! with `super`'s formulas, inside the projection's passes (SGDP).

use std::ops::Range;

use crate::engine::flex::elem::{Elem, view};
use crate::engine::flex::parallel::{split, split_mut, take_front, take_front_mut};
use crate::engine::flex::passes::{Frame, Kernel, NewNorm, Outcome, Param, Part};
use crate::engine::flex::{Buffer, OverElements, Target};
use crate::rules::projection::ScaleInvariance;
use crate::rules::projection::flex::step;
use crate::rules::sgd;

/// One SGD-with-momentum step's hyperparameters.
pub(crate) struct SgdPass<'a> {
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    /// Write the projected update back into the buffer.
    pub write_back: bool,
    pub lr: f64,
    /// Decoupled decay rate (before the projection's ratio).
    pub decay_rate: f64,
    pub projection: Option<&'a ScaleInvariance>,
    pub skip_non_finite: bool,
}

impl SgdPass<'_> {
    /// Steps `p` with gradient `g` and momentum buffer `b` (zeros before the first step; with
    /// μ = 0 scratch space the caller does not keep). Nothing is written when the step is
    /// skipped for a non-finite gradient. With `measure`, a non-finite gradient is skipped
    /// whatever the policy, and a written step returns `Σ p'²` (see [`Outcome`]).
    pub fn run(&self, p: &mut Target, g: &Buffer, b: &mut [f32], measure: bool) -> Outcome {
        let dims = &p.dims();
        p.step(
            g,
            SgdRun {
                pass: self,
                dims,
                b,
                measure,
            },
        )
    }
}

/// [`SgdPass::run`] over one element type.
struct SgdRun<'a, 'b> {
    pass: &'a SgdPass<'a>,
    dims: &'a [usize],
    b: &'b mut [f32],
    measure: bool,
}

impl OverElements for SgdRun<'_, '_> {
    type Output = Outcome;

    fn run<E: Elem>(self, p: Param<'_, E>, g: &[E]) -> Outcome {
        let Self {
            pass,
            dims,
            b,
            measure,
        } = self;
        let frame = Frame {
            skip_non_finite: pass.skip_non_finite || measure,
            new_norm: NewNorm(measure),
            decay_rate: pass.decay_rate,
            scale: pass.lr as f32,
        };
        let mut kernel = SgdKernel {
            rule: SgdRule {
                momentum: pass.momentum,
                dampening: pass.dampening,
                nesterov: pass.nesterov,
                write_back: pass.write_back,
            },
            g,
            b,
        };
        step(&frame, pass.projection, dims, p, g, &mut kernel)
    }
}

/// SGD's formulas (`super`). From a zero buffer, `0·μ + x = x` exactly: the tensor path's
/// first step.
#[derive(Clone, Copy)]
struct SgdRule {
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    write_back: bool,
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
