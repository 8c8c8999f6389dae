//! Malformed and mismatched inputs, through the library and the command line,
//! and output paths that the command line must reject before any work.
//!
//! Every case writes real files to a temporary folder. The library must
//! return an error that names the file and, where there is one, the tensor.
//! The command line must exit with a failure status, print `error: ` with the
//! same facts, not panic, and leave nothing in the output folder.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

use adamix::apply::apply;

use common::{
    compress_to_bytes, file_checkpoint, folder_entries, frame, normal_values, options_with_ratio, run_cli,
    safetensors_file, seeded_rng, stderr_text, Tensor,
};

const WEIGHT: &str = "encoder.dense.weight";
const BIAS: &str = "encoder.dense.bias";
const SIDE: usize = 128;

/// Ratio used by the command line and the library in these cases: generous, so that no budget error comes first.
const RATIO_ARG: &str = "1/4";
const RATIO: f64 = 0.25;

/// Base values: a `[SIDE, SIDE]` weight and a `[SIDE]` bias, in data order bias then weight.
fn base_values() -> (Vec<f32>, Vec<f32>) {
    let mut rng = seeded_rng(11);
    (normal_values(&mut rng, SIDE, 0.02), normal_values(&mut rng, SIDE * SIDE, 0.05))
}

/// Fine-tune values: the base plus a small dense delta.
fn finetuned_values() -> (Vec<f32>, Vec<f32>) {
    let (bias, weight) = base_values();
    let mut rng = seeded_rng(12);
    let bias_delta = normal_values(&mut rng, SIDE, 1e-3);
    let weight_delta = normal_values(&mut rng, SIDE * SIDE, 1e-3);
    (common::add(&bias, &bias_delta), common::add(&weight, &weight_delta))
}

fn checkpoint_bytes(bias: &[f32], weight: &[f32], weight_shape: &[usize]) -> Vec<u8> {
    let tensors = [Tensor::f32(BIAS, &[SIDE], bias), Tensor::f32(WEIGHT, weight_shape, weight)];
    safetensors_file(&tensors, &[("format", "pt")])
}

fn valid_base_bytes() -> Vec<u8> {
    let (bias, weight) = base_values();
    checkpoint_bytes(&bias, &weight, &[SIDE, SIDE])
}

fn valid_finetuned_bytes() -> Vec<u8> {
    let (bias, weight) = finetuned_values();
    checkpoint_bytes(&bias, &weight, &[SIDE, SIDE])
}

/// A temporary folder with a base, a fine-tune and an empty output folder.
struct Case {
    folder: tempfile::TempDir,
    base: PathBuf,
    finetuned: PathBuf,
    output_folder: PathBuf,
}

impl Case {
    fn new(base_bytes: &[u8], finetuned_bytes: &[u8]) -> Case {
        let folder = tempfile::tempdir().expect("temporary folder");
        let base = folder.path().join("base.safetensors");
        let finetuned = folder.path().join("finetuned.safetensors");
        let output_folder = folder.path().join("out");
        std::fs::write(&base, base_bytes).expect("write base");
        std::fs::write(&finetuned, finetuned_bytes).expect("write fine-tune");
        std::fs::create_dir(&output_folder).expect("create output folder");
        Case { folder, base, finetuned, output_folder }
    }

    fn with_finetuned(finetuned_bytes: &[u8]) -> Case {
        Case::new(&valid_base_bytes(), finetuned_bytes)
    }

    fn output(&self) -> PathBuf {
        self.output_folder.join("delta.adamix")
    }

    /// Compresses this pair through the library, opening files as the command line does, and returns the error message.
    fn library_error(&self, finetuned_paths: &[&Path]) -> String {
        let result = file_checkpoint(&[&self.base]).and_then(|base| {
            let finetuned = file_checkpoint(finetuned_paths)?;
            compress_to_bytes(&base, &finetuned, &options_with_ratio(RATIO))
        });
        match result {
            Ok((file, _)) => panic!("compression succeeded with a {} byte file where an error is expected", file.len()),
            Err(error) => error.to_string(),
        }
    }

    fn cli_compress(&self, finetuned: &Path) -> Output {
        self.cli_compress_with(finetuned, &self.output(), &[])
    }

