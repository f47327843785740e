//! The CubeCL forms of the parameter's write and of the projected decay factor (`super`),
//! beside the formulas they mirror; the parity test runs them on wgpu against `super::write`
//! and `super::factor`.
//!
//! ```text
//! write: p ← p·f − u·s,  f = 1 − ηλ (the host's), or r·(−ηλ) + 1 with the projection's ratio r
//! ```

use burn::cubecl;
use burn::cubecl::prelude::*;

/// The f32 scalars of the parameter's write `p ← p·f − u·scale`: the host's decay factor
/// `f = 1 − ηλ` (used without a projection), `−ηλ` (with one, `f = r·(−ηλ) + 1` on the
/// device), and the step's scale.
#[derive(CubeLaunch, CubeType, Debug, Clone, Copy, PartialEq)]
pub struct WriteArgs {
    pub decay_factor: f32,
    pub neg_decay_rate: f32,
    pub scale: f32,
}

impl WriteArgs {
    /// The write of a step with decay rate `rate = ηλ` ([`super::factor`]) and scale `scale`
    /// on `u`.
    pub fn new(rate: f64, scale: f64) -> Self {
        Self {
            decay_factor: super::factor(1.0, rate) as f32,
            neg_decay_rate: (-rate) as f32,
            scale: scale as f32,
        }
    }

    /// The kernel argument.
    pub fn launch(self) -> WriteArgsLaunch {
        WriteArgsLaunch::new(self.decay_factor, self.neg_decay_rate, self.scale)
    }
}

/// `p·f − u·scale` ([`super::write`]).
#[cube]
pub fn write<N: Size>(
    p: Vector<f32, N>,
    u: Vector<f32, N>,
    factor: f32,
    scale: f32,
) -> Vector<f32, N> {
    p * Vector::new(factor) - u * Vector::new(scale)
}

/// The decay factor of a projected step: `r·(−ηλ) + 1` ([`super::factor`]).
#[cube]
pub fn projected_factor(ratio: f32, w: &WriteArgs) -> f32 {
    ratio * w.neg_decay_rate + 1.0
}

/// The forms above against [`super::write`] and [`super::factor`] on wgpu, element by element.
#[cfg(test)]
mod parity {
    use burn::cubecl;
    use burn::cubecl::prelude::*;

    use super::{WriteArgs, projected_factor, write};
    use crate::engine::cube::parity::{Gpu, assert_close, inputs};

    #[cube(launch)]
    fn writes<N: Size>(
        p: &[Vector<f32, N>],
        u: &[Vector<f32, N>],
        ratio: &[f32],
        out_write: &mut [Vector<f32, N>],
        out_factor: &mut [f32],
        w: &WriteArgs,
    ) {
        let i = ABSOLUTE_POS;
        if i < p.len() {
            out_write[i] = write::<N>(p[i], u[i], w.decay_factor, w.scale);
            out_factor[i] = projected_factor(ratio[i], w);
        }
    }

    #[test]
    fn the_write_and_the_projected_factor_match_their_formulas() {
        let Some(gpu) = Gpu::get() else { return };
        let n = 1024;
        let (p, u) = (inputs(n, 3, false), inputs(n, 4, false));
        let ratios: Vec<f32> = inputs(n, 5, true).iter().map(|r| r.min(1.0)).collect();
        let (hp, hu, hr) = (gpu.upload(&p), gpu.upload(&u), gpu.upload(&ratios));
        for (rate, scale) in [(1e-4, 1e-3), (0.0, 0.1), (0.5, 1.0), (1e-8, 3e-5)] {
            let w = WriteArgs::new(rate, scale);
            let (out_write, out_factor) = (gpu.empty(n), gpu.empty(n));
            let (count, dim) = gpu.elementwise(n);
            writes::launch(
                &gpu.client,
                count,
                dim,
                1,
                gpu.arg(&hp, n),
                gpu.arg(&hu, n),
                gpu.arg(&hr, n),
                gpu.arg(&out_write, n),
                gpu.arg(&out_factor, n),
                w.launch(),
            );
            let f = super::super::factor(1.0f32, rate);
            let s = f64::from(w.scale);
            let want: Vec<f32> = (0..n)
                .map(|i| super::super::write(p[i], Some(f), u[i], s))
                .collect();
            let input =
                |i: usize| format!("p {:e}, u {:e}, rate {rate}, scale {scale}", p[i], u[i]);
            assert_close("write", &gpu.read(out_write), &want, input);
            let want: Vec<f32> = ratios
                .iter()
                .map(|&r| super::super::factor(r, rate))
                .collect();
            let input = |i: usize| format!("ratio {:e}, rate {rate}", ratios[i]);
            assert_close("projected factor", &gpu.read(out_factor), &want, input);
        }
    }
}
