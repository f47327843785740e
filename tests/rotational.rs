//! The rotational optimizers through their model-level constructors: `init_for` prepares the
//! model it is given (each rotational neuron centred at its norm, along its layer's neuron
//! axis), `resume_for` never prepares, the errors name what is wrong, and every neuron turns
//! by the equilibrium angle.

mod common;

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use scaleinv::models::{DigitsCnn, DigitsCnnConfig};
use scaleinv::{
    ConfigError, DiagnosticsTracker, Equilibrium, RotationalAdamWConfig, RotationalSgdmConfig,
};

fn small_cnn(device: &Device) -> DigitsCnn {
    device.seed(3);
    DigitsCnnConfig {
        width: 4,
        classes: 10,
    }
    .init(device)
}

/// Per neuron along `axis` of a `[rows, cols]` matrix (axis 1: the columns): (mean, norm).
fn neurons(values: &[f32], [rows, cols]: [usize; 2], axis: usize) -> Vec<(f64, f64)> {
    let (count, len) = if axis == 0 {
        (rows, cols)
    } else {
        (cols, rows)
    };
    (0..count)
        .map(|n| {
            let at = |k: usize| {
                let i = if axis == 0 {
                    n * cols + k
                } else {
                    k * cols + n
                };
                f64::from(values[i])
            };
            let mean = (0..len).map(at).sum::<f64>() / len as f64;
            let norm = (0..len).map(|k| at(k).powi(2)).sum::<f64>().sqrt();
            (mean, norm)
        })
        .collect()
}

/// A conv kernel `[out, in, kh, kw]` seen as `[out, rest]`.
fn as_rows(t: Tensor<4>) -> (Vec<f32>, [usize; 2]) {
    let [o, i, h, w] = t.dims();
    (common::values(t), [o, i * h * w])
}

#[test]
fn init_for_centres_every_rotational_neuron_at_its_norm() {
    let device = common::cpu_device().autodiff();
    let model = small_cnn(&device);
    let before = model.clone();
    let (prepared, _optim) = RotationalAdamWConfig::new().init_for(model);

    // Convolutions: neurons are the output channels (axis 0).
    let (b, dims) = as_rows(before.block2.conv.weight.val().inner());
    let (a, _) = as_rows(prepared.block2.conv.weight.val().inner());
    for ((_, norm_b), (mean_a, norm_a)) in neurons(&b, dims, 0).iter().zip(neurons(&a, dims, 0)) {
        assert!(mean_a.abs() < 1e-6 * norm_b, "mean {mean_a}");
        assert!(
            (norm_a - norm_b).abs() < 1e-5 * norm_b,
            "{norm_a} vs {norm_b}"
        );
    }
    // Burn's Linear stores [d_input, d_output]: its neurons are the columns (axis 1).
    let head = |m: &DigitsCnn| {
        let w = m.head.weight.val().inner();
        let [r, c] = w.dims();
        (common::values(w), [r, c])
    };
    let ((b, dims), (a, _)) = (head(&before), head(&prepared));
    for ((_, norm_b), (mean_a, norm_a)) in neurons(&b, dims, 1).iter().zip(neurons(&a, dims, 1)) {
        assert!(mean_a.abs() < 1e-6 * norm_b, "head: mean {mean_a}");
        assert!(
            (norm_a - norm_b).abs() < 1e-5 * norm_b,
            "head: {norm_a} vs {norm_b}"
        );
    }
    // Biases and the norms' gains are not rotational: untouched; the parameters keep their ids
    // and still require gradients.
    let bias = |m: &DigitsCnn| common::values(m.head.bias.as_ref().unwrap().val().inner());
    assert_eq!(bias(&before), bias(&prepared));
    assert_eq!(before.head.weight.id, prepared.head.weight.id);
    assert!(prepared.head.weight.val().is_require_grad());
}

#[test]
fn overrides_and_zero_mean_decide_what_is_prepared() {
    let device = common::cpu_device().autodiff();
    let model = small_cnn(&device);
    let weights = |m: &DigitsCnn| common::values(m.head.weight.val().inner());
    let conv = |m: &DigitsCnn| common::values(m.block1.conv.weight.val().inner());
    let (kept, _) = RotationalAdamWConfig::new()
        .with_not_rotational(vec!["head".into()])
        .init_for(model.clone());
    assert_eq!(weights(&kept), weights(&model), "head kept off");
    assert_ne!(conv(&kept), conv(&model), "convolutions prepared");
    let (plain, _) = RotationalSgdmConfig::new(1e-4)
        .with_zero_mean(false)
        .init_for(model.clone());
    assert_eq!(
        conv(&plain),
        conv(&model),
        "zero_mean off: nothing to prepare"
    );
    // No weight decay: nothing is rotational, nothing prepared.
    let (none, _) = RotationalAdamWConfig::new()
        .with_weight_decay(0.0)
        .init_for(model.clone());
    assert_eq!(conv(&none), conv(&model));
    // `resume_for` never prepares (the model is taken by reference).
    let _ = RotationalAdamWConfig::new().resume_for(&model);
}

