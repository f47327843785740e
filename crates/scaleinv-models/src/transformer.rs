//! A small pre-norm causal transformer language model (GPT-style) for character-level text.
//!
//! Every linear layer (query, key, value and output projections, the MLP, the head) is a
//! [`QuantLinear`], so one setting, [`TinyLmConfig::quant_bits`], fake-quantises all of their
//! weights and input activations (activations with one scale per token, which keeps the model
//! causal). Embeddings and LayerNorms stay full precision.

use burn::config::Config;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Bool, Device, Int, Tensor};

use crate::quant::QuantLinear;

/// Hyperparameters of [`TinyLm`].
#[derive(Config, Debug)]
pub struct TinyLmConfig {
    /// Number of token ids.
    pub vocab_size: usize,
    /// Width of the residual stream.
    #[config(default = 64)]
    pub d_model: usize,
    /// Attention heads; must divide `d_model`.
    #[config(default = 4)]
    pub n_heads: usize,
    /// Transformer blocks.
    #[config(default = 2)]
    pub n_layers: usize,
    /// Longest sequence (the size of the learned positional embedding).
    #[config(default = 64)]
    pub seq_len: usize,
    /// Hidden width of the MLP as a multiple of `d_model`.
    #[config(default = 4)]
    pub mlp_ratio: usize,
    /// Bits of the fake quantisation of every linear layer's weight and input; 0 = off.
    #[config(default = 0)]
    pub quant_bits: u32,
}

/// Standard deviation of the embeddings and of the output head's weight at initialisation.
const INIT_STD: f64 = 0.02;

impl TinyLmConfig {
    /// Builds the model on `device`.
    ///
    /// # Panics
    /// If `n_heads` does not divide `d_model`.
    pub fn init(&self, device: &Device) -> TinyLm {
        assert!(
            self.n_heads > 0 && self.d_model.is_multiple_of(self.n_heads),
            "n_heads ({}) must divide d_model ({})",
            self.n_heads,
            self.d_model
        );
        let d = self.d_model;
        let small = Initializer::Normal {
            mean: 0.0,
            std: INIT_STD,
        };
        let embedding = |n| {
            EmbeddingConfig::new(n, d)
                .with_initializer(small.clone())
                .init(device)
        };
        let head = LinearConfig::new(d, self.vocab_size)
            .with_bias(false)
            .with_initializer(small.clone())
            .init(device);
        TinyLm {
            token_embedding: embedding(self.vocab_size),
            position_embedding: embedding(self.seq_len),
            blocks: (0..self.n_layers)
                .map(|_| Block::new(self, device))
                .collect(),
            norm: LayerNormConfig::new(d).init(device),
            head: QuantLinear::new(head, self.quant_bits),
        }
    }
}

/// A [`QuantLinear`] with Burn's default [`Linear`](burn::nn::Linear) initialisation.
fn quant_linear(d_input: usize, d_output: usize, bits: u32, device: &Device) -> QuantLinear {
    QuantLinear::new(LinearConfig::new(d_input, d_output).init(device), bits)
}

/// Multi-head causal self-attention with separate query, key, value and output projections.
#[derive(Module, Debug)]
pub struct CausalSelfAttention {
    /// Query projection, `d_model → d_model`.
    pub query: QuantLinear,
    /// Key projection, `d_model → d_model`.
    pub key: QuantLinear,
    /// Value projection, `d_model → d_model`.
    pub value: QuantLinear,
    /// Output projection, `d_model → d_model`.
    pub output: QuantLinear,
    n_heads: usize,
}

impl CausalSelfAttention {
    fn new(config: &TinyLmConfig, device: &Device) -> Self {
        let (d, bits) = (config.d_model, config.quant_bits);
        Self {
            query: quant_linear(d, d, bits, device),
            key: quant_linear(d, d, bits, device),
            value: quant_linear(d, d, bits, device),
            output: quant_linear(d, d, bits, device),
            n_heads: config.n_heads,
        }
    }

    /// `[batch, seq, d_model]` → `[batch, seq, d_model]`; position `t` attends to `0..=t`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, seq, d_model] = x.dims();
        let (heads, d_head) = (self.n_heads, d_model / self.n_heads);
        // [batch, seq, d_model] → [batch, heads, seq, d_head]
        let split = |t: Tensor<3>| t.reshape([batch, seq, heads, d_head]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));

        let scores = q.matmul(k.transpose()) / (d_head as f64).sqrt();
        // `true` above the diagonal: the future positions each query must not see.
        let future = Tensor::<2, Bool>::tril_mask([seq, seq], 0, &scores.device())
            .unsqueeze::<4>()
            .expand([batch, heads, seq, seq]);
        let weights = softmax(scores.mask_fill(future, -1.0e9), 3);
        let context = weights
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, seq, d_model]);
        self.output.forward(context)
    }
}

/// The feed-forward part of a block: `down(gelu(up(x)))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `d_model → mlp_ratio · d_model`.
    pub up: QuantLinear,
    /// `mlp_ratio · d_model → d_model`.
    pub down: QuantLinear,
}

impl Mlp {
    fn new(config: &TinyLmConfig, device: &Device) -> Self {
        let (d, bits) = (config.d_model, config.quant_bits);
        let hidden = config.mlp_ratio * d;
        Self {
            up: quant_linear(d, hidden, bits, device),
            down: quant_linear(hidden, d, bits, device),
        }
    }

    /// `[..., d_model]` → `[..., d_model]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.down.forward(gelu(self.up.forward(x)))
    }
}

