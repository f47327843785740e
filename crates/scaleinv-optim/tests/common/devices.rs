//! The devices the tests run on, and readers of tensor values: one file for the optimizer
//! crate's tests (`crates/scaleinv-optim/tests/common/mod.rs`) and the workspace's
//! (`tests/common/mod.rs`), each including it with `#[path]`.
//!
//! The module that includes it provides `flex_device() -> Option<Device>`: a test crate's
//! `#[cfg(feature = "flex")]` names the features of the package under test, and the optimizer
//! crate's tests have flex through their dev-dependency on Burn whatever its own features.
#![allow(dead_code)]

use burn::tensor::{Device, Int, Tensor};
use scaleinv_optim::ProjectionBranch;

/// Every backend compiled into this test build, by name. `wgpu` is listed only when an
/// adapter answers (Mesa's software Vulkan on machines without a GPU); when
/// `SCALEINV_REQUIRE_WGPU=1`, a missing adapter is a failure rather than a printed notice.
#[allow(clippy::vec_init_then_push)] // which pushes exist depends on the enabled features
pub fn devices() -> Vec<(&'static str, Device)> {
    let mut out = Vec::new();
    if let Some(device) = super::flex_device() {
        out.push(("flex", device));
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    out.push(("ndarray", Device::ndarray()));
    #[cfg(feature = "wgpu")]
    match wgpu_device() {
        Some(device) => out.push(("wgpu", device)),
        None if std::env::var("SCALEINV_REQUIRE_WGPU").as_deref() == Ok("1") => {
            panic!("SCALEINV_REQUIRE_WGPU=1 but wgpu found no adapter")
        }
        None => eprintln!("wgpu: no adapter on this machine; the wgpu runs are not made"),
    }
    assert!(
        !out.is_empty(),
        "no backend compiled in: enable flex, ndarray or wgpu"
    );
    out
}

#[cfg(feature = "wgpu")]
pub fn wgpu_device() -> Option<Device> {
    use std::sync::OnceLock;
    static PROBE: OnceLock<Option<Device>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            std::panic::catch_unwind(|| {
                let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
                let _ = Tensor::<1>::zeros([1], &device).into_data();
                device
            })
            .ok()
        })
        .clone()
}

/// Flat `f32` values of a tensor.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
}

/// Reads back a branch code from [`scaleinv_optim::ScaleInvariance::branch`].
pub fn branch(code: Tensor<1, Int>) -> ProjectionBranch {
    let code = values(code.float())[0] as i64;
    ProjectionBranch::from_code(code).unwrap_or_else(|| panic!("{code} is not a branch code"))
}
