//! The catalog: every optimizer the generic tests iterate (edge tensors, non-finite
//! gradients, learning-rate checks, fused paths, resume, soak, data parallel). One file for
//! the optimizer crate's tests and the workspace's (`tests/common/mod.rs` includes it with
//! `#[path]`).
//!
//! Burn's `Optimizer` is not object-safe, so the per-tensor list is walked by a visitor:
//! [`for_each_optimizer`] calls [`OptimizerVisitor::visit`] once per entry with a builder
//! `Fn(Settings) -> O`. The module-level list, [`module_optimizers`], gives each entry's
//! `ModuleOptimizer` for a model.
//!
//! Adding an optimizer: a `const` [`Entry`], one line in [`for_each_optimizer`] and one in
//! [`module_optimizers`], in the same position (`crates/scaleinv-optim/tests/catalog.rs`
//! checks that the two lists name the same entries in the same order).
#![allow(dead_code)]

use burn::module::Module;
use burn::optim::{Adam, AdamConfig, AdamW, AdamWConfig, ModuleOptimizer, Optimizer};
use scaleinv_optim::{
    AdamCConfig, AdamPConfig, GradientStabilizerConfig, NapConfig, NonFinitePolicy,
    RadialProjectionConfig, RotationalAdamWConfig, RotationalSgdmConfig, SgdpConfig,
    StableSpamConfig, WidthRole, WidthScaledAdamWConfig,
};

/// One optimizer of the catalog and what the generic tests need to know about it.
#[derive(Debug)]
pub struct Entry {
    /// The name in test messages.
    pub name: &'static str,
    /// A constant learning rate it trains the soak's network with.
    pub lr: f64,
    /// Whether it owns its whole state. A wrapper (`false`) keeps part of its state in its
    /// inner optimizer, whose state a skipped step need not return bit for bit.
    pub owns_state: bool,
    /// Whether it holds the norms of the tensors it projects (NaP): a zero weight on such a
    /// tensor is an error, and the norms are checked after the soak.
    pub holds_norms: bool,
    /// Whether it has a fused flex path, switched by [`Settings::fused`].
    pub fused: bool,
    /// Whether its default configuration runs as CubeCL kernels on wgpu.
    pub kernels: bool,
    /// Whether it is built to absorb gradient spikes (the soak spikes its gradients).
    pub absorbs_spikes: bool,
    /// Whether its step can turn rounding into a whole step, so that two runs whose gradients
    /// differ by rounding (two backends) agree to the run's drift, not to rounding: a sign
    /// mask (the cautious optimizers drop an element whose sign test flips), or an update
    /// scaled to a fixed angle (the rotational ones turn a neuron whose update is rounding
    /// noise by the full equilibrium angle).
    pub amplifies_rounding: bool,
}

/// What a generic test may vary when it builds an entry.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// The policy for NaN and ±∞ gradients.
    pub non_finite: NonFinitePolicy,
    /// The fused flex path on (the default) or off (entries with [`Entry::fused`]).
    pub fused: bool,
    /// The channel axis of the optimizers that project per channel.
    pub channel_axis: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            non_finite: NonFinitePolicy::default(),
            fused: true,
            channel_axis: 0,
        }
    }
}

impl Settings {
    /// The defaults with the policy `non_finite`.
    pub fn non_finite(non_finite: NonFinitePolicy) -> Self {
        Self {
            non_finite,
            ..Self::default()
        }
    }

    /// The defaults with the fused path `fused` and the channel axis `channel_axis`.
    pub fn fused(fused: bool, channel_axis: usize) -> Self {
        Self {
            fused,
            channel_axis,
            ..Self::default()
        }
    }
}

/// A test run once per catalog entry.
pub trait OptimizerVisitor {
    /// Called with the entry and a builder of its per-tensor optimizer.
    fn visit<O: Optimizer>(&mut self, entry: &Entry, build: &dyn Fn(Settings) -> O);
}

