//! Saving and reloading the optimizer state: a run saved at step k, reloaded and continued
//! equals the uninterrupted run, bit for bit on the CPU backends.

mod common;

use burn::module::Module;
use burn::optim::AdamConfig;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use scaleinv::models::{Digits, DigitsCnn, DigitsCnnConfig};
use scaleinv::{
    AdamPConfig, CheckedLoad, NapConfig, NapScope, NormAffine, RecordMismatch, SgdpConfig,
    StableSpamConfig,
};

const BATCH: usize = 32;

fn batch(
    data: &Digits,
    step: usize,
    device: &Device,
) -> (
    burn::tensor::Tensor<4>,
    burn::tensor::Tensor<1, burn::tensor::Int>,
) {
    let indices: Vec<usize> = (0..BATCH)
        .map(|i| (step * BATCH + i) % data.len())
        .collect();
    data.select(&indices).to_tensors(device)
}

fn train(
    model: DigitsCnn,
    optim: &mut ModuleOptimizer,
    steps: std::ops::Range<usize>,
    data: &Digits,
    device: &Device,
) -> DigitsCnn {
    let mut model = model;
    for step in steps {
        let (x, y) = batch(data, step, device);
        let grads = GradientsParams::from_grads(model.loss(x, y).backward(), &model);
        model = optim.step(5e-3, model, grads);
    }
    model
}

fn weights(model: &DigitsCnn) -> Vec<Vec<f32>> {
    let record = model.clone().valid();
    vec![
        common::values(record.block1.conv.weight.val()),
        common::values(record.block2.conv.weight.val()),
        common::values(record.block3.conv.weight.val()),
        common::values(record.head.weight.val()),
        common::values(record.head.bias.as_ref().expect("head has a bias").val()),
        common::values(record.block1.norm.gamma.val()),
    ]
}

/// The device, the data and a freshly seeded small network.
fn setup() -> (Device, Digits, DigitsCnn) {
    let device = common::cpu_device().autodiff();
    device.seed(7);
    let init = DigitsCnnConfig {
        width: 4,
        classes: 10,
    }
    .init(&device);
    (device, Digits::load().unwrap(), init)
}

fn assert_resume_is_exact(
    name: &str,
    make: impl Fn(&DigitsCnn) -> ModuleOptimizer,
    via_file: bool,
) {
    let (device, data, init) = setup();

    let mut straight = make(&init);
    let uninterrupted = train(init.clone(), &mut straight, 0..6, &data, &device);

    let mut first = make(&init);
    let halfway = train(init.clone(), &mut first, 0..3, &data, &device);
    assert!(
        !first.to_record().is_empty(),
        "{name}: the optimizer saved no state"
    );
    // Burn reads a loaded record's tensors lazily: the file must outlive the next step.
    // One folder per call: the tests of this file run in parallel and each removes its own.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("scaleinv-resume-{}-{call}", std::process::id()));
    let mut resumed = if via_file {
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("optim.bpk");
        first.save(&path).unwrap();
        make(&halfway).try_load(&path, &halfway).unwrap()
    } else {
        make(&halfway)
            .try_load_record(first.to_record(), &halfway)
            .unwrap()
    };
    let resumed_model = train(halfway, &mut resumed, 3..6, &data, &device);
    std::fs::remove_dir_all(&dir).ok();

    assert_eq!(
        weights(&uninterrupted),
        weights(&resumed_model),
        "{name}: resumed run differs (via a file: {via_file})"
    );
}

/// Every optimizer of the catalog, through the record's bytes and through a file.
#[test]
fn every_optimizer_resumes_exactly() {
    for (entry, init_for) in common::catalog::module_optimizers::<DigitsCnn>() {
        assert_resume_is_exact(entry.name, init_for, false);
        assert_resume_is_exact(entry.name, init_for, true);
    }
}

#[test]
fn adamp_with_nesterov_resumes_exactly_from_a_file() {
    assert_resume_is_exact(
        "AdamP (Nesterov)",
        |m| AdamPConfig::new().with_nesterov(true).init_for(m),
        true,
    );
}

#[test]
fn stable_spam_resumes_exactly_across_a_reset() {
    // A reset at step 4 (after the reload), AMSGrad and the cosine multiplier: every field of
    // the state matters to the continued run.
    assert_resume_is_exact(
        "Stable-SPAM (reset, AMSGrad, cosine)",
        |_| {
            StableSpamConfig::new()
                .with_reset_interval(4)
                .with_amsgrad(true)
                .with_total_steps(Some(8))
                .with_weight_decay(1e-2)
                .init()
        },
        true,
    );
}

