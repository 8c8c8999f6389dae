//! The PEFT LoRA export reproduces `W_base + Δ̂` module by module.
//!
//! The adapter is loaded the way PEFT applies it, `W + B·A·(alpha/r)` with
//! each module's `r` and `alpha` from `rank_pattern` and `alpha_pattern`
//! (for an embedding, `W + (B·A)ᵀ·(alpha/r)` with PEFT's `lora_embedding_A`
//! `[r, num_embeddings]` and `lora_embedding_B` `[dim, r]`), and compared with
//! the output of `apply` on the same compressed delta.

use std::collections::BTreeMap;

use adamix::apply::apply;
use adamix::checkpoint::{ByteSource, Checkpoint, Dtype, MemorySource};
use adamix::compress::{compress, CompressOptions};
use adamix::container::writer::header_bytes;
use adamix::container::DeltaFile;
use adamix::export::export_peft;
use adamix::methods::Method;
use half::f16;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The matrices of the synthetic pair: two linear modules and an embedding, `(module, m, n)`.
const MODULES: [(&str, usize, usize); 3] = [("layer.0.mlp.up", 96, 200), ("layer.0.attn.q", 128, 128), ("embeddings.word_embeddings", 300, 64)];

fn checkpoint_bytes(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut offset = 0u64;
    let mut entries = Vec::new();
    for (name, shape, values) in tensors {
        let len = 4 * values.len() as u64;
        entries.push((name.as_str(), Dtype::F32, shape.as_slice(), offset, offset + len));
        offset += len;
    }
    let mut file = header_bytes(&BTreeMap::new(), entries.into_iter());
    for (_, _, values) in tensors {
        file.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    file
}

fn open(name: &str, bytes: Vec<u8>) -> Checkpoint {
    Checkpoint::open(vec![Box::new(MemorySource::new(name, bytes)) as Box<dyn ByteSource>]).expect("valid checkpoint")
}

/// A base and a fine-tune whose matrix deltas have a decaying spectrum plus noise.
fn synthetic_pair() -> (Vec<u8>, Vec<u8>) {
    let mut rng = SmallRng::seed_from_u64(11);
    let mut base = Vec::new();
    let mut finetuned = Vec::new();
    for (name, m, n) in MODULES.iter().map(|&(module, m, n)| (format!("{module}.weight"), m, n)) {
        let w: Vec<f32> = (0..m * n).map(|_| rng.random_range(-0.1f32..0.1)).collect();
        let left: Vec<f32> = (0..m * 4).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let right: Vec<f32> = (0..4 * n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let delta: Vec<f32> = (0..m * n).map(|k| {
            let (i, j) = (k / n, k % n);
            (0..4).map(|r| left[i * 4 + r] * right[r * n + j] * 0.01 / (r + 1) as f32).sum::<f32>() + rng.random_range(-1e-4f32..1e-4)
        }).collect();
        finetuned.push((name.clone(), vec![m, n], w.iter().zip(&delta).map(|(a, b)| a + b).collect::<Vec<_>>()));
        base.push((name, vec![m, n], w));
    }
    let bias: Vec<f32> = (0..96).map(|i| i as f32 * 0.01).collect();
    base.push(("layer.0.mlp.up.bias".into(), vec![96], bias.clone()));
    finetuned.push(("layer.0.mlp.up.bias".into(), vec![96], bias.iter().map(|b| b + 0.001).collect()));
    (checkpoint_bytes(&base), checkpoint_bytes(&finetuned))
}

fn f32_tensor(file: &safetensors::SafeTensors, name: &str) -> Vec<f32> {
    let view = file.tensor(name).expect("tensor present");
    match view.dtype() {
        safetensors::Dtype::F32 => view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        safetensors::Dtype::F16 => view.data().chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => panic!("unexpected dtype {other:?} for {name}"),
    }
}

#[test]
fn peft_adapter_matches_apply() {
    for method in [Method::Adamix, Method::DeltaCome, Method::LowRank] {
        let (base_bytes, finetuned_bytes) = synthetic_pair();
        let (base, finetuned) = (open("base.safetensors", base_bytes.clone()), open("ft.safetensors", finetuned_bytes));
        let options = CompressOptions { ratio: 0.25, method, ..Default::default() };
        let mut data = Vec::new();
        let outcome = compress(&base, &finetuned, &options, &mut |_| {}, &mut data).expect("compression succeeds");
        let mut delta_bytes = outcome.header.clone();
        delta_bytes.extend_from_slice(&data);
        let delta = DeltaFile::open(Box::new(MemorySource::new("delta.safetensors", delta_bytes))).expect("valid delta");

        let mut applied = Vec::new();
        apply(&base, &delta, &mut applied, &mut |_, _, _| {}).expect("apply succeeds");
        let applied = safetensors::SafeTensors::deserialize(&applied).expect("apply output is safetensors");
        let adapter = export_peft(&delta).expect("export succeeds");
        let model = safetensors::SafeTensors::deserialize(&adapter.model).expect("adapter is safetensors");
        let config: serde_json::Value = serde_json::from_str(&adapter.config).expect("config is JSON");
        let base_file = safetensors::SafeTensors::deserialize(&base_bytes).expect("base");

        assert_eq!(adapter.skipped.len(), 1, "{method:?}: only the bias is skipped: {:?}", adapter.skipped);
        for (module, m, n) in MODULES {
            let r = config["rank_pattern"][module].as_f64().expect("rank listed");
            let alpha = config["alpha_pattern"][module].as_f64().expect("alpha listed");
            let k = r as usize;
            let lora = lora_delta(&model, module, m, n, k);
            let w = f32_tensor(&base_file, &format!("{module}.weight"));
            let expected = f32_tensor(&applied, &format!("{module}.weight"));
            let (mut diff, mut norm) = (0.0f64, 0.0f64);
            for i in 0..m * n {
                let loaded = w[i] + lora[i] * (alpha / r) as f32;
                diff += ((loaded - expected[i]) as f64).powi(2);
                norm += ((expected[i] - w[i]) as f64).powi(2);
            }
            let relative = (diff / norm).sqrt();
            assert!(relative < 2e-3, "{method:?} {module}: LoRA differs from apply by {relative} of ‖Δ̂‖, above f16 rounding");
        }
    }
}

/// Computes the unscaled LoRA delta of `module`, row-major `[m, n]`: `B·A` for a
/// linear module, `(B·A)ᵀ` for an embedding, in PEFT's layouts.
fn lora_delta(model: &safetensors::SafeTensors, module: &str, m: usize, n: usize, k: usize) -> Vec<f32> {
    let prefix = format!("base_model.model.{module}");
    if module.contains("embeddings") {
        let a = f32_tensor(model, &format!("{prefix}.lora_embedding_A"));
        let b = f32_tensor(model, &format!("{prefix}.lora_embedding_B"));
        assert_eq!((a.len(), b.len()), (k * m, n * k), "{module}: embedding factor sizes");
        // (B·A)[j, i] = Σ_t B[j, t] · A[t, i], stored at [i, j].
        return (0..m * n).map(|index| {
            let (i, j) = (index / n, index % n);
            (0..k).map(|t| b[j * k + t] * a[t * m + i]).sum()
        }).collect();
    }
    let a = f32_tensor(model, &format!("{prefix}.lora_A.weight"));
    let b = f32_tensor(model, &format!("{prefix}.lora_B.weight"));
    assert_eq!((a.len(), b.len()), (k * n, m * k), "{module}: factor sizes");
    (0..m * n).map(|index| {
        let (i, j) = (index / n, index % n);
        (0..k).map(|t| b[i * k + t] * a[t * n + j]).sum()
    }).collect()
}

#[test]
fn bitdelta_export_is_rejected() {
    let (base_bytes, finetuned_bytes) = synthetic_pair();
    let (base, finetuned) = (open("base.safetensors", base_bytes), open("ft.safetensors", finetuned_bytes));
    let options = CompressOptions { ratio: 0.25, method: Method::Bitdelta, ..Default::default() };
    let mut data = Vec::new();
    let outcome = compress(&base, &finetuned, &options, &mut |_| {}, &mut data).expect("compression succeeds");
    let mut delta_bytes = outcome.header;
    delta_bytes.extend_from_slice(&data);
    let delta = DeltaFile::open(Box::new(MemorySource::new("delta.safetensors", delta_bytes))).expect("valid delta");
    let error = export_peft(&delta).err().expect("BitDelta has no LoRA form").to_string();
    assert!(error.contains("delta.safetensors") && error.contains("BitDelta"), "message: {error}");
}
