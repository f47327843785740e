//! The CubeCL kernels of the fused steps against their tensor-op path (`fused(false)`) on
//! wgpu (Mesa's software Vulkan where there is no GPU), and the non-finite policy decided on
//! the device. The golden replays run the kernels on wgpu too (`golden.rs`).
//!
//! Compiled with this crate's `wgpu` feature; the tests pass without running anything when no
//! adapter answers, unless `SCALEINV_REQUIRE_WGPU=1`.
#![cfg(feature = "wgpu")]

mod common;

use burn::optim::Optimizer;
use burn::tensor::{Device, Tensor, TensorData};
use scaleinv_optim::{NonFinitePolicy, WidthRole, WidthScaledAdamWConfig};

/// The wgpu device, or `None` (with a notice) when no adapter answers.
fn wgpu() -> Option<Device> {
    let device = common::wgpu_device();
    if device.is_none() {
        assert!(
            std::env::var("SCALEINV_REQUIRE_WGPU").as_deref() != Ok("1"),
            "SCALEINV_REQUIRE_WGPU=1 but wgpu found no adapter"
        );
        eprintln!("wgpu: no adapter on this machine; the kernel tests are not run");
    }
    device
}

fn wave(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7 + seed * 13) as f32) * 0.61).sin() + 0.05)
        .collect()
}

fn close(label: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{label}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 + 1e-4 * w.abs(),
            "{label}: element {i}: kernel {g}, tensor ops {w}"
        );
    }
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|x| x.to_bits()).collect()
}

/// `steps` steps of `kernel` and `ops` from the same weights and gradients (`grad(k)` at step
/// `k`); the parameters agree to the golden tolerance at every step. Returns both runs' last
/// parameters and states.
fn agree<O: Optimizer, const D: usize>(
    label: &str,
    (kernel, ops): (&O, &O),
    dims: [usize; D],
    steps: usize,
    grad: impl Fn(usize, usize) -> Vec<f32>,
    device: &Device,
) {
    let t = |v: Vec<f32>| Tensor::<D>::from_data(TensorData::new(v, dims), device);
    let n: usize = dims.iter().product();
    let (mut a, mut b) = (t(wave(n, 1)), t(wave(n, 1)));
    let (mut sa, mut sb) = (None, None);
    for k in 0..steps {
        let g = grad(n, k);
        (a, sa) = kernel.step(1e-2, a, t(g.clone()), sa);
        (b, sb) = ops.step(1e-2, b, t(g), sb);
        close(
            &format!("{label} {dims:?} step {k}"),
            &common::values(a.clone()),
            &common::values(b.clone()),
        );
    }
}

#[test]
fn width_scaled_adamw_kernel_matches_its_tensor_ops() {
    let Some(device) = wgpu() else { return };
    let configs = [
        WidthScaledAdamWConfig::new(64, 256).with_weight_decay(0.1),
        WidthScaledAdamWConfig::new(64, 64),
        // AdamC's corrected decay shares the kernel.
        WidthScaledAdamWConfig::new(32, 128)
            .with_weight_decay(0.2)
            .with_corrected_decay(Some(2e-2)),
        WidthScaledAdamWConfig::new(64, 256).with_non_finite(NonFinitePolicy::Propagate),
    ];
    for config in configs {
        for role in [WidthRole::Matrix, WidthRole::Vector] {
            let kernel = config.build(role);
            let ops = config.clone().with_fused(false).build(role);
            let probe = Tensor::<2>::zeros([6, 5], &device);
            assert!(kernel.takes_fused_path(&probe));
            assert!(!ops.takes_fused_path(&probe));
            let label = format!("{config:?} {role:?}");
            let pair = (&kernel, &ops);
            agree(&label, pair, [6, 5], 6, wave, &device);
            agree(&label, pair, [7], 6, wave, &device);
            agree(&label, pair, [8, 4, 3, 3], 6, wave, &device);
            agree(&label, pair, [3000], 3, wave, &device);
        }
    }
}

