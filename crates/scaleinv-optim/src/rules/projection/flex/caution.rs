//! timm's cautious AdamP/SGDP on flex buffers (the tensor form is
//! `ScaleInvariance::project_with`): the projection's passes with the mask between them.
//!
//! ```text
//! pass 1  read p, g: per channel ⟨p, g⟩, ‖p‖², ‖g‖² → the non-finite and cosine tests (`stats`)
//!         (none for a tensor the projection does not apply to: one channel, no radial part)
//! pass 2  (a view fired) read g, state, p; write state; ⟨p, u⟩ per channel → c_u
//!         c_g = ⟨p, g⟩ / (‖p‖ + ε)² from pass 1 (0 where no view fired)
//! pass 3  read g, state, p (write the state if pass 2 did not):
//!         u' = u − c_u·p ;  g⊥ = g − c_g·p ;  kept = [u'·g⊥ > 0]
//!         count the kept elements, Σ p·u'·kept per channel
//!         s = 1 / max(count / n, 1e-3) ;  c₂ = s·Σ p·u'·kept / (‖p‖ + ε)²  (0 where none fired)
//! pass 4  read g, state, p; write p ← p·f − η·(s·u'·kept − c₂·p)
//! ```
//!
//! Passes 3 and 4 compute the mask from the same values in the same order, so they agree
//! element by element; the counts and sums are added in chunk order (the same bits on any
//! number of threads). Nothing is written before the non-finite test.

use std::ops::Range;

use super::stats::{Partial, Sums, accumulate, combine, dots, total};
use crate::engine::channels::Channels;
use crate::engine::flex::elem::{Elem, view};
use crate::engine::flex::parallel::{Task, run_all, split, take_front};
use crate::engine::flex::passes::{Frame, Kernel, NewNorm, Outcome, Param, Part};
use crate::engine::flex::sums::{BLOCK, blocked_dot, finite};
use crate::rules::projection::ScaleInvariance;

/// The smallest kept fraction the mask is divided by (timm's clamp).
const MIN_KEPT: f32 = 1e-3;

/// One cautious step (see the module's doc).
pub(super) fn step<K: Kernel, E: Elem>(
    frame: &Frame,
    projection: Option<&ScaleInvariance>,
    dims: &[usize],
    p: Param<'_, E>,
    g: &[E],
    kernel: &mut K,
) -> Outcome {
    let numel = p.len();
    // A tensor that is not projected: one channel whose radial coefficients are 0.
    let Some(projection) = projection else {
        if frame.skip_non_finite && !finite(g) {
            return Outcome::Skipped;
        }
        let channels = Channels::new(&[1, numel], 0);
        let radial = Radial::none(channels);
        return masked(frame, &radial, frame.factor(1.0), p, g, kernel);
    };
    let channels = Channels::new(dims, projection.channel_axis.min(dims.len() - 1));
    let chunks = channels.chunks();
    let sums = Sums::measure(channels, &chunks, p.old(), g);
    if frame.skip_non_finite && !total(&sums.grad_sq).is_finite() {
        return Outcome::Skipped;
    }
    let (channel, layer) = sums.test(projection, channels.numel());
    if !(channel || layer) {
        return masked(
            frame,
            &Radial::none(channels),
            frame.factor(1.0),
            p,
            g,
            kernel,
        );
    }
    let partials = run_all(dots(channels, &chunks, p.old(), kernel), numel);
    let [param_dot_update] = combine(partials, channels.count);
    let radial = Radial {
        channels,
        update: sums.coefficients(projection, channel, &param_dot_update),
        grad: sums.coefficients(projection, channel, &sums.dot),
        advanced: true,
        second: Some((projection, channel, &sums)),
    };
    let factor = frame.factor(projection.wd_ratio as f32);
    masked(frame, &radial, factor, p, g, kernel)
}

/// The radial coefficients of the update and of the gradient per channel (zeros where no
/// view fired), whether pass 2 already wrote the state, and what the second projection needs.
struct Radial<'a> {
    channels: Channels,
    update: Vec<f32>,
    grad: Vec<f32>,
    advanced: bool,
    second: Option<(&'a ScaleInvariance, bool, &'a Sums)>,
}

