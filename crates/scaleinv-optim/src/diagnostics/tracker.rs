//! What the optimizer does to the weights over a run, sampled every N steps. See
//! [`DiagnosticsTracker`].

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, Param, ParamId};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::diagnostics::observer::ProjectionObserver;
use crate::diagnostics::spectral::{PowerIteration, top_singular_value};
use crate::model::params::{ParamInfo, ParamVisitor, read_back, visit_params};
use crate::rules::projection::ProjectionBranch;

/// One trainable parameter at one sampled step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticRow {
    /// The step (as numbered by the caller of [`DiagnosticsTracker::before_step`]).
    pub step: usize,
    /// Path in the module.
    pub path: String,
    /// The struct that owns the parameter.
    pub module_type: String,
    /// The parameter's rank.
    pub rank: usize,
    /// `‖w‖` after the step.
    pub norm: f64,
    /// Effective step size `‖Δw‖ / ‖w‖`, with `w` before the step (`None` when `w` was 0).
    pub effective_step: Option<f64>,
    /// `‖u − u_projected‖ / ‖u‖`: the fraction of the base update removed as radial (only for
    /// parameters stepped by an observed projecting optimizer).
    pub radial_fraction: Option<f64>,
    /// The branch the projection took (observed optimizers only).
    pub branch: Option<ProjectionBranch>,
    /// `σ_max` of the weight viewed as `[size(0), rest]` (rank ≥ 2, when enabled).
    pub sigma_max: Option<f64>,
    /// The angle in radians between `w` before and after the step (`None` when either is 0).
    #[serde(default)]
    pub angular_update: Option<f64>,
    /// The equilibrium angle per step that [`Equilibrium`] predicts for a scale-invariant
    /// weight at this step's learning rate (rank ≥ 2, when the tracker was given the
    /// optimizer's and the step's learning rate: [`DiagnosticsTracker::with_equilibrium`],
    /// [`DiagnosticsTracker::before_step_at`]).
    #[serde(default)]
    pub equilibrium_angle: Option<f64>,
}

/// The optimizer whose equilibrium angular update the tracker predicts (Kosson et al., ICML
/// 2024): with weight decay, a scale-invariant weight's norm settles where each step turns it
/// by `√(2·η·λ·(1 − β1)/(1 + β1))` (AdamW, Adam-type) or `√(2·η·λ/(1 + μ))` (SGD with
/// momentum). The rotational optimizers hold every neuron there from the first step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Equilibrium {
    /// AdamW (and RotationalAdamW) with decoupled decay λ and β1.
    AdamW {
        /// λ.
        weight_decay: f64,
        /// β1.
        beta_1: f64,
    },
    /// SGD with momentum μ and L2 decay λ (and RotationalSgdm).
    Sgdm {
        /// λ.
        weight_decay: f64,
        /// μ.
        momentum: f64,
    },
}

impl Equilibrium {
    /// The equilibrium angle per step at learning rate `lr`, in radians.
    pub fn angle(&self, lr: f64) -> f64 {
        use crate::rules::rotation::{adamw_equilibrium, sgdm_equilibrium};
        match *self {
            Self::AdamW {
                weight_decay,
                beta_1,
            } => adamw_equilibrium(lr, weight_decay, beta_1),
            Self::Sgdm {
                weight_decay,
                momentum,
            } => sgdm_equilibrium(lr, weight_decay, momentum),
        }
    }
}

/// Samples, every `every` steps, per trainable parameter: the weight norm, the effective step
/// size `‖Δw‖/‖w‖`, the angular update (the angle between `w` before and after the step,
/// beside the equilibrium angle of [`with_equilibrium`](Self::with_equilibrium)), the fraction
/// of the update the projection removed as radial, the branch it took, and `σ_max` of
/// matrices.
///
/// The step itself is not slowed: the tracker snapshots the parameters before a sampled step
/// (tensor handles, no copy) and arms its [`ProjectionObserver`]; the observed optimizers then
/// queue three scalars per tensor on the device for that step only, and
/// [`after_step`](Self::after_step) reads everything back after the step. Between samples an
/// observed step costs one atomic load. Optimizers without an observer (Burn's Adam, SGD…)
/// get norms, step sizes and `σ_max`; build AdamP/SGDP with `init_observed` and
/// [`RadialProjectionConfig`](crate::RadialProjectionConfig) with `try_init_observed` to get
/// the projection columns too.
///
/// ```
/// use burn::prelude::*;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::optim::GradientsParams;
/// use scaleinv_optim::{AdamPConfig, DiagnosticsTracker};
///
/// # #[cfg(feature = "flex")] {
/// let device = Device::flex().autodiff();
/// let mut model: Linear = LinearConfig::new(4, 3).init(&device);
/// let mut tracker = DiagnosticsTracker::new(10);
/// let mut optim = AdamPConfig::new().init_observed(&model, tracker.observer());
/// for step in 0..20 {
///     let loss = model.forward(Tensor::<2>::ones([8, 4], &device)).square().mean();
///     let grads = GradientsParams::from_grads(loss.backward(), &model);
///     tracker.before_step(step, &model);
///     model = optim.step(1e-3, model, grads);
///     tracker.after_step(&model);
/// }
/// let rows = tracker.rows();
/// assert_eq!(rows.len(), 4); // steps 0 and 10, weight and bias
/// assert!(rows[0].branch.is_some() && rows[1].branch.is_none());
/// print!("{}", tracker.to_csv());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DiagnosticsTracker {
    every: usize,
    observer: ProjectionObserver,
    sigma: Option<PowerIteration>,
    pending: Option<Snapshot>,
    rows: Vec<DiagnosticRow>,
    equilibrium: Option<Equilibrium>,
}

