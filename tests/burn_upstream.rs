//! Bugs of Burn itself that this library works around or only meets at its edges, each
//! asserting Burn's behaviour today: when an upgrade fixes one, its test fails, as a reminder
//! to drop the workaround and this test.
//!
//! Each runs alone in this binary, on its own device state, so that the bug cannot leak into
//! other tests.

mod common;

/// Burn 0.22.1's wgpu backend with fusion: once a zero-element tensor has been created (and
/// not read back), the next operation on one-element tensors reads back 0 instead of its value
/// (`[0.25] − 0.01·[0.5]` gives `[0.0]`, not `[0.245]`). This library returns an empty
/// parameter untouched, so it meets the bug only when a model has an empty parameter; Burn's
/// own Adam is hit the same way. No guard here can help: creating the empty tensor (a model's
/// initialisation does) is enough.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_fusion_after_a_zero_element_tensor_reads_back_a_wrong_value() {
    use burn::tensor::{Tensor, TensorData};
    let Some(device) = common::wgpu_device() else {
        eprintln!("wgpu: no adapter; not run");
        return;
    };
    // A lazy zero-element tensor (never read back: a read-back flushes and hides the bug).
    let _empty = Tensor::<1>::zeros([0], &device);
    let a = Tensor::<1>::from_data(TensorData::new(vec![0.25f32], [1]), &device);
    let b = Tensor::<1>::from_data(TensorData::new(vec![0.5f32], [1]), &device);
    let got = common::values(a - b.mul_scalar(0.01));
    eprintln!("[0.25] - 0.01*[0.5] after an empty tensor: {got:?}");
    assert_eq!(
        got,
        vec![0.0],
        "Burn's wgpu fusion now gives {got:?} (0.245 is right): the bug is fixed upstream"
    );
}
