//! One walk over a module's float parameters, naming each one (path, id, owning layer type,
//! rank), shared by every piece that routes or inspects parameters by name.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

use crate::error::ConfigError;

/// A float parameter of a module, as the walk found it.
#[derive(Debug, Clone)]
pub(crate) struct ParamInfo {
    /// Path in the module, e.g. `blocks.0.conv.weight`.
    pub path: String,
    /// The parameter's id.
    pub id: ParamId,
    /// Name of the struct that owns the parameter, e.g. `Conv2d` or `LayerNorm`.
    pub owner: String,
    /// The parameter's rank.
    pub rank: usize,
    /// `‖p‖_F`, when the walk was asked to read norms.
    pub norm: Option<f64>,
}

impl ParamInfo {
    /// The last path segment: the field name, e.g. `weight` or `gamma`.
    pub fn field(&self) -> &str {
        self.path.rsplit('.').next().unwrap_or(&self.path)
    }

    /// The path of the layer that owns the parameter (the path without the field).
    pub fn layer_path(&self) -> &str {
        self.path.rsplit_once('.').map_or("", |(layer, _)| layer)
    }

    /// Whether the parameter is `prefix` itself or lies under the module path `prefix`.
    pub fn is_under(&self, prefix: &str) -> bool {
        is_under(&self.path, prefix)
    }
}

/// Whether `path` is `prefix` itself or lies under the module path `prefix`.
pub(crate) fn is_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The module path being visited and the type of the struct holding each level. Burn enters
/// every field, parameters included, with the type of the struct that holds it.
#[derive(Default)]
pub(crate) struct PathStack {
    names: Vec<String>,
    types: Vec<String>,
}

impl PathStack {
    /// For `enter_module` of a visitor or mapper.
    pub fn enter(&mut self, name: &str, container_type: &str) {
        self.names.push(name.to_string());
        let owner = container_type
            .strip_prefix("Struct:")
            .unwrap_or(container_type);
        self.types.push(owner.to_string());
    }

    /// For `exit_module` of a visitor or mapper.
    pub fn exit(&mut self) {
        self.names.pop();
        self.types.pop();
    }

    /// The parameter being visited, with no norm.
    pub fn info(&self, id: ParamId, rank: usize) -> ParamInfo {
        ParamInfo {
            path: self.names.join("."),
            id,
            owner: self.types.last().cloned().unwrap_or_default(),
            rank,
            norm: None,
        }
    }
}

/// What to do with each float parameter of a walk, given its name.
pub(crate) trait ParamVisitor {
    fn param<const D: usize>(&mut self, info: ParamInfo, param: &Param<Tensor<D>>);
}

/// Calls `visitor` on every float parameter of `module`, in visiting order.
pub(crate) fn visit_params<M: Module, V: ParamVisitor>(module: &M, visitor: &mut V) {
    struct Walker<'a, V> {
        path: PathStack,
        visitor: &'a mut V,
    }

    impl<V: ParamVisitor> ModuleVisitor for Walker<'_, V> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }

        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }

        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.visitor.param(self.path.info(param.id, D), param);
        }
    }

    module.visit(&mut Walker {
        path: PathStack::default(),
        visitor,
    });
}

/// Every float parameter of `module`, in visiting order. With `read_norms`, each one's
/// Frobenius norm is read back to the host (for construction-time checks and diagnostics,
/// never inside a step).
pub(crate) fn walk<M: Module>(module: &M, read_norms: bool) -> Vec<ParamInfo> {
    struct Collect {
        read_norms: bool,
        out: Vec<ParamInfo>,
    }

    impl ParamVisitor for Collect {
        fn param<const D: usize>(&mut self, mut info: ParamInfo, param: &Param<Tensor<D>>) {
            if self.read_norms {
                let norm = param.val().detach().square().sum().sqrt();
                info.norm = Some(read_back(norm)[0]);
            }
            self.out.push(info);
        }
    }

    let mut collect = Collect {
        read_norms,
        out: Vec::new(),
    };
    visit_params(module, &mut collect);
    collect.out
}

/// The values of a small tensor, read back to the host as `f64` (NaN when they cannot be
/// read). A device sync: for set-up and diagnostics, never inside a step.
pub(crate) fn read_back(tensor: Tensor<1>) -> Vec<f64> {
    let len = tensor.dims()[0];
    tensor
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap_or_else(|_| vec![f64::NAN; len])
}

/// A new value for some float parameters of a module, given their name
/// ([`map_params`]); `None` keeps a parameter as it is.
pub(crate) trait ParamMap {
    fn map<const D: usize>(&mut self, info: &ParamInfo, value: Tensor<D>) -> Option<Tensor<D>>;
}

/// A new value for some float parameters of a module, given their name, or the error that
/// stops the mapping ([`try_map_params`]); `None` keeps a parameter as it is.
pub(crate) trait TryParamMap {
    fn try_map<const D: usize>(
        &mut self,
        info: &ParamInfo,
        value: Tensor<D>,
    ) -> Option<Result<Tensor<D>, ConfigError>>;
}

/// `module` mapped by `f` as [`map_params`] maps it, or the first error `f` gives.
pub(crate) fn try_map_params<M: Module, F: TryParamMap>(
    module: M,
    f: &mut F,
) -> Result<M, ConfigError> {
    struct Stopping<'a, F> {
        f: &'a mut F,
        error: Option<ConfigError>,
    }

    impl<F: TryParamMap> ParamMap for Stopping<'_, F> {
        fn map<const D: usize>(&mut self, info: &ParamInfo, value: Tensor<D>) -> Option<Tensor<D>> {
            if self.error.is_some() {
                return None;
            }
            self.f
                .try_map(info, value)?
                .map_err(|error| self.error = Some(error))
                .ok()
        }
    }

    let mut stopping = Stopping { f, error: None };
    let module = map_params(module, &mut stopping);
    stopping.error.map_or(Ok(module), Err)
}

/// `module` with every float parameter `f` maps replaced by its new value, as a new leaf
/// (outside the autodiff graph) that keeps the parameter's id, whether it is an autodiff
/// tensor and whether it requires a gradient.
pub(crate) fn map_params<M: Module, F: ParamMap>(module: M, f: &mut F) -> M {
    struct Mapper<'a, F> {
        path: PathStack,
        f: &'a mut F,
    }

    impl<F: ParamMap> ModuleMapper for Mapper<'_, F> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }

        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }

        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let info = self.path.info(param.id, D);
            let (id, value, mapper) = param.consume();
            let (autodiff, require_grad) = (value.is_autodiff(), value.is_require_grad());
            let Some(mut new) = self.f.map(&info, value.clone().inner()) else {
                return Param::from_mapped_value(id, value, mapper);
            };
            if autodiff {
                new = Tensor::from_inner(new);
            }
            if require_grad {
                new = new.require_grad();
            }
            Param::from_mapped_value(id, new, mapper)
        }
    }

    module.map(&mut Mapper {
        path: PathStack::default(),
        f,
    })
}