pub const ADAMP: Entry = Entry {
    name: "AdamP",
    lr: 1e-3,
    owns_state: true,
    holds_norms: false,
    fused: true,
    kernels: true,
    absorbs_spikes: false,
    amplifies_rounding: false,
};
pub const SGDP: Entry = Entry {
    name: "SGDP (momentum, Nesterov)",
    lr: 1e-2,
    owns_state: true,
    holds_norms: false,
    fused: true,
    kernels: true,
    absorbs_spikes: false,
    amplifies_rounding: false,
};
pub const STABLE_SPAM: Entry = Entry {
    name: "Stable-SPAM",
    lr: 1e-3,
    owns_state: true,
    holds_norms: false,
    fused: true,
    kernels: true,
    absorbs_spikes: true,
    amplifies_rounding: false,
};
pub const WIDTH_SCALED_ADAMW: Entry = Entry {
    name: "width-scaled AdamW (matrix)",
    lr: 1e-3,
    owns_state: true,
    holds_norms: false,
    fused: true,
    kernels: true,
    absorbs_spikes: false,
    amplifies_rounding: false,
};
pub const RADIAL_ADAM: Entry = Entry {
    name: "RadialProjection(Burn Adam)",
    lr: 1e-3,
    owns_state: false,
    holds_norms: false,
    fused: false,
    kernels: false,
    absorbs_spikes: false,
    amplifies_rounding: false,
};
pub const NAP_ADAM: Entry = Entry {
    name: "NaP(Burn Adam)",
    lr: 1e-3,
    owns_state: false,
    holds_norms: true,
    fused: false,
    kernels: false,
    absorbs_spikes: false,
    amplifies_rounding: false,
};
pub const NAP_ADAMP: Entry = Entry {
    name: "NaP(AdamP)",
    lr: 1e-3,
    owns_state: false,
    holds_norms: true,
    // Through the inner AdamP.
    fused: true,
    kernels: true,
    absorbs_spikes: false,
    amplifies_rounding: false,
};

pub const ADAMC: Entry = Entry {
    name: "AdamC (normalized, running peak)",
    lr: 1e-3,
    owns_state: true,
    holds_norms: false,
    fused: true,
    kernels: true,
    absorbs_spikes: false,
    amplifies_rounding: false,
};
pub const STABILIZED_ADAMW: Entry = Entry {
    name: "GradientStabilizer(Burn AdamW)",
    lr: 1e-3,
    owns_state: false,
    holds_norms: false,
    fused: false,
    kernels: false,
    absorbs_spikes: true,
    amplifies_rounding: false,
};

pub const ADAMP_CAUTIOUS: Entry = Entry {
    name: "AdamP (cautious)",
    lr: 1e-3,
    owns_state: true,
    holds_norms: false,
    // The flex loops apply the mask; on wgpu a cautious step takes the tensor ops.
    fused: true,
    kernels: false,
    absorbs_spikes: false,
    amplifies_rounding: true,
};
pub const SGDP_CAUTIOUS: Entry = Entry {
    name: "SGDP (cautious, momentum)",
    lr: 1e-2,
    owns_state: true,
    holds_norms: false,
    fused: true,
    kernels: false,
    absorbs_spikes: false,
    amplifies_rounding: true,
};
/// The rotational optimizers hold each neuron at the norm of its centred weights from their
/// first step (`init_for` centres the model first; the catalog's constructors, which cannot
/// hand a model back, use `resume_for`), so the soak's check of the initial norms does not
/// apply (`holds_norms`); an all-zero neuron stays zero.
pub const ROTATIONAL_ADAMW: Entry = Entry {
    name: "RotationalAdamW",
    lr: 1e-3,
    owns_state: true,
    holds_norms: false,
    fused: false,
    kernels: false,
    absorbs_spikes: false,
    amplifies_rounding: true,
};
pub const ROTATIONAL_SGDM: Entry = Entry {
    name: "RotationalSgdm (momentum)",
    lr: 1e-2,
    owns_state: true,
    holds_norms: false,
    fused: false,
    kernels: false,
    absorbs_spikes: false,
    amplifies_rounding: true,
};

/// Burn's Adam with the references' ε (Burn's default is 1e-5).
fn adam() -> Adam {
    AdamConfig::new().with_epsilon(1e-8).build()
}

/// Torch's AdamW defaults (Burn's ε is 1e-5, its decay 1e-4).
fn adamw() -> AdamW {
    AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(1e-2)
        .build()
}

/// AdamC with the largest learning rate seen as its peak (the record carries it).
fn adamc(s: Settings) -> AdamCConfig {
    AdamCConfig::new()
        .with_weight_decay(1e-2)
        .with_non_finite(s.non_finite)
        .with_fused(s.fused)
}

fn stabilizer(s: Settings) -> GradientStabilizerConfig {
    GradientStabilizerConfig::new().with_non_finite(s.non_finite)
}

fn adamp(s: Settings) -> AdamPConfig {
    AdamPConfig::new()
        .with_weight_decay(1e-2)
        .with_non_finite(s.non_finite)
        .with_fused(s.fused)
        .with_channel_axis(s.channel_axis)
}

fn sgdp(s: Settings) -> SgdpConfig {
    SgdpConfig::new()
        .with_momentum(0.9)
        .with_nesterov(true)
        .with_weight_decay(1e-3)
        .with_non_finite(s.non_finite)
        .with_fused(s.fused)
        .with_channel_axis(s.channel_axis)
}

fn stable_spam(s: Settings) -> StableSpamConfig {
    StableSpamConfig::new()
        .with_non_finite(s.non_finite)
        .with_fused(s.fused)
}

