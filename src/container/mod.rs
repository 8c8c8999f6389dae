//! Stage 9: the compressed-delta container, a safetensors file (see `FORMAT.md`).
//!
//! The writer streams tensor data to a [`DataSink`] as tensors are finished
//! and builds the header last, because the header lists every tensor. The
//! final file is the header followed by the data, assembled by the caller
//! without holding the data twice: a file copy natively, a `Blob` of parts in
//! the browser.

pub mod records;
pub mod writer;
pub mod reader;

pub use reader::DeltaFile;
pub use records::{Kind, TensorRecord};
pub use writer::{ContainerWriter, DataSink, StoredPart};

/// Value of the `adamix.format` metadata entry.
pub const FORMAT_NAME: &str = "adamix-delta";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: &str = "1";
