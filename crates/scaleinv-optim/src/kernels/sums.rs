//! Blocked reductions: eight f32 partial sums the compiler keeps in one vector register, over
//! blocks short enough (1,024 elements) that f32 loses nothing that matters, each block then
//! added in f64 (a block whose f32 squares overflow is summed again in f64).

const LANES: usize = 8;
const BLOCK: usize = 1024;

/// `Σ f(x_i)` over `x`, blocked.
#[inline]
pub(super) fn blocked_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0.0f64;
    for block in x.chunks(BLOCK) {
        let mut lanes = [0.0f32; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += f(v);
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
        total += lanes.iter().map(|&l| f64::from(l)).sum::<f64>() + f64::from(tail);
    }
    total
}

/// `(Σ p·g, Σ p², Σ g²)`, blocked.
#[inline]
pub(super) fn blocked_dots(p: &[f32], g: &[f32]) -> (f64, f64, f64) {
    let (mut d, mut w, mut q) = (0.0f64, 0.0f64, 0.0f64);
    for (pb, gb) in p.chunks(BLOCK).zip(g.chunks(BLOCK)) {
        let (mut dl, mut wl, mut ql) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
        let (mut pc, mut gc) = (pb.chunks_exact(LANES), gb.chunks_exact(LANES));
        for (pch, gch) in (&mut pc).zip(&mut gc) {
            for j in 0..LANES {
                dl[j] += pch[j] * gch[j];
                wl[j] += pch[j] * pch[j];
                ql[j] += gch[j] * gch[j];
            }
        }
        let wide = |l: [f32; LANES]| l.iter().map(|&v| f64::from(v)).sum::<f64>();
        let (bd, bw, bq) = (wide(dl), wide(wl), wide(ql));
        if bd.is_finite() && bw.is_finite() && bq.is_finite() {
            d += bd;
            w += bw;
            q += bq;
            let tail = pc.remainder().iter().zip(gc.remainder());
            let (td, tw, tq) = dots_f64(tail);
            d += td;
            w += tw;
            q += tq;
        } else {
            // A square beyond f32's range (|x| > 1.8e19) or a non-finite element: the block
            // again in f64, where only a NaN or ±∞ element stays non-finite.
            let (bd, bw, bq) = dots_f64(pb.iter().zip(gb));
            d += bd;
            w += bw;
            q += bq;
        }
    }
    (d, w, q)
}

/// `(Σ p·g, Σ p², Σ g²)` in f64.
#[inline]
fn dots_f64<'a>(pairs: impl Iterator<Item = (&'a f32, &'a f32)>) -> (f64, f64, f64) {
    let (mut d, mut w, mut q) = (0.0f64, 0.0f64, 0.0f64);
    for (&pi, &gi) in pairs {
        let (pi, gi) = (f64::from(pi), f64::from(gi));
        d += pi * gi;
        w += pi * pi;
        q += gi * gi;
    }
    (d, w, q)
}

/// Whether every element is finite: `x·0` is 0 for a finite `x` and NaN for ±∞ or NaN.
#[inline]
pub(super) fn finite(x: &[f32]) -> bool {
    blocked_sum(x, |v| v * 0.0).is_finite()
}
