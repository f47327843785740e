//! NaP's projection of a whole tensor back to its norm `ρ` as CubeCL kernels: two launches
//! and no host read.
//!
//! ```text
//! launch 1, blocks   read p: Σp² per block (guarded: and a flag per block, 1 where the
//!                    step's gradient g holds NaN or ±∞)
//! launch 2           every cube: factor = ρ / max(√Σp², ε) from the blocks' sums (at most
//!                    64, added in order: the same bits in every cube);
//!                    guarded and some flag set: nothing written (the step is skipped)
//!                    otherwise p ← p·factor in place (a copy first if shared)
//! ```
//!
//! After a step screened by `engine::cube::guard` (NaP around one of Burn's optimizers under
//! `Skip`), launch 2 puts back the parameter before the step where the screen's verdict is
//! set, in place of the guard's own restore: one launch less.

use burn::backend::wgpu::CubeTensor;
use burn::cubecl;
use burn::cubecl::prelude::*;
use burn::cubecl::server::Handle;

use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeBackend;
use burn::backend::{Dispatch, backend_extension};
use burn::tensor::Tensor;

use crate::engine::cube::guard::Screen;
use crate::engine::cube::launch::{
    Blocks, Launch, contiguous, non_finite_in, skipped, writable, write_block_flag,
};
use crate::engine::cube::reduce::{finish_in_cube, lane_sum, tree};
use crate::engine::cube::{accepts, on_cube};

/// NaP's floor of the current norm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NapScalars {
    pub epsilon: f32,
}

/// Launch 1: `Σp²` per block and, `guarded`, the block's non-finite flag of `g` (1.0 where an
/// element is NaN or ±∞).
#[cube(launch)]
fn block_squares<N: Size>(
    p: &[Vector<f32, N>],
    g: &[Vector<f32, N>],
    partial: &mut [f32],
    flags: &mut [f32],
    #[comptime] units: usize,
    #[comptime] guarded: bool,
) {
    let unit = UNIT_POS as usize;
    let stride = CUBE_COUNT * units;
    let mut acc = Vector::new(0.0f32);
    let mut bad = 0.0f32;
    let mut j = CUBE_POS * units + unit;
    while j < p.len() {
        acc += p[j] * p[j];
        if guarded {
            bad = f32::max(bad, non_finite_in::<N>(g[j]));
        }
        j += stride;
    }
    let mut shared = Shared::<[Vector<f32, N>]>::new_slice(units);
    shared[unit] = acc;
    tree::<N>(&mut shared, 1usize, units, true);
    if unit == 0 {
        partial[CUBE_POS] = lane_sum::<N>(shared[0]);
    }
    if guarded {
        write_block_flag(bad, flags);
    }
}

/// `ρ / max(‖p‖, ε)` ([`super::factor`]).
#[cube]
pub fn norm_factor_of(radius: f32, norm: f32, epsilon: f32) -> f32 {
    radius / f32::max(norm, epsilon)
}

/// Launch 2: `p ← p · ρ / max(‖p‖, ε)`, each cube of `units` units finishing the `blocks`
/// partial sums (and, `guarded`, the flags: nothing written when one is set) for itself.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn rescale<N: Size>(
    p: &mut [Vector<f32, N>],
    partial: &[f32],
    flags: &[f32],
    blocks: usize,
    radius: &[f32],
    epsilon: f32,
    #[comptime] units: usize,
    #[comptime] guarded: bool,
) {
    let skip = skipped(flags, blocks, units, guarded);
    let sum = finish_in_cube(partial, 0usize, blocks, units, true);
    let factor = norm_factor_of(radius[0], f32::sqrt(sum), epsilon);
    let i = ABSOLUTE_POS;
    if i < p.len() && !skip {
        p[i] *= Vector::new(factor);
    }
}

/// Launch 2 after a screened step (`engine::cube::guard`): `p ← old` where the one-element
/// `verdict` is set, else `p ← p · ρ / max(‖p‖, ε)` as [`rescale`] without a guard.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn rescale_or_restore<N: Size>(
    p: &mut [Vector<f32, N>],
    old: &[Vector<f32, N>],
    verdict: &[f32],
    partial: &[f32],
    blocks: usize,
    radius: &[f32],
    epsilon: f32,
    #[comptime] units: usize,
) {
    let sum = finish_in_cube(partial, 0usize, blocks, units, true);
    let factor = norm_factor_of(radius[0], f32::sqrt(sum), epsilon);
    let i = ABSOLUTE_POS;
    if i < p.len() {
        if verdict[0] > 0.0f32 {
            p[i] = old[i];
        } else {
            p[i] *= Vector::new(factor);
        }
    }
}

