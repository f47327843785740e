//! The fused steps of AdamP and SGDP against their tensor-op path (`fused(false)`), on
//! convolution kernels (channel axis 0), Linear weights (axis 1), rank 3 and biases, with
//! gradients that make the projection fire channel-wise, layer-wise or not at all: the flex
//! loops, and with the `wgpu` feature the CubeCL kernels on wgpu (Mesa's software Vulkan
//! where there is no GPU). The golden replays run the fused paths on flex and wgpu and the
//! tensor ops on ndarray.
//!
//! The fused path is compiled in by this crate's `flex` feature (on by default): `cargo test -p
//! scaleinv-optim --test fused` (or the workspace's `--all-features`) runs this file; with
//! `--no-default-features` it is empty.
#![cfg(feature = "flex")]

mod common;

use burn::optim::Optimizer;
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use scaleinv_optim::{
    AdamCConfig, AdamPConfig, NapConfig, ProjectionBranch, ResetMode, ScaleInvariance, SgdpConfig,
    StableSpamConfig, WidthRole, WidthScaledAdamWConfig,
};

/// How the gradient relates to the weight.
#[derive(Clone, Copy, Debug)]
enum Grad {
    Random,
    /// Orthogonal to each channel of the weight: the channel test fires.
    ChannelOrthogonal,
    /// Orthogonal to the whole weight: the layer test fires (when the channel test does not).
    LayerOrthogonal,
}

/// The devices with a fused path: flex, and wgpu (the CubeCL kernels) when compiled in and an
/// adapter answers.
fn fused_devices() -> Vec<(&'static str, Device)> {
    common::devices()
        .into_iter()
        .filter(|(name, _)| matches!(*name, "flex" | "wgpu"))
        .collect()
}

fn wave(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7 + seed * 13) as f32) * 0.61).sin() + 0.05)
        .collect()
}

/// Channel index of each flat element for a channel `axis` of `dims`.
fn channels(dims: &[usize], axis: usize) -> Vec<usize> {
    let inner: usize = dims[axis + 1..].iter().product();
    let n: usize = dims.iter().product();
    (0..n).map(|i| (i / inner) % dims[axis]).collect()
}

fn remove_radial(w: &[f32], g: &[f32], group: &[usize]) -> Vec<f32> {
    let groups = group.iter().max().map_or(0, |m| m + 1);
    let (mut wg, mut ww) = (vec![0.0f64; groups], vec![0.0f64; groups]);
    for i in 0..w.len() {
        wg[group[i]] += f64::from(w[i]) * f64::from(g[i]);
        ww[group[i]] += f64::from(w[i]) * f64::from(w[i]);
    }
    (0..w.len())
        .map(|i| g[i] - (f64::from(w[i]) * wg[group[i]] / ww[group[i]]) as f32)
        .collect()
}

fn gradient(w: &[f32], dims: &[usize], axis: usize, kind: Grad, seed: usize) -> Vec<f32> {
    let raw = wave(w.len(), seed + 100);
    match kind {
        Grad::Random => raw,
        Grad::ChannelOrthogonal => remove_radial(w, &raw, &channels(dims, axis)),
        Grad::LayerOrthogonal => remove_radial(w, &raw, &vec![0; w.len()]),
    }
}

fn close(label: &str, got: &[f32], want: &[f32]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 + 1e-4 * w.abs(),
            "{label}: element {i}: fused {g}, tensor ops {w}"
        );
    }
}

/// Agreement to `1e-5` of the tensor's largest magnitude: at 1e19–1e30 an element that is the
/// small difference of two huge ones keeps only the rounding of those (a different branch
/// would differ at the tensor's own scale).
fn close_to_scale(label: &str, got: &[f32], want: &[f32]) {
    let scale = want.iter().fold(0.0f32, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-30 + 1e-5 * scale,
            "{label}: element {i}: fused {g}, tensor ops {w} (scale {scale})"
        );
    }
}

/// Five steps with `fused` and `ops` from the same weights and gradients; the parameters agree
/// to the golden tolerance at every step.
fn agree<O: Optimizer, const D: usize>(
    label: &str,
    fused: &O,
    ops: &O,
    dims: [usize; D],
    axis: usize,
    kind: Grad,
    device: &Device,
) {
    agree_at(label, fused, ops, (dims, axis), kind, (1.0, 1.0), device);
}

