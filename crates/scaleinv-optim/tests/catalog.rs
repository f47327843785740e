//! The catalog of optimizers (`tests/common/catalog.rs`) is whole: its per-tensor and
//! module-level lists name the same entries in the same order, and every entry builds and
//! takes a finite step.

mod common;

use burn::nn::LinearConfig;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Tensor, TensorData};
use common::catalog::{
    Entry, OptimizerVisitor, Settings, for_each_optimizer, module_optimizers, names,
};

#[test]
fn the_two_lists_name_the_same_entries() {
    let per_tensor = names();
    let modules: Vec<_> = module_optimizers::<burn::nn::Linear>()
        .iter()
        .map(|(entry, _)| entry.name)
        .collect();
    assert_eq!(per_tensor, modules);
    let mut unique = per_tensor.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        per_tensor.len(),
        "duplicate names: {per_tensor:?}"
    );
    assert!(per_tensor.len() >= 7, "{per_tensor:?}");
}

#[test]
fn every_entry_takes_a_finite_step() {
    struct Step(Vec<&'static str>);
    impl OptimizerVisitor for Step {
        fn visit<O: Optimizer>(&mut self, entry: &Entry, build: &dyn Fn(Settings) -> O) {
            let device = common::cpu_device();
            let t = |f: fn(usize) -> f32| {
                let values: Vec<f32> = (0..12).map(f).collect();
                Tensor::<2>::from_data(TensorData::new(values, [3, 4]), &device)
            };
            let param = t(|i| (i as f32 * 0.61).sin() + 0.2);
            let grad = t(|i| (i as f32 * 0.37).cos());
            let (next, state) =
                build(Settings::default()).step(entry.lr, param.clone(), grad, None);
            assert!(state.is_some(), "{}: no state", entry.name);
            let (before, after) = (common::values(param), common::values(next));
            assert!(
                after.iter().all(|v| v.is_finite()),
                "{}: {after:?}",
                entry.name
            );
            assert_ne!(before, after, "{}: the step did not move", entry.name);
            self.0.push(entry.name);
        }
    }
    let mut visitor = Step(Vec::new());
    for_each_optimizer(&mut visitor);
    assert_eq!(visitor.0, names());

    let device = common::cpu_device().autodiff();
    for (entry, init_for) in module_optimizers() {
        let model = LinearConfig::new(4, 3).init(&device);
        let mut optim = init_for(&model);
        let x = Tensor::<2>::ones([2, 4], &device);
        let grads =
            GradientsParams::from_grads(model.forward(x).square().mean().backward(), &model);
        let before = common::values(model.weight.val().inner());
        let model = optim.step(entry.lr, model, grads);
        let after = common::values(model.weight.val().inner());
        assert_ne!(
            before, after,
            "{}: the module step did not move",
            entry.name
        );
    }
}