/// A pre-norm transformer block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.
#[derive(Module, Debug)]
pub struct Block {
    /// LayerNorm before the attention.
    pub attn_norm: LayerNorm,
    /// Causal self-attention.
    pub attn: CausalSelfAttention,
    /// LayerNorm before the MLP.
    pub mlp_norm: LayerNorm,
    /// The MLP.
    pub mlp: Mlp,
}

impl Block {
    fn new(config: &TinyLmConfig, device: &Device) -> Self {
        Self {
            attn_norm: LayerNormConfig::new(config.d_model).init(device),
            attn: CausalSelfAttention::new(config, device),
            mlp_norm: LayerNormConfig::new(config.d_model).init(device),
            mlp: Mlp::new(config, device),
        }
    }

    /// `[batch, seq, d_model]` → `[batch, seq, d_model]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.attn_norm.forward(x));
        x.clone() + self.mlp.forward(self.mlp_norm.forward(x))
    }
}

/// A small causal transformer language model; see [`TinyLmConfig`].
#[derive(Module, Debug)]
pub struct TinyLm {
    /// Token embedding, `[vocab_size, d_model]`.
    pub token_embedding: Embedding,
    /// Learned positional embedding, `[seq_len, d_model]`.
    pub position_embedding: Embedding,
    /// The transformer blocks.
    pub blocks: Vec<Block>,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// Output head, `d_model → vocab_size`, no bias.
    pub head: QuantLinear,
}

impl TinyLm {
    /// Logits `[batch, seq, vocab_size]` for token ids `[batch, seq]`; position `t` sees only
    /// tokens `0..=t`.
    ///
    /// # Panics
    /// If `seq` exceeds the configured `seq_len`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [batch, seq] = tokens.dims();
        let max_seq = self.position_embedding.weight.dims()[0];
        assert!(
            seq <= max_seq,
            "sequence of {seq} tokens is longer than seq_len {max_seq}"
        );
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &tokens.device())
            .unsqueeze::<2>()
            .expand([batch, seq]);
        let mut x =
            self.token_embedding.forward(tokens) + self.position_embedding.forward(positions);
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.head.forward(self.norm.forward(x))
    }

    /// Mean next-token cross-entropy (shape `[1]`) of the logits for `tokens` against
    /// `targets`, both `[batch, seq]`.
    pub fn loss(&self, tokens: Tensor<2, Int>, targets: Tensor<2, Int>) -> Tensor<1> {
        let logits = self.forward(tokens);
        let [batch, seq, vocab] = logits.dims();
        CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(
                logits.reshape([batch * seq, vocab]),
                targets.reshape([batch * seq]),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu_device;
    use crate::shakespeare::CharCorpus;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::{TensorData, Tolerance};

    fn tokens(rows: &[&[i64]], device: &Device) -> Tensor<2, Int> {
        let shape = [rows.len(), rows[0].len()];
        Tensor::from_data(TensorData::new(rows.concat(), shape), device)
    }

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()[0]
    }

    #[test]
    fn forward_shapes() {
        let device = cpu_device();
        for bits in [0, 4] {
            let model = TinyLmConfig::new(11)
                .with_d_model(32)
                .with_seq_len(8)
                .with_quant_bits(bits)
                .init(&device);
            let x = tokens(&[&[1, 2, 3, 4, 5], &[0, 10, 9, 8, 7]], &device);
            assert_eq!(model.forward(x.clone()).dims(), [2, 5, 11]);
            assert_eq!(model.loss(x.clone(), x).dims(), [1]);
        }
    }

    #[test]
    fn later_tokens_do_not_change_earlier_logits() {
        let device = cpu_device();
        for bits in [0, 4] {
            device.seed(5);
            let model = TinyLmConfig::new(13)
                .with_seq_len(8)
                .with_quant_bits(bits)
                .init(&device);
            let a = model.forward(tokens(&[&[1, 2, 3, 4, 5, 6]], &device));
            let b = model.forward(tokens(&[&[1, 2, 3, 4, 12, 0]], &device));
            let early = |t: Tensor<3>| t.slice([0..1, 0..4, 0..13]).into_data();
            let late = |t: Tensor<3>| t.slice([0..1, 4..6, 0..13]).into_data();
            early(a.clone()).assert_approx_eq::<f32>(&early(b.clone()), Tolerance::strict());
            assert_ne!(late(a), late(b));
        }
    }

    #[test]
    fn initial_loss_is_near_uniform() {
        let device = cpu_device();
        device.seed(2);
        let corpus = CharCorpus::load();
        let model = TinyLmConfig::new(corpus.vocab_size()).init(&device);
        let (x, y) = corpus.batch(0, 8, 64, &device);
        let loss = scalar(model.loss(x, y));
        let uniform = (corpus.vocab_size() as f32).ln();
        assert!((loss - uniform).abs() < 0.1, "{loss} vs ln(V) = {uniform}");
    }

    #[test]
    fn loss_decreases_under_adam() {
        let device = cpu_device().autodiff();
        let corpus = CharCorpus::load();
        for bits in [0, 4] {
            device.seed(9);
            let mut model = TinyLmConfig::new(corpus.vocab_size())
                .with_d_model(32)
                .with_n_layers(1)
                .with_seq_len(32)
                .with_quant_bits(bits)
                .init(&device);
            let mut optim = AdamConfig::new().init();
            let (x, y) = corpus.batch(bits as u64, 8, 32, &device);
            let first = scalar(model.loss(x.clone(), y.clone()));
            for _ in 0..30 {
                let loss = model.loss(x.clone(), y.clone());
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(1e-2, model, grads);
            }
            let last = scalar(model.loss(x, y));
            assert!(last < first - 1.0, "{bits} bits: loss {first} -> {last}");
        }
    }
}