/// [`agree`] with the weights scaled by `ws` and every gradient by `gs`.
fn agree_at<O: Optimizer, const D: usize>(
    label: &str,
    fused: &O,
    ops: &O,
    (dims, axis): ([usize; D], usize),
    kind: Grad,
    (ws, gs): (f32, f32),
    device: &Device,
) {
    let t = |v: Vec<f32>| Tensor::<D>::from_data(TensorData::new(v, dims), device);
    let n: usize = dims.iter().product();
    let start: Vec<f32> = wave(n, 1).iter().map(|x| x * ws).collect();
    let (mut a, mut b) = (t(start.clone()), t(start));
    let (mut sa, mut sb) = (None, None);
    for k in 0..5 {
        let w = common::values(b.clone());
        let g: Vec<f32> = gradient(&w, &dims, axis, kind, k)
            .iter()
            .map(|x| x * gs)
            .collect();
        (a, sa) = fused.step(1e-2, a, t(g.clone()), sa);
        (b, sb) = ops.step(1e-2, b, t(g), sb);
        let label = format!("{label} {dims:?} {kind:?} ×({ws:e}, {gs:e}) step {k}");
        let (got, want) = (common::values(a.clone()), common::values(b.clone()));
        if (ws, gs) == (1.0, 1.0) {
            close(&label, &got, &want);
        } else {
            close_to_scale(&label, &got, &want);
        }
    }
}

const KINDS: [Grad; 3] = [Grad::Random, Grad::ChannelOrthogonal, Grad::LayerOrthogonal];

/// [`agree`] on a conv kernel (channel axis 0), a bias, a Linear weight and a rank-3 tensor
/// (axis 1), for every kind of gradient; `build(axis, fused)` makes the optimizer.
fn every_shape<O: Optimizer>(label: &str, build: impl Fn(usize, bool) -> O, device: &Device) {
    for kind in KINDS {
        let (fused, ops) = (build(0, true), build(0, false));
        agree(label, &fused, &ops, [8, 4, 3, 3], 0, kind, device);
        agree(label, &fused, &ops, [7], 0, kind, device);
        let (fused, ops) = (build(1, true), build(1, false));
        agree(label, &fused, &ops, [6, 5], 1, kind, device);
        agree(label, &fused, &ops, [3, 4, 5], 1, kind, device);
    }
}

