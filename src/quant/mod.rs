//! Quantization of singular vectors: the group-wise quantizer and bit packing.
//!
//! These are the CPU reference implementations. Any other backend must
//! produce identical codes and, summing in the same order, identical errors.

pub mod pack;
pub mod quantizer;

pub use pack::{BitReader, BitWriter};
pub use quantizer::{dequantize_into, quantize, quantize_into, squared_error, QuantizedVector, GROUP_SIZE};
