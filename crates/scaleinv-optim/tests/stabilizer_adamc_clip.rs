//! GradientStabilizer, AdamC and global-norm clipping: what the golden replays do not cover
//! (invalid norms, the largest-seen peak, the layer-type rule and the probe route, overrides,
//! the corrected decay of the other optimizers, and clipping against a hand computation and
//! against Burn's per-tensor clipping).

mod common;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::{Module, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use scaleinv_optim::{
    AdamCConfig, AdamPConfig, ConfigError, GlobalNormClip, GradientStabilizerConfig,
    GradientStabilizerState, Invariance, NonFinitePolicy, ProbeEntry, ProbeReport, SgdpConfig,
    WidthRole, WidthScaledAdamWConfig, clip_grad_norm, global_norm,
};

fn t<const D: usize>(values: &[f32], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

/// Within the golden bound `1e-6 + 1e-4·|want|`: the tensor path's bias correction uses `exp`
/// and `tanh`, which wgpu (and its software adapter) computes to about 1e-5 relative.
fn close(got: &[f32], want: &[f64], label: &str) {
    assert_eq!(got.len(), want.len(), "{label}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 1e-6 + 1e-4 * w.abs(),
            "{label}[{i}]: {g} against {w}"
        );
    }
}

// ---------------------------------------------------------------- GradientStabilizer

/// Plain SGD (no momentum) shows the gradient the wrapper hands on: `p − η·g'`.
fn stabilized_sgd(bias_correction: bool) -> scaleinv_optim::GradientStabilizer<burn::optim::Sgd> {
    GradientStabilizerConfig::new()
        .with_bias_correction(bias_correction)
        .wrap(SgdConfig::new().build())
}

#[test]
fn the_stabilized_gradient_matches_a_hand_computation() {
    for (name, device) in common::devices() {
        let optim = stabilized_sgd(true);
        let (g1, g2) = ([3.0f32, 4.0], [0.0f32, 10.0]); // norms 5 and 10
        let p = t(&[0.0, 0.0], [2], &device);
        let (p, state) = optim.step(1.0, p, t(&g1, [2], &device), None);
        // Step 1: μ̂ = 5, ν̂ = 25: the gradient keeps its norm (5 / (5 + ε)) and direction.
        close(&common::values(p.clone()), &[-0.6 * 5.0 / 5.0, -0.8], name);
        let (p2, _) = optim.step(1.0, p, t(&g2, [2], &device), state);
        let (g1n, g2n) = (5.0f64, 10.0f64);
        let mean = 0.6 * (0.4 * g1n) + 0.4 * g2n;
        let sq = 0.999 * (0.001 * g1n * g1n) + 0.001 * g2n * g2n;
        let (mh, vh) = (mean / (1.0 - 0.36), sq / (1.0 - 0.999f64.powi(2)));
        let target = mh / (vh.sqrt() + 1e-12);
        close(
            &common::values(p2),
            &[-0.6, -0.8 - target],
            &format!("{name}: step 2"),
        );
    }
}

/// The count and both averages of `after` are those of `before`.
fn assert_averages_kept<S: burn::optim::RecordState + Clone>(
    after: &GradientStabilizerState<S>,
    before: &GradientStabilizerState<S>,
    name: &str,
) {
    for (a, b) in [
        (&after.count, &before.count),
        (&after.norm_mean, &before.norm_mean),
        (&after.norm_sq_mean, &before.norm_sq_mean),
    ] {
        assert_eq!(
            common::values(a.clone()),
            common::values(b.clone()),
            "{name}"
        );
    }
}

#[test]
fn an_invalid_norm_passes_the_gradient_and_moves_nothing() {
    for (name, device) in common::devices() {
        let optim = stabilized_sgd(true);
        let p = t(&[1.0, 1.0], [2], &device);
        let (p, state) = optim.step(1.0, p, t(&[3.0, 4.0], [2], &device), None);
        let before = state.clone().expect("a state");
        // A zero gradient: passed as it is, averages and count unchanged.
        let (p, state) = optim.step(1.0, p, t(&[0.0, 0.0], [2], &device), state);
        let after = state.clone().expect("a state");
        assert_averages_kept(&after, &before, name);
        assert_eq!(common::values(after.count), [1.0], "{name}");
        close(&common::values(p.clone()), &[0.4, 0.2], name);
        // A NaN under Propagate reaches the inner optimizer unchanged; the averages stay.
        let propagate = GradientStabilizerConfig::new()
            .with_non_finite(NonFinitePolicy::Propagate)
            .wrap(SgdConfig::new().build());
        let (q, s) = propagate.step(
            1.0,
            p.clone(),
            t(&[f32::NAN, 1.0], [2], &device),
            state.clone(),
        );
        assert!(common::values(q)[0].is_nan(), "{name}: Propagate");
        assert_eq!(common::values(s.expect("state").count), [1.0], "{name}");
        // Under Skip (the default) the parameter is kept, the averages too.
        let (q, s) = optim.step(
            1.0,
            p.clone(),
            t(&[f32::INFINITY, 1.0], [2], &device),
            state,
        );
        assert_eq!(common::values(q), common::values(p), "{name}: Skip");
        assert_eq!(common::values(s.expect("state").count), [1.0], "{name}");
    }
}

/// A finite gradient whose norm squared overflows f32: under `Skip` the step is skipped (the
/// parameter and the averages kept); under `Propagate` it passes as it is, as in the
/// reference. The same on every path (flex reads the norm in f64, the tensor ops sum in f32).
#[test]
fn a_norm_that_overflows_f32_skips_the_step_under_skip() {
    for (name, device) in common::devices() {
        let optim = stabilized_sgd(true);
        let p = t(&[1.0, 1.0], [2], &device);
        let (p, state) = optim.step(1.0, p, t(&[3.0, 4.0], [2], &device), None);
        let before = state.clone().expect("a state");
        let spike = || t(&[1e20, -1e20], [2], &device);
        let (q, s) = optim.step(1.0, p.clone(), spike(), state.clone());
        assert_eq!(common::values(q), common::values(p.clone()), "{name}: Skip");
        assert_averages_kept(&s.expect("a state"), &before, name);
        let propagate = GradientStabilizerConfig::new()
            .with_non_finite(NonFinitePolicy::Propagate)
            .wrap(SgdConfig::new().build());
        let (q, s) = propagate.step(1.0, p.clone(), spike(), state);
        let moved: Vec<f32> = common::values(q)
            .iter()
            .zip(common::values(p))
            .map(|(a, b)| a - b)
            .collect();
        assert_eq!(moved, [-1e20, 1e20], "{name}: Propagate");
        assert_eq!(common::values(s.expect("state").count), [1.0], "{name}");
    }
}

#[test]
fn without_bias_correction_the_averages_are_used_raw() {
    let device = common::cpu_device();
    let optim = stabilized_sgd(false);
    let (p, _) = optim.step(
        1.0,
        t(&[0.0, 0.0], [2], &device),
        t(&[3.0, 4.0], [2], &device),
        None,
    );
    // μ = 0.4·5 = 2, ν = 0.001·25: target 2 / √0.025.
    let target = 2.0 / 0.025f64.sqrt();
    close(&common::values(p), &[-0.6 * target, -0.8 * target], "raw");
}

#[test]
fn gradient_stabilizer_validates_every_field() {
    let sgd = || SgdConfig::new().build();
    let field = |e: ConfigError| match e {
        ConfigError::OutOfRange { field, .. } => field,
        other => panic!("unexpected {other}"),
    };
    let c = GradientStabilizerConfig::new;
    assert_eq!(
        field(c().with_gamma_1(1.0).try_wrap(sgd()).err().unwrap()),
        "gamma_1"
    );
    assert_eq!(
        field(c().with_gamma_2(-0.1).try_wrap(sgd()).err().unwrap()),
        "gamma_2"
    );
    assert_eq!(
        field(c().with_epsilon(0.0).try_init(sgd()).err().unwrap()),
        "epsilon"
    );
    assert_eq!(
        field(c().with_gamma_1(f64::NAN).try_init(sgd()).err().unwrap()),
        "gamma_1"
    );
    assert!(c().with_gamma_1(0.0).try_wrap(sgd()).is_ok());
}

// ---------------------------------------------------------------- AdamC

#[derive(Module, Debug)]
struct Block {
    conv: Conv2d,
    bn: BatchNorm,
    fc: Linear,
    norm: LayerNorm,
    head: Linear,
}

fn block(device: &Device) -> Block {
    Block {
        conv: Conv2dConfig::new([3, 4], [3, 3]).init(device),
        bn: BatchNormConfig::new(4).init(device),
        fc: LinearConfig::new(4, 6).init(device),
        norm: LayerNormConfig::new(6).init(device),
        head: LinearConfig::new(6, 2).init(device),
    }
}

#[test]
fn the_layer_rule_finds_the_weights_that_feed_a_normalization() {
    let model = block(&common::cpu_device());
    let c = AdamCConfig::new();
    assert_eq!(
        c.normalized_paths(&model).unwrap(),
        ["conv.weight", "fc.weight"]
    );
    let c = AdamCConfig::new()
        .with_normalized(vec!["head".into()])
        .with_not_normalized(vec!["conv.weight".into()]);
    assert_eq!(
        c.normalized_paths(&model).unwrap(),
        ["fc.weight", "head.weight", "head.bias"]
    );
    let unknown = AdamCConfig::new().with_normalized(vec!["nowhere".into()]);
    assert_eq!(
        unknown.normalized_paths(&model).unwrap_err(),
        ConfigError::UnknownParameter {
            path: "nowhere".into()
        }
    );
    let both = AdamCConfig::new()
        .with_normalized(vec!["fc".into()])
        .with_not_normalized(vec!["fc".into()]);
    assert!(matches!(
        both.try_init_for(&model),
        Err(ConfigError::Conflict { .. })
    ));
}

fn entry(path: &str, invariance: Invariance) -> ProbeEntry {
    ProbeEntry {
        path: path.into(),
        id: ParamId::new(),
        module_type: "Linear".into(),
        shape: vec![2, 2],
        channel_axis: Some(1),
        invariance,
        layer_change: 0.0,
        channel_change: None,
    }
}

#[test]
fn the_probe_route_takes_the_invariant_weights_and_the_overrides() {
    let report = ProbeReport {
        baseline_loss: 1.0,
        tolerance: 1e-4,
        entries: vec![
            entry("a.weight", Invariance::Layer),
            entry("b.weight", Invariance::Channel),
            entry("c.weight", Invariance::None),
            entry("d.beta", Invariance::Zero),
        ],
        evaluations: 1,
    };
    assert!(AdamCConfig::new().try_init_from_probe(&report).is_ok());
    let err = AdamCConfig::new()
        .with_not_normalized(vec!["e".into()])
        .try_init_from_probe(&report)
        .err()
        .expect("refused");
    assert_eq!(err, ConfigError::UnknownParameter { path: "e".into() });
    let err = AdamCConfig::new()
        .with_peak_lr(Some(0.0))
        .try_init_from_probe(&report)
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            ConfigError::OutOfRange {
                field: "peak_lr",
                ..
            }
        ),
        "{err}"
    );
}