/// Under `Skip`, a step whose gradient holds a NaN or ±∞ leaves the parameter and the state
/// bit for bit as they were, decided on the device; under `Propagate` it flows into both. The
/// lengths make the kernels read vectors of 4, 2 and 1 elements, and test the gradient by
/// blocks before the update (20,000 elements) or in the update's one cube (up to 8192).
#[test]
fn width_scaled_adamw_kernel_skips_non_finite_gradients_on_the_device() {
    let Some(device) = wgpu() else { return };
    for n in [20_000, 300, 30, 7] {
        let t = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), &device);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let label = format!("[{n}] {bad}");
            let optim = WidthScaledAdamWConfig::new(64, 256).build(WidthRole::Matrix);
            assert!(optim.takes_fused_path(&t(wave(n, 0))));
            // A first step with a bad gradient: the parameter is kept, the moments are zeros.
            let mut g = wave(n, 5);
            g[n / 2 + 1] = bad;
            let (p, s) = optim.step(1e-2, t(wave(n, 1)), t(g.clone()), None);
            assert_eq!(
                bits(&common::values(p.clone())),
                bits(&wave(n, 1)),
                "{label}"
            );
            let s = s.expect("state");
            assert!(common::values(s.moment_1.clone()).iter().all(|&x| x == 0.0));
            // Two good steps, then a bad one: everything as after the good ones.
            let (p, s) = optim.step(1e-2, p, t(wave(n, 6)), Some(s));
            let (p, s) = optim.step(1e-2, p, t(wave(n, 7)), s);
            let s = s.expect("state");
            let before = (
                bits(&common::values(p.clone())),
                bits(&common::values(s.moment_1.clone())),
                bits(&common::values(s.moment_2.clone())),
            );
            let (p, after) = optim.step(1e-2, p, t(g.clone()), Some(s));
            let after = after.expect("state");
            assert_eq!(bits(&common::values(p)), before.0, "{label}: parameter");
            assert_eq!(
                bits(&common::values(after.moment_1)),
                before.1,
                "{label}: m"
            );
            assert_eq!(
                bits(&common::values(after.moment_2)),
                before.2,
                "{label}: v"
            );
            // Propagate: the bad element reaches the parameter.
            let propagate = WidthScaledAdamWConfig::new(64, 256)
                .with_non_finite(NonFinitePolicy::Propagate)
                .build(WidthRole::Matrix);
            let (p, _) = propagate.step(1e-2, t(wave(n, 1)), t(g), None);
            let p = common::values(p);
            assert!(!p[n / 2 + 1].is_finite(), "{label}: propagated");
            assert!(p[0].is_finite(), "{label}: the other elements step");
        }
    }
}

/// AdamP's and SGDP's kernels under `Skip`: a bad gradient on a projected conv kernel leaves
/// the parameter and the state bit for bit as they were (the statistics and the decision run
/// on it, and the update kernel copies), decided on the device.
#[test]
fn projected_kernels_skip_non_finite_gradients_on_the_device() {
    use scaleinv_optim::{AdamPConfig, SgdpConfig};
    let Some(device) = wgpu() else { return };
    let dims = [8, 4, 3, 3];
    let n = 8 * 4 * 9;
    let t = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, dims), &device);
    let adamp = AdamPConfig::new().with_weight_decay(0.1).build();
    let sgdp = SgdpConfig::new()
        .with_momentum(0.9)
        .with_weight_decay(1e-3)
        .build();
    assert!(adamp.takes_fused_path(&t(wave(n, 0))));
    assert!(sgdp.takes_fused_path(&t(wave(n, 0))));
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut g = wave(n, 5);
        g[n / 3] = bad;
        // AdamP: two good steps, then the bad one.
        let (p, s) = adamp.step(1e-2, t(wave(n, 1)), t(wave(n, 6)), None);
        let (p, s) = adamp.step(1e-2, p, t(wave(n, 7)), s);
        let s = s.expect("state");
        let before = [
            bits(&common::values(p.clone())),
            bits(&common::values(s.moment_1.clone())),
            bits(&common::values(s.moment_2.clone())),
        ];
        let (p, s) = adamp.step(1e-2, p, t(g.clone()), Some(s));
        let s = s.expect("state");
        let after = [
            bits(&common::values(p)),
            bits(&common::values(s.moment_1)),
            bits(&common::values(s.moment_2)),
        ];
        assert_eq!(after, before, "AdamP, {bad}");
        // SGDP likewise.
        let (p, s) = sgdp.step(1e-2, t(wave(n, 1)), t(wave(n, 6)), None);
        let (p, s) = sgdp.step(1e-2, p, t(wave(n, 7)), s);
        let s = s.expect("state");
        let before = [
            bits(&common::values(p.clone())),
            bits(&common::values(s.momentum.clone())),
        ];
        let (p, s) = sgdp.step(1e-2, p, t(g), Some(s));
        let after = [
            bits(&common::values(p)),
            bits(&common::values(s.expect("state").momentum)),
        ];
        assert_eq!(after, before, "SGDP, {bad}");
    }
}

