//! Flex tensors as CPU buffers: which tensors the fused loops can take, and the slices they
//! work on (a copy only when a state buffer is shared or not contiguous; a shared parameter is
//! read where it lies and written to a fresh buffer, see [`Target`]).

use burn::backend::flex::FlexTensor;
use burn::backend::{DispatchDevice, Flex};
use burn::tensor::{DType, Tensor};

use super::elem::{Elem, fused_dtype};
use super::parallel::{CHUNK, Task, ranges, run_all, split_mut};
use super::passes::{Outcome, Param};
use super::sums::{finite, squares};

/// Whether `tensor` lies on the flex device.
pub(crate) fn on_flex<const D: usize>(tensor: &Tensor<D>) -> bool {
    matches!(tensor.device().as_dispatch(), DispatchDevice::Flex(_))
}

/// Whether `tensor` is an f32 tensor on flex (its elements readable where they lie).
pub(crate) fn readable<const D: usize>(tensor: &Tensor<D>) -> bool {
    on_flex(tensor) && tensor.dtype() == DType::F32
}

/// Whether the fused path can step `param`: a non-empty f32, f16 or bf16 tensor on flex, and
/// for an optimizer that projects along `channel_axis`, an axis of it.
pub(crate) fn accepts<const D: usize>(param: &Tensor<D>, channel_axis: Option<usize>) -> bool {
    param.shape().num_elements() > 0
        && on_flex(param)
        && fused_dtype(param.dtype())
        && channel_axis.is_none_or(|axis| D < 2 || axis < D)
}

/// Whether a per-tensor statistic (shape `[1]`) is an f32 flex tensor.
pub(crate) fn scalar_on_flex(tensor: &Tensor<1>) -> bool {
    readable(tensor) && tensor.dims() == [1]
}

/// Reads `tensor`'s elements in place when it is an f32 flex tensor (a CPU buffer: no device
/// to synchronise with), for the host-side decisions of the wrappers; `None` elsewhere.
fn read<const D: usize, R>(tensor: &Tensor<D>, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    if !readable(tensor) {
        return None;
    }
    let buffer = Buffer::new(tensor.clone());
    Some(f(buffer.get()))
}

/// Whether every element of `tensor` is finite, read on flex; `None` on other backends.
pub(crate) fn all_finite<const D: usize>(tensor: &Tensor<D>) -> Option<bool> {
    read(tensor, finite)
}

/// `‖tensor‖` (summed in f64), read on flex; `None` on other backends.
pub(crate) fn norm<const D: usize>(tensor: &Tensor<D>) -> Option<f64> {
    read(tensor, |x| squares(x, |v| v).sqrt())
}

/// The value of a one-element tensor, read on flex; `None` on other backends.
pub(crate) fn single_value<const D: usize>(tensor: &Tensor<D>) -> Option<f64> {
    read(tensor, |x| (x.len() == 1).then(|| f64::from(x[0]))).flatten()
}

/// `tensor · factor` for an f32 flex tensor (checked by the caller), in one pass over fixed
/// chunks: in place when no other tensor shares the buffer, as for a parameter a fused step
/// has just written.
pub(crate) fn scaled<const D: usize>(tensor: Tensor<D>, factor: f32) -> Tensor<D> {
    let mut buffer = Buffer::new(tensor);
    let x = buffer.get_mut();
    let len = x.len();
    let tasks = split_mut(x, &ranges(len, CHUNK));
    let tasks = tasks.into_iter().map(|x| Scale { x, factor }).collect();
    run_all(tasks, len);
    buffer.tensor()
}

/// `x ← x · factor` over one chunk.
struct Scale<'a> {
    x: &'a mut [f32],
    factor: f32,
}

impl Task for Scale<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        self.x.iter_mut().for_each(|x| *x *= self.factor);
    }
}

