//! The scale-invariance probe, the optimizers built from it, the projection around any
//! optimizer, and the diagnostics tracker.

mod common;
#[path = "common/known_net.rs"]
mod known_net;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, Optimizer};
use burn::tensor::{Tensor, TensorData};
use known_net::{Known, batch};
use scaleinv::{
    AdamPConfig, DiagnosticsTracker, Invariance, ProbeError, ProjectionBranch, ProjectionView,
    RadialProjectionConfig, ScaleProbe,
};

fn expected(path: &str) -> Invariance {
    match path {
        "conv.weight" => Invariance::Channel,
        "mid.weight" => Invariance::Layer,
        "bn.beta" | "ln.beta" => Invariance::Zero,
        _ => Invariance::None,
    }
}

#[test]
fn the_probe_finds_exactly_the_known_invariances() {
    for (name, device) in common::devices() {
        let device = device.autodiff();
        let model = Known::new(&device);
        let (x, y) = batch(&device);
        let report = ScaleProbe::new()
            .run(&model, |m: &Known| m.loss(x.clone(), y.clone()))
            .unwrap_or_else(|e| panic!("[{name}] {e}"));
        println!("[{name}]\n{report}");

        let paths: Vec<&str> = report.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "conv.weight",
                "bn.gamma",
                "bn.beta",
                "pre.weight",
                "pre.bias",
                "mid.weight",
                "ln.gamma",
                "ln.beta",
                "head.weight",
                "head.bias"
            ],
            "[{name}] trainable parameters only (no running statistics)"
        );
        for e in &report.entries {
            assert_eq!(e.invariance, expected(&e.path), "[{name}] {}", e.path);
            if e.invariance == Invariance::None {
                assert!(e.layer_change > 1e-3, "[{name}] {}: {e:?}", e.path);
            }
        }
        let conv = report.get("conv.weight").unwrap();
        assert_eq!(conv.channel_axis, Some(0));
        assert!(conv.channel_change.unwrap() < 1e-4);
        let mid = report.get("mid.weight").unwrap();
        assert_eq!(
            mid.channel_axis,
            Some(1),
            "Burn's Linear keeps outputs on axis 1"
        );
        assert!(mid.channel_change.unwrap() > 1e-3, "[{name}] {mid:?}");
        // Baseline, 2 per parameter, 2 more per layer-invariant non-zero matrix.
        assert_eq!(report.evaluations, 1 + 2 * 8 + 2 * 2);
        assert_eq!(report.paths(Invariance::Layer), ["mid.weight"]);
        assert!(report.to_csv().lines().count() == 11);
    }
}

#[test]
fn the_probe_leaves_the_running_statistics_as_they_were() {
    let device = common::cpu_device().autodiff();
    let model = Known::new(&device);
    let (x, y) = batch(&device);
    // One training-mode forward moves the running statistics away from their init.
    let _ = model.loss(x.clone(), y.clone());
    let before = common::values(model.bn.running_mean.value_sync());
    ScaleProbe::new()
        .run(&model, |m: &Known| m.loss(x.clone(), y.clone()))
        .unwrap();
    let after = common::values(model.bn.running_mean.value_sync());
    assert_eq!(before, after);
}

