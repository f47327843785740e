//! The GPU path under a long run and faults. Every optimizer of the catalog that runs as CubeCL
//! kernels on wgpu (AdamP, SGDP, Stable-SPAM, width-scaled AdamW, NaP around AdamP, AdamC) and
//! every one built to absorb spikes (Stable-SPAM, GradientStabilizer) trains the soak's
//! network on wgpu for `SCALEINV_GPU_SOAK_STEPS` steps (800 by default; 6,300 steps in all
//! with the resumed ones) while NaN, +∞ and −∞ land in one element of one gradient at
//! scattered steps, with a save and a resume in the middle. The spike absorbers also take
//! gradients of ±1e20 in every element at two early steps.
//!
//! Held at every step (one read-back of the weights and the loss after each step): no weight
//! is NaN or ±∞; the step with a fault leaves the faulty parameter bit for bit as it was (the
//! default `Skip` works per tensor) and moves every other one; every other step moves every
//! parameter (after a spike, a stalled parameter is counted instead, and each must move again
//! in the last window). At the end: the loss has fallen, and the run resumed from the bytes
//! saved in the middle retraces the uninterrupted run, bit for bit, for `RESUMED` steps.
#![cfg(feature = "wgpu")]

mod common;

#[path = "common/soak_net.rs"]
mod soak_net;

use std::collections::BTreeMap;

use burn::module::ParamId;
use burn::optim::{GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use common::catalog::{Entry, InitFor};
use scaleinv::CheckedLoad;
use soak_net::{BATCHES, Net, batches};

/// Steps over which each mean loss is taken, at the start and at the end.
const WINDOW: usize = 200;
/// Steps run again from the bytes saved in the middle, each compared with the first run.
const RESUMED: usize = 100;
/// A spiked gradient's elements: ±1e20, the sign of the gradient's.
const SPIKE: f32 = 1e20;
/// The spiked steps. Stable-SPAM clips a spike to its threshold, which the spike itself has
/// raised, and the clipped norm enters its norm averages: the updates shrink below the
/// weights' rounding for some hundreds of steps, as in the reference, so the spikes come early
/// enough for the run to recover. GradientStabilizer skips such a spike (its norm squared
/// overflows f32).
const SPIKES: [usize; 2] = [20, 50];
/// Optimizers soaked at once.
const WORKERS: usize = 2;
/// The learning rate's scale on the soak's network over this shorter run.
const LR_SCALE: f64 = 3.0;

fn steps() -> usize {
    std::env::var("SCALEINV_GPU_SOAK_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(800)
}

/// What happens to a step's gradient.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// One element of parameter `param`'s gradient replaced by `value` (NaN or ±∞).
    Bad {
        param: usize,
        element: usize,
        value: f32,
    },
    /// Every gradient's elements replaced by ±1e20 (finite in f32, their squares are not).
    Spike,
}

/// The faults of a run of `steps` steps: about one step in 60, drawn from a fixed generator,
/// has one element of one gradient replaced by NaN, +∞ or −∞ (never the first two steps, the
/// step after the save, or two steps in a row); for the spike absorbers, steps [`SPIKES`]
/// are spiked.
fn faults(steps: usize, spikes: bool) -> BTreeMap<usize, Fault> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    let values = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    let mut out = BTreeMap::new();
    if spikes {
        out.insert(SPIKES[0], Fault::Spike);
        out.insert(SPIKES[1], Fault::Spike);
    }
    let mut k = 3;
    while k <= steps {
        if next() % 60 == 0 && k != steps / 2 + 1 && !out.contains_key(&k) {
            let fault = Fault::Bad {
                param: next() % PARAMS,
                element: next(),
                value: values[next() % values.len()],
            };
            out.insert(k, fault);
            k += 1;
        }
        k += 1;
    }
    out
}

/// The network's parameters, in a fixed order.
const PARAMS: usize = 8;

/// The network's parameters in a fixed order: each one's id, rank and values, flattened.
fn params(model: &Net) -> [(ParamId, usize, Tensor<1>); PARAMS] {
    let shift = |norm: &burn::nn::LayerNorm| norm.beta.clone().expect("LayerNorm has a shift");
    let head_bias = model.head.bias.clone().expect("the head has a bias");
    let matrix = |w: &burn::module::Param<Tensor<2>>| (w.id, 2, w.val().reshape([-1]));
    let vector = |v: &burn::module::Param<Tensor<1>>| (v.id, 1, v.val());
    [
        matrix(&model.l1.weight),
        vector(&model.n1.gamma),
        vector(&shift(&model.n1)),
        matrix(&model.l2.weight),
        vector(&model.n2.gamma),
        vector(&shift(&model.n2)),
        matrix(&model.head.weight),
        vector(&head_bias),
    ]
}

