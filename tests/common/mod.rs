//! Helpers shared by the integration tests: the devices to run on and the catalog of
//! optimizers, both from the optimizer crate's tests (one copy of each).
#![allow(dead_code, unused_imports)]

use burn::tensor::Device;

#[path = "../../crates/scaleinv-optim/tests/common/devices.rs"]
mod devices;
pub use devices::*;

#[path = "../../crates/scaleinv-optim/tests/common/catalog.rs"]
pub mod catalog;

/// Flex when this build has the `flex` feature.
fn flex_device() -> Option<Device> {
    #[cfg(feature = "flex")]
    return Some(Device::flex());
    #[cfg(not(feature = "flex"))]
    None
}

/// The first CPU device compiled in (flex, else ndarray).
pub use scaleinv::models::device::cpu_device;