#[test]
fn the_probe_reports_a_failing_closure() {
    let device = common::cpu_device().autodiff();
    let model = Known::new(&device);
    let (x, y) = batch(&device);

    let mut calls = 0;
    let err = ScaleProbe::new()
        .run(&model, |m: &Known| {
            calls += 1;
            if calls > 3 {
                panic!("out of memory");
            }
            m.loss(x.clone(), y.clone())
        })
        .unwrap_err();
    assert_eq!(
        err,
        ProbeError::LossFailed {
            path: Some("conv.weight".into()),
            message: "out of memory".into()
        },
        "baseline, conv.weight × 0.5, × 2, then its channel test"
    );
    assert!(
        err.to_string().contains("with `conv.weight` rescaled"),
        "{err}"
    );

    let err = ScaleProbe::new()
        .try_run(&model, |_: &Known| Err::<Tensor<1>, _>("no batch"))
        .unwrap_err();
    assert!(
        matches!(&err, ProbeError::LossFailed { path: None, message } if message == "no batch")
    );

    let err = ScaleProbe::new()
        .run(&model, |m: &Known| m.loss(x.clone(), y.clone()) * f64::NAN)
        .unwrap_err();
    assert!(matches!(err, ProbeError::NonFiniteLoss { path: None, .. }));

    let err = ScaleProbe::new()
        .run(&model, |_: &Known| Tensor::<1>::zeros([2], &device))
        .unwrap_err();
    assert_eq!(err, ProbeError::NotScalar { len: 2 });

    let inference = model.valid();
    let err = ScaleProbe::new()
        .run(&inference, |m: &Known| {
            m.loss(x.clone().inner(), y.clone().inner())
        })
        .unwrap_err();
    assert_eq!(err, ProbeError::NoTrainableParameters);

    for factors in [vec![], vec![1.0], vec![-2.0], vec![f64::NAN]] {
        let err = ScaleProbe::new()
            .with_factors(factors.clone())
            .run(&model, |m: &Known| m.loss(x.clone(), y.clone()))
            .unwrap_err();
        assert!(matches!(err, ProbeError::InvalidSettings(_)), "{factors:?}");
    }
    let err = ScaleProbe::new()
        .with_tolerance(0.0)
        .run(&model, |m: &Known| m.loss(x.clone(), y.clone()))
        .unwrap_err();
    assert!(matches!(err, ProbeError::InvalidSettings(_)));
}

/// Per output channel of a conv weight, `⟨w, Δw⟩ / (‖w‖·‖Δw‖)`.
fn channel_cosines(before: Tensor<4>, after: Tensor<4>) -> Vec<f32> {
    let delta = after - before.clone();
    let dot = (before.clone() * delta.clone())
        .flatten::<2>(1, 3)
        .sum_dim(1);
    let norms = before.square().flatten::<2>(1, 3).sum_dim(1).sqrt()
        * delta.square().flatten::<2>(1, 3).sum_dim(1).sqrt();
    common::values(dot / norms)
}

fn step<M: Module>(model: M, optim: &mut ModuleOptimizer, loss: impl Fn(&M) -> Tensor<1>) -> M {
    let grads = GradientsParams::from_grads(loss(&model).backward(), &model);
    optim.step(1e-2, model, grads)
}

#[test]
fn groups_from_the_probe_project_only_what_it_found() {
    let device = common::cpu_device().autodiff();
    let model = Known::new(&device);
    let (x, y) = batch(&device);
    let loss = |m: &Known| m.loss(x.clone(), y.clone());
    let report = ScaleProbe::new().run(&model, loss).unwrap();
    let adam = || AdamConfig::new().with_epsilon(1e-8);

    let mut probed = RadialProjectionConfig::new()
        .try_init_from_probe(adam().build(), &report)
        .unwrap();
    let mut plain = adam().init();
    let a = step(model.clone(), &mut probed, loss);
    let b = step(model.clone(), &mut plain, loss);

    // Channel view: every output channel's update is orthogonal to it.
    for cos in channel_cosines(model.conv.weight.val(), a.conv.weight.val()) {
        assert!(cos.abs() < 1e-4, "{cos}");
    }
    let plain_cos = channel_cosines(model.conv.weight.val(), b.conv.weight.val());
    assert!(plain_cos.iter().any(|c| c.abs() > 1e-2), "{plain_cos:?}");
    // Layer view: the whole update is orthogonal, single columns are not.
    let w = model.mid.weight.val();
    let d = a.mid.weight.val() - w.clone();
    let cos = common::values(
        (w.clone() * d.clone()).sum() / (w.square().sum().sqrt() * d.square().sum().sqrt()),
    )[0];
    assert!(cos.abs() < 1e-4, "{cos}");
    // Elsewhere the plain update.
    for (p, q) in [
        (a.head.weight.val(), b.head.weight.val()),
        (a.pre.weight.val(), b.pre.weight.val()),
    ] {
        assert_eq!(common::values(p), common::values(q));
    }
}