    /// Runs `adamix compress` on this base and `finetuned`, writing to `output`, with `extra` arguments.
    fn cli_compress_with(&self, finetuned: &Path, output: &Path, extra: &[&OsStr]) -> Output {
        let mut args: Vec<&OsStr> = vec![
            "compress".as_ref(), "--base".as_ref(), self.base.as_os_str(), "--finetuned".as_ref(), finetuned.as_os_str(),
            "--ratio".as_ref(), RATIO_ARG.as_ref(), "--output".as_ref(), output.as_os_str(),
        ];
        args.extend_from_slice(extra);
        run_cli(args)
    }

    /// Checks the library and `adamix compress` on this pair, with the fine-tune given as one file.
    fn assert_compress_rejected(&self, facts: &[&str]) {
        let message = self.library_error(&[&self.finetuned]);
        assert_contains_all(&message, facts, "library error");
        let output = self.cli_compress(&self.finetuned);
        self.assert_cli_rejected(&output, facts, "adamix compress");
    }

    /// Checks `adamix inspect` on `file`, for errors found in the header alone.
    fn assert_inspect_rejected(&self, file: &Path, facts: &[&str]) {
        let output = run_cli(["inspect".as_ref(), "--json".as_ref(), file.as_os_str()]);
        self.assert_cli_rejected(&output, facts, "adamix inspect");
    }

    fn assert_cli_rejected(&self, output: &Output, facts: &[&str], command: &str) {
        let stderr = stderr_text(output);
        assert!(!output.status.success(), "{command} succeeded where an error is expected; stderr:\n{stderr}");
        assert!(output.status.code().is_some(), "{command} was killed by a signal ({}); stderr:\n{stderr}", output.status);
        assert!(!stderr.contains("panicked"), "{command} panicked; stderr:\n{stderr}");
        let error_start = stderr.find("error: ");
        assert!(error_start.is_some(), "{command} printed no 'error: ' line; stderr:\n{stderr}");
        let error_text = &stderr[error_start.unwrap_or(0)..];
        assert_contains_all(error_text, facts, command);

        let left_in_output = folder_entries(&self.output_folder);
        assert!(left_in_output.is_empty(), "{command} left {left_in_output:?} in the output folder");
        let partial_files: Vec<String> = folder_entries(self.folder.path()).into_iter().filter(|n| n.ends_with(".partial")).collect();
        assert!(partial_files.is_empty(), "{command} left {partial_files:?} beside the inputs");
    }
}

fn assert_contains_all(message: &str, facts: &[&str], what: &str) {
    for fact in facts {
        assert!(message.contains(fact), "{what} does not contain '{fact}': {message}");
    }
}

/// Writes the compressed delta of the valid pair to the case's folder (not its output folder).
fn write_valid_delta(case: &Case) -> PathBuf {
    let base = file_checkpoint(&[&case.base]).expect("open base");
    let finetuned = file_checkpoint(&[&case.finetuned]).expect("open fine-tune");
    let (delta_bytes, _) = compress_to_bytes(&base, &finetuned, &options_with_ratio(RATIO)).expect("compress a valid pair");
    let delta_path = case.folder.path().join("delta.adamix");
    std::fs::write(&delta_path, &delta_bytes).expect("write delta");
    delta_path
}

/// Frames a hand-written JSON header with a zeroed data buffer of `data_bytes` bytes.
fn hand_written(header_json: &str, data_bytes: usize) -> Vec<u8> {
    frame(header_json, &vec![0u8; data_bytes])
}

#[test]
fn truncated_data_rejected() {
    let mut base = valid_base_bytes();
    base.truncate(base.len() - 100);
    let case = Case::new(&base, &valid_finetuned_bytes());
    let facts = ["base.safetensors", WEIGHT, "truncated"];
    case.assert_compress_rejected(&facts);
    case.assert_inspect_rejected(&case.base, &facts);
}

#[test]
fn truncated_header_rejected() {
    let full = valid_finetuned_bytes();
    let header_length = u64::from_le_bytes(full[..8].try_into().expect("8 bytes")) as usize;
    let case = Case::with_finetuned(&full[..8 + header_length / 2]);
    let facts = ["finetuned.safetensors", "header length", "truncated"];
    case.assert_compress_rejected(&facts);
    case.assert_inspect_rejected(&case.finetuned, &facts);
}

