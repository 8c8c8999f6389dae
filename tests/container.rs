//! The compressed-delta container and the checkpoint `apply` writes.
//!
//! The pair covers every kind of record. It has a matrix compressed with
//! ADAMIX, a bias stored as an f16 delta and an unchanged float tensor. It
//! also has an integer tensor equal in both files, an integer tensor that
//! changed, a tensor only in the fine-tune and a tensor only in the base.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use adamix::apply::{apply, verify};
use adamix::checkpoint::Checkpoint;
use safetensors::SafeTensors;
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

use common::{
    add, assert_cli_success, compress_to_bytes, gaussian_orthonormal_columns, memory_checkpoint, normal_values, open_delta,
    options_with_ratio, run_cli, safetensors_file, seeded_rng, stdout_text, LowRank, Tensor,
};

const MATRIX: &str = "encoder.attention.weight";
const BIAS: &str = "encoder.attention.bias";
const NORM: &str = "encoder.norm.weight";
const POSITIONS: &str = "embeddings.position_ids";
const COUNTS: &str = "encoder.token_counts";
const CLASSIFIER: &str = "classifier.weight";
const POOLER: &str = "pooler.weight";
const ROWS: usize = 256;
const COLS: usize = 384;
const WIDTH: usize = 96;

/// Fine-tune metadata, which `apply` must restore.
const FINETUNED_METADATA: [(&str, &str); 2] = [("format", "pt"), ("training", "3 epochs")];

/// Builds a float tensor of the fine-tune in `dtype`.
fn float_tensor(dtype: &str, name: &str, shape: &[usize], values: &[f32]) -> Tensor {
    match dtype {
        "F32" => Tensor::f32(name, shape, values),
        "F16" => Tensor::f16(name, shape, values),
        "BF16" => Tensor::bf16(name, shape, values),
        other => panic!("no float tensor of dtype {other}"),
    }
}

/// Builds the base (always F32) and the fine-tune, whose float tensors have `matrix_dtype` and `other_dtype`.
fn pair_tensors(matrix_dtype: &str, other_dtype: &str) -> (Vec<Tensor>, Vec<Tensor>) {
    let mut rng = seeded_rng(21);
    let matrix = normal_values(&mut rng, ROWS * COLS, 0.05);
    let bias = normal_values(&mut rng, WIDTH, 0.02);
    let norm = normal_values(&mut rng, WIDTH, 1.0);
    let pooler = normal_values(&mut rng, 32 * 32, 0.05);
    let classifier = normal_values(&mut rng, 3 * WIDTH, 0.05);
    let positions: Vec<i64> = (0..64).collect();
    let counts: Vec<i32> = (0..8).map(|i| 10 * i).collect();
    let changed_counts: Vec<i32> = counts.iter().map(|c| c + 1).collect();
    let i32_tensor = |name: &str, values: &[i32]| Tensor::raw(name, "I32", &[values.len()], values.iter().flat_map(|v| v.to_le_bytes()).collect());

    // A rank-4 delta on the matrix, so the reconstruction is close and its error is meaningful.
    let low_rank = LowRank::new(gaussian_orthonormal_columns(&mut rng, ROWS, 4), gaussian_orthonormal_columns(&mut rng, COLS, 4), 1e-2);
    let matrix_ft = add(&matrix, &low_rank.matrix());
    let bias_ft = add(&bias, &normal_values(&mut rng, WIDTH, 1e-3));

    let base = vec![
        Tensor::i64(POSITIONS, &[1, 64], &positions),
        Tensor::f32(MATRIX, &[ROWS, COLS], &matrix),
        Tensor::f32(BIAS, &[WIDTH], &bias),
        Tensor::f32(NORM, &[WIDTH], &norm),
        i32_tensor(COUNTS, &counts),
        Tensor::f32(POOLER, &[32, 32], &pooler),
    ];
    let finetuned = vec![
        Tensor::i64(POSITIONS, &[1, 64], &positions),
        float_tensor(matrix_dtype, MATRIX, &[ROWS, COLS], &matrix_ft),
        float_tensor(other_dtype, BIAS, &[WIDTH], &bias_ft),
        float_tensor(other_dtype, NORM, &[WIDTH], &norm),
        i32_tensor(COUNTS, &changed_counts),
        float_tensor(other_dtype, CLASSIFIER, &[3, WIDTH], &classifier),
    ];
    (base, finetuned)
}

