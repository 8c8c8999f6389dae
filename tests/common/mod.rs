//! Helpers shared by the integration tests: safetensors files built byte by
//! byte, seeded random tensors, the library pipeline run in memory, and the
//! command-line binary.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use adamix::checkpoint::source::FileSource;
use adamix::checkpoint::{ByteSource, Checkpoint, MemorySource};
use adamix::compress::{compress, CompressOptions, CompressOutcome};
use adamix::container::DeltaFile;
use adamix::error::Result;
use half::{bf16, f16};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// One tensor of a checkpoint under construction, with its raw little-endian bytes.
#[derive(Clone)]
pub struct Tensor {
    /// Tensor name.
    pub name: String,
    /// Dtype name as written in safetensors headers, e.g. `"BF16"`.
    pub dtype: String,
    /// Shape, outermost dimension first.
    pub shape: Vec<usize>,
    /// Raw data bytes.
    pub bytes: Vec<u8>,
}

impl Tensor {
    /// Builds an F32 tensor.
    pub fn f32(name: &str, shape: &[usize], values: &[f32]) -> Tensor {
        Tensor::raw(name, "F32", shape, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// Builds an F16 tensor, rounding each value to nearest.
    pub fn f16(name: &str, shape: &[usize], values: &[f32]) -> Tensor {
        Tensor::raw(name, "F16", shape, values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect())
    }

    /// Builds a BF16 tensor, rounding each value to nearest.
    pub fn bf16(name: &str, shape: &[usize], values: &[f32]) -> Tensor {
        Tensor::raw(name, "BF16", shape, values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect())
    }

    /// Builds an I64 tensor.
    pub fn i64(name: &str, shape: &[usize], values: &[i64]) -> Tensor {
        Tensor::raw(name, "I64", shape, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// Builds a tensor from raw bytes, with no check that they fit the shape.
    pub fn raw(name: &str, dtype: &str, shape: &[usize], bytes: Vec<u8>) -> Tensor {
        Tensor { name: name.to_string(), dtype: dtype.to_string(), shape: shape.to_vec(), bytes }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Frames a JSON header and a data buffer as a safetensors file.
///
/// The header is padded with spaces to a multiple of 8 bytes and prefixed
/// with its length as a little-endian u64. Nothing is checked, so callers
/// can build invalid files on purpose.
pub fn frame(header_json: &str, data: &[u8]) -> Vec<u8> {
    let mut json = header_json.as_bytes().to_vec();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut file = (json.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&json);
    file.extend_from_slice(data);
    file
}

/// Serializes tensors as a valid safetensors file, their data contiguous in the given order.
pub fn safetensors_file(tensors: &[Tensor], metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let entries: serde_json::Map<String, serde_json::Value> =
            metadata.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(entries));
    }
    let mut data = Vec::new();
    for tensor in tensors {
        let begin = data.len();
        data.extend_from_slice(&tensor.bytes);
        header.insert(tensor.name.clone(), serde_json::json!({
            "dtype": tensor.dtype, "shape": tensor.shape, "data_offsets": [begin, data.len()],
        }));
    }
    frame(&serde_json::Value::Object(header).to_string(), &data)
}

/// Name of the index file of a sharded checkpoint, as `transformers` writes it.
pub const SHARD_INDEX_NAME: &str = "model.safetensors.index.json";

/// File name of shard `number` (counted from 1) of `count`, as `transformers` names shards:
/// `model-00001-of-00003.safetensors`.
pub fn shard_name(number: usize, count: usize) -> String {
    format!("model-{number:05}-of-{count:05}.safetensors")
}

/// Writes a sharded checkpoint into `folder`, creating it: one safetensors file per group of
/// tensors, named by [`shard_name`], and [`SHARD_INDEX_NAME`] whose `weight_map` names the
/// shard of every tensor. Returns the shard paths in order, then the index path.
pub fn write_sharded_checkpoint(folder: &Path, shards: &[Vec<Tensor>]) -> (Vec<PathBuf>, PathBuf) {
    std::fs::create_dir_all(folder).unwrap_or_else(|e| panic!("cannot create {}: {e}", folder.display()));
    let mut weight_map = serde_json::Map::new();
    let mut total_size = 0;
    let mut paths = Vec::with_capacity(shards.len());
    for (position, tensors) in shards.iter().enumerate() {
        let name = shard_name(position + 1, shards.len());
        for tensor in tensors {
            weight_map.insert(tensor.name.clone(), serde_json::Value::from(name.as_str()));
            total_size += tensor.bytes.len();
        }
        let path = folder.join(&name);
        std::fs::write(&path, safetensors_file(tensors, &[("format", "pt")])).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        paths.push(path);
    }
    let index = serde_json::json!({ "metadata": { "total_size": total_size }, "weight_map": weight_map });
    let index_path = folder.join(SHARD_INDEX_NAME);
    std::fs::write(&index_path, index.to_string()).unwrap_or_else(|e| panic!("cannot write {}: {e}", index_path.display()));
    (paths, index_path)
}

/// Creates a random generator with a fixed seed, so every run gets the same tensors.
pub fn seeded_rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

/// `count` values drawn from a normal distribution with mean 0 and standard deviation `std`.
pub fn normal_values(rng: &mut SmallRng, count: usize, std: f32) -> Vec<f32> {
    (0..count).map(|_| std * rng.sample::<f32, _>(StandardNormal)).collect()
}

/// Columns of a random `[rows, cols]` matrix made orthonormal by Gram–Schmidt, stored column by column.
pub fn gaussian_orthonormal_columns(rng: &mut SmallRng, rows: usize, cols: usize) -> Vec<Vec<f64>> {
    let mut columns: Vec<Vec<f64>> = Vec::with_capacity(cols);
    for _ in 0..cols {
        let mut column: Vec<f64> = (0..rows).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
        for previous in &columns {
            let dot: f64 = column.iter().zip(previous).map(|(a, b)| a * b).sum();
            for (c, p) in column.iter_mut().zip(previous) {
                *c -= dot * p;
            }
        }
        let norm = column.iter().map(|c| c * c).sum::<f64>().sqrt();
        column.iter_mut().for_each(|c| *c /= norm);
        columns.push(column);
    }
    columns
}

/// `cols` distinct rows of the Sylvester–Hadamard matrix of order `rows`, chosen at random,
/// with random signs and scaled to unit norm, so every entry is `±1/√rows`.
///
/// `rows` must be a power of two.
pub fn hadamard_orthonormal_columns(rng: &mut SmallRng, rows: usize, cols: usize) -> Vec<Vec<f64>> {
    assert!(rows.is_power_of_two(), "Hadamard order {rows} is not a power of two");
    let mut chosen: Vec<usize> = Vec::with_capacity(cols);
    while chosen.len() < cols {
        let row = rng.random_range(0..rows);
        if !chosen.contains(&row) {
            chosen.push(row);
        }
    }
    let entry = 1.0 / (rows as f64).sqrt();
    chosen.iter().map(|&row| {
        let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
        (0..rows).map(|c| if (row & c).count_ones() % 2 == 0 { sign * entry } else { -sign * entry }).collect()
    }).collect()
}

/// A matrix of exact rank `k` in factored form: `U diag(σ) Vᵀ` with orthonormal columns in `u` and `v`.
pub struct LowRank {
    /// Columns of `U`, each of length `rows`.
    pub u: Vec<Vec<f64>>,
    /// Singular values, descending.
    pub sigma: Vec<f64>,
    /// Columns of `V`, each of length `cols`.
    pub v: Vec<Vec<f64>>,
}

impl LowRank {
    /// Combines orthonormal factors with singular values falling linearly from 1 to 0.5,
    /// scaled so that the root mean square of the entries is `entry_rms`.
    pub fn new(u: Vec<Vec<f64>>, v: Vec<Vec<f64>>, entry_rms: f64) -> LowRank {
        let rank = u.len();
        let (rows, cols) = (u[0].len(), v[0].len());
        let profile: Vec<f64> = (0..rank).map(|i| 1.0 - 0.5 * i as f64 / rank.max(2) as f64).collect();
        let norm = profile.iter().map(|s| s * s).sum::<f64>().sqrt();
        let frobenius = entry_rms * ((rows * cols) as f64).sqrt();
        let sigma = profile.iter().map(|s| s * frobenius / norm).collect();
        LowRank { u, sigma, v }
    }

    /// Multiplies out `U diag(σ) Vᵀ` in f64 and rounds it to a row-major f32 matrix.
    pub fn matrix(&self) -> Vec<f32> {
        product(&self.u, &self.sigma, &self.v)
    }
}

/// Computes `Σ_i σ_i u_i v_iᵀ` in f64 and rounds it to a row-major f32 matrix.
pub fn product(u: &[Vec<f64>], sigma: &[f64], v: &[Vec<f64>]) -> Vec<f32> {
    let (rows, cols) = (u[0].len(), v[0].len());
    let mut matrix = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let value: f64 = (0..sigma.len()).map(|i| u[i][r] * sigma[i] * v[i][c]).sum();
            matrix[r * cols + c] = value as f32;
        }
    }
    matrix
}

/// Quantizes `x` as the format stores it: groups of 128 entries, uniform asymmetric
/// min–max codes of `width` bits, scale and minimum rounded to f16; returns the decoded values.
///
/// This is an independent reference, so tests can bound the error of the
/// widest width without calling the crate's quantizer.
pub fn reference_quantize(x: &[f64], width: u32) -> Vec<f64> {
    let levels = ((1u32 << width) - 1) as f64;
    let mut decoded = Vec::with_capacity(x.len());
    for group in x.chunks(128) {
        let min = group.iter().copied().fold(f64::INFINITY, f64::min);
        let max = group.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let stored_min = f16::from_f64(min).to_f64();
        let stored_scale = f16::from_f64((max - min) / levels).to_f64();
        for &value in group {
            let code = if stored_scale > 0.0 { ((value - stored_min) / stored_scale).round().clamp(0.0, levels) } else { 0.0 };
            decoded.push(stored_min + code * stored_scale);
        }
    }
    decoded
}

/// Relative Frobenius error `‖a − b‖ / ‖a‖`.
pub fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    let error: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let norm: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
    (error / norm).sqrt()
}

/// `a + b`, element by element.
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Opens a checkpoint held in memory under the display name `name`.
pub fn memory_checkpoint(name: &str, bytes: Vec<u8>) -> Result<Checkpoint> {
    Checkpoint::open(vec![Box::new(MemorySource::new(name, bytes))])
}

/// Opens a checkpoint from files on disk, named in messages by their paths.
pub fn file_checkpoint(paths: &[&Path]) -> Result<Checkpoint> {
    let mut sources: Vec<Box<dyn ByteSource>> = Vec::new();
    for path in paths {
        sources.push(Box::new(FileSource::open(path)?));
    }
    Checkpoint::open(sources)
}

/// Runs the library pipeline in memory; returns the whole compressed file and the outcome.
pub fn compress_to_bytes(base: &Checkpoint, finetuned: &Checkpoint, options: &CompressOptions) -> Result<(Vec<u8>, CompressOutcome)> {
    let mut data = Vec::new();
    let outcome = compress(base, finetuned, options, &mut |_| {}, &mut data)?;
    let mut file = outcome.header.clone();
    file.extend_from_slice(&data);
    Ok((file, outcome))
}

/// Opens a compressed delta held in memory.
pub fn open_delta(name: &str, bytes: Vec<u8>) -> Result<DeltaFile> {
    DeltaFile::open(Box::new(MemorySource::new(name, bytes)))
}

/// Options with ratio `ratio` and the default candidate widths.
pub fn options_with_ratio(ratio: f64) -> CompressOptions {
    CompressOptions { ratio, ..CompressOptions::default() }
}

/// Runs the `adamix` binary built with these tests.
pub fn run_cli<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_adamix"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the adamix binary should start")
}

