//! What a compression run reports: one row per tensor and the totals.
//!
//! The page and the command-line tool show these as they are; the page gets
//! them as JSON objects through the wasm layer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::pair::PairingReport;

/// The result of one tensor.
///
/// It also travels between the page's workers as JSON, hence `Deserialize`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorRow {
    /// Tensor name.
    pub name: String,
    /// How it was stored: the method's name for a compressed matrix, else `f16 delta`, `whole` or `unchanged`.
    pub kind: String,
    /// Shape of the fine-tune's tensor.
    pub shape: Vec<usize>,
    /// The fine-tune's dtype.
    pub dtype: String,
    /// `‖ΔW‖ / ‖W_base‖`, for deltas; none when the base tensor is all zeros.
    pub delta_norm_ratio: Option<f64>,
    /// Stored singular triplets, for compressed matrices.
    pub kept_rank: Option<usize>,
    /// Stored triplets per width, for compressed matrices.
    pub width_counts: BTreeMap<u8, usize>,
    /// `‖ΔW − Δ̂‖ / ‖ΔW‖` measured from the stored values, for deltas.
    pub rel_error: Option<f64>,
    /// `‖ΔW‖²`, to combine errors across tensors.
    pub delta_norm_squared: Option<f64>,
    /// Whether this is a compressed 2-D delta.
    pub matrix: bool,
    /// `attention`, `mlp`, `embedding` or `other`, from the tensor name.
    pub tensor_type: String,
    /// Code bits stored for a compressed matrix.
    pub code_bits: u64,
    /// Bytes stored in the file body for this tensor.
    pub bytes: u64,
    /// The matrix's budget in bytes, for compressed matrices.
    pub budget_bytes: Option<u64>,
    /// Seconds spent on this tensor.
    pub seconds: f64,
    /// Singular values of the candidate triplets, for compressed matrices.
    pub spectrum: Vec<f32>,
    /// Width chosen per candidate triplet (0 = dropped), for compressed matrices.
    pub allocation: Vec<u8>,
    /// The device that ran the tensor's kernels: `gpu`, `cpu`, or `cpu (fallback: ERROR)` when the GPU failed on it.
    pub device: String,
}

/// Totals of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The method for 2-D deltas.
    pub method: &'static str,
    /// Size of the whole compressed file in bytes.
    pub compressed_bytes: u64,
    /// f16 size of the fine-tune's float tensors in bytes: the size the ratio applies to.
    pub f16_delta_bytes: u64,
    /// The requested ratio α.
    pub ratio_target: f64,
    /// `compressed_bytes / f16_delta_bytes`.
    pub ratio_achieved: f64,
    /// `√(Σ‖ΔW − Δ̂‖² / Σ‖ΔW‖²)` over the compressed matrices.
    pub rel_error_total: f64,
    /// Bytes of the compressed matrices.
    pub matrix_bytes: u64,
    /// Bytes of f16 deltas and whole tensors.
    pub fixed_bytes: u64,
    /// Bytes of the header and its metadata.
    pub header_bytes: u64,
    /// Code bits per parameter of the compressed matrices, the figure papers quote.
    pub nominal_bits_per_parameter: f64,
    /// One sentence on how the bytes were spent.
    pub budget_note: String,
    /// Seconds for the whole run.
    pub seconds: f64,
    /// The pairing report.
    pub pairing: PairingReport,
    /// The device of the run: the GPU adapter and its backend, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)`, or `cpu`.
    pub device: String,
    /// Notices about the input, such as ignored files, and about tensors on which the GPU failed.
    pub notices: Vec<String>,
}

/// Classifies a tensor by its name as `attention`, `mlp`, `embedding` or `other`.
///
/// The patterns cover BERT, GPT-2, Llama and Mistral style names.
pub fn tensor_type(name: &str) -> &'static str {
    const ATTENTION: [&str; 9] = ["attention", "attn", "q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value"];
    const MLP: [&str; 8] = ["mlp", "intermediate", "output.dense", "gate_proj", "up_proj", "down_proj", "fc1", "fc2"];
    const EMBEDDING: [&str; 5] = ["embed", "lm_head", "wte", "wpe", "tok_embeddings"];
    let lower = name.to_ascii_lowercase();
    if EMBEDDING.iter().any(|p| lower.contains(p)) {
        "embedding"
    } else if ATTENTION.iter().any(|p| lower.contains(p)) {
        "attention"
    } else if MLP.iter().any(|p| lower.contains(p)) {
        "mlp"
    } else {
        "other"
    }
}

/// Combines per-tensor errors into the total relative error over compressed matrices.
pub fn total_relative_error(rows: &[TensorRow]) -> f64 {
    let (mut error, mut norm) = (0.0f64, 0.0f64);
    for row in rows.iter().filter(|r| r.matrix) {
        if let (Some(rel), Some(n2)) = (row.rel_error, row.delta_norm_squared) {
            error += rel * rel * n2;
            norm += n2;
        }
    }
    if norm == 0.0 { 0.0 } else { (error / norm).sqrt() }
}
