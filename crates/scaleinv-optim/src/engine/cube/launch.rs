//! What every launch of the CubeCL kernels shares: contiguous f32 inputs, fresh outputs of
//! the same shape, one thread per element, and the device-side non-finite flag.

use burn::backend::wgpu::CubeTensor;
use burn::cubecl;
use burn::cubecl::client::Client;
use burn::cubecl::prelude::*;
use burn::cubecl::server::Handle;
use burn::tensor::DType;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;

/// The tensors with contiguous rows (a copy only for a strided view).
pub fn contiguous<const N: usize>(tensors: [CubeTensor; N]) -> [CubeTensor; N] {
    tensors.map(|t| {
        if t.is_contiguous() {
            t
        } else {
            into_contiguous(t)
        }
    })
}

/// The geometry of an element-wise launch over contiguous tensors of one shape: one thread
/// per vector of 4, 2 or 1 elements (the widest that divides the element count and every
/// buffer's offset).
pub struct Launch {
    like: CubeTensor,
    elements: usize,
    vector: usize,
    dim: CubeDim,
    count: CubeCount,
}

impl Launch {
    /// A launch over `tensors` (the first gives the shape, device and client).
    pub fn new<const N: usize>(tensors: [&CubeTensor; N]) -> Self {
        Self::in_runs(tensors, None)
    }

    /// A launch over `tensors` whose vectors never cross a run of `run` elements (`Some`: the
    /// `inner` run of a channel, for a step that reads a coefficient per channel).
    pub fn in_runs<const N: usize>(tensors: [&CubeTensor; N], run: Option<usize>) -> Self {
        let like = tensors[0];
        let elements = like.meta.num_elements();
        let aligned = |vector: usize| {
            let bytes = (vector * size_of::<f32>()) as u64;
            elements.is_multiple_of(vector)
                && run.is_none_or(|run| run.is_multiple_of(vector))
                && tensors
                    .iter()
                    .all(|t| t.handle.offset_start.unwrap_or(0).is_multiple_of(bytes))
        };
        let vector = [4, 2, 1].into_iter().find(|&v| aligned(v)).unwrap_or(1);
        let threads = elements / vector;
        let dim = CubeDim::new(&like.client, threads);
        let count = cubecl::calculate_cube_count_elemwise(&like.client, threads, dim);
        Self {
            like: like.clone(),
            elements,
            vector,
            dim,
            count,
        }
    }

    pub fn client(&self) -> &Client {
        &self.like.client
    }

    pub fn dim(&self) -> CubeDim {
        self.dim
    }

    pub fn count(&self) -> CubeCount {
        self.count.clone()
    }

    /// The elements of one thread's vector.
    pub fn vector(&self) -> usize {
        self.vector
    }

    /// `N` fresh contiguous f32 tensors of the launch's shape.
    pub fn outputs<const N: usize>(&self) -> [CubeTensor; N] {
        core::array::from_fn(|_| {
            empty_device_contiguous_dtype(
                self.like.client.clone(),
                self.like.device.clone(),
                self.like.meta.shape().clone(),
                DType::F32,
            )
        })
    }

    /// `tensor`'s elements as a kernel's slice.
    pub fn arg(&self, tensor: &CubeTensor) -> BufferArg {
        // SAFETY: the tensor is contiguous with the launch's element count (checked by the
        // callers' `fit` and made so by `contiguous`/`outputs`).
        unsafe { BufferArg::from_raw_parts(tensor.handle.clone(), self.elements) }
    }

    /// `len` f32 of `handle` as a kernel's slice.
    pub fn floats(&self, handle: &Handle, len: usize) -> BufferArg {
        // SAFETY: every caller's handle was allocated with at least `len` f32.
        unsafe { BufferArg::from_raw_parts(handle.clone(), len) }
    }
}

/// The units of a cube that reduces `work` values: a power of two, at most 256 (or what the
/// device allows) and at most `work` rounded up, so a small reduction does not pay for idle
/// units at each of its tree's barriers.
pub fn units_per_cube(client: &Client, work: usize) -> usize {
    let most = client
        .properties()
        .hardware
        .max_units_per_cube
        .clamp(1, 256) as usize;
    (1 << most.ilog2()).min(work.max(1).next_power_of_two())
}

/// A reduction by blocks over `vectors` vectors: at most 256 cubes of
/// [`units_per_cube`] units, each reducing a strided share to one partial result in `partial`,
/// which one cube of the same width then finishes.
pub struct Blocks {
    pub units: usize,
    pub count: usize,
    pub partial: Handle,
}

impl Blocks {
    pub fn new(client: &Client, vectors: usize) -> Self {
        let units = units_per_cube(client, vectors);
        let count = vectors.div_ceil(units).clamp(1, 256);
        Self {
            units,
            count,
            partial: client.empty(count * size_of::<f32>()),
        }
    }

    /// The cubes' width.
    pub fn dim(&self) -> CubeDim {
        CubeDim::new_1d(self.units as u32)
    }

    /// The blocks, one cube each.
    pub fn cubes(&self) -> CubeCount {
        CubeCount::new_1d(self.count as u32)
    }

    /// The partial results as a kernel's slice.
    pub fn partial(&self) -> BufferArg {
        // SAFETY: `partial` holds one f32 per block.
        unsafe { BufferArg::from_raw_parts(self.partial.clone(), self.count) }
    }
}

/// A one-element `u32` flag on the device: 1 when the step must be skipped.
pub struct Flag(Handle);

impl Flag {
    pub fn arg(&self) -> BufferArg {
        // SAFETY: the handle holds one u32.
        unsafe { BufferArg::from_raw_parts(self.0.clone(), 1) }
    }
}

/// Sets `flag[0]` to 1 where an element of `g` is NaN or ±∞, one vector of `N` elements per
/// thread (every such thread writes the same value: no atomics needed).
#[cube(launch)]
fn flag_non_finite<N: Size>(g: &[Vector<f32, N>], flag: &mut [u32]) {
    let i = ABSOLUTE_POS;
    if i < g.len() {
        let nan = g[i].is_nan();
        let inf = g[i].is_inf();
        #[unroll]
        for k in 0..N::value() {
            if nan.extract(k) || inf.extract(k) {
                flag[0] = 1u32;
            }
        }
    }
}

/// The skip flag of a step on the contiguous gradient `g`: tested on the device when
/// `skip_non_finite` (one launch), else a constant 0 (no launch).
pub fn flag(g: &CubeTensor, skip_non_finite: bool) -> Flag {
    let flag = Flag(g.client.create_from_slice(&0u32.to_le_bytes()));
    if skip_non_finite {
        let run = Launch::new([g]);
        flag_non_finite::launch(
            run.client(),
            run.count(),
            run.dim(),
            run.vector(),
            run.arg(g),
            flag.arg(),
        );
    }
    flag
}
