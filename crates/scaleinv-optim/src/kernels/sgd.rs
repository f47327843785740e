//! SGDP's step over one tensor's buffers.

use super::frame::{Frame, Kernel};
use crate::math::invariance::ScaleInvariance;
use crate::math::sgd;

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
    /// μ = 0 scratch space the caller does not keep). Returns `false`, with nothing written,
    /// when the step is skipped for a non-finite gradient.
    pub fn run(&self, dims: &[usize], p: &mut [f32], g: &[f32], b: &mut [f32]) -> bool {
        let frame = Frame {
            projection: self.projection,
            skip_non_finite: self.skip_non_finite,
            decay_rate: self.decay_rate,
            scale: self.lr as f32,
        };
        let mut kernel = SgdKernel {
            g,
            b,
            momentum: self.momentum,
            dampening: self.dampening,
            nesterov: self.nesterov,
            write_back: self.write_back,
        };
        frame.run(dims, p, g, &mut kernel)
    }
}

/// SGD's momentum buffer of one tensor, element by element (`math::sgd`'s formulas). From a
/// zero buffer, `0·μ + x = x` exactly: the tensor path's first step.
struct SgdKernel<'a> {
    g: &'a [f32],
    b: &'a mut [f32],
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    write_back: bool,
}

impl Kernel for SgdKernel<'_> {
    #[inline(always)]
    fn advance(&mut self, i: usize) -> f32 {
        let g = self.g[i];
        let b = sgd::buffer(self.b[i], sgd::damped(g, self.dampening), self.momentum);
        self.b[i] = b;
        sgd::direction(g, b, self.momentum, self.nesterov)
    }

    #[inline(always)]
    fn update(&self, i: usize) -> f32 {
        sgd::direction(self.g[i], self.b[i], self.momentum, self.nesterov)
    }

    #[inline(always)]
    fn projected(&mut self, i: usize, update: f32) {
        if self.write_back {
            self.b[i] = update;
        }
    }
}
