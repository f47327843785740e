//! Stable-SPAM's step over one tensor's buffers: two reads of `g` (`max|g|`, then the clipped
//! norm), the per-tensor statistics on the CPU, then one pass for the moments and the
//! parameter.

use super::sums::blocked_sum;
use crate::math::spike::SpikeStep;
use crate::math::{decay, spike};

/// The per-tensor statistics: AdaClip's average of `max|g|`, AdaGN's averages of the norm and
/// of its square.
pub(crate) struct SpikeScalars<'a> {
    pub clip_threshold: &'a mut f32,
    pub norm_mean: &'a mut f32,
    pub norm_sq_mean: &'a mut f32,
}

impl SpikeStep {
    /// Steps `p` with gradient `g`, moments `m`, `v` and AMSGrad's running maximum `max_v`.
    /// Under `skip_non_finite`, a non-finite clipped norm leaves `p`, the moments and the
    /// statistics as they were (a reset after the update still happens, as on the tensor path).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        mut max_v: Option<&mut [f32]>,
        scalars: SpikeScalars<'_>,
    ) {
        let t = self.time;
        // AdaClip: the elements above the bias-corrected average of max|g| are scaled down.
        let max_abs = g.iter().fold(0.0f32, |a, x| a.max(x.abs()));
        let (threshold, limit) = spike::clip_limit(*scalars.clip_threshold, max_abs, self.theta, t);
        let spike_scale = spike::spike_scale(limit, max_abs);
        let clipped = |x: f32| if x.abs() > limit { x * spike_scale } else { x };
        // AdaGN: the norm of the clipped gradient, and the rescale to the averages' ratio.
        let norm = blocked_sum(g, |x| {
            let c = clipped(x);
            c * c
        })
        .sqrt() as f32;
        let skip = self.skip_non_finite && !norm.is_finite();
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
            let step = (self.lr / bc1) as f32;
            let rate = self.lr * self.weight_decay;
            for i in 0..p.len() {
                let g = clipped(g[i]) * rescale;
                m[i] = self.adam.first(m[i], g);
                v[i] = self.adam.second(v[i], g);
                let second = match &mut max_v {
                    Some(max) => {
                        max[i] = max[i].max(v[i]);
                        max[i]
                    }
                    None => v[i],
                };
                let update = m[i] / self.adam.denominator(second, bc2) * step;
                let decayed = if rate != 0.0 {
                    decay::plain(p[i], rate)
                } else {
                    p[i]
                };
                p[i] = decayed - update;
            }
        }
        if self.reset && !self.clean_reset {
            m.fill(0.0);
            v.fill(0.0);
        }
    }
}