/// Launches NaP's projection of the f32 tensor `p` onto the norm held in the one-element
/// `radius`, skipped when `guard` (the step's gradient) holds NaN or ±∞; `p` is written in
/// place where no other tensor shares its buffer.
fn launch(
    p: CubeTensor,
    radius: CubeTensor,
    guard: Option<CubeTensor>,
    s: NapScalars,
) -> CubeTensor {
    let [p, radius] = contiguous([p, radius]);
    let guard = guard.map(|g| contiguous([g])[0].clone());
    let p = writable(p);
    let run = match &guard {
        Some(g) => Launch::new([&p, g]),
        None => Launch::new([&p]),
    };
    let client = run.client();
    let blocks = Blocks::few(client, p.meta.num_elements() / run.vector());
    // The flags' scratch when guarded; unread (the sums' buffer) otherwise.
    let flags = match guard {
        Some(_) => client.empty(blocks.count * size_of::<f32>()),
        None => blocks.partial.clone(),
    };
    let g = guard.as_ref().unwrap_or(&p);
    squares(&run, &blocks, &p, g, &flags, guard.is_some());
    rescale::launch(
        client,
        run.count(),
        run.dim(),
        run.vector(),
        run.arg(&p),
        blocks.partial(),
        run.floats(&flags, blocks.count),
        blocks.count,
        run.floats(&radius.handle, 1),
        s.epsilon,
        run.units(),
        guard.is_some(),
    );
    p
}

/// Launch 1: `Σp²` by `blocks` and, `guarded`, `g`'s flags into `flags`.
fn squares(
    run: &Launch,
    blocks: &Blocks,
    p: &CubeTensor,
    g: &CubeTensor,
    flags: &Handle,
    guarded: bool,
) {
    block_squares::launch(
        run.client(),
        blocks.cubes(),
        blocks.dim(),
        run.vector(),
        run.arg(p),
        run.arg(g),
        blocks.partial(),
        run.floats(flags, blocks.count),
        blocks.units,
        guarded,
    );
}

/// Launches NaP's projection of `p` after a screened step: `Σp²` by blocks, then the rescale,
/// or `p ← old` where the one-element `verdict` is set.
fn launch_restoring(
    p: CubeTensor,
    old: CubeTensor,
    verdict: CubeTensor,
    radius: CubeTensor,
    s: NapScalars,
) -> CubeTensor {
    let [p, old, verdict, radius] = contiguous([p, old, verdict, radius]);
    let p = writable(p);
    let run = Launch::new([&p, &old]);
    let client = run.client();
    let blocks = Blocks::few(client, p.meta.num_elements() / run.vector());
    squares(&run, &blocks, &p, &p, &blocks.partial, false);
    rescale_or_restore::launch(
        client,
        run.count(),
        run.dim(),
        run.vector(),
        run.arg(&p),
        run.arg(&old),
        run.floats(&verdict.handle, 1),
        blocks.partial(),
        blocks.count,
        run.floats(&radius.handle, 1),
        s.epsilon,
        run.units(),
    );
    p
}

/// NaP's projection as an operation of Burn's CubeCL backend (and of fusion around it).
#[backend_extension(Cube: cfg(feature = "wgpu"), Fusion: cfg(feature = "wgpu"))]
pub trait NormKernel: burn::backend::Backend {
    /// NaP's projection of `p` back to the norm `radius` (see the module's doc).
    #[fusion(meta = |p, _radius, _s| p.clone())]
    fn nap_rescale(
        p: FloatTensor<Self>,
        radius: FloatTensor<Self>,
        s: NapScalars,
    ) -> FloatTensor<Self>;

    /// [`nap_rescale`](Self::nap_rescale), skipped when `g` holds NaN or ±∞.
    #[fusion(meta = |p, _g, _radius, _s| p.clone())]
    fn nap_rescale_guarded(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        radius: FloatTensor<Self>,
        s: NapScalars,
    ) -> FloatTensor<Self>;

    /// [`nap_rescale`](Self::nap_rescale) after a screened step, or `old` where the
    /// one-element `verdict` is set.
    #[fusion(meta = |p, _old, _verdict, _radius, _s| p.clone())]
    fn nap_rescale_or_restore(
        p: FloatTensor<Self>,
        old: FloatTensor<Self>,
        verdict: FloatTensor<Self>,
        radius: FloatTensor<Self>,
        s: NapScalars,
    ) -> FloatTensor<Self>;
}

