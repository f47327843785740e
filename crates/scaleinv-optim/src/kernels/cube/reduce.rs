//! Reductions inside one cube, in a fixed order (the same bits at every run): a tree over the
//! cube's units in shared memory, then the lanes of a vector in order.

use burn::cubecl;
use burn::cubecl::prelude::*;

/// The largest value of `acc[0..units]`, left in `acc[0]` (a tree over the cube's units).
#[cube]
pub fn tree_max<N: Size>(acc: &mut Shared<[Vector<f32, N>]>) -> Vector<f32, N> {
    sync_cube();
    let mut active = CUBE_DIM;
    let mut jump = 1;
    while active > 1 {
        active /= 2;
        if UNIT_POS < active {
            let a = acc[(jump * 2 * UNIT_POS) as usize];
            let b = acc[(jump * (2 * UNIT_POS + 1)) as usize];
            acc[(jump * 2 * UNIT_POS) as usize] = <Vector<f32, N> as FloatOps>::max(a, b);
        }
        jump *= 2;
        sync_cube();
    }
    acc[0]
}

/// The sum of `acc[0..units]` in a fixed tree order (the same bits at every run).
#[cube]
pub fn tree_sum<N: Size>(acc: &mut Shared<[Vector<f32, N>]>) -> Vector<f32, N> {
    sync_cube();
    let mut active = CUBE_DIM;
    let mut jump = 1;
    while active > 1 {
        active /= 2;
        if UNIT_POS < active {
            let b = acc[(jump * (2 * UNIT_POS + 1)) as usize];
            acc[(jump * 2 * UNIT_POS) as usize] += b;
        }
        jump *= 2;
        sync_cube();
    }
    acc[0]
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
    if sum {
        tree_sum::<Const<1>>(&mut shared).extract(0usize)
    } else {
        tree_max::<Const<1>>(&mut shared).extract(0usize)
    }
}