impl Radial<'_> {
    fn none(channels: Channels) -> Self {
        Self {
            channels,
            update: vec![0.0; channels.count],
            grad: vec![0.0; channels.count],
            advanced: false,
            second: None,
        }
    }
}

/// Passes 3 and 4: the mask's count and the second projection's dots, then the write.
fn masked<K: Kernel, E: Elem>(
    frame: &Frame,
    radial: &Radial<'_>,
    factor: Option<f32>,
    p: Param<'_, E>,
    g: &[E],
    kernel: &mut K,
) -> Outcome {
    let (numel, channels) = (p.len(), radial.channels);
    let chunks = channels.chunks();
    let counted = {
        let parts = split(p.old(), &chunks)
            .into_iter()
            .zip(kernel.parts(&chunks));
        let tasks = chunks.iter().cloned().zip(parts).zip(split(g, &chunks));
        let tasks = tasks.map(|((range, (p, part)), g)| Count {
            range,
            p,
            g,
            part,
            radial,
        });
        run_all(tasks.collect(), numel)
    };
    let kept: f64 = counted.iter().map(|(k, _)| k).sum();
    let [kept_dots] = combine(
        counted.into_iter().map(|(_, d)| d).collect(),
        channels.count,
    );
    let fraction = (kept as f32 / numel as f32).max(MIN_KEPT);
    let scale = 1.0 / fraction;
    let second = match radial.second {
        Some((projection, channel, sums)) => {
            let scaled: Vec<f64> = kept_dots.iter().map(|d| d * f64::from(scale)).collect();
            sums.coefficients(projection, channel, &scaled)
        }
        None => vec![0.0; channels.count],
    };
    let parts = p.split(&chunks).into_iter().zip(kernel.parts(&chunks));
    let tasks = chunks.iter().cloned().zip(parts).zip(split(g, &chunks));
    let tasks = tasks.map(|((range, (p, part)), g)| Write {
        range,
        p,
        g,
        part,
        radial,
        second: &second,
        mask_scale: scale,
        factor,
        scale: frame.scale,
        new_norm: frame.new_norm,
    });
    let squares = run_all(tasks.collect(), numel);
    Outcome::Written(frame.new_norm.total(squares))
}

/// The segment's `u' = u − c_u·p` in `u`, and its mask in `kept` (1 where `u'·g⊥ > 0`,
/// `g⊥ = g − c_g·p`, else 0). The segment starts in channel `c`: in a last-axis layout element
/// `j` is channel `c + j`, otherwise every element is channel `c`.
#[inline(always)]
fn project_and_mask(
    radial: &Radial<'_>,
    c: usize,
    (p, g): (&[f32], &[f32]),
    u: &mut [f32],
    kept: &mut [f32],
) {
    let len = u.len();
    if radial.channels.by_rows() {
        let (cu, cg) = (&radial.update[c..c + len], &radial.grad[c..c + len]);
        let coefs = cu.iter().copied().zip(cg.iter().copied());
        mask_segment(u, (p, g), kept, coefs);
    } else {
        let coefs = std::iter::repeat((radial.update[c], radial.grad[c]));
        mask_segment(u, (p, g), kept, coefs);
    }
}

/// [`project_and_mask`] with each element's `(c_u, c_g)`.
#[inline(always)]
fn mask_segment(
    u: &mut [f32],
    (p, g): (&[f32], &[f32]),
    kept: &mut [f32],
    coefs: impl Iterator<Item = (f32, f32)>,
) {
    let elements = u.iter_mut().zip(p).zip(g).zip(kept);
    for ((((u, &p), &g), kept), (cu, cg)) in elements.zip(coefs) {
        *u -= p * cu;
        let tangent = g - p * cg;
        *kept = if *u * tangent > 0.0 { 1.0 } else { 0.0 };
    }
}