/// Standard error of a finished command as text.
pub fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Standard output of a finished command as text.
pub fn stdout_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts that a command exited with status 0, showing its output otherwise.
pub fn assert_cli_success(output: &Output, what: &str) {
    assert!(output.status.success(), "{what} failed with {}:\nstdout:\n{}\nstderr:\n{}",
        output.status, stdout_text(output), stderr_text(output));
}

/// Names of the entries of a folder, sorted.
pub fn folder_entries(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", folder.display()))
        .map(|entry| entry.expect("folder entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Paths of the real demo pair; panics with the fetch command when a file is missing.
pub fn demo_pair() -> (PathBuf, PathBuf) {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/demo");
    let base = folder.join("base.safetensors");
    let finetuned = folder.join("finetuned.safetensors");
    for path in [&base, &finetuned] {
        assert!(path.is_file(), "{} is missing; run scripts/fetch-demo.sh to fetch the demo checkpoints", path.display());
    }
    (base, finetuned)
}

/// Rows of a `compress --report` JSON file by tensor name, without `seconds`, which
/// differs from run to run.
pub fn report_rows(path: &Path) -> std::collections::BTreeMap<String, serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read the report {}: {e}", path.display()));
    let report: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("the report {} is not JSON: {e}", path.display()));
    let rows = report["tensors"].as_array().unwrap_or_else(|| panic!("the report {} has no tensors array", path.display()));
    rows.iter()
        .map(|row| {
            let mut row = row.clone();
            if let Some(fields) = row.as_object_mut() {
                fields.remove("seconds");
            }
            (row["name"].as_str().unwrap_or_default().to_string(), row)
        })
        .collect()
}

/// Values of every float tensor of a safetensors file on disk, converted to f32 with the
/// `half` crate, by tensor name.
///
/// Reads the file with the `safetensors` crate, so the values do not depend on the crate's
/// own reader.
pub fn float_tensors(path: &Path) -> std::collections::BTreeMap<String, (String, Vec<f32>)> {
    use safetensors::Dtype;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{} is not a valid safetensors file: {e:?}", path.display()));
    let mut tensors = std::collections::BTreeMap::new();
    for (name, view) in file.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => data.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            _ => continue,
        };
        tensors.insert(name, (format!("{:?}", view.dtype()), values));
    }
    tensors
}