/// Every parameter's values, flattened, and the loss, in one read-back.
fn read(model: &Net, loss: Tensor<1>) -> (Vec<Vec<u32>>, f32) {
    let parts = params(model);
    let lengths: Vec<usize> = parts.iter().map(|(_, _, p)| p.dims()[0]).collect();
    let mut all: Vec<Tensor<1>> = parts.into_iter().map(|(_, _, p)| p.inner()).collect();
    all.push(loss.inner());
    let values = common::values(Tensor::cat(all, 0));
    let mut bits = values.iter().map(|v| v.to_bits());
    let params = lengths
        .iter()
        .map(|&len| bits.by_ref().take(len).collect())
        .collect();
    (params, *values.last().expect("the loss"))
}

/// Applies a fault to gradient `id` of rank `rank`.
fn corrupt(grads: &mut GradientsParams, (id, rank): (ParamId, usize), fault: Fault) {
    match rank {
        2 => corrupt_rank::<2>(grads, id, fault),
        _ => corrupt_rank::<1>(grads, id, fault),
    }
}

/// [`corrupt`] at rank `D`: one element replaced (modulo the length), or every element made
/// `±SPIKE` with its sign.
fn corrupt_rank<const D: usize>(grads: &mut GradientsParams, id: ParamId, fault: Fault) {
    let g = grads
        .remove::<D>(id)
        .expect("every parameter has a gradient");
    let g = match fault {
        Fault::Spike => g.sign() * SPIKE,
        Fault::Bad { element, value, .. } => {
            let shape = g.shape();
            let at = element % shape.num_elements();
            let mask: Vec<bool> = (0..shape.num_elements()).map(|i| i == at).collect();
            let mask = Tensor::<D, Bool>::from_data(TensorData::new(mask, shape), &g.device());
            g.mask_fill(mask, value)
        }
    };
    grads.register(id, g);
}

/// A run: the optimizer, the data, the faults, and what the checks saw.
struct Run<'a> {
    entry: &'a Entry,
    data: &'a [(Tensor<2>, Tensor<1, Int>)],
    faults: &'a BTreeMap<usize, Fault>,
    optim: ModuleOptimizer,
    /// The last step that moved each parameter.
    last_moved: [usize; PARAMS],
    /// Steps without a fault that left a parameter where it was (allowed after a spike).
    stalls: usize,
}

impl<'a> Run<'a> {
    fn new(
        entry: &'a Entry,
        data: &'a [(Tensor<2>, Tensor<1, Int>)],
        faults: &'a BTreeMap<usize, Fault>,
        optim: ModuleOptimizer,
    ) -> Self {
        Self {
            entry,
            data,
            faults,
            optim,
            last_moved: [0; PARAMS],
            stalls: 0,
        }
    }

    /// Step `k` of `model`, checked against its weights before the step (`before`); returns
    /// the model, its weights after the step and the step's loss.
    fn step(&mut self, model: Net, k: usize, before: &[Vec<u32>]) -> (Net, Vec<Vec<u32>>, f32) {
        let (x, y) = self.data[k % BATCHES].clone();
        let loss = model.loss(x, y);
        let fault = self.faults.get(&k).copied();
        let mut grads = GradientsParams::from_grads(loss.clone().backward(), &model);
        let ids = params(&model).map(|(id, rank, _)| (id, rank));
        let poisoned = match fault {
            Some(Fault::Spike) => {
                for id in ids {
                    corrupt(&mut grads, id, Fault::Spike);
                }
                None
            }
            Some(bad @ Fault::Bad { param: index, .. }) => {
                corrupt(&mut grads, ids[index], bad);
                Some(index)
            }
            None => None,
        };
        let model = self.optim.step(self.entry.lr * LR_SCALE, model, grads);
        let (after, loss) = read(&model, loss.detach());
        let spiked = self
            .faults
            .range(..=k)
            .any(|(_, f)| matches!(f, Fault::Spike));
        for (index, (a, b)) in after.iter().zip(before).enumerate() {
            let label = format!(
                "{}: step {k} ({fault:?}), parameter {index}",
                self.entry.name
            );
            assert!(
                a.iter().all(|&v| f32::from_bits(v).is_finite()),
                "{label}: a weight is not finite"
            );
            if poisoned == Some(index) {
                assert_eq!(a, b, "{label}: the faulty tensor was not skipped");
            } else if a != b {
                self.last_moved[index] = k;
            } else if matches!(fault, Some(Fault::Spike)) {
                // A spiked tensor skips the step where its norm squared overflows f32.
            } else if spiked {
                self.stalls += 1;
            } else {
                panic!("{label}: the step did not move it");
            }
        }
        (model, after, loss)
    }
}