/// The parameters before a sampled step, flattened, and the step's learning rate if given.
#[derive(Debug, Clone)]
struct Snapshot {
    step: usize,
    lr: Option<f64>,
    before: HashMap<ParamId, Tensor<1>>,
}

impl DiagnosticsTracker {
    /// Samples every `every` steps (0 counts as 1), with `σ_max` by the default
    /// [`PowerIteration`].
    pub fn new(every: usize) -> Self {
        Self {
            every: every.max(1),
            observer: ProjectionObserver::new(),
            sigma: Some(PowerIteration::default()),
            pending: None,
            rows: Vec::new(),
            equilibrium: None,
        }
    }

    /// With the equilibrium angle of `equilibrium` beside each weight's angular update (at the
    /// learning rate given to [`before_step_at`](Self::before_step_at)).
    pub fn with_equilibrium(self, equilibrium: Equilibrium) -> Self {
        Self {
            equilibrium: Some(equilibrium),
            ..self
        }
    }

    /// With another power iteration for `σ_max`, or none (`None`: no `σ_max`).
    pub fn with_sigma(self, sigma: Option<PowerIteration>) -> Self {
        Self { sigma, ..self }
    }

    /// The observer to hand to `init_observed`.
    pub fn observer(&self) -> &ProjectionObserver {
        &self.observer
    }

    /// Whether `step` is sampled.
    pub fn is_due(&self, step: usize) -> bool {
        step.is_multiple_of(self.every)
    }

    /// Call before the optimizer's step `step`: on a sampled step, snapshots the parameters
    /// and arms the observer.
    pub fn before_step<M: Module>(&mut self, step: usize, model: &M) {
        self.snapshot(step, None, model);
    }

    /// [`before_step`](Self::before_step) for a step at learning rate `lr`, which the
    /// equilibrium angle needs.
    pub fn before_step_at<M: Module>(&mut self, step: usize, lr: f64, model: &M) {
        self.snapshot(step, Some(lr), model);
    }

    fn snapshot<M: Module>(&mut self, step: usize, lr: Option<f64>, model: &M) {
        if !self.is_due(step) {
            return;
        }
        let mut before = HashMap::new();
        for_trainable(model, |info, value| {
            before.insert(info.id, value);
        });
        self.observer.drain();
        self.observer.arm();
        self.pending = Some(Snapshot { step, lr, before });
    }

    /// Call after the step: on a sampled step, reads the step's statistics back and adds one
    /// row per trainable parameter.
    pub fn after_step<M: Module>(&mut self, model: &M) {
        let Some(snapshot) = self.pending.take() else {
            return;
        };
        self.observer.disarm();
        let projections = self.read_projections();

        let mut params = Vec::new();
        let mut stats = Vec::new();
        for_trainable(model, |info, after| {
            let before = snapshot.before.get(&info.id).cloned();
            let before = before.unwrap_or_else(|| after.clone());
            let (norm_after, norm_before) = (norm(&after), norm(&before));
            let tiny = f64::from(f32::MIN_POSITIVE);
            // ‖â − b̂‖ of the two directions: the angle is 2·asin(‖â − b̂‖/2), exact also for
            // the tiny angles where acos of the cosine loses every digit.
            let chord = norm(
                &(after.clone() / norm_after.clone().clamp_min(tiny)
                    - before.clone() / norm_before.clone().clamp_min(tiny)),
            );
            stats.push(Tensor::cat(
                vec![
                    norm_after,
                    norm(&(after.clone() - before.clone())),
                    norm_before,
                    chord,
                ],
                0,
            ));
            params.push(info);
        });
        if params.is_empty() {
            return;
        }
        let values = read_back(Tensor::cat(stats, 0));
        let sigmas = self.sigmas(model);
        for (info, v) in params.into_iter().zip(values.chunks(4)) {
            let projection = projections.get(&info.path);
            let equilibrium = self
                .equilibrium
                .zip(snapshot.lr)
                .filter(|_| info.rank >= 2)
                .map(|(e, lr)| e.angle(lr));
            self.rows.push(DiagnosticRow {
                angular_update: (v[0] > 0.0 && v[2] > 0.0)
                    .then(|| 2.0 * (v[3] / 2.0).min(1.0).asin()),
                equilibrium_angle: equilibrium,
                step: snapshot.step,
                sigma_max: sigmas.get(&info.id).copied(),
                radial_fraction: projection.map(|p| p.1),
                branch: projection.map(|p| p.0),
                module_type: info.owner,
                rank: info.rank,
                norm: v[0],
                effective_step: (v[2] > 0.0).then(|| v[1] / v[2]),
                path: info.path,
            });
        }
    }