/// `(dtype, shape)` of every tensor listed in the header of a safetensors file on disk.
///
/// Reads only the length prefix and the JSON header, with `serde_json`, so
/// the check does not depend on the crate's own header parser.
pub fn header_layout(path: &Path) -> std::collections::BTreeMap<String, (String, Vec<usize>)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).unwrap_or_else(|e| panic!("cannot read the header length of {}: {e}", path.display()));
    let mut json = vec![0u8; u64::from_le_bytes(prefix) as usize];
    file.read_exact(&mut json).unwrap_or_else(|e| panic!("cannot read the header of {}: {e}", path.display()));
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&json).unwrap_or_else(|e| panic!("the header of {} is not a JSON object: {e}", path.display()));
    header.into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, entry)| {
            let dtype = entry["dtype"].as_str().unwrap_or_default().to_string();
            let shape = entry["shape"].as_array().map(|s| s.iter().filter_map(|d| d.as_u64()).map(|d| d as usize).collect()).unwrap_or_default();
            (name, (dtype, shape))
        })
        .collect()
}

/// Opens a GPU context with `tiling` (the device's own when `None`) and prints
/// which adapter `tests` run on. Returns `None` without an adapter, and panics
/// instead when `ADAMIX_REQUIRE_GPU=1` is set, as `scripts/test.sh` does.
pub fn open_gpu_context(tiling: Option<adamix::gpu::Tiling>, tests: &str) -> Option<adamix::gpu::GpuContext> {
    use std::io::Write;
    match pollster::block_on(adamix::gpu::GpuContext::new()) {
        Ok(mut ctx) => {
            if let Some(tiling) = tiling {
                ctx.set_tiling(tiling);
            }
            let _ = writeln!(std::io::stderr(), "{tests} run on {}", ctx.describe());
            Some(ctx)
        }
        Err(error) if std::env::var("ADAMIX_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("ADAMIX_REQUIRE_GPU=1 is set, but no GPU context could be created: {error}")
        }
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "{error}");
            None
        }
    }
}
