//! Every optimizer the examples accept by name builds for the MNIST classifier and takes a step
//! that lowers the loss on its batch; an unknown name is an error that lists the names.

mod common;

use burn::optim::GradientsParams;
use scaleinv::models::learner::{Classifier, OPTIMIZERS, mnist_splits, optimizer_by_name};
use scaleinv::models::{ResNet, ResNetConfig};

fn small(device: &burn::tensor::Device) -> Classifier {
    Classifier {
        net: ResNetConfig {
            widths: vec![4, 8],
            ..ResNetConfig::default()
        }
        .init(device),
    }
}

#[test]
fn every_named_optimizer_lowers_the_loss_of_its_batch() {
    let device = common::cpu_device().autodiff();
    let (train, _, _) = mnist_splits();
    let (x, y) = train
        .select(&(0..32).collect::<Vec<_>>())
        .to_tensors(&device);
    let loss = |net: &ResNet| common::values(net.loss(x.clone(), y.clone()))[0];
    for name in OPTIMIZERS {
        let mut model = small(&device);
        let mut optim = optimizer_by_name(name, &model, 1e-4).unwrap_or_else(|e| panic!("{e}"));
        let before = loss(&model.net);
        for _ in 0..3 {
            let grads = GradientsParams::from_grads(
                model.net.loss(x.clone(), y.clone()).backward(),
                &model,
            );
            model = optim.step(1e-2, model, grads);
        }
        let after = loss(&model.net);
        assert!(after < before, "{name}: {before} -> {after}");
    }
}

#[test]
fn an_unknown_name_lists_the_known_ones() {
    let device = common::cpu_device().autodiff();
    let Err(err) = optimizer_by_name("adamq", &small(&device), 0.0) else {
        panic!("an unknown name was accepted");
    };
    assert!(err.contains("adamq") && err.contains("sgdp"), "{err}");
}
