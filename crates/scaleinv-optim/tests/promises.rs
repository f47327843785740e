//! The promises of the Guarantees page on the paths a user takes from outside the crate
//! (issue 21): NaP's free parameters inside its step frame, records and paths checked,
//! hyperparameters that cannot give finite f32 arithmetic refused, messages naming what the
//! user passed, and `init()` on a `Linear` said to be wrong once.

mod common;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use scaleinv_optim::{
    AdamPConfig, ChannelAxes, CheckedLoad, ConfigError, NapConfig, RadialProjectionConfig,
    RecordMismatch, SgdpConfig, StableSpamConfig, WidthScaledAdamWConfig,
};

/// A `Linear` 4 → 3 with fixed weights, in `dtype` (f32 when `None`).
fn linear(device: &Device, dtype: Option<FloatDType>) -> Linear {
    let w: Vec<f32> = (0..12).map(|i| (i as f32 * 0.7).sin() + 0.1).collect();
    let weight = Tensor::<2>::from_data(TensorData::new(w, [4, 3]), device);
    let bias = Tensor::<1>::from_data(TensorData::new(vec![0.1f32, -0.2, 0.3], [3]), device);
    let (weight, bias) = match dtype {
        Some(d) => (weight.cast(d), bias.cast(d)),
        None => (weight, bias),
    };
    Linear {
        weight: Param::from_tensor(weight),
        bias: Some(Param::from_tensor(bias)),
    }
}

/// Gradients for `model`: `w` on every weight element, `b` on every bias element.
fn grads(model: &Linear, w: f32, b: f32) -> GradientsParams {
    let mut grads = GradientsParams::new();
    grads.register(model.weight.id, model.weight.val().inner().ones_like() * w);
    let bias = model.bias.as_ref().expect("bias");
    grads.register(bias.id, bias.val().inner().ones_like() * b);
    grads
}

fn bias_values(model: &Linear) -> Vec<f32> {
    let bias = model.bias.as_ref().expect("bias").val().inner();
    common::values(bias.cast(FloatDType::F32))
}

/// The device the models of these tests live on (autodiff over flex, as in training).
fn device() -> Device {
    common::cpu_device().autodiff()
}

fn adam() -> burn::optim::Adam {
    AdamConfig::new().with_epsilon(1e-8).build()
}

// Finding 1: NaP built from the model keeps its free parameters inside its frame.

#[test]
fn nap_init_for_skips_a_non_finite_gradient_on_a_free_parameter() {
    let device = device();
    let model = linear(&device, None);
    let before = bias_values(&model);
    let mut optim = NapConfig::new().init_for(adam(), &model);
    for bad in [f32::NAN, f32::INFINITY] {
        let model = optim.step(1e-2, model.clone(), grads(&model, 0.5, bad));
        assert_eq!(
            bias_values(&model),
            before,
            "the free bias moved on a {bad} gradient"
        );
    }
    // A finite gradient still moves it.
    let model = optim.step(1e-2, model.clone(), grads(&model, 0.5, 0.5));
    assert_ne!(bias_values(&model), before);
}

#[test]
fn nap_init_for_refuses_a_negative_learning_rate_on_a_free_parameter() {
    let device = device();
    // Every weight free: only the free parameters' frame can see the rate.
    let model = linear(&device, None);
    let mut optim = NapConfig::new()
        .with_free(vec!["weight".into(), "bias".into()])
        .init_for(adam(), &model);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        optim.step(-1e-3, model.clone(), grads(&model, 0.5, 0.5))
    }));
    let message = match result {
        Ok(_) => panic!("a negative learning rate was accepted"),
        Err(e) => e.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(
        message.contains("learning rate -0.001 is invalid"),
        "{message}"
    );
}

#[test]
fn nap_init_for_resumes_f16_free_parameters() {
    let device = device();
    let model = linear(&device, Some(FloatDType::F16));
    let mut optim = NapConfig::new().init_for(adam(), &model);
    let mut model = model;
    for _ in 0..2 {
        model = optim.step(1e-2, model.clone(), grads(&model, 0.5, 0.25));
    }
    let record = optim.to_record();
    let mut resumed = NapConfig::new()
        .init_for(adam(), &model)
        .try_load_record(record, &model)
        .expect("NaP's own record loads");
    let next = resumed.step(1e-2, model.clone(), grads(&model, 0.5, 0.25));
    assert_eq!(
        next.bias.as_ref().expect("bias").val().dtype(),
        burn::tensor::DType::F16
    );
    assert!(bias_values(&next).iter().all(|v| v.is_finite()));
    assert_ne!(bias_values(&next), bias_values(&model));
}