#[test]
fn empty_file_rejected() {
    let case = Case::with_finetuned(&[]);
    let facts = ["finetuned.safetensors", "0 bytes"];
    case.assert_compress_rejected(&facts);
    case.assert_inspect_rejected(&case.finetuned, &facts);
}

#[test]
fn text_file_rejected() {
    let text = "# Model card\n\nThis folder holds a fine-tuned model; the weights are elsewhere.\n".repeat(4);
    let case = Case::with_finetuned(text.as_bytes());
    let facts = ["finetuned.safetensors", "not a safetensors file"];
    case.assert_compress_rejected(&facts);
    case.assert_inspect_rejected(&case.finetuned, &facts);
}

#[test]
fn header_length_past_end_rejected() {
    let mut file = valid_finetuned_bytes();
    let claimed = file.len() as u64;
    file[..8].copy_from_slice(&claimed.to_le_bytes());
    let case = Case::with_finetuned(&file);
    let facts = ["finetuned.safetensors", &format!("header length is {claimed} bytes"), "truncated"];
    case.assert_compress_rejected(&facts);
    case.assert_inspect_rejected(&case.finetuned, &facts);
}

#[test]
fn header_over_cap_rejected() {
    // The file is longer than the claimed header, so only the 100 MiB cap can reject it.
    // Extending with set_len keeps it sparse on disk.
    let claimed = 100 * 1024 * 1024 + 8u64;
    let case = Case::with_finetuned(&claimed.to_le_bytes());
    let file = std::fs::OpenOptions::new().write(true).open(&case.finetuned).expect("open fine-tune");
    file.set_len(claimed + 1024 * 1024).expect("extend fine-tune");
    drop(file);
    let facts = ["finetuned.safetensors", &format!("header length is {claimed} bytes"), "above the limit"];
    case.assert_compress_rejected(&facts);
    case.assert_inspect_rejected(&case.finetuned, &facts);
}

