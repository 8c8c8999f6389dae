//! Applying a compressed delta: `W_base + Δ̂` for every tensor of the fine-tune.
//!
//! The output is a safetensors checkpoint whose tensor names, shapes and
//! dtypes equal the fine-tune's. Its header is known before any tensor is
//! computed (every size follows from the records), so the output streams to
//! its sink tensor by tensor. Each base tensor is hashed as it is read and
//! checked against the hash recorded at compression, so a delta applied onto
//! the wrong base is rejected.

use half::f16;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

use crate::checkpoint::dtype::{from_f32, to_f32};
use crate::checkpoint::{Checkpoint, Dtype};
use crate::container::records::hex64;
use crate::container::writer::header_bytes;
use crate::container::{DataSink, DeltaFile, Kind, TensorRecord};
use crate::error::{Error, Result};

/// Writes the reconstructed fine-tune to `sink`: the header, then every tensor.
pub fn apply(base: &Checkpoint, delta: &DeltaFile, sink: &mut dyn DataSink, progress: &mut dyn FnMut(&str, usize, usize)) -> Result<()> {
    // 1. The header, from the records alone.
    let mut offset = 0u64;
    let mut entries = Vec::with_capacity(delta.records.len());
    for record in &delta.records {
        let dtype = record_dtype(delta, record)?;
        let bytes = record.shape.iter().product::<usize>() as u64 * dtype.size_bytes() as u64;
        entries.push((record.name.as_str(), dtype, record.shape.as_slice(), offset, offset + bytes));
        offset += bytes;
    }
    sink.write(&header_bytes(&delta.finetuned_metadata, entries.into_iter()))?;

    // 2. Every tensor in record order.
    for (index, record) in delta.records.iter().enumerate() {
        progress(&record.name, index, delta.records.len());
        let bytes = reconstruct_bytes(base, delta, record)?;
        sink.write(&bytes)?;
    }
    Ok(())
}

fn record_dtype(delta: &DeltaFile, record: &TensorRecord) -> Result<Dtype> {
    Dtype::parse(&record.dtype).ok_or_else(|| Error::InvalidDelta {
        file: delta.name().into(), message: format!("tensor '{}': unknown dtype '{}'", record.name, record.dtype) })
}

/// Reconstructs one tensor as raw bytes in the fine-tune's dtype.
pub fn reconstruct_bytes(base: &Checkpoint, delta: &DeltaFile, record: &TensorRecord) -> Result<Vec<u8>> {
    let dtype = record_dtype(delta, record)?;
    delta.check_data(record)?;
    if record.kind == Kind::Whole {
        return delta.read_stored(&record.name, "whole");
    }
    if !dtype.is_float() {
        let (bytes, _) = read_checked_base(base, delta, record)?;
        return Ok(bytes);
    }
    let values = reconstruct_f32(base, delta, record)?;
    if let Some(position) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::InvalidDelta { file: delta.name().into(), message: format!(
            "tensor '{}': element {position} reconstructs to {}; the compressed delta is corrupt, so download or copy it again", record.name, values[position]) });
    }
    Ok(from_f32(dtype, &values).expect("float dtype"))
}

/// Reads a base tensor and checks its hash and shape against the record.
fn read_checked_base(base: &Checkpoint, delta: &DeltaFile, record: &TensorRecord) -> Result<(Vec<u8>, Dtype)> {
    let name = &record.name;
    let entry = base.entry(name).ok_or_else(|| Error::Mismatch { message: format!(
        "tensor '{name}' is not in the base ({}); apply the delta onto the base it was compressed against", base.display_name()) })?;
    if entry.shape != record.shape {
        return Err(Error::Mismatch { message: format!(
            "tensor '{name}' has shape {:?} in the base ({}) but {:?} in the delta ({}); apply the delta onto the base it was compressed against",
            entry.shape, base.file_of(name), record.shape, delta.name()) });
    }
    let bytes = base.read_bytes(name)?;
    let hash = hex64(xxh3_64(&bytes));
    if Some(&hash) != record.base_xxh3.as_ref() {
        return Err(Error::Mismatch { message: format!(
            "tensor '{name}' in {} differs from the base {} was compressed against (hash {hash}, expected {}); apply the delta onto that base",
            base.file_of(name), delta.name(), record.base_xxh3.as_deref().unwrap_or("none")) });
    }
    Ok((bytes, entry.dtype))
}

