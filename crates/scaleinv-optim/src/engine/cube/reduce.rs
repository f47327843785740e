//! Reductions inside one cube, in a fixed order (the same bits at every run): a tree over the
//! cube's units in shared memory, then the lanes of a vector in order.

use burn::cubecl;
use burn::cubecl::prelude::*;

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

/// The partial results `partial[0..blocks]` combined by one cube: their sum (`sum`) or their
/// maximum.
#[cube]
pub fn finish(
    partial: &[f32],
    blocks: usize,
    #[comptime] units: usize,
    #[comptime] sum: bool,
) -> f32 {
    let unit = UNIT_POS as usize;
    let mut acc = 0.0f32;
    let mut b = unit;
    while b < blocks {
        if sum {
            acc += partial[b];
        } else {
            acc = f32::max(acc, partial[b]);
        }
        b += units;
    }
    let mut shared = Shared::<[Vector<f32, Const<1>>]>::new_slice(units);
    shared[unit] = Vector::new(acc);
    tree::<Const<1>>(&mut shared, 1usize, units, sum);
    shared[0].extract(0usize)
}