#[test]
fn a_fixed_view_is_the_detected_one_when_the_test_agrees_and_off_is_the_base() {
    let device = common::cpu_device();
    let param = Tensor::<2>::from_data(
        TensorData::new((0..12).map(|i| (i as f32 * 0.37).sin()).collect(), [4, 3]),
        &device,
    );
    // A gradient orthogonal to every column: the channel test fires (axis 1).
    let raw = Tensor::<2>::from_data(
        TensorData::new((0..12).map(|i| (i as f32 * 1.3).cos()).collect(), [4, 3]),
        &device,
    );
    let coef = (param.clone() * raw.clone()).sum_dim(0) / param.clone().square().sum_dim(0);
    let grad = raw - param.clone() * coef;
    let adam = AdamConfig::new().with_epsilon(1e-8).build();
    let config = RadialProjectionConfig::new()
        .with_channel_axis(1)
        .with_weight_decay(0.1);
    let detect = config.wrap(adam.clone());
    assert_eq!(
        common::branch(detect.scale_invariance().branch(&param, &grad)),
        ProjectionBranch::Channel
    );
    let run = |view| {
        let opt = config.clone().with_view(view).wrap(adam.clone());
        common::values(opt.step(1e-2, param.clone(), grad.clone(), None).0)
    };
    assert_eq!(run(ProjectionView::Detect), run(ProjectionView::Channel));
    assert_ne!(run(ProjectionView::Detect), run(ProjectionView::Layer));
    // Off: the base step plus the full decoupled decay.
    let base = common::values(adam.step(1e-2, param.clone(), grad.clone(), None).0);
    let decayed: Vec<f32> = common::values(param.clone() * (1.0 - 1e-2 * 0.1))
        .iter()
        .zip(common::values(param.clone()))
        .zip(&base)
        .map(|((d, p), b)| d + (b - p))
        .collect();
    for (got, want) in run(ProjectionView::Off).iter().zip(&decayed) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}

#[test]
fn the_projection_config_rejects_bad_values() {
    for (config, field) in [
        (RadialProjectionConfig::new().with_delta(-1.0), "delta"),
        (RadialProjectionConfig::new().with_wd_ratio(1.5), "wd_ratio"),
        (RadialProjectionConfig::new().with_epsilon(0.0), "epsilon"),
        (
            RadialProjectionConfig::new().with_weight_decay(f64::NAN),
            "weight_decay",
        ),
    ] {
        let Err(err) = config.try_wrap(AdamConfig::new().build()) else {
            panic!("{field}: accepted");
        };
        assert!(err.to_string().contains(field), "{err}");
    }
}

#[test]
fn the_tracker_samples_norms_steps_and_projections() {
    let device = common::cpu_device().autodiff();
    let (x, y) = batch(&device);
    let loss = |m: &Known| m.loss(x.clone(), y.clone());
    let mut model = Known::new(&device);
    let mut tracker = DiagnosticsTracker::new(3);
    let mut optim = AdamPConfig::new()
        .with_weight_decay(1e-2)
        .init_observed(&model, tracker.observer());
    let mut last_before = None;
    for s in 0..7 {
        tracker.before_step(s, &model);
        if s == 6 {
            last_before = Some(model.clone());
        }
        model = step(model, &mut optim, loss);
        tracker.after_step(&model);
        if !tracker.is_due(s) {
            assert!(
                tracker.observer().drain().is_empty(),
                "step {s} was not sampled"
            );
        }
    }
    let rows = tracker.rows();
    // Steps 0, 3 and 6; ten trainable parameters each.
    assert_eq!(rows.len(), 30);
    assert!(rows.iter().all(|r| [0, 3, 6].contains(&r.step)));

    let conv = rows
        .iter()
        .find(|r| r.step == 6 && r.path == "conv.weight")
        .unwrap();
    assert_eq!(conv.branch, Some(ProjectionBranch::Channel));
    let fraction = conv.radial_fraction.unwrap();
    assert!(fraction > 0.0 && fraction < 1.0, "{fraction}");
    assert!(conv.sigma_max.unwrap() > 0.0);
    // ‖Δw‖ / ‖w‖ and ‖w‖ as computed by hand.
    let before = last_before.unwrap().conv.weight.val();
    let after = model.conv.weight.val();
    let norm = common::values(after.clone().square().sum().sqrt())[0] as f64;
    let step_size = common::values(
        (after - before.clone()).square().sum().sqrt() / before.square().sum().sqrt(),
    )[0] as f64;
    assert!((conv.norm - norm).abs() < 1e-5 * norm);
    assert!((conv.effective_step.unwrap() - step_size).abs() < 1e-4 * step_size);

    let head = rows
        .iter()
        .find(|r| r.step == 6 && r.path == "head.weight")
        .unwrap();
    assert_eq!(head.branch, Some(ProjectionBranch::None));
    assert_eq!(head.radial_fraction, Some(0.0));
    let bias = rows.iter().find(|r| r.path == "head.bias").unwrap();
    assert_eq!((bias.branch, bias.sigma_max), (None, None));

    let counts = tracker.branch_counts();
    assert_eq!(counts["conv.weight"], [0, 3, 0]);
    assert_eq!(counts.len(), 4, "the four matrices");
    let csv = tracker.to_csv();
    assert_eq!(csv.lines().count(), 31);
    assert!(csv.contains(",conv.weight,Conv2d,4,"), "{csv}");
}