impl NormKernel for CubeBackend {
    fn nap_rescale(
        p: FloatTensor<Self>,
        radius: FloatTensor<Self>,
        s: NapScalars,
    ) -> FloatTensor<Self> {
        launch(p, radius, None, s)
    }

    fn nap_rescale_guarded(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        radius: FloatTensor<Self>,
        s: NapScalars,
    ) -> FloatTensor<Self> {
        launch(p, radius, Some(g), s)
    }

    fn nap_rescale_or_restore(
        p: FloatTensor<Self>,
        old: FloatTensor<Self>,
        verdict: FloatTensor<Self>,
        radius: FloatTensor<Self>,
        s: NapScalars,
    ) -> FloatTensor<Self> {
        launch_restoring(p, old, verdict, radius, s)
    }
}

/// Whether [`nap_rescale`] takes `p` and `radius`: f32 tensors on a CubeCL device, `radius`
/// of one element.
pub(crate) fn rescales<const D: usize>(p: &Tensor<D>, radius: &Tensor<D>) -> bool {
    accepts(p) && on_cube(radius) && radius.shape().num_elements() == 1
}

/// NaP's projection of `p` back to the norm held in the one-element `radius` (the caller
/// checks [`rescales`]); with `guard`, none when that gradient holds NaN or ±∞ (`p` comes
/// back as it was). `p` is moved in, so its buffer is written in place when nothing else
/// holds it.
pub(crate) fn nap_rescale<const D: usize>(
    p: Tensor<D>,
    radius: &Tensor<D>,
    guard: Option<&Tensor<D>>,
    epsilon: f64,
) -> Tensor<D> {
    let s = NapScalars {
        epsilon: epsilon as f32,
    };
    let (p, radius) = (p.into_dispatch(), radius.clone().into_dispatch());
    let out = match guard {
        Some(g) => Dispatch::nap_rescale_guarded(p, g.clone().into_dispatch(), radius, s),
        None => Dispatch::nap_rescale(p, radius, s),
    };
    Tensor::from_dispatch(out)
}

/// NaP's projection of `p` after a screened step (`engine::cube::guard`): back to the norm
/// held in the one-element `radius` (the caller checks [`rescales`]), or the parameter before
/// the step where the screen's verdict is set.
pub(crate) fn nap_rescale_or_restore<const D: usize>(
    p: Tensor<D>,
    radius: &Tensor<D>,
    screen: &Screen<D>,
    epsilon: f64,
) -> Tensor<D> {
    let s = NapScalars {
        epsilon: epsilon as f32,
    };
    let out = Dispatch::nap_rescale_or_restore(
        p.into_dispatch(),
        screen.old.clone().into_dispatch(),
        screen.verdict.clone().into_dispatch(),
        radius.clone().into_dispatch(),
        s,
    );
    Tensor::from_dispatch(out)
}

/// [`norm_factor_of`] against [`super::factor`] on wgpu, element by element.
#[cfg(test)]
mod parity {
    use burn::cubecl;
    use burn::cubecl::prelude::*;

    use super::norm_factor_of;
    use crate::engine::cube::parity::{Gpu, assert_close, inputs};

    #[cube(launch)]
    fn factors(radius: &[f32], norm: &[f32], out: &mut [f32], epsilon: f32) {
        let i = ABSOLUTE_POS;
        if i < radius.len() {
            out[i] = norm_factor_of(radius[i], norm[i], epsilon);
        }
    }

    #[test]
    fn the_norm_factor_matches_its_formula() {
        let Some(gpu) = Gpu::get() else { return };
        let n = 1024;
        let (radius, norm) = (inputs(n, 6, true), inputs(n, 7, true));
        let (hr, hn) = (gpu.upload(&radius), gpu.upload(&norm));
        for epsilon in [1e-8, 1e-12, 0.0] {
            let out = gpu.empty(n);
            let (count, dim) = gpu.elementwise(n);
            factors::launch(
                &gpu.client,
                count,
                dim,
                gpu.arg(&hr, n),
                gpu.arg(&hn, n),
                gpu.arg(&out, n),
                epsilon as f32,
            );
            let want: Vec<f32> = (0..n)
                .map(|i| super::super::factor(radius[i], norm[i], f64::from(epsilon as f32)))
                .collect();
            let input = |i: usize| format!("ρ {:e}, ‖p‖ {:e}, ε {epsilon}", radius[i], norm[i]);
            assert_close("NaP factor", &gpu.read(out), &want, input);
        }
    }
}
