//! Stage 2: pair the tensors of the base and the fine-tune by name.
//!
//! Pairing reads only headers and decides, before any heavy work, what
//! happens to every tensor of the fine-tune. Nothing is dropped silently:
//! the report lists each tensor that is not compressed, with the reason.

use serde::Serialize;

use crate::checkpoint::{Checkpoint, TensorEntry};
use crate::error::{Error, Result};

/// Matrices whose smaller side is below this are stored as f16 deltas.
pub const MIN_MATRIX_SIDE: usize = 16;

/// What the pipeline will do with one tensor of the fine-tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// A 2-D float delta compressed by the method: `[rows, cols]`.
    Matrix(usize, usize),
    /// A float delta stored as f16 (1-D, tiny or not 2-D); may turn out unchanged.
    SmallDelta,
    /// An integer or bool tensor: unchanged when equal to the base, else stored whole.
    CompareBytes,
    /// Stored whole: only in the fine-tune, or a shape mismatch when that is allowed.
    Whole,
}

/// One shape mismatch.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeMismatch {
    /// Tensor name.
    pub name: String,
    /// Shape in the base.
    pub base_shape: Vec<usize>,
    /// Shape in the fine-tune.
    pub finetuned_shape: Vec<usize>,
}

/// The pairing report shown before any heavy work.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PairingReport {
    /// Tensors present in both with the same shape.
    pub matched: usize,
    /// Tensors only in the base: not part of the fine-tune, so not stored.
    pub only_in_base: Vec<String>,
    /// Tensors only in the fine-tune: stored whole.
    pub only_in_finetuned: Vec<String>,
    /// Tensors whose shapes differ.
    pub shape_mismatch: Vec<ShapeMismatch>,
    /// Integer or bool tensors, compared byte for byte instead of subtracted.
    pub skipped_integer: Vec<String>,
    /// Tensors whose delta is exactly zero; filled in as tensors are read.
    pub unchanged: Vec<String>,
}

/// Pairs the tensors of `base` and `finetuned`; returns one plan per fine-tune tensor, in its order.
///
/// A shape mismatch is an error unless `store_mismatched` is set, in which
/// case the fine-tune's tensor is stored whole.
pub fn pair(base: &Checkpoint, finetuned: &Checkpoint, store_mismatched: bool) -> Result<(Vec<(String, Plan)>, PairingReport)> {
    let mut report = PairingReport::default();
    let mut plans = Vec::new();
    for name in finetuned.names() {
        let ft = finetuned.entry(name).expect("name comes from the checkpoint");
        let plan = match base.entry(name) {
            None => {
                report.only_in_finetuned.push(name.to_string());
                Plan::Whole
            }
            Some(b) if b.shape != ft.shape => {
                report.shape_mismatch.push(ShapeMismatch { name: name.into(), base_shape: b.shape.clone(), finetuned_shape: ft.shape.clone() });
                Plan::Whole
            }
            Some(b) => {
                report.matched += 1;
                plan_matched(b, ft, &mut report)
            }
        };
        plans.push((name.to_string(), plan));
    }
    report.only_in_base = base.names().filter(|n| finetuned.entry(n).is_none()).map(String::from).collect();

    if !store_mismatched {
        if let Some(first) = report.shape_mismatch.first() {
            return Err(Error::Mismatch { message: format!(
                "tensor '{}' has shape {:?} in the base ({}) but {:?} in the fine-tune ({}); {} tensor(s) differ in shape. Check that the base is the model this fine-tune was trained from, or store such tensors whole with the --store-mismatched option of adamix compress",
                first.name, first.base_shape, base.file_of(&first.name), first.finetuned_shape, finetuned.file_of(&first.name), report.shape_mismatch.len()) });
        }
    }
    if report.matched == 0 {
        return Err(Error::Mismatch { message: format!(
            "no tensor name of the fine-tune ({}) is in the base ({}); these are not a base and its fine-tune", finetuned.display_name(), base.display_name()) });
    }
    Ok((plans, report))
}

fn plan_matched(base: &TensorEntry, ft: &TensorEntry, report: &mut PairingReport) -> Plan {
    if !base.dtype.is_float() || !ft.dtype.is_float() {
        report.skipped_integer.push(ft.name.clone());
        return Plan::CompareBytes;
    }
    match ft.shape.as_slice() {
        &[rows, cols] if rows.min(cols) >= MIN_MATRIX_SIDE => Plan::Matrix(rows, cols),
        _ => Plan::SmallDelta,
    }
}
