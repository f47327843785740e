//! The parameter shapes of two reference models, for benchmarks and device counters that step
//! a model's tensors without building the model: ResNet-50 (25.6M parameters, 161 tensors) and
//! GPT-2 small (124M parameters, 148 tensors), each with its widths divisible by `divisor` for
//! a smaller stand-in with the same tensor list (1: the real model).
//!
//! Plain `std` (the crate's device counters include this file by path). Layouts are Burn's:
//! a convolution's kernel `[out, in, k, k]`, a `Linear` weight `[d_in, d_out]`, an embedding
//! `[n, d]`.

/// ResNet-50 (He et al. 2016, torchvision's layout with the stride on the 3×3 convolution):
/// a 7×7 stem, 16 bottleneck blocks in stages of 3, 4, 6 and 3 (1×1, 3×3, 1×1 convolutions,
/// each followed by a BatchNorm; a 1×1 projection on each stage's first block), and a
/// 1000-class head. Channel counts and classes divided by `divisor`.
pub fn resnet50(divisor: usize) -> Vec<Vec<usize>> {
    let d = |n: usize| (n / divisor.max(1)).max(1);
    let mut shapes = Vec::with_capacity(161);
    let conv = |shapes: &mut Vec<Vec<usize>>, out: usize, inp: usize, k: usize| {
        shapes.push(vec![out, inp, k, k]);
        // BatchNorm's γ and β.
        shapes.push(vec![out]);
        shapes.push(vec![out]);
    };
    conv(&mut shapes, d(64), 3, 7);
    let mut inp = d(64);
    for (blocks, width) in [(3, 64), (4, 128), (6, 256), (3, 512)] {
        let (width, out) = (d(width), d(width * 4));
        for block in 0..blocks {
            conv(&mut shapes, width, inp, 1);
            conv(&mut shapes, width, width, 3);
            conv(&mut shapes, out, width, 1);
            if block == 0 {
                conv(&mut shapes, out, inp, 1);
            }
            inp = out;
        }
    }
    shapes.push(vec![inp, d(1000)]);
    shapes.push(vec![d(1000)]);
    shapes
}

/// GPT-2 small (Radford et al. 2019): token and position embeddings, 12 blocks (LayerNorm,
/// fused qkv projection, output projection, LayerNorm, 4× MLP; every Linear with a bias) and
/// the final LayerNorm; the head is tied to the token embedding. Width, vocabulary and context
/// divided by `divisor`.
pub fn gpt2_small(divisor: usize) -> Vec<Vec<usize>> {
    let d = |n: usize| (n / divisor.max(1)).max(1);
    let width = d(768);
    let mut shapes = vec![vec![d(50257), width], vec![d(1024), width]];
    for _ in 0..12 {
        for (d_in, d_out) in [
            (0, 0),
            (width, 3 * width),
            (width, width),
            (0, 0),
            (width, 4 * width),
            (4 * width, width),
        ] {
            if d_in == 0 {
                // LayerNorm's γ and β.
                shapes.push(vec![width]);
                shapes.push(vec![width]);
            } else {
                shapes.push(vec![d_in, d_out]);
                shapes.push(vec![d_out]);
            }
        }
    }
    shapes.push(vec![width]);
    shapes.push(vec![width]);
    shapes
}

/// The number of parameters of `shapes`.
pub fn parameters(shapes: &[Vec<usize>]) -> usize {
    shapes.iter().map(|s| s.iter().product::<usize>()).sum()
}

#[cfg(test)]
mod tests {
    use super::{gpt2_small, parameters, resnet50};

    #[test]
    fn the_real_models_have_their_published_sizes() {
        let resnet = resnet50(1);
        assert_eq!(resnet.len(), 161);
        assert_eq!(parameters(&resnet), 25_557_032);
        let gpt2 = gpt2_small(1);
        assert_eq!(gpt2.len(), 148);
        assert_eq!(parameters(&gpt2), 124_439_808);
    }

    #[test]
    fn a_divisor_keeps_the_tensor_list() {
        assert_eq!(resnet50(16).len(), 161);
        assert_eq!(gpt2_small(12).len(), 148);
        assert!(parameters(&gpt2_small(12)) < 2_000_000);
    }
}