/// One AdamC step from zero moments is `p·(1 − s·λ) − η·sign(g)·(1 − ...)`; comparing a
/// normalized and a plain tensor isolates `s`.
fn decay_only(normalized: bool, peak: Option<f64>, lrs: &[f64], device: &Device) -> Vec<f32> {
    let optim = AdamCConfig::new()
        .with_weight_decay(0.5)
        .with_peak_lr(peak)
        .build(normalized);
    let mut p = t(&[2.0, -4.0], [2], device);
    let mut state = None;
    for &lr in lrs {
        // A zero gradient: the moments stay zero and the update is 0 / ε = 0.
        (p, state) = optim.step(lr, p, t(&[0.0, 0.0], [2], device), state);
    }
    common::values(p)
}

#[test]
fn adamc_decays_normalized_weights_by_the_squared_schedule() {
    for (name, device) in common::devices() {
        let lrs = [0.1, 0.2, 0.05];
        // Plain: Π(1 − η·λ).
        let plain: f64 = lrs.iter().map(|lr| 1.0 - lr * 0.5).product();
        close(
            &decay_only(false, None, &lrs, &device),
            &[2.0 * plain, -4.0 * plain],
            name,
        );
        // Fixed peak 0.2: Π(1 − λ·η²/0.2).
        let fixed: f64 = lrs.iter().map(|lr| 1.0 - 0.5 * lr * lr / 0.2).product();
        close(
            &decay_only(true, Some(0.2), &lrs, &device),
            &[2.0 * fixed, -4.0 * fixed],
            name,
        );
        // Largest seen: 0.1 (s = 0.1), 0.2 (s = 0.2), then 0.05²/0.2.
        let seen: f64 = [0.1, 0.2, 0.05 * 0.05 / 0.2]
            .iter()
            .map(|s| 1.0 - 0.5 * s)
            .product();
        close(
            &decay_only(true, None, &lrs, &device),
            &[2.0 * seen, -4.0 * seen],
            name,
        );
        // While the largest seen is 0, nothing is decayed.
        close(
            &decay_only(true, None, &[0.0, 0.0], &device),
            &[2.0, -4.0],
            name,
        );
    }
}

