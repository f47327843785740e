//! What the projection did to each tensor, gathered on demand.
//!
//! A per-tensor optimizer never learns which parameter it is stepping, so an observed
//! optimizer carries a [`ObserverTag`] (the parameter's path and a shared
//! [`ProjectionObserver`]) and is routed to its parameter by a one-parameter group. While the
//! observer is disarmed (every step but the sampled ones) a step costs one atomic load more;
//! on an armed step it also computes three scalars on the device and queues them, and the
//! reader ([`DiagnosticsTracker`](crate::DiagnosticsTracker)) reads them back after the step,
//! outside its hot path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use burn::grad_clipping::GradientClipping;
use burn::optim::{ModuleOptimizer, Optimizer};
use burn::tensor::Tensor;

use crate::model::channel_axes::{ChannelAxes, grouped};
use crate::rules::projection::ScaleInvariance;
use crate::rules::projection::tensor::Projected;

/// A shared sink for the projection statistics of observed optimizers (cheap to clone; all
/// clones share one queue).
#[derive(Clone, Default)]
pub struct ProjectionObserver {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    armed: AtomicBool,
    records: Mutex<Vec<ProjectionRecord>>,
}

/// What one armed step of one tensor queued, still on the device.
#[derive(Debug, Clone)]
pub struct ProjectionRecord {
    /// The parameter's path in the module.
    pub path: Arc<str>,
    /// `[branch code, ‖u − u_projected‖², ‖u‖²]`, where `u` is the base optimizer's update
    /// and the code is a [`ProjectionBranch::code`](crate::ProjectionBranch::code).
    pub stats: Tensor<1>,
}

impl core::fmt::Debug for ProjectionObserver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ProjectionObserver")
            .field("armed", &self.is_armed())
            .finish_non_exhaustive()
    }
}

impl ProjectionObserver {
    /// A disarmed observer with an empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the observed optimizers record their next steps (until [`disarm`](Self::disarm)).
    pub fn arm(&self) {
        self.shared.armed.store(true, Ordering::Release);
    }

    /// Stops recording.
    pub fn disarm(&self) {
        self.shared.armed.store(false, Ordering::Release);
    }

    /// Whether steps are being recorded.
    pub fn is_armed(&self) -> bool {
        self.shared.armed.load(Ordering::Acquire)
    }

    /// Takes every queued record, oldest first.
    pub fn drain(&self) -> Vec<ProjectionRecord> {
        let mut records = self
            .shared
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *records)
    }

    /// The tag that an optimizer stepping the parameter at `path` carries.
    pub fn tag(&self, path: &str) -> ObserverTag {
        ObserverTag {
            observer: self.clone(),
            path: Arc::from(path),
        }
    }

    fn push(&self, record: ProjectionRecord) {
        self.shared
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }

    /// A [`ModuleOptimizer`] whose fallback is `build(0)` and which gives every parameter of
    /// rank ≥ 2 in `axes` its own group, with `build(axis)` tagged with its path.
    pub(crate) fn module_optimizer<O: Observed>(
        &self,
        axes: &ChannelAxes,
        build: impl Fn(usize) -> O,
        grad_clipping: Option<GradientClipping>,
    ) -> ModuleOptimizer {
        let groups = axes.iter().map(|param| {
            let optim = build(param.axis).observed(self.tag(&param.path));
            (vec![param.id], optim)
        });
        grouped(build(0), groups, grad_clipping)
    }
}

/// The parameter an observed optimizer steps, and where its records go.
#[derive(Clone)]
pub struct ObserverTag {
    observer: ProjectionObserver,
    path: Arc<str>,
}

impl core::fmt::Debug for ObserverTag {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ObserverTag({})", self.path)
    }
}

impl ObserverTag {
    /// Whether the observer wants this step's records.
    #[cfg_attr(not(any(feature = "flex", feature = "wgpu")), allow(dead_code))]
    pub(crate) fn is_armed(&self) -> bool {
        self.observer.is_armed()
    }

    /// Queues the statistics of one projection.
    fn record<const D: usize>(&self, update: &Tensor<D>, projected: &Projected<D>) {
        let removed = (update.clone() - projected.update.clone()).square().sum();
        let stats = Tensor::cat(
            vec![
                projected.branch().float(),
                removed,
                update.clone().square().sum(),
            ],
            0,
        );
        self.observer.push(ProjectionRecord {
            path: self.path.clone(),
            stats,
        });
    }
}

/// `projection.project(param, grad, update)`, recorded under `tag` when its observer is
/// armed. Unobserved and disarmed steps keep `update` uniquely owned, as without a tag.
pub(crate) fn project_observed<const D: usize>(
    (projection, caution): (&ScaleInvariance, bool),
    tag: &Option<ObserverTag>,
    param: &Tensor<D>,
    grad: &Tensor<D>,
    update: Tensor<D>,
) -> Projected<D> {
    match tag {
        Some(tag) if tag.observer.is_armed() => {
            let projected = projection.project_with(param, grad, update.clone(), caution);
            tag.record(&update, &projected);
            projected
        }
        _ => projection.project_with(param, grad, update, caution),
    }
}

/// A per-tensor optimizer that can report its projections to a [`ProjectionObserver`].
pub trait Observed: Optimizer {
    /// The same optimizer, recording under `tag`.
    fn observed(self, tag: ObserverTag) -> Self;
}
