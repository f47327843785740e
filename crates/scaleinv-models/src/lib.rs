//! Example models and bundled data for `scaleinv`.
//!
//! - [`digits`]: the UCI 8×8 handwritten digits, embedded (CC BY 4.0).
//! - [`cnn`]: a small convolutional network with BatchNorm for them.
//! - [`device`]: picks a Burn device from a backend name.

#![warn(missing_docs)]

pub mod cnn;
pub mod device;
pub mod digits;
pub mod train;

pub use cnn::{ConvBlock, DigitsCnn, DigitsCnnConfig};
pub use digits::Digits;