/// Every catalog entry with a fused path agrees with its tensor ops on every shape, kind of
/// gradient and channel axis.
#[test]
fn every_fused_optimizer_of_the_catalog_matches_its_tensor_ops() {
    use common::catalog::{Entry, OptimizerVisitor, Settings, for_each_optimizer};
    struct Agree(Vec<&'static str>);
    impl OptimizerVisitor for Agree {
        fn visit<O: Optimizer>(&mut self, entry: &Entry, build: &dyn Fn(Settings) -> O) {
            if !entry.fused {
                return;
            }
            let build = |axis: usize, fused: bool| build(Settings::fused(fused, axis));
            for (name, device) in fused_devices() {
                every_shape(&format!("{} on {name}", entry.name), build, &device);
            }
            self.0.push(entry.name);
        }
    }
    let mut agree = Agree(Vec::new());
    for_each_optimizer(&mut agree);
    assert!(agree.0.len() >= 4, "fused entries: {:?}", agree.0);
}

#[test]
fn fused_adamp_matches_its_tensor_ops() {
    let configs = [
        AdamPConfig::new(),
        AdamPConfig::new().with_weight_decay(0.1),
        AdamPConfig::new()
            .with_weight_decay(0.1)
            .with_nesterov(true),
        AdamPConfig::new().with_delta(0.0).with_weight_decay(0.05),
        AdamPConfig::new()
            .with_zero_is_invariant(false)
            .with_wd_ratio(0.3),
        AdamPConfig::new().with_weight_decay(0.1).with_caution(true),
        AdamPConfig::new()
            .with_nesterov(true)
            .with_caution(true)
            .with_zero_is_invariant(false),
    ];
    for ((name, device), config) in fused_devices()
        .into_iter()
        .flat_map(|d| configs.iter().map(move |c| (d.clone(), c)))
    {
        let label = format!("{config:?} on {name}");
        let build = |axis: usize, fused: bool| {
            config
                .clone()
                .with_channel_axis(axis)
                .with_fused(fused)
                .build()
        };
        // The kernels do not apply the cautious mask: on wgpu a cautious step takes the tensor
        // ops.
        let cube_cautious = name == "wgpu" && config.projection.caution;
        let fused = build(0, true).takes_fused_path(&Tensor::<2>::zeros([2, 2], &device));
        assert_eq!(fused, !cube_cautious, "{label}");
        assert!(!build(0, false).takes_fused_path(&Tensor::<2>::zeros([2, 2], &device)));
        every_shape(&label, build, &device);
    }
}

#[test]
fn fused_sgdp_matches_its_tensor_ops() {
    let configs = [
        SgdpConfig::new().with_momentum(0.9),
        SgdpConfig::new()
            .with_momentum(0.9)
            .with_weight_decay(1e-3)
            .with_dampening(0.1),
        SgdpConfig::new()
            .with_momentum(0.9)
            .with_nesterov(true)
            .with_weight_decay(1e-3),
        SgdpConfig::new()
            .with_momentum(0.9)
            .with_project_momentum_buffer(false),
        SgdpConfig::new(),
        SgdpConfig::new()
            .with_momentum(0.9)
            .with_weight_decay(1e-3)
            .with_caution(true),
        SgdpConfig::new()
            .with_momentum(0.9)
            .with_nesterov(true)
            .with_caution(true),
        SgdpConfig::new()
            .with_momentum(0.9)
            .with_dampening(0.1)
            .with_weight_decay(1e-3)
            .with_caution(true),
    ];
    for ((name, device), config) in fused_devices()
        .into_iter()
        .flat_map(|d| configs.iter().map(move |c| (d.clone(), c)))
    {
        let label = format!("{config:?} on {name}");
        let build = |axis: usize, fused: bool| {
            config
                .clone()
                .with_channel_axis(axis)
                .with_fused(fused)
                .build()
        };
        every_shape(&label, build, &device);
    }
}

/// The cautious flex loops on tensors of several chunks (a convolution's runs, a Linear's rows,
/// a vector), for every kind of gradient: the mask's count and the second projection's dots
/// summed over chunks, the same result as the tensor ops.
#[test]
fn fused_cautious_steps_match_their_tensor_ops_across_chunks() {
    let device = burn::tensor::Device::flex();
    for kind in KINDS {
        let adamp = |axis: usize, fused: bool| {
            AdamPConfig::new()
                .with_weight_decay(0.1)
                .with_caution(true)
                .with_channel_axis(axis)
                .with_fused(fused)
                .build()
        };
        let sgdp = |axis: usize, fused: bool| {
            SgdpConfig::new()
                .with_momentum(0.9)
                .with_caution(true)
                .with_channel_axis(axis)
                .with_fused(fused)
                .build()
        };
        let label = "cautious AdamP, large";
        agree(
            label,
            &adamp(0, true),
            &adamp(0, false),
            [64, 32, 3, 3],
            0,
            kind,
            &device,
        );
        agree(
            label,
            &adamp(1, true),
            &adamp(1, false),
            [300, 70],
            1,
            kind,
            &device,
        );
        agree(
            label,
            &adamp(0, true),
            &adamp(0, false),
            [40_000],
            0,
            kind,
            &device,
        );
        let label = "cautious SGDP, large";
        agree(
            label,
            &sgdp(0, true),
            &sgdp(0, false),
            [64, 32, 3, 3],
            0,
            kind,
            &device,
        );
        agree(
            label,
            &sgdp(1, true),
            &sgdp(1, false),
            [300, 70],
            1,
            kind,
            &device,
        );
    }
}

#[test]
fn fused_width_scaled_adamw_matches_its_tensor_ops() {
    let device = burn::tensor::Device::flex();
    let config = WidthScaledAdamWConfig::new(64, 256).with_weight_decay(0.1);
    for role in [WidthRole::Matrix, WidthRole::Vector] {
        let fused = config.build(role);
        let ops = config.clone().with_fused(false).build(role);
        let label = format!("width-scaled AdamW, {role:?}");
        for kind in KINDS {
            agree(&label, &fused, &ops, [6, 5], 1, kind, &device);
            agree(&label, &fused, &ops, [7], 0, kind, &device);
        }
    }
}

/// Stable-SPAM over 12 steps with a 50× spike at step 6 (so AdaClip clips), a reset every 4
/// steps in both timings, AMSGrad, the cosine multiplier and decay.
#[test]
fn fused_stable_spam_matches_its_tensor_ops() {
    let configs = [
        StableSpamConfig::new(),
        StableSpamConfig::new()
            .with_reset_interval(4)
            .with_amsgrad(true)
            .with_weight_decay(0.1)
            .with_total_steps(Some(12)),
        StableSpamConfig::new()
            .with_reset_interval(4)
            .with_reset_mode(ResetMode::Clean),
    ];
    for ((name, device), config) in fused_devices()
        .into_iter()
        .flat_map(|d| configs.iter().map(move |c| (d.clone(), c)))
    {
        let label = format!("{config:?} on {name}");
        let (fused, ops) = (
            config.clone().build(),
            config.clone().with_fused(false).build(),
        );
        // On wgpu 20,000 elements take the kernels by blocks; up to 8192, one cube.
        for n in [20_000, 288, 7] {
            let t = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), &device);
            let (mut a, mut b) = (t(wave(n, 1)), t(wave(n, 1)));
            let (mut sa, mut sb) = (None, None);
            for k in 0..12 {
                let spike = if k == 6 { 50.0 } else { 1.0 };
                let g: Vec<f32> = wave(n, k + 20).iter().map(|x| x * spike).collect();
                (a, sa) = fused.step(1e-2, a, t(g.clone()), sa);
                (b, sb) = ops.step(1e-2, b, t(g), sb);
                close(
                    &format!("{label} [{n}] step {k}"),
                    &common::values(a.clone()),
                    &common::values(b.clone()),
                );
            }
        }
    }
}

