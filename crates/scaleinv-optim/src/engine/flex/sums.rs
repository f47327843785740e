//! Blocked reductions: eight f32 partial sums the compiler keeps in one vector register, over
//! blocks short enough ([`BLOCK`] elements) that f32 loses nothing that matters, each block then
//! added in f64 (a block whose f32 sums overflow is summed again in f64, where no square of an
//! f32 overflows). [`sum`] and [`max_abs_and_squares`] cut a whole tensor into the fixed chunks
//! of [`parallel`](super::parallel) and add the chunks in order: the same bits on any pool.

use super::elem::{Elem, view};
use super::parallel::{Task, chunks_of, run_all};

const LANES: usize = 8;
/// Elements summed in f32 lanes before their total is added in f64.
pub(crate) const BLOCK: usize = 1024;
/// Rows of a last-axis layout summed per channel in f32 before they are added in f64.
const ROW_BLOCK: usize = 128;

/// Eight f32 lanes.
type Lane = [f32; LANES];

/// `a·b` lane by lane.
#[inline(always)]
fn mul(a: Lane, b: Lane) -> Lane {
    std::array::from_fn(|j| a[j] * b[j])
}

/// `f` lane by lane.
#[inline(always)]
fn each(a: Lane, f: impl Fn(f32) -> f32) -> Lane {
    a.map(f)
}

/// `Σ term(a_i, b_i)` over `a` (and `b`, of `a`'s length) in eight f32 lanes, the lanes then
/// added in f64. One sum per loop: several sums in one loop defeat the vectoriser, and a block
/// read again comes from the L1 cache.
#[inline(always)]
fn lanes(a: &[f32], b: &[f32], term: impl Fn(Lane, Lane) -> Lane) -> f64 {
    let mut acc = [0.0f32; LANES];
    let (mut ac, mut bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ac).zip(&mut bc) {
        let (x, y): (Lane, Lane) = (x.try_into().expect("8"), y.try_into().expect("8"));
        for (a, t) in acc.iter_mut().zip(term(x, y)) {
            *a += t;
        }
    }
    let mut out: f64 = acc.iter().map(|&v| f64::from(v)).sum();
    for (&x, &y) in ac.remainder().iter().zip(bc.remainder()) {
        out += f64::from(term([x; LANES], [y; LANES])[0]);
    }
    out
}

/// `Σ f(x_i)` over `x`, blocked.
#[inline(always)]
fn blocked_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    x.chunks(BLOCK)
        .map(|b| lanes(b, b, |x, _| each(x, &f)))
        .sum()
}

/// `Σ h(x_i)²` over `x`, blocked.
#[inline(always)]
pub(crate) fn blocked_squares(x: &[f32], h: impl Fn(f32) -> f32) -> f64 {
    x.chunks(BLOCK).map(|b| block_squares(b, &h)).sum()
}

/// `Σ h(x_i)²` over one block in eight f32 lanes, again in f64 when the f32 sum is not finite
/// (a square beyond f32's range, |x| > 1.8e19, or a non-finite element, which stays so).
#[inline(always)]
fn block_squares(b: &[f32], h: impl Fn(f32) -> f32) -> f64 {
    let s = lanes(b, b, |x, _| {
        let y = each(x, &h);
        mul(y, y)
    });
    if s.is_finite() {
        s
    } else {
        b.iter().map(|&x| f64::from(h(x)).powi(2)).sum()
    }
}

