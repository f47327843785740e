//! A wrapper's `Skip` around an optimizer whose step is Burn's tensor operations (Burn's
//! Adam inside [`Nap`](crate::Nap) or [`RadialProjection`](crate::RadialProjection)), on a
//! CubeCL device: the gradient screened by two kernels, the inner step left to Burn's fusion,
//! and the parameter restored by one more. No host read, no boolean tensor: the masks of the
//! tensor-op frame (a sum, `is_finite`, broadcast selects) are not fused by Burn and ran the
//! whole inner step operation by operation.
//!
//! ```text
//! screen   launch 1, blocks  read g: a flag per block (1.0 where g holds NaN or ±∞)
//!          launch 2          every cube finishes the flags; cube 0 writes the verdict;
//!                            g ← 0 where the verdict is set (in place, written only then,
//!                            when no other tensor shares g; else a copy of g or zeros)
//!          a tensor of at most ONE_CUBE elements: one launch, one cube testing g itself
//!                            and writing the copy
//! inner    Burn's operations on the screened gradient (fused by Burn)
//! restore  one launch        p ← p_old where the verdict is set (nothing written otherwise)
//! ```

use burn::backend::fusion::custom::TensorSpec;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{CubeBackend, CubeTensor};
use burn::backend::{Dispatch, backend_extension};
use burn::cubecl;
use burn::cubecl::prelude::*;
use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;

use super::launch::{
    Launch, ONE_CUBE, contiguous, non_finite_blocks, non_finite_test, skipped, writable,
};
use super::{accepts, on_cube};
use crate::engine::non_finite::Checkpoint;

/// Whether the screen applies to a step of `param` with `grad`: f32 tensors of one shape on a
/// CubeCL device.
pub(crate) fn screens<const D: usize>(param: &Tensor<D>, grad: &Tensor<D>) -> bool {
    accepts(param) && on_cube(grad) && param.shape() == grad.shape()
}

/// Runs a wrapper's `step` under `Skip` on a CubeCL device (the caller checks [`screens`]):
/// the step sees a zero gradient in place of a non-finite one, and the parameter is then
/// kept as it was.
pub(crate) fn guarded<const D: usize, S>(
    param: Tensor<D>,
    grad: Tensor<D>,
    state: Option<S>,
    step: impl FnOnce(Tensor<D>, Tensor<D>, Option<S>) -> (Tensor<D>, Option<S>),
) -> (Tensor<D>, Option<S>) {
    let (grad, screen) = Screen::new(&param, grad);
    let (param, state) = step(param, grad, state);
    (screen.restore(param), state)
}

/// A screened step's parameter before it and its verdict (a one-element tensor on the device:
/// 1.0 when the gradient held NaN or ±∞, else 0.0).
pub(crate) struct Screen<const D: usize> {
    pub old: Tensor<D>,
    pub verdict: Tensor<1>,
}

impl<const D: usize> Screen<D> {
    /// Screens `grad` for a step of `param`: the gradient the inner step takes (zeros when
    /// `grad` holds NaN or ±∞) and the screen.
    pub fn new(param: &Tensor<D>, grad: Tensor<D>) -> (Tensor<D>, Self) {
        let (grad, verdict) = Dispatch::screen(grad.into_dispatch());
        let screen = Self {
            old: param.clone(),
            verdict: Tensor::from_dispatch(verdict),
        };
        (Tensor::from_dispatch(grad), screen)
    }

    /// `param`, or the parameter before the step where the verdict is set (a kernel for an
    /// f32 tensor on the device, else the tensor ops).
    pub fn restore(&self, param: Tensor<D>) -> Tensor<D> {
        assert_eq!(
            param.shape(),
            self.old.shape(),
            "scaleinv: the wrapped optimizer returned a parameter of another shape"
        );
        if !accepts(&param) {
            let bad = self.verdict.clone().greater_elem(0.0);
            return Checkpoint::with_flag(bad, &self.old).param(param);
        }
        let out = Dispatch::restore(
            param.into_dispatch(),
            self.old.clone().into_dispatch(),
            self.verdict.clone().into_dispatch(),
        );
        Tensor::from_dispatch(out)
    }
}