/// A compressed pair: the tensors, both checkpoints and the compressed file.
struct Compressed {
    base_tensors: Vec<Tensor>,
    finetuned_tensors: Vec<Tensor>,
    base: Checkpoint,
    finetuned: Checkpoint,
    file: Vec<u8>,
}

fn compress_pair(matrix_dtype: &str, other_dtype: &str) -> Compressed {
    let (base_tensors, finetuned_tensors) = pair_tensors(matrix_dtype, other_dtype);
    let base = memory_checkpoint("base.safetensors", safetensors_file(&base_tensors, &[("format", "pt")])).expect("open base");
    let finetuned = memory_checkpoint("finetuned.safetensors", safetensors_file(&finetuned_tensors, &FINETUNED_METADATA)).expect("open fine-tune");
    let (file, _) = compress_to_bytes(&base, &finetuned, &options_with_ratio(1.0 / 16.0)).expect("compress");
    Compressed { base_tensors, finetuned_tensors, base, finetuned, file }
}

fn tensor<'a>(tensors: &'a [Tensor], name: &str) -> &'a Tensor {
    tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("test pair has no tensor {name}"))
}

/// `(dtype, shape)` of every tensor of a safetensors file, read with the `safetensors` crate.
fn layout(file: &[u8]) -> BTreeMap<String, (String, Vec<usize>)> {
    let tensors = SafeTensors::deserialize(file).unwrap_or_else(|e| panic!("the safetensors crate rejects the file: {e:?}"));
    tensors.tensors().into_iter().map(|(name, view)| (name, (view.dtype().to_string(), view.shape().to_vec()))).collect()
}

fn expected_layout(tensors: &[Tensor]) -> BTreeMap<String, (String, Vec<usize>)> {
    tensors.iter().map(|t| (t.name.clone(), (t.dtype.clone(), t.shape.clone()))).collect()
}

fn metadata(file: &[u8]) -> std::collections::HashMap<String, String> {
    let (_, metadata) = SafeTensors::read_metadata(file).unwrap_or_else(|e| panic!("the safetensors crate rejects the file: {e:?}"));
    metadata.metadata().clone().expect("the file has a __metadata__ entry")
}

fn records(file: &[u8]) -> Vec<Value> {
    let text = metadata(file).remove("adamix.tensors").expect("adamix.tensors is present");
    match serde_json::from_str(&text).expect("adamix.tensors is JSON") {
        Value::Array(records) => records,
        other => panic!("adamix.tensors is not a JSON array: {other}"),
    }
}

fn record<'a>(records: &'a [Value], name: &str) -> &'a Value {
    records.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no record for {name}"))
}

/// Decodes a `WIDTHxCOUNT,...` allocation into one width per candidate triplet.
fn decode_allocation(text: &str) -> Vec<u32> {
    let mut widths = Vec::new();
    for run in text.split(',').filter(|r| !r.is_empty()) {
        let (width, count) = run.split_once('x').unwrap_or_else(|| panic!("allocation run '{run}' is not WIDTHxCOUNT"));
        let width: u32 = width.parse().unwrap_or_else(|_| panic!("allocation width '{width}' is not a number"));
        let count: usize = count.parse().unwrap_or_else(|_| panic!("allocation count '{count}' is not a number"));
        widths.extend(std::iter::repeat_n(width, count));
    }
    widths
}

fn apply_to_bytes(compressed: &Compressed) -> Vec<u8> {
    let delta = open_delta("delta.adamix", compressed.file.clone()).expect("open the compressed delta");
    let mut output = Vec::new();
    apply(&compressed.base, &delta, &mut output, &mut |_, _, _| {}).expect("apply");
    output
}

fn data_of<'a>(file: &'a SafeTensors, name: &str) -> &'a [u8] {
    file.tensor(name).unwrap_or_else(|e| panic!("no tensor {name} in the output: {e:?}")).data()
}

