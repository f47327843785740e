//! The soaks' network: two LayerNorm'd hidden layers of 16 and a 4-class head on fixed data
//! (a deterministic wave labelled by a fixed teacher). Included by `tests/soak.rs` and
//! `tests/soak_wgpu.rs` with `#[path]`.
#![allow(dead_code)]

use std::sync::Mutex;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};

pub const INPUTS: usize = 8;
pub const WIDTH: usize = 16;
pub const CLASSES: usize = 4;
pub const BATCH: usize = 32;
pub const BATCHES: usize = 8;

/// Seeding is global to the device: one network built at a time.
static INIT: Mutex<()> = Mutex::new(());

#[derive(Module, Debug)]
pub struct Net {
    pub l1: Linear,
    pub n1: LayerNorm,
    pub l2: Linear,
    pub n2: LayerNorm,
    pub head: Linear,
}

impl Net {
    pub fn new(device: &Device) -> Self {
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(11);
        let hidden = |d_in| LinearConfig::new(d_in, WIDTH).with_bias(false).init(device);
        let net = Self {
            l1: hidden(INPUTS),
            n1: LayerNormConfig::new(WIDTH).init(device),
            l2: hidden(WIDTH),
            n2: LayerNormConfig::new(WIDTH).init(device),
            head: LinearConfig::new(WIDTH, CLASSES).init(device),
        };
        // Burn draws a parameter's initial values at its first read: read the random ones here,
        // under the lock and right after the seed, or the soaks running on other threads would
        // draw from the same generator in between and no two runs would start alike.
        let _ = (
            net.l1.weight.val(),
            net.l2.weight.val(),
            net.head.weight.val(),
        );
        let _ = net.head.bias.as_ref().map(|b| b.val());
        net
    }

    pub fn loss(&self, x: Tensor<2>, y: Tensor<1, Int>) -> Tensor<1> {
        let h = relu(self.n1.forward(self.l1.forward(x)));
        let h = relu(self.n2.forward(self.l2.forward(h)));
        let logits = self.head.forward(h);
        CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, y)
    }
}

/// Fixed batches: inputs from a deterministic wave, labels from a fixed teacher.
pub fn batches(device: &Device) -> Vec<(Tensor<2>, Tensor<1, Int>)> {
    (0..BATCHES)
        .map(|b| {
            let x: Vec<f32> = (0..BATCH * INPUTS)
                .map(|i| (((b * BATCH * INPUTS + i) as f32) * 0.731).sin())
                .collect();
            let y: Vec<i64> = x
                .chunks(INPUTS)
                .map(|row| {
                    let score = |c: usize| -> f32 {
                        row.iter()
                            .enumerate()
                            .map(|(j, v)| v * (((c * INPUTS + j) as f32) * 1.37).cos())
                            .sum()
                    };
                    (0..CLASSES)
                        .max_by(|&a, &b| score(a).total_cmp(&score(b)))
                        .unwrap() as i64
                })
                .collect();
            (
                Tensor::from_data(TensorData::new(x, [BATCH, INPUTS]), device),
                Tensor::from_data(TensorData::new(y, [BATCH]), device),
            )
        })
        .collect()
}
