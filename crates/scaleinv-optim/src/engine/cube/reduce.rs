//! Reductions inside one cube, in a fixed order (the same bits at every run): a tree over the
//! cube's units in shared memory, then the lanes of a vector in order.

use burn::cubecl;
use burn::cubecl::prelude::*;

use super::launch::FEW;

/// Reduces `rows` rows of `units` values each (row `r` at `acc[r·units..]`, one value per
/// unit, `units` the cube's width, a power of two) to their sums (`sum`) or maxima, left at
/// `acc[r·units]`, in two levels whose barriers the rows share: [`groups`] units each fold a
/// run of consecutive values in order, then unit 0 folds the runs' results in order. Three
/// barriers whatever the width (a halving tree takes one per halving, which a software device
/// pays in full, every unit of the cube switched at each), and the same order at every run.
#[cube]
pub fn tree<N: Size>(
    acc: &mut Shared<[Vector<f32, N>]>,
    #[comptime] rows: usize,
    #[comptime] units: usize,
    #[comptime] sum: bool,
) {
    let runs = comptime!(groups(units).0);
    let run = comptime!(groups(units).1);
    sync_cube();
    let unit = UNIT_POS as usize;
    if unit < runs {
        #[unroll]
        for r in 0..rows {
            let first = r * units + unit * run;
            let folded = fold::<N>(acc, first, 1usize, run, sum);
            acc[first] = folded;
        }
    }
    sync_cube();
    if unit == 0 {
        #[unroll]
        for r in 0..rows {
            let folded = fold::<N>(acc, r * units, run, runs, sum);
            acc[r * units] = folded;
        }
    }
    sync_cube();
}

/// `count` values of `acc` from `first`, `step` apart, combined in order.
#[cube]
fn fold<N: Size>(
    acc: &mut Shared<[Vector<f32, N>]>,
    first: usize,
    step: usize,
    #[comptime] count: usize,
    #[comptime] sum: bool,
) -> Vector<f32, N> {
    let mut a = acc[first];
    for k in 1..count {
        let b = acc[first + k * step];
        if sum {
            a += b;
        } else {
            a = <Vector<f32, N> as FloatOps>::max(a, b);
        }
    }
    a
}

/// The two levels of [`tree`] over `units` values (a power of two): `(runs, run)`, `runs`
/// runs of `run` consecutive values, each about `√units`.
pub fn groups(units: usize) -> (usize, usize) {
    let bits = units.max(1).ilog2();
    let run = 1usize << bits.div_ceil(2);
    (units.max(1) / run, run)
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
