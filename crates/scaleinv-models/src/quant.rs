//! Fake quantisation for quantisation-aware training: symmetric, one scale per tensor (or per
//! row), with a straight-through estimator, and a [`Linear`] wrapper that applies it to its
//! weight and input.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::module::linear;

/// Smallest quantisation step, so an all-zero tensor does not divide by zero.
const MIN_SCALE: f32 = 1e-12;

/// Rounds `x` to a symmetric grid of `bits`-bit signed integers times one per-tensor scale,
/// `scale = max|x| / (2^(bits-1) - 1)`, clamped to `[-2^(bits-1), 2^(bits-1) - 1]`.
///
/// The forward value is the quantised tensor; the backward is the identity (straight-through
/// estimator: `x + (q - x).detach()`). `bits == 0` returns `x` unchanged (full precision).
///
/// # Panics
/// If `bits` is 1 or above 24 (an f32 holds integers exactly only up to 2^24).
pub fn fake_quantize<const D: usize>(x: Tensor<D>, bits: u32) -> Tensor<D> {
    quantize_with(x, bits, |value| value.max_abs().unsqueeze::<D>())
}

/// [`fake_quantize`] with one scale per vector along the last axis (per token for activations
/// `[batch, seq, features]`), so the value at one position never depends on another position.
pub fn fake_quantize_rows<const D: usize>(x: Tensor<D>, bits: u32) -> Tensor<D> {
    quantize_with(x, bits, |value| value.max_abs_dim(D - 1))
}