#[test]
fn adamc_keeps_the_largest_learning_rate_in_its_state() {
    let device = common::cpu_device();
    let optim = AdamCConfig::new().with_weight_decay(0.1).build(true);
    let mut p = t(&[1.0, 2.0], [2], &device);
    let mut state = None;
    for lr in [0.01, 0.03, 0.02] {
        (p, state) = optim.step(lr, p, t(&[0.1, -0.2], [2], &device), state);
    }
    assert_eq!(state.expect("state").peak_lr, 0.03);
}

#[test]
fn corrected_decay_on_the_other_optimizers_follows_the_squared_schedule() {
    let device = common::cpu_device();
    let zero = || t(&[0.0; 4], [2, 2], &device);
    let start = || t(&[1.0, -2.0, 3.0, -4.0], [2, 2], &device);
    let lr = 0.05;
    let factor = 1.0 - 0.4 * lr * lr / 0.1;
    let want: Vec<f64> = [1.0, -2.0, 3.0, -4.0].iter().map(|v| v * factor).collect();
    for fused in [true, false] {
        // δ = 0: the projection (whose wd_ratio would scale the decay) never fires.
        let adamp = AdamPConfig::new()
            .with_weight_decay(0.4)
            .with_corrected_decay(Some(0.1))
            .with_delta(0.0)
            .with_fused(fused)
            .build();
        let (p, _) = adamp.step(lr, start(), zero(), None);
        close(&common::values(p), &want, "AdamP");
        let sgdp = SgdpConfig::new()
            .with_weight_decay(0.4)
            .with_corrected_decay(Some(0.1))
            .with_delta(0.0)
            .with_fused(fused)
            .build();
        let (p, _) = sgdp.step(lr, start(), zero(), None);
        close(&common::values(p), &want, "SGDP");
        let width = WidthScaledAdamWConfig::new(1, 1)
            .with_weight_decay(0.4)
            .with_corrected_decay(Some(0.1))
            .with_fused(fused)
            .build(WidthRole::Matrix);
        let (p, _) = width.step(lr, start(), zero(), None);
        close(&common::values(p), &want, "width-scaled AdamW");
    }
    // Rank 1 keeps the reference's decay.
    let adamp = AdamPConfig::new()
        .with_weight_decay(0.4)
        .with_corrected_decay(Some(0.1))
        .build();
    let (p, _) = adamp.step(
        lr,
        t(&[1.0, 2.0], [2], &device),
        t(&[0.0, 0.0], [2], &device),
        None,
    );
    close(
        &common::values(p),
        &[1.0 - 0.4 * lr, 2.0 * (1.0 - 0.4 * lr)],
        "rank 1",
    );
    let err = AdamPConfig::new()
        .with_corrected_decay(Some(-1.0))
        .try_build()
        .unwrap_err();
    assert!(matches!(
        err,
        ConfigError::OutOfRange {
            field: "corrected_decay",
            ..
        }
    ));
}

