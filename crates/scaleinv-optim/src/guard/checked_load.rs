//! Loading an optimizer record with its mismatches reported, not skipped.
//!
//! Burn's [`ModuleOptimizer::load_record`] keys the state by parameter id and skips what it
//! cannot rebuild: a record saved from another model, or by another optimizer, loads
//! without a word and the state starts again from zero at the next step (or a state of the
//! wrong shape meets the parameter inside a step). [`CheckedLoad`] compares the record with
//! the model and with what the optimizer rebuilt from it, and names the first mismatch.

use core::fmt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burn::module::{Module, Param};
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use burn::tensor::{Bytes, Tensor};

use crate::model::params::{ParamInfo, ParamVisitor, visit_params};

/// A record that does not fit the model or the optimizer it is loaded into.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordMismatch {
    /// The record could not be read (or written back for the check).
    Unreadable {
        /// The reader's message.
        reason: String,
    },
    /// The record holds state for a parameter the model does not have: it was saved with
    /// another model, or the model was re-initialised instead of loaded from its own record
    /// (parameter ids are part of the model record).
    UnknownParameter {
        /// The parameter's id in the record.
        id: u64,
        /// Its path when the record was saved, if recorded.
        saved_path: Option<String>,
    },
    /// The record's state is for a parameter of another rank.
    RankMismatch {
        /// The parameter's path in the model.
        path: String,
        /// The parameter's rank.
        param: usize,
        /// The rank the state was saved for.
        saved: usize,
    },
    /// A state tensor's shape does not fit its parameter.
    ShapeMismatch {
        /// The parameter's path in the model.
        path: String,
        /// The state tensor's field, e.g. `moment_1`.
        field: String,
        /// The parameter's shape.
        param: Vec<usize>,
        /// The state tensor's shape in the record.
        saved: Vec<usize>,
    },
    /// The optimizer set for a parameter could not rebuild its state from the record's
    /// fields, or left some unused: the record was saved by another optimizer.
    OptimizerMismatch {
        /// The parameter's path in the model.
        path: String,
        /// The fields the record holds for it.
        saved: Vec<String>,
        /// The fields the optimizer rebuilt from them (empty when it rebuilt nothing).
        rebuilt: Vec<String>,
    },
}

impl fmt::Display for RecordMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { reason } => write!(f, "optimizer record unreadable: {reason}"),
            Self::UnknownParameter { id, saved_path } => write!(
                f,
                "the optimizer record holds state for parameter {id}{} that this model does not \
                 have: it was saved with another model, or the model was initialised afresh \
                 instead of loaded from the record saved with the optimizer's",
                saved_path
                    .as_ref()
                    .map(|p| format!(" (`{p}` when saved)"))
                    .unwrap_or_default()
            ),
            Self::RankMismatch { path, param, saved } => write!(
                f,
                "optimizer state of `{path}` was saved for a rank-{saved} parameter; \
                 `{path}` has rank {param}"
            ),
            Self::ShapeMismatch {
                path,
                field,
                param,
                saved,
            } => write!(
                f,
                "optimizer state `{field}` of `{path}` has shape {saved:?}, which does not fit \
                 the parameter's shape {param:?}"
            ),
            Self::OptimizerMismatch {
                path,
                saved,
                rebuilt,
            } => write!(
                f,
                "the optimizer set for `{path}` rebuilt {rebuilt:?} from the record's fields \
                 {saved:?}: the record was saved by a different optimizer"
            ),
        }
    }
}

impl std::error::Error for RecordMismatch {}

/// Checked loading for a [`ModuleOptimizer`] (any optimizer, Burn's included).
pub trait CheckedLoad: Sized {
    /// Loads `record` like [`ModuleOptimizer::load_record`], after checking that every
    /// parameter it holds state for is a parameter of `model`, of the same rank, with state
    /// tensors of its shape (or broadcast to it), and, after loading, that the optimizer set
    /// for each parameter rebuilt its state from exactly the saved fields.
    fn try_load_record<M: Module>(
        self,
        record: OptimizerRecord,
        model: &M,
    ) -> Result<Self, RecordMismatch>;

    /// [`try_load_record`](Self::try_load_record) from a file written by
    /// [`ModuleOptimizer::save`].
    fn try_load<M: Module, P: AsRef<Path>>(
        self,
        path: P,
        model: &M,
    ) -> Result<Self, RecordMismatch> {
        let record = OptimizerRecord::load(path).map_err(unreadable)?;
        self.try_load_record(record, model)
    }
}

fn unreadable(err: impl fmt::Display) -> RecordMismatch {
    RecordMismatch::Unreadable {
        reason: err.to_string(),
    }
}

/// Key of the per-parameter rank scalar that Burn's `ModuleOptimizer` writes.
const RANK_KEY: &str = "__rank";

/// What a record holds for each parameter id: its saved path and the shape of each field.
#[derive(Default)]
struct Contents {
    paths: BTreeMap<u64, String>,
    ranks: BTreeMap<u64, usize>,
    fields: BTreeMap<u64, BTreeMap<String, Option<Vec<usize>>>>,
}

