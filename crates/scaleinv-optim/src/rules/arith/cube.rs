//! The CubeCL forms of the shared formulas (`super`): CubeCL's kernel language cannot call the
//! generic functions over [`Arith`](super::Arith), so they are written here beside them, and
//! the parity test below runs each on wgpu against the formula.

use burn::cubecl;
use burn::cubecl::prelude::*;

/// The smallest positive normal f32: the floor of a scale and of a denominator (the tensor
/// path's `Scaled`, [`super::ratio`]).
pub const MIN_POSITIVE: f32 = f32::MIN_POSITIVE;

/// The f32 scalars of a momentum rule: Adam's `(β1, 1 − β1, β2, 1 − β2, √(1 − β2^t), ε)`
/// (`adam::cube::moment_args`), or SGD's `(μ, 1 − τ)` in the first two, the others unread
/// (`sgd::cube::moment_args`).
#[derive(CubeLaunch, CubeType, Debug, Clone, Copy, PartialEq)]
pub struct MomentArgs {
    pub decay_1: f32,
    pub weight_1: f32,
    pub decay_2: f32,
    pub weight_2: f32,
    pub sqrt_bc2: f32,
    pub epsilon: f32,
}

impl MomentArgs {
    /// The kernel argument.
    pub fn launch(self) -> MomentArgsLaunch {
        MomentArgsLaunch::new(
            self.decay_1,
            self.weight_1,
            self.decay_2,
            self.weight_2,
            self.sqrt_bc2,
            self.epsilon,
        )
    }
}

/// `prev·decay + x·weight` ([`super::ema`] with `weight = 1 − decay`).
#[cube]
pub fn ema<N: Size>(
    prev: Vector<f32, N>,
    x: Vector<f32, N>,
    decay: f32,
    weight: f32,
) -> Vector<f32, N> {
    prev * Vector::new(decay) + x * Vector::new(weight)
}

/// The first state after `g`: Adam's `m`, SGD's `b` (an [`ema`] with the rule's first pair).
#[cube]
pub fn first<N: Size>(s1: Vector<f32, N>, g: Vector<f32, N>, r: &MomentArgs) -> Vector<f32, N> {
    ema::<N>(s1, g, r.decay_1, r.weight_1)
}

/// `a / max(b, MIN_POSITIVE)`: a ratio whose denominator cannot be zero ([`super::ratio`]).
#[cube]
pub fn ratio(a: f32, b: f32) -> f32 {
    a / f32::max(b, MIN_POSITIVE)
}

/// The forms above against [`super::ema`] and [`super::ratio`] on wgpu, element by element.
#[cfg(test)]
mod parity {
    use burn::cubecl;
    use burn::cubecl::prelude::*;

    use super::{MomentArgs, ema, first, ratio};
    use crate::engine::cube::parity::{Gpu, assert_close, inputs};

    #[cube(launch)]
    fn averages<N: Size>(
        a: &[Vector<f32, N>],
        b: &[Vector<f32, N>],
        out_ema: &mut [Vector<f32, N>],
        out_first: &mut [Vector<f32, N>],
        rule: &MomentArgs,
        decay: f32,
        weight: f32,
    ) {
        let i = ABSOLUTE_POS;
        if i < a.len() {
            out_ema[i] = ema::<N>(a[i], b[i], decay, weight);
            out_first[i] = first::<N>(a[i], b[i], rule);
        }
    }

    #[cube(launch)]
    fn ratios(a: &[f32], b: &[f32], out: &mut [f32]) {
        let i = ABSOLUTE_POS;
        if i < a.len() {
            out[i] = ratio(a[i], b[i]);
        }
    }

    #[test]
    fn ema_first_and_ratio_match_their_formulas() {
        let Some(gpu) = Gpu::get() else { return };
        let n = 1024;
        let (a, b) = (inputs(n, 1, false), inputs(n, 2, false));
        let (ha, hb) = (gpu.upload(&a), gpu.upload(&b));
        for decay in [0.9, 0.999, 0.0, 0.5] {
            let rule = MomentArgs {
                decay_1: decay as f32,
                weight_1: (1.0 - decay) as f32,
                decay_2: 0.0,
                weight_2: 0.0,
                sqrt_bc2: 1.0,
                epsilon: 0.0,
            };
            let (out_ema, out_first) = (gpu.empty(n), gpu.empty(n));
            let (count, dim) = gpu.elementwise(n / 4);
            averages::launch(
                &gpu.client,
                count,
                dim,
                4,
                gpu.arg(&ha, n),
                gpu.arg(&hb, n),
                gpu.arg(&out_ema, n),
                gpu.arg(&out_first, n),
                rule.launch(),
                decay as f32,
                (1.0 - decay) as f32,
            );
            let want: Vec<f32> = (0..n)
                .map(|i| crate::rules::arith::ema(a[i], b[i], decay))
                .collect();
            let input = |i: usize| format!("a {:e}, b {:e}, decay {decay}", a[i], b[i]);
            assert_close("ema", &gpu.read(out_ema), &want, input);
            assert_close("first", &gpu.read(out_first), &want, input);
        }
        let out = gpu.empty(n);
        let (count, dim) = gpu.elementwise(n);
        ratios::launch(
            &gpu.client,
            count,
            dim,
            gpu.arg(&ha, n),
            gpu.arg(&hb, n),
            gpu.arg(&out, n),
        );
        let want: Vec<f32> = (0..n)
            .map(|i| crate::rules::arith::ratio(a[i], b[i]))
            .collect();
        let input = |i: usize| format!("a {:e}, b {:e}", a[i], b[i]);
        assert_close("ratio", &gpu.read(out), &want, input);
    }
}
