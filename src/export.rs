//! Export of a compressed delta as a PEFT LoRA adapter.
//!
//! Each compressed matrix `Δ̂ = Û diag(σ) V̂ᵀ` becomes `lora_B = Û diag(σ)`
//! (`[m, k]`) and `lora_A = V̂ᵀ` (`[k, n]`), both in f16, under the PEFT key
//! names `base_model.model.MODULE.lora_A.weight` and `...lora_B.weight`,
//! where `MODULE` is the tensor name without `.weight`; embedding modules
//! use PEFT's `lora_embedding_A`/`lora_embedding_B` names and layout instead
//! (see `is_embedding`). Ranks differ per
//! module, so `adapter_config.json` lists each in `rank_pattern` and sets the
//! module's `alpha_pattern` to the same value: PEFT scales by `alpha / r`, so
//! the scale is exactly 1 and `W + B·A` reproduces `W_base + Δ̂` up to f16
//! rounding of the factors.

use std::collections::BTreeMap;

use half::f16;
use serde_json::json;

use crate::checkpoint::Dtype;
use crate::container::writer::header_bytes;
use crate::container::{DeltaFile, Kind};
use crate::error::{Error, Result};
use crate::methods::EncodedMatrix;
use crate::packed::Factors;

/// A PEFT LoRA adapter in memory.
pub struct PeftAdapter {
    /// The bytes of `adapter_model.safetensors`.
    pub model: Vec<u8>,
    /// The text of `adapter_config.json`.
    pub config: String,
    /// Tensors of the fine-tune that a LoRA adapter cannot hold (not low-rank deltas), with the reason.
    pub skipped: Vec<String>,
}

/// Builds a PEFT LoRA adapter from the low-rank matrices of `delta`.
pub fn export_peft(delta: &DeltaFile) -> Result<PeftAdapter> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let (mut ranks, mut skipped) = (BTreeMap::new(), Vec::new());
    for record in &delta.records {
        match record.kind {
            Kind::Quantized | Kind::LowRank => {}
            Kind::Unchanged => continue,
            Kind::Bitdelta => { skipped.push(format!("{} (sign matrix, not low-rank)", record.name)); continue; }
            Kind::F16Delta => { skipped.push(format!("{} (small delta stored as f16)", record.name)); continue; }
            Kind::Whole => { skipped.push(format!("{} (stored whole)", record.name)); continue; }
        }
        let factors = decode_factors(delta, &delta.read_matrix(record)?, &record.name)?;
        let k = factors.sigma.len();
        if k == 0 {
            continue;
        }
        let module = record.name.strip_suffix(".weight").unwrap_or(&record.name).to_string();
        let (m, n) = (factors.u.nrows(), factors.v.nrows());
        let b: Vec<u8> = (0..m).flat_map(|i| (0..k).map(move |j| (i, j))).flat_map(|(i, j)| f16::from_f32(factors.u[(i, j)] * factors.sigma[j]).to_le_bytes()).collect();
        let a: Vec<u8> = (0..k).flat_map(|j| (0..n).map(move |c| (j, c))).flat_map(|(j, c)| f16::from_f32(factors.v[(c, j)]).to_le_bytes()).collect();
        if is_embedding(&module) {
            // PEFT's Embedding layer adds (lora_embedding_B · lora_embedding_A)ᵀ to
            // the [num_embeddings, dim] weight, with A [r, num_embeddings] and
            // B [dim, r], so the factors are stored transposed.
            let a_t: Vec<u8> = (0..k).flat_map(|j| (0..m).map(move |i| (i, j))).flat_map(|(i, j)| f16::from_f32(factors.u[(i, j)] * factors.sigma[j]).to_le_bytes()).collect();
            let b_t: Vec<u8> = (0..n).flat_map(|c| (0..k).map(move |j| (c, j))).flat_map(|(c, j)| f16::from_f32(factors.v[(c, j)]).to_le_bytes()).collect();
            tensors.push((format!("base_model.model.{module}.lora_embedding_A"), vec![k, m], a_t));
            tensors.push((format!("base_model.model.{module}.lora_embedding_B"), vec![n, k], b_t));
        } else {
            tensors.push((format!("base_model.model.{module}.lora_A.weight"), vec![k, n], a));
            tensors.push((format!("base_model.model.{module}.lora_B.weight"), vec![m, k], b));
        }
        ranks.insert(module, k);
    }
    if ranks.is_empty() {
        return Err(Error::InvalidDelta { file: delta.name().into(), message: "the delta contains no low-rank matrix, so there is nothing to export as LoRA (BitDelta files cannot be exported)".into() });
    }
    Ok(PeftAdapter { model: safetensors_bytes(&tensors), config: peft_config(&ranks), skipped })
}

/// Whether a module is an `nn.Embedding`, which PEFT adapts with `lora_embedding_A/B`.
///
/// NOTE: decided by name (`embed`, `wte`, `wpe`), as the checkpoint does not
/// record module types; an output head such as `lm_head` is a Linear layer.
fn is_embedding(module: &str) -> bool {
    let lower = module.to_ascii_lowercase();
    ["embed", "wte", "wpe"].iter().any(|p| lower.contains(p)) && !lower.contains("lm_head")
}

fn decode_factors(delta: &DeltaFile, matrix: &EncodedMatrix, name: &str) -> Result<Factors> {
    let invalid = |message: String| Error::InvalidDelta { file: delta.name().into(), message: format!("tensor '{name}': {message}") };
    match matrix {
        EncodedMatrix::Quantized { packed, .. } => packed.unpack().map_err(invalid),
        EncodedMatrix::LowRank { rows, cols, u, v, sigma, .. } => {
            let r = sigma.len();
            if u.len() != rows * r || v.len() != cols * r {
                return Err(invalid("the low-rank factors do not match the shape".into()));
            }
            Ok(Factors {
                u: faer::Mat::from_fn(*rows, r, |i, j| u[j * rows + i].to_f32()),
                v: faer::Mat::from_fn(*cols, r, |i, j| v[j * cols + i].to_f32()),
                sigma: sigma.clone(),
            })
        }
        EncodedMatrix::BitDelta(_) => Err(invalid("a sign matrix has no low-rank form".into())),
    }
}

fn safetensors_bytes(tensors: &[(String, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut offset = 0u64;
    let mut entries = Vec::new();
    for (name, shape, bytes) in tensors {
        entries.push((name.as_str(), Dtype::F16, shape.as_slice(), offset, offset + bytes.len() as u64));
        offset += bytes.len() as u64;
    }
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let mut file = header_bytes(&metadata, entries.into_iter());
    for (_, _, bytes) in tensors {
        file.extend_from_slice(bytes);
    }
    file
}

fn peft_config(ranks: &BTreeMap<String, usize>) -> String {
    let max_rank = ranks.values().copied().max().unwrap_or(1);
    let config = json!({
        "peft_type": "LORA",
        "r": max_rank,
        "lora_alpha": max_rank,
        "rank_pattern": ranks,
        "alpha_pattern": ranks,
        "target_modules": ranks.keys().collect::<Vec<_>>(),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "init_lora_weights": true,
        "modules_to_save": null,
        "base_model_name_or_path": null,
        "task_type": null,
    });
    serde_json::to_string_pretty(&config).expect("JSON serializes")
}
