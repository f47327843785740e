//! The element types of a parameter and its gradient on the fused path: f32, read and written
//! where it lies, or f16/bf16, converted to f32 a segment at a time in the pass that reads or
//! writes it. The arithmetic and the optimizer's state stay f32, as on the tensor-op path
//! (which casts the whole tensor to f32 and back).

use std::ops::Range;

use burn::backend::flex::FlexTensor;
use burn::tensor::DType;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// An element type of the fused loops' parameters and gradients.
pub(crate) trait Elem: Copy + Send + Sync + 'static {
    /// The slice itself when the elements are f32 (no conversion).
    fn as_f32(x: &[Self]) -> Option<&[f32]>;
    /// The same, writable; else the slice back.
    fn as_f32_mut(x: &mut [Self]) -> Result<&mut [f32], &mut [Self]>;
    /// `dst ← src`, converted (one length).
    fn load(src: &[Self], dst: &mut [f32]);
    /// `dst ← src`, rounded to nearest even (one length).
    fn store(src: &[f32], dst: &mut [Self]);
    /// The contiguous elements of a flex tensor of this type.
    fn slice(tensor: &FlexTensor) -> &[Self];
    /// The same, writable (the buffer copied first if shared).
    fn slice_mut(tensor: &mut FlexTensor) -> &mut [Self];
}

/// The element types the fused loops take.
pub(crate) fn fused_dtype(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

/// `x` as f32: the slice itself, or its elements converted into `scratch` (grown to fit).
#[inline(always)]
pub(super) fn view<'s, E: Elem>(x: &'s [E], scratch: &'s mut Vec<f32>) -> &'s [f32] {
    match E::as_f32(x) {
        Some(x) => x,
        None => {
            let s = fit(scratch, x.len());
            E::load(x, s);
            s
        }
    }
}

/// The first `n` elements of `scratch`, grown to `n` if shorter.
#[inline(always)]
pub(super) fn fit(scratch: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if scratch.len() < n {
        scratch.resize(n, 0.0);
    }
    &mut scratch[..n]
}

/// The elements of a contiguous flex tensor, where its storage holds them.
fn offsets(tensor: &FlexTensor) -> Range<usize> {
    let (start, end) = tensor.layout().contiguous_offsets().expect("contiguous");
    start..end
}

impl Elem for f32 {
    #[inline(always)]
    fn as_f32(x: &[Self]) -> Option<&[f32]> {
        Some(x)
    }
    #[inline(always)]
    fn as_f32_mut(x: &mut [Self]) -> Result<&mut [f32], &mut [Self]> {
        Ok(x)
    }
    #[inline(always)]
    fn load(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    #[inline(always)]
    fn store(src: &[f32], dst: &mut [Self]) {
        dst.copy_from_slice(src);
    }
    fn slice(tensor: &FlexTensor) -> &[Self] {
        tensor.as_slice::<f32>().expect("contiguous f32")
    }
    fn slice_mut(tensor: &mut FlexTensor) -> &mut [Self] {
        let range = offsets(tensor);
        &mut tensor.storage_mut::<f32>()[range]
    }
}

macro_rules! half_elem {
    ($t:ty) => {
        impl Elem for $t {
            #[inline(always)]
            fn as_f32(_: &[Self]) -> Option<&[f32]> {
                None
            }
            #[inline(always)]
            fn as_f32_mut(x: &mut [Self]) -> Result<&mut [f32], &mut [Self]> {
                Err(x)
            }
            #[inline(always)]
            fn load(src: &[Self], dst: &mut [f32]) {
                src.convert_to_f32_slice(dst);
            }
            #[inline(always)]
            fn store(src: &[f32], dst: &mut [Self]) {
                dst.convert_from_f32_slice(src);
            }
            fn slice(tensor: &FlexTensor) -> &[Self] {
                tensor
                    .as_slice::<$t>()
                    .expect("contiguous, of the element type")
            }
            fn slice_mut(tensor: &mut FlexTensor) -> &mut [Self] {
                let range = offsets(tensor);
                &mut tensor.storage_mut::<$t>()[range]
            }
        }
    };
}

half_elem!(f16);
half_elem!(bf16);