#[test]
fn delta_lists_in_safetensors_crate() {
    let compressed = compress_pair("F32", "F32");
    let header_length = u64::from_le_bytes(compressed.file[..8].try_into().expect("8 bytes"));
    assert_eq!(header_length % 8, 0, "header length {header_length} is not a multiple of 8");

    let stored = layout(&compressed.file);
    let k = match stored.get(&format!("{MATRIX}/sigma")) {
        Some((_, shape)) => shape[0],
        None => panic!("{MATRIX}/sigma is not stored; stored tensors: {:?}", stored.keys()),
    };
    let groups = ROWS.div_ceil(128) + COLS.div_ceil(128);
    let expected: BTreeMap<String, (String, Vec<usize>)> = [
        (format!("{MATRIX}/scales"), ("F16", vec![k, groups])),
        (format!("{MATRIX}/mins"), ("F16", vec![k, groups])),
        (format!("{MATRIX}/sigma"), ("F32", vec![k])),
        (format!("{BIAS}/delta"), ("F16", vec![WIDTH])),
        (format!("{COUNTS}/whole"), ("I32", vec![8])),
        (format!("{CLASSIFIER}/whole"), ("F32", vec![3, WIDTH])),
    ].into_iter().map(|(name, (dtype, shape))| (name, (dtype.to_string(), shape))).collect();
    for (name, entry) in &expected {
        assert_eq!(stored.get(name), Some(entry), "stored tensor {name}");
    }
    let codes = stored.get(&format!("{MATRIX}/codes"));
    let (codes_dtype, codes_shape) = codes.unwrap_or_else(|| panic!("{MATRIX}/codes is not stored"));
    assert_eq!(codes_dtype, "U8", "dtype of {MATRIX}/codes");
    assert_eq!(codes_shape.len(), 1, "rank of {MATRIX}/codes, shape {codes_shape:?}");
    assert_eq!(stored.len(), expected.len() + 1, "stored tensors: {:?}", stored.keys());

    let records = records(&compressed.file);
    let matrix_record = record(&records, MATRIX);
    let allocation = decode_allocation(matrix_record["allocation"].as_str().expect("an adamix record has an allocation"));
    let widths: Vec<u32> = allocation.into_iter().filter(|&w| w > 0).collect();
    assert_eq!(widths.len(), k, "non-zero widths in the allocation against the {k} stored triplets");
    let code_bits: usize = widths.iter().map(|&w| w as usize * (ROWS + COLS)).sum();
    assert_eq!(codes_shape[0], code_bits.div_ceil(8), "code bytes for widths {widths:?}");
}

#[test]
fn delta_metadata_follows_format() {
    let compressed = compress_pair("F32", "F32");
    let metadata = metadata(&compressed.file);
    let entry = |key: &str| metadata.get(key).cloned().unwrap_or_else(|| panic!("metadata entry {key} is missing"));
    assert_eq!(entry("adamix.format"), "adamix-delta", "adamix.format");
    assert_eq!(entry("adamix.format_version"), "1", "adamix.format_version");
    assert_eq!(entry("adamix.method"), "adamix", "adamix.method");
    let ratio: f64 = entry("adamix.ratio").parse().unwrap_or_else(|_| panic!("adamix.ratio {} is not a number", entry("adamix.ratio")));
    assert_eq!(ratio, 0.0625, "adamix.ratio");
    let fingerprint = entry("adamix.base_fingerprint");
    assert!(fingerprint.len() == 16 && fingerprint.chars().all(|c| c.is_ascii_hexdigit()), "adamix.base_fingerprint {fingerprint} is not 16 hex digits");
    let restored: BTreeMap<String, String> = serde_json::from_str(&entry("adamix.finetuned_metadata")).expect("adamix.finetuned_metadata is a JSON object");
    let expected_metadata: BTreeMap<String, String> = FINETUNED_METADATA.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(restored, expected_metadata, "adamix.finetuned_metadata");

    let records = records(&compressed.file);
    let names: Vec<&str> = records.iter().map(|r| r["name"].as_str().unwrap_or("")).collect();
    let expected_names: Vec<&str> = compressed.finetuned.names().collect();
    assert_eq!(names, expected_names, "record names and order");
    for (name, kind) in EXPECTED_KINDS {
        let record = record(&records, name);
        let source = tensor(&compressed.finetuned_tensors, name);
        assert_eq!(record["dtype"], source.dtype.as_str(), "dtype of {name}");
        assert_eq!(record["shape"], serde_json::json!(source.shape), "shape of {name}");
        if kind == "whole" {
            assert!(record.get("base_xxh3").is_none(), "record of whole tensor {name} has a base hash");
        } else {
            let expected_hash = format!("{:016x}", xxh3_64(&tensor(&compressed.base_tensors, name).bytes));
            assert_eq!(record["base_xxh3"], expected_hash.as_str(), "base_xxh3 of {name}");
        }
    }
}

