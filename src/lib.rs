//! adamix: compression of fine-tuned model deltas with ADAMIX.
#![deny(missing_docs)]

pub mod allocate;
pub mod budget;
pub mod checkpoint;
pub mod cost;
pub mod error;
pub mod gpu;
pub mod explore;
pub mod export;
pub mod methods;
pub mod packed;
pub mod quant;
pub mod svd;
pub mod clock;
pub mod compress;
pub mod container;
pub mod pair;
pub mod report;
pub mod apply;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