/// `$body` with `$p` the parameter's elements ([`Param`]) and `$g` the gradient's, of the
/// parameter's element type (f32, f16 or bf16): the body expands once per type, where the macro
/// is written (no call between the optimizer and its passes).
macro_rules! over_elements {
    ($target:expr, $grad:expr, |$p:ident, $g:ident| $body:expr) => {
        match $target.dtype() {
            burn::tensor::DType::F16 => {
                let ($p, $g) = $target.elements::<half::f16>(&$grad);
                $body
            }
            burn::tensor::DType::BF16 => {
                let ($p, $g) = $target.elements::<half::bf16>(&$grad);
                $body
            }
            _ => {
                let ($p, $g) = $target.elements::<f32>(&$grad);
                $body
            }
        }
    };
}

pub(crate) use over_elements;

/// One step of the fused loops: the new parameter and state, and what the step did.
pub(crate) struct Fused<const D: usize, S> {
    pub param: Tensor<D>,
    pub state: Option<S>,
    pub outcome: Outcome,
}

/// A contiguous flex buffer: f32 (a state tensor), or a gradient of the parameter's type.
pub(crate) struct Buffer(FlexTensor);

impl Buffer {
    pub fn new<const D: usize>(tensor: Tensor<D>) -> Self {
        let flex = tensor
            .try_into_primitive::<Flex>()
            .unwrap_or_else(|_| unreachable!("checked by `accepts` and `fit`"));
        Self(if flex.is_contiguous() {
            flex
        } else {
            flex.to_contiguous()
        })
    }

    pub fn zeros(like: &Self) -> Self {
        Self(FlexTensor::zeros(
            like.0.layout().shape().clone(),
            DType::F32,
        ))
    }

    pub fn get(&self) -> &[f32] {
        self.elements()
    }

    /// The elements, of type `E`.
    fn elements<E: Elem>(&self) -> &[E] {
        E::slice(&self.0)
    }

    /// The elements, writable (copied first if another tensor shares the buffer).
    pub fn get_mut(&mut self) -> &mut [f32] {
        f32::slice_mut(&mut self.0)
    }

    pub fn tensor<const D: usize>(self) -> Tensor<D> {
        Tensor::from_primitive::<Flex>(self.0)
    }
}

/// A parameter's buffer for a step that rewrites it: in place when no other tensor shares it;
/// else (a model clone kept for EMA or evaluation) the step reads the shared buffer and writes
/// a fresh one in the same pass, instead of copying it first.
pub(crate) struct Target {
    shared: Option<FlexTensor>,
    out: FlexTensor,
}

impl Target {
    pub fn new<const D: usize>(tensor: Tensor<D>) -> Self {
        let Buffer(flex) = Buffer::new(tensor);
        if flex.is_unique() {
            Self {
                shared: None,
                out: flex,
            }
        } else {
            let out = FlexTensor::empty(flex.layout().shape().clone(), flex.dtype());
            Self {
                shared: Some(flex),
                out,
            }
        }
    }

    /// The elements for the step, of type `E` (the parameter's, see [`over_elements`]): in
    /// place, or from the shared buffer into the fresh one; with the gradient's `grad`.
    pub fn elements<'g, E: Elem>(&mut self, grad: &'g Buffer) -> (Param<'_, E>, &'g [E]) {
        let out = E::slice_mut(&mut self.out);
        let p = match &self.shared {
            None => Param::in_place(out),
            Some(shared) => Param::copied(E::slice(shared), out),
        };
        (p, grad.elements())
    }

    /// The parameter's element type.
    pub fn dtype(&self) -> DType {
        self.out.dtype()
    }

    pub fn dims(&self) -> Vec<usize> {
        self.out.layout().shape().iter().copied().collect()
    }

    /// The parameter after the step: the written buffer, or the old one when the step wrote
    /// nothing (skipped for a non-finite gradient).
    pub fn tensor<const D: usize>(self, outcome: Outcome) -> Tensor<D> {
        let flex = match self.shared {
            Some(shared) if !outcome.written() => shared,
            _ => self.out,
        };
        Tensor::from_primitive::<Flex>(flex)
    }
}
