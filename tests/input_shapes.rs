//! Checkpoints in the forms users have them, through the command line: a
//! sharded base with its index, a shard missing from it, and a base and
//! fine-tune stored in different float dtypes.
//!
//! Every case writes seeded files to a temporary folder. The per-tensor
//! results come from `compress --report`; the applied checkpoint is read back
//! with the `safetensors` and `half` crates, not with adamix's own reader.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

use half::{bf16, f16};
use serde_json::Value;

use common::{
    add, assert_cli_success, float_tensors, folder_entries, gaussian_orthonormal_columns, header_layout, normal_values, report_rows, run_cli,
    safetensors_file, seeded_rng, shard_name, stderr_text, stdout_text, write_sharded_checkpoint, LowRank, Tensor, SHARD_INDEX_NAME,
};

/// Ratio of every run here. At 1/8 the four matrices get mixed widths.
const RATIO: &str = "1/8";

const EMBEDDING: &str = "model.embed_tokens.weight";
const QUERY: &str = "model.layers.0.self_attn.q_proj.weight";
const QUERY_BIAS: &str = "model.layers.0.self_attn.q_proj.bias";
const UP: &str = "model.layers.0.mlp.up_proj.weight";
const DOWN: &str = "model.layers.0.mlp.down_proj.weight";
const NORM: &str = "model.norm.weight";
const POSITION_IDS: &str = "model.position_ids";

/// Float tensors of the test model and their shapes, in file order.
const FLOAT_TENSORS: [(&str, &[usize]); 6] = [
    (EMBEDDING, &[320, 64]),
    (QUERY, &[64, 64]),
    (QUERY_BIAS, &[64]),
    (UP, &[256, 64]),
    (DOWN, &[64, 256]),
    (NORM, &[64]),
];

/// Tensor names of each shard of the sharded base, in shard order.
const SHARDS: [&[&str]; 3] = [&[EMBEDDING, POSITION_IDS], &[QUERY, QUERY_BIAS], &[UP, DOWN, NORM]];

/// The values of one float tensor on both sides of the pair.
struct PairedValues {
    base: Vec<f32>,
    finetuned: Vec<f32>,
}

/// Returns seeded f32 values of the test model. Base weights have a standard
/// deviation of 0.05. Matrix deltas are a rank-6 component (entry RMS 2e-3)
/// plus dense noise (2e-4), the bias delta is dense and the norm is unchanged.
fn model_values() -> BTreeMap<&'static str, PairedValues> {
    let mut rng = seeded_rng(2024);
    let mut values = BTreeMap::new();
    for (name, shape) in FLOAT_TENSORS {
        let count: usize = shape.iter().product();
        let mut base = normal_values(&mut rng, count, 0.05);
        if name == NORM {
            // Exact in BF16, so the unchanged norm stays unchanged in the mixed-dtype pair.
            base = base.iter().map(|&v| bf16::from_f32(v).to_f32()).collect();
        }
        let delta = match shape {
            [rows, cols] => {
                let low_rank = LowRank::new(gaussian_orthonormal_columns(&mut rng, *rows, 6), gaussian_orthonormal_columns(&mut rng, *cols, 6), 2e-3);
                add(&low_rank.matrix(), &normal_values(&mut rng, count, 2e-4))
            }
            _ if name == NORM => vec![0.0; count],
            _ => normal_values(&mut rng, count, 1e-3),
        };
        let finetuned = add(&base, &delta);
        values.insert(name, PairedValues { base, finetuned });
    }
    values
}

/// Returns the integer tensor of the test model, the same on both sides.
fn position_ids() -> Tensor {
    Tensor::i64(POSITION_IDS, &[1, 64], &(0..64).collect::<Vec<i64>>())
}

/// Returns the base's tensors, all F32, by name.
fn base_tensors(values: &BTreeMap<&str, PairedValues>) -> BTreeMap<String, Tensor> {
    let mut tensors: BTreeMap<String, Tensor> = FLOAT_TENSORS.iter()
        .map(|(name, shape)| (name.to_string(), Tensor::f32(name, shape, &values[name].base)))
        .collect();
    tensors.insert(POSITION_IDS.to_string(), position_ids());
    tensors
}

