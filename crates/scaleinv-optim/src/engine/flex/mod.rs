//! The fused engine of the flex CPU backend: each step as a few tight loops over the raw
//! buffers instead of one pass per tensor operation. It runs rules and knows nothing of any
//! algorithm: [`buffer`] turns flex tensors into slices and back (`Buffer`, `Target`), `elem`
//! reads and writes f16/bf16 a segment at a time in f32, [`parallel`] cuts a tensor into fixed
//! chunks run as tasks on rayon's current pool (with AVX-512 and AVX2 copies, the widest the CPU has), `sums`
//! holds the blocked sums (squares in eight f32 lanes per segment, dot products in f64), and
//! [`passes`] the parameter's write and the plain pass around an optimizer's per-element
//! `Kernel`. The partial sums of the chunks are combined in chunk order, so the bits do not
//! depend on the thread count. The rules' flex forms (`rules::*::flex`) build on these.

pub(crate) mod buffer;
pub(crate) mod elem;
pub(crate) mod parallel;
pub(crate) mod passes;
pub(crate) mod sums;

pub(crate) use buffer::over_elements;
pub(crate) use buffer::{
    Buffer, Fused, Target, accepts, all_finite, norm, on_flex, readable, scalar_on_flex, scaled,
    single_value,
};
