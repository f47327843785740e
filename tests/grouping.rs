//! Parameter groups by scale invariance ([`ScaleGroups`]): which parameter goes where and why,
//! and a grouped step that equals, tensor by tensor, the step of the optimizer each tensor was
//! assigned, under per-group learning rates.

mod common;
#[path = "common/known_net.rs"]
mod known_net;

use burn::grad_clipping::GradientClippingConfig;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::module::ParamGroup;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use known_net::{Known, batch};
use scaleinv::{
    AdamPConfig, ChannelAxisOptimizer, ConfigError, GroupReason, Invariance,
    RadialProjectionConfig, RotationalAdamWConfig, ScaleGroup, ScaleGroups, ScaleProbe, SgdpConfig,
};

const VECTORS: [&str; 6] = [
    "bn.gamma",
    "bn.beta",
    "pre.bias",
    "ln.gamma",
    "ln.beta",
    "head.bias",
];

fn adamw(weight_decay: f32) -> AdamW {
    AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(weight_decay)
        .build()
}

fn adamp(axis: usize) -> scaleinv::AdamP {
    AdamPConfig::new()
        .with_weight_decay(0.1)
        .with_channel_axis(axis)
        .build()
}

/// Every parameter of `model`, by field, read back.
fn weights(model: &Known) -> Vec<(&'static str, Vec<f32>)> {
    vec![
        ("conv.weight", common::values(model.conv.weight.val())),
        ("bn.gamma", common::values(model.bn.gamma.val())),
        ("bn.beta", common::values(model.bn.beta.val())),
        ("pre.weight", common::values(model.pre.weight.val())),
        (
            "pre.bias",
            common::values(model.pre.bias.as_ref().unwrap().val()),
        ),
        ("mid.weight", common::values(model.mid.weight.val())),
        ("ln.gamma", common::values(model.ln.gamma.val())),
        (
            "ln.beta",
            common::values(model.ln.beta.as_ref().unwrap().val()),
        ),
        ("head.weight", common::values(model.head.weight.val())),
        (
            "head.bias",
            common::values(model.head.bias.as_ref().unwrap().val()),
        ),
    ]
}

/// `steps` steps of `optim` under `lr`, on the fixed batch.
fn train(
    mut model: Known,
    mut optim: ModuleOptimizer,
    mut lr: ModuleLrScheduler,
    steps: usize,
    device: &Device,
) -> Known {
    let (x, y) = batch(device);
    for _ in 0..steps {
        let loss = model.loss(x.clone(), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr.step(), model, grads);
    }
    model
}

#[test]
fn the_layer_rule_groups_every_parameter_and_says_why() {
    let device = common::cpu_device().autodiff();
    let model = Known::new(&device);
    let groups = ScaleGroups::by_layers(&model);
    println!("{groups}");

    assert_eq!(
        groups.paths(ScaleGroup::Invariant),
        ["conv.weight", "mid.weight"]
    );
    assert_eq!(groups.paths(ScaleGroup::Vector), VECTORS);
    // `pre` feeds `mid` (a Linear), not a normalization; the head feeds the loss.
    assert_eq!(
        groups.paths(ScaleGroup::Rest),
        ["pre.weight", "head.weight"]
    );
    let by_path = |path: &str| groups.get(path).unwrap();
    let conv = by_path("conv.weight");
    assert_eq!(
        (conv.channel_axis, conv.reason, conv.shape.as_slice()),
        (Some(0), GroupReason::FeedsNormalization, &[6, 2, 3, 3][..])
    );
    assert_eq!(
        by_path("mid.weight").channel_axis,
        Some(1),
        "Linear: axis 1"
    );
    assert_eq!(by_path("pre.weight").reason, GroupReason::NotNormalized);
    assert_eq!(by_path("ln.beta").reason, GroupReason::Vector);

    // The same groups from the model on a device without autodiff.
    let inner = ScaleGroups::by_layers(&Known::new(&common::cpu_device()));
    for group in [ScaleGroup::Invariant, ScaleGroup::Vector, ScaleGroup::Rest] {
        assert_eq!(inner.paths(group), groups.paths(group), "{group:?}");
    }

    let table = groups.to_string();
    assert!(
        table.starts_with("2 invariant, 6 vector, 2 rest\n"),
        "{table}"
    );
    let line = |path: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{path} ")))
            .unwrap_or_else(|| panic!("no line for {path} in\n{table}"))
            .to_string()
    };
    assert!(
        line("conv.weight").contains("invariant")
            && line("conv.weight").contains("feeds a normalization layer")
    );
    assert!(
        line("head.weight").contains("rest") && line("head.weight").contains("no normalization")
    );
    assert!(line("bn.gamma").contains("vector") && line("bn.gamma").contains("rank < 2"));
}

