//! Normalize-and-Project: the norms it holds, the tensors it leaves alone, the norm-affine
//! policies, its errors and its diagnostics.

mod common;

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::optim::{
    AdamConfig, AdamWConfig, GradientsParams, LionConfig, ModuleOptimizer, Optimizer, SgdConfig,
};
use burn::tensor::{Device, Tensor, activation::relu};
use scaleinv::{AdamPConfig, ConfigError, NapConfig, NapScope, NormAffine, StepKind, weight_norms};

/// Linear → LayerNorm → ReLU → head: `hidden.weight` is scale-invariant.
#[derive(Module, Debug)]
struct Net {
    hidden: Linear,
    norm: LayerNorm,
    head: Linear,
}

impl Net {
    fn new(device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(6, 8).init(device),
            norm: LayerNormConfig::new(8).init(device),
            head: LinearConfig::new(8, 3).init(device),
        }
    }

    fn loss(&self, x: Tensor<2>) -> Tensor<1> {
        let h = relu(self.norm.forward(self.hidden.forward(x)));
        (self.head.forward(h) - 1.0).square().mean()
    }
}

fn device() -> Device {
    let device = common::cpu_device().autodiff();
    device.seed(3);
    device
}

fn input(step: usize, device: &Device) -> Tensor<2> {
    let values: Vec<f32> = (0..24)
        .map(|i| ((i * 7 + step * 13) % 11) as f32 / 5.0 - 1.0)
        .collect();
    Tensor::from_data(burn::tensor::TensorData::new(values, [4, 6]), device)
}

fn train(mut net: Net, optim: &mut ModuleOptimizer, steps: usize, lr: f64) -> Net {
    let device = net.hidden.weight.val().device();
    for step in 0..steps {
        let grads = GradientsParams::from_grads(net.loss(input(step, &device)).backward(), &net);
        net = optim.step(lr, net, grads);
    }
    net
}

fn norm_of(net: &Net, path: &str) -> f64 {
    weight_norms(net)
        .into_iter()
        .find(|w| w.path == path)
        .unwrap_or_else(|| panic!("no parameter {path}"))
        .norm
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-5 * want.max(1.0),
        "{what}: {got} vs {want}"
    );
}

/// Trains with NaP around `base`: the projected weights keep their initial norms while the
/// free tensors move.
fn assert_norms_held_around<O: Optimizer>(name: &str, base: O) {
    let device = device();
    let init = Net::new(&device);
    let mut optim = NapConfig::new().init_for(base, &init);
    let trained = train(init.clone(), &mut optim, 20, 0.05);
    for path in ["hidden.weight", "head.weight"] {
        assert_close(
            norm_of(&trained, path),
            norm_of(&init, path),
            &format!("{name}: {path}"),
        );
    }
    for path in ["hidden.bias", "norm.gamma", "head.bias"] {
        let (before, after) = (norm_of(&init, path), norm_of(&trained, path));
        assert!(
            (before - after).abs() > 1e-4,
            "{name}: {path} did not move ({before} → {after})"
        );
    }
    let moved =
        common::values(trained.hidden.weight.val()) != common::values(init.hidden.weight.val());
    assert!(moved, "{name}: the projected weight did not move");
}

#[test]
fn projected_weights_keep_their_initial_norm_over_any_base_optimizer() {
    assert_norms_held_around("sgd", SgdConfig::new().build());
    assert_norms_held_around("adam", AdamConfig::new().build());
    assert_norms_held_around("adamw", AdamWConfig::new().build());
    assert_norms_held_around("lion", LionConfig::new().build());
    assert_norms_held_around("adamp", AdamPConfig::new().build());
}

/// Without NaP, the same run lets the weight norm drift: the test above can fail.
#[test]
fn without_projection_the_norm_drifts() {
    let device = device();
    let init = Net::new(&device);
    let mut optim = AdamConfig::new().init();
    let trained = train(init.clone(), &mut optim, 20, 0.05);
    let (before, after) = (
        norm_of(&init, "hidden.weight"),
        norm_of(&trained, "hidden.weight"),
    );
    assert!((before - after).abs() > 1e-3, "{before} → {after}");
}

#[test]
fn row_scope_holds_every_output_unit() {
    let device = device();
    let init = Net::new(&device);
    let mut optim = NapConfig::new()
        .with_scope(NapScope::Row)
        .init_for(AdamConfig::new().build(), &init);
    let trained = train(init.clone(), &mut optim, 10, 0.05);
    // A Linear weight is [d_input, d_output]: output units are columns.
    let column_norms =
        |net: &Net| common::values(net.hidden.weight.val().square().sum_dim(0).sqrt());
    for (got, want) in column_norms(&trained).iter().zip(column_norms(&init)) {
        assert_close(*got as f64, want as f64, "column norm");
    }
}

#[test]
fn projection_runs_every_k_steps() {
    let device = device();
    let init = Net::new(&device);
    let rho = norm_of(&init, "hidden.weight");
    let mut optim = NapConfig::new()
        .with_project_every(3)
        .init_for(AdamConfig::new().build(), &init);
    let mut net = init;
    let mut off_radius = 0;
    for step in 1..=6 {
        net = train(net, &mut optim, 1, 0.05);
        let norm = norm_of(&net, "hidden.weight");
        if step % 3 == 0 {
            assert_close(norm, rho, &format!("step {step}"));
        } else if (norm - rho).abs() > 1e-4 {
            off_radius += 1;
        }
    }
    assert!(
        off_radius > 0,
        "the weight never left its radius between projections"
    );
}