/// Serializes the fine-tune as one F32 safetensors file.
fn finetuned_file(values: &BTreeMap<&str, PairedValues>) -> Vec<u8> {
    let mut tensors: Vec<Tensor> = FLOAT_TENSORS.iter().map(|(name, shape)| Tensor::f32(name, shape, &values[name].finetuned)).collect();
    tensors.push(position_ids());
    safetensors_file(&tensors, &[("format", "pt")])
}

/// Paths of one test pair on disk: the base as one file and as shards, and the fine-tune as one file.
struct ShardedCase {
    folder: tempfile::TempDir,
    base_file: PathBuf,
    shard_folder: PathBuf,
    shards: Vec<PathBuf>,
    index: PathBuf,
    finetuned: PathBuf,
}

impl ShardedCase {
    /// Writes the pair. The shard folder also contains a `config.json`, as a model folder does.
    fn new() -> ShardedCase {
        let folder = tempfile::tempdir().expect("temporary folder");
        let values = model_values();
        let base = base_tensors(&values);

        let in_file_order: Vec<Tensor> = FLOAT_TENSORS.iter().map(|(name, _)| base[*name].clone()).chain([position_ids()]).collect();
        let base_file = folder.path().join("base.safetensors");
        std::fs::write(&base_file, safetensors_file(&in_file_order, &[("format", "pt")])).expect("write the single-file base");

        let shard_folder = folder.path().join("base-sharded");
        let grouped: Vec<Vec<Tensor>> = SHARDS.iter().map(|names| names.iter().map(|name| base[*name].clone()).collect()).collect();
        let (shards, index) = write_sharded_checkpoint(&shard_folder, &grouped);
        std::fs::write(shard_folder.join("config.json"), r#"{"model_type": "llama", "hidden_size": 64}"#).expect("write config.json");

        let finetuned = folder.path().join("finetuned.safetensors");
        std::fs::write(&finetuned, finetuned_file(&values)).expect("write the fine-tune");
        ShardedCase { folder, base_file, shard_folder, shards, index, finetuned }
    }

    /// Returns a path in the case's temporary folder.
    fn path(&self, name: &str) -> PathBuf {
        self.folder.path().join(name)
    }

    /// Copies the shard folder without shard 2 to `base-incomplete` and returns its path.
    fn incomplete_shard_folder(&self) -> PathBuf {
        let folder = self.path("base-incomplete");
        std::fs::create_dir(&folder).expect("create base-incomplete");
        for name in folder_entries(&self.shard_folder) {
            if name != shard_name(2, 3) {
                std::fs::copy(self.shard_folder.join(&name), folder.join(&name)).expect("copy a file of the shard folder");
            }
        }
        folder
    }
}

/// Runs `adamix compress` on the CPU at [`RATIO`], writing the delta to `output` and the report to `report`.
fn cli_compress(base: &[&Path], finetuned: &Path, output: &Path, report: &Path) -> Output {
    let mut args: Vec<&OsStr> = vec!["compress".as_ref(), "--base".as_ref()];
    args.extend(base.iter().map(|path| path.as_os_str()));
    args.extend::<[&OsStr; 10]>([
        "--finetuned".as_ref(), finetuned.as_os_str(), "--ratio".as_ref(), RATIO.as_ref(), "--device".as_ref(), "cpu".as_ref(),
        "--report".as_ref(), report.as_os_str(), "--output".as_ref(), output.as_os_str(),
    ]);
    run_cli(args)
}

fn cli_apply(base: &[&Path], delta: &Path, output: &Path) -> Output {
    let mut args: Vec<&OsStr> = vec!["apply".as_ref(), "--base".as_ref()];
    args.extend(base.iter().map(|path| path.as_os_str()));
    args.extend::<[&OsStr; 4]>(["--delta".as_ref(), delta.as_os_str(), "--output".as_ref(), output.as_os_str()]);
    run_cli(args)
}

fn cli_verify(base: &[&Path], finetuned: &Path, delta: &Path) -> Output {
    let mut args: Vec<&OsStr> = vec!["verify".as_ref(), "--base".as_ref()];
    args.extend(base.iter().map(|path| path.as_os_str()));
    args.extend::<[&OsStr; 5]>(["--finetuned".as_ref(), finetuned.as_os_str(), "--delta".as_ref(), delta.as_os_str(), "--json".as_ref()]);
    run_cli(args)
}

/// Relative errors of `verify --json` output by tensor name.
fn verified_errors(output: &Output) -> BTreeMap<String, f64> {
    let report: Value = serde_json::from_str(&stdout_text(output)).unwrap_or_else(|e| panic!("verify --json printed invalid JSON: {e}"));
    report["tensors"].as_array().expect("verify --json lists tensors").iter()
        .map(|t| (t["name"].as_str().unwrap_or_default().to_string(), t["rel_error"].as_f64().unwrap_or(f64::NAN)))
        .collect()
}

/// Asserts that two report row sets have the same tensors with equal fields, naming the first difference.
fn assert_rows_equal(actual: &BTreeMap<String, Value>, expected: &BTreeMap<String, Value>, what: &str) {
    assert_eq!(actual.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{what}: tensor names");
    for (name, row) in actual {
        assert_eq!(row, &expected[name], "{what}: report row of {name}");
    }
}

#[test]
fn sharded_base_compresses_like_single_file() {
    let case = ShardedCase::new();
    let (single_delta, single_report) = (case.path("single.adamix"), case.path("single.json"));
    assert_cli_success(&cli_compress(&[&case.base_file], &case.finetuned, &single_delta, &single_report), "adamix compress with the single-file base");
    let expected_rows = report_rows(&single_report);
    let compressed = expected_rows.values().filter(|row| row["kind"] == "adamix").count();
    assert_eq!(compressed, 4, "matrices compressed with adamix in {expected_rows:?}");

    let file_list: Vec<&Path> = case.shards.iter().map(PathBuf::as_path).chain([case.index.as_path()]).collect();
    let forms: [(&str, Vec<&Path>); 2] = [("the shard folder", vec![case.shard_folder.as_path()]), ("the shard files and index", file_list)];
    for (form, base) in forms {
        let (delta, report) = (case.path("sharded.adamix"), case.path("sharded.json"));
        let output = cli_compress(&base, &case.finetuned, &delta, &report);
        assert_cli_success(&output, &format!("adamix compress with {form} as base"));
        assert!(!stderr_text(&output).contains("notice"), "compress with {form} printed a notice:\n{}", stderr_text(&output));
        assert_rows_equal(&report_rows(&report), &expected_rows, &format!("base given as {form}"));
        let same_file = std::fs::read(&delta).expect("read the sharded delta") == std::fs::read(&single_delta).expect("read the single delta");
        assert!(same_file, "the delta from {form} differs from the delta of the single-file base");
    }
}

#[test]
fn sharded_base_delta_applies_and_verifies() {
    let case = ShardedCase::new();
    let (delta, report) = (case.path("delta.adamix"), case.path("report.json"));
    assert_cli_success(&cli_compress(&[&case.shard_folder], &case.finetuned, &delta, &report), "adamix compress with the shard folder as base");

    let (from_shards, from_file) = (case.path("applied-shards.safetensors"), case.path("applied-file.safetensors"));
    assert_cli_success(&cli_apply(&[&case.shard_folder], &delta, &from_shards), "adamix apply onto the shard folder");
    assert_cli_success(&cli_apply(&[&case.base_file], &delta, &from_file), "adamix apply onto the single-file base");
    let applied = std::fs::read(&from_shards).expect("read the checkpoint applied onto the shards");
    assert!(applied == std::fs::read(&from_file).expect("read the checkpoint applied onto the single file"),
        "apply onto the shard folder and onto the single file wrote different checkpoints");
    assert_eq!(header_layout(&from_shards), header_layout(&case.finetuned), "names, dtypes and shapes of the applied checkpoint");

    let verify = cli_verify(&[&case.shard_folder], &case.finetuned, &delta);
    assert_cli_success(&verify, "adamix verify with the shard folder as base");
    let verified = verified_errors(&verify);
    let measured_rows: Vec<(String, f64)> = report_rows(&report).into_iter()
        .filter_map(|(name, row)| row["rel_error"].as_f64().map(|error| (name, error)))
        .collect();
    assert_eq!(measured_rows.len(), 5, "report rows with a relative error (four matrices and the bias): {measured_rows:?}");
    for (name, reported) in measured_rows {
        let measured = verified.get(&name).copied();
        let difference = measured.map(|m| (m - reported).abs());
        assert!(difference.is_some_and(|d| d <= 1e-6), "{name}: rel_error {reported} in the report, {measured:?} from verify");
    }
}

#[test]
fn sharded_base_missing_shard_rejected() {
    let case = ShardedCase::new();
    let incomplete = case.incomplete_shard_folder();
    let missing = shard_name(2, 3);
    let facts = [SHARD_INDEX_NAME, missing.as_str(), "is missing", QUERY, &format!("Add {missing}")];
    let assert_rejected = |output: &Output, command: &str, written: Option<&Path>| {
        let stderr = stderr_text(output);
        assert!(!output.status.success(), "{command} succeeded without {missing}; stderr:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{command} panicked; stderr:\n{stderr}");
        for fact in facts {
            assert!(stderr.contains(fact), "the error of {command} does not contain '{fact}':\n{stderr}");
        }
        if let Some(path) = written {
            assert!(!path.exists(), "{command} wrote {}", path.display());
        }
    };

    let (delta, report) = (case.path("delta.adamix"), case.path("report.json"));
    assert_rejected(&cli_compress(&[&incomplete], &case.finetuned, &delta, &report), "adamix compress", Some(&delta));
    assert!(!report.exists(), "adamix compress wrote the report without {missing}");

    let listed: Vec<PathBuf> = folder_entries(&incomplete).iter().filter(|name| name.contains("safetensors")).map(|name| incomplete.join(name)).collect();
    let listed: Vec<&Path> = listed.iter().map(PathBuf::as_path).collect();
    assert_rejected(&cli_compress(&listed, &case.finetuned, &delta, &report), "adamix compress with the files listed", Some(&delta));

    // apply and verify need a delta made from the complete base.
    let good_delta = case.path("good.adamix");
    assert_cli_success(&cli_compress(&[&case.shard_folder], &case.finetuned, &good_delta, &case.path("good.json")), "adamix compress with all shards");
    let applied = case.path("applied.safetensors");
    assert_rejected(&cli_apply(&[&incomplete], &good_delta, &applied), "adamix apply", Some(&applied));
    let verify = cli_verify(&[&incomplete], &case.finetuned, &good_delta);
    assert_rejected(&verify, "adamix verify", None);
    assert!(stdout_text(&verify).is_empty(), "adamix verify printed results without {missing}:\n{}", stdout_text(&verify));
    let partial_files: Vec<String> = folder_entries(case.folder.path()).into_iter().filter(|name| name.ends_with(".partial")).collect();
    assert!(partial_files.is_empty(), "partial outputs left behind: {partial_files:?}");
}

/// Dtypes of the mixed pair, `(base, fine-tune)` per float tensor: BF16 weights and an F16
/// fine-tune, an F32 matrix on both sides, and an F32 norm with a BF16 fine-tune.
fn mixed_dtypes(name: &str) -> (&'static str, &'static str) {
    match name {
        DOWN => ("F32", "F32"),
        NORM => ("F32", "BF16"),
        _ => ("BF16", "F16"),
    }
}

/// Rounds `values` to `dtype` and back to f32 with the `half` crate.
fn round_to(dtype: &str, values: &[f32]) -> Vec<f32> {
    match dtype {
        "F16" => values.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
        "BF16" => values.iter().map(|&v| bf16::from_f32(v).to_f32()).collect(),
        _ => values.to_vec(),
    }
}

fn typed_tensor(name: &str, dtype: &str, shape: &[usize], values: &[f32]) -> Tensor {
    match dtype {
        "F16" => Tensor::f16(name, shape, values),
        "BF16" => Tensor::bf16(name, shape, values),
        _ => Tensor::f32(name, shape, values),
    }
}

/// Writes the mixed-dtype pair and an all-F32 pair that contains exactly the values the
/// mixed files decode to; returns `(mixed base, mixed fine-tune, f32 base, f32 fine-tune)`.
fn write_mixed_pairs(folder: &Path) -> [PathBuf; 4] {
    let values = model_values();
    let (mut mixed_base, mut mixed_finetuned, mut f32_base, mut f32_finetuned) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (name, shape) in FLOAT_TENSORS {
        let (base_dtype, finetuned_dtype) = mixed_dtypes(name);
        let base = round_to(base_dtype, &values[name].base);
        let finetuned = round_to(finetuned_dtype, &values[name].finetuned);
        mixed_base.push(typed_tensor(name, base_dtype, shape, &base));
        mixed_finetuned.push(typed_tensor(name, finetuned_dtype, shape, &finetuned));
        f32_base.push(Tensor::f32(name, shape, &base));
        f32_finetuned.push(Tensor::f32(name, shape, &finetuned));
    }
    let files = [("mixed-base", mixed_base), ("mixed-finetuned", mixed_finetuned), ("f32-base", f32_base), ("f32-finetuned", f32_finetuned)];
    files.map(|(stem, mut tensors)| {
        tensors.push(position_ids());
        let path = folder.join(format!("{stem}.safetensors"));
        std::fs::write(&path, safetensors_file(&tensors, &[("format", "pt")])).expect("write a checkpoint of the mixed-dtype case");
        path
    })
}

#[test]
fn mixed_dtypes_compress_like_f32_pair() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let [mixed_base, mixed_finetuned, f32_base, f32_finetuned] = write_mixed_pairs(folder.path());
    let (mixed_delta, mixed_report) = (folder.path().join("mixed.adamix"), folder.path().join("mixed.json"));
    let (f32_delta, f32_report) = (folder.path().join("f32.adamix"), folder.path().join("f32.json"));
    assert_cli_success(&cli_compress(&[&mixed_base], &mixed_finetuned, &mixed_delta, &mixed_report), "adamix compress on the mixed-dtype pair");
    assert_cli_success(&cli_compress(&[&f32_base], &f32_finetuned, &f32_delta, &f32_report), "adamix compress on the F32 pair");

    // The report keeps the fine-tune's dtype; every other field must match the F32
    // pair exactly, because F16 and BF16 convert to f32 without rounding.
    let mut mixed_rows = report_rows(&mixed_report);
    let mut f32_rows = report_rows(&f32_report);
    for (name, _) in FLOAT_TENSORS {
        let row = mixed_rows.get_mut(name).unwrap_or_else(|| panic!("no report row for {name}"));
        assert_eq!(row["dtype"], mixed_dtypes(name).1, "{name}: dtype in the report of the mixed pair");
        row.as_object_mut().expect("a row is an object").remove("dtype");
        let f32_row = f32_rows.get_mut(name).unwrap_or_else(|| panic!("no report row for {name} of the F32 pair"));
        assert_eq!(f32_row["dtype"], "F32", "{name}: dtype in the report of the F32 pair");
        f32_row.as_object_mut().expect("a row is an object").remove("dtype");
    }
    assert_rows_equal(&mixed_rows, &f32_rows, "mixed-dtype pair against the F32 pair");
    for name in [EMBEDDING, QUERY, UP, DOWN] {
        assert_eq!(mixed_rows[name]["kind"], "adamix", "{name} is compressed with adamix");
    }
    assert_eq!(mixed_rows[NORM]["kind"], "unchanged", "the norm's F32 and BF16 values are equal, so its delta is zero");
}

#[test]
fn mixed_dtypes_apply_rounds_like_f32_pair() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let [mixed_base, mixed_finetuned, f32_base, f32_finetuned] = write_mixed_pairs(folder.path());
    let (mixed_delta, f32_delta) = (folder.path().join("mixed.adamix"), folder.path().join("f32.adamix"));
    assert_cli_success(&cli_compress(&[&mixed_base], &mixed_finetuned, &mixed_delta, &folder.path().join("mixed.json")), "adamix compress on the mixed-dtype pair");
    assert_cli_success(&cli_compress(&[&f32_base], &f32_finetuned, &f32_delta, &folder.path().join("f32.json")), "adamix compress on the F32 pair");
    let (mixed_applied, f32_applied) = (folder.path().join("mixed-applied.safetensors"), folder.path().join("f32-applied.safetensors"));
    assert_cli_success(&cli_apply(&[&mixed_base], &mixed_delta, &mixed_applied), "adamix apply of the mixed-dtype delta");
    assert_cli_success(&cli_apply(&[&f32_base], &f32_delta, &f32_applied), "adamix apply of the F32 delta");

