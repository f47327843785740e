//! A 100,000-step soak of a small normalized network with each optimizer of the catalog:
//! no NaN at any checkpoint, the loss goes down, NaP's norms stay on their targets, and
//! Stable-SPAM comes through gradient spikes of 10⁴×. `SCALEINV_SOAK_STEPS` shortens the run
//! for local iteration; CI runs the full length.

mod common;

#[path = "common/soak_net.rs"]
mod soak_net;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use common::catalog::{Entry, InitFor};
use scaleinv::weight_norms;
use soak_net::{BATCHES, Net, batches};

/// Steps between checkpoints (one host read of the loss each).
const CHECK_EVERY: usize = 1000;

fn steps() -> usize {
    std::env::var("SCALEINV_SOAK_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

/// What a soak reports: the mean loss over the first and the last checkpoint window, and the
/// network before and after.
struct Soak {
    first_loss: f32,
    last_loss: f32,
    initial: Net,
    model: Net,
}

/// Trains the network with the optimizer `make` builds for it, for `steps()` steps at a
/// constant rate `lr`; `spike(k)` scales step k's loss (and so its gradient). Every checkpoint
/// reads the loss back and fails on a non-finite one.
fn soak(
    name: &str,
    make: impl FnOnce(&Net) -> ModuleOptimizer,
    lr: f64,
    spike: impl Fn(usize) -> f32,
) -> Soak {
    let device = common::cpu_device().autodiff();
    let data = batches(&device);
    let initial = Net::new(&device);
    let mut optim = make(&initial);
    let mut model = initial.clone();
    let mut window = Tensor::<1>::zeros([1], &device);
    let (mut first_loss, mut last_loss) = (f32::NAN, f32::NAN);
    for k in 1..=steps() {
        let (x, y) = data[k % BATCHES].clone();
        let loss = model.loss(x, y);
        window = window + loss.clone().detach();
        let loss = loss * spike(k);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        if k % CHECK_EVERY == 0 {
            let mean = common::values(window.inner())[0] / CHECK_EVERY as f32;
            assert!(mean.is_finite(), "{name}: mean loss {mean} before step {k}");
            if k == CHECK_EVERY {
                first_loss = mean;
            }
            last_loss = mean;
            window = Tensor::<1>::zeros([1], &device);
        }
    }
    for norm in weight_norms(&model) {
        assert!(
            norm.norm.is_finite(),
            "{name}: {} has norm {}",
            norm.path,
            norm.norm
        );
    }
    println!(
        "{name}: mean loss {first_loss:.4} over the first {CHECK_EVERY} steps, {last_loss:.4} over the last"
    );
    assert!(
        last_loss < 0.7 * first_loss,
        "{name}: loss {first_loss} over the first {CHECK_EVERY} steps, {last_loss} at the end"
    );
    Soak {
        first_loss,
        last_loss,
        initial,
        model,
    }
}

/// Every optimizer of the catalog, each soaked on its own thread at its entry's rate. An entry
/// that holds norms (NaP) keeps every weight matrix at its initial norm to 1e-5 (relative)
/// after the run; an entry built to absorb spikes (Stable-SPAM) sees every 2,500th step's
/// gradient multiplied by 10⁴ and still ends well below where it started.
#[test]
fn every_optimizer_soaks() {
    let entries = common::catalog::module_optimizers::<Net>();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = entries
            .iter()
            .map(|&(entry, init_for)| {
                (entry.name, scope.spawn(move || soak_entry(entry, init_for)))
            })
            .collect();
        runs.into_iter()
            .filter_map(|(name, run)| {
                let panic = run.join().err()?;
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Some(format!("{name}: {message}"))
            })
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn soak_entry(entry: &Entry, init_for: InitFor<Net>) {
    let spikes = entry.absorbs_spikes;
    let spike = move |k: usize| if spikes && k % 2500 == 1250 { 1e4 } else { 1.0 };
    let out = soak(entry.name, init_for, entry.lr, spike);
    assert!(out.last_loss.is_finite() && out.first_loss.is_finite());
    if entry.holds_norms {
        let (before, after) = (weight_norms(&out.initial), weight_norms(&out.model));
        let mut projected = 0;
        for (before, after) in before.iter().zip(&after) {
            if before.rank >= 2 {
                projected += 1;
                let drift = (after.norm - before.norm).abs() / before.norm;
                assert!(
                    drift < 1e-5,
                    "{}: {}: {} -> {} (relative drift {drift:e})",
                    entry.name,
                    before.path,
                    before.norm,
                    after.norm
                );
            }
        }
        assert_eq!(projected, 3, "{}", entry.name);
    }
}