#[test]
fn an_unobserved_optimizer_still_gets_norms_and_step_sizes() {
    let device = common::cpu_device().autodiff();
    let (x, y) = batch(&device);
    let loss = |m: &Known| m.loss(x.clone(), y.clone());
    let mut model = Known::new(&device);
    let mut tracker = DiagnosticsTracker::new(1).with_sigma(None);
    let mut optim = AdamConfig::new().init();
    tracker.before_step(0, &model);
    model = step(model, &mut optim, loss);
    tracker.after_step(&model);
    assert_eq!(tracker.rows().len(), 10);
    for r in tracker.rows() {
        assert!(r.branch.is_none() && r.radial_fraction.is_none() && r.sigma_max.is_none());
        assert!(r.norm.is_finite(), "{r:?}");
        // Undefined for the offsets that start at zero.
        let zero_init = r.path.ends_with("beta");
        assert_eq!(r.effective_step.is_none(), zero_init, "{r:?}");
    }
}

#[test]
fn frozen_parameters_are_not_probed() {
    let device = common::cpu_device().autodiff();
    let mut model = Known::new(&device);
    model.head = model.head.no_grad();
    let (x, y) = batch(&device);
    let report = ScaleProbe::new()
        .run(&model, |m: &Known| m.loss(x.clone(), y.clone()))
        .unwrap();
    assert!(report.get("head.weight").is_none() && report.get("head.bias").is_none());
    assert_eq!(report.entries.len(), 8);
}

/// Three steps of `optim` wrapped in the projection on a `[4, 6]` weight (channel axis 0) whose
/// gradients are orthogonal to each of its rows: every row's update stays orthogonal to the
/// row, and the base optimizer's state advances (the updates differ from step to step).
fn assert_projects_around<O: Optimizer>(name: &str, optim: O) {
    let device = common::cpu_device();
    let wrapped = RadialProjectionConfig::new().wrap(optim);
    let mut param = Tensor::<2>::from_data(
        TensorData::new((0..24).map(|i| (i as f32 * 0.71).sin()).collect(), [4, 6]),
        &device,
    );
    let mut state = None;
    let mut updates = Vec::new();
    for k in 0..3 {
        let raw = Tensor::<2>::from_data(
            TensorData::new(
                (0..24).map(|i| ((i + 7 * k) as f32 * 1.3).cos()).collect(),
                [4, 6],
            ),
            &device,
        );
        let coef = (param.clone() * raw.clone()).sum_dim(1) / param.clone().square().sum_dim(1);
        let grad = raw - param.clone() * coef;
        let (next, next_state) = wrapped.step(1e-2, param.clone(), grad, state);
        let delta = next.clone() - param.clone();
        let cos = (param.clone() * delta.clone()).sum_dim(1)
            / (param.clone().square().sum_dim(1).sqrt() * delta.clone().square().sum_dim(1).sqrt());
        for c in common::values(cos) {
            assert!(c.abs() < 1e-3, "{name}, step {k}: cos {c}");
        }
        updates.push(common::values(delta));
        param = next;
        state = next_state;
    }
    assert_ne!(updates[1], updates[2], "{name}: the base state advances");
}

#[test]
fn the_projection_wraps_any_per_tensor_optimizer() {
    use burn::optim::momentum::MomentumConfig;
    use burn::optim::{LionConfig, SgdConfig};
    assert_projects_around("adam", AdamConfig::new().with_epsilon(1e-8).build());
    assert_projects_around(
        "sgd+momentum",
        SgdConfig::new()
            .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
            .build(),
    );
    assert_projects_around("lion", LionConfig::new().build());
    assert_projects_around("stable-spam", scaleinv::StableSpamConfig::new().build());
}