// ---------------------------------------------------------------- global-norm clipping

#[derive(Module, Debug)]
struct Two {
    a: Linear,
    b: Linear,
}

fn grads_of(model: &Two, scale: f32, device: &Device) -> GradientsParams {
    let x = Tensor::<2>::ones([2, 3], device).mul_scalar(scale);
    let loss = model.b.forward(model.a.forward(x)).sum();
    GradientsParams::from_grads(loss.backward(), model)
}

fn grad_values(model: &Two, grads: &GradientsParams) -> Vec<f32> {
    let mut out = Vec::new();
    out.extend(common::values(grads.get::<2>(model.a.weight.id).unwrap()));
    out.extend(common::values(
        grads.get::<1>(model.a.bias.as_ref().unwrap().id).unwrap(),
    ));
    out.extend(common::values(grads.get::<2>(model.b.weight.id).unwrap()));
    out.extend(common::values(
        grads.get::<1>(model.b.bias.as_ref().unwrap().id).unwrap(),
    ));
    out
}

#[test]
fn global_clipping_matches_a_hand_computation() {
    let device = Device::flex().autodiff();
    let model = Two {
        a: LinearConfig::new(3, 4).init(&device),
        b: LinearConfig::new(4, 2).init(&device),
    };
    let raw = grad_values(&model, &grads_of(&model, 10.0, &device));
    let total = raw.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    for max_norm in [0.5, 1e9] {
        let (clipped, norm) = clip_grad_norm(&model, grads_of(&model, 10.0, &device), max_norm);
        assert!(
            (norm.value() - total).abs() <= 1e-5 * total,
            "{} vs {total}",
            norm.value()
        );
        let coef = (max_norm / (total + 1e-6)).min(1.0);
        let want: Vec<f64> = raw.iter().map(|&v| v as f64 * coef).collect();
        close(&grad_values(&model, &clipped), &want, "clipped");
    }
    let global = global_norm(&model, &grads_of(&model, 10.0, &device)).expect("gradients");
    assert!((common::values(global)[0] as f64 - total).abs() <= 1e-5 * total);
    assert!(GlobalNormClip::try_new(0.0).is_err());
    assert!(GlobalNormClip::try_new(f64::NAN).is_err());
}

#[derive(Module, Debug)]
struct One {
    w: Linear,
}

#[test]
fn global_clipping_of_one_tensor_is_burns_per_tensor_clipping() {
    let device = Device::flex().autodiff();
    let model = One {
        w: LinearConfig::new(3, 4).with_bias(false).init(&device),
    };
    let grads = || {
        let x = Tensor::<2>::ones([2, 3], &device).mul_scalar(7.0);
        let loss = model.w.forward(x).square().sum();
        GradientsParams::from_grads(loss.backward(), &model)
    };
    let id = model.w.weight.id;
    let max_norm = 0.3;
    let (ours, _) = GlobalNormClip::new(max_norm).clip(&model, grads());
    let burn = GradientClippingConfig::Norm(max_norm as f32).init();
    let theirs = burn.clip_gradient(grads().get::<2>(id).unwrap().inner());
    let ours = common::values(ours.get::<2>(id).unwrap());
    let theirs: Vec<f64> = common::values(Tensor::<2>::from_inner(theirs))
        .into_iter()
        .map(f64::from)
        .collect();
    close(&ours, &theirs, "one tensor");
}
