//! The `images` worker: makes the image variants a plugin asks for (such as
//! a 320 px thumbnail), with the EXIF orientation applied and no metadata
//! carried over, under decoder limits of its own inside the worker's memory
//! and time limits. See the README.

mod variants;

pub use variants::{Made, Params, Variant, make};

#[cfg(target_arch = "wasm32")]
mod guest;
