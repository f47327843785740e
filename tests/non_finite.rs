//! Non-finite gradients under each policy, for every optimizer of the crate, on every
//! backend: `Skip` (the default) keeps the parameter and the state, `Propagate` lets the NaN
//! through as the references do, and `try_step` refuses the step with an error.

mod common;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer, RecordState, StateSink};
use burn::tensor::{Device, Tensor, TensorData};
use common::catalog::{Entry, OptimizerVisitor, Settings, for_each_optimizer};
use scaleinv::{
    AdamCConfig, AdamPConfig, CheckedStep, GlobalNormClip, GradientStabilizerConfig, NapConfig,
    NonFinitePolicy, RadialProjectionConfig, SgdpConfig, StableSpamConfig, StepError, WidthRole,
    WidthScaledAdamWConfig, non_finite_gradients,
};

const SHAPE: [usize; 2] = [4, 6];

fn tensor(device: &Device, f: impl Fn(usize) -> f32) -> Tensor<2> {
    let values: Vec<f32> = (0..24).map(f).collect();
    Tensor::from_data(TensorData::new(values, SHAPE), device)
}

fn weight(device: &Device) -> Tensor<2> {
    tensor(device, |i| ((i as f32) * 0.61).sin() + 0.2)
}

fn gradient(device: &Device, k: usize) -> Tensor<2> {
    tensor(device, |i| ((i + 3 * k) as f32 * 0.37).cos())
}

/// A gradient with one bad element.
fn poisoned(device: &Device, bad: f32) -> Tensor<2> {
    let g = gradient(device, 9);
    let mut values = common::values(g);
    values[7] = bad;
    Tensor::from_data(TensorData::new(values, SHAPE), device)
}

/// Every tensor of a state, flattened by name, as bit patterns (NaN compares equal to itself).
fn state_bits<S: RecordState>(state: &Option<S>) -> Vec<(String, Vec<u32>)> {
    let mut sink = StateSink::default();
    if let Some(state) = state {
        state.state_flatten("s", &mut sink);
    }
    sink.tensors
        .into_iter()
        .map(|(name, data)| {
            let values = data
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 state");
            (name, values.iter().map(|v| v.to_bits()).collect())
        })
        .collect()
}

fn bits(t: &Tensor<2>) -> Vec<u32> {
    common::values(t.clone())
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

fn all_finite<S: RecordState>(state: &Option<S>) -> bool {
    state_bits(state)
        .iter()
        .all(|(_, v)| v.iter().all(|b| f32::from_bits(*b).is_finite()))
}

/// Two good steps, then a step whose gradient holds `bad`, then a good one.
///
/// Under `Skip`: the bad step returns the parameter bit for bit; an optimizer that owns its
/// state (`owns_state`) returns that too, and a wrapper's inner state stays finite; the next
/// step is finite. A bad gradient at the very first step keeps the initial parameter.
/// Under `Propagate`: the parameter holds a NaN or ∞ after the bad step.
fn policy_cases<O: Optimizer>(
    name: &str,
    skip: &O,
    propagate: &O,
    owns_state: bool,
    device: &Device,
) {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let label = format!("{name}, gradient holding {bad}");
        let mut param = weight(device);
        let mut state = None;
        for k in 0..2 {
            (param, state) = skip.step(1e-2, param, gradient(device, k), state);
        }
        let (before, before_state) = (bits(&param), state_bits(&state));
        let (after, after_state) = skip.step(1e-2, param, poisoned(device, bad), state);
        assert_eq!(bits(&after), before, "{label}: Skip changed the parameter");
        if owns_state {
            assert_eq!(
                state_bits(&after_state),
                before_state,
                "{label}: Skip changed the state"
            );
        } else {
            assert!(
                all_finite(&after_state),
                "{label}: Skip let the NaN into the inner state"
            );
        }
        let (next, next_state) = skip.step(1e-2, after, gradient(device, 5), after_state);
        let next_values = common::values(next.clone());
        assert!(
            next_values.iter().all(|v| v.is_finite()),
            "{label}: next step {next_values:?}"
        );
        assert_ne!(
            bits(&next),
            before,
            "{label}: the step after a skip must move"
        );
        assert!(
            all_finite(&next_state),
            "{label}: state after the next step"
        );

        let first = weight(device);
        let (kept, first_state) = skip.step(1e-2, first.clone(), poisoned(device, bad), None);
        assert_eq!(bits(&kept), bits(&first), "{label}: Skip at the first step");
        assert!(all_finite(&first_state), "{label}: first-step state");

        let mut param = weight(device);
        let mut state = None;
        for k in 0..2 {
            (param, state) = propagate.step(1e-2, param, gradient(device, k), state);
        }
        let (spread, _) = propagate.step(1e-2, param, poisoned(device, bad), state);
        assert!(
            common::values(spread).iter().any(|v| !v.is_finite()),
            "{label}: Propagate should let the non-finite value through"
        );
    }
}

