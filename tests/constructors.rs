//! Every config's constructor family, as a user calls it: each fallible constructor returns a
//! working optimizer for a valid config and the validation error for an invalid one, and each
//! panicking twin does the same (with a panic). Every optimizer built steps a small model.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use scaleinv::{
    AdamPConfig, ChannelAxes, ConfigError, NapConfig, ProjectionObserver, RadialProjectionConfig,
    SgdpConfig, StableSpamConfig, WidthRole, WidthScaledAdamWConfig,
};

fn model() -> Linear {
    LinearConfig::new(6, 4).init(&common::cpu_device().autodiff())
}

/// One step of `optim` on `model`: the weight moves and stays finite.
fn steps(name: &str, mut optim: ModuleOptimizer) {
    let model = model();
    let device = common::cpu_device().autodiff();
    let before = common::values(model.weight.val().inner());
    let x = Tensor::<2>::ones([3, 6], &device);
    let loss = model.forward(x).square().mean();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = optim.step(1e-2, model, grads);
    let after = common::values(model.weight.val().inner());
    assert!(
        after.iter().all(|v| v.is_finite()),
        "{name}: non-finite weight"
    );
    assert_ne!(before, after, "{name}: the weight did not move");
}

/// The error of a fallible constructor names the config and the field.
fn refused<T>(name: &str, result: Result<T, ConfigError>, field: &str) {
    match result {
        Ok(_) => panic!("{name}: an invalid config was accepted"),
        Err(e) => assert!(e.to_string().contains(field), "{name}: {e}"),
    }
}

fn panics(name: &str, build: impl FnOnce() + std::panic::UnwindSafe) {
    assert!(std::panic::catch_unwind(build).is_err(), "{name}: no panic");
}

#[test]
fn adamp_and_sgdp_build_through_every_constructor() {
    let m = model();
    let axes = ChannelAxes::infer(&m);
    let observer = ProjectionObserver::new();
    let adamp = AdamPConfig::new().with_weight_decay(1e-2).with_delta(0.1);
    steps("AdamP init", adamp.init());
    steps("AdamP try_init", adamp.try_init().unwrap());
    steps("AdamP init_for", adamp.init_for(&m));
    steps("AdamP try_init_for", adamp.try_init_for(&m).unwrap());
    steps("AdamP try_init_with", adamp.try_init_with(&axes).unwrap());
    steps("AdamP init_observed", adamp.init_observed(&m, &observer));
    steps("AdamP with_group", ModuleOptimizer::from(adamp.build()));
    steps(
        "AdamP try_build",
        ModuleOptimizer::from(adamp.try_build().unwrap()),
    );
    let bad = AdamPConfig::new().with_epsilon(0.0);
    refused("AdamP", bad.try_build(), "AdamPConfig.epsilon");
    refused("AdamP", bad.try_init(), "AdamPConfig.epsilon");
    refused("AdamP", bad.try_init_for(&m), "AdamPConfig.epsilon");
    refused("AdamP", bad.try_init_with(&axes), "AdamPConfig.epsilon");
    panics("AdamP init_for", || drop(bad.init_for(&model())));

    let sgdp = SgdpConfig::new().with_momentum(0.9).with_nesterov(true);
    steps("SGDP init", sgdp.init());
    steps("SGDP init_for", sgdp.init_for(&m));
    steps("SGDP try_init_for", sgdp.try_init_for(&m).unwrap());
    steps(
        "SGDP try_init_observed",
        sgdp.try_init_observed(&axes, &observer).unwrap(),
    );
    steps("SGDP build", ModuleOptimizer::from(sgdp.build()));
    let bad = SgdpConfig::new().with_wd_ratio(1.5);
    refused("SGDP", bad.try_init_for(&m), "SgdpConfig.wd_ratio");
    panics("SGDP build", || drop(bad.build()));
}

#[test]
fn stable_spam_and_width_scaled_adamw_build_through_every_constructor() {
    let m = model();
    let spam = StableSpamConfig::new().with_reset_interval(10);
    steps("Stable-SPAM init", spam.init());
    steps("Stable-SPAM try_init", spam.try_init().unwrap());
    steps("Stable-SPAM init_for", spam.init_for(&m));
    steps("Stable-SPAM try_init_for", spam.try_init_for(&m).unwrap());
    steps("Stable-SPAM build", ModuleOptimizer::from(spam.build()));
    let bad = StableSpamConfig::new().with_theta(1.0);
    refused(
        "Stable-SPAM",
        bad.try_init_for(&m),
        "StableSpamConfig.theta",
    );
    panics("Stable-SPAM init", || drop(bad.init()));

    let width = WidthScaledAdamWConfig::new(2, 4).with_fused(false);
    steps("width init_for", width.init_for(&m));
    steps("width try_init_for", width.try_init_for(&m).unwrap());
    steps(
        "width build",
        ModuleOptimizer::from(width.build(WidthRole::Matrix)),
    );
    let bad = WidthScaledAdamWConfig::new(0, 4);
    refused(
        "width",
        bad.try_init_for(&m),
        "WidthScaledAdamWConfig.base_width",
    );
    refused("width", bad.try_build(WidthRole::Vector), "base_width");
    panics("width init_for", || drop(bad.init_for(&model())));
}

#[test]
fn the_wrappers_build_through_every_constructor() {
    let m = model();
    let adam = || AdamConfig::new().with_epsilon(1e-8).build();
    let radial = RadialProjectionConfig::new().with_weight_decay(1e-2);
    steps("radial init", radial.init(adam()));
    steps("radial try_init", radial.try_init(adam()).unwrap());
    steps("radial init_for", radial.init_for(adam(), &m));
    steps(
        "radial try_init_for",
        radial.try_init_for(adam(), &m).unwrap(),
    );
    steps("radial wrap", ModuleOptimizer::from(radial.wrap(adam())));
    let bad = RadialProjectionConfig::new().with_delta(-1.0);
    refused(
        "radial",
        bad.try_wrap(adam()),
        "RadialProjectionConfig.delta",
    );
    refused(
        "radial",
        bad.try_init_for(adam(), &m),
        "RadialProjectionConfig.delta",
    );
    panics("radial init", || drop(bad.init(AdamConfig::new().build())));

    let nap = NapConfig::new();
    steps("NaP init", nap.init(adam()));
    steps("NaP try_init", nap.try_init(adam()).unwrap());
    steps("NaP init_for", nap.init_for(adam(), &m));
    steps("NaP try_init_for", nap.try_init_for(adam(), &m).unwrap());
    steps("NaP wrap", ModuleOptimizer::from(nap.wrap(adam())));
    steps("NaP(AdamP)", nap.init_for(AdamPConfig::new().build(), &m));
    let bad = NapConfig::new().with_epsilon(0.0);
    refused("NaP", bad.try_wrap(adam()), "NapConfig.epsilon");
    panics("NaP init_for", || {
        drop(bad.init_for(AdamConfig::new().build(), &model()))
    });
}