#[test]
fn offsets_past_data_rejected() {
    let header = format!(r#"{{"{WEIGHT}":{{"dtype":"F32","shape":[128],"data_offsets":[512,1024]}}}}"#);
    let case = Case::with_finetuned(&hand_written(&header, 512));
    let facts = ["finetuned.safetensors", WEIGHT, "[512, 1024]", "outside the data buffer"];
    case.assert_compress_rejected(&facts);
    case.assert_inspect_rejected(&case.finetuned, &facts);
}

#[test]
fn reversed_offsets_rejected() {
    let header = format!(r#"{{"{WEIGHT}":{{"dtype":"F32","shape":[128],"data_offsets":[512,0]}}}}"#);
    let case = Case::with_finetuned(&hand_written(&header, 512));
    let facts = ["finetuned.safetensors", WEIGHT, "[512, 0]"];
    case.assert_compress_rejected(&facts);
    case.assert_inspect_rejected(&case.finetuned, &facts);
}

#[test]
fn overlapping_offsets_rejected() {
    let header = format!(
        r#"{{"{BIAS}":{{"dtype":"F32","shape":[128],"data_offsets":[0,512]}},"{WEIGHT}":{{"dtype":"F32","shape":[128],"data_offsets":[256,768]}}}}"#);
    let case = Case::with_finetuned(&hand_written(&header, 768));
    let facts = ["finetuned.safetensors", WEIGHT, "overlaps"];
    case.assert_compress_rejected(&facts);
    case.assert_inspect_rejected(&case.finetuned, &facts);
}

#[test]
fn hole_between_tensors_rejected() {
    let header = format!(
        r#"{{"{BIAS}":{{"dtype":"F32","shape":[128],"data_offsets":[0,512]}},"{WEIGHT}":{{"dtype":"F32","shape":[128],"data_offsets":[520,1032]}}}}"#);
    let case = Case::with_finetuned(&hand_written(&header, 1032));
    let facts = ["finetuned.safetensors", WEIGHT, "hole of 8 bytes"];
    case.assert_compress_rejected(&facts);
    case.assert_inspect_rejected(&case.finetuned, &facts);
}

#[test]
fn duplicate_names_rejected() {
    let header = format!(
        r#"{{"{WEIGHT}":{{"dtype":"F32","shape":[128],"data_offsets":[0,512]}},"{WEIGHT}":{{"dtype":"F32","shape":[128],"data_offsets":[512,1024]}}}}"#);
    let case = Case::with_finetuned(&hand_written(&header, 1024));
    let facts = ["finetuned.safetensors", WEIGHT, "twice"];
    case.assert_compress_rejected(&facts);
    case.assert_inspect_rejected(&case.finetuned, &facts);
}

#[test]
fn size_not_matching_shape_rejected() {
    let header = format!(r#"{{"{WEIGHT}":{{"dtype":"F32","shape":[128],"data_offsets":[0,256]}}}}"#);
    let case = Case::with_finetuned(&hand_written(&header, 256));
    let facts = ["finetuned.safetensors", WEIGHT, "needs 512 bytes", "span 256 bytes"];
    case.assert_compress_rejected(&facts);
    case.assert_inspect_rejected(&case.finetuned, &facts);
}

#[test]
fn unknown_dtype_rejected() {
    let header = format!(r#"{{"{WEIGHT}":{{"dtype":"Q4_K","shape":[128],"data_offsets":[0,512]}}}}"#);
    let case = Case::with_finetuned(&hand_written(&header, 512));
    let facts = ["finetuned.safetensors", WEIGHT, "unknown dtype", "Q4_K"];
    case.assert_compress_rejected(&facts);
    case.assert_inspect_rejected(&case.finetuned, &facts);
}

#[test]
fn shape_mismatch_rejected() {
    let (bias, weight) = finetuned_values();
    let narrow = &weight[..SIDE * SIDE / 2];
    let case = Case::with_finetuned(&checkpoint_bytes(&bias, narrow, &[SIDE, SIDE / 2]));
    let facts = ["base.safetensors", "finetuned.safetensors", WEIGHT, "[128, 128]", "[128, 64]", "--store-mismatched"];
    case.assert_compress_rejected(&facts);
}

#[test]
fn shape_mismatch_stored_with_option() {
    let (bias, weight) = finetuned_values();
    let narrow = &weight[..SIDE * SIDE / 2];
    let case = Case::with_finetuned(&checkpoint_bytes(&bias, narrow, &[SIDE, SIDE / 2]));
    let report_path = case.output_folder.join("report.json");
    let output = case.cli_compress_with(&case.finetuned, &case.output(),
        &["--store-mismatched".as_ref(), "--report".as_ref(), report_path.as_os_str()]);
    common::assert_cli_success(&output, "adamix compress --store-mismatched");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path).expect("read report")).expect("report is JSON");
    let rows = report["tensors"].as_array().expect("report has a tensors array");
    let weight_row = rows.iter().find(|row| row["name"] == WEIGHT).expect("report has a row for the mismatched weight");
    assert_eq!(weight_row["kind"], "whole", "mismatched weight row: {weight_row}");
    assert_eq!(weight_row["shape"], serde_json::json!([SIDE, SIDE / 2]), "mismatched weight row: {weight_row}");
}

#[test]
fn nan_in_finetune_rejected() {
    let (bias, mut weight) = finetuned_values();
    weight[777] = f32::NAN;
    let case = Case::with_finetuned(&checkpoint_bytes(&bias, &weight, &[SIDE, SIDE]));
    let facts = ["finetuned.safetensors", WEIGHT, "element 777 is NaN"];
    case.assert_compress_rejected(&facts);
}

#[test]
fn infinity_in_base_rejected() {
    let (bias, mut weight) = base_values();
    weight[5] = f32::INFINITY;
    let case = Case::new(&checkpoint_bytes(&bias, &weight, &[SIDE, SIDE]), &valid_finetuned_bytes());
    let facts = ["base.safetensors", WEIGHT, "element 5 is inf"];
    case.assert_compress_rejected(&facts);
}

#[test]
fn missing_shard_rejected() {
    let case = Case::with_finetuned(&valid_finetuned_bytes());
    let shard_folder = case.folder.path().join("finetuned-sharded");
    std::fs::create_dir(&shard_folder).expect("create shard folder");
    let (bias, _) = finetuned_values();
    let first_shard = shard_folder.join("model-00001-of-00002.safetensors");
    std::fs::write(&first_shard, safetensors_file(&[Tensor::f32(BIAS, &[SIDE], &bias)], &[])).expect("write shard");
    let index = shard_folder.join("model.safetensors.index.json");
    let index_json = serde_json::json!({
        "metadata": { "total_size": 4 * SIDE * (SIDE + 1) },
        "weight_map": { BIAS: "model-00001-of-00002.safetensors", WEIGHT: "model-00002-of-00002.safetensors" },
    });
    std::fs::write(&index, index_json.to_string()).expect("write index");

    let facts = ["model.safetensors.index.json", "model-00002-of-00002.safetensors", "missing", WEIGHT];
    let message = case.library_error(&[&index, &first_shard]);
    assert_contains_all(&message, &facts, "library error");
    let output = case.cli_compress(&shard_folder);
    case.assert_cli_rejected(&output, &facts, "adamix compress");
}

#[test]
fn apply_onto_other_base_rejected() {
    let case = Case::new(&valid_base_bytes(), &valid_finetuned_bytes());
    let delta_path = write_valid_delta(&case);

    // Same names, shapes and bias, but a different weight: only the weight's hash differs.
    let (bias, _) = base_values();
    let other_weight = normal_values(&mut seeded_rng(99), SIDE * SIDE, 0.05);
    let other_base = case.folder.path().join("other-base.safetensors");
    std::fs::write(&other_base, checkpoint_bytes(&bias, &other_weight, &[SIDE, SIDE])).expect("write other base");
    let facts = ["other-base.safetensors", "delta.adamix", WEIGHT, "differs"];

    let other = file_checkpoint(&[&other_base]).expect("open other base");
    let delta = adamix::container::DeltaFile::open(Box::new(
        adamix::checkpoint::source::FileSource::open(&delta_path).expect("open delta file"))).expect("read delta");
    let mut sink = Vec::new();
    let result = apply(&other, &delta, &mut sink, &mut |_, _, _| {});
    let message = match result {
        Ok(()) => panic!("apply onto another base succeeded and wrote {} bytes", sink.len()),
        Err(error) => error.to_string(),
    };
    assert_contains_all(&message, &facts, "library error");

    let output = run_cli([
        "apply".as_ref(), "--base".as_ref(), other_base.as_os_str(), "--delta".as_ref(), delta_path.as_os_str(),
        "--output".as_ref(), case.output_folder.join("applied.safetensors").as_os_str(),
    ]);
    case.assert_cli_rejected(&output, &facts, "adamix apply");
}

// ---- Output paths ----

#[test]
fn report_in_missing_folder_rejected() {
    let case = Case::new(&valid_base_bytes(), &valid_finetuned_bytes());
    let missing_folder = case.output_folder.join("missing");
    let report = missing_folder.join("r.json");
    let output = case.cli_compress_with(&case.finetuned, &case.output(), &["--report".as_ref(), report.as_os_str()]);
    let report_text = report.display().to_string();
    let folder_text = missing_folder.display().to_string();
    case.assert_cli_rejected(&output, &["--report", &report_text, &folder_text, "does not exist", "mkdir -p"], "adamix compress");
}

#[test]
fn output_in_missing_folder_rejected() {
    let case = Case::new(&valid_base_bytes(), &valid_finetuned_bytes());
    let missing_folder = case.output_folder.join("missing");
    let delta = missing_folder.join("delta.adamix");
    let output = case.cli_compress_with(&case.finetuned, &delta, &[]);
    let delta_text = delta.display().to_string();
    let folder_text = missing_folder.display().to_string();
    case.assert_cli_rejected(&output, &["--output", &delta_text, &folder_text, "does not exist"], "adamix compress");
}

#[test]
fn output_that_is_folder_rejected() {
    let case = Case::new(&valid_base_bytes(), &valid_finetuned_bytes());
    let output = case.cli_compress_with(&case.finetuned, &case.output_folder, &[]);
    let folder_text = case.output_folder.display().to_string();
    case.assert_cli_rejected(&output, &["--output", &folder_text, "existing folder", "file name"], "adamix compress");
}

#[test]
fn report_that_is_folder_rejected() {
    let case = Case::new(&valid_base_bytes(), &valid_finetuned_bytes());
    let report_folder = case.folder.path().join("reports");
    std::fs::create_dir(&report_folder).expect("create report folder");
    let output = case.cli_compress_with(&case.finetuned, &case.output(), &["--report".as_ref(), report_folder.as_os_str()]);
    let folder_text = report_folder.display().to_string();
    case.assert_cli_rejected(&output, &["--report", &folder_text, "existing folder"], "adamix compress");
    assert!(folder_entries(&report_folder).is_empty(), "adamix compress wrote into {folder_text}");
}

#[test]
fn report_same_as_output_rejected() {
    let case = Case::new(&valid_base_bytes(), &valid_finetuned_bytes());
    let delta = case.output();
    let output = case.cli_compress_with(&case.finetuned, &delta, &["--report".as_ref(), delta.as_os_str()]);
    let delta_text = delta.display().to_string();
    case.assert_cli_rejected(&output, &["--report", "--output", &delta_text, "overwrite"], "adamix compress");
}

/// The fine-tune contains a NaN, which reading the tensors would reject. The
/// output path must be rejected first, before any tensor is read.
#[test]
fn output_checked_before_reading() {
    let (bias, mut weight) = finetuned_values();
    weight[777] = f32::NAN;
    let case = Case::with_finetuned(&checkpoint_bytes(&bias, &weight, &[SIDE, SIDE]));
    let report = case.output_folder.join("missing").join("r.json");
    let output = case.cli_compress_with(&case.finetuned, &case.output(), &["--report".as_ref(), report.as_os_str()]);
    case.assert_cli_rejected(&output, &["--report", "does not exist"], "adamix compress");
    assert!(!stderr_text(&output).contains("NaN"), "the NaN was reported before the output path: {}", stderr_text(&output));
}

#[test]
fn apply_output_that_is_folder_rejected() {
    let case = Case::new(&valid_base_bytes(), &valid_finetuned_bytes());
    let delta = write_valid_delta(&case);
    let output = run_cli([
        "apply".as_ref(), "--base".as_ref(), case.base.as_os_str(), "--delta".as_ref(), delta.as_os_str(),
        "--output".as_ref(), case.output_folder.as_os_str(),
    ]);
    let folder_text = case.output_folder.display().to_string();
    case.assert_cli_rejected(&output, &["--output", &folder_text, "existing folder"], "adamix apply");
}

#[test]
fn compare_report_in_missing_folder_rejected() {
    let case = Case::new(&valid_base_bytes(), &valid_finetuned_bytes());
    let report = case.output_folder.join("missing").join("compare.json");
    let output = run_cli([
        "compare".as_ref(), "--base".as_ref(), case.base.as_os_str(), "--finetuned".as_ref(), case.finetuned.as_os_str(),
        "--ratio".as_ref(), RATIO_ARG.as_ref(), "--device".as_ref(), "cpu".as_ref(), "--report".as_ref(), report.as_os_str(),
    ]);
    let report_text = report.display().to_string();
    case.assert_cli_rejected(&output, &["--report", &report_text, "does not exist"], "adamix compare");
    assert!(!stderr_text(&output).contains("compressing with"), "adamix compare compressed before rejecting the report path: {}", stderr_text(&output));
}

#[test]
fn compare_missing_output_dir_rejected() {
    let case = Case::new(&valid_base_bytes(), &valid_finetuned_bytes());
    let missing_folder = case.output_folder.join("missing");
    let output = run_cli([
        "compare".as_ref(), "--base".as_ref(), case.base.as_os_str(), "--finetuned".as_ref(), case.finetuned.as_os_str(),
        "--ratio".as_ref(), RATIO_ARG.as_ref(), "--device".as_ref(), "cpu".as_ref(), "--output-dir".as_ref(), missing_folder.as_os_str(),
    ]);
    let folder_text = missing_folder.display().to_string();
    case.assert_cli_rejected(&output, &["--output-dir", &folder_text, "does not exist"], "adamix compare");
}

#[test]
fn export_peft_onto_file_rejected() {
    let case = Case::new(&valid_base_bytes(), &valid_finetuned_bytes());
    let delta = write_valid_delta(&case);
    let existing = case.folder.path().join("adapter.bin");
    std::fs::write(&existing, b"keep me").expect("write the existing file");
    let output = run_cli(["export-peft".as_ref(), "--delta".as_ref(), delta.as_os_str(), "--output".as_ref(), existing.as_os_str()]);
    let file_text = existing.display().to_string();
    case.assert_cli_rejected(&output, &["--output", &file_text, "is a file", "choose a folder"], "adamix export-peft");
    assert_eq!(std::fs::read(&existing).expect("read the existing file"), b"keep me", "the existing file was changed");
}