/// Stable-SPAM's kernels under `Skip`: a gradient whose clipped norm is not finite leaves the
/// parameter, the moments and the three statistics bit for bit as they were (the flag is
/// raised by the cube that finishes the norm and read by the update).
#[test]
fn stable_spam_kernels_skip_non_finite_gradients_on_the_device() {
    use scaleinv_optim::StableSpamConfig;
    let Some(device) = wgpu() else { return };
    // 20,000 elements: the kernels by blocks; the others one cube.
    for (n, amsgrad) in [
        (20_000, true),
        (20_001, false),
        (300, false),
        (30, true),
        (7, false),
    ] {
        let t = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), &device);
        let optim = StableSpamConfig::new().with_amsgrad(amsgrad).build();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let label = format!("[{n}] amsgrad {amsgrad} {bad}");
            let (p, s) = optim.step(1e-2, t(wave(n, 1)), t(wave(n, 6)), None);
            let (p, s) = optim.step(1e-2, p, t(wave(n, 7)), s);
            let s = s.expect("state");
            let look = |p: &Tensor<1>, s: &scaleinv_optim::StableSpamState<1>| {
                let mut all = vec![
                    bits(&common::values(p.clone())),
                    bits(&common::values(s.moments.moment_1.clone())),
                    bits(&common::values(s.moments.moment_2.clone())),
                    bits(&common::values(s.clip_threshold.clone())),
                    bits(&common::values(s.norm_mean.clone())),
                    bits(&common::values(s.norm_sq_mean.clone())),
                ];
                all.extend(
                    s.max_moment_2
                        .iter()
                        .map(|v| bits(&common::values(v.clone()))),
                );
                all
            };
            let before = look(&p, &s);
            let mut g = wave(n, 8);
            g[n / 2] = bad;
            let (p, s) = optim.step(1e-2, p, t(g), Some(s));
            assert_eq!(look(&p, &s.expect("state")), before, "{label}");
        }
    }
}

/// NaP's projection as kernels on wgpu (around AdamP's kernels and around Burn's Adam) against
/// the same steps on flex: the parameters agree at every step and keep the norm they started
/// with.
#[test]
fn nap_projection_kernels_hold_the_norm_like_flex() {
    use burn::optim::AdamConfig;
    use scaleinv_optim::{AdamPConfig, NapConfig};
    let Some(device) = wgpu() else { return };
    let flex = Device::flex();
    let dims = [8, 4, 3, 3];
    let n = 8 * 4 * 9;
    let on = |v: Vec<f32>, d: &Device| Tensor::<4>::from_data(TensorData::new(v, dims), d);
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nap = NapConfig::new();
    let start = wave(n, 1);
    let radius = norm(&start);
    // AdamP's kernels under NaP, against AdamP's fused loops under NaP on flex.
    let (a_opt, b_opt) = (
        nap.wrap(AdamPConfig::new().with_weight_decay(0.1).build()),
        nap.wrap(AdamPConfig::new().with_weight_decay(0.1).build()),
    );
    let (mut a, mut b) = (on(start.clone(), &device), on(start.clone(), &flex));
    let (mut sa, mut sb) = (None, None);
    for k in 0..6 {
        let g = wave(n, k + 30);
        (a, sa) = a_opt.step(1e-2, a, on(g.clone(), &device), sa);
        (b, sb) = b_opt.step(1e-2, b, on(g, &flex), sb);
        let (got, want) = (common::values(a.clone()), common::values(b.clone()));
        close(&format!("NaP(AdamP) step {k}"), &got, &want);
        assert!(
            (norm(&got) - radius).abs() <= 1e-5 * radius,
            "NaP(AdamP) norm at step {k}"
        );
    }
    // Burn's Adam under NaP: the wrapper's own route, the projection as kernels.
    let adam = || nap.wrap(AdamConfig::new().with_epsilon(1e-8).build());
    let (a_opt, b_opt) = (adam(), adam());
    let (mut a, mut b) = (on(start.clone(), &device), on(start, &flex));
    let (mut sa, mut sb) = (None, None);
    for k in 0..6 {
        let g = wave(n, k + 40);
        (a, sa) = a_opt.step(1e-2, a, on(g.clone(), &device), sa);
        (b, sb) = b_opt.step(1e-2, b, on(g, &flex), sb);
        let (got, want) = (common::values(a.clone()), common::values(b.clone()));
        close(&format!("NaP(Adam) step {k}"), &got, &want);
        assert!(
            (norm(&got) - radius).abs() <= 1e-5 * radius,
            "NaP(Adam) norm at step {k}"
        );
    }
}