/// The record kind each tensor of the pair must get, with the names the format defines.
const EXPECTED_KINDS: [(&str, &str); 6] =
    [(MATRIX, "quantized"), (BIAS, "f16_delta"), (NORM, "unchanged"), (POSITIONS, "unchanged"), (COUNTS, "whole"), (CLASSIFIER, "whole")];

#[test]
fn record_kinds_follow_format() {
    let compressed = compress_pair("F32", "F32");
    let records = records(&compressed.file);
    for (name, kind) in EXPECTED_KINDS {
        assert_eq!(record(&records, name)["kind"], kind, "kind of {name}");
    }
}

#[test]
fn apply_restores_finetune_layout() {
    let compressed = compress_pair("F32", "F32");
    let output = apply_to_bytes(&compressed);

    assert_eq!(layout(&output), expected_layout(&compressed.finetuned_tensors), "names, dtypes and shapes of the output");
    let restored = metadata(&output);
    for (key, value) in FINETUNED_METADATA {
        assert_eq!(restored.get(key).map(String::as_str), Some(value), "metadata entry {key} of the output");
    }
    let file = SafeTensors::deserialize(&output).expect("output deserializes");
    assert!(file.tensor(POOLER).is_err(), "{POOLER} is only in the base but is in the output");
    for name in [CLASSIFIER, COUNTS, POSITIONS, NORM] {
        let expected = &tensor(&compressed.finetuned_tensors, name).bytes;
        assert!(data_of(&file, name) == expected.as_slice(), "{name} is not bit-exact in the output");
    }
}

#[test]
fn mixed_dtypes_keep_finetune_dtype() {
    for (matrix_dtype, other_dtype) in [("BF16", "F16"), ("F16", "BF16")] {
        let compressed = compress_pair(matrix_dtype, other_dtype);
        let output = apply_to_bytes(&compressed);
        let what = format!("{matrix_dtype} matrix and {other_dtype} vectors over an F32 base");

        assert_eq!(layout(&output), expected_layout(&compressed.finetuned_tensors), "output layout, {what}");
        let file = SafeTensors::deserialize(&output).expect("output deserializes");
        for name in [CLASSIFIER, COUNTS, POSITIONS] {
            let expected = &tensor(&compressed.finetuned_tensors, name).bytes;
            assert!(data_of(&file, name) == expected.as_slice(), "{name} is not bit-exact in the output, {what}");
        }

        let delta = open_delta("delta.adamix", compressed.file.clone()).expect("open the compressed delta");
        let report = verify(&compressed.base, &compressed.finetuned, &delta, &mut |_, _, _| {}).expect("verify");
        let matrix_error = report.tensors.iter().find(|t| t.name == MATRIX).and_then(|t| t.rel_error);
        assert!(matrix_error.is_some_and(|e| e < 0.05), "relative error of {MATRIX} is {matrix_error:?}, expected below 0.05, {what}");
        let bias_error = report.tensors.iter().find(|t| t.name == BIAS).and_then(|t| t.rel_error);
        assert!(bias_error.is_some_and(|e| e < 0.05), "relative error of {BIAS} is {bias_error:?}, expected below 0.05, {what}");
    }
}

