//! The catalog of optimizers (`tests/common/catalog.rs`) is whole: its per-tensor and
//! module-level lists name the same entries in the same order, and every entry builds and
//! takes a finite step.

mod common;

use burn::module::Param;
use burn::nn::LinearConfig;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{FloatDType, Tensor, TensorData};
use common::catalog::{
    Entry, OptimizerVisitor, Settings, constructors, for_each_optimizer, module_optimizers, names,
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

/// Two `Linear` layers: weights (rank 2, projected) and biases (rank 1, free for NaP).
#[derive(burn::module::Module, Debug)]
struct Net {
    body: burn::nn::Linear,
    head: burn::nn::Linear,
}

fn layer(device: &burn::tensor::Device, seed: usize, dtype: FloatDType) -> burn::nn::Linear {
    let w: Vec<f32> = (0..12)
        .map(|i| ((i + 5 * seed) as f32 * 0.7).sin() + 0.1)
        .collect();
    let b: Vec<f32> = (0..3).map(|i| 0.1 * (i + seed) as f32 - 0.15).collect();
    let weight = Tensor::<2>::from_data(TensorData::new(w, [4, 3]), device).cast(dtype);
    let bias = Tensor::<1>::from_data(TensorData::new(b, [3]), device).cast(dtype);
    burn::nn::Linear {
        weight: Param::from_tensor(weight),
        bias: Some(Param::from_tensor(bias)),
    }
}

fn net(dtype: FloatDType) -> Net {
    let device = common::cpu_device().autodiff();
    Net {
        body: layer(&device, 0, dtype),
        head: layer(&device, 1, dtype),
    }
}

/// Every parameter of `model` with its gradient: `value` where `poison(path)`, else a wave.
fn gradients(model: &Net, poison: impl Fn(&str) -> bool, value: f32) -> GradientsParams {
    let mut grads = GradientsParams::new();
    for (path, linear) in [("body", &model.body), ("head", &model.head)] {
        let w = linear.weight.val().inner();
        let wave = (w.clone() * 3.0).sin() + 0.2;
        let g = if poison(&format!("{path}.weight")) {
            w.ones_like() * value
        } else {
            wave
        };
        grads.register(linear.weight.id, g);
        let bias = linear.bias.as_ref().expect("bias");
        let b = bias.val().inner();
        let g = if poison(&format!("{path}.bias")) {
            b.ones_like() * value
        } else {
            b.ones_like() * 0.3
        };
        grads.register(bias.id, g);
    }
    grads
}

/// The paths of [`bits`]' entries.
const PATHS: [&str; 4] = ["body.weight", "body.bias", "head.weight", "head.bias"];

/// Bits of every parameter (as f32), in the order of [`PATHS`].
fn bits(model: &Net) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for linear in [&model.body, &model.head] {
        let w = linear.weight.val().inner().cast(FloatDType::F32);
        let b = linear.bias.as_ref().expect("bias").val().inner();
        out.push(common::values(w).iter().map(|v| v.to_bits()).collect());
        let b = common::values(b.cast(FloatDType::F32));
        out.push(b.iter().map(|v| v.to_bits()).collect());
    }
    out
}

/// The constructor list covers every entry, in catalog order.
#[test]
fn every_entry_has_its_constructors_listed() {
    let mut listed: Vec<&str> = constructors::<Net>().iter().map(|c| c.0.name).collect();
    listed.dedup();
    assert_eq!(listed, names());
}

/// Through each of its constructors, every optimizer keeps every parameter of a model (free
/// ones included: biases under NaP) bit for bit under a NaN or infinite gradient, at the
/// first step and after one, whether one parameter or all are poisoned.
#[test]
fn every_constructor_skips_non_finite_gradients_on_every_parameter() {
    for (entry, name, init) in constructors::<Net>() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for poisoned in ["body.bias", "head.weight", "all"] {
                let poison = |p: &str| poisoned == "all" || p == poisoned;
                let label = format!("{} {name}: {bad} on {poisoned}", entry.name);
                let model = net(FloatDType::F32);
                let before = bits(&model);
                let mut optim = init(&model);
                let grads = gradients(&model, poison, bad);
                let model = optim.step(entry.lr, model, grads);
                let kept = |a: &[Vec<u32>], b: &[Vec<u32>]| {
                    PATHS
                        .iter()
                        .zip(a.iter().zip(b))
                        .all(|(p, (a, b))| !poison(p) || a == b)
                };
                assert!(kept(&bits(&model), &before), "{label}, first step");
                let grads = gradients(&model, |_| false, 0.0);
                let model = optim.step(entry.lr, model, grads);
                let after_one = bits(&model);
                let grads = gradients(&model, poison, bad);
                let model = optim.step(entry.lr, model, grads);
                assert!(kept(&bits(&model), &after_one), "{label}, after a step");
                for v in bits(&model).iter().flatten() {
                    assert!(f32::from_bits(*v).is_finite(), "{label}");
                }
            }
        }
    }
}

/// Through each of its constructors, every optimizer steps an f16 and a bf16 model (free
/// parameters included), keeps its dtype, saves its record and resumes from it.
#[test]
fn every_constructor_steps_and_resumes_a_half_precision_model() {
    for (entry, name, init) in constructors::<Net>() {
        for dtype in [FloatDType::F16, FloatDType::BF16] {
            half_precision_resume(entry, name, init, dtype);
        }
    }
}

/// Two steps of a `dtype` model, its record saved and loaded through the checked loader, one
/// more step: the dtype kept, every parameter finite, the model moved.
fn half_precision_resume(
    entry: &Entry,
    name: &str,
    init: common::catalog::InitFor<Net>,
    dtype: FloatDType,
) {
    use scaleinv_optim::CheckedLoad;
    let label = format!("{} {name} {dtype:?}", entry.name);
    let mut model = net(dtype);
    let mut optim = init(&model);
    for _ in 0..2 {
        let grads = gradients(&model, |_| false, 0.0);
        model = optim.step(entry.lr, model, grads);
    }
    let mut resumed = init(&model)
        .try_load_record(optim.to_record(), &model)
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let grads = gradients(&model, |_| false, 0.0);
    let before = bits(&model);
    let model = resumed.step(entry.lr, model, grads);
    assert_eq!(
        model.body.bias.as_ref().unwrap().val().dtype(),
        burn::tensor::DType::from(dtype),
        "{label}"
    );
    let after = bits(&model);
    assert_ne!(after, before, "{label}: the resumed step did not move");
    for v in after.iter().flatten() {
        assert!(f32::from_bits(*v).is_finite(), "{label}: {after:?}");
    }
}
