//! Helpers shared by the optimizer crate's tests: the devices ([`devices`], shared with the
//! workspace's tests) and the catalog of optimizers ([`catalog`]).
#![allow(dead_code, unused_imports)]

use burn::tensor::Device;

pub mod catalog;
mod devices;
pub use devices::*;

/// Flex, always: the dev-dependency on Burn enables it, whatever this crate's features. (The
/// crate's own `flex` feature decides whether its fused flex path is compiled in.)
fn flex_device() -> Option<Device> {
    Some(Device::flex())
}

/// The CPU device of these tests: flex.
pub fn cpu_device() -> Device {
    Device::flex()
}
