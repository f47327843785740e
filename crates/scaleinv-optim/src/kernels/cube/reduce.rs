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
