//! The "tiny shakespeare" corpus (1,115,394 characters of Shakespeare plays), embedded in the
//! crate, as a character-level language-modelling task. Public domain; see `data/README.md`
//! for the attribution.

use std::io::Read;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::rng::SplitMix64;

const TINYSHAKESPEARE_GZ: &[u8] = include_bytes!("../data/tinyshakespeare.txt.gz");

/// A text as a sequence of character ids over a sorted character vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharCorpus {
    vocab: Vec<char>,
    tokens: Vec<usize>,
}

impl CharCorpus {
    /// The whole embedded corpus; the vocabulary is its sorted distinct characters (65).
    pub fn load() -> Self {
        let mut text = String::new();
        flate2::read::GzDecoder::new(TINYSHAKESPEARE_GZ)
            .read_to_string(&mut text)
            .expect("the embedded tinyshakespeare.txt.gz is valid gzip UTF-8");
        Self::from_text(&text)
    }

    /// A corpus over `text`, with the sorted distinct characters of `text` as vocabulary.
    pub fn from_text(text: &str) -> Self {
        let mut vocab: Vec<char> = text.chars().collect();
        vocab.sort_unstable();
        vocab.dedup();
        let tokens = text
            .chars()
            .map(|c| vocab.binary_search(&c).expect("char is in the vocabulary"))
            .collect();
        Self { vocab, tokens }
    }

    /// Number of distinct characters.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The vocabulary, sorted; a token id is an index into it.
    pub fn vocab(&self) -> &[char] {
        &self.vocab
    }

    /// Number of tokens (characters).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token ids.
    pub fn tokens(&self) -> &[usize] {
        &self.tokens
    }

    /// The ids of the characters of `text`, or `None` if one is not in the vocabulary.
    pub fn encode(&self, text: &str) -> Option<Vec<usize>> {
        text.chars()
            .map(|c| self.vocab.binary_search(&c).ok())
            .collect()
    }

    /// The text of `tokens`.
    ///
    /// # Panics
    /// If an id is not below [`vocab_size`](Self::vocab_size).
    pub fn decode(&self, tokens: &[usize]) -> String {
        tokens.iter().map(|&t| self.vocab[t]).collect()
    }

    /// Splits the text at `round(train_fraction · len)` into `(train, validation)`: two
    /// contiguous parts that keep the full vocabulary, so ids mean the same in both.
    pub fn split(&self, train_fraction: f64) -> (Self, Self) {
        let at = (train_fraction.clamp(0.0, 1.0) * self.len() as f64).round() as usize;
        let part = |tokens: &[usize]| Self {
            vocab: self.vocab.clone(),
            tokens: tokens.to_vec(),
        };
        (part(&self.tokens[..at]), part(&self.tokens[at..]))
    }

    /// One batch of `batch_size` windows drawn with a sampler seeded by `seed`; the same as
    /// `BatchSampler::new(seed).sample(self, batch_size, seq_len, device)`.
    pub fn batch(
        &self,
        seed: u64,
        batch_size: usize,
        seq_len: usize,
        device: &Device,
    ) -> (Tensor<2, Int>, Tensor<2, Int>) {
        BatchSampler::new(seed).sample(self, batch_size, seq_len, device)
    }
}

/// Draws language-modelling batches: windows of the text at uniformly random offsets.
/// The sequence of batches is fixed by the seed.
#[derive(Debug, Clone)]
pub struct BatchSampler {
    rng: SplitMix64,
}

impl BatchSampler {
    /// A sampler whose batches are determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64(seed),
        }
    }

    /// The next batch from `corpus`: `(inputs, targets)`, both `[batch_size, seq_len]`, where
    /// each target row is its input row shifted one character to the left (the next character).
    ///
    /// # Panics
    /// If the corpus has fewer than `seq_len + 1` tokens.
    pub fn sample(
        &mut self,
        corpus: &CharCorpus,
        batch_size: usize,
        seq_len: usize,
        device: &Device,
    ) -> (Tensor<2, Int>, Tensor<2, Int>) {
        assert!(
            corpus.len() > seq_len,
            "a window of {} tokens does not fit in a corpus of {}",
            seq_len + 1,
            corpus.len()
        );
        let windows = corpus.len() - seq_len;
        let mut inputs = Vec::with_capacity(batch_size * seq_len);
        let mut targets = Vec::with_capacity(batch_size * seq_len);
        for _ in 0..batch_size {
            let start = self.rng.below(windows);
            let window = &corpus.tokens[start..start + seq_len + 1];
            inputs.extend(window[..seq_len].iter().map(|&t| t as i64));
            targets.extend(window[1..].iter().map(|&t| t as i64));
        }
        let shape = [batch_size, seq_len];
        (
            Tensor::from_data(TensorData::new(inputs, shape), device),
            Tensor::from_data(TensorData::new(targets, shape), device),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu_device;

    fn ids(t: Tensor<2, Int>) -> Vec<i64> {
        t.into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap()
    }

    #[test]
    fn corpus_loads_with_its_65_characters() {
        let corpus = CharCorpus::load();
        assert_eq!(corpus.len(), 1_115_394);
        assert_eq!(corpus.vocab_size(), 65);
        assert!(corpus.vocab().windows(2).all(|w| w[0] < w[1]));
        assert!(corpus.decode(&corpus.tokens()[..14]) == "First Citizen:");
    }

    #[test]
    fn decode_inverts_encode() {
        let corpus = CharCorpus::load();
        let text = "To be, or not to be: that is the question.\n";
        let tokens = corpus.encode(text).unwrap();
        assert_eq!(corpus.decode(&tokens), text);
        assert_eq!(corpus.encode("tilde ~ is not in it"), None);
        let start = &corpus.tokens()[1000..1500];
        assert_eq!(corpus.encode(&corpus.decode(start)).unwrap(), start);
    }

    #[test]
    fn split_is_contiguous_and_keeps_the_vocabulary() {
        let corpus = CharCorpus::from_text("abcabcabcz");
        let (train, valid) = corpus.split(0.9);
        assert_eq!((train.len(), valid.len()), (9, 1));
        assert_eq!(valid.decode(valid.tokens()), "z");
        assert_eq!(train.vocab_size(), 4);
        assert_eq!([train.tokens(), valid.tokens()].concat(), corpus.tokens());
    }

    #[test]
    fn batches_are_shifted_windows_and_deterministic() {
        let device = cpu_device();
        let corpus = CharCorpus::from_text(&"0123456789".repeat(3));
        let (inputs, targets) = corpus.batch(7, 4, 5, &device);
        assert_eq!(inputs.dims(), [4, 5]);
        assert_eq!(targets.dims(), [4, 5]);
        let (x, y) = (ids(inputs.clone()), ids(targets));
        for row in 0..4 {
            let x = &x[row * 5..(row + 1) * 5];
            let y = &y[row * 5..(row + 1) * 5];
            // The text counts up mod 10, so every step adds one.
            assert!(x.windows(2).all(|w| (w[0] + 1) % 10 == w[1]));
            assert!(x.iter().zip(y).all(|(a, b)| (a + 1) % 10 == *b));
        }
        assert_eq!(ids(corpus.batch(7, 4, 5, &device).0), x);
        let mut sampler = BatchSampler::new(7);
        assert_eq!(ids(sampler.sample(&corpus, 4, 5, &device).0), x);
        assert_ne!(ids(sampler.sample(&corpus, 4, 5, &device).0), x);
    }
}
