//! One walk over a module's float parameters: path, id, owning layer type and rank.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

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

    /// Whether the parameter is `prefix` itself or lies under the module path `prefix`.
    pub fn is_under(&self, prefix: &str) -> bool {
        self.path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    }
}

/// Every float parameter of `module`, in visiting order. With `read_norms`, each one's
/// Frobenius norm is read back to the host (for construction-time checks and diagnostics,
/// never inside a step).
pub(crate) fn walk<M: Module>(module: &M, read_norms: bool) -> Vec<ParamInfo> {
    let mut walker = Walker {
        read_norms,
        path: Vec::new(),
        types: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut walker);
    walker.out
}

struct Walker {
    read_norms: bool,
    path: Vec<String>,
    types: Vec<String>,
    out: Vec<ParamInfo>,
}

impl ModuleVisitor for Walker {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.types.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.types.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let owner = self.types.last().map(String::as_str).unwrap_or_default();
        let norm = self.read_norms.then(|| {
            let norm = param.val().detach().square().sum().sqrt();
            let data = norm.into_data().convert::<f32>();
            f64::from(data.as_slice::<f32>().map_or(f32::NAN, |v| v[0]))
        });
        self.out.push(ParamInfo {
            path: self.path.join("."),
            id: param.id,
            owner: owner.strip_prefix("Struct:").unwrap_or(owner).to_string(),
            rank: D,
            norm,
        });
    }
}
