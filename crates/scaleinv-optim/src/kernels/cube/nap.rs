//! NaP's projection of a whole tensor back to its norm `ρ` as CubeCL kernels: three launches
//! and no host read.
//!
//! ```text
//! launch 1, blocks   read p: Σp² per block
//! launch 2, 1 cube   factor = ρ / max(√Σp², ε)
//! launch 3           read p; write p·factor
//! ```

use burn::backend::wgpu::CubeTensor;
use burn::cubecl;
use burn::cubecl::prelude::*;

use super::launch::{Blocks, Launch, contiguous};
use super::reduce::{finish, lane_sum, tree};

/// NaP's floor of the current norm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NapScalars {
    pub epsilon: f32,
}

/// Launch 1: `Σp²` per block.
#[cube(launch)]
fn block_squares<N: Size>(p: &[Vector<f32, N>], partial: &mut [f32], #[comptime] units: usize) {
    let unit = UNIT_POS as usize;
    let stride = CUBE_COUNT * units;
    let mut acc = Vector::new(0.0f32);
    let mut j = CUBE_POS * units + unit;
    while j < p.len() {
        acc += p[j] * p[j];
        j += stride;
    }
    let mut shared = Shared::<[Vector<f32, N>]>::new_slice(units);
    shared[unit] = acc;
    tree::<N>(&mut shared, 1usize, units, true);
    if unit == 0 {
        partial[CUBE_POS] = lane_sum::<N>(shared[0]);
    }
}

/// Launch 2: `ρ / max(‖p‖, ε)`.
#[cube(launch)]
fn norm_factor(
    partial: &[f32],
    blocks: usize,
    radius: &[f32],
    factor: &mut [f32],
    epsilon: f32,
    #[comptime] units: usize,
) {
    let sum = finish(partial, blocks, units, true);
    if UNIT_POS == 0 {
        factor[0] = radius[0] / f32::max(f32::sqrt(sum), epsilon);
    }
}

/// Launch 3: `p · factor`.
#[cube(launch)]
fn scale<N: Size>(p: &[Vector<f32, N>], factor: &[f32], p_out: &mut [Vector<f32, N>]) {
    let i = ABSOLUTE_POS;
    if i < p.len() {
        p_out[i] = p[i] * Vector::new(factor[0]);
    }
}

/// Launches NaP's projection of the contiguous f32 tensor `p` onto the norm held in the
/// one-element `radius`.
pub fn launch(p: CubeTensor, radius: CubeTensor, s: NapScalars) -> CubeTensor {
    let [p, radius] = contiguous([p, radius]);
    let run = Launch::new([&p]);
    let client = run.client();
    let blocks = Blocks::new(client, p.meta.num_elements() / run.vector());
    let factor = client.empty(size_of::<f32>());
    block_squares::launch(
        client,
        blocks.cubes(),
        blocks.dim(),
        run.vector(),
        run.arg(&p),
        blocks.partial(),
        blocks.units,
    );
    norm_factor::launch(
        client,
        CubeCount::new_1d(1),
        blocks.dim(),
        blocks.partial(),
        blocks.count,
        run.floats(&radius.handle, 1),
        run.floats(&factor, 1),
        s.epsilon,
        blocks.units,
    );
    let [p_out] = run.outputs();
    scale::launch(
        client,
        run.count(),
        run.dim(),
        run.vector(),
        run.arg(&p),
        run.floats(&factor, 1),
        run.arg(&p_out),
    );
    p_out
}