fn contents(bytes: Bytes) -> Result<Contents, RecordMismatch> {
    let reader = burn_pack::Reader::from_bytes(bytes).map_err(unreadable)?;
    let mut out = Contents::default();
    for (key, path) in reader.metadata() {
        if let Ok(id) = key.parse::<u64>() {
            out.paths.insert(id, path.clone());
        }
    }
    for (key, value) in reader.scalars() {
        let Some((id, field)) = split_key(key) else {
            continue;
        };
        if field == RANK_KEY {
            let rank = usize::try_from(*value).map_err(|_| unreadable("bad rank"))?;
            out.ranks.insert(id, rank);
        } else {
            out.fields.entry(id).or_default().insert(field, None);
        }
    }
    for tensor in reader.into_tensors().map_err(unreadable)? {
        let Some((id, field)) = split_key(&tensor.name) else {
            return Err(not_an_optimizer_record(&tensor.name));
        };
        let shape = tensor.shape.iter().copied().collect();
        out.fields.entry(id).or_default().insert(field, Some(shape));
    }
    // Every state an optimizer record holds comes with its parameter's rank: fields without
    // one are a model record's tensors (`0.weight` of a `Vec` of layers, say).
    if let Some((id, fields)) = out
        .fields
        .iter()
        .find(|(id, _)| !out.ranks.contains_key(id))
    {
        let field = fields.keys().next().map(String::as_str).unwrap_or_default();
        return Err(not_an_optimizer_record(&format!("{id}.{field}")));
    }
    Ok(out)
}

/// The error for a record whose tensor `name` is not an optimizer's `"{param id}.{field}"`
/// with the parameter's rank beside it.
fn not_an_optimizer_record(name: &str) -> RecordMismatch {
    unreadable(format!(
        "it holds the tensor `{name}`, which is not an optimizer state (`{{param id}}.{{field}}` \
         with the parameter's rank): this looks like a model record (Module::save_file), not \
         one written by ModuleOptimizer::save"
    ))
}

/// `"{id}.{field}"` → `(id, field)`.
fn split_key(key: &str) -> Option<(u64, String)> {
    let (id, field) = key.split_once('.')?;
    Some((id.parse().ok()?, field.to_string()))
}

/// Whether a state tensor of shape `state` fits a parameter of shape `param`: one value (a
/// per-tensor statistic), or the same rank with each axis equal or 1.
fn fits(state: &[usize], param: &[usize]) -> bool {
    state.iter().product::<usize>() == 1
        || (state.len() == param.len() && state.iter().zip(param).all(|(s, p)| s == p || *s == 1))
}

/// Every float parameter of `module`, in visiting order: id, path and shape.
fn model_params<M: Module>(module: &M) -> Vec<(u64, String, Vec<usize>)> {
    struct Shapes(Vec<(u64, String, Vec<usize>)>);
    impl ParamVisitor for Shapes {
        fn param<const D: usize>(&mut self, info: ParamInfo, param: &Param<Tensor<D>>) {
            let shape = param.lazy_shape().iter().copied().collect();
            self.0.push((info.id.val(), info.path, shape));
        }
    }
    let mut shapes = Shapes(Vec::new());
    visit_params(module, &mut shapes);
    shapes.0
}

impl CheckedLoad for ModuleOptimizer {
    fn try_load_record<M: Module>(
        self,
        record: OptimizerRecord,
        model: &M,
    ) -> Result<Self, RecordMismatch> {
        let bytes = record.into_bytes().map_err(unreadable)?;
        let saved = contents(bytes.clone())?;
        let params = model_params(model);
        if let Some(&id) = saved
            .ranks
            .keys()
            .find(|id| !params.iter().any(|(p, _, _)| p == *id))
        {
            return Err(RecordMismatch::UnknownParameter {
                id,
                saved_path: saved.paths.get(&id).cloned(),
            });
        }
        // The model's parameters that have saved state, in the model's order, so the first
        // mismatch reported is the first one a reader of the model would meet.
        let with_state = || {
            params
                .iter()
                .filter_map(|(id, path, shape)| Some((id, path, shape, *saved.ranks.get(id)?)))
        };

        for (id, path, shape, rank) in with_state() {
            if rank != shape.len() {
                return Err(RecordMismatch::RankMismatch {
                    path: path.clone(),
                    param: shape.len(),
                    saved: rank,
                });
            }
            let fields = saved.fields.get(id).into_iter().flatten();
            for (field, state) in fields {
                if let Some(state) = state
                    && !fits(state, shape)
                {
                    return Err(RecordMismatch::ShapeMismatch {
                        path: path.clone(),
                        field: field.clone(),
                        param: shape.clone(),
                        saved: state.clone(),
                    });
                }
            }
        }

        let loaded = self.load_record(OptimizerRecord::from_bytes(bytes).map_err(unreadable)?);
        let rebuilt = contents(loaded.to_record().into_bytes().map_err(unreadable)?)?;
        for (id, path, _, _) in with_state() {
            let names = |c: &Contents| -> BTreeSet<String> {
                c.fields
                    .get(id)
                    .into_iter()
                    .flatten()
                    .map(|(f, _)| f.clone())
                    .collect()
            };
            let (before, after) = (names(&saved), names(&rebuilt));
            if !rebuilt.ranks.contains_key(id) || before != after {
                return Err(RecordMismatch::OptimizerMismatch {
                    path: path.clone(),
                    saved: before.into_iter().collect(),
                    rebuilt: after.into_iter().collect(),
                });
            }
        }
        Ok(loaded)
    }
}