    // W_base + Δ̂ is the same f32 value in both runs, so the mixed output must be the
    // F32 output rounded to the fine-tune's dtype, element for element.
    let mixed = float_tensors(&mixed_applied);
    let exact = float_tensors(&f32_applied);
    for (name, _) in FLOAT_TENSORS {
        let finetuned_dtype = mixed_dtypes(name).1;
        let (dtype, values) = mixed.get(name).unwrap_or_else(|| panic!("{name} is missing from the applied mixed-dtype checkpoint"));
        assert_eq!(dtype, finetuned_dtype, "{name}: dtype of the applied checkpoint");
        let expected = round_to(finetuned_dtype, &exact[name].1);
        let first_difference = values.iter().zip(&expected).position(|(a, b)| a.to_bits() != b.to_bits());
        assert!(first_difference.is_none(), "{name}: element {first_difference:?} is {:?}, the F32 run rounded to {finetuned_dtype} gives {:?}",
            first_difference.map(|i| values[i]), first_difference.map(|i| expected[i]));
    }

    // verify measures the rounded output, so its error may differ from the report's by the rounding alone.
    let verify = cli_verify(&[&mixed_base], &mixed_finetuned, &mixed_delta);
    assert_cli_success(&verify, "adamix verify of the mixed-dtype delta");
    let verified = verified_errors(&verify);
    let rows = report_rows(&folder.path().join("mixed.json"));
    let finetuned_values = float_tensors(&mixed_finetuned);
    let base_values = float_tensors(&mixed_base);
    for name in [EMBEDDING, QUERY, UP] {
        let delta_norm = finetuned_values[name].1.iter().zip(&base_values[name].1).map(|(f, b)| ((f - b) as f64).powi(2)).sum::<f64>().sqrt();
        let rounding = mixed[name].1.iter().zip(&exact[name].1).map(|(r, e)| ((r - e) as f64).powi(2)).sum::<f64>().sqrt();
        let reported = rows[name]["rel_error"].as_f64().unwrap_or(f64::NAN);
        let bound = rounding / delta_norm + 1e-6;
        assert!((verified[name] - reported).abs() <= bound,
            "{name}: verify measures {}, the report {reported}; F16 rounding of the output allows {bound}", verified[name]);
    }
}

