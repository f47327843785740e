//! The configuration surface: channel axes from the module, overrides, validation errors.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, ModuleOptimizer, Optimizer};
use burn::tensor::{Tensor, TensorData};
use scaleinv::models::DigitsCnnConfig;
use scaleinv::{AdamPConfig, ChannelAxes, ChannelAxisRules, ConfigError, ProjectionBranch};

#[test]
fn channel_axes_follow_burn_layouts() {
    let model = DigitsCnnConfig::default().init(&common::cpu_device());
    let axes = ChannelAxes::infer(&model);
    let listed: Vec<(&str, &str, usize, usize)> = axes
        .iter()
        .map(|p| (p.path.as_str(), p.module_type.as_str(), p.rank, p.axis))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("block1.conv.weight", "Conv2d", 4, 0),
            ("block2.conv.weight", "Conv2d", 4, 0),
            ("block3.conv.weight", "Conv2d", 4, 0),
            ("head.weight", "Linear", 2, 1),
        ]
    );
}

#[test]
fn overrides_are_checked() {
    let model = DigitsCnnConfig::default().init(&common::cpu_device());
    let axes = ChannelAxes::infer(&model)
        .with_axis("head.weight", 0)
        .unwrap();
    assert_eq!(axes.axis_of("head.weight"), Some(0));
    assert_eq!(
        ChannelAxes::infer(&model).with_axis("head.wieght", 0),
        Err(ConfigError::UnknownParameter {
            path: "head.wieght".into()
        })
    );
    let err = ChannelAxes::infer(&model)
        .with_axis("head.weight", 2)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "channel axis 2 is out of range for `head.weight`, a parameter of rank 2"
    );
    let err = ChannelAxisRules::burn_nn()
        .with_type("Linear", 5)
        .infer(&model)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::ChannelAxisOutOfRange {
                axis: 5,
                rank: 2,
                ..
            }
        ),
        "{err}"
    );
    let custom = ChannelAxisRules::burn_nn()
        .with_type("Conv2d", 1)
        .infer(&model)
        .unwrap();
    assert_eq!(custom.axis_of("block2.conv.weight"), Some(1));
}

/// A `[6, 4]` weight and a gradient orthogonal to each of its columns: along axis 1 (Burn's
/// Linear output channels) the channel test fires; along axis 0 only the layer test does.
fn weight_and_column_orthogonal_grad() -> (Vec<f32>, Vec<f32>) {
    let w: Vec<f32> = (0..24)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0 + 0.1)
        .collect();
    let raw: Vec<f32> = (0..24).map(|i| ((i * 5 % 13) as f32 - 6.0) / 5.0).collect();
    let mut g = raw.clone();
    for col in 0..4 {
        let idx: Vec<usize> = (0..6).map(|r| r * 4 + col).collect();
        let wg: f32 = idx.iter().map(|&i| w[i] * raw[i]).sum();
        let ww: f32 = idx.iter().map(|&i| w[i] * w[i]).sum();
        for &i in &idx {
            g[i] = raw[i] - w[i] * wg / ww;
        }
    }
    (w, g)
}

#[test]
fn init_for_gives_a_linear_weight_its_output_axis() {
    let device = common::cpu_device();
    let (w, g) = weight_and_column_orthogonal_grad();
    let tensor = |v: &Vec<f32>| Tensor::<2>::from_data(TensorData::new(v.clone(), [6, 4]), &device);

    let config = AdamPConfig::new().with_weight_decay(0.1);
    let on_axis = |axis: usize| {
        let opt = config.clone().with_channel_axis(axis).build();
        let branch = opt.scale_invariance().branch(&tensor(&w), &tensor(&g));
        let branch = common::branch(branch);
        let (next, _) = opt.step(1e-2, tensor(&w), tensor(&g), None);
        (branch, common::values(next))
    };
    let (branch_0, by_rows) = on_axis(0);
    let (branch_1, by_columns) = on_axis(1);
    assert_eq!(
        (branch_0, branch_1),
        (ProjectionBranch::Layer, ProjectionBranch::Channel)
    );
    assert_ne!(by_rows, by_columns);

    assert_eq!(linear_step(|m| config.init_for(m), &w, &g), by_columns);
    // `init` keeps the single configured axis (0) for every parameter.
    assert_eq!(linear_step(|_| config.init(), &w, &g), by_rows);
}

/// One step of a bias-free `Linear` holding weight `w` with gradient `g`, by the
/// `ModuleOptimizer` that `make` builds for it.
fn linear_step(make: impl FnOnce(&Linear) -> ModuleOptimizer, w: &[f32], g: &[f32]) -> Vec<f32> {
    let device = common::cpu_device();
    let ad = device.clone().autodiff();
    let mut linear: Linear = LinearConfig::new(6, 4).with_bias(false).init(&ad);
    let weight = Tensor::<2>::from_data(TensorData::new(w.to_vec(), [6, 4]), &ad);
    linear.weight = linear.weight.map(|_| weight.require_grad());
    let mut grads = GradientsParams::new();
    let grad = Tensor::<2>::from_data(TensorData::new(g.to_vec(), [6, 4]), &device);
    grads.register(linear.weight.id, grad);
    let linear = make(&linear).step(1e-2, linear, grads);
    common::values(linear.weight.val().inner())
}

/// The test's threshold is `δ / √K`: a `[2, 4]` weight whose first row has cosine `c` with its
/// gradient and whose second row has cosine 0. The channel view (K = 4) fires below
/// `0.1 / 2`; the layer view (K = 8, cosine `c / 2`) fires below `0.1 / √8`.
#[test]
fn threshold_is_delta_over_root_width() {
    let device = common::cpu_device();
    let proj = scaleinv::ScaleInvariance::detect(0.1, 0.1, 1e-8, 0);
    let branch = |c: f32| {
        let p = Tensor::<2>::from_data(
            TensorData::new(vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0], [2, 4]),
            &device,
        );
        let s = (1.0 - c * c).sqrt();
        let g = Tensor::<2>::from_data(
            TensorData::new(vec![c, 0.0, s, 0.0, 1.0, 0.0, 0.0, 0.0], [2, 4]),
            &device,
        );
        common::branch(proj.branch(&p, &g))
    };
    assert_eq!(branch(0.049), ProjectionBranch::Channel);
    assert_eq!(branch(0.051), ProjectionBranch::Layer);
    assert_eq!(branch(0.0700), ProjectionBranch::Layer);
    assert_eq!(branch(0.0715), ProjectionBranch::None);
}
