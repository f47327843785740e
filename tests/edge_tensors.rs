//! Edge tensors through every optimizer of the crate: all-zero weights (zero-initialised
//! heads), all-zero gradients, empty tensors and every rank from 1 to 6. No step may panic or
//! produce a NaN, and an empty tensor stays empty.

mod common;

use burn::optim::{AdamConfig, Optimizer};
use burn::tensor::{Device, Tensor, TensorData};
use common::catalog::{Entry, OptimizerVisitor, Settings, for_each_optimizer};
use scaleinv::{AdamPConfig, NapConfig, SgdpConfig};

/// `[2, 3, 2, 3, 2, 3]` cut to rank `D`.
fn shape<const D: usize>() -> [usize; D] {
    let mut s = [0; D];
    for (i, d) in s.iter_mut().enumerate() {
        *d = 2 + i % 2;
    }
    s
}

fn filled<const D: usize>(
    dims: [usize; D],
    f: impl Fn(usize) -> f32,
    device: &Device,
) -> Tensor<D> {
    let n: usize = dims.iter().product();
    Tensor::from_data(
        TensorData::new((0..n).map(f).collect::<Vec<f32>>(), dims),
        device,
    )
}

/// Three steps of `optim` from `param` with gradients from `grad(k)`; every value finite.
fn run<O: Optimizer, const D: usize>(
    label: &str,
    optim: &O,
    param: Tensor<D>,
    grad: impl Fn(usize) -> Tensor<D>,
) -> Tensor<D> {
    let dims = param.dims();
    let mut param = param;
    let mut state = None;
    for k in 0..3 {
        let (next, next_state) = optim.step(1e-2, param, grad(k), state);
        assert_eq!(next.dims(), dims, "{label}: step {k} changed the shape");
        // Nothing to read in an empty tensor (and reading one back from wgpu overflows a
        // subtraction inside CubeCL's contiguity check in debug builds).
        if next.shape().num_elements() > 0 {
            let values = common::values(next.clone());
            assert!(
                values.iter().all(|v| v.is_finite()),
                "{label}: step {k} gave {values:?}"
            );
        }
        param = next;
        state = next_state;
    }
    param
}

/// Every edge case of rank `D` through `optim`; with `zero_weights` false (an optimizer that
/// holds the norms of the tensors it projects, for which a zero norm is an error), only the
/// cases whose weight is not zero.
fn edge_cases<O: Optimizer, const D: usize>(
    name: &str,
    optim: &O,
    zero_weights: bool,
    device: &Device,
) {
    let dims = shape::<D>();
    let wave = |i: usize| ((i as f32) * 0.37).sin();
    let label = |case: &str| format!("{name}, rank {D}, {case}");

    // All-zero gradient: Adam-type denominators are ε; nothing may divide by zero.
    let param = filled(dims, wave, device);
    run(&label("zero gradient"), optim, param, |_| {
        Tensor::<D>::zeros(dims, device)
    });
    if !zero_weights {
        return;
    }
    // All-zero weight (a zero-initialised head) with a real gradient.
    run(
        &label("zero weight"),
        optim,
        Tensor::<D>::zeros(dims, device),
        |k| filled(dims, move |i| wave(i + k), device),
    );
    // Both zero.
    run(
        &label("zero weight and gradient"),
        optim,
        Tensor::<D>::zeros(dims, device),
        |_| Tensor::<D>::zeros(dims, device),
    );
    // Empty tensor: the first axis has length 0.
    let mut empty = dims;
    empty[0] = 0;
    let out = run(
        &label("empty"),
        optim,
        Tensor::<D>::zeros(empty, device),
        |_| Tensor::<D>::zeros(empty, device),
    );
    assert_eq!(out.shape().num_elements(), 0);
}

fn all_ranks<O: Optimizer>(name: &str, optim: &O, zero_weights: bool, device: &Device) {
    edge_cases::<O, 1>(name, optim, zero_weights, device);
    edge_cases::<O, 2>(name, optim, zero_weights, device);
    edge_cases::<O, 3>(name, optim, zero_weights, device);
    edge_cases::<O, 4>(name, optim, zero_weights, device);
    edge_cases::<O, 5>(name, optim, zero_weights, device);
    edge_cases::<O, 6>(name, optim, zero_weights, device);
}