#[test]
fn the_errors_name_what_is_wrong() {
    let device = common::cpu_device().autodiff();
    let model = small_cnn(&device);
    let conflict = |r: Result<_, ConfigError>| match r {
        Err(ConfigError::Conflict { reason, .. }) => reason,
        other => panic!("expected a conflict, got {:?}", other.map(|_| ())),
    };
    let forced = RotationalAdamWConfig::new()
        .with_weight_decay(0.0)
        .with_rotational(vec!["head".into()]);
    assert!(conflict(forced.validate()).contains("weight_decay"));
    assert!(conflict(forced.try_init_for(model.clone()).map(|_| ())).contains("weight_decay"));
    let sgdm = RotationalSgdmConfig::new(0.0);
    assert!(conflict(sgdm.try_build_for(true).map(|_| ())).contains("weight_decay"));
    assert!(sgdm.try_build_for(false).is_ok());
    assert!(
        conflict(
            RotationalSgdmConfig::new(1e-4)
                .with_nesterov(true)
                .validate()
        )
        .contains("nesterov")
    );
    match RotationalAdamWConfig::new()
        .with_rotational(vec!["nowhere".into()])
        .try_init_for(model.clone())
    {
        Err(ConfigError::UnknownParameter { path }) => assert_eq!(path, "nowhere"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    match RotationalAdamWConfig::new()
        .with_update_norm_decay_factor(1.0)
        .validate()
    {
        Err(ConfigError::OutOfRange { field, .. }) => {
            assert_eq!(field, "update_norm_decay_factor")
        }
        other => panic!("{other:?}"),
    }
    // A neuron whose weights are all equal has no direction once centred.
    let mut linear: Linear = LinearConfig::new(3, 2).init(&device);
    let flat = Tensor::<2>::from_data(TensorData::new(vec![0.5f32; 6], [3, 2]), &device);
    linear.weight = Param::from_tensor(flat);
    match RotationalAdamWConfig::new().try_init_for(linear) {
        Err(ConfigError::UnprojectableNorm { path, norm }) => {
            assert_eq!(path, "weight");
            assert_eq!(norm, 0.0);
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// With the average's β = 0 every rotational step turns each neuron by exactly
/// `atan(η_r)`: the update is orthogonal to the neuron and scaled to `η_r·n`, then the neuron
/// goes back to norm `n`. The tracker's angular update and its equilibrium prediction agree.
#[test]
fn every_step_turns_the_weights_by_the_equilibrium_angle() {
    let device = common::cpu_device().autodiff();
    let model: Linear = LinearConfig::new(6, 4).init(&device);
    let (weight_decay, lr) = (0.1, 1e-2);
    let (mut model, mut optim) = RotationalAdamWConfig::new()
        .with_weight_decay(weight_decay)
        .with_update_norm_decay_factor(0.0)
        .init_for(model);
    let equilibrium = Equilibrium::AdamW {
        weight_decay,
        beta_1: 0.9,
    };
    let mut tracker = DiagnosticsTracker::new(1)
        .with_sigma(None)
        .with_equilibrium(equilibrium);
    for step in 0..4 {
        let x = Tensor::<2>::from_data(
            TensorData::new((0..18).map(|i| ((i + step) as f32).sin()).collect(), [3, 6]),
            &device,
        );
        let loss = model.forward(x).square().mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        tracker.before_step_at(step, lr, &model);
        model = optim.step(lr, model, grads);
        tracker.after_step(&model);
    }
    let rate = equilibrium.angle(lr);
    let weights: Vec<_> = tracker.rows().iter().filter(|r| r.rank == 2).collect();
    assert_eq!(weights.len(), 4);
    for row in weights {
        let angle = row.angular_update.unwrap();
        assert!(
            (angle - rate.atan()).abs() < 1e-3 * rate,
            "{angle} vs {rate}"
        );
        assert_eq!(row.equilibrium_angle, Some(rate));
    }
    // The bias takes AdamW's step: an angle, no prediction.
    let bias = tracker.rows().iter().find(|r| r.rank == 1).unwrap();
    assert!(bias.angular_update.is_some() && bias.equilibrium_angle.is_none());
}

/// Every backend takes the same rotational steps, on either neuron axis, with and without
/// `zero_mean`. On wgpu, Burn 0.22.1's fusion autotune compiles one candidate kernel for
/// the `[1561, 64]`, axis 0, `zero_mean(false)` chain that panics on its device thread
/// ("Cast element count must match"); the autotune discards it and the step is right,
/// which this test holds.
#[test]
fn the_steps_agree_across_backends_on_either_neuron_axis() {
    use burn::optim::Optimizer;
    use burn::tensor::Distribution;
    let devices = common::devices();
    let (_, cpu) = &devices[0];
    for (shape, axis) in [([1561, 64], 0), ([64, 1561], 1)] {
        cpu.seed(11);
        let init = Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), cpu);
        let grads: Vec<_> = (0..3)
            .map(|_| Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), cpu))
            .collect();
        for zero_mean in [true, false] {
            let optim = RotationalAdamWConfig::new()
                .with_neuron_axis(axis)
                .with_zero_mean(zero_mean)
                .build();
            let stepped: Vec<(&str, Vec<f32>)> = devices
                .iter()
                .map(|(name, device)| {
                    let mut param = init.clone().to_device(device);
                    let mut state = None;
                    for grad in &grads {
                        (param, state) =
                            optim.step(1e-2, param, grad.clone().to_device(device), state);
                    }
                    (*name, common::values(param))
                })
                .collect();
            let (first, reference) = &stepped[0];
            for (name, values) in &stepped[1..] {
                let worst = values
                    .iter()
                    .zip(reference)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    worst < 1e-5,
                    "{name} vs {first}, {shape:?} axis {axis}, zero_mean {zero_mean}: {worst}"
                );
            }
        }
    }
}