// Finding 2: a model record is not an optimizer record.

#[test]
fn a_model_record_is_refused_by_the_checked_loader() {
    let device = device();
    let model = linear(&device, None);
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .expect("model record");
    let record = OptimizerRecord::from_bytes(bytes).expect("burnpack bytes");
    let err = AdamPConfig::new()
        .init_for(&model)
        .try_load_record(record, &model)
        .err()
        .expect("a model record loaded as an optimizer record");
    assert!(
        matches!(&err, RecordMismatch::Unreadable { reason } if reason.contains("model record")),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("scaleinv-promises-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.bpk");
    model.clone().save_file(&path).expect("model saved");
    let from_file = AdamPConfig::new().init_for(&model).try_load(&path, &model);
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        matches!(from_file, Err(RecordMismatch::Unreadable { .. })),
        "the model's .bpk file loaded as an optimizer record"
    );

    // An empty optimizer record (no step taken yet) still loads.
    let empty = ModuleOptimizer::from(adam()).to_record();
    assert!(
        AdamPConfig::new()
            .init_for(&model)
            .try_load_record(empty, &model)
            .is_ok()
    );
}

// Finding 3: paths a user names are checked against the model.

#[test]
fn nap_refuses_a_free_path_that_matches_nothing() {
    let model = linear(&device(), None);
    let err = NapConfig::new()
        .with_free(vec!["bias".into(), "wieght".into()])
        .try_init_for(adam(), &model)
        .err()
        .expect("a free path that names nothing was accepted");
    assert_eq!(
        err,
        ConfigError::UnknownParameter {
            path: "wieght".into()
        }
    );
    assert!(err.to_string().contains("`wieght`"), "{err}");
    // A layer prefix and an exact path both match.
    assert!(
        NapConfig::new()
            .with_free(vec!["bias".into()])
            .try_init_for(adam(), &model)
            .is_ok()
    );
}

#[test]
fn an_axis_override_on_a_bias_says_it_has_no_channel_axis() {
    let model = linear(&device(), None);
    let err = ChannelAxes::infer(&model)
        .with_axis("bias", 0)
        .expect_err("an axis on a bias was accepted");
    assert!(
        matches!(&err, ConfigError::ChannelAxisOutOfRange { rank: 1, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("no channel axis"), "{message}");
    assert!(!message.contains("no parameter"), "{message}");
    // A path the model does not have is still "no parameter".
    let err = ChannelAxes::infer(&model).with_axis("head.weight", 0).err();
    assert_eq!(
        err,
        Some(ConfigError::UnknownParameter {
            path: "head.weight".into()
        })
    );
}

// Finding 4: hyperparameters outside finite f32 arithmetic are refused.

fn refused<T>(result: Result<T, ConfigError>, config: &str, field: &str) {
    match result.err() {
        Some(ConfigError::OutOfRange {
            config: c,
            field: f,
            ..
        }) => assert_eq!((c, f), (config, field)),
        other => panic!("{config}.{field}: expected out of range, got {other:?}"),
    }
}

#[test]
fn nan_or_negative_clipping_thresholds_are_refused() {
    use GradientClippingConfig::{Norm, Value};
    for (clip, field) in [
        (Norm(f32::NAN), "grad_clipping.norm"),
        (Norm(-1.0), "grad_clipping.norm"),
        (Norm(0.0), "grad_clipping.norm"),
        (Value(f32::NAN), "grad_clipping.value"),
        (Value(-0.5), "grad_clipping.value"),
        (Value(f32::INFINITY), "grad_clipping.value"),
    ] {
        let c = Some(clip);
        refused(
            AdamPConfig::new().with_grad_clipping(c.clone()).try_init(),
            "AdamPConfig",
            field,
        );
        refused(
            SgdpConfig::new().with_grad_clipping(c.clone()).try_build(),
            "SgdpConfig",
            field,
        );
        refused(
            StableSpamConfig::new()
                .with_grad_clipping(c.clone())
                .try_init(),
            "StableSpamConfig",
            field,
        );
        refused(
            WidthScaledAdamWConfig::new(64, 128)
                .with_grad_clipping(c.clone())
                .validate(),
            "WidthScaledAdamWConfig",
            field,
        );
    }
    assert!(
        AdamPConfig::new()
            .with_grad_clipping(Some(Norm(1.0)))
            .try_init()
            .is_ok()
    );
}

#[test]
fn an_epsilon_below_f32s_range_is_refused() {
    for eps in [1e-50, 1e-30, 1e-20, 1e39, 1e30] {
        refused(
            AdamPConfig::new().with_epsilon(eps).try_build(),
            "AdamPConfig",
            "epsilon",
        );
        refused(
            SgdpConfig::new().with_epsilon(eps).try_build(),
            "SgdpConfig",
            "epsilon",
        );
        refused(
            StableSpamConfig::new().with_epsilon(eps).try_build(),
            "StableSpamConfig",
            "epsilon",
        );
        refused(
            WidthScaledAdamWConfig::new(64, 128)
                .with_epsilon(eps)
                .validate(),
            "WidthScaledAdamWConfig",
            "epsilon",
        );
        refused(
            NapConfig::new().with_epsilon(eps).try_wrap(adam()),
            "NapConfig",
            "epsilon",
        );
        refused(
            RadialProjectionConfig::new()
                .with_epsilon(eps)
                .try_wrap(adam()),
            "RadialProjectionConfig",
            "epsilon",
        );
    }
    // Beyond f32's range anywhere is refused like ∞.
    refused(
        AdamPConfig::new().with_weight_decay(1e39).try_build(),
        "AdamPConfig",
        "weight_decay",
    );
    for eps in [1e-18, 1e-8, 1e18] {
        assert!(AdamPConfig::new().with_epsilon(eps).try_build().is_ok());
    }
}

// Finding 6: messages name what the user passed.

#[test]
fn width_scaled_adamw_names_the_learning_rate_passed_through_init_for() {
    let device = device();
    let model = linear(&device, None);
    // Trained at twice the base width: the weight's rate is scaled by 1/2.
    let config = WidthScaledAdamWConfig::new(64, 128);
    let mut optim = config.init_for(&model);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        optim.step(-1e-3, model.clone(), grads(&model, 0.5, 0.5))
    }));
    let message = match result {
        Ok(_) => panic!("a negative learning rate was accepted"),
        Err(e) => e.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(
        message.contains("learning rate -0.001 is invalid"),
        "{message}"
    );
    let nan = WidthScaledAdamWConfig::new(64, 128)
        .with_weight_decay(f64::NAN)
        .validate()
        .expect_err("NaN weight decay");
    assert!(nan.to_string().contains("weight_decay = NaN"), "{nan}");
    // A finite exponent whose power leaves f32's range is refused, naming the exponent.
    let err = WidthScaledAdamWConfig::new(64, 256)
        .with_lr_exponent(-80.0)
        .validate()
        .expect_err("(256/64)^-80 accepted");
    assert!(err.to_string().contains("lr_exponent"), "{err}");
    let err = WidthScaledAdamWConfig::new(64, 256)
        .with_weight_decay(0.1)
        .with_wd_exponent(80.0)
        .validate()
        .expect_err("0.1·4^80 accepted");
    assert!(err.to_string().contains("wd_exponent"), "{err}");
}