/// Fake quantisation with the `max|x|` that `max_abs` computes (broadcastable to `x`).
fn quantize_with<const D: usize>(
    x: Tensor<D>,
    bits: u32,
    max_abs: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Tensor<D> {
    if bits == 0 {
        return x;
    }
    assert!(
        (2..=24).contains(&bits),
        "fake quantisation: bits must be 0 (off) or 2..=24, got {bits}"
    );
    let q_max = ((1u32 << (bits - 1)) - 1) as f32;
    let value = x.clone().detach();
    let scale = (max_abs(value.clone()) / q_max).clamp_min(MIN_SCALE);
    let quantized = (value.clone() / scale.clone())
        .round()
        .clamp(-q_max - 1.0, q_max)
        * scale;
    x + (quantized - value)
}

/// A [`Linear`] layer whose weight and input are fake-quantised to `bits` bits in the forward
/// pass (`bits == 0`: full precision): the weight with one scale per tensor
/// ([`fake_quantize`]), the input with one scale per vector along its last axis
/// ([`fake_quantize_rows`]), so positions (and batch rows) stay independent, which a causal
/// model needs. The bias stays full precision.
///
/// The parameters are the inner `linear`'s, so their paths (`….linear.weight`,
/// `….linear.bias`) and layout (`[d_input, d_output]`) are Burn's. `bits` is a constant of the
/// module, not a parameter.
#[derive(Module, Debug)]
pub struct QuantLinear {
    /// The full-precision layer, which holds the parameters.
    pub linear: Linear,
    /// Bits of the weight and activation grids; 0 turns quantisation off.
    pub bits: u32,
}

impl QuantLinear {
    /// Wraps `linear`, quantising to `bits` bits (0: off).
    pub fn new(linear: Linear, bits: u32) -> Self {
        Self { linear, bits }
    }

    /// `fq_rows(input) · fq(W) + b` over the last axis: `[..., d_input]` → `[..., d_output]`.
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        if self.bits == 0 {
            return self.linear.forward(input);
        }
        let weight = fake_quantize(self.linear.weight.val(), self.bits);
        let input = fake_quantize_rows(input, self.bits);
        linear(input, weight, self.linear.bias.as_ref().map(|b| b.val()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu_device;
    use burn::nn::LinearConfig;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn values_land_on_a_grid_of_at_most_2_pow_bits_levels() {
        let device = cpu_device();
        device.seed(3);
        for bits in [2u32, 3, 4, 8] {
            let x = Tensor::<2>::random([32, 48], Distribution::Normal(0.0, 2.0), &device);
            let max_abs = values(x.clone().abs().max())[0];
            let q_max = ((1u32 << (bits - 1)) - 1) as f32;
            let scale = max_abs / q_max;
            let q = values(fake_quantize(x.clone(), bits));
            let mut levels: Vec<i64> = q
                .iter()
                .map(|v| {
                    let k = v / scale;
                    assert!((k - k.round()).abs() < 1e-3, "{v} is off the grid");
                    assert!(k.round() >= -q_max - 1.0 && k.round() <= q_max);
                    k.round() as i64
                })
                .collect();
            levels.sort_unstable();
            levels.dedup();
            assert!(levels.len() <= 1 << bits, "{bits} bits: {levels:?}");
            // Rounding moves each value by at most half a step.
            for (a, b) in values(x).iter().zip(&q) {
                assert!((a - b).abs() <= 0.5 * scale + 1e-5);
            }
        }
    }

    #[test]
    fn zero_tensor_and_bits_0_pass_through() {
        let device = cpu_device();
        let zeros = Tensor::<1>::zeros([5], &device);
        assert_eq!(values(fake_quantize(zeros, 4)), vec![0.0; 5]);
        let x = Tensor::<1>::from_floats([0.1, -0.37, 2.0], &device);
        assert_eq!(values(fake_quantize(x, 0)), vec![0.1, -0.37, 2.0]);
    }

    #[test]
    fn rows_are_quantised_independently() {
        let device = cpu_device();
        let x = Tensor::<2>::from_floats([[1.0, 0.55, -0.26], [100.0, 0.55, -0.26]], &device);
        let q = values(fake_quantize_rows(x.clone(), 3));
        // Row 0: scale 1/3, so 0.55 -> 2/3 and -0.26 -> -1/3. Row 1: scale 100/3, both -> 0.
        let expected = [1.0, 2.0 / 3.0, -1.0 / 3.0, 100.0, 0.0, 0.0];
        for (a, b) in q.iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "{q:?}");
        }
        // Per tensor, row 0 shares row 1's coarse grid.
        assert_eq!(values(fake_quantize(x, 3))[..3], [0.0, 0.0, 0.0]);
    }

    #[test]
    fn gradient_is_the_identity() {
        let device = cpu_device().autodiff();
        let x = Tensor::<1>::from_floats([0.3, -1.7, 0.05, 2.2, -0.9], &device).require_grad();
        let weights = Tensor::<1>::from_floats([1.0, 2.0, 3.0, 4.0, 5.0], &device);
        for quantize in [fake_quantize::<1>, fake_quantize_rows::<1>] {
            let y = (quantize(x.clone(), 4) * weights.clone()).sum();
            let grad = x.grad(&y.backward()).unwrap();
            grad.into_data().assert_approx_eq::<f32>(
                &TensorData::from([1.0f32, 2.0, 3.0, 4.0, 5.0]),
                Tolerance::absolute(1e-6),
            );
        }
    }

    #[test]
    fn quant_linear_quantises_only_when_bits_is_set() {
        let device = cpu_device();
        device.seed(1);
        let x = Tensor::<2>::random([4, 8], Distribution::Normal(0.0, 1.0), &device);
        let full = QuantLinear::new(LinearConfig::new(8, 6).init(&device), 0);
        let reference = values(full.linear.forward(x.clone()));
        assert_eq!(values(full.forward(x.clone())), reference);

        let quant = QuantLinear::new(full.linear.clone(), 4);
        let expected = linear(
            fake_quantize_rows(x.clone(), 4),
            fake_quantize(quant.linear.weight.val(), 4),
            quant.linear.bias.as_ref().map(|b| b.val()),
        );
        let out = quant.forward(x);
        assert_eq!(out.dims(), [4, 6]);
        assert_eq!(values(out.clone()), values(expected));
        assert_ne!(values(out), reference);
    }
}
