//! Adam's step (AdamP's, with its projection; AdamW's without) over one tensor's buffers.

use super::frame::{Frame, Kernel};
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
    /// tensor of shape `dims`. Returns `false`, with nothing written, when the step is skipped
    /// for a non-finite gradient.
    pub fn run(
        &self,
        dims: &[usize],
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) -> bool {
        let (bc1, bc2) = self.adam.bias_corrections(self.time);
        let frame = Frame {
            projection: self.projection,
            skip_non_finite: self.skip_non_finite,
            decay_rate: self.lr * self.weight_decay,
            scale: (self.lr / bc1) as f32,
        };
        let mut kernel = AdamKernel {
            adam: self.adam,
            g,
            m,
            v,
            bc2,
            nesterov: self.nesterov,
        };
        frame.run(dims, p, g, &mut kernel)
    }
}

/// Adam's moments of one tensor, element by element (`math::adam`'s formulas).
struct AdamKernel<'a> {
    adam: Adam,
    g: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    bc2: f64,
    nesterov: bool,
}

impl AdamKernel<'_> {
    #[inline(always)]
    fn direction(&self, i: usize, m: f32, v: f32) -> f32 {
        let denom = self.adam.denominator(v, self.bc2);
        self.adam.direction(m, self.g[i], denom, self.nesterov)
    }
}

impl Kernel for AdamKernel<'_> {
    #[inline(always)]
    fn advance(&mut self, i: usize) -> f32 {
        let g = self.g[i];
        let m = self.adam.first(self.m[i], g);
        let v = self.adam.second(self.v[i], g);
        self.m[i] = m;
        self.v[i] = v;
        self.direction(i, m, v)
    }

    #[inline(always)]
    fn update(&self, i: usize) -> f32 {
        self.direction(i, self.m[i], self.v[i])
    }
}