// Finding 7: `init()` by habit on Burn's Linear is said to be wrong, once.

/// Run in a child process by [`init_by_habit_warns_once_pointing_to_init_for`], so that its
/// standard error can be read; a no-op otherwise.
#[test]
fn child_steps_a_linear_with_init() {
    let Ok(which) = std::env::var("SCALEINV_PROMISES_CHILD") else {
        return;
    };
    let device = device();
    let model = linear(&device, None);
    let mut optim = match which.as_str() {
        "adamp-init" => AdamPConfig::new().init(),
        "sgdp-init" => SgdpConfig::new().with_momentum(0.9).init(),
        "radial-init" => RadialProjectionConfig::new().init(adam()),
        "adamp-init_for" => AdamPConfig::new().init_for(&model),
        "adamp-axis-1" => AdamPConfig::new().with_channel_axis(1).init(),
        other => panic!("unknown child {other}"),
    };
    let mut model = model;
    for _ in 0..3 {
        model = optim.step(1e-3, model.clone(), grads(&model, 0.5, 0.5));
    }
    eprintln!("child done");
}

#[test]
fn init_by_habit_warns_once_pointing_to_init_for() {
    let run = |which: &str| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_steps_a_linear_with_init", "--nocapture"])
            .env("SCALEINV_PROMISES_CHILD", which)
            .output()
            .expect("child process");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{which}: {stderr}");
        assert!(stderr.contains("child done"), "{which}: {stderr}");
        stderr
    };
    for which in ["adamp-init", "sgdp-init", "radial-init"] {
        let stderr = run(which);
        assert_eq!(
            stderr.matches("init_for(&model)").count(),
            1,
            "{which}: {stderr}"
        );
        assert!(stderr.contains("[4, 3]"), "{which}: {stderr}");
    }
    for which in ["adamp-init_for", "adamp-axis-1"] {
        let stderr = run(which);
        assert!(!stderr.contains("warning"), "{which}: {stderr}");
    }
}
