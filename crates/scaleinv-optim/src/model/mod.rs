//! What the optimizers read of a model: the named parameter walk, each weight's channel axis
//! from its layer, and the normalization layers' affine parameters.

pub(crate) mod channel_axes;
pub(crate) mod norm_affine;
pub(crate) mod params;
