//! Top singular values of weights: the "matching top singular values" diagnostic of
//! width-scaled weight decay (Fan et al., arXiv 2510.15262).
//!
//! At steady state a matrix-like weight trained by AdamW has `σ_max(W) ≈ C·sqrt(η/λ)·d^0.75`.
//! With `η₂ ∝ 1/d`, the rule `λ₂ ∝ sqrt(d)` keeps `σ_max` the same at every width, so the gain of
//! each sublayer transfers from a proxy model to a wider target. [`spectral_report`] measures
//! `σ_max` of every weight of a model and [`sublayer_gains`] compares two reports layer type by
//! layer type: ratios near 1 mean the gains match.
//!
//! These read values back to the host; call them between steps (for logging), never inside one.

use burn::module::{Module, Param};
use burn::tensor::{FloatDType, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::model::params::{self, ParamInfo, ParamVisitor, read_back};

/// Floor of the divisors in the power iteration (scale and vector norms), so that a zero matrix
/// gives `σ = 0` rather than NaN.
const FLOOR: f32 = 1e-30;

/// Settings of the power iteration in [`top_singular_value`].
///
/// ```
/// use scaleinv_optim::PowerIteration;
///
/// let quick = PowerIteration { max_iterations: 100, ..PowerIteration::default() };
/// assert_eq!(quick.tolerance, 1e-4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerIteration {
    /// Stop when the estimate changed by at most `tolerance · σ` since the previous check
    /// (`check_every` iterations earlier). Default `1e-4`.
    pub tolerance: f64,
    /// Stop after this many iterations, converged or not. Default `500`.
    pub max_iterations: usize,
    /// Read the estimate back (one device sync) every this many iterations, and after the
    /// last one; `0` counts as `1`. Default `10`.
    pub check_every: usize,
    /// Seed of the start vector. The vector is drawn on the host (SplitMix64, uniform in
    /// `[-1, 1)`), so a seed gives the same start on every backend. Default `0`.
    pub seed: u64,
}

impl Default for PowerIteration {
    fn default() -> Self {
        Self {
            tolerance: 1e-4,
            max_iterations: 500,
            check_every: 10,
            seed: 0,
        }
    }
}

/// The result of [`top_singular_value`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SingularValue {
    /// The estimate of `σ_max`. A lower bound (up to rounding): `‖W v‖ ≤ σ_max` for a unit `v`.
    pub sigma: f64,
    /// Power-iteration steps taken (`0` when the value is exact without iterating).
    pub iterations: usize,
    /// Whether the tolerance was met before `max_iterations`.
    pub converged: bool,
}