/// `Σ p·u` over two slices of one length, in f64: each product of two f32 is exact in f64,
/// summed in four f64 lanes. A dot product of a weight with an update or a gradient nearly
/// orthogonal to it (the case the projection is for) is a sum of terms that cancel: in f32 its
/// rounding would be of the order of the terms, not of the result, and training runs whose
/// gradients differ by rounding would drift apart through the projection's coefficient.
#[inline(always)]
pub(crate) fn blocked_dot(p: &[f32], u: &[f32]) -> f64 {
    const WIDE: usize = 4;
    let mut acc = [0.0f64; WIDE];
    let (mut pc, mut uc) = (p.chunks_exact(WIDE), u.chunks_exact(WIDE));
    for (x, y) in (&mut pc).zip(&mut uc) {
        for ((a, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *a += f64::from(x) * f64::from(y);
        }
    }
    let tail = pc.remainder().iter().zip(uc.remainder());
    acc.iter().sum::<f64>()
        + tail
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum::<f64>()
}

/// `(Σ p·g, Σ p², Σ g²)`, blocked (`Σ p·g` in f64, see [`blocked_dot`]).
#[inline(always)]
pub(crate) fn blocked_dots(p: &[f32], g: &[f32]) -> (f64, f64, f64) {
    let id = |v: f32| v;
    (
        blocked_dot(p, g),
        blocked_squares(p, id),
        blocked_squares(g, id),
    )
}

/// Per-channel `(Σ p·g, Σ p², Σ g²)` over rows of `channels` elements (a last-axis layout:
/// element `j` of a row is channel `j`), added to `sums`: `Σ p·g` in f64, the squares in f32
/// across the channels over blocks of rows, each block then added in f64 (again in f64 when an
/// f32 sum is not finite).
#[inline(always)]
pub(crate) fn row_dots(p: &[f32], g: &[f32], channels: usize, sums: &mut [Vec<f64>; 3]) {
    let rows = channels * ROW_BLOCK;
    let mut acc = [vec![0.0f32; channels], vec![0.0f32; channels]];
    let [sd, sw, sq] = sums;
    for (pb, gb) in p.chunks(rows).zip(g.chunks(rows)) {
        acc.iter_mut().for_each(|a| a.fill(0.0));
        let [aw, aq] = &mut acc;
        for (pr, gr) in pb.chunks_exact(channels).zip(gb.chunks_exact(channels)) {
            // ⟨p, g⟩ in f64 (see `blocked_dot`), the squares in f32.
            for ((d, &pi), &gi) in sd.iter_mut().zip(pr).zip(gr) {
                *d += f64::from(pi) * f64::from(gi);
            }
            for ((w, q), (&pi, &gi)) in aw.iter_mut().zip(aq.iter_mut()).zip(pr.iter().zip(gr)) {
                *w += pi * pi;
                *q += gi * gi;
            }
        }
        if acc.iter().all(|a| a.iter().all(|x| x.is_finite())) {
            for (total, a) in [&mut *sw, &mut *sq].into_iter().zip(&acc) {
                total
                    .iter_mut()
                    .zip(a)
                    .for_each(|(t, &x)| *t += f64::from(x));
            }
        } else {
            for (pr, gr) in pb.chunks_exact(channels).zip(gb.chunks_exact(channels)) {
                let totals = sw.iter_mut().zip(sq.iter_mut());
                for ((w, q), (&pi, &gi)) in totals.zip(pr.iter().zip(gr)) {
                    let (pi, gi) = (f64::from(pi), f64::from(gi));
                    *w += pi * pi;
                    *q += gi * gi;
                }
            }
        }
    }
}

/// `Σ h(x_i)²` over a whole tensor: blocked within fixed chunks, the chunks added in order.
pub(crate) fn squares<E: Elem>(x: &[E], h: impl Fn(f32) -> f32 + Sync) -> f64 {
    let tasks = chunks_of(x)
        .into_iter()
        .map(|x| Squares { x, h: &h })
        .collect();
    run_all(tasks, x.len()).iter().sum()
}

/// `Σ h(x_i)²` of one chunk.
struct Squares<'a, H, E> {
    x: &'a [E],
    h: &'a H,
}

impl<H: Fn(f32) -> f32 + Sync, E: Elem> Task for Squares<'_, H, E> {
    type Output = f64;
    #[inline(always)]
    fn run(self) -> f64 {
        let mut scratch = Vec::new();
        let blocks = self.x.chunks(BLOCK);
        blocks
            .map(|b| block_squares(view(b, &mut scratch), self.h))
            .sum()
    }
}

/// `(max |x_i|, Σ x_i²)` over a whole tensor in one read: the maximum is exact in any order,
/// the sum blocked within fixed chunks (a block again in f64 when its f32 sum is not finite),
/// the chunks added in order. A NaN element makes the sum NaN.
pub(crate) fn max_abs_and_squares<E: Elem>(x: &[E]) -> (f32, f64) {
    let tasks = chunks_of(x).into_iter().map(MaxAndSquares).collect();
    run_all(tasks, x.len())
        .into_iter()
        .fold((0.0, 0.0), |(m, s), (pm, ps)| (m.max(pm), s + ps))
}

/// `(max |x_i|, Σ x_i²)` of one chunk.
struct MaxAndSquares<'a, E>(&'a [E]);

impl<E: Elem> Task for MaxAndSquares<'_, E> {
    type Output = (f32, f64);
    #[inline(always)]
    fn run(self) -> (f32, f64) {
        let (mut max, mut squares, mut scratch) = (0.0f32, 0.0f64, Vec::new());
        for b in self.0.chunks(BLOCK) {
            let b = view(b, &mut scratch);
            max = max.max(max_abs(b));
            squares += block_squares(b, |v| v);
        }
        (max, squares)
    }
}

/// `max |x_i|` of one block in eight f32 lanes.
#[inline(always)]
fn max_abs(x: &[f32]) -> f32 {
    let mut max = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for lane in &mut chunks {
        for (m, &v) in max.iter_mut().zip(lane) {
            *m = m.max(v.abs());
        }
    }
    let rest = chunks
        .remainder()
        .iter()
        .fold(0.0f32, |a, v| a.max(v.abs()));
    max.iter().fold(rest, |a, &b| a.max(b))
}

/// Whether every element is finite: `x·0` is 0 for a finite `x` and NaN for ±∞ or NaN.
#[inline]
pub(crate) fn finite<E: Elem>(x: &[E]) -> bool {
    let tasks = chunks_of(x).into_iter().map(Finite).collect();
    run_all(tasks, x.len()).into_iter().all(|finite| finite)
}

/// Whether every element of one chunk is finite.
struct Finite<'a, E>(&'a [E]);

impl<E: Elem> Task for Finite<'_, E> {
    type Output = bool;
    #[inline(always)]
    fn run(self) -> bool {
        let mut scratch = Vec::new();
        let mut blocks = self.0.chunks(BLOCK);
        blocks.all(|b| blocked_sum(view(b, &mut scratch), |v| v * 0.0).is_finite())
    }
}