/// The fused paths apply to flex tensors and f32 tensors on wgpu; the others take the tensor
/// ops.
#[test]
fn other_backends_and_dtypes_take_the_tensor_ops() {
    let adamp = AdamPConfig::new().build();
    for (name, device) in common::devices() {
        let p = Tensor::<2>::zeros([3, 3], &device);
        assert_eq!(adamp.takes_fused_path(&p), name != "ndarray", "{name}");
    }
    let flex = Tensor::<2>::zeros([3, 3], &Device::flex());
    for half in [FloatDType::F16, FloatDType::BF16] {
        assert!(adamp.takes_fused_path(&flex.clone().cast(half)), "{half:?}");
    }
    assert!(!adamp.takes_fused_path(&flex.cast(FloatDType::F64)));
}

/// The values of a tensor in `dtype`, read back as f32 (exact for f16 and bf16).
fn cast_values<const D: usize>(t: Tensor<D>, dtype: FloatDType) -> Vec<f32> {
    common::values(t.cast(dtype).cast(FloatDType::F32))
}

/// Five fused steps of an f16/bf16 parameter give, bit for bit, the fused f32 step of the same
/// values rounded to the half type (the conversions happen inside the passes, the arithmetic
/// and the state are f32), and agree with the tensor ops (which cast the whole tensor) within
/// one rounding of the half type.
fn half_agrees<O: Optimizer, const D: usize>(
    label: &str,
    (fused, ops): (&O, &O),
    (dims, axis): ([usize; D], usize),
    kind: Grad,
    dtype: FloatDType,
) {
    let device = Device::flex();
    let t = |v: Vec<f32>| Tensor::<D>::from_data(TensorData::new(v, dims), &device).cast(dtype);
    let n: usize = dims.iter().product();
    let mut p = t(wave(n, 1));
    let mut q = p.clone();
    let (mut s_half, mut s_f32, mut s_ops) = (None, None, None);
    let epsilon = if dtype == FloatDType::F16 {
        2e-3
    } else {
        1.6e-2
    };
    for k in 0..5 {
        let w = cast_values(p.clone(), FloatDType::F32);
        let g = t(gradient(&w, &dims, axis, kind, k));
        let wide = |x: &Tensor<D>| x.clone().cast(FloatDType::F32);
        let (f32_step, s) = fused.step(1e-2, wide(&p), wide(&g), s_f32);
        s_f32 = s;
        let (half_step, s) = fused.step(1e-2, p, g.clone(), s_half);
        s_half = s;
        let label = format!("{label} {dims:?} {kind:?} {dtype:?} step {k}");
        assert_eq!(half_step.dtype(), dtype.into(), "{label}");
        let (got, want) = (
            cast_values(half_step.clone(), FloatDType::F32),
            cast_values(f32_step, dtype),
        );
        let differ = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(
            differ.count(),
            0,
            "{label}: fused half vs fused f32 rounded"
        );
        let ops_step;
        (ops_step, s_ops) = ops.step(1e-2, q, g, s_ops);
        let ops_values = cast_values(ops_step.clone(), FloatDType::F32);
        for (i, (a, b)) in got.iter().zip(&ops_values).enumerate() {
            assert!(
                (a - b).abs() <= epsilon * b.abs().max(1e-2),
                "{label}: element {i}: fused {a}, tensor ops {b}"
            );
        }
        (p, q) = (half_step, ops_step);
    }
}

