//! Top singular values by power iteration: against an exact (Jacobi) SVD on every backend,
//! known spectra, a zero matrix, determinism, the per-layer report and the sublayer gains.

mod common;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use scaleinv::{
    LayerSpectrum, PowerIteration, SingularValue, SublayerGain, spectral_report, sublayer_gains,
    top_singular_value,
};

/// Uniform values in `[-1, 1)` from SplitMix64.
fn uniform(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// The eigenvalues of the symmetric `n × n` matrix `a` (row-major), largest first, by cyclic
/// Jacobi rotations in f64.
fn symmetric_eigenvalues(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    let scale: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // Zero a[p][q] with A ← Jᵀ A J (Numerical Recipes' `jacobi`).
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    let mut eig: Vec<f64> = (0..n).map(|i| a[i * n + i]).collect();
    eig.sort_by(|x, y| y.total_cmp(x));
    eig
}

/// The singular values of the `rows × cols` matrix `w` (row-major), largest first: square
/// roots of the eigenvalues of the smaller Gram matrix.
fn singular_values(w: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let at = |i: usize, j: usize| w[i * cols + j];
    let (n, gram): (usize, Vec<f64>) = if cols <= rows {
        let g = (0..cols * cols)
            .map(|ij| (0..rows).map(|k| at(k, ij / cols) * at(k, ij % cols)).sum())
            .collect();
        (cols, g)
    } else {
        let g = (0..rows * rows)
            .map(|ij| (0..cols).map(|k| at(ij / rows, k) * at(ij % rows, k)).sum())
            .collect();
        (rows, g)
    };
    symmetric_eigenvalues(gram, n)
        .into_iter()
        .map(|e| e.max(0.0).sqrt())
        .collect()
}

/// `Q = H₁H₂H₃` (Householder reflections `I − 2uuᵀ/‖u‖²`): an orthogonal `n × n` matrix.
fn orthogonal(n: usize, seed: u64) -> Vec<f64> {
    let mut q: Vec<f64> = (0..n * n)
        .map(|ij| if ij / n == ij % n { 1.0 } else { 0.0 })
        .collect();
    for r in 0..3 {
        let u = uniform(n, seed * 10 + r);
        let uu: f64 = u.iter().map(|x| x * x).sum();
        // Q ← Q·H: each row x of Q becomes x − 2(x·u)/‖u‖² u.
        for i in 0..n {
            let dot: f64 = (0..n).map(|k| q[i * n + k] * u[k]).sum();
            for k in 0..n {
                q[i * n + k] -= 2.0 * dot / uu * u[k];
            }
        }
    }
    q
}

/// `U·diag(s)·Vᵀ` with `U`, `V` the first `s.len()` columns of orthogonal matrices.
fn with_spectrum(rows: usize, cols: usize, s: &[f64], seed: u64) -> Vec<f64> {
    let (u, v) = (orthogonal(rows, seed), orthogonal(cols, seed + 1));
    (0..rows * cols)
        .map(|ij| {
            let (i, j) = (ij / cols, ij % cols);
            (0..s.len())
                .map(|k| u[i * rows + k] * s[k] * v[j * cols + k])
                .sum()
        })
        .collect()
}

/// `values` rounded to f32, as a tensor of `shape`, and as the f64 values of the rounded
/// entries (the exact matrix the device sees).
fn upload<const D: usize>(
    values: &[f64],
    shape: [usize; D],
    device: &Device,
) -> (Tensor<D>, Vec<f64>) {
    let rounded: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    let exact = rounded.iter().map(|&x| f64::from(x)).collect();
    (
        Tensor::from_data(TensorData::new(rounded, shape), device),
        exact,
    )
}

fn relative_error(got: f64, want: f64) -> f64 {
    (got - want).abs() / want
}

/// Power iteration with the default tolerance (1e-4) against the exact σ_max. The bound 1e-3:
/// the estimate `‖Wv‖` converges as `(σ₂/σ₁)^{4k}`, so when it moved by ≤ 1e-4·σ over a check
/// window of 10 steps the remaining error is ≤ 1e-4 / ((σ₁/σ₂)^40 − 1), below 1e-3 whenever
/// σ₂/σ₁ ≤ 0.9976 (the gaps printed below are far wider), plus f32 rounding (~1e-6).
#[test]
fn matches_an_exact_svd_on_every_backend() {
    let options = PowerIteration::default();
    for (name, device) in common::devices() {
        for (seed, rows, rest) in [
            (1, 5, vec![3]),
            (2, 16, vec![40]),
            (3, 64, vec![64]),
            (4, 6, vec![3, 3, 3]),
        ] {
            let cols: usize = rest.iter().product();
            let values = uniform(rows * cols, seed);
            let (sv, exact): (SingularValue, Vec<f64>) = match rest.len() {
                1 => {
                    let (w, exact) = upload(&values, [rows, cols], &device);
                    (top_singular_value(&w, &options), exact)
                }
                _ => {
                    let (w, exact) = upload(&values, [rows, rest[0], rest[1], rest[2]], &device);
                    (top_singular_value(&w, &options), exact)
                }
            };
            let sigmas = singular_values(&exact, rows, cols);
            let error = relative_error(sv.sigma, sigmas[0]);
            eprintln!(
                "{name} [{rows}, {rest:?}]: σ = {} (exact {}, σ₂/σ₁ = {:.3}), {} iterations, \
                 relative error {error:.1e}",
                sv.sigma,
                sigmas[0],
                sigmas[1] / sigmas[0],
                sv.iterations
            );
            assert!(sv.converged, "{name} [{rows}, {rest:?}]: {sv:?}");
            assert!(
                error <= 1e-3,
                "{name} [{rows}, {rest:?}]: {} vs {}",
                sv.sigma,
                sigmas[0]
            );
            // ‖Wv‖ ≤ σ_max for a unit v: the estimate approaches from below.
            assert!(sv.sigma <= sigmas[0] * (1.0 + 1e-5), "{name}: {sv:?}");
        }
    }
}

#[test]
fn known_spectrum_gives_its_largest_value() {
    let device = common::cpu_device();
    let values = with_spectrum(7, 4, &[5.0, 2.0, 1.0], 7);
    let (w, exact) = upload(&values, [7, 4], &device);
    // The reference itself recovers the spectrum (and the rank: the fourth value is 0).
    let reference = singular_values(&exact, 7, 4);
    for (got, want) in reference.iter().zip([5.0, 2.0, 1.0, 0.0]) {
        assert!((got - want).abs() < 1e-5, "{reference:?}");
    }
    let sv = top_singular_value(&w, &PowerIteration::default());
    assert!(sv.converged, "{sv:?}");
    assert!(relative_error(sv.sigma, 5.0) < 1e-5, "{sv:?}");
}

/// With σ₁ ≈ σ₂ the vector barely turns between the two, but every vector in their span has
/// `‖Wv‖ ∈ [σ₂, σ₁]`: the estimate settles, converges, and is within σ₁ − σ₂ of σ₁.
#[test]
fn nearly_equal_top_values_still_converge() {
    let device = common::cpu_device();
    let values = with_spectrum(12, 9, &[5.0, 4.999, 1.0], 11);
    let (w, _) = upload(&values, [12, 9], &device);
    let options = PowerIteration::default();
    let sv = top_singular_value(&w, &options);
    eprintln!("σ₁ = 5, σ₂ = 4.999: {sv:?}");
    assert!(
        sv.converged && sv.iterations < options.max_iterations,
        "{sv:?}"
    );
    assert!(
        (4.999 * (1.0 - 1e-5)..=5.0 * (1.0 + 1e-5)).contains(&sv.sigma),
        "{sv:?}"
    );
}

/// A run cut short says so: `converged` is false and `iterations` is the cap.
#[test]
fn a_run_cut_short_reports_not_converged() {
    let device = common::cpu_device();
    let values = with_spectrum(12, 9, &[5.0, 4.5, 4.0, 3.5], 13);
    let (w, exact) = upload(&values, [12, 9], &device);
    let options = PowerIteration {
        max_iterations: 2,
        ..PowerIteration::default()
    };
    let sv = top_singular_value(&w, &options);
    assert_eq!((sv.iterations, sv.converged), (2, false), "{sv:?}");
    let sigma = singular_values(&exact, 12, 9)[0];
    assert!(sv.sigma > 3.5 && sv.sigma <= sigma * (1.0 + 1e-5), "{sv:?}");
    // Zero iterations: the estimate of the start vector alone.
    let none = top_singular_value(
        &w,
        &PowerIteration {
            max_iterations: 0,
            ..options
        },
    );
    assert_eq!((none.iterations, none.converged), (0, false), "{none:?}");
    assert!(
        none.sigma > 0.0 && none.sigma <= sigma * (1.0 + 1e-5),
        "{none:?}"
    );
}

#[test]
fn zero_matrix_gives_zero_without_nan() {
    for (name, device) in common::devices() {
        let sv = top_singular_value(&Tensor::<2>::zeros([8, 5], &device), &Default::default());
        assert_eq!(sv.sigma, 0.0, "{name}: {sv:?}");
        assert!(sv.converged, "{name}: {sv:?}");
    }
}

#[test]
fn vectors_and_single_columns_give_the_euclidean_norm_exactly() {
    let device = common::cpu_device();
    let options = PowerIteration::default();
    let v = Tensor::<1>::from_floats([3.0, 4.0], &device);
    let column = Tensor::<2>::from_floats([[3.0], [4.0]], &device);
    let row = Tensor::<2>::from_floats([[3.0, 4.0]], &device);
    for sv in [
        top_singular_value(&v, &options),
        top_singular_value(&column, &options),
        top_singular_value(&row, &options),
    ] {
        assert_eq!((sv.iterations, sv.converged), (0, true), "{sv:?}");
        assert!((sv.sigma - 5.0).abs() < 1e-6, "{sv:?}");
    }
}

#[test]
fn repeated_calls_give_the_identical_value() {
    let device = common::cpu_device();
    let (w, _) = upload(&uniform(30 * 20, 5), [30, 20], &device);
    let options = PowerIteration::default();
    let (a, b) = (
        top_singular_value(&w, &options),
        top_singular_value(&w, &options),
    );
    assert_eq!(a, b);
    // Another seed starts elsewhere but finds the same value.
    let c = top_singular_value(
        &w,
        &PowerIteration {
            seed: 99,
            ..options
        },
    );
    assert!(relative_error(c.sigma, a.sigma) < 1e-3, "{a:?} vs {c:?}");
}

#[derive(Module, Debug)]
struct Block {
    proj: Linear,
}

#[derive(Module, Debug)]
struct Net {
    stem: Conv2d,
    blocks: Vec<Block>,
    head: Linear,
}

impl Net {
    fn new(device: &Device) -> Self {
        Self {
            stem: Conv2dConfig::new([3, 4], [3, 3]).init(device),
            blocks: (0..2)
                .map(|_| Block {
                    proj: LinearConfig::new(6, 6).init(device),
                })
                .collect(),
            head: LinearConfig::new(6, 2).init(device),
        }
    }
}

#[test]
fn report_lists_every_weight_with_its_layer_type() {
    for (name, device) in common::devices() {
        let device = device.autodiff();
        device.seed(5);
        let net = Net::new(&device);
        let options = PowerIteration::default();
        let report = spectral_report(&net, &options);
        let rows: Vec<(&str, &str, &[usize], &str)> = report
            .iter()
            .map(|l| {
                (
                    l.path.as_str(),
                    l.owner.as_str(),
                    l.shape.as_slice(),
                    l.layer_type.as_str(),
                )
            })
            .collect();
        // Every bias is skipped.
        assert_eq!(
            rows,
            [
                ("stem.weight", "Conv2d", &[4, 3, 3, 3][..], "stem.weight"),
                (
                    "blocks.0.proj.weight",
                    "Linear",
                    &[6, 6][..],
                    "blocks.*.proj.weight"
                ),
                (
                    "blocks.1.proj.weight",
                    "Linear",
                    &[6, 6][..],
                    "blocks.*.proj.weight"
                ),
                ("head.weight", "Linear", &[6, 2][..], "head.weight"),
            ],
            "{name}"
        );
        let weights = [
            top_singular_value(&net.stem.weight.val(), &options),
            top_singular_value(&net.blocks[0].proj.weight.val(), &options),
            top_singular_value(&net.blocks[1].proj.weight.val(), &options),
            top_singular_value(&net.head.weight.val(), &options),
        ];
        for (layer, sv) in report.iter().zip(weights) {
            assert_eq!(layer.sigma_max, sv.sigma, "{name}: {}", layer.path);
            assert!(sv.converged && sv.sigma > 0.0, "{name}: {}", layer.path);
        }
    }
}

fn layer(path: &str, layer_type: &str, sigma_max: f64) -> LayerSpectrum {
    LayerSpectrum {
        path: path.into(),
        owner: "Linear".into(),
        shape: vec![4, 4],
        sigma_max,
        layer_type: layer_type.into(),
    }
}

#[test]
fn gains_average_each_type_and_keep_the_proxy_order() {
    let proxy = [
        layer("embed.weight", "embed.weight", 7.0),
        layer("blocks.0.up.weight", "blocks.*.up.weight", 1.0),
        layer("blocks.0.down.weight", "blocks.*.down.weight", 2.0),
        layer("blocks.1.up.weight", "blocks.*.up.weight", 3.0),
        layer("blocks.1.down.weight", "blocks.*.down.weight", 2.0),
    ];
    let target = [
        layer("blocks.0.down.weight", "blocks.*.down.weight", 3.0),
        layer("blocks.0.up.weight", "blocks.*.up.weight", 4.0),
        layer("blocks.1.down.weight", "blocks.*.down.weight", 5.0),
        layer("blocks.1.up.weight", "blocks.*.up.weight", 4.0),
        layer("blocks.2.up.weight", "blocks.*.up.weight", 7.0),
        layer("head.weight", "head.weight", 1.0),
    ];
    let gains = sublayer_gains(&proxy, &target);
    // `embed` is only in the proxy and `head` only in the target: both skipped.
    assert_eq!(
        gains,
        [
            SublayerGain {
                layer_type: "blocks.*.up.weight".into(),
                proxy_sigma: 2.0,
                target_sigma: 5.0,
                ratio: 2.5,
            },
            SublayerGain {
                layer_type: "blocks.*.down.weight".into(),
                proxy_sigma: 2.0,
                target_sigma: 4.0,
                ratio: 2.0,
            },
        ]
    );
    assert!(sublayer_gains(&proxy, &[]).is_empty());

    let json = serde_json::to_string(&(proxy[1].clone(), gains[0].clone())).unwrap();
    let back: (LayerSpectrum, SublayerGain) = serde_json::from_str(&json).unwrap();
    assert_eq!(back, (proxy[1].clone(), gains[0].clone()));
}