/// The largest singular value of `weight` viewed as the matrix `W = [dims[0], ∏ dims[1..]]`.
///
/// For Burn's `Linear` (`[d_in, d_out]`) that is the weight itself (`σ_max` does not change
/// under transposition); for a convolution `[out, in, k₁, k₂]` it is `[out, in·k₁·k₂]`.
/// A tensor of rank < 2 is the column `[n, 1]`, so its `σ_max` is its Euclidean norm; so is a
/// matrix with a single row or column. Both are exact (`iterations = 0`, `converged`).
///
/// Otherwise power iteration on the device, in f32: from a unit start vector `v₀` drawn from
/// `options.seed`,
///
/// `v ← WᵀW v / ‖WᵀW v‖`, `σ ≈ ‖W v‖`,
///
/// with `W` first divided by `max |wᵢⱼ|` (and the estimate multiplied back) so that f32 neither
/// overflows nor underflows. `v` approaches the top right singular vector as `(σ₂/σ₁)^{2k}`
/// after `k` steps, and `‖W v‖²`, the Rayleigh quotient of `WᵀW`, rises towards `σ_max²` with
/// the square of that error: the estimate's error shrinks by `r = (σ₂/σ₁)⁴` per step. Every
/// `check_every` steps (`c`) the estimate is read back, and the iteration stops once it moved by
/// at most `tolerance·σ` since the previous check. That move is `(r^{-c} − 1)` times the
/// remaining error, so the relative error left is at most `tolerance / (r^{-c} − 1)`: below
/// `10·tolerance` whenever `σ₂/σ₁ ≤ 0.9976` (with `c = 10`), and below `tolerance` once
/// `σ₂/σ₁ ≤ 0.983`. When the top two singular values are nearly equal the vector hardly turns
/// between them but the estimate is already within `σ₁ − σ₂` of `σ_max`, so it still settles;
/// when it is still moving at `max_iterations`, `converged` is `false`.
///
/// A zero matrix gives `σ = 0`; a weight with a non-finite entry gives NaN, not converged.
///
/// ```
/// use burn::prelude::*;
/// use scaleinv_optim::{PowerIteration, top_singular_value};
///
/// # #[cfg(feature = "flex")] {
/// let device = Device::flex();
/// // diag(3, 1) has σ_max = 3.
/// let w = Tensor::<2>::from_floats([[3.0, 0.0], [0.0, 1.0]], &device);
/// let sv = top_singular_value(&w, &PowerIteration::default());
/// assert!((sv.sigma - 3.0).abs() < 1e-4 && sv.converged);
/// # }
/// ```
pub fn top_singular_value<const D: usize>(
    weight: &Tensor<D>,
    options: &PowerIteration,
) -> SingularValue {
    let dims = weight.dims();
    let rows = dims.first().copied().unwrap_or(1);
    let cols: usize = dims.iter().skip(1).product();
    let exact = |sigma| SingularValue {
        sigma,
        iterations: 0,
        converged: true,
    };
    if rows == 0 || cols == 0 {
        return exact(0.0);
    }
    let w: Tensor<2> = weight
        .clone()
        .inner()
        .cast(FloatDType::F32)
        .reshape([rows, cols]);
    if rows == 1 || cols == 1 {
        return exact(read_back(w.square().sum().sqrt())[0]);
    }

    let device = w.device();
    let scale = w.clone().max_abs().clamp_min(FLOOR);
    let w = w / scale.clone().unsqueeze::<2>();
    let wt = w.clone().transpose();
    let start = Tensor::<2>::from_data(
        TensorData::new(start_vector(cols, options.seed), [cols, 1]),
        &device,
    )
    .cast(FloatDType::F32);
    let estimate = |u: Tensor<2>| u.square().sum().sqrt() * scale.clone();

    let mut u = w.clone().matmul(start);
    let mut first = Some(estimate(u.clone()));
    let mut previous = f64::NAN;
    let mut sigma = f64::NAN;
    let check_every = options.check_every.max(1);
    for step in 1..=options.max_iterations {
        let g = wt.clone().matmul(u);
        let norm = g.clone().square().sum().sqrt().clamp_min(FLOOR);
        let v = g / norm.unsqueeze::<2>();
        u = w.clone().matmul(v);
        if step % check_every != 0 && step != options.max_iterations {
            continue;
        }
        let current = estimate(u.clone());
        // The first check also reads `‖W v₀‖`, in the same read-back.
        let values = match first.take() {
            Some(first) => read_back(Tensor::cat(vec![first, current], 0)),
            None => read_back(current),
        };
        if let [start, _] = values[..] {
            previous = start;
        }
        sigma = values[values.len() - 1];
        if (sigma - previous).abs() <= options.tolerance * sigma {
            return SingularValue {
                sigma,
                iterations: step,
                converged: true,
            };
        }
        previous = sigma;
    }
    if let Some(first) = first {
        // `max_iterations == 0`: the estimate of the start vector.
        sigma = read_back(first)[0];
    }
    SingularValue {
        sigma,
        iterations: options.max_iterations,
        converged: false,
    }
}

/// `σ_max` of one weight of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSpectrum {
    /// Path in the module, e.g. `blocks.0.attn.query.weight`.
    pub path: String,
    /// Name of the struct that owns the parameter, e.g. `Linear`.
    pub owner: String,
    /// The parameter's shape.
    pub shape: Vec<usize>,
    /// `σ_max` of the weight as a matrix ([`top_singular_value`]).
    pub sigma_max: f64,
    /// The path with every purely numeric segment (a `Vec` index) replaced by `*`, e.g.
    /// `blocks.*.attn.query.weight`: the same sublayer in every block, and in a model of
    /// another width or depth.
    pub layer_type: String,
}