/// Every fused catalog entry on f16 and bf16 parameters, on every shape and kind of gradient.
#[test]
fn half_precision_parameters_take_the_fused_loops_with_the_same_arithmetic() {
    use common::catalog::{Entry, OptimizerVisitor, Settings, for_each_optimizer};
    struct Half(Vec<&'static str>);
    impl OptimizerVisitor for Half {
        fn visit<O: Optimizer>(&mut self, entry: &Entry, build: &dyn Fn(Settings) -> O) {
            if !entry.fused {
                return;
            }
            let pair = |axis| {
                let fused = build(Settings::fused(true, axis));
                (fused, build(Settings::fused(false, axis)))
            };
            let (conv, linear) = (pair(0), pair(1));
            for dtype in [FloatDType::F16, FloatDType::BF16] {
                for kind in KINDS {
                    let conv = (&conv.0, &conv.1);
                    half_agrees(entry.name, conv, ([8, 4, 3, 3], 0), kind, dtype);
                    half_agrees(entry.name, conv, ([40_000], 0), kind, dtype);
                    half_agrees(entry.name, (&linear.0, &linear.1), ([6, 5], 1), kind, dtype);
                }
            }
            self.0.push(entry.name);
        }
    }
    let mut half = Half(Vec::new());
    for_each_optimizer(&mut half);
    assert!(half.0.len() >= 4, "fused entries: {:?}", half.0);
}

/// Weight and gradient magnitudes near f32's range limits, `(weight, gradient)`: squared in f32
/// they underflow (1e-38) or overflow (beyond 1.8e19).
const EXTREMES: [(f32, f32); 8] = [
    (1.0, 1e-38),
    (1.0, 1e19),
    (1.0, 1e20),
    (1.0, 1e30),
    (1e20, 1.0),
    (1e30, 1e-3),
    (1e-38, 1.0),
    (1e19, 1e19),
];

/// The scale-invariance test in f64 (the fused loops' statistics): channel view first, then
/// layer view.
fn reference_branch(
    w: &[f32],
    g: &[f32],
    dims: &[usize],
    axis: usize,
    inv: &ScaleInvariance,
) -> ProjectionBranch {
    let (group, n) = (channels(dims, axis), dims[axis]);
    let (mut dot, mut ww, mut gg) = (vec![0.0f64; n], vec![0.0f64; n], vec![0.0f64; n]);
    for i in 0..w.len() {
        let (p, q) = (f64::from(w[i]), f64::from(g[i]));
        dot[group[i]] += p * q;
        ww[group[i]] += p * p;
        gg[group[i]] += q * q;
    }
    let eps = inv.epsilon;
    let cos = |d: f64, w: f64, q: f64| d.abs() / (q.sqrt().max(eps) * w.sqrt().max(eps));
    let max_cos = (0..n)
        .map(|c| cos(dot[c], ww[c], gg[c]))
        .fold(f64::NEG_INFINITY, f64::max);
    let total = |v: &[f64]| v.iter().sum::<f64>();
    let numel = w.len() as f64;
    if max_cos < inv.delta / (numel / n as f64).sqrt() {
        ProjectionBranch::Channel
    } else if cos(total(&dot), total(&ww), total(&gg)) < inv.delta / numel.sqrt() {
        ProjectionBranch::Layer
    } else {
        ProjectionBranch::None
    }
}

/// The tensor ops' branch equals the f64 test's at `(ws, gs)`; then AdamP's and SGDP's fused
/// steps agree with their tensor ops there.
fn extreme_case<const D: usize>(dims: [usize; D], axis: usize, (ws, gs): (f32, f32)) {
    let device = Device::flex();
    let t = |v: &[f32]| Tensor::<D>::from_data(TensorData::new(v.to_vec(), dims), &device);
    let n: usize = dims.iter().product();
    let w: Vec<f32> = wave(n, 1).iter().map(|x| x * ws).collect();
    for kind in KINDS {
        let g: Vec<f32> = gradient(&w, &dims, axis, kind, 0)
            .iter()
            .map(|x| x * gs)
            .collect();
        let inv = *SgdpConfig::new()
            .with_channel_axis(axis)
            .build()
            .scale_invariance();
        let want = reference_branch(&w, &g, &dims, axis, &inv);
        let got = common::branch(inv.branch(&t(&w), &t(&g)));
        assert_eq!(
            got, want,
            "tensor-op branch {dims:?} {kind:?} ×({ws:e}, {gs:e})"
        );

        both_agree(&device, (dims, axis), kind, (ws, gs));
    }
}

/// AdamP's and SGDP's fused steps agree with their tensor ops on `device` at `(ws, gs)`.
fn both_agree<const D: usize>(
    device: &Device,
    (dims, axis): ([usize; D], usize),
    kind: Grad,
    (ws, gs): (f32, f32),
) {
    let sgdp = |fused: bool| {
        SgdpConfig::new()
            .with_momentum(0.9)
            .with_weight_decay(1e-3)
            .with_channel_axis(axis)
            .with_fused(fused)
            .build()
    };
    let label = "SGDP near the range limits";
    agree_at(
        label,
        &sgdp(true),
        &sgdp(false),
        (dims, axis),
        kind,
        (ws, gs),
        device,
    );
    let adamp = |fused: bool| {
        AdamPConfig::new()
            .with_weight_decay(0.1)
            .with_channel_axis(axis)
            .with_fused(fused)
            .build()
    };
    let label = "AdamP near the range limits";
    agree_at(
        label,
        &adamp(true),
        &adamp(false),
        (dims, axis),
        kind,
        (ws, gs),
        device,
    );
}

/// Seven steps of `fused` and `ops` (the same wrapper around the fused and the tensor-op base)
/// on a conv kernel whose gradient fires the channel-wise projection, the third gradient holding
/// a NaN, on every device with a fused path (flex's loops, wgpu's kernels): the parameters
/// agree at every step, and the NaN step keeps the weight.
fn nap_agrees<O: Optimizer>(label: &str, fused: &O, ops: &O) {
    for (name, device) in fused_devices() {
        nap_agrees_on(&format!("{label} on {name}"), fused, ops, &device);
    }
}

fn nap_agrees_on<O: Optimizer>(label: &str, fused: &O, ops: &O, device: &Device) {
    let dims = [8, 4, 3, 3];
    let t = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, dims), device);
    let start = wave(8 * 4 * 9, 1);
    let (mut a, mut b) = (t(start.clone()), t(start));
    let (mut sa, mut sb) = (None, None);
    for k in 0..7 {
        let before = common::values(a.clone());
        let mut g = gradient(
            &common::values(b.clone()),
            &dims,
            0,
            Grad::ChannelOrthogonal,
            k,
        );
        if k == 2 {
            g[5] = f32::NAN;
        }
        (a, sa) = fused.step(1e-2, a, t(g.clone()), sa);
        (b, sb) = ops.step(1e-2, b, t(g), sb);
        let (got, want) = (common::values(a.clone()), common::values(b.clone()));
        close(&format!("{label} step {k}"), &got, &want);
        if k == 2 {
            assert_eq!(
                got, before,
                "{label}: a NaN gradient's step keeps the weight"
            );
        }
    }
}