/// The soak's network is 16 wide: twice the base width.
fn width_scaled_adamw(s: Settings) -> WidthScaledAdamWConfig {
    WidthScaledAdamWConfig::new(16, 32)
        .with_weight_decay(1e-2)
        .with_non_finite(s.non_finite)
        .with_fused(s.fused)
}

fn radial(s: Settings) -> RadialProjectionConfig {
    RadialProjectionConfig::new()
        .with_weight_decay(1e-2)
        .with_non_finite(s.non_finite)
        .with_channel_axis(s.channel_axis)
}

fn nap(s: Settings) -> NapConfig {
    NapConfig::new().with_non_finite(s.non_finite)
}

fn rotational_adamw(s: Settings) -> RotationalAdamWConfig {
    RotationalAdamWConfig::new()
        .with_weight_decay(0.1)
        .with_non_finite(s.non_finite)
        .with_neuron_axis(s.channel_axis)
}

fn rotational_sgdm(s: Settings) -> RotationalSgdmConfig {
    RotationalSgdmConfig::new(5e-4)
        .with_momentum(0.9)
        .with_non_finite(s.non_finite)
        .with_neuron_axis(s.channel_axis)
}

/// Visits every per-tensor optimizer of the catalog.
pub fn for_each_optimizer(v: &mut impl OptimizerVisitor) {
    v.visit(&ADAMP, &|s| adamp(s).build());
    v.visit(&SGDP, &|s| sgdp(s).build());
    v.visit(&STABLE_SPAM, &|s| stable_spam(s).build());
    v.visit(&WIDTH_SCALED_ADAMW, &|s| {
        width_scaled_adamw(s).build(WidthRole::Matrix)
    });
    v.visit(&RADIAL_ADAM, &|s| radial(s).wrap(adam()));
    v.visit(&NAP_ADAM, &|s| nap(s).wrap(adam()));
    v.visit(&NAP_ADAMP, &|s| nap(s).wrap(adamp(s).build()));
    v.visit(&ADAMC, &|s| adamc(s).build(true));
    v.visit(&STABILIZED_ADAMW, &|s| stabilizer(s).wrap(adamw()));
    v.visit(&ADAMP_CAUTIOUS, &|s| adamp(s).with_caution(true).build());
    v.visit(&SGDP_CAUTIOUS, &|s| {
        sgdp(s).with_nesterov(false).with_caution(true).build()
    });
    v.visit(&ROTATIONAL_ADAMW, &|s| rotational_adamw(s).build());
    v.visit(&ROTATIONAL_SGDM, &|s| rotational_sgdm(s).build());
}

/// Builds an entry's `ModuleOptimizer` for a model (default [`Settings`]).
pub type InitFor<M> = fn(&M) -> ModuleOptimizer;

/// Every entry of the catalog as a `ModuleOptimizer` for a model of type `M`: the same entries
/// as [`for_each_optimizer`], in the same order.
pub fn module_optimizers<M: Module>() -> Vec<(&'static Entry, InitFor<M>)> {
    vec![
        (&ADAMP, |m| adamp(Settings::default()).init_for(m)),
        (&SGDP, |m| sgdp(Settings::default()).init_for(m)),
        (&STABLE_SPAM, |_| stable_spam(Settings::default()).init()),
        (&WIDTH_SCALED_ADAMW, |m| {
            width_scaled_adamw(Settings::default()).init_for(m)
        }),
        (&RADIAL_ADAM, |m| {
            radial(Settings::default()).init_for(adam(), m)
        }),
        (&NAP_ADAM, |m| nap(Settings::default()).init_for(adam(), m)),
        (&NAP_ADAMP, |m| {
            nap(Settings::default()).init_for(adamp(Settings::default()).build(), m)
        }),
        (&ADAMC, |m| adamc(Settings::default()).init_for(m)),
        (&STABILIZED_ADAMW, |m| {
            stabilizer(Settings::default()).init_for(adamw(), m)
        }),
        (&ADAMP_CAUTIOUS, |m| {
            adamp(Settings::default()).with_caution(true).init_for(m)
        }),
        (&SGDP_CAUTIOUS, |m| {
            sgdp(Settings::default())
                .with_nesterov(false)
                .with_caution(true)
                .init_for(m)
        }),
        (&ROTATIONAL_ADAMW, |m| {
            rotational_adamw(Settings::default()).resume_for(m)
        }),
        (&ROTATIONAL_SGDM, |m| {
            rotational_sgdm(Settings::default()).resume_for(m)
        }),
    ]
}

/// A constructor of an entry's `ModuleOptimizer` by name (`init`, `init_for`, …), for a model
/// of type `M` (default [`Settings`]).
pub type Constructor<M> = (&'static Entry, &'static str, InitFor<M>);

