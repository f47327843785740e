//! A huge finite spike, for every optimizer of the catalog on every path: a first step whose
//! gradient is 1e20 in every element (finite in f32, its norm squared is not), then five
//! ordinary steps, on a `[4, 4]` weight and a `[4]` bias. The fused flex loops, the tensor ops
//! and the CubeCL kernels (flex, ndarray, wgpu) agree step by step, no weight turns NaN under
//! the default `Skip`, and the optimizers built to absorb spikes (Stable-SPAM,
//! GradientStabilizer) train on after it. (Adam's second moment overflows to ∞ on such a
//! gradient and the tensor stops moving, as in its references.)

mod common;

use burn::optim::Optimizer;
use burn::tensor::{Device, Tensor, TensorData};
use common::catalog::{Entry, OptimizerVisitor, Settings, for_each_optimizer};

const STEPS: usize = 6;

/// A parameter's values after each step.
type Trajectory = Vec<Vec<f32>>;

/// The gradient of step `k` for a tensor of `n` elements: 1e20 everywhere at step 0, then
/// values of about 0.1.
fn gradient(k: usize, n: usize) -> Vec<f32> {
    match k {
        0 => vec![1e20; n],
        _ => (0..n)
            .map(|i| 0.1 * ((i * 7 + k * 3) as f32 * 0.91).sin())
            .collect(),
    }
}

/// The parameter after each step, from `init` of shape `shape`.
fn trajectory<O: Optimizer, const D: usize>(
    optim: &O,
    shape: [usize; D],
    init: &[f32],
    device: &Device,
) -> Vec<Vec<f32>> {
    let tensor = |v: Vec<f32>| Tensor::<D>::from_data(TensorData::new(v, shape), device);
    let mut param = tensor(init.to_vec());
    let mut state = None;
    (0..STEPS)
        .map(|k| {
            let grad = tensor(gradient(k, init.len()));
            (param, state) = optim.step(1e-3, param.clone(), grad, state.take());
            common::values(param.clone())
        })
        .collect()
}

/// Whether two runs agree at every step: equal where not finite, within `tolerance` (relative
/// to 1 or the value) elsewhere.
fn disagreement(a: &[Vec<f32>], b: &[Vec<f32>], tolerance: f32) -> Option<String> {
    for (step, (a, b)) in a.iter().zip(b).enumerate() {
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            let same = if x.is_finite() && y.is_finite() {
                (x - y).abs() <= tolerance * y.abs().max(1.0)
            } else {
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
            };
            if !same {
                return Some(format!("step {step}, element {i}: {x} vs {y}"));
            }
        }
    }
    None
}

struct Spikes {
    failures: Vec<String>,
}

impl OptimizerVisitor for Spikes {
    fn visit<O: Optimizer>(&mut self, entry: &Entry, build: &dyn Fn(Settings) -> O) {
        let weight: Vec<f32> = (0..16).map(|i| (i as f32 * 0.37).sin() + 0.1).collect();
        let bias: Vec<f32> = (0..4).map(|i| (i as f32 * 0.53).cos() * 0.2).collect();
        let tolerance = if entry.amplifies_rounding { 1e-4 } else { 1e-5 };
        let mut reference: Option<(String, Trajectory, Trajectory)> = None;
        for (device_name, device) in common::devices() {
            let paths: &[bool] = if entry.fused { &[true, false] } else { &[true] };
            for &fused in paths {
                let optim = build(Settings::fused(fused, 0));
                let label = format!("{} on {device_name}, fused {fused}", entry.name);
                let w = trajectory(&optim, [4, 4], &weight, &device);
                let b = trajectory(&optim, [4], &bias, &device);
                if let Some(bad) = w.iter().chain(&b).flatten().find(|v| !v.is_finite()) {
                    self.failures
                        .push(format!("{label}: a weight is {bad} after the spike"));
                }
                // An optimizer built to absorb spikes trains on after one.
                let moved = |t: &[Vec<f32>], init: &[f32]| {
                    t[STEPS - 1]
                        .iter()
                        .zip(init)
                        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
                };
                let (mw, mb) = (moved(&w, &weight), moved(&b, &bias));
                if entry.absorbs_spikes && (mw.is_nan() || mw < 1e-3 || mb.is_nan() || mb < 1e-3) {
                    self.failures.push(format!(
                        "{label}: frozen by the spike (moved {mw:e} and {mb:e} over {} steps)",
                        STEPS - 1
                    ));
                }
                match &reference {
                    None => reference = Some((label, w, b)),
                    Some((first, rw, rb)) => {
                        for (what, ours, theirs) in [("weight", &w, rw), ("bias", &b, rb)] {
                            if let Some(at) = disagreement(ours, theirs, tolerance) {
                                self.failures
                                    .push(format!("{label} vs {first}, {what}: {at}"));
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_huge_finite_spike_agrees_across_paths_for_every_optimizer() {
    let mut spikes = Spikes {
        failures: Vec::new(),
    };
    for_each_optimizer(&mut spikes);
    assert!(spikes.failures.is_empty(), "{}", spikes.failures.join("\n"));
}