#[test]
fn skip_keeps_parameter_and_state_and_propagate_lets_it_through() {
    use NonFinitePolicy::{Propagate, Skip};
    struct Policies<'a>(&'a str, &'a Device, usize);
    impl OptimizerVisitor for Policies<'_> {
        fn visit<O: Optimizer>(&mut self, entry: &Entry, build: &dyn Fn(Settings) -> O) {
            let (skip, propagate) = (
                build(Settings::non_finite(Skip)),
                build(Settings::non_finite(Propagate)),
            );
            let name = format!("{} on {}", entry.name, self.0);
            policy_cases(&name, &skip, &propagate, entry.owns_state, self.1);
            self.2 += 1;
        }
    }
    for (backend, device) in common::devices() {
        let mut policies = Policies(backend, &device, 0);
        for_each_optimizer(&mut policies);
        assert_eq!(policies.2, common::catalog::names().len());
    }
}

/// A default-built optimizer keeps the parameter when the first gradient holds a NaN.
fn skips_by_default<O: Optimizer>(name: &str, optim: &O) {
    let device = common::cpu_device();
    let first = weight(&device);
    let (kept, _) = optim.step(1e-2, first.clone(), poisoned(&device, f32::NAN), None);
    assert_eq!(bits(&kept), bits(&first), "{name}: the default is not Skip");
}

/// The default of every config is `Skip`, seen through what a default-built optimizer does
/// (the configs' fields are not read: they move between sub-configs).
#[test]
fn skip_is_every_default() {
    assert_eq!(NonFinitePolicy::default(), NonFinitePolicy::Skip);
    let adam = || AdamConfig::new().with_epsilon(1e-8).build();
    skips_by_default("AdamPConfig", &AdamPConfig::new().build());
    skips_by_default("SgdpConfig", &SgdpConfig::new().with_momentum(0.9).build());
    skips_by_default("StableSpamConfig", &StableSpamConfig::new().build());
    let width = WidthScaledAdamWConfig::new(1, 1).build(WidthRole::Matrix);
    skips_by_default("WidthScaledAdamWConfig", &width);
    skips_by_default(
        "RadialProjectionConfig",
        &RadialProjectionConfig::new().wrap(adam()),
    );
    skips_by_default("NapConfig", &NapConfig::new().wrap(adam()));
    skips_by_default("AdamCConfig", &AdamCConfig::new().build(true));
    skips_by_default(
        "GradientStabilizerConfig",
        &GradientStabilizerConfig::new().wrap(adam()),
    );
}

fn linear(device: &Device) -> Linear {
    let ad = device.clone().autodiff();
    ad.seed(3);
    LinearConfig::new(6, 4).init(&ad)
}

fn grads_for(model: &Linear, x: Tensor<2>) -> GradientsParams {
    let loss = model.forward(x).square().mean();
    GradientsParams::from_grads(loss.backward(), model)
}

fn model_bits(model: &Linear) -> Vec<u32> {
    let model = model.clone().valid();
    let mut out = bits(&model.weight.val());
    out.extend(
        common::values(model.bias.as_ref().expect("bias").val())
            .iter()
            .map(|v| v.to_bits()),
    );
    out
}

