//! Fused steps for the flex CPU backend: AdamP and SGDP as two or three tight loops over the
//! raw buffers instead of one pass per tensor operation.
//!
//! ```text
//! pass 1  p, g → per channel ⟨p, g⟩, ‖p‖², ‖g‖²   (the cosine test; also the non-finite test)
//! pass 2  g, state → new state, u; ⟨p, u⟩ per channel when the test fired, else p ← p·d − η·u
//! pass 3  p, state → u again, p ← p·d − η·(u − c·p)        (only when the test fired)
//! ```
//!
//! The element-wise arithmetic is the tensor-op path's, in the same order and in f32, so the
//! state matches it bit for bit; the reductions are summed in f64 (the tensor ops sum in f32),
//! so the projection coefficients agree to rounding. Both paths replay the golden trajectories.
//! Any tensor not on flex, not f32, or observed by a [`ProjectionObserver`](crate::ProjectionObserver)
//! takes the tensor-op path.

use burn::backend::flex::FlexTensor;
use burn::backend::{DispatchDevice, Flex};
use burn::tensor::{DType, Tensor};

use crate::moments::{AdamMoments, MomentState};
use crate::non_finite::NonFinitePolicy;
use crate::radial::{ProjectionView, ScaleInvariance};
use crate::sgdp::SgdpState;

/// Whether `tensor` is an f32 tensor on flex (the fused path applies).
fn on_flex_f32<const D: usize>(tensor: &Tensor<D>) -> bool {
    matches!(tensor.device().as_dispatch(), DispatchDevice::Flex(_)) && tensor.dtype() == DType::F32
}

/// Whether the fused path can take `param`, `grad` and the state tensors.
pub(crate) fn applies<const D: usize>(
    projection: &ScaleInvariance,
    param: &Tensor<D>,
    grad: &Tensor<D>,
    state: &[&Tensor<D>],
) -> bool {
    let shape = param.shape();
    shape.num_elements() > 0
        && (D < 2 || projection.channel_axis < D)
        && on_flex_f32(param)
        && on_flex_f32(grad)
        && grad.shape() == shape
        && state.iter().all(|s| on_flex_f32(s) && s.shape() == shape)
}

/// A contiguous f32 flex buffer.
struct Buffer(FlexTensor);

impl Buffer {
    fn new<const D: usize>(tensor: Tensor<D>) -> Self {
        let flex = tensor
            .try_into_primitive::<Flex>()
            .unwrap_or_else(|_| unreachable!("checked by `applies`"));
        Self(if flex.is_contiguous() {
            flex
        } else {
            flex.to_contiguous()
        })
    }

    fn zeros(like: &Self) -> Self {
        Self(FlexTensor::zeros(
            like.0.layout().shape().clone(),
            DType::F32,
        ))
    }

    fn get(&self) -> &[f32] {
        self.0.as_slice::<f32>().expect("contiguous f32")
    }

    /// The elements, writable (copied first if another tensor shares the buffer).
    fn get_mut(&mut self) -> &mut [f32] {
        let (start, end) = self.0.layout().contiguous_offsets().expect("contiguous");
        &mut self.0.storage_mut::<f32>()[start..end]
    }

    fn tensor<const D: usize>(self) -> Tensor<D> {
        Tensor::from_primitive::<Flex>(self.0)
    }

    fn dims(&self) -> Vec<usize> {
        self.0.layout().shape().iter().copied().collect()
    }
}

/// A tensor seen as `[outer, channels, inner]` around its channel axis.
#[derive(Clone, Copy)]
struct Channels {
    outer: usize,
    count: usize,
    inner: usize,
}

impl Channels {
    fn new(dims: &[usize], axis: usize) -> Self {
        Self {
            outer: dims[..axis].iter().product(),
            count: dims[axis],
            inner: dims[axis + 1..].iter().product(),
        }
    }

    /// Calls `f(channel, range)` for each contiguous run of one channel's elements.
    fn for_each(self, mut f: impl FnMut(usize, std::ops::Range<usize>)) {
        for o in 0..self.outer {
            for c in 0..self.count {
                let start = (o * self.count + c) * self.inner;
                f(c, start..start + self.inner);
            }
        }
    }
}

