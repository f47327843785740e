//! Work split over rayon's current pool, on boundaries that do not depend on the pool.
//!
//! A fused loop cuts its tensor into chunks whose boundaries depend only on the tensor's shape
//! ([`CHUNK`] elements, or whole rows of a last-axis layout), runs one task per chunk, and
//! combines the chunks' partial sums in chunk order. The results are therefore the same bits
//! on any number of threads; only who computes each chunk changes. Small tensors stay on the
//! calling thread ([`PARALLEL_MIN`]), where a task would cost more than it saves.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;

/// Elements per chunk: a multiple of the reductions' block, small enough that a chunk's
/// buffers stay in the core's L2 cache across the passes of one task.
pub(crate) const CHUNK: usize = 1 << 14;

/// Tensors of fewer elements run on the calling thread (a task costs a few microseconds; a
/// chunk's Adam step on one core, some ten).
const PARALLEL_MIN: usize = 2 * CHUNK;

/// `0..len` cut into consecutive ranges of `step` (the last may be shorter; none if
/// `len = 0`).
pub(crate) fn ranges(len: usize, step: usize) -> Vec<Range<usize>> {
    let step = step.max(1);
    (0..len.div_ceil(step))
        .map(|k| k * step..((k + 1) * step).min(len))
        .collect()
}

/// One chunk's work. `run` is always inlined, so that the loops it calls (themselves always
/// inlined) are compiled into [`run_all`]'s wide copies too.
pub(crate) trait Task: Send {
    type Output: Send;
    fn run(self) -> Self::Output;
}

/// Every task, in order of the tasks: in parallel on rayon's current pool when the work covers
/// at least [`PARALLEL_MIN`] elements, else on this thread.
pub(crate) fn run_all<T: Task>(tasks: Vec<T>, elements: usize) -> Vec<T::Output> {
    if elements >= PARALLEL_MIN && tasks.len() > 1 && rayon::current_num_threads() > 1 {
        tasks.into_par_iter().map(wide).collect()
    } else {
        tasks.into_iter().map(wide).collect()
    }
}

/// The widest vectors, in bits, that [`wide`] may use (512 unless lowered by
/// [`limit_vector_width`]).
static WIDEST: AtomicU32 = AtomicU32::new(512);

/// Lowers the widest vectors the fused loops may use to `bits` (128: the baseline x86-64
/// copy; 256: AVX2; 512: AVX-512), for tests and benchmarks that compare them. The bits of
/// every result are the same at any width.
pub(crate) fn limit_vector_width(bits: u32) {
    WIDEST.store(bits, Ordering::Relaxed);
}

/// Runs `task` compiled for the CPU's widest vectors: AVX-512 (sixteen f32 lanes per
/// instruction) or AVX2 (eight) where the CPU has them, else the baseline copy (four). The
/// same IEEE operations in the same order at every width (no fused multiply-add, no
/// reassociation; the reductions keep their own eight lanes): the same bits.
fn wide<T: Task>(task: T) -> T::Output {
    #[cfg(target_arch = "x86_64")]
    {
        let widest = WIDEST.load(Ordering::Relaxed);
        if widest >= 512 && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { with_avx512(task) };
        }
        if widest >= 256 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { with_avx2(task) };
        }
    }
    task.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn with_avx2<T: Task>(task: T) -> T::Output {
    task.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn with_avx512<T: Task>(task: T) -> T::Output {
    task.run()
}

/// `x` cut at `ranges` (consecutive, from 0), one mutable piece per range.
pub(crate) fn split_mut<'a, T>(mut x: &'a mut [T], ranges: &[Range<usize>]) -> Vec<&'a mut [T]> {
    ranges
        .iter()
        .map(|r| {
            let (head, tail) = std::mem::take(&mut x).split_at_mut(r.len());
            x = tail;
            head
        })
        .collect()
}

/// `x` cut into the fixed chunks of a flat tensor ([`CHUNK`] elements).
pub(crate) fn chunks_of<T>(x: &[T]) -> Vec<&[T]> {
    split(x, &ranges(x.len(), CHUNK))
}

/// `x` cut at `ranges` (consecutive, from 0), one piece per range.
pub(crate) fn split<'a, T>(x: &'a [T], ranges: &[Range<usize>]) -> Vec<&'a [T]> {
    ranges.iter().map(|r| &x[r.clone()]).collect()
}

/// Takes the first `n` elements off the front of `x`.
#[inline(always)]
pub(crate) fn take_front<'a, T>(x: &mut &'a [T], n: usize) -> &'a [T] {
    let (head, tail) = x.split_at(n);
    *x = tail;
    head
}

/// Takes the first `n` elements off the front of `x`, mutably.
#[inline(always)]
pub(crate) fn take_front_mut<'a, T>(x: &mut &'a mut [T], n: usize) -> &'a mut [T] {
    let (head, tail) = std::mem::take(x).split_at_mut(n);
    *x = tail;
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_length_in_order() {
        assert_eq!(ranges(10, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(ranges(8, 4), vec![0..4, 4..8]);
        assert!(ranges(0, 4).is_empty());
    }

    #[test]
    fn split_mut_cuts_at_the_ranges() {
        let mut x = [1, 2, 3, 4, 5];
        let parts = split_mut(&mut x, &ranges(5, 2));
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], &mut [5]);
    }
}
