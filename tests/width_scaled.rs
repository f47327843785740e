//! Width-scaled AdamW: the roles it gives a transformer's tensors, the per-role learning rate
//! and decay, that Burn's schedulers multiply every role, and the equivalence with AdamW at the
//! proxy width.

mod common;

use burn::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use scaleinv::models::TinyLmConfig;
use scaleinv::{WidthRole, WidthScaledAdamWConfig};

#[test]
fn transformer_roles_follow_the_width_dimensions() {
    let device = common::cpu_device();
    let model = TinyLmConfig::new(30)
        .with_d_model(32)
        .with_n_heads(2)
        .init(&device);
    let roles = WidthScaledAdamWConfig::new(32, 64).roles(&model);
    let role = |path: &str| {
        roles
            .iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("no parameter {path}"))
            .role
    };
    for matrix in [
        "blocks.0.attn.query.linear.weight",
        "blocks.1.attn.output.linear.weight",
        "blocks.0.mlp.up.linear.weight",
        "blocks.1.mlp.down.linear.weight",
    ] {
        assert_eq!(role(matrix), WidthRole::Matrix, "{matrix}");
    }
    for vector in [
        "token_embedding.weight",
        "position_embedding.weight",
        "head.linear.weight",
        "blocks.0.attn_norm.gamma",
        "norm.beta",
    ] {
        assert_eq!(role(vector), WidthRole::Vector, "{vector}");
    }
    // Both defaults are configurable.
    let roles = WidthScaledAdamWConfig::new(32, 64)
        .with_head_role(WidthRole::Matrix)
        .with_embedding_role(WidthRole::Matrix)
        .roles(&model);
    for path in ["head.linear.weight", "token_embedding.weight"] {
        let r = roles.iter().find(|r| r.path == path).unwrap();
        assert_eq!(r.role, WidthRole::Matrix, "{path}");
    }
}

#[test]
fn learning_rate_and_decay_follow_the_width_multiplier() {
    let c = WidthScaledAdamWConfig::new(64, 256).with_weight_decay(0.1);
    assert_eq!(c.width_multiplier(), 4.0);
    assert_eq!(c.lr_scale(WidthRole::Matrix), 0.25);
    assert!((c.weight_decay_for(WidthRole::Matrix) - 0.2).abs() < 1e-12);
    assert_eq!(c.lr_scale(WidthRole::Vector), 1.0);
    assert_eq!(c.weight_decay_for(WidthRole::Vector), 0.0);
    // The exponent lost in some copies of the paper (λ ∝ d) is one field away.
    let linear = c.clone().with_wd_exponent(1.0);
    assert!((linear.weight_decay_for(WidthRole::Matrix) - 0.4).abs() < 1e-12);
    let built = c.build(WidthRole::Matrix);
    assert_eq!(built.lr_scale(), 0.25);
    assert!((built.weight_decay() - 0.2).abs() < 1e-12);
}

fn linear(device: &Device) -> Linear {
    let weight = Tensor::<2>::from_data(
        TensorData::new((0..12).map(|i| i as f32 / 10.0 - 0.5).collect(), [4, 3]),
        device,
    );
    let bias = Tensor::<1>::from_data(TensorData::new(vec![0.1f32, -0.2, 0.3], [3]), device);
    let mut layer: Linear = LinearConfig::new(4, 3).init(device);
    layer.weight = layer.weight.map(|_| weight.require_grad());
    layer.bias = layer.bias.map(|b| b.map(|_| bias.require_grad()));
    layer
}

fn grads_of(layer: &Linear, device: &Device) -> GradientsParams {
    let x = Tensor::<2>::from_data(
        TensorData::new((0..8).map(|i| (i % 5) as f32 - 2.0).collect(), [2, 4]),
        device,
    );
    // A target away from the outputs keeps every gradient element well away from zero.
    let loss = (layer.forward(x) - 3.0).square().mean();
    GradientsParams::from_grads(loss.backward(), layer)
}

/// The first Adam step moves every coordinate by about its learning rate (`m̂/√v̂ = ±1`): the
/// weight moves by `lr·d₀/d`, the bias by `lr`, both at the rate a Burn scheduler gives.
#[test]
fn burn_schedulers_multiply_every_role() {
    let device = common::cpu_device().autodiff();
    let layer = linear(&device);
    let mut scheduler = LinearLrSchedulerConfig::new(1e-2, 1e-3, 10).init().unwrap();
    let scheduled = scheduler.step();
    let lr = scheduled.base();
    let mut optim = WidthScaledAdamWConfig::new(32, 128)
        .with_weight_decay(0.0)
        .init_for(&layer);
    let stepped = optim.step(scheduled, layer.clone(), grads_of(&layer, &device));
    let moved = |a: Tensor<2>, b: Tensor<2>| common::values((a - b).abs().max());
    let weight_step = moved(stepped.weight.val(), layer.weight.val())[0] as f64;
    let bias = |l: &Linear| l.bias.as_ref().unwrap().val().unsqueeze::<2>();
    let bias_step = moved(bias(&stepped), bias(&layer))[0] as f64;
    assert!(
        (weight_step - lr / 4.0).abs() < 1e-3 * lr,
        "{weight_step} vs {}",
        lr / 4.0
    );
    assert!((bias_step - lr).abs() < 1e-3 * lr, "{bias_step} vs {lr}");
}

/// At the proxy width the matrix-like group is AdamW (PyTorch-style decay), step for step.
#[test]
fn at_the_proxy_width_matrices_follow_adamw() {
    for (name, device) in common::devices() {
        let device = device.autodiff();
        let init = linear(&device);
        let mut ours = WidthScaledAdamWConfig::new(64, 64)
            .with_weight_decay(0.1)
            .init_for(&init);
        let mut burn = AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(0.1)
            .init();
        let (mut a, mut b) = (init.clone(), init);
        for _ in 0..5 {
            a = ours.step(1e-2, a.clone(), grads_of(&a, &device));
            b = burn.step(1e-2, b.clone(), grads_of(&b, &device));
        }
        for (x, y) in common::values(a.weight.val())
            .iter()
            .zip(common::values(b.weight.val()))
        {
            assert!(
                (x - y).abs() <= 1e-6 + 1e-4 * y.abs(),
                "[{name}] {x} vs {y}"
            );
        }
    }
}