/// The write's `s·u'·kept − c₂·p` in `u`, with each element's `c₂`.
#[inline(always)]
fn second_projection(
    u: &mut [f32],
    p: &[f32],
    kept: &[f32],
    mask_scale: f32,
    second: impl Iterator<Item = f32>,
) {
    // `u·0` as timm's `mul_(mask)`: a NaN update stays NaN under `Propagate`.
    for (((u, &p), &k), c2) in u.iter_mut().zip(p).zip(kept).zip(second) {
        *u = *u * (k * mask_scale) - p * c2;
    }
}

/// Pass 3 over one chunk: the kept count and `Σ p·u'·kept` per channel.
struct Count<'a, 'r, P, E> {
    range: Range<usize>,
    p: &'a [E],
    g: &'a [E],
    part: P,
    radial: &'r Radial<'r>,
}

impl<P: Part, E: Elem> Task for Count<'_, '_, P, E> {
    type Output = (f64, Partial<1>);
    #[inline(always)]
    fn run(self) -> (f64, Partial<1>) {
        let Self {
            range,
            mut p,
            mut g,
            mut part,
            radial,
        } = self;
        let (mut u, mut kept) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
        let (mut sp, mut sg) = (Vec::new(), Vec::new());
        let (mut count, mut partial) = (0.0, Partial::new());
        let by_rows = radial.channels.by_rows();
        let mut row = vec![0.0f64; if by_rows { radial.channels.count } else { 0 }];
        for (c, len) in radial.channels.segments(range) {
            let (u, kept) = (&mut u[..len], &mut kept[..len]);
            if radial.advanced {
                part.update(u);
            } else {
                part.advance(u);
            }
            let p = view(take_front(&mut p, len), &mut sp);
            let g = view(take_front(&mut g, len), &mut sg);
            project_and_mask(radial, c, (p, g), u, kept);
            // `u'·mask` (as timm's `mul_(mask)`: a NaN stays NaN under `Propagate`).
            u.iter_mut().zip(kept.iter()).for_each(|(u, k)| *u *= k);
            count += f64::from(kept.iter().sum::<f32>());
            if by_rows {
                let dots = row[c..c + len].iter_mut().zip(p.iter().zip(u.iter()));
                for (d, (&p, &u)) in dots {
                    *d += f64::from(p) * f64::from(u);
                }
            } else {
                accumulate(&mut partial, c, [blocked_dot(p, u)]);
            }
        }
        partial.extend(row.into_iter().enumerate().map(|(c, d)| (c, [d])));
        (count, partial)
    }
}

/// Pass 4 over one chunk: `p ← p·f − η·(s·u'·kept − c₂·p)`.
struct Write<'a, 'r, P, E> {
    range: Range<usize>,
    p: Param<'a, E>,
    g: &'a [E],
    part: P,
    radial: &'r Radial<'r>,
    second: &'r [f32],
    mask_scale: f32,
    factor: Option<f32>,
    scale: f32,
    new_norm: NewNorm,
}

impl<P: Part, E: Elem> Task for Write<'_, '_, P, E> {
    type Output = f64;
    #[inline(always)]
    fn run(self) -> f64 {
        let Self {
            range,
            mut p,
            mut g,
            mut part,
            radial,
            second,
            mask_scale,
            factor,
            scale,
            new_norm,
        } = self;
        let (mut u, mut kept) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
        let (mut scratch, mut sg) = (Vec::new(), Vec::new());
        let mut squares = 0.0;
        for (c, len) in radial.channels.segments(range) {
            let (u, kept) = (&mut u[..len], &mut kept[..len]);
            part.update(u);
            let p = p.take(len);
            let old = p.old_f32(&mut scratch);
            let g = view(take_front(&mut g, len), &mut sg);
            project_and_mask(radial, c, (old, g), u, kept);
            if radial.channels.by_rows() {
                let run = second[c..c + len].iter().copied();
                second_projection(u, old, kept, mask_scale, run);
            } else {
                second_projection(u, old, kept, mask_scale, std::iter::repeat(second[c]));
            }
            squares += new_norm.of(p.step(u, (factor, scale), &mut scratch, true));
        }
        squares
    }
}