/// NaP around each of this crate's fused optimizers (its norm summed in the base's pass that
/// writes the weight, then one rescale) agrees with NaP around the same optimizer on its tensor
/// ops, projecting at every step and at every second one.
#[test]
fn nap_around_a_fused_optimizer_matches_its_tensor_ops() {
    for every in [1, 2] {
        let nap = NapConfig::new().with_project_every(every);
        let adamp = |f| {
            AdamPConfig::new()
                .with_weight_decay(0.1)
                .with_fused(f)
                .build()
        };
        nap_agrees(
            "NaP(AdamP)",
            &nap.wrap(adamp(true)),
            &nap.wrap(adamp(false)),
        );
        let sgdp = |f| SgdpConfig::new().with_momentum(0.9).with_fused(f).build();
        nap_agrees("NaP(SGDP)", &nap.wrap(sgdp(true)), &nap.wrap(sgdp(false)));
        let spam = |f| StableSpamConfig::new().with_fused(f).build();
        nap_agrees(
            "NaP(Stable-SPAM)",
            &nap.wrap(spam(true)),
            &nap.wrap(spam(false)),
        );
        let adamw = |f| {
            WidthScaledAdamWConfig::new(16, 32)
                .with_weight_decay(1e-2)
                .with_fused(f)
                .build(WidthRole::Matrix)
        };
        nap_agrees(
            "NaP(WS-AdamW)",
            &nap.wrap(adamw(true)),
            &nap.wrap(adamw(false)),
        );
        let adamc = |f| AdamCConfig::new().with_fused(f).build(true);
        nap_agrees(
            "NaP(AdamC)",
            &nap.wrap(adamc(true)),
            &nap.wrap(adamc(false)),
        );
    }
}