/// Every entry of the catalog through each of its module-level constructors: what a user
/// calls (`init`, `init_for`, `try_init_with`, `init_observed`, and the wrappers' `init` and
/// `init_for` around their inner optimizer). Each entry appears at least once, in catalog
/// order.
pub fn constructors<M: Module>() -> Vec<Constructor<M>> {
    use scaleinv_optim::{ChannelAxes, ProjectionObserver};
    vec![
        (&ADAMP, "init", |_| adamp(Settings::default()).init()),
        (&ADAMP, "init_for", |m| {
            adamp(Settings::default()).init_for(m)
        }),
        (&ADAMP, "try_init_with", |m| {
            adamp(Settings::default())
                .try_init_with(&ChannelAxes::infer(m))
                .unwrap()
        }),
        (&ADAMP, "init_observed", |m| {
            adamp(Settings::default()).init_observed(m, &ProjectionObserver::new())
        }),
        (&SGDP, "init", |_| sgdp(Settings::default()).init()),
        (&SGDP, "init_for", |m| sgdp(Settings::default()).init_for(m)),
        (&SGDP, "try_init_with", |m| {
            sgdp(Settings::default())
                .try_init_with(&ChannelAxes::infer(m))
                .unwrap()
        }),
        (&SGDP, "init_observed", |m| {
            sgdp(Settings::default()).init_observed(m, &ProjectionObserver::new())
        }),
        (&STABLE_SPAM, "init", |_| {
            stable_spam(Settings::default()).init()
        }),
        (&STABLE_SPAM, "init_for", |m| {
            stable_spam(Settings::default()).init_for(m)
        }),
        (&WIDTH_SCALED_ADAMW, "init_for", |m| {
            width_scaled_adamw(Settings::default()).init_for(m)
        }),
        (&RADIAL_ADAM, "init", |_| {
            radial(Settings::default()).init(adam())
        }),
        (&RADIAL_ADAM, "init_for", |m| {
            radial(Settings::default()).init_for(adam(), m)
        }),
        (&RADIAL_ADAM, "try_init_with", |m| {
            radial(Settings::default())
                .try_init_with(adam(), &ChannelAxes::infer(m))
                .unwrap()
        }),
        (&NAP_ADAM, "init", |_| nap(Settings::default()).init(adam())),
        (&NAP_ADAM, "init_for", |m| {
            nap(Settings::default()).init_for(adam(), m)
        }),
        (&NAP_ADAMP, "init", |_| {
            nap(Settings::default()).init(adamp(Settings::default()).build())
        }),
        (&NAP_ADAMP, "init_for", |m| {
            nap(Settings::default()).init_for(adamp(Settings::default()).build(), m)
        }),
        (&ADAMC, "init_for", |m| {
            adamc(Settings::default()).init_for(m)
        }),
        (&STABILIZED_ADAMW, "init", |_| {
            stabilizer(Settings::default()).init(adamw())
        }),
        (&STABILIZED_ADAMW, "init_for", |m| {
            stabilizer(Settings::default()).init_for(adamw(), m)
        }),
        (&ADAMP_CAUTIOUS, "init_for", |m| {
            adamp(Settings::default()).with_caution(true).init_for(m)
        }),
        (&ADAMP_CAUTIOUS, "init_observed", |m| {
            adamp(Settings::default())
                .with_caution(true)
                .init_observed(m, &ProjectionObserver::new())
        }),
        (&SGDP_CAUTIOUS, "init", |_| {
            sgdp(Settings::default())
                .with_nesterov(false)
                .with_caution(true)
                .init()
        }),
        (&SGDP_CAUTIOUS, "init_for", |m| {
            sgdp(Settings::default())
                .with_nesterov(false)
                .with_caution(true)
                .init_for(m)
        }),
        // `init_for` takes the model and hands it back prepared, which these constructors
        // cannot: the optimizer it builds is `resume_for`'s, whose own test is in
        // tests/rotational.rs.
        (&ROTATIONAL_ADAMW, "resume_for", |m| {
            rotational_adamw(Settings::default()).resume_for(m)
        }),
        (&ROTATIONAL_SGDM, "resume_for", |m| {
            rotational_sgdm(Settings::default()).resume_for(m)
        }),
    ]
}

/// The names of [`for_each_optimizer`]'s entries, in order.
pub fn names() -> Vec<&'static str> {
    struct Names(Vec<&'static str>);
    impl OptimizerVisitor for Names {
        fn visit<O: Optimizer>(&mut self, entry: &Entry, _: &dyn Fn(Settings) -> O) {
            self.0.push(entry.name);
        }
    }
    let mut names = Names(Vec::new());
    for_each_optimizer(&mut names);
    names.0
}