#[test]
fn nap_resumes_exactly_off_its_radius() {
    // Projection every 2 steps: at the reload (after step 3) the weights are off their radius,
    // so the radius must come from the saved state, together with Adam's moments.
    assert_resume_is_exact(
        "NaP (every 2 steps, rows, decayed scale)",
        |m| {
            NapConfig::new()
                .with_project_every(2)
                .with_scope(NapScope::Row)
                .with_norm_affine(NormAffine::DecayScale { rate: 0.5 })
                .init_for(AdamConfig::new().with_epsilon(1e-8).build(), m)
        },
        true,
    );
}

/// Three steps of AdamP on the seeded network: the model and its optimizer.
fn trained_adamp() -> (DigitsCnn, ModuleOptimizer) {
    let (device, data, init) = setup();
    let mut optim = AdamPConfig::new().init_for(&init);
    let model = train(init, &mut optim, 0..3, &data, &device);
    (model, optim)
}

#[test]
fn a_record_from_another_model_is_refused() {
    let (model, optim) = trained_adamp();
    // A model built afresh has new parameter ids: nothing in the record belongs to it.
    let (_, _, other) = setup();
    let err = AdamPConfig::new()
        .init_for(&other)
        .try_load_record(optim.to_record(), &other)
        .err()
        .expect("a foreign record must be refused");
    assert!(
        matches!(
            &err,
            RecordMismatch::UnknownParameter {
                saved_path: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("another model"), "{err}");
    // The model it was saved with loads it.
    assert!(
        AdamPConfig::new()
            .init_for(&model)
            .try_load_record(optim.to_record(), &model)
            .is_ok()
    );
}

#[test]
fn a_record_from_another_optimizer_is_refused() {
    let (model, adamp) = trained_adamp();
    let sgdp = SgdpConfig::new().with_momentum(0.9).init_for(&model);
    let err = sgdp
        .try_load_record(adamp.to_record(), &model)
        .err()
        .expect("AdamP's record loaded into SGDP");
    let RecordMismatch::OptimizerMismatch { saved, rebuilt, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(saved, &["moment_1", "moment_2", "time"]);
    assert!(rebuilt.is_empty(), "{err}");

    // Burn's Adam nests its moments under `momentum`: not AdamP's layout.
    let adam = ModuleOptimizer::from(AdamConfig::new().build());
    let err = adam.try_load_record(adamp.to_record(), &model).err();
    assert!(
        matches!(err, Some(RecordMismatch::OptimizerMismatch { .. })),
        "{err:?}"
    );
    // Burn's own loader takes it without a word.
    let _silent = ModuleOptimizer::from(AdamConfig::new().build()).load_record(adamp.to_record());
}

#[test]
fn a_state_of_the_wrong_shape_is_refused() {
    use burn::module::Param;
    use burn::nn::LinearConfig;
    let device = common::cpu_device().autodiff();
    let linear = LinearConfig::new(6, 4).init(&device);
    let mut optim = AdamPConfig::new().init_for(&linear);
    let x = burn::tensor::Tensor::<2>::ones([2, 6], &device);
    let loss = linear.forward(x).square().mean();
    let grads = GradientsParams::from_grads(loss.backward(), &linear);
    let linear = optim.step(1e-2, linear, grads);

    // The same parameter ids on a layer of another width.
    let mut wider = LinearConfig::new(6, 8).init(&device);
    wider.weight = Param::initialized(linear.weight.id, wider.weight.val());
    let bias = wider.bias.take().expect("bias");
    let saved_bias = linear.bias.as_ref().expect("bias").id;
    wider.bias = Some(Param::initialized(saved_bias, bias.val()));
    let err = AdamPConfig::new()
        .init_for(&wider)
        .try_load_record(optim.to_record(), &wider)
        .err()
        .expect("a [6, 4] state on a [6, 8] weight");
    assert!(
        matches!(err, RecordMismatch::ShapeMismatch { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("[6, 8]"), "{err}");
}

#[test]
fn an_unreadable_file_is_an_error() {
    let dir = std::env::temp_dir().join(format!("scaleinv-bad-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("optim.bpk");
    std::fs::write(&path, b"not a record").unwrap();
    let (model, _) = trained_adamp();
    let err = AdamPConfig::new()
        .init_for(&model)
        .try_load(&path, &model)
        .err();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        matches!(err, Some(RecordMismatch::Unreadable { .. })),
        "{err:?}"
    );
}

/// A fresh optimizer (no reload) diverges from the uninterrupted run, so the test above can fail.
#[test]
fn dropping_the_state_changes_the_run() {
    let (device, data, init) = setup();
    let make = |m: &DigitsCnn| AdamPConfig::new().init_for(m);
    let uninterrupted = train(init.clone(), &mut make(&init), 0..6, &data, &device);
    let halfway = train(init.clone(), &mut make(&init), 0..3, &data, &device);
    let restarted = train(halfway.clone(), &mut make(&halfway), 3..6, &data, &device);
    assert_ne!(weights(&uninterrupted), weights(&restarted));
}