#[test]
fn edge_tensors_pass_through_every_optimizer() {
    struct Edges<'a>(&'a str, &'a Device, usize);
    impl OptimizerVisitor for Edges<'_> {
        fn visit<O: Optimizer>(&mut self, entry: &Entry, build: &dyn Fn(Settings) -> O) {
            let name = format!("{} [{}]", entry.name, self.0);
            all_ranks(
                &name,
                &build(Settings::default()),
                !entry.holds_norms,
                self.1,
            );
            self.2 += 1;
        }
    }
    for (device_name, device) in common::devices() {
        let mut edges = Edges(device_name, &device, 0);
        for_each_optimizer(&mut edges);
        assert_eq!(edges.2, common::catalog::names().len());
        // NaP holds nonzero norms; a zero-norm tensor is an error of `init_for`, tested in
        // tests/nap.rs, so only its unprojected ranks see zero weights.
        let adam = AdamConfig::new().with_epsilon(1e-8).build();
        let nap = NapConfig::new().with_min_rank(7).wrap(adam);
        let name = format!("nap (adam), unprojected [{device_name}]");
        all_ranks(&name, &nap, true, &device);
    }
}

/// NaP on the ranks it projects: non-zero weights, zero and real gradients, empty tensors.
#[test]
fn nap_projects_every_rank_without_nan() {
    let device = common::cpu_device();
    let nap = NapConfig::new().wrap(AdamConfig::new().with_epsilon(1e-8).build());
    fn check<const D: usize>(nap: &scaleinv::Nap<burn::optim::Adam>, device: &Device) {
        let dims = shape::<D>();
        let wave = |i: usize| ((i as f32) * 0.37).sin() + 0.1;
        let start = filled(dims, wave, device);
        let norm = common::values(start.clone().square().sum().sqrt())[0];
        let out = run(&format!("nap rank {D}"), nap, start, |k| {
            if k == 1 {
                Tensor::<D>::zeros(dims, device)
            } else {
                filled(dims, move |i| ((i + k) as f32).cos(), device)
            }
        });
        let after = common::values(out.square().sum().sqrt())[0];
        if D >= 2 {
            assert!(
                (after - norm).abs() < 1e-5 * norm,
                "rank {D}: {norm} -> {after}"
            );
        }
    }
    check::<1>(&nap, &device);
    check::<2>(&nap, &device);
    check::<3>(&nap, &device);
    check::<4>(&nap, &device);
    check::<5>(&nap, &device);
    check::<6>(&nap, &device);
}

/// A negative or non-finite learning rate stops the step with a message that names it, before
/// any weight turns into NaN.
#[test]
fn an_invalid_learning_rate_is_refused_by_every_optimizer() {
    let device = common::cpu_device();
    let param = filled([3, 2], |i| i as f32 + 1.0, &device);
    let grad = filled([3, 2], |i| 0.5 - i as f32, &device);
    fn refused<O: Optimizer>(name: &str, optim: &O, p: &Tensor<2>, g: &Tensor<2>) {
        for lr in [f64::NAN, f64::INFINITY, -1e-3] {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                optim.step(lr, p.clone(), g.clone(), None)
            }));
            let message = match result {
                Ok(_) => panic!("{name}: learning rate {lr} was accepted"),
                Err(e) => e.downcast_ref::<String>().cloned().unwrap_or_default(),
            };
            assert!(
                message.contains("learning rate"),
                "{name}, lr {lr}: {message}"
            );
        }
        // Zero is a valid rate (the end of a cosine schedule).
        optim.step(0.0, p.clone(), g.clone(), None);
    }
    struct Refused<'a>(&'a Tensor<2>, &'a Tensor<2>);
    impl OptimizerVisitor for Refused<'_> {
        fn visit<O: Optimizer>(&mut self, entry: &Entry, build: &dyn Fn(Settings) -> O) {
            refused(entry.name, &build(Settings::default()), self.0, self.1);
        }
    }
    for_each_optimizer(&mut Refused(&param, &grad));
}

/// The dtype of every tensor of a state.
fn state_dtypes<S: burn::optim::RecordState>(state: &Option<S>) -> Vec<burn::tensor::DType> {
    let mut sink = burn::optim::StateSink::default();
    if let Some(state) = state {
        state.state_flatten("s", &mut sink);
    }
    sink.tensors.iter().map(|(_, data)| data.dtype()).collect()
}