/// Reconstructs a float tensor `W_base + Δ̂` in f32, before rounding to the fine-tune's dtype.
pub fn reconstruct_f32(base: &Checkpoint, delta: &DeltaFile, record: &TensorRecord) -> Result<Vec<f32>> {
    let (bytes, base_dtype) = read_checked_base(base, delta, record)?;
    let mut values = to_f32(base_dtype, &bytes).ok_or_else(|| Error::Mismatch { message: format!(
        "tensor '{}' is {} in the base but {} in the fine-tune; a float tensor needs a float base", record.name, base_dtype.name(), record.dtype) })?;
    drop(bytes);
    match record.kind {
        Kind::Unchanged => {}
        Kind::F16Delta => {
            let stored = delta.read_stored(&record.name, "delta")?;
            for (v, d) in values.iter_mut().zip(stored.chunks_exact(2)) {
                *v += f16::from_le_bytes([d[0], d[1]]).to_f32();
            }
        }
        Kind::Quantized | Kind::LowRank | Kind::Bitdelta => add_matrix(delta, record, &mut values)?,
        Kind::Whole => unreachable!("whole tensors are copied, not reconstructed"),
    }
    Ok(values)
}

/// Adds the stored delta `Δ̂` to `values` (row-major `[m, n]`), one block of rows at a time.
fn add_matrix(delta: &DeltaFile, record: &TensorRecord, values: &mut [f32]) -> Result<()> {
    let matrix = delta.read_matrix(record)?;
    let reconstruction = matrix.decode().map_err(|message| Error::InvalidDelta { file: delta.name().into(), message: format!("tensor '{}': {message}", record.name) })?;
    crate::methods::add_into(reconstruction.as_ref(), values);
    Ok(())
}

/// Error of one reconstructed tensor against the real fine-tune.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedTensor {
    /// Tensor name.
    pub name: String,
    /// Storage kind.
    pub kind: &'static str,
    /// `‖Ŵ − W_ft‖ / ‖W_ft − W_base‖` with `Ŵ` in the fine-tune's dtype; 0 for exact kinds.
    pub rel_error: Option<f64>,
    /// `‖W_ft − W_base‖²`.
    pub delta_norm_squared: f64,
}

/// The measurements of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// One entry per tensor.
    pub tensors: Vec<VerifiedTensor>,
    /// `√(Σ‖ΔW − Δ̂‖² / Σ‖ΔW‖²)` over the compressed matrices.
    pub rel_error_total: f64,
    /// Size of the compressed delta in bytes.
    pub file_bytes: u64,
    /// f16 size of the fine-tune's float tensors in bytes.
    pub f16_delta_bytes: u64,
}

/// Reconstructs every tensor as `apply` would and measures it against the real fine-tune.
pub fn verify(base: &Checkpoint, finetuned: &Checkpoint, delta: &DeltaFile, progress: &mut dyn FnMut(&str, usize, usize)) -> Result<VerifyReport> {
    let mut tensors = Vec::new();
    let (mut error_total, mut norm_total) = (0.0f64, 0.0f64);
    for (index, record) in delta.records.iter().enumerate() {
        progress(&record.name, index, delta.records.len());
        let dtype = record_dtype(delta, record)?;
        let reconstructed = reconstruct_bytes(base, delta, record)?;
        let expected = finetuned.read_bytes(&record.name)?;
        let (rel_error, delta_norm_squared) = if dtype.is_float() && record.kind != Kind::Whole {
            let (error, norm) = float_errors(base, finetuned, record, dtype, &reconstructed)?;
            if record.kind.is_matrix() {
                error_total += error;
                norm_total += norm;
            }
            (Some(if norm > 0.0 { (error / norm).sqrt() } else { error.sqrt() }), norm)
        } else {
            (Some(if reconstructed == expected { 0.0 } else { 1.0 }), 0.0)
        };
        tensors.push(VerifiedTensor { name: record.name.clone(), kind: record.kind.label(), rel_error, delta_norm_squared });
    }
    let f16_delta_bytes = 2 * finetuned.names().filter_map(|n| finetuned.entry(n)).filter(|e| e.dtype.is_float()).map(|e| e.numel() as u64).sum::<u64>();
    let rel_error_total = if norm_total > 0.0 { (error_total / norm_total).sqrt() } else { 0.0 };
    Ok(VerifyReport { tensors, rel_error_total, file_bytes: delta.file_bytes(), f16_delta_bytes })
}

/// `(‖Ŵ − W_ft‖², ‖W_ft − W_base‖²)` for one float tensor.
fn float_errors(base: &Checkpoint, finetuned: &Checkpoint, record: &TensorRecord, dtype: Dtype, reconstructed: &[u8]) -> Result<(f64, f64)> {
    let ft = finetuned.read_f32(&record.name)?;
    let base_values = base.read_f32(&record.name)?;
    let hat = to_f32(dtype, reconstructed).expect("float dtype");
    let error: f64 = ft.iter().zip(&hat).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let norm: f64 = ft.iter().zip(&base_values).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    Ok((error, norm))
}