/// The radial projection of one tensor: its channel geometry and the test's statistics.
struct Projection<'a> {
    config: &'a ScaleInvariance,
    channels: Channels,
    /// `‖P_c‖²` per channel.
    weight_sq: Vec<f64>,
    /// Channel and layer tests passed.
    channel: bool,
    layer: bool,
}

impl<'a> Projection<'a> {
    /// Pass 1: per-channel `⟨p, g⟩`, `‖p‖²`, `‖g‖²`, and the tests. Also returns `Σ‖g‖²`, whose
    /// finiteness is the non-finite test.
    fn measure(config: &'a ScaleInvariance, dims: &[usize], p: &[f32], g: &[f32]) -> (Self, f64) {
        let channels = Channels::new(dims, config.channel_axis);
        let n = channels.count;
        let (mut dot, mut weight_sq, mut grad_sq) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        channels.for_each(|c, range| {
            let (mut d, mut w, mut q) = (0.0f64, 0.0f64, 0.0f64);
            for (&p, &g) in p[range.clone()].iter().zip(&g[range]) {
                let (p, g) = (f64::from(p), f64::from(g));
                d += p * g;
                w += p * p;
                q += g * g;
            }
            dot[c] += d;
            weight_sq[c] += w;
            grad_sq[c] += q;
        });
        let numel = p.len();
        let eps = config.epsilon;
        let cosine = |d: f64, w: f64, q: f64| d.abs() / (q.sqrt().max(eps) * w.sqrt().max(eps));
        let (d, w, q) = (
            dot.iter().sum(),
            weight_sq.iter().sum(),
            grad_sq.iter().sum(),
        );
        let row_width = (numel / n) as f64;
        let max_channel_cos = (0..n)
            .map(|c| cosine(dot[c], weight_sq[c], grad_sq[c]))
            .fold(f64::NEG_INFINITY, f64::max);
        let nonzero = config.zero_is_invariant || (w > 0.0 && q > 0.0);
        let (channel, layer) = match config.view {
            ProjectionView::Detect => (
                nonzero && max_channel_cos < config.delta / row_width.sqrt(),
                nonzero && cosine(d, w, q) < config.delta / (numel as f64).sqrt(),
            ),
            ProjectionView::Channel => (true, false),
            ProjectionView::Layer => (false, true),
            ProjectionView::Off => (false, false),
        };
        let projection = Self {
            config,
            channels,
            weight_sq,
            channel,
            layer,
        };
        (projection, q)
    }

    fn fired(&self) -> bool {
        self.channel || self.layer
    }

    /// The decay ratio `r`: `wd_ratio` when a view passed, else 1.
    fn decay_ratio(&self) -> f32 {
        if self.fired() {
            self.config.wd_ratio as f32
        } else {
            1.0
        }
    }

    /// Pass 2 when the test fired: `f(i)` updates element `i`'s state and returns its `p·u`;
    /// the sums per channel.
    fn sum_per_channel(&self, mut f: impl FnMut(usize) -> f64) -> Vec<f64> {
        let mut out = vec![0.0; self.channels.count];
        self.channels.for_each(|c, range| {
            out[c] += range.map(&mut f).sum::<f64>();
        });
        out
    }

    /// The coefficient `⟨P, U⟩ / (‖P‖ + ε)²` of each channel in the view that passed, from
    /// `⟨P_c, U_c⟩` per channel.
    fn coefficients(&self, param_dot_update: &[f64]) -> Vec<f32> {
        let eps = self.config.epsilon;
        let coef = |dot: f64, weight_sq: f64| (dot / (weight_sq.sqrt() + eps).powi(2)) as f32;
        if self.channel {
            param_dot_update
                .iter()
                .zip(&self.weight_sq)
                .map(|(&d, &w)| coef(d, w))
                .collect()
        } else {
            let layer = coef(param_dot_update.iter().sum(), self.weight_sq.iter().sum());
            vec![layer; self.channels.count]
        }
    }