#[test]
fn inspect_json_lists_delta() {
    let compressed = compress_pair("F32", "F32");
    let folder = tempfile::tempdir().expect("temporary folder");
    let path = folder.path().join("delta.adamix");
    std::fs::write(&path, &compressed.file).expect("write delta");

    let output = run_cli(["inspect".as_ref(), "--json".as_ref(), path.as_os_str()]);
    assert_cli_success(&output, "adamix inspect --json");
    let json: Value = serde_json::from_str(&stdout_text(&output)).unwrap_or_else(|e| panic!("inspect --json printed invalid JSON ({e}):\n{}", stdout_text(&output)));
    assert_eq!(json["file_bytes"], compressed.file.len(), "file_bytes");
    assert_eq!(json["metadata"]["adamix.format_version"], "1", "adamix.format_version");
    let listed: BTreeSet<&str> = json["tensors"].as_array().map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect()).unwrap_or_default();
    let stored = layout(&compressed.file);
    let expected: BTreeSet<&str> = stored.keys().map(String::as_str).collect();
    assert_eq!(listed, expected, "tensors listed by inspect --json");
}

/// Rebuilds a compressed delta with edited metadata and stored tensors, keeping it a valid safetensors file.
fn rebuild_delta(file: &[u8], edit: impl FnOnce(&mut BTreeMap<String, String>, &mut Vec<Tensor>)) -> Vec<u8> {
    let mut metadata: BTreeMap<String, String> = metadata(file).into_iter().collect();
    let deserialized = SafeTensors::deserialize(file).expect("delta deserializes");
    let mut stored: Vec<Tensor> = deserialized.tensors().into_iter()
        .map(|(name, view)| Tensor::raw(&name, &view.dtype().to_string(), view.shape(), view.data().to_vec()))
        .collect();
    edit(&mut metadata, &mut stored);
    let pairs: Vec<(&str, &str)> = metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    safetensors_file(&stored, &pairs)
}

#[test]
fn unknown_format_version_rejected() {
    let compressed = compress_pair("F32", "F32");
    let file = rebuild_delta(&compressed.file, |metadata, _| {
        metadata.insert("adamix.format_version".into(), "2".into());
    });
    let message = match open_delta("future.adamix", file) {
        Ok(_) => panic!("a delta of format version 2 was accepted"),
        Err(error) => error.to_string(),
    };
    assert!(message.contains("future.adamix"), "message does not name the file: {message}");
    assert!(message.contains("version 2"), "message does not name the version: {message}");
}

/// Applies a delta whose stored `suffix` tensor of record `name` lost its second half; returns the outcome.
fn apply_with_short_stored(name: &str, suffix: &str) -> (adamix::error::Result<()>, Vec<u8>) {
    let compressed = compress_pair("F32", "F32");
    let stored_name = format!("{name}/{suffix}");
    let file = rebuild_delta(&compressed.file, |_, stored| {
        let entry = stored.iter_mut().find(|t| t.name == stored_name).unwrap_or_else(|| panic!("{stored_name} is not stored"));
        let rows = entry.shape[0] / 2;
        let row_bytes = entry.bytes.len() / entry.shape[0];
        entry.shape[0] = rows;
        entry.bytes.truncate(rows * row_bytes);
    });
    let delta = open_delta("short.adamix", file);
    let mut output = Vec::new();
    let result = delta.and_then(|delta| apply(&compressed.base, &delta, &mut output, &mut |_, _, _| {}));
    (result, output)
}

#[test]
fn short_whole_tensor_rejected() {
    let (result, output) = apply_with_short_stored(CLASSIFIER, "whole");
    let message = match result {
        Ok(()) => {
            let readable = SafeTensors::deserialize(&output).map(|_| "readable").unwrap_or("not a valid safetensors file");
            panic!("apply accepted a stored {CLASSIFIER}/whole of half the record's shape and wrote {} bytes ({readable})", output.len())
        }
        Err(error) => error.to_string(),
    };
    assert!(message.contains("short.adamix"), "message does not name the file: {message}");
    assert!(message.contains(CLASSIFIER), "message does not name the tensor: {message}");
}

#[test]
fn short_f16_delta_rejected() {
    let (result, output) = apply_with_short_stored(BIAS, "delta");
    let message = match result {
        Ok(()) => panic!("apply accepted a stored {BIAS}/delta of half the record's shape and wrote {} bytes", output.len()),
        Err(error) => error.to_string(),
    };
    assert!(message.contains("short.adamix"), "message does not name the file: {message}");
    assert!(message.contains(BIAS), "message does not name the tensor: {message}");
}
