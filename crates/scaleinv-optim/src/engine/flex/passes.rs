//! The passes every fused step shares, around an optimizer's per-element [`Kernel`]: the
//! parameter's elements ([`Param`], written with `rules::decay::write`), the [`Frame`] of
//! scalars every writing pass reads, and the plain pass (the state and `p ← p·f − s·u`, one
//! read and one write of each buffer). The projection's passes (`rules::projection::flex`) are
//! built from the same pieces.
//!
//! Every pass cuts the tensor into the fixed chunks of [`parallel`](super::parallel), one task
//! each; within a chunk the elements go in segments of at most [`BLOCK`] through zipped slices:
//! the kernel writes a segment's updates into a scratch block, the pass applies them.

use std::ops::Range;

use super::elem::{Elem, resized, view};
use super::parallel::{CHUNK, Task, ranges, split, split_mut, take_front, take_front_mut};
use super::sums::{BLOCK, blocked_squares};
use crate::rules::decay::{factor, write};

/// A parameter's elements for one step: read from `src` and written to `dst`, or read and
/// written in place (`src` is `None`) — the copy-on-write of a shared buffer, in the pass that
/// writes. f16/bf16 elements are converted to f32 and back a segment at a time.
pub(crate) struct Param<'a, E = f32> {
    src: Option<&'a [E]>,
    dst: &'a mut [E],
}

impl<'a, E: Elem> Param<'a, E> {
    /// The elements of `p`, rewritten in place.
    pub fn in_place(p: &'a mut [E]) -> Self {
        Self { src: None, dst: p }
    }

    /// The elements of `src`, written to `dst` (of the same length).
    pub fn copied(src: &'a [E], dst: &'a mut [E]) -> Self {
        assert_eq!(src.len(), dst.len(), "a parameter and its new buffer");
        Self {
            src: Some(src),
            dst,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.dst.len()
    }

    /// The values before the step.
    pub fn old(&self) -> &[E] {
        match self.src {
            Some(src) => src,
            None => self.dst,
        }
    }

    /// The values before the step as f32 (converted into `scratch` unless they are f32).
    #[inline(always)]
    pub(crate) fn old_f32<'s>(&'s self, scratch: &'s mut Vec<f32>) -> &'s [f32] {
        view(self.old(), scratch)
    }

    /// The elements cut at `ranges` (consecutive, from 0).
    pub(crate) fn split(self, ranges: &[Range<usize>]) -> Vec<Param<'a, E>> {
        let dst = split_mut(self.dst, ranges);
        match self.src {
            None => dst.into_iter().map(Param::in_place).collect(),
            Some(src) => split(src, ranges)
                .into_iter()
                .zip(dst)
                .map(|(s, d)| Param::copied(s, d))
                .collect(),
        }
    }

    /// The first `n` elements, taken off the front.
    #[inline(always)]
    pub(crate) fn take(&mut self, n: usize) -> Param<'a, E> {
        Param {
            src: self.src.as_mut().map(|s| take_front(s, n)),
            dst: take_front_mut(&mut self.dst, n),
        }
    }

    /// `p ← new(p, u)` element by element, `u` of the same length; returns the new values in
    /// f32 (for f16/bf16, before their rounding: computed in `scratch`, then stored).
    #[inline(always)]
    pub(crate) fn write<'s>(
        self,
        u: &[f32],
        new: impl Fn(f32, f32) -> f32,
        scratch: &'s mut Vec<f32>,
    ) -> &'s [f32]
    where
        'a: 's,
    {
        self.write_over(u, new, scratch, false)
    }

    /// [`write`](Self::write), where `viewed` says that `scratch` already holds the old values
    /// in f32 (from [`old_f32`](Self::old_f32)), so that a half type is not converted twice.
    #[inline(always)]
    fn write_over<'s>(
        self,
        u: &[f32],
        new: impl Fn(f32, f32) -> f32,
        scratch: &'s mut Vec<f32>,
        viewed: bool,
    ) -> &'s [f32]
    where
        'a: 's,
    {
        let Self { src, dst } = self;
        match E::as_f32_mut(dst) {
            Ok(dst) => {
                match src.map(|s| E::as_f32(s).expect("one element type")) {
                    None => {
                        for (p, &u) in dst.iter_mut().zip(u) {
                            *p = new(*p, u);
                        }
                    }
                    Some(src) => {
                        for ((p, &old), &u) in dst.iter_mut().zip(src).zip(u) {
                            *p = new(old, u);
                        }
                    }
                }
                dst
            }
            Err(dst) => {
                let values = resized(scratch, dst.len());
                if !viewed {
                    E::load(src.unwrap_or(dst), values);
                }
                for (p, &u) in values.iter_mut().zip(u) {
                    *p = new(*p, u);
                }
                E::store(values, dst);
                values
            }
        }
    }

    /// `p ← p·f − u·scale` (`p − u·scale` without a decay factor); returns the new values.
    /// `viewed`: `scratch` holds the old values from [`old_f32`](Self::old_f32).
    #[inline(always)]
    pub(crate) fn step<'s>(
        self,
        u: &[f32],
        (factor, scale): (Option<f32>, f32),
        scratch: &'s mut Vec<f32>,
        viewed: bool,
    ) -> &'s [f32]
    where
        'a: 's,
    {
        let s = f64::from(scale);
        match factor {
            Some(f) => self.write_over(u, |p, u| write(p, Some(f), u, s), scratch, viewed),
            None => self.write_over(u, |p, u| write(p, None, u, s), scratch, viewed),
        }
    }
}

