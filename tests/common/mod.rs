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

/// One float parameter of a module, read back: its path, id and values.
pub struct FloatParam {
    pub path: String,
    pub id: burn::module::ParamId,
    pub values: Vec<f32>,
}

impl FloatParam {
    /// A normalization's running statistic (`running_mean`, `running_var`): a buffer, not
    /// a trained weight, updated by each worker from its own batches.
    pub fn is_running_statistic(&self) -> bool {
        self.path
            .rsplit('.')
            .next()
            .is_some_and(|field| field.starts_with("running_"))
    }
}

/// Every float parameter of `module`, in visiting order.
pub fn float_params<M: burn::module::Module>(module: &M) -> Vec<FloatParam> {
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::Tensor;

    #[derive(Default)]
    struct Collect {
        path: Vec<String>,
        params: Vec<FloatParam>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.params.push(FloatParam {
                path: self.path.join("."),
                id: param.id,
                values: values(param.val()),
            });
        }
    }
    let mut collect = Collect::default();
    module.visit(&mut collect);
    collect.params
}