/// The CubeCL kernels agree with wgpu's tensor ops at weights and gradients of 1e19–1e30
/// (each channel's statistics are scaled by its largest element, as the tensor ops scale the
/// tensor's). Subnormal scales are left out: a GPU may flush them to zero.
#[test]
fn kernels_and_tensor_ops_agree_at_large_magnitudes_on_wgpu() {
    for (name, device) in fused_devices() {
        if name != "wgpu" {
            continue;
        }
        for scales in [(1e30, 1e-3), (1e19, 1e19), (1.0, 1e25)] {
            for kind in KINDS {
                both_agree(&device, ([8, 4, 3, 3], 0), kind, scales);
                both_agree(&device, ([6, 5], 1), kind, scales);
            }
        }
    }
}

#[test]
fn fused_and_tensor_ops_agree_near_f32s_range_limits() {
    for scales in EXTREMES {
        extreme_case([8, 4, 3, 3], 0, scales);
        extreme_case([6, 5], 1, scales);
        extreme_case([3, 4, 5], 1, scales);
    }
}

/// `f` on a rayon pool of `threads` threads (the fused loops split over the current pool).
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
        .install(f)
}

/// The bits of `steps` fused steps from the same weights and gradients.
fn trajectory_bits<O: Optimizer, const D: usize>(
    optim: &O,
    (dims, axis): ([usize; D], usize),
    kind: Grad,
    steps: usize,
) -> Vec<u32> {
    let device = Device::flex();
    let t = |v: Vec<f32>| Tensor::<D>::from_data(TensorData::new(v, dims), &device);
    let n: usize = dims.iter().product();
    let mut p = t(wave(n, 1));
    let mut state = None;
    let mut bits = Vec::new();
    for k in 0..steps {
        let w = common::values(p.clone());
        let g = gradient(&w, &dims, axis, kind, k);
        (p, state) = optim.step(1e-2, p, t(g), state);
        bits.extend(common::values(p.clone()).iter().map(|x| x.to_bits()));
    }
    bits
}

/// Restores the widest vectors when dropped (a failing assertion included).
struct WidestVectors;