/// `Σ p'²` of the values a pass just wrote, when the step measures the new parameter (NaP's
/// projection, see [`Outcome`]): they are still in the L1 cache, so the sum costs no read of
/// memory. The segments' sums are added in order within a chunk, the chunks' in chunk order.
#[derive(Clone, Copy)]
pub(crate) struct NewNorm(pub bool);

impl NewNorm {
    #[inline(always)]
    pub fn of(self, written: &[f32]) -> f64 {
        if self.0 {
            blocked_squares(written, |x| x)
        } else {
            0.0
        }
    }

    /// The chunks' sums, added in chunk order, when measured.
    pub fn total(self, chunks: Vec<f64>) -> Option<f64> {
        self.0.then(|| chunks.into_iter().sum())
    }
}

/// What a fused step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Skipped for a non-finite gradient: nothing written.
    Skipped,
    /// The parameter and the state written, with `Σ p'²` of the new parameter when the step
    /// was asked to measure it.
    Written(Option<f64>),
}

impl Outcome {
    pub fn written(self) -> bool {
        matches!(self, Self::Written(_))
    }

    /// `Σ p'²` of the new parameter, when measured and written.
    pub fn new_squares(self) -> Option<f64> {
        match self {
            Self::Written(squares) => squares,
            Self::Skipped => None,
        }
    }
}

/// The optimizer-specific part of a fused step: its state, cut into the parts the frame's
/// tasks step.
pub(crate) trait Kernel {
    type Part<'a>: Part
    where
        Self: 'a;
    /// The state of each of `ranges` (consecutive, from element 0), one part each.
    fn parts(&mut self, ranges: &[Range<usize>]) -> Vec<Self::Part<'_>>;
}

/// One chunk's state, stepped front to back in segments: each call takes the next `u.len()`
/// elements.
pub(crate) trait Part: Send {
    /// Writes the elements' new state and their updates `u`.
    fn advance(&mut self, u: &mut [f32]);
    /// The elements' updates `u` from the state [`advance`](Self::advance) wrote.
    fn update(&mut self, u: &mut [f32]);
    /// Receives the projected updates `u − c·p` of the elements the last call to
    /// [`advance`](Self::advance) or [`update`](Self::update) gave.
    fn projected(&mut self, _u: &[f32]) {}
}
/// What every fused pass that writes the parameter reads: the non-finite policy, whether it
/// sums `p'²`, the decay rate and the step's scale.
pub(crate) struct Frame {
    pub skip_non_finite: bool,
    /// Whether the pass that writes `p` also sums `p'²`.
    pub new_norm: NewNorm,
    /// Decoupled decay rate `η·λ` (before the ratio `r`), and the step's scale on `u`.
    pub decay_rate: f64,
    pub scale: f32,
    /// timm's cautious mask after the projection (`rules::projection::flex::caution`).
    pub caution: bool,
}

impl Frame {
    /// The frame of a step at `scale` (`η` with its bias correction) and decay rate `η·λ`;
    /// `measure` (NaP's projection) skips a non-finite gradient whatever the policy and sums
    /// `p'²`.
    pub fn new(skip_non_finite: bool, measure: bool, decay_rate: f64, scale: f64) -> Self {
        Self {
            skip_non_finite: skip_non_finite || measure,
            new_norm: NewNorm(measure),
            decay_rate,
            scale: scale as f32,
            caution: false,
        }
    }

    /// The same frame with the cautious mask when `caution`.
    pub fn with_caution(self, caution: bool) -> Self {
        Self { caution, ..self }
    }

    /// The decay factor `1 − ηλ·r` (`rules::decay::factor`) for the ratio `r`, or `None` when
    /// `ηλ = 0` (no multiply).
    pub fn factor(&self, ratio: f32) -> Option<f32> {
        (self.decay_rate != 0.0).then(|| factor(ratio, self.decay_rate))
    }

    /// The plain pass's tasks (run by `run_all`): the state and `p ← p·f − η'·u`, chunk by
    /// chunk.
    pub fn plain<'a, K: Kernel, E: Elem>(
        &self,
        p: Param<'a, E>,
        kernel: &'a mut K,
        factor: Option<f32>,
    ) -> Vec<Plain<'a, K::Part<'a>, E>> {
        let chunks = ranges(p.len(), CHUNK);
        let tasks = p.split(&chunks).into_iter().zip(kernel.parts(&chunks));
        let (scale, new_norm) = (self.scale, self.new_norm);
        let tasks = tasks.map(|(p, part)| Plain {
            p,
            part,
            factor,
            scale,
            new_norm,
        });
        tasks.collect()
    }
}

/// One pass over one chunk: the state and `p ← p·f − η'·u`.
pub(crate) struct Plain<'a, P, E> {
    p: Param<'a, E>,
    part: P,
    factor: Option<f32>,
    scale: f32,
    new_norm: NewNorm,
}

impl<P: Part, E: Elem> Task for Plain<'_, P, E> {
    type Output = f64;
    #[inline(always)]
    fn run(self) -> f64 {
        let Self {
            mut p,
            mut part,
            factor,
            scale,
            new_norm,
        } = self;
        let (mut u, mut scratch) = ([0.0f32; BLOCK], Vec::new());
        let mut squares = 0.0;
        while p.len() > 0 {
            let u = &mut u[..p.len().min(BLOCK)];
            part.advance(u);
            let written = p
                .take(u.len())
                .step(u, (factor, scale), &mut scratch, false);
            squares += new_norm.of(written);
        }
        squares
    }
}