/// Rows of the tall delta: an embedding matrix is [vocabulary, hidden], with many more rows than columns.
const TALL_ROWS: usize = 40000;
const TALL_COLS: usize = 256;
const TALL_NOISE: f64 = 2e-4;

// The noise alone, i.i.d. with standard deviation 2e-4, has every singular
// value near (√40000 ± √256) · 2e-4 = 0.0368 to 0.0432 (the Marchenko–Pastur
// edges). Adding a rank-8 component moves at most 8 of them (interlacing), so
// the SVD must find 248 values in that band and none near zero. faer's f64
// thin SVD of the same matrix finds 0.0431 to 0.0369.
#[test]
fn tall_matrix_svd_keeps_noise_spectrum() {
    let mut rng = seeded_rng(41);
    let low_rank = LowRank::new(gaussian_orthonormal_columns(&mut rng, TALL_ROWS, 8), gaussian_orthonormal_columns(&mut rng, TALL_COLS, 8), 2e-3);
    let delta = add(&low_rank.matrix(), &normal_values(&mut rng, TALL_ROWS * TALL_COLS, TALL_NOISE as f32));
    let matrix = faer::MatRef::from_row_major_slice(&delta, TALL_ROWS, TALL_COLS);
    let triplets = adamix::svd::top_triplets(matrix, TALL_COLS, adamix::svd::SvdPolicy::Auto, "tall").expect("SVD of the tall delta");

    let lower = 0.9 * ((TALL_ROWS as f64).sqrt() - (TALL_COLS as f64).sqrt()) * TALL_NOISE;
    let upper = 1.1 * ((TALL_ROWS as f64).sqrt() + (TALL_COLS as f64).sqrt()) * TALL_NOISE;
    let outside: Vec<(usize, f32)> = triplets.sigma.iter().copied().enumerate().skip(8)
        .filter(|&(_, sigma)| !(lower..=upper).contains(&(sigma as f64)))
        .collect();
    let (first, last) = (&outside[..outside.len().min(5)], &outside[outside.len().saturating_sub(5)..]);
    assert!(outside.is_empty(), "{} of the 248 noise singular values lie outside [{lower:.4}, {upper:.4}]; first {first:?}, last {last:?}", outside.len());
}
