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
    #[inline(always)]
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
    /// The same, writable; else the slice back.
    #[inline(always)]
    fn as_f32_mut(x: &mut [Self]) -> Result<&mut [f32], &mut [Self]> {
        Err(x)
    }
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
pub(crate) fn view<'s, E: Elem>(x: &'s [E], scratch: &'s mut Vec<f32>) -> &'s [f32] {
    match E::as_f32(x) {
        Some(x) => x,
        None => {
            let s = resized(scratch, x.len());
            E::load(x, s);
            s
        }
    }
}

/// The first `n` elements of `scratch`, grown to `n` if shorter.
#[inline(always)]
pub(crate) fn resized(scratch: &mut Vec<f32>, n: usize) -> &mut [f32] {
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

/// The typed slices of flex for one element type.
macro_rules! flex_slices {
    ($t:ty) => {
        fn slice(tensor: &FlexTensor) -> &[Self] {
            tensor
                .as_slice::<$t>()
                .expect("contiguous, of the element type")
        }
        fn slice_mut(tensor: &mut FlexTensor) -> &mut [Self] {
            let range = offsets(tensor);
            &mut tensor.storage_mut::<$t>()[range]
        }
    };
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
    flex_slices!(f32);
}

impl Elem for f16 {
    #[inline(always)]
    fn load(src: &[Self], dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if f16c::available() {
            // SAFETY: the CPU has AVX and F16C (checked above).
            return unsafe { f16c::load(src, dst) };
        }
        src.convert_to_f32_slice(dst);
    }
    #[inline(always)]
    fn store(src: &[f32], dst: &mut [Self]) {
        #[cfg(target_arch = "x86_64")]
        if f16c::available() {
            // SAFETY: the CPU has AVX and F16C (checked above).
            return unsafe { f16c::store(src, dst) };
        }
        dst.convert_from_f32_slice(src);
    }
    flex_slices!(f16);
}

/// f16 ↔ f32 with F16C, eight elements an instruction over a whole segment (`half`'s slice
/// conversions call a function per eight). Rounded to nearest even, as `f16::from_f32`.
#[cfg(target_arch = "x86_64")]
mod f16c {
    use std::arch::x86_64::{
        __m128i, _MM_FROUND_TO_NEAREST_INT, _mm_loadu_si128, _mm_storeu_si128, _mm256_cvtph_ps,
        _mm256_cvtps_ph, _mm256_loadu_ps, _mm256_storeu_ps,
    };

    use half::f16;
    use half::slice::HalfFloatSliceExt;

    /// Whether the CPU has AVX and F16C (std caches the answer).
    #[inline(always)]
    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("f16c") && std::arch::is_x86_feature_detected!("avx")
    }

    /// `dst ← src` (one length).
    ///
    /// # Safety
    /// The CPU has AVX and F16C.
    #[target_feature(enable = "avx,f16c")]
    pub unsafe fn load(src: &[f16], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len());
        let rest = src.len() - src.len() % 8;
        for (s, d) in src.chunks_exact(8).zip(dst.chunks_exact_mut(8)) {
            // SAFETY: 8 f16 (16 bytes) read and 8 f32 written, within the chunks.
            unsafe {
                let h = _mm_loadu_si128(s.as_ptr().cast::<__m128i>());
                _mm256_storeu_ps(d.as_mut_ptr(), _mm256_cvtph_ps(h));
            }
        }
        src[rest..].convert_to_f32_slice(&mut dst[rest..]);
    }

    /// `dst ← src`, rounded to nearest even (one length).
    ///
    /// # Safety
    /// The CPU has AVX and F16C.
    #[target_feature(enable = "avx,f16c")]
    pub unsafe fn store(src: &[f32], dst: &mut [f16]) {
        assert_eq!(src.len(), dst.len());
        let rest = src.len() - src.len() % 8;
        for (s, d) in src.chunks_exact(8).zip(dst.chunks_exact_mut(8)) {
            // SAFETY: 8 f32 read and 8 f16 (16 bytes) written, within the chunks.
            unsafe {
                let x = _mm256_loadu_ps(s.as_ptr());
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x);
                _mm_storeu_si128(d.as_mut_ptr().cast::<__m128i>(), h);
            }
        }
        dst[rest..].convert_from_f32_slice(&src[rest..]);
    }
}

impl Elem for bf16 {
    /// bf16 is the upper half of an f32.
    #[inline(always)]
    fn load(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_bits(u32::from(s.to_bits()) << 16);
        }
    }
    /// Rounded to nearest even, without branches (the loop vectorises); a NaN stays a quiet
    /// NaN with its upper bits, as `bf16::from_f32` has it.
    #[inline(always)]
    fn store(src: &[f32], dst: &mut [Self]) {
        for (d, s) in dst.iter_mut().zip(src) {
            let x = s.to_bits();
            let rounded = x.wrapping_add(0x7FFF + ((x >> 16) & 1)) >> 16;
            let nan = (x >> 16) | 0x0040;
            let bits = if x & 0x7FFF_FFFF > 0x7F80_0000 {
                nan
            } else {
                rounded
            };
            *d = bf16::from_bits(bits as u16);
        }
    }
    flex_slices!(bf16);
}