#[test]
fn the_probe_groups_by_its_verdicts() {
    let device = common::cpu_device().autodiff();
    let model = Known::new(&device);
    let (x, y) = batch(&device);
    let report = ScaleProbe::new()
        .run(&model, |m: &Known| m.loss(x.clone(), y.clone()))
        .unwrap();
    let groups = ScaleGroups::from_probe(&report);
    println!("{groups}");

    assert_eq!(
        groups.paths(ScaleGroup::Invariant),
        ["conv.weight", "mid.weight"]
    );
    assert_eq!(groups.paths(ScaleGroup::Vector), VECTORS);
    let reason = |path: &str| groups.get(path).unwrap().reason;
    assert_eq!(
        reason("conv.weight"),
        GroupReason::Probe(Invariance::Channel)
    );
    assert_eq!(reason("mid.weight"), GroupReason::Probe(Invariance::Layer));
    assert_eq!(reason("pre.weight"), GroupReason::Probe(Invariance::None));
    assert!(groups.to_string().contains("probe: layer-invariant"));
}

#[test]
fn overrides_move_a_parameter_or_a_whole_module_and_refuse_unknown_paths() {
    let device = common::cpu_device().autodiff();
    let model = Known::new(&device);
    let groups = ScaleGroups::by_layers(&model)
        .try_with_group("head", ScaleGroup::Invariant)
        .unwrap()
        .with_group("mid.weight", ScaleGroup::Rest);
    assert_eq!(
        groups.paths(ScaleGroup::Invariant),
        ["conv.weight", "head.weight", "head.bias"]
    );
    assert_eq!(groups.group_of("mid.weight"), Some(ScaleGroup::Rest));
    assert_eq!(
        groups
            .params()
            .iter()
            .filter(|p| p.reason == GroupReason::Override)
            .count(),
        3
    );
    assert!(groups.to_string().contains("override"));

    // `hea` is a prefix of a name, not a module path.
    for path in ["hea", "tail", "head.weight.x"] {
        let err = ScaleGroups::by_layers(&model)
            .try_with_group(path, ScaleGroup::Rest)
            .unwrap_err();
        assert_eq!(
            err,
            ConfigError::UnknownParameter {
                path: path.to_string()
            }
        );
    }
}

/// The grouped optimizer against Burn's own parameter groups by path, each built by hand from
/// the optimizer's config: the same bits after every step, with the invariant group on a
/// learning rate of its own.
#[test]
fn the_grouped_step_is_each_assigned_optimizers_step() {
    let device = common::cpu_device().autodiff();
    let model = Known::new(&device);
    let groups = ScaleGroups::by_layers(&model);
    let lr = |invariant: ParamGroup| ModuleLrScheduler::new(1e-2).with_group(invariant, 3e-3);

    let grouped = groups.init(
        &AdamPConfig::new().with_weight_decay(0.1).build(),
        adamw(0.0),
        adamw(0.1),
    );
    let by_hand = |conv_axis: usize| {
        ModuleOptimizer::from(adamw(0.1))
            .with_group(ParamGroup::from_paths(VECTORS.to_vec()), adamw(0.0), None)
            .with_group(ParamGroup::from_path("conv.weight"), adamp(conv_axis), None)
            .with_group(ParamGroup::from_path("mid.weight"), adamp(1), None)
    };
    let invariant_paths = ParamGroup::from_paths(vec!["conv.weight", "mid.weight"]);

    let steps = 5;
    let a = train(
        model.clone(),
        grouped,
        lr(groups.param_group(ScaleGroup::Invariant)),
        steps,
        &device,
    );
    let b = train(
        model.clone(),
        by_hand(0),
        lr(invariant_paths.clone()),
        steps,
        &device,
    );
    let initial = weights(&model);
    for ((path, got), (_, want)) in weights(&a).into_iter().zip(weights(&b)) {
        assert_eq!(
            got, want,
            "{path}: grouped differs from its assigned optimizer"
        );
    }
    for ((path, moved), (_, before)) in weights(&a).into_iter().zip(&initial) {
        assert_ne!(&moved, before, "{path} did not move");
    }

    // The comparison sees a wrong channel axis (conv.weight is channel-invariant on axis 0
    // only) and a wrong learning rate.
    let wrong_axis = train(
        model.clone(),
        by_hand(1),
        lr(invariant_paths),
        steps,
        &device,
    );
    assert_ne!(
        weights(&wrong_axis)[0],
        weights(&a)[0],
        "conv.weight on axis 1"
    );
    let one_lr = train(
        model.clone(),
        by_hand(0),
        ModuleLrScheduler::new(1e-2),
        steps,
        &device,
    );
    assert_ne!(weights(&one_lr)[0], weights(&a)[0], "conv.weight at 1e-2");
}

