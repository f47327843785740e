//! Reductions inside one cube, in a fixed order (the same bits at every run): a tree over the
//! cube's units in shared memory, then the lanes of a vector in order.

use burn::cubecl;
use burn::cubecl::prelude::*;

use super::launch::FEW;

/// Reduces `rows` rows of `units` values each (row `r` at `acc[r·units..]`, one value per
/// unit) to their sums (`sum`) or maxima, left at `acc[r·units]`: one tree over the cube's
/// units whose barriers the rows share.
#[cube]
pub fn tree<N: Size>(
    acc: &mut Shared<[Vector<f32, N>]>,
    #[comptime] rows: usize,
    #[comptime] units: usize,
    #[comptime] sum: bool,
) {
    sync_cube();
    let unit = UNIT_POS as usize;
    let mut active = CUBE_DIM as usize;
    let mut jump = 1usize;
    while active > 1 {
        active /= 2;
        if unit < active {
            let to = jump * 2 * unit;
            let from = to + jump;
            #[unroll]
            for r in 0..rows {
                let a = acc[r * units + to];
                let b = acc[r * units + from];
                if sum {
                    acc[r * units + to] = a + b;
                } else {
                    acc[r * units + to] = <Vector<f32, N> as FloatOps>::max(a, b);
                }
            }
        }
        jump *= 2;
        sync_cube();
    }
}

/// The lanes of `x` added in order.
#[cube]
pub fn lane_sum<N: Size>(x: Vector<f32, N>) -> f32 {
    let mut sum = 0.0f32;
    #[unroll]
    for k in 0..N::value() {
        sum += x.extract(k);
    }
    sum
}

/// The largest lane of `x`.
#[cube]
pub fn lane_max<N: Size>(x: Vector<f32, N>) -> f32 {
    let mut most = x.extract(0usize);
    #[unroll]
    for k in 1..N::value() {
        most = f32::max(most, x.extract(k));
    }
    most
}

/// The partial results `partial[first..first + blocks]` (at most [`FEW`]) combined in index
/// order, for
/// every unit of the cube that calls it (`units` its units; every unit must call it): their
/// sum (`sum`) or their maximum. The units stage the partials in shared memory with one load
/// each, one unit combines them, and the result comes back through shared memory: two
/// barriers. Each cube of a launch finishes a reduction's blocks for itself, all in the same
/// order, so every cube holds the same bits.
#[cube]
pub fn finish_in_cube(
    partial: &[f32],
    first: usize,
    blocks: usize,
    #[comptime] units: usize,
    #[comptime] sum: bool,
) -> f32 {
    let unit = UNIT_POS as usize;
    let mut staged = Shared::<[Vector<f32, Const<1>>]>::new_slice(FEW + 1);
    let mut b = unit;
    while b < blocks {
        staged[b] = Vector::new(partial[first + b]);
        b += units;
    }
    sync_cube();
    if unit == 0 {
        let mut acc = 0.0f32;
        for k in 0..blocks {
            let x = staged[k].extract(0usize);
            if sum {
                acc += x;
            } else {
                acc = f32::max(acc, x);
            }
        }
        staged[FEW] = Vector::new(acc);
    }
    sync_cube();
    staged[FEW].extract(0usize)
}
