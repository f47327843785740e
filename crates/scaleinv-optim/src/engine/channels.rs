//! A tensor seen around its channel axis as `[outer, channels, inner]`: the geometry the
//! projection's flex loops and CubeCL kernels both walk (a convolution's output axis gives one
//! contiguous run per channel, a last-axis layout such as Burn's `Linear` one element of each
//! channel per row).

#[cfg(feature = "flex")]
use std::ops::Range;

#[cfg(feature = "flex")]
use super::flex::parallel::{CHUNK, ranges};
#[cfg(feature = "flex")]
use super::flex::sums::BLOCK;

/// The longest channel run the flex loops project in one pass (`projection::flex::runs`): 1 MiB
/// of updates.
#[cfg(feature = "flex")]
const MAX_RUN: usize = 1 << 18;

/// A tensor seen as `[outer, channels, inner]` around its channel axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Channels {
    pub outer: usize,
    pub count: usize,
    pub inner: usize,
}

impl Channels {
    /// The geometry of a tensor of shape `dims` around `axis` (`axis < dims.len()`).
    pub fn new(dims: &[usize], axis: usize) -> Self {
        Self {
            outer: dims[..axis].iter().product(),
            count: dims[axis],
            inner: dims[axis + 1..].iter().product(),
        }
    }

    pub fn numel(self) -> usize {
        self.outer * self.count * self.inner
    }

    /// Whether each channel is one contiguous run, short enough for a scratch buffer in cache
    /// (the channel axis is the first, as in a convolution's kernel).
    #[cfg(feature = "flex")]
    pub fn by_runs(self) -> bool {
        self.outer == 1 && self.inner > 1 && self.inner <= MAX_RUN
    }

    /// Whether each element is its own channel's run (the channel axis is the last, as in
    /// Burn's `Linear`): rows of `count` elements, element `j` of a row in channel `j`.
    #[cfg(feature = "flex")]
    pub fn by_rows(self) -> bool {
        self.inner == 1
    }

    /// The fixed chunks: whole rows in a last-axis layout, [`CHUNK`] elements otherwise.
    #[cfg(feature = "flex")]
    pub fn chunks(self) -> Vec<Range<usize>> {
        let step = if self.by_rows() {
            (CHUNK / self.count).max(1) * self.count
        } else {
            CHUNK
        };
        ranges(self.numel(), step)
    }

    /// Consecutive segments of `range` (at most [`BLOCK`] long), as `(channel, len)`: within
    /// one channel's run, or for a last-axis layout within one row, starting at channel
    /// `channel`.
    #[cfg(feature = "flex")]
    #[inline(always)]
    pub fn segments(self, range: Range<usize>) -> Segments {
        Segments {
            channels: self,
            at: range.start,
            end: range.end,
        }
    }
}

/// The iterator of [`Channels::segments`] (an iterator rather than a callback, so that its loop
/// body is compiled inline into each task).
#[cfg(feature = "flex")]
pub(crate) struct Segments {
    channels: Channels,
    at: usize,
    end: usize,
}

#[cfg(feature = "flex")]
impl Iterator for Segments {
    type Item = (usize, usize);

    #[inline(always)]
    fn next(&mut self) -> Option<(usize, usize)> {
        let (i, ch) = (self.at, self.channels);
        if i >= self.end {
            return None;
        }
        let (channel, run_end) = if ch.by_rows() {
            let c = i % ch.count;
            (c, i - c + ch.count)
        } else {
            let run = i / ch.inner;
            (run % ch.count, (run + 1) * ch.inner)
        };
        let len = (run_end.min(self.end) - i).min(BLOCK);
        self.at += len;
        Some((channel, len))
    }
}