#[test]
fn free_paths_are_left_to_the_base_optimizer() {
    let device = device();
    let init = Net::new(&device);
    let mut optim = NapConfig::new()
        .with_free(vec!["head".into()])
        .init_for(AdamConfig::new().build(), &init);
    let trained = train(init.clone(), &mut optim, 20, 0.05);
    assert_close(
        norm_of(&trained, "hidden.weight"),
        norm_of(&init, "hidden.weight"),
        "hidden",
    );
    let (before, after) = (
        norm_of(&init, "head.weight"),
        norm_of(&trained, "head.weight"),
    );
    assert!((before - after).abs() > 1e-4, "head: {before} → {after}");
}

#[test]
fn joint_affine_projection_restores_sqrt_width_and_keeps_training() {
    let device = device();
    let init = Net::new(&device);
    let config = NapConfig::new().with_norm_affine(NormAffine::ProjectJointly);
    let mut optim = config.init_for(AdamConfig::new().build(), &init);
    let mut net = init;
    for step in 0..10 {
        let grads = GradientsParams::from_grads(net.loss(input(step, &device)).backward(), &net);
        net = config.project_norm_affine(optim.step(0.05, net, grads));
        let gamma = norm_of(&net, "norm.gamma");
        let beta = norm_of(&net, "norm.beta");
        assert_close(
            (gamma * gamma + beta * beta).sqrt(),
            8f64.sqrt(),
            "‖[γ; β]‖",
        );
    }
    // Still trainable: the rescaled γ keeps receiving gradients.
    let grads = GradientsParams::from_grads(net.loss(input(0, &device)).backward(), &net);
    assert!(
        grads.get::<1>(net.norm.gamma.id).is_some(),
        "γ lost its gradient"
    );
    assert!(net.norm.gamma.val().is_require_grad());
}

#[test]
fn other_policies_leave_the_model_to_the_optimizer() {
    let device = device();
    let net = Net::new(&device);
    let before = common::values(net.norm.gamma.val());
    let after = NapConfig::new().project_norm_affine(net.clone());
    assert_eq!(common::values(after.norm.gamma.val()), before);
}

#[test]
fn decay_scale_shrinks_gamma_only() {
    let device = device();
    let init = Net::new(&device);
    let rate = 0.5;
    let config = NapConfig::new().with_norm_affine(NormAffine::DecayScale { rate });
    let mut optim = config.init_for(SgdConfig::new().build(), &init);
    // Zero gradients: the base step does nothing, so only the decay acts.
    let mut grads = GradientsParams::new();
    grads.register(
        init.norm.gamma.id,
        init.norm.gamma.val().zeros_like().inner(),
    );
    let beta = init.norm.beta.as_ref().unwrap();
    grads.register(beta.id, beta.val().zeros_like().inner());
    let lr = 0.1;
    let net = optim.step(lr, init.clone(), grads);
    let gamma = common::values(net.norm.gamma.val());
    for (got, want) in gamma.iter().zip(common::values(init.norm.gamma.val())) {
        assert_close(*got as f64, want as f64 * (1.0 - lr * rate), "γ");
    }
    assert_eq!(
        common::values(net.norm.beta.as_ref().unwrap().val()),
        common::values(beta.val()),
        "β must stay free"
    );
}

/// A weight initialised to zero: `init_for` names it, a bare step panics saying why.
#[derive(Module, Debug)]
struct ZeroNet {
    layer: Linear,
}

fn zero_net(device: &Device) -> ZeroNet {
    let layer: Linear = LinearConfig::new(3, 2)
        .with_initializer(burn::nn::Initializer::Zeros)
        .init(device);
    ZeroNet { layer }
}

#[test]
fn zero_initial_norm_is_an_error_before_training() {
    let device = device();
    let err = NapConfig::new()
        .try_init_for(AdamConfig::new().build(), &zero_net(&device))
        .map(|_| ())
        .expect_err("a zero weight cannot be projected");
    assert!(
        matches!(&err, ConfigError::UnprojectableNorm { path, norm } if path == "layer.weight" && *norm == 0.0),
        "{err}"
    );
    assert!(err.to_string().contains("layer.weight"), "{err}");
    // Freed, the same model trains.
    NapConfig::new()
        .with_free(vec!["layer".into()])
        .try_init_for(AdamConfig::new().build(), &zero_net(&device))
        .expect("a freed zero weight is fine");
}

#[test]
#[should_panic(expected = "cannot be projected")]
fn zero_initial_norm_panics_at_the_first_step() {
    let device = common::cpu_device();
    let nap = NapConfig::new().wrap(AdamConfig::new().build());
    let zeros = Tensor::<2>::zeros([3, 2], &device);
    let _ = nap.step(0.1, zeros.clone(), zeros.ones_like(), None);
}

#[test]
fn effective_learning_rate_follows_the_step_kind() {
    let device = device();
    let net = Net::new(&device);
    let hidden = weight_norms(&net)
        .into_iter()
        .find(|w| w.path == "hidden.weight")
        .unwrap();
    assert_eq!(hidden.owner, "Linear");
    assert_eq!(hidden.rank, 2);
    let rho = hidden.norm;
    assert_close(
        hidden.effective_lr(0.1, StepKind::Sgd),
        0.1 / (rho * rho),
        "sgd",
    );
    assert_close(hidden.effective_lr(0.1, StepKind::Adam), 0.1 / rho, "adam");
}
