//! Picks a Burn device from a backend name, for the examples' `--device` flag.

use burn::tensor::Device;

/// The backends compiled into this build, by name.
pub fn available_backends() -> Vec<&'static str> {
    let mut names = Vec::new();
    if cfg!(feature = "flex") {
        names.push("flex");
    }
    if cfg!(feature = "ndarray") {
        names.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
    }
    names
}

/// The (non-autodiff) device for `name`: `flex`, `ndarray` or `wgpu`.
///
/// Fails with a message naming the cargo feature when the backend is not compiled in.
pub fn device_from_name(name: &str) -> Result<Device, String> {
    match name {
        #[cfg(feature = "flex")]
        "flex" => Ok(Device::flex()),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Ok(Device::ndarray()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[allow(unreachable_patterns)] // reachable when a backend is not compiled in
        "flex" | "ndarray" | "wgpu" => Err(format!(
            "backend `{name}` is not compiled in: rebuild with `--features {name}` (compiled: {})",
            available_backends().join(", ")
        )),
        _ => Err(format!(
            "unknown backend `{name}`: expected one of flex, ndarray, wgpu (compiled: {})",
            available_backends().join(", ")
        )),
    }
}

/// The first CPU device compiled in (flex, else ndarray).
///
/// # Panics
/// When neither the `flex` nor the `ndarray` feature is enabled.
pub fn cpu_device() -> Device {
    #[cfg(feature = "flex")]
    return Device::flex();
    #[cfg(all(not(feature = "flex"), feature = "ndarray"))]
    #[allow(deprecated)]
    return Device::ndarray();
    #[cfg(not(any(feature = "flex", feature = "ndarray")))]
    panic!("no CPU backend compiled in: enable the flex or ndarray feature")
}