/// A Linear model after one good AdamP step, its optimizer and the good input.
fn after_a_good_step(device: &Device) -> (Linear, burn::optim::ModuleOptimizer, Tensor<2>) {
    let model = linear(device);
    let mut optim = AdamPConfig::new().init_for(&model);
    let good = Tensor::<2>::ones([3, 6], &device.clone().autodiff());
    let grads = grads_for(&model, good.clone());
    let model = optim.step(1e-2, model, grads);
    (model, optim, good)
}

#[test]
fn try_step_refuses_a_non_finite_gradient_or_a_bad_learning_rate() {
    for (backend, device) in common::devices() {
        let ad = device.clone().autodiff();
        let (model, mut optim, good) = after_a_good_step(&device);
        let record = optim.to_record().into_bytes().expect("record");

        let mut values = vec![0.5f32; 18];
        values[4] = f32::NAN;
        let bad = Tensor::<2>::from_data(TensorData::new(values, [3, 6]), &ad);
        let grads = grads_for(&model, bad);
        let mut paths = non_finite_gradients(&model, &grads);
        paths.sort();
        assert_eq!(paths, ["bias", "weight"], "{backend}");

        let before = model_bits(&model);
        let rejected = optim.try_step(1e-2, model, grads).unwrap_err();
        assert_eq!(
            rejected.error.to_string(),
            "non-finite gradient (NaN or ±inf) for weight, bias: no parameter was updated",
            "{backend}"
        );
        let model = rejected.module;
        assert_eq!(model_bits(&model), before, "{backend}: module changed");
        assert_eq!(
            optim.to_record().into_bytes().expect("record").to_vec(),
            record.to_vec(),
            "{backend}: optimizer state changed"
        );

        for lr in [-1e-3, f64::NAN, f64::INFINITY] {
            let grads = grads_for(&model, good.clone());
            let rejected = optim.try_step(lr, model.clone(), grads).unwrap_err();
            assert!(
                matches!(rejected.error, StepError::InvalidLearningRate { .. }),
                "{backend}: lr {lr}"
            );
        }

        // A good step is the plain step.
        let mut plain = optim.clone();
        let stepped = optim
            .try_step(1e-2, model.clone(), grads_for(&model, good.clone()))
            .expect("finite gradients step");
        let expected = plain.step(1e-2, model.clone(), grads_for(&model, good.clone()));
        assert_eq!(model_bits(&stepped), model_bits(&expected), "{backend}");
    }
}

/// Global-norm clipping with one NaN or ±∞ element makes every gradient NaN, so the default
/// `Skip` skips the whole step: no parameter moves, on every backend (with ±∞, PyTorch's
/// coefficient would be 0 and the other tensors would step on zero gradients).
#[test]
fn a_non_finite_element_under_global_clipping_skips_the_whole_step() {
    for (backend, device) in common::devices() {
        let (model, mut optim, good) = after_a_good_step(&device);
        for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
            let mut grads = grads_for(&model, good.clone().mul_scalar(0.5));
            let weight = grads.remove::<2>(model.weight.id).expect("weight gradient");
            let (shape, inner) = (weight.dims(), weight.device());
            let mut values = common::values(weight);
            values[5] = bad;
            let poisoned = Tensor::<2>::from_data(TensorData::new(values, shape), &inner);
            grads.register(model.weight.id, poisoned);
            let (grads, norm) = GlobalNormClip::new(1.0).clip(&model, grads);
            assert!(!norm.value().is_finite(), "{backend} {bad}");
            let bias = grads.get::<1>(model.bias.as_ref().expect("bias").id);
            let bias = common::values(bias.expect("bias gradient"));
            assert!(bias.iter().all(|g| g.is_nan()), "{backend} {bad}: {bias:?}");
            let before = model_bits(&model);
            let stepped = optim.step(1e-2, model.clone(), grads);
            assert_eq!(
                model_bits(&stepped),
                before,
                "{backend} {bad}: a parameter moved"
            );
        }
    }
}