impl WidestVectors {
    fn limit(bits: u32) -> Self {
        scaleinv_optim::limit_flex_vector_width(bits);
        Self
    }
}

impl Drop for WidestVectors {
    fn drop(&mut self) {
        scaleinv_optim::limit_flex_vector_width(512);
    }
}

/// Every fused optimizer of the catalog gives the same bits on 1, 2 and 3 threads and with the
/// loops compiled for 512-bit (AVX-512), 256-bit (AVX2) and 128-bit vectors (whichever of them
/// this CPU has; the others fall back to the next narrower), on tensors large enough to be
/// split (a conv kernel, a Linear weight, a long bias), with the projection firing
/// channel-wise, layer-wise and not at all.
#[test]
fn fused_steps_give_the_same_bits_on_any_number_of_threads_and_vector_width() {
    use common::catalog::{Entry, OptimizerVisitor, Settings, for_each_optimizer};
    struct Bits(Vec<&'static str>);
    impl OptimizerVisitor for Bits {
        fn visit<O: Optimizer>(&mut self, entry: &Entry, build: &dyn Fn(Settings) -> O) {
            if !entry.fused {
                return;
            }
            let (conv, linear) = (
                build(Settings::fused(true, 0)),
                build(Settings::fused(true, 1)),
            );
            for kind in KINDS {
                let runs = |threads, width| {
                    let _width = WidestVectors::limit(width);
                    on_threads(threads, || {
                        let mut bits = trajectory_bits(&conv, ([192, 96, 3, 3], 0), kind, 3);
                        bits.extend(trajectory_bits(&linear, ([640, 320], 1), kind, 3));
                        bits.extend(trajectory_bits(&conv, ([300_000], 0), kind, 2));
                        bits
                    })
                };
                let one = runs(1, 512);
                for (threads, width) in [(2, 512), (3, 512), (1, 256), (2, 256), (1, 128)] {
                    let differ = one
                        .iter()
                        .zip(&runs(threads, width))
                        .filter(|(a, b)| a != b)
                        .count();
                    assert_eq!(
                        differ, 0,
                        "{} {kind:?}: 1 thread at 512 bits vs {threads} at {width}",
                        entry.name
                    );
                }
            }
            self.0.push(entry.name);
        }
    }
    let mut bits = Bits(Vec::new());
    for_each_optimizer(&mut bits);
    assert!(bits.0.len() >= 4, "fused entries: {:?}", bits.0);
}

/// A parameter whose buffer another tensor shares (a model clone kept for EMA or evaluation)
/// is written to a fresh buffer: the clone keeps the old values, the step gives the same bits.
#[test]
fn a_shared_parameter_buffer_is_left_as_it_was() {
    let device = Device::flex();
    let dims = [16, 8, 3, 3];
    let t = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, dims), &device);
    let start = wave(16 * 8 * 9, 1);
    let g = gradient(&start, &dims, 0, Grad::ChannelOrthogonal, 0);
    let adamp = AdamPConfig::new().with_weight_decay(0.1).build();
    let sgdp = SgdpConfig::new().with_momentum(0.9).build();
    let spam = StableSpamConfig::new().build();
    let alone = |step: &dyn Fn(Tensor<4>) -> Tensor<4>| common::values(step(t(start.clone())));
    let shared = |step: &dyn Fn(Tensor<4>) -> Tensor<4>| {
        let p = t(start.clone());
        let keep = p.clone();
        let out = common::values(step(p));
        assert_eq!(common::values(keep), start, "the shared buffer was written");
        out
    };
    type Step<'a> = Box<dyn Fn(Tensor<4>) -> Tensor<4> + 'a>;
    let steps: [(&str, Step); 3] = [
        (
            "AdamP",
            Box::new(|p| adamp.step(1e-2, p, t(g.clone()), None).0),
        ),
        (
            "SGDP",
            Box::new(|p| sgdp.step(1e-2, p, t(g.clone()), None).0),
        ),
        (
            "Stable-SPAM",
            Box::new(|p| spam.step(1e-2, p, t(g.clone()), None).0),
        ),
    ];
    for (name, step) in &steps {
        assert_eq!(alone(step.as_ref()), shared(step.as_ref()), "{name}");
    }
}