/// Five steps from an f16 or bf16 parameter: the parameter keeps its dtype, the state is f32,
/// every value is finite and the trajectory follows the f32 one to the low format's precision.
fn low_precision<O: Optimizer>(
    name: &str,
    optim: &O,
    formats: &[(burn::tensor::FloatDType, f32)],
    device: &Device,
) {
    use burn::tensor::DType;
    let dims = [4, 6];
    let wave = |i: usize| ((i as f32) * 0.61).sin() + 0.2;
    let grad = |k: usize| filled(dims, move |i| ((i + 3 * k) as f32 * 0.37).cos(), device);
    for &(format, tolerance) in formats {
        let label = format!("{name}, {format:?}");
        let (mut low, mut low_state) = (filled(dims, wave, device).cast(format), None);
        let (mut full, mut full_state) = (filled(dims, wave, device), None);
        for k in 0..5 {
            (low, low_state) = optim.step(1e-2, low, grad(k).cast(format), low_state);
            (full, full_state) = optim.step(1e-2, full, grad(k), full_state);
        }
        assert_eq!(low.dtype(), DType::from(format), "{label}: parameter dtype");
        let dtypes = state_dtypes(&low_state);
        assert!(
            !dtypes.is_empty() && dtypes.iter().all(|d| *d == DType::F32),
            "{label}: state dtypes {dtypes:?}"
        );
        let _ = full_state;
        let (low, full) = (common::values(low), common::values(full));
        for (l, f) in low.iter().zip(&full) {
            assert!(l.is_finite(), "{label}: {low:?}");
            assert!(
                (l - f).abs() <= tolerance * (1.0 + f.abs()),
                "{label}: {l} vs {f}"
            );
        }
    }
}

/// Half-precision parameters with f32 state, in the formats each backend stores: flex has
/// f16 and bf16, wgpu f16 (WGSL has no bf16), ndarray neither (it cannot create one).
#[test]
fn half_precision_parameters_keep_an_f32_state() {
    use burn::tensor::FloatDType::{BF16, F16};
    type Formats = [(burn::tensor::FloatDType, f32)];
    struct LowPrecision<'a>(&'a str, &'a Formats, &'a Device);
    impl OptimizerVisitor for LowPrecision<'_> {
        fn visit<O: Optimizer>(&mut self, entry: &Entry, build: &dyn Fn(Settings) -> O) {
            let name = format!("{} [{}]", entry.name, self.0);
            low_precision(&name, &build(Settings::default()), self.1, self.2);
        }
    }
    for (device_name, device) in common::devices() {
        let formats: &Formats = match device_name {
            "flex" => &[(F16, 1e-2), (BF16, 5e-2)],
            "wgpu" => &[(F16, 1e-2)],
            _ => continue,
        };
        for_each_optimizer(&mut LowPrecision(device_name, formats, &device));
    }
}

/// AdamP's reference counts an all-zero gradient (cosine 0) as scale-invariant and cuts the
/// tensor's decay by `wd_ratio`; `zero_is_invariant(false)` gives it the full decay.
#[test]
fn the_zero_tensor_quirk_is_the_default_and_can_be_turned_off() {
    let device = common::cpu_device();
    let param = filled([3, 4], |i| i as f32 + 1.0, &device);
    let zero = Tensor::<2>::zeros([3, 4], &device);
    let (lr, decay, ratio) = (0.1, 0.5, 0.1);
    let after = |zero_is_invariant: bool| {
        let config = AdamPConfig::new()
            .with_weight_decay(decay)
            .with_wd_ratio(ratio)
            .with_zero_is_invariant(zero_is_invariant);
        let (p, _) = config.build().step(lr, param.clone(), zero.clone(), None);
        let sgdp = SgdpConfig::new()
            .with_weight_decay(decay)
            .with_wd_ratio(ratio)
            .with_zero_is_invariant(zero_is_invariant);
        let (q, _) = sgdp.build().step(lr, param.clone(), zero.clone(), None);
        (common::values(p)[0], common::values(q)[0])
    };
    let (adamp, sgdp) = after(true);
    let cut = (1.0 - lr * decay * ratio) as f32;
    assert!(
        (adamp - cut).abs() < 1e-6 && (sgdp - cut).abs() < 1e-6,
        "{adamp} {sgdp}"
    );
    let (adamp, sgdp) = after(false);
    let full = (1.0 - lr * decay) as f32;
    assert!(
        (adamp - full).abs() < 1e-6 && (sgdp - full).abs() < 1e-6,
        "{adamp} {sgdp}"
    );
    // A real gradient is unaffected by the option.
    let grad = filled([3, 4], |i| (i as f32 * 0.7).sin(), &device);
    let step = |z: bool| {
        let config = AdamPConfig::new()
            .with_weight_decay(decay)
            .with_zero_is_invariant(z);
        common::values(config.build().step(lr, param.clone(), grad.clone(), None).0)
    };
    assert_eq!(step(true), step(false));
}