    /// Pass 3: calls `f(i, coef)` for every element with its channel's coefficient.
    fn apply(&self, coefs: &[f32], mut f: impl FnMut(usize, f32)) {
        self.channels.for_each(|c, range| {
            for i in range {
                f(i, coefs[c]);
            }
        });
    }
}

/// The decoupled decay factor `1 − rate·r` as the tensor path computes it (`r·(−rate) + 1` in
/// f32), or `None` when `rate = 0` (no multiply).
fn decay_factor(rate: f64, ratio: f32) -> Option<f32> {
    (rate != 0.0).then(|| ratio * (-rate as f32) + 1.0)
}

fn decayed(p: f32, factor: Option<f32>) -> f32 {
    factor.map_or(p, |f| p * f)
}

/// Whether the gradient is non-finite: from `Σ‖g‖²` when pass 1 ran, else a pass over `g`.
fn non_finite(grad_sq: Option<f64>, g: &[f32]) -> bool {
    match grad_sq {
        Some(q) => !q.is_finite(),
        None => !g.iter().all(|x| x.is_finite()),
    }
}

/// Pass 1 for a tensor the projection may apply to (rank ≥ 2, view not `Off`).
fn measure<'a, const D: usize>(
    config: &'a ScaleInvariance,
    p: &Buffer,
    g: &Buffer,
) -> (Option<Projection<'a>>, Option<f64>) {
    if D < 2 || config.view == ProjectionView::Off {
        return (None, None);
    }
    let (projection, grad_sq) = Projection::measure(config, &p.dims(), p.get(), g.get());
    (Some(projection), Some(grad_sq))
}

/// AdamP's hyperparameters, as the fused step needs them.
pub(crate) struct AdamPStep<'a> {
    pub moments: &'a AdamMoments,
    pub projection: &'a ScaleInvariance,
    pub weight_decay: f64,
    pub nesterov: bool,
    pub non_finite: NonFinitePolicy,
}

impl AdamPStep<'_> {
    /// One AdamP step (see [`AdamP`](crate::AdamP)); the caller checked [`applies`].
    pub fn run<const D: usize>(
        &self,
        lr: f64,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<MomentState<D>>,
    ) -> (Tensor<D>, Option<MomentState<D>>) {
        let mut p = Buffer::new(param);
        let g = Buffer::new(grad);
        let (time, mut m, mut v) = match state {
            Some(s) => (s.time + 1, Buffer::new(s.moment_1), Buffer::new(s.moment_2)),
            None => (1, Buffer::zeros(&p), Buffer::zeros(&p)),
        };
        let (projection, grad_sq) = measure::<D>(self.projection, &p, &g);
        let skip = self.non_finite == NonFinitePolicy::Skip && non_finite(grad_sq, g.get());

        if !skip {
            let adam = self.moments;
            let (b1, b2) = (adam.beta_1 as f32, adam.beta_2 as f32);
            let (c1, c2) = ((1.0 - adam.beta_1) as f32, (1.0 - adam.beta_2) as f32);
            let (bc1, bc2) = adam.bias_corrections(time);
            let (root_bc2, eps) = (bc2.sqrt() as f32, adam.epsilon as f32);
            let step = (lr / bc1) as f32;
            let nesterov = self.nesterov;
            // u from the updated moments, as `AdamMoments::denominator` and AdamP's step do.
            let update = |g: f32, m: f32, v: f32| {
                let denom = v.sqrt() / root_bc2 + eps;
                if nesterov {
                    (m * b1 + g * c1) / denom
                } else {
                    m / denom
                }
            };
            let ratio = projection.as_ref().map_or(1.0, Projection::decay_ratio);
            let factor = decay_factor(lr * self.weight_decay, ratio);
            let gs = g.get();
            let moments = |i: usize, ms: &mut [f32], vs: &mut [f32]| {
                ms[i] = ms[i] * b1 + gs[i] * c1;
                vs[i] = vs[i] * b2 + gs[i] * gs[i] * c2;
                update(gs[i], ms[i], vs[i])
            };
            match projection.filter(Projection::fired) {
                Some(proj) => {
                    let dots = {
                        let (ps, ms, vs) = (p.get(), m.get_mut(), v.get_mut());
                        proj.sum_per_channel(|i| f64::from(ps[i]) * f64::from(moments(i, ms, vs)))
                    };
                    let coefs = proj.coefficients(&dots);
                    let (ms, vs) = (m.get(), v.get());
                    let ps = p.get_mut();
                    proj.apply(&coefs, |i, c| {
                        let projected = update(gs[i], ms[i], vs[i]) - ps[i] * c;
                        ps[i] = decayed(ps[i], factor) - projected * step;
                    });
                }
                None => {
                    let (ps, ms, vs) = (p.get_mut(), m.get_mut(), v.get_mut());
                    for i in 0..ps.len() {
                        let u = moments(i, ms, vs);
                        ps[i] = decayed(ps[i], factor) - u * step;
                    }
                }
            }
        }
        let state = MomentState {
            time,
            moment_1: m.tensor(),
            moment_2: v.tensor(),
        };
        (p.tensor(), Some(state))
    }
}