/// Burn's record of a grouped optimizer, loaded into the same grouping built again, continues
/// bit for bit.
#[test]
fn a_grouped_optimizer_resumes_from_its_record() {
    let device = common::cpu_device().autodiff();
    let model = Known::new(&device);
    let groups = ScaleGroups::by_layers(&model);
    let build = || {
        let invariant = AdamPConfig::new().with_weight_decay(0.1).build();
        groups.init(&invariant, adamw(0.0), adamw(0.1))
    };
    let lr = || ModuleLrScheduler::new(1e-2);
    let (x, y) = batch(&device);
    let step = |model: Known, optim: &mut ModuleOptimizer| {
        let grads =
            GradientsParams::from_grads(model.loss(x.clone(), y.clone()).backward(), &model);
        optim.step(lr().step(), model, grads)
    };

    let (mut straight, mut optim) = (model.clone(), build());
    for _ in 0..5 {
        straight = step(straight, &mut optim);
    }
    let (mut resumed, mut first) = (model, build());
    for _ in 0..2 {
        resumed = step(resumed, &mut first);
    }
    let bytes = first.into_bytes().unwrap();
    let mut second = build().from_bytes(bytes).unwrap();
    for _ in 0..3 {
        resumed = step(resumed, &mut second);
    }
    assert_eq!(weights(&resumed), weights(&straight));
}

#[test]
fn every_projecting_optimizer_takes_the_invariant_group() {
    let device = common::cpu_device().autodiff();
    let model = Known::new(&device);
    let groups = ScaleGroups::by_layers(&model);
    let lr = || ModuleLrScheduler::new(1e-2);

    let sgdp = SgdpConfig::new()
        .with_momentum(0.9)
        .with_weight_decay(1e-4)
        .build();
    let radial = RadialProjectionConfig::new()
        .with_weight_decay(0.1)
        .wrap(adamw(0.0));
    let rotational = RotationalAdamWConfig::new().with_weight_decay(0.1).build();
    let prepared = groups.try_prepare(model.clone(), &rotational).unwrap();
    let runs = [
        (
            "sgdp",
            model.clone(),
            groups.init(&sgdp, adamw(0.0), adamw(0.1)),
        ),
        (
            "radial",
            model.clone(),
            groups.init(&radial, adamw(0.0), adamw(0.1)),
        ),
        (
            "rotational",
            prepared,
            groups.init(&rotational, adamw(0.0), adamw(0.1)),
        ),
    ];
    let (x, y) = batch(&device);
    for (name, model, optim) in runs {
        let before = model.loss(x.clone(), y.clone());
        let after = train(model, optim, lr(), 20, &device).loss(x.clone(), y.clone());
        let (before, after) = (common::values(before)[0], common::values(after)[0]);
        println!("{name}: loss {before:.4} -> {after:.4}");
        assert!(after < 0.9 * before, "{name}: {before} -> {after}");
    }
}

#[test]
fn the_rotational_preparation_centres_each_neuron_of_the_invariant_weights_only() {
    let device = common::cpu_device().autodiff();
    let model = Known::new(&device);
    let groups = ScaleGroups::by_layers(&model);
    let rotational = RotationalAdamWConfig::new().with_weight_decay(0.1).build();
    let prepared = groups.try_prepare(model.clone(), &rotational).unwrap();

    // mid.weight is `[d_input, d_output]`: each neuron is a column.
    let mid = prepared.mid.weight.val();
    let means = common::values(mid.clone().mean_dim(0));
    assert!(means.iter().all(|m| m.abs() < 1e-6), "{means:?}");
    let norms = |t: Tensor<2>| common::values(t.square().sum_dim(0).sqrt());
    for (a, b) in norms(mid).iter().zip(norms(model.mid.weight.val())) {
        assert!(
            (a - b).abs() <= 1e-5 * b,
            "each neuron keeps its norm: {a} vs {b}"
        );
    }
    assert_eq!(
        weights(&prepared)[3],
        weights(&model)[3],
        "pre.weight is not invariant: untouched"
    );

    let frozen = RotationalAdamWConfig::new().with_weight_decay(0.0).build();
    assert!(matches!(
        frozen.on_channel_axis(0),
        Err(ConfigError::Conflict { .. })
    ));
    assert!(matches!(
        groups.try_init(&frozen, adamw(0.0), adamw(0.1)).err(),
        Some(ConfigError::Conflict { .. })
    ));
}

#[test]
fn an_invalid_clipping_threshold_is_refused() {
    let device = common::cpu_device().autodiff();
    let groups = ScaleGroups::by_layers(&Known::new(&device));
    let invariant = AdamPConfig::new().build();
    let Err(err) = groups
        .clone()
        .with_grad_clipping(GradientClippingConfig::Norm(-1.0))
        .try_init(&invariant, adamw(0.0), adamw(0.1))
    else {
        panic!("a negative threshold was accepted");
    };
    assert!(
        err.to_string().contains("ScaleGroups.grad_clipping.norm"),
        "{err}"
    );
    let optim = groups
        .with_grad_clipping(GradientClippingConfig::Norm(1.0))
        .try_init(&invariant, adamw(0.0), adamw(0.1))
        .unwrap();
    assert!(optim.has_gradient_clipping());
}