/// `σ_max` of every float parameter of rank ≥ 2 of `model`, in visiting order (biases and
/// normalisation gains are skipped). One power iteration per weight ([`top_singular_value`]);
/// whether each one converged is not recorded here.
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{Linear, LinearConfig};
/// use scaleinv_optim::{PowerIteration, spectral_report};
///
/// # #[cfg(feature = "flex")] {
/// let model: Linear = LinearConfig::new(8, 4).init(&Device::flex());
/// let report = spectral_report(&model, &PowerIteration::default());
/// assert_eq!(report.len(), 1); // the bias is skipped
/// assert_eq!((report[0].path.as_str(), report[0].owner.as_str()), ("weight", "Linear"));
/// assert_eq!(report[0].shape, vec![8, 4]);
/// # }
/// ```
pub fn spectral_report<M: Module>(model: &M, options: &PowerIteration) -> Vec<LayerSpectrum> {
    let mut sigmas = Sigmas {
        options: *options,
        out: Vec::new(),
    };
    params::visit_params(model, &mut sigmas);
    sigmas.out
}

/// How the gain of one layer type changed from a proxy model to a target model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SublayerGain {
    /// The layer type ([`LayerSpectrum::layer_type`]).
    pub layer_type: String,
    /// Mean `σ_max` over the proxy's layers of this type.
    pub proxy_sigma: f64,
    /// Mean `σ_max` over the target's layers of this type.
    pub target_sigma: f64,
    /// `target_sigma / proxy_sigma`: 1 when the gain transferred.
    pub ratio: f64,
}

/// For every layer type in both reports, the mean `σ_max` over its layers in each and the ratio
/// target / proxy, in the order the types first appear in `proxy`. Types found in only one
/// report are skipped. A proxy mean of 0 gives an infinite or NaN ratio.
///
/// ```
/// use scaleinv_optim::{LayerSpectrum, sublayer_gains};
///
/// let layer = |path: &str, sigma_max| LayerSpectrum {
///     path: path.into(),
///     owner: "Linear".into(),
///     shape: vec![4, 4],
///     sigma_max,
///     layer_type: "blocks.*.weight".into(),
/// };
/// let proxy = [layer("blocks.0.weight", 1.0), layer("blocks.1.weight", 3.0)];
/// let target = [layer("blocks.0.weight", 3.0)];
/// let gains = sublayer_gains(&proxy, &target);
/// assert_eq!((gains[0].proxy_sigma, gains[0].ratio), (2.0, 1.5));
/// ```
pub fn sublayer_gains(proxy: &[LayerSpectrum], target: &[LayerSpectrum]) -> Vec<SublayerGain> {
    let mean = |report: &[LayerSpectrum], layer_type: &str| {
        let (sum, count) = report
            .iter()
            .filter(|l| l.layer_type == layer_type)
            .fold((0.0, 0usize), |(sum, count), l| {
                (sum + l.sigma_max, count + 1)
            });
        (count > 0).then(|| sum / count as f64)
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for layer in proxy {
        let layer_type = layer.layer_type.as_str();
        if seen.contains(&layer_type) {
            continue;
        }
        seen.push(layer_type);
        let (Some(proxy_sigma), Some(target_sigma)) =
            (mean(proxy, layer_type), mean(target, layer_type))
        else {
            continue;
        };
        out.push(SublayerGain {
            layer_type: layer_type.to_string(),
            proxy_sigma,
            target_sigma,
            ratio: target_sigma / proxy_sigma,
        });
    }
    out
}

/// `path` with every purely numeric segment replaced by `*`.
fn layer_type(path: &str) -> String {
    path.split('.')
        .map(|segment| {
            if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
                "*"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A unit vector of length `n`, uniform in `[-1, 1)` before normalisation, from SplitMix64.
fn start_vector(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let values: Vec<f64> = (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    let norm = values.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
    values.iter().map(|x| (x / norm) as f32).collect()
}

/// The spectrum of every float parameter of rank ≥ 2, in visiting order.
struct Sigmas {
    options: PowerIteration,
    out: Vec<LayerSpectrum>,
}

impl ParamVisitor for Sigmas {
    fn param<const D: usize>(&mut self, info: ParamInfo, param: &Param<Tensor<D>>) {
        if D < 2 {
            return;
        }
        let weight = param.val().detach();
        self.out.push(LayerSpectrum {
            layer_type: layer_type(&info.path),
            shape: weight.dims().to_vec(),
            sigma_max: top_singular_value(&weight, &self.options).sigma,
            path: info.path,
            owner: info.owner,
        });
    }
}