/// The wrappers' `Skip` around Burn's Adam on wgpu (the gradient screened and the parameter
/// restored by kernels, Burn's fused operations in between) against the same steps on flex,
/// with a non-finite gradient at step 2: the parameters agree at every step, the bad step
/// keeps the parameter bit for bit, and the inner state steps on a zero gradient (the steps
/// after agree). Each shape runs with the gradient moved in (screened in place) and with a
/// clone of it kept (screened into a copy, the clone untouched); shapes above and below the
/// one-cube size.
#[test]
fn wrappers_around_burns_adam_skip_non_finite_gradients_on_the_device() {
    use burn::optim::AdamConfig;
    use scaleinv_optim::{GradientStabilizerConfig, NapConfig, RadialProjectionConfig};
    let Some(device) = wgpu() else { return };
    let adam = || AdamConfig::new().with_epsilon(1e-8).build();
    let nap = NapConfig::new();
    let radial = RadialProjectionConfig::new().with_weight_decay(1e-2);
    let stabilizer = GradientStabilizerConfig::new();
    for bad in [f32::NAN, f32::NEG_INFINITY] {
        for keep_clone in [false, true] {
            let case = BadStep {
                bad,
                keep_clone,
                device: &device,
            };
            case.run("NaP(Adam)", &nap.wrap(adam()), [64, 32, 3, 3]);
            case.run("NaP(Adam)", &nap.wrap(adam()), [8, 4, 3, 3]);
            case.run("NaP(Adam)", &nap.wrap(adam()), [300]);
            case.run("NaP(Adam)", &nap.wrap(adam()), [20000]);
            case.run("RadialProjection(Adam)", &radial.wrap(adam()), [96, 160]);
            case.run(
                "GradientStabilizer(Adam)",
                &stabilizer.wrap(adam()),
                [96, 160],
            );
        }
    }
}

/// A non-finite value in the gradient of step 2; the gradient moved into each step, or a
/// clone of it kept.
struct BadStep<'a> {
    bad: f32,
    keep_clone: bool,
    device: &'a Device,
}

impl BadStep<'_> {
    /// Five steps of `optim` on wgpu and on flex.
    fn run<O: Optimizer, const D: usize>(&self, label: &str, optim: &O, dims: [usize; D]) {
        let Self {
            bad,
            keep_clone,
            device,
        } = *self;
        let label = format!("{label}, {bad}, clone kept {keep_clone}");
        let label = label.as_str();
        let flex = Device::flex();
        let n: usize = dims.iter().product();
        let on = |v: Vec<f32>, d: &Device| Tensor::<D>::from_data(TensorData::new(v, dims), d);
        let (mut a, mut b) = (on(wave(n, 1), device), on(wave(n, 1), &flex));
        let (mut sa, mut sb) = (None, None);
        for k in 0..5 {
            let mut g = wave(n, k + 50);
            if k == 2 {
                g[n / 2] = bad;
            }
            let before = bits(&common::values(a.clone()));
            let grad = on(g.clone(), device);
            let kept = keep_clone.then(|| grad.clone());
            (a, sa) = optim.step(1e-2, a, grad, sa);
            (b, sb) = optim.step(1e-2, b, on(g.clone(), &flex), sb);
            let got = common::values(a.clone());
            close(
                &format!("{label} {dims:?} step {k}"),
                &got,
                &common::values(b.clone()),
            );
            if k == 2 {
                assert_eq!(
                    bits(&got),
                    before,
                    "{label} {dims:?}: the bad step wrote the parameter"
                );
            }
            if let Some(kept) = kept {
                let kept = common::values(kept);
                assert_eq!(
                    (kept.len(), kept[n / 2].to_bits(), kept[0].to_bits()),
                    (n, g[n / 2].to_bits(), g[0].to_bits()),
                    "{label} {dims:?} step {k}: the kept gradient was written"
                );
            }
        }
    }
}
