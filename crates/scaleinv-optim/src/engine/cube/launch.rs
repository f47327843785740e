//! What every launch of the CubeCL kernels shares: contiguous f32 inputs, the state written in
//! place when no other tensor shares its buffer, one thread per vector of elements (a strided
//! share of them in a kernel whose cubes run barriers, on a device that runs cubes on host
//! threads), and the device-side non-finite test (per-block flags in scratch from the
//! runtime's pool: no upload, nothing to clear, finished by the kernel that reads them).

use std::sync::OnceLock;

use burn::backend::wgpu::CubeTensor;
use burn::cubecl;
use burn::cubecl::client::Client;
use burn::cubecl::features::Plane;
use burn::cubecl::prelude::*;
use burn::cubecl::server::Handle;
use burn_cubecl::kernel::into_contiguous;

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

/// `tensor` for a kernel that writes it in place: itself when no other tensor shares its buffer
/// (`CubeTensor::can_mut`), else a copy (one launch).
pub fn writable(tensor: CubeTensor) -> CubeTensor {
    if tensor.can_mut() {
        tensor
    } else {
        tensor.copy()
    }
}

/// The geometry of an element-wise launch over contiguous tensors of one shape: one thread
/// per vector of 4, 2 or 1 elements (the widest that divides the element count and every
/// buffer's offset), in cubes of a power of two units ([`units_per_cube`]).
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
        let dim = CubeDim::new_1d(units_per_cube(&like.client, threads) as u32);
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

    /// The same launch as one cube, whose units walk the whole tensor (for a tensor of at
    /// most [`ONE_CUBE`] elements, which its update tests and steps alone).
    pub fn one_cube(self) -> Self {
        self.at_most(1)
    }

    /// The same launch in at most `cubes` cubes, whose units walk the tensor in strides.
    pub fn at_most(self, cubes: usize) -> Self {
        let count = self.vectors().div_ceil(self.units()).clamp(1, cubes);
        Self {
            count: CubeCount::new_1d(count as u32),
            ..self
        }
    }

    /// The same launch in cubes of at most `units` units (a power of two), as many as the
    /// tensor needs.
    pub fn narrowed(self, units: usize) -> Self {
        let dim = CubeDim::new_1d(self.dim.num_elems().min(units as u32));
        let count = cubecl::calculate_cube_count_elemwise(&self.like.client, self.vectors(), dim);
        Self { dim, count, ..self }
    }

    /// The launch for a kernel whose units walk the tensor in strides and whose cubes run
    /// barriers (a cube that tests the gradient or finishes a reduction for itself):
    /// unchanged on a GPU; on host threads ([`on_host_threads`]) cubes of at most
    /// [`HOST_UNITS`] units, each unit walking at least [`HOST_VECTORS`] vectors, so that
    /// the barriers' cost, paid per unit in software, stays a small share of the work.
    pub fn strided_with_barriers(self) -> Self {
        if !on_host_threads(self.client()) {
            return self;
        }
        let narrowed = self.narrowed(HOST_UNITS);
        let cubes = host_cubes(narrowed.vectors(), narrowed.units());
        narrowed.at_most(cubes)
    }

    /// The vectors of the launch: one per thread of the full grid.
    pub fn vectors(&self) -> usize {
        self.elements / self.vector
    }

    /// The elements of the launch's tensors.
    pub fn elements(&self) -> usize {
        self.elements
    }

    pub fn dim(&self) -> CubeDim {
        self.dim
    }

    /// The units of one cube (a power of two: the kernels' in-cube reductions need it).
    pub fn units(&self) -> usize {
        self.dim.num_elems() as usize
    }

    pub fn count(&self) -> CubeCount {
        self.count.clone()
    }

    /// The elements of one thread's vector.
    pub fn vector(&self) -> usize {
        self.vector
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

/// Whether `client`'s device runs a launch's cubes on a few CPU threads (a software adapter
/// such as Mesa's lavapipe; CubeCL gives a CPU adapter no plane operations). There every
/// barrier switches each unit of the cube in software and the cubes run a few at a time, so
/// a kernel whose cubes repeat work for themselves takes narrow cubes, and few.
/// `SCALEINV_CUBE_GEOMETRY=gpu` (or `host`) overrides the answer, read once: CI runs the
/// kernel tests under both geometries on its software adapter.
pub fn on_host_threads(client: &Client) -> bool {
    static FORCED: OnceLock<Option<bool>> = OnceLock::new();
    let forced = FORCED.get_or_init(
        || match std::env::var("SCALEINV_CUBE_GEOMETRY").as_deref() {
            Ok("gpu") => Some(false),
            Ok("host") => Some(true),
            _ => None,
        },
    );
    forced.unwrap_or_else(|| !client.properties().features.plane.contains(Plane::Ops))
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

/// The units of one cube that reduces `vectors` vectors by itself: each unit folds at least
/// `GPU_VECTORS` of them before the cube's tree, or on host threads ([`on_host_threads`]) at
/// least [`HOST_VECTORS`], in at most [`HOST_UNITS`] units.
pub fn reducing_units(client: &Client, vectors: usize) -> usize {
    if on_host_threads(client) {
        units_per_cube(client, vectors.div_ceil(HOST_VECTORS)).min(HOST_UNITS)
    } else {
        units_per_cube(client, vectors.div_ceil(GPU_VECTORS))
    }
}

/// The fewest vectors a unit of a cube that reduces by itself folds on a GPU
/// ([`reducing_units`]).
const GPU_VECTORS: usize = 8;

/// The most units of a cube that runs barriers on host threads
/// ([`Launch::strided_with_barriers`], [`Blocks`]).
pub const HOST_UNITS: usize = 64;

/// The fewest vectors a unit of such a cube walks on host threads.
pub const HOST_VECTORS: usize = 16;

/// On host threads, the cubes of `units` units that share `vectors` vectors, each unit walking
/// at least [`HOST_VECTORS`] of them (at least one cube).
fn host_cubes(vectors: usize, units: usize) -> usize {
    (vectors / (units * HOST_VECTORS)).max(1)
}

/// The most blocks of a reduction that every cube of the next launch finishes for itself.
pub const FEW: usize = 64;

/// The most elements of a tensor whose update runs as one cube that tests the gradient itself
/// (a bias, a norm's scale: one launch where a test by blocks would take two).
pub const ONE_CUBE: usize = 8192;

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
        Self::at_most(client, vectors, 256)
    }

    /// At most [`FEW`] blocks: for a reduction every cube of the next launch finishes for
    /// itself ([`finish_in_cube`](super::reduce::finish_in_cube)).
    pub fn few(client: &Client, vectors: usize) -> Self {
        Self::at_most(client, vectors, FEW)
    }

    /// At most `most` blocks; on host threads ([`on_host_threads`]) blocks of at most
    /// [`HOST_UNITS`] units, each unit reducing at least [`HOST_VECTORS`] vectors.
    fn at_most(client: &Client, vectors: usize, most: usize) -> Self {
        let (units, count) = if on_host_threads(client) {
            let units = units_per_cube(client, vectors).min(HOST_UNITS);
            (units, host_cubes(vectors, units))
        } else {
            let units = units_per_cube(client, vectors);
            (units, vectors.div_ceil(units))
        };
        let count = count.clamp(1, most);
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

/// The test of the contiguous gradient `g` by at most 256 blocks (one launch): the flags, one
/// f32 per block from the runtime's pool (1.0 where the block met NaN or ±∞, else 0.0), and
/// their count.
pub fn non_finite_blocks(run: &Launch, g: &CubeTensor) -> (Handle, usize) {
    let blocks = Blocks::new(run.client(), g.meta.num_elements() / run.vector());
    non_finite_in_blocks::launch(
        run.client(),
        blocks.cubes(),
        blocks.dim(),
        run.vector(),
        run.arg(g),
        blocks.partial(),
        blocks.units,
    );
    (blocks.partial, blocks.count)
}

/// Block `CUBE_POS`'s flag: 1.0 when an element of its strided share of `g` is NaN or ±∞.
#[cube(launch)]
fn non_finite_in_blocks<N: Size>(
    g: &[Vector<f32, N>],
    flags: &mut [f32],
    #[comptime] units: usize,
) {
    let unit = UNIT_POS as usize;
    let stride = CUBE_COUNT * units;
    let mut bad = 0.0f32;
    let mut j = CUBE_POS * units + unit;
    while j < g.len() {
        bad = f32::max(bad, non_finite_in::<N>(g[j]));
        j += stride;
    }
    write_block_flag(bad, flags);
}

/// 1.0 when a lane of `x` is NaN or ±∞, else 0.0.
#[cube]
pub fn non_finite_in<N: Size>(x: Vector<f32, N>) -> f32 {
    let nan = x.is_nan();
    let inf = x.is_inf();
    let mut bad = 0.0f32;
    #[unroll]
    for k in 0..N::value() {
        if nan.extract(k) || inf.extract(k) {
            bad = 1.0f32;
        }
    }
    bad
}

/// Whether any unit of the cube has `bad > 0`, for every unit: one shared word raised by the
/// units that met one (two barriers, no tree). Every unit must call it.
#[cube]
pub fn cube_any(bad: f32) -> bool {
    let raised = Shared::<[Atomic<u32>]>::new_slice(1usize);
    if UNIT_POS == 0 {
        raised[0].store(0u32);
    }
    sync_cube();
    if bad > 0.0f32 {
        raised[0].store(1u32);
    }
    sync_cube();
    raised[0].load() != 0u32
}

/// `flags[CUBE_POS]` ← 1.0 when any unit of the cube has `bad > 0`, else 0.0 ([`cube_any`]).
/// Every unit must call it.
#[cube]
pub fn write_block_flag(bad: f32, flags: &mut [f32]) {
    let any = cube_any(bad);
    if UNIT_POS == 0 {
        flags[CUBE_POS] = select(any, 1.0f32, 0.0f32);
    }
}

/// Whether `g`, stepped by this one cube of `units` units, holds NaN or ±∞: each unit tests
/// its strided share. Every unit must call it.
#[cube]
pub fn non_finite_in_cube<N: Size>(g: &[Vector<f32, N>], #[comptime] units: usize) -> bool {
    let mut bad = 0.0f32;
    let mut j = UNIT_POS as usize;
    while j < g.len() {
        bad = f32::max(bad, non_finite_in::<N>(g[j]));
        j += units;
    }
    cube_any(bad)
}

/// Whether the update skips its step: `g` tested by the update's one cube itself
/// (`tests_itself`, [`non_finite_in_cube`]), or some flag another launch wrote set
/// ([`skipped`]); `false` without a test. Every unit must call it.
#[cube]
pub fn non_finite_test<N: Size>(
    g: &[Vector<f32, N>],
    flags: &[f32],
    count: usize,
    #[comptime] units: usize,
    #[comptime] tested: bool,
    #[comptime] tests_itself: bool,
) -> bool {
    if tests_itself {
        non_finite_in_cube::<N>(g, units)
    } else {
        skipped(flags, count, units, tested)
    }
}

/// Whether the step is skipped: some flag of `flags[0..count]` set, finished by every cube of
/// the update for itself (`units` its units; every unit must call it): each unit reads its
/// share of the flags and raises one shared word, between two barriers (a tree would take one
/// barrier per halving, which a software device pays in full). `false` without a test.
#[cube]
pub fn skipped(
    flags: &[f32],
    count: usize,
    #[comptime] units: usize,
    #[comptime] tested: bool,
) -> bool {
    let mut skip = false;
    if tested {
        let mut bad = 0.0f32;
        let mut b = UNIT_POS as usize;
        while b < count {
            bad = f32::max(bad, flags[b]);
            b += units;
        }
        skip = cube_any(bad);
    }
    skip
}