/// The screen and the restore as operations of Burn's CubeCL backend (and of fusion around
/// it).
#[backend_extension(Cube: cfg(feature = "wgpu"), Fusion: cfg(feature = "wgpu"))]
pub trait GuardKernel: burn::backend::Backend {
    /// The gradient, or zeros when it holds NaN or ±∞; and the one-element verdict.
    #[fusion(meta = |g| (g.clone(), TensorSpec::new(Shape::new([1]), DType::F32)))]
    fn screen(g: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `p`, or `old` where the verdict is set.
    #[fusion(meta = |p, _old, _verdict| p.clone())]
    fn restore(
        p: FloatTensor<Self>,
        old: FloatTensor<Self>,
        verdict: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl GuardKernel for CubeBackend {
    fn screen(g: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        launch_screen(g)
    }

    fn restore(
        p: FloatTensor<Self>,
        old: FloatTensor<Self>,
        verdict: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        launch_restore(p, old, verdict)
    }
}

fn launch_screen(g: CubeTensor) -> (CubeTensor, CubeTensor) {
    let [g] = contiguous([g]);
    let verdict = empty_device_contiguous_dtype(
        g.client.clone(),
        g.device.clone(),
        Shape::new([1]),
        DType::F32,
    );
    let mut run = Launch::new([&g]);
    let one_cube = run.elements() <= ONE_CUBE;
    let (flags, count) = if one_cube {
        run = run.one_cube();
        // Unread: the one cube tests `g` itself (and reads it only: the copy below).
        (g.handle.clone(), 0)
    } else {
        run = run.strided_with_barriers();
        non_finite_blocks(&run, &g)
    };
    let client = run.client();
    let flags_arg = run.floats(&flags, count.max(1));
    let (tested, units) = (!one_cube, run.units());
    if tested && g.can_mut() {
        zero_if_flagged::launch(
            client,
            run.count(),
            run.dim(),
            run.vector(),
            run.arg(&g),
            flags_arg,
            run.floats(&verdict.handle, 1),
            count,
            units,
        );
        return (g, verdict);
    }
    let out = empty_device_contiguous_dtype(
        g.client.clone(),
        g.device.clone(),
        g.meta.shape().clone(),
        DType::F32,
    );
    copy_or_zero::launch(
        client,
        run.count(),
        run.dim(),
        run.vector(),
        run.arg(&g),
        run.arg(&out),
        flags_arg,
        run.floats(&verdict.handle, 1),
        count,
        units,
        tested,
        one_cube,
    );
    (out, verdict)
}

fn launch_restore(p: CubeTensor, old: CubeTensor, verdict: CubeTensor) -> CubeTensor {
    let [p, old, verdict] = contiguous([p, old, verdict]);
    let p = writable(p);
    let run = Launch::new([&p, &old]);
    restore_if_flagged::launch(
        run.client(),
        run.count(),
        run.dim(),
        run.vector(),
        run.arg(&p),
        run.arg(&old),
        run.floats(&verdict.handle, 1),
    );
    p
}

/// The verdict, written by the first unit of cube 0.
#[cube]
fn write_verdict(bad: bool, verdict: &mut [f32]) {
    if CUBE_POS == 0 && UNIT_POS == 0 {
        verdict[0] = select(bad, 1.0f32, 0.0f32);
    }
}

/// Launch 2 in place, after the flags of launch 1: every cube finishes them, and `g ← 0`
/// when one is set; nothing written otherwise.
#[cube(launch)]
fn zero_if_flagged<N: Size>(
    g: &mut [Vector<f32, N>],
    flags: &[f32],
    verdict: &mut [f32],
    count: usize,
    #[comptime] units: usize,
) {
    let bad = skipped(flags, count, units, true);
    write_verdict(bad, verdict);
    if bad {
        let stride = CUBE_COUNT * units;
        let mut i = ABSOLUTE_POS;
        while i < g.len() {
            g[i] = Vector::new(0.0f32);
            i += stride;
        }
    }
}

/// Launch 2 into a new buffer (or the one launch of a small tensor, whose one cube tests
/// `g` itself): `out ← 0` when the gradient holds NaN or ±∞, else `out ← g`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn copy_or_zero<N: Size>(
    g: &[Vector<f32, N>],
    out: &mut [Vector<f32, N>],
    flags: &[f32],
    verdict: &mut [f32],
    count: usize,
    #[comptime] units: usize,
    #[comptime] tested: bool,
    #[comptime] tests_itself: bool,
) {
    let bad = non_finite_test::<N>(g, flags, count, units, tested, tests_itself);
    write_verdict(bad, verdict);
    let stride = CUBE_COUNT * units;
    let mut i = ABSOLUTE_POS;
    while i < g.len() {
        out[i] = select(bad, Vector::new(0.0f32), g[i]);
        i += stride;
    }
}

/// `p ← old` where the verdict is set; nothing written otherwise.
#[cube(launch)]
fn restore_if_flagged<N: Size>(p: &mut [Vector<f32, N>], old: &[Vector<f32, N>], verdict: &[f32]) {
    let i = ABSOLUTE_POS;
    if i < p.len() && verdict[0] > 0.0f32 {
        p[i] = old[i];
    }
}