/// One entry's soak; returns the loss over the first and the last window.
fn soak(entry: &Entry, init_for: InitFor<Net>, device: &Device) -> (f32, f32) {
    let steps = steps();
    let half = steps / 2;
    assert!(
        steps >= 4 * WINDOW,
        "SCALEINV_GPU_SOAK_STEPS must be at least {}",
        4 * WINDOW
    );
    let data = batches(device);
    let faults = faults(steps, entry.absorbs_spikes);
    let initial = Net::new(device);
    let mut run = Run::new(entry, &data, &faults, init_for(&initial));
    let (mut weights, _) = read(&initial, Tensor::zeros([1], device));
    let mut model = initial;
    let mut losses = Vec::with_capacity(steps);
    let mut saved = None;
    let mut expected = Vec::with_capacity(RESUMED);
    for k in 1..=steps {
        let loss;
        (model, weights, loss) = run.step(model, k, &weights);
        losses.push(loss);
        if k == half {
            let bytes = run.optim.into_bytes().expect("the record serializes");
            saved = Some((model.clone(), bytes, weights.clone()));
        } else if k > half && k <= half + RESUMED {
            expected.push(weights.clone());
        }
    }
    for (index, &moved) in run.last_moved.iter().enumerate() {
        assert!(
            moved > steps - WINDOW,
            "{}: parameter {index} last moved at step {moved} of {steps}",
            entry.name
        );
    }

    let (mut model, bytes, mut resumed_weights) = saved.expect("saved in the middle");
    let record = OptimizerRecord::from_bytes(bytes).expect("the saved bytes load");
    let optim = init_for(&model)
        .try_load_record(record, &model)
        .expect("the record fits the model");
    let mut resumed = Run::new(entry, &data, &faults, optim);
    for (k, expected) in (half + 1..).zip(&expected) {
        (model, resumed_weights, _) = resumed.step(model, k, &resumed_weights);
        assert!(
            &resumed_weights == expected,
            "{}: resumed from step {half}, step {k} differs from the uninterrupted run",
            entry.name
        );
    }

    let mean = |w: &[f32]| w.iter().sum::<f32>() / w.len() as f32;
    let (first, last) = (mean(&losses[..WINDOW]), mean(&losses[steps - WINDOW..]));
    let poisoned = faults
        .values()
        .filter(|f| matches!(f, Fault::Bad { .. }))
        .count();
    println!(
        "{}: {steps} steps, {poisoned} faults, {} spikes, {} stalled tensor-steps; mean loss {first:.4} over the first {WINDOW} steps, {last:.4} over the last",
        entry.name,
        faults.len() - poisoned,
        run.stalls
    );
    assert!(
        last < 0.7 * first,
        "{}: mean loss {first} over the first {WINDOW} steps, {last} over the last",
        entry.name
    );
    (first, last)
}

/// Every optimizer with kernels or built to absorb spikes, on wgpu, two at a time.
#[test]
fn the_gpu_path_comes_through_faults_spikes_and_a_resume() {
    let Some(device) = common::wgpu_device() else {
        assert_ne!(
            std::env::var("SCALEINV_REQUIRE_WGPU").as_deref(),
            Ok("1"),
            "SCALEINV_REQUIRE_WGPU=1 but wgpu found no adapter"
        );
        eprintln!("wgpu: no adapter on this machine; the GPU soak is not run");
        return;
    };
    let device = device.autodiff();
    let entries: Vec<_> = common::catalog::module_optimizers::<Net>()
        .into_iter()
        .filter(|(entry, _)| entry.kernels || entry.absorbs_spikes)
        .collect();
    assert!(
        entries.len() >= 7,
        "only {} optimizers to soak",
        entries.len()
    );
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                scope.spawn(|| {
                    let mut failures = Vec::new();
                    while let Some(&(entry, init_for)) =
                        entries.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            soak(entry, init_for, &device)
                        }));
                        if let Err(panic) = run {
                            let message = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            failures.push(message);
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a worker thread"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