    /// Branch and removed fraction per path, from the observer's queue (one read-back).
    fn read_projections(&self) -> HashMap<String, (ProjectionBranch, f64)> {
        let records = self.observer.drain();
        if records.is_empty() {
            return HashMap::new();
        }
        let values = read_back(Tensor::cat(
            records
                .iter()
                .map(|r| r.stats.clone().cast(burn::tensor::FloatDType::F32))
                .collect(),
            0,
        ));
        records
            .iter()
            .zip(values.chunks(3))
            .map(|(r, v)| {
                let branch = ProjectionBranch::from_code(v[0].round() as i64)
                    .unwrap_or(ProjectionBranch::None);
                let fraction = if v[2] > 0.0 {
                    (v[1] / v[2]).sqrt()
                } else {
                    0.0
                };
                (r.path.to_string(), (branch, fraction))
            })
            .collect()
    }

    fn sigmas<M: Module>(&self, model: &M) -> HashMap<ParamId, f64> {
        let Some(options) = &self.sigma else {
            return HashMap::new();
        };
        struct Sigmas<'a> {
            options: &'a PowerIteration,
            out: HashMap<ParamId, f64>,
        }
        impl ParamVisitor for Sigmas<'_> {
            fn param<const D: usize>(&mut self, info: ParamInfo, param: &Param<Tensor<D>>) {
                let value = param.val();
                if D >= 2 && value.is_require_grad() {
                    let sv = top_singular_value(&value.detach(), self.options);
                    self.out.insert(info.id, sv.sigma);
                }
            }
        }
        let mut visitor = Sigmas {
            options,
            out: HashMap::new(),
        };
        visit_params(model, &mut visitor);
        visitor.out
    }

    /// Every row so far, in step order.
    pub fn rows(&self) -> &[DiagnosticRow] {
        &self.rows
    }

    /// How often each observed parameter took each branch over the sampled steps:
    /// `path → [none, channel, layer]`.
    pub fn branch_counts(&self) -> BTreeMap<String, [usize; 3]> {
        let mut counts: BTreeMap<String, [usize; 3]> = BTreeMap::new();
        for row in &self.rows {
            if let Some(branch) = row.branch {
                counts.entry(row.path.clone()).or_default()[branch.code() as usize] += 1;
            }
        }
        counts
    }

    /// The rows as CSV: `step,path,module_type,rank,norm,effective_step,radial_fraction,
    /// branch,sigma_max,angular_update,equilibrium_angle`.
    pub fn to_csv(&self) -> String {
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:e}"));
        let mut out = String::from(
            "step,path,module_type,rank,norm,effective_step,radial_fraction,branch,sigma_max,\
             angular_update,equilibrium_angle\n",
        );
        for r in &self.rows {
            out.push_str(&format!(
                "{},{},{},{},{:e},{},{},{},{},{},{}\n",
                r.step,
                r.path,
                r.module_type,
                r.rank,
                r.norm,
                opt(r.effective_step),
                opt(r.radial_fraction),
                r.branch.map_or("", ProjectionBranch::name),
                opt(r.sigma_max),
                opt(r.angular_update),
                opt(r.equilibrium_angle),
            ));
        }
        out
    }
}

/// `‖x‖` as a one-element tensor.
fn norm(x: &Tensor<1>) -> Tensor<1> {
    x.clone().square().sum().sqrt()
}

/// Calls `f` with every trainable parameter of `model`, flattened and detached.
fn for_trainable<M: Module>(model: &M, f: impl FnMut(ParamInfo, Tensor<1>)) {
    struct Each<F>(F);
    impl<F: FnMut(ParamInfo, Tensor<1>)> ParamVisitor for Each<F> {
        fn param<const D: usize>(&mut self, info: ParamInfo, param: &Param<Tensor<D>>) {
            let value = param.val();
            if value.is_require_grad() {
                let numel = value.shape().num_elements();
                let flat = value.detach().inner().reshape([numel]);
                (self.0)(info, flat.cast(burn::tensor::FloatDType::F32));
            }
        }
    }
    visit_params(model, &mut Each(f));
}