/// SGDP's hyperparameters, as the fused step needs them.
pub(crate) struct SgdpStep<'a> {
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub project_momentum_buffer: bool,
    pub projection: &'a ScaleInvariance,
    pub non_finite: NonFinitePolicy,
}

impl SgdpStep<'_> {
    /// One SGDP step (see [`Sgdp`](crate::Sgdp)); the caller checked [`applies`].
    pub fn run<const D: usize>(
        &self,
        lr: f64,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<SgdpState<D>>,
    ) -> (Tensor<D>, Option<SgdpState<D>>) {
        let mu = self.momentum;
        let mut p = Buffer::new(param);
        let g = Buffer::new(grad);
        let previous = state.filter(|_| mu != 0.0).map(|s| Buffer::new(s.momentum));
        let has_previous = previous.is_some();
        let mut buffer = previous.unwrap_or_else(|| Buffer::zeros(&p));
        let (projection, grad_sq) = measure::<D>(self.projection, &p, &g);
        let skip = self.non_finite == NonFinitePolicy::Skip && non_finite(grad_sq, g.get());

        if !skip {
            let gs = g.get();
            let damping = (self.dampening != 0.0).then_some((1.0 - self.dampening) as f32);
            let damped = |g: f32| damping.map_or(g, |d| g * d);
            let mu32 = mu as f32;
            let nesterov = self.nesterov;
            let update = |g: f32, b: f32| if nesterov { g + b * mu32 } else { b };
            let ratio = projection.as_ref().map_or(1.0, Projection::decay_ratio);
            let factor = decay_factor(lr * self.weight_decay / (1.0 - mu), ratio);
            let lr32 = lr as f32;
            // b ← μ·b + (1 − τ)·g: the damped gradient alone at the first step or with μ = 0.
            let momentum = |i: usize, bs: &mut [f32]| {
                bs[i] = if has_previous {
                    bs[i] * mu32 + damped(gs[i])
                } else {
                    damped(gs[i])
                };
                update(gs[i], bs[i])
            };
            match projection.filter(Projection::fired) {
                Some(proj) => {
                    let dots = {
                        let (ps, bs) = (p.get(), buffer.get_mut());
                        proj.sum_per_channel(|i| f64::from(ps[i]) * f64::from(momentum(i, bs)))
                    };
                    let coefs = proj.coefficients(&dots);
                    let write_back = !nesterov && self.project_momentum_buffer;
                    let (ps, bs) = (p.get_mut(), buffer.get_mut());
                    proj.apply(&coefs, |i, c| {
                        let projected = update(gs[i], bs[i]) - ps[i] * c;
                        if write_back {
                            bs[i] = projected;
                        }
                        ps[i] = decayed(ps[i], factor) - projected * lr32;
                    });
                }
                None => {
                    let (ps, bs) = (p.get_mut(), buffer.get_mut());
                    for i in 0..ps.len() {
                        let u = momentum(i, bs);
                        ps[i] = decayed(ps[i], factor) - u * lr32;
                    }
                }
            }
        }
        let state = (mu != 0.0).then(|| SgdpState {
            momentum: buffer.tensor(),
        });
        (p.tensor(), state)
    }
}
