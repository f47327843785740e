//! The tensor-op building blocks every optimizer is made of: Adam's moments, decoupled decay,
//! rank-keeping reductions, the scale-invariance projection, the parameter walk and channel
//! axes, the norm layers' affine parameters, and the config errors. Uses `math` (and, on flex,
//! `kernels`' buffer reads); nothing above.

pub(crate) mod channel_axes;
pub(crate) mod decay;
pub(crate) mod error;
pub(crate) mod moments;
pub(crate) mod norm_affine;
pub(crate) mod params;
pub(crate) mod projection;
pub(crate) mod reduce;
