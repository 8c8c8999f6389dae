//! The whole pipeline on the GPU against the CPU: the output file must be
//! byte for byte the same, because the GPU cost table matches the CPU's bit
//! for bit and the bit allocation is built on it.
//!
//! Covers the library on a synthetic pair, the command line on the real demo
//! pair (from scripts/fetch-demo.sh) and on a matrix above 128 MiB in f32,
//! the fallback to the CPU when the GPU fails on a tensor, and `--device`
//! without an adapter.
//!
//! Tests that need an adapter print `SKIPPED: no GPU adapter (install
//! mesa-vulkan-drivers)` and pass without one, unless `ADAMIX_REQUIRE_GPU=1`
//! is set, in which case they fail.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use adamix::checkpoint::Checkpoint;
use adamix::compress::{compress, compress_on, CompressOptions, CompressOutcome, Device};
use adamix::gpu::{GpuContext, Tiling, NO_ADAPTER_MESSAGE};

use common::{
    add, assert_cli_success, demo_pair, gaussian_orthonormal_columns, memory_checkpoint, normal_values, report_rows, safetensors_file, seeded_rng,
    stderr_text, stdout_text, LowRank, Tensor,
};

/// Matrices of the synthetic pair. The shapes are not multiples of the
/// quantization group (128), and the last one has a side of 1030 entries,
/// which a 4 KiB storage binding cannot hold.
const MATRICES: [(&str, [usize; 2]); 3] = [
    ("layers.0.attention.query.weight", [300, 129]),
    ("layers.0.mlp.up.weight", [64, 1000]),
    ("layers.0.mlp.down.weight", [1030, 70]),
];

/// The matrix whose cost table fails on a context with 4 KiB bindings.
const TOO_LONG_FOR_SMALL_BINDINGS: &str = "layers.0.mlp.down.weight";

/// Returns a context with the device's own limits, shared by the tests, or `None` without an adapter.
fn device_context() -> Option<&'static GpuContext> {
    static CONTEXT: OnceLock<Option<GpuContext>> = OnceLock::new();
    CONTEXT.get_or_init(|| open_context(None)).as_ref()
}

/// Returns a context whose storage bindings take 4096 bytes, so the cost table
/// of a matrix with a side above 1024 entries returns a `GpuError`, which the
/// pipeline treats like any other GPU failure.
fn small_binding_context() -> Option<&'static GpuContext> {
    static CONTEXT: OnceLock<Option<GpuContext>> = OnceLock::new();
    CONTEXT.get_or_init(|| open_context(Some(Tiling { max_binding_bytes: 4096, max_workgroups_per_dimension: 65535 }))).as_ref()
}

fn open_context(tiling: Option<Tiling>) -> Option<GpuContext> {
    common::open_gpu_context(tiling, "GPU pipeline tests")
}

/// Returns the context, or prints the skip line (past the test harness's capture) and returns from the test.
macro_rules! context_or_skip {
    ($context:expr) => {
        match $context {
            Some(ctx) => ctx,
            None => {
                let test = std::thread::current().name().unwrap_or("gpu pipeline test").to_string();
                let _ = writeln!(std::io::stderr(), "\nSKIPPED: no GPU adapter (install mesa-vulkan-drivers): {test}");
                return;
            }
        }
    };
}

/// Rank of the low-rank part of each matrix delta.
const DELTA_RANK: usize = 16;

/// Returns the base and fine-tune files of the synthetic pair.
///
/// Each matrix delta is a rank-16 component whose singular values fall by a
/// factor of 0.75 from one to the next, plus dense noise, so the allocation
/// gives the leading triplets more bits than the later ones. The fine-tune
/// also changes a bias (stored as an f16 delta) and leaves a norm unchanged.
fn synthetic_pair() -> (Vec<u8>, Vec<u8>) {
    let mut rng = seeded_rng(47);
    let (mut base, mut finetuned) = (Vec::new(), Vec::new());
    for (name, [rows, cols]) in MATRICES {
        let weight = normal_values(&mut rng, rows * cols, 0.05);
        let sigma = (0..DELTA_RANK).map(|i| 5e-3 * ((rows * cols) as f64).sqrt() * 0.75f64.powi(i as i32)).collect();
        let low_rank = LowRank { u: gaussian_orthonormal_columns(&mut rng, rows, DELTA_RANK), sigma, v: gaussian_orthonormal_columns(&mut rng, cols, DELTA_RANK) };
        let delta = add(&low_rank.matrix(), &normal_values(&mut rng, rows * cols, 1e-3));
        base.push(Tensor::f32(name, &[rows, cols], &weight));
        finetuned.push(Tensor::f32(name, &[rows, cols], &add(&weight, &delta)));
    }
    let bias = normal_values(&mut rng, 300, 0.02);
    base.push(Tensor::f32("layers.0.attention.query.bias", &[300], &bias));
    finetuned.push(Tensor::f32("layers.0.attention.query.bias", &[300], &add(&bias, &normal_values(&mut rng, 300, 1e-3))));
    let norm = normal_values(&mut rng, 129, 1.0);
    base.push(Tensor::f32("layers.0.norm.weight", &[129], &norm));
    finetuned.push(Tensor::f32("layers.0.norm.weight", &[129], &norm));
    (safetensors_file(&base, &[]), safetensors_file(&finetuned, &[]))
}

fn open_synthetic_pair() -> (Checkpoint, Checkpoint) {
    let (base, finetuned) = synthetic_pair();
    (
        memory_checkpoint("base.safetensors", base).expect("open the synthetic base"),
        memory_checkpoint("finetuned.safetensors", finetuned).expect("open the synthetic fine-tune"),
    )
}

/// The output of one library run: header bytes, data bytes and the outcome.
struct Run {
    header: Vec<u8>,
    data: Vec<u8>,
    outcome: CompressOutcome,
}

fn options(device: Device) -> CompressOptions {
    CompressOptions { device, ..CompressOptions::default() }
}

/// Compresses the synthetic pair through [`compress`], which builds the context `device` selects.
fn run_with_device(device: Device) -> Run {
    let (base, finetuned) = open_synthetic_pair();
    let mut data = Vec::new();
    let outcome = compress(&base, &finetuned, &options(device), &mut |_| {}, &mut data)
        .unwrap_or_else(|e| panic!("compress with device {}: {e}", device.name()));
    Run { header: outcome.header.clone(), data, outcome }
}

/// Compresses the synthetic pair through [`compress_on`] with the given context.
fn run_on(gpu: &GpuContext) -> Run {
    let (base, finetuned) = open_synthetic_pair();
    let mut data = Vec::new();
    let outcome = compress_on(&base, &finetuned, &options(Device::Gpu), Some(gpu), &mut |_| {}, &mut data).expect("compress on the given context");
    Run { header: outcome.header.clone(), data, outcome }
}

fn row_device<'a>(run: &'a Run, tensor: &str) -> &'a str {
    let row = run.outcome.rows.iter().find(|row| row.name == tensor).unwrap_or_else(|| panic!("no report row for {tensor}"));
    &row.device
}

/// Asserts that two runs wrote the same header and data, naming the first differing byte.
fn assert_same_bytes(gpu: &Run, cpu: &Run) {
    let first_difference = |a: &[u8], b: &[u8]| a.iter().zip(b).position(|(x, y)| x != y);
    assert_eq!(gpu.header.len(), cpu.header.len(), "header lengths differ");
    assert!(gpu.header == cpu.header, "headers differ first at byte {:?}", first_difference(&gpu.header, &cpu.header));
    assert_eq!(gpu.data.len(), cpu.data.len(), "data lengths differ");
    assert!(gpu.data == cpu.data, "data differ first at byte {:?}", first_difference(&gpu.data, &cpu.data));
}

#[test]
fn library_gpu_output_matches_cpu() {
    let ctx = context_or_skip!(device_context());
    let (gpu, cpu) = (run_with_device(Device::Gpu), run_with_device(Device::Cpu));
    assert_same_bytes(&gpu, &cpu);

    assert_eq!(gpu.outcome.summary.device, ctx.adapter_label(), "summary device of the GPU run");
    assert_eq!(cpu.outcome.summary.device, "cpu", "summary device of the CPU run");
    for (name, _) in MATRICES {
        let row = gpu.outcome.rows.iter().find(|row| row.name == name).expect("a row per matrix");
        assert_eq!(row.kind, "adamix", "{name} is stored with ADAMIX");
        assert!(row.width_counts.len() >= 2, "{name}: widths {:?}; the test needs a mixed allocation", row.width_counts);
        assert_eq!(row_device(&gpu, name), "gpu", "{name} on the GPU run");
        assert_eq!(row_device(&cpu, name), "cpu", "{name} on the CPU run");
    }
    assert_eq!(row_device(&gpu, "layers.0.attention.query.bias"), "cpu", "the bias has no GPU kernel");
    assert!(gpu.outcome.summary.notices.is_empty(), "notices of the GPU run: {:?}", gpu.outcome.summary.notices);
}

#[test]
fn gpu_failure_falls_back_to_cpu() {
    let ctx = context_or_skip!(small_binding_context());
    let (gpu, cpu) = (run_on(ctx), run_with_device(Device::Cpu));
    assert_same_bytes(&gpu, &cpu);

    let fallback = row_device(&gpu, TOO_LONG_FOR_SMALL_BINDINGS);
    assert!(fallback.starts_with("cpu (fallback: "), "{TOO_LONG_FOR_SMALL_BINDINGS} on the failing GPU: '{fallback}'");
    assert!(fallback.contains("cost_table"), "the fallback names the kernel: '{fallback}'");
    for (name, _) in MATRICES.iter().filter(|(name, _)| *name != TOO_LONG_FOR_SMALL_BINDINGS) {
        assert_eq!(row_device(&gpu, name), "gpu", "{name} fits 4 KiB bindings");
    }
    let notices = &gpu.outcome.summary.notices;
    assert_eq!(notices.len(), 1, "one notice for the one failed tensor: {notices:?}");
    assert!(notices[0].contains(&format!("tensor '{TOO_LONG_FOR_SMALL_BINDINGS}'")), "the notice names the tensor: {}", notices[0]);
    assert_eq!(gpu.outcome.summary.device, ctx.adapter_label(), "the run still reports the adapter");
}

/// Runs the `adamix` binary with `WGPU_BACKEND` set to `backend` when given.
fn run_adamix(args: &[&std::ffi::OsStr], backend: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_adamix"));
    command.args(args).env("RUST_BACKTRACE", "0");
    if let Some(backend) = backend {
        command.env("WGPU_BACKEND", backend);
    }
    command.output().expect("the adamix binary should start")
}

/// Runs `adamix compress` on files with `--device device`; returns the process output.
fn cli_compress(base: &Path, finetuned: &Path, output: &Path, device: &str, backend: Option<&str>) -> Output {
    let args = [
        "compress".as_ref(), "--base".as_ref(), base.as_os_str(), "--finetuned".as_ref(), finetuned.as_os_str(),
        "--device".as_ref(), device.as_ref(), "--output".as_ref(), output.as_os_str(),
    ];
    run_adamix(&args, backend)
}

/// Writes the synthetic pair into `folder`; returns the base and fine-tune paths.
fn write_synthetic_pair(folder: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (base_bytes, finetuned_bytes) = synthetic_pair();
    let (base, finetuned) = (folder.join("base.safetensors"), folder.join("finetuned.safetensors"));
    std::fs::write(&base, base_bytes).expect("write the synthetic base");
    std::fs::write(&finetuned, finetuned_bytes).expect("write the synthetic fine-tune");
    (base, finetuned)
}

/// Asserts with `cmp` that two files are identical.
fn assert_cmp_identical(a: &Path, b: &Path) {
    let cmp = Command::new("cmp").arg(a).arg(b).output().expect("cmp from diffutils should start");
    assert!(cmp.status.success(), "cmp {} {}: {}{}", a.display(), b.display(), stdout_text(&cmp), stderr_text(&cmp));
}

#[test]
fn cli_real_pair_gpu_file_matches_cpu() {
    let ctx = context_or_skip!(device_context());
    let (base, finetuned) = demo_pair();
    let folder = tempfile::tempdir().expect("temporary folder");
    let (gpu_file, cpu_file) = (folder.path().join("gpu.adamix"), folder.path().join("cpu.adamix"));

    let gpu = cli_compress(&base, &finetuned, &gpu_file, "gpu", None);
    assert_cli_success(&gpu, "adamix compress --device gpu");
    let cpu = cli_compress(&base, &finetuned, &cpu_file, "cpu", None);
    assert_cli_success(&cpu, "adamix compress --device cpu");

    assert_cmp_identical(&gpu_file, &cpu_file);
    let gpu_device = format!("device: {}", ctx.adapter_label());
    assert!(stdout_text(&gpu).contains(&gpu_device), "the GPU run prints '{gpu_device}':\n{}", stdout_text(&gpu));
    assert!(stdout_text(&cpu).contains("device: cpu"), "the CPU run prints 'device: cpu':\n{}", stdout_text(&cpu));
    assert!(!stderr_text(&gpu).contains("fallback"), "the GPU run fell back to the CPU:\n{}", stderr_text(&gpu));
}

/// Shape of the large matrix, a BF16 embedding: 33000 × 1024 f32 values take
/// 135 168 000 bytes, above the 128 MiB (134 217 728 bytes) of one storage
/// binding on Mesa's lavapipe.
const LARGE_SHAPE: [usize; 2] = [33000, 1024];

/// Ratio of the large runs. At 1/8 every one of the 1024 triplets is a
/// candidate, so the left singular vectors the cost table reads are as large
/// as the matrix and take two runs of triplets on a 128 MiB binding.
const LARGE_RATIO: &str = "1/8";

/// Writes a BF16 pair of one [`LARGE_SHAPE`] matrix into `folder`: base entries with a
/// standard deviation of 0.05, a delta of rank 8 (entry RMS 2e-3) plus dense noise (2e-4).
fn write_large_pair(folder: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let [rows, cols] = LARGE_SHAPE;
    let mut rng = seeded_rng(59);
    let base = normal_values(&mut rng, rows * cols, 0.05);
    let low_rank = LowRank::new(gaussian_orthonormal_columns(&mut rng, rows, 8), gaussian_orthonormal_columns(&mut rng, cols, 8), 2e-3);
    let delta = add(&low_rank.matrix(), &normal_values(&mut rng, rows * cols, 2e-4));
    let name = "model.embed_tokens.weight";
    let (base_path, finetuned_path) = (folder.join("large-base.safetensors"), folder.join("large-finetuned.safetensors"));
    std::fs::write(&base_path, safetensors_file(&[Tensor::bf16(name, &LARGE_SHAPE, &base)], &[])).expect("write the large base");
    std::fs::write(&finetuned_path, safetensors_file(&[Tensor::bf16(name, &LARGE_SHAPE, &add(&base, &delta))], &[])).expect("write the large fine-tune");
    (base_path, finetuned_path)
}

#[test]
fn cli_large_tensor_gpu_file_matches_cpu() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let (base, finetuned) = write_large_pair(folder.path());
    let compress_on_device = |device: &str| {
        let (output, report) = (folder.path().join(format!("{device}.adamix")), folder.path().join(format!("{device}.json")));
        let args = [
            "compress".as_ref(), "--base".as_ref(), base.as_os_str(), "--finetuned".as_ref(), finetuned.as_os_str(), "--ratio".as_ref(), LARGE_RATIO.as_ref(),
            "--device".as_ref(), device.as_ref(), "--report".as_ref(), report.as_os_str(), "--output".as_ref(), output.as_os_str(),
        ];
        let run = run_adamix(&args, None);
        assert_cli_success(&run, &format!("adamix compress --device {device} on the [33000, 1024] pair"));
        (run, output, report_rows(&report))
    };

    // The CPU run and its verification need no adapter.
    let (_, cpu_file, cpu_rows) = compress_on_device("cpu");
    let row = &cpu_rows["model.embed_tokens.weight"];
    assert_eq!(row["kind"], "adamix", "the large matrix is stored with ADAMIX");
    assert_eq!(row["spectrum"].as_array().map(Vec::len), Some(1024), "candidate triplets of the large matrix");
    let verify_args = ["verify".as_ref(), "--base".as_ref(), base.as_os_str(), "--finetuned".as_ref(), finetuned.as_os_str(), "--delta".as_ref(), cpu_file.as_os_str(), "--json".as_ref()];
    let verify = run_adamix(&verify_args, None);
    assert_cli_success(&verify, "adamix verify of the large delta");
    let verified: serde_json::Value = serde_json::from_str(&stdout_text(&verify)).unwrap_or_else(|e| panic!("verify --json printed invalid JSON: {e}"));
    let file_bytes = std::fs::metadata(&cpu_file).expect("metadata of the CPU delta").len();
    assert_eq!(verified["file_bytes"], file_bytes, "file_bytes from verify --json against the file on disk");

    let ctx = context_or_skip!(device_context());
    let vector_bytes = 4 * LARGE_SHAPE[0] as u64 * LARGE_SHAPE[1] as u64;
    assert!(ctx.tiling().max_binding_bytes < vector_bytes,
        "one binding of {} bytes holds all {vector_bytes} bytes of left singular vectors, so the test would not split the cost table", ctx.tiling().max_binding_bytes);
    let (gpu, gpu_file, gpu_rows) = compress_on_device("gpu");
    assert_cmp_identical(&gpu_file, &cpu_file);
    assert_eq!(gpu_rows["model.embed_tokens.weight"]["device"], "gpu", "device of the large matrix in the GPU report");
    let gpu_device = format!("device: {}", ctx.adapter_label());
    assert!(stdout_text(&gpu).contains(&gpu_device), "the GPU run prints '{gpu_device}':\n{}", stdout_text(&gpu));
    assert!(!stderr_text(&gpu).contains("fallback"), "the GPU run fell back to the CPU:\n{}", stderr_text(&gpu));
}

#[test]
fn cli_compare_reports_devices() {
    let ctx = context_or_skip!(device_context());
    let folder = tempfile::tempdir().expect("temporary folder");
    let (base, finetuned) = write_synthetic_pair(folder.path());
    let args = ["compare".as_ref(), "--base".as_ref(), base.as_os_str(), "--finetuned".as_ref(), finetuned.as_os_str(), "--device".as_ref(), "gpu".as_ref()];
    let output = run_adamix(&args, None);
    assert_cli_success(&output, "adamix compare --device gpu");
    let table = stdout_text(&output);
    let line_of = |method: &str| table.lines().find(|line| line.starts_with(method)).unwrap_or_else(|| panic!("no '{method}' line in:\n{table}"));
    assert!(line_of("adamix").ends_with(&ctx.adapter_label()), "adamix runs on the GPU:\n{table}");
    assert!(line_of("bitdelta").ends_with("cpu"), "bitdelta has no GPU kernel:\n{table}");
}

// Cargo.toml enables only wgpu's Vulkan, GLES and WebGPU backends, so with
// WGPU_BACKEND=metal wgpu finds no adapter on any machine.

#[test]
fn cli_gpu_without_adapter_fails() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let (base, finetuned) = write_synthetic_pair(folder.path());
    let output_file = folder.path().join("delta.adamix");
    let output = cli_compress(&base, &finetuned, &output_file, "gpu", Some("metal"));
    assert!(!output.status.success(), "--device gpu without an adapter succeeded:\n{}", stdout_text(&output));
    assert!(stderr_text(&output).contains(NO_ADAPTER_MESSAGE), "the error says how to fix it:\n{}", stderr_text(&output));
    assert!(!output_file.exists(), "no output is written");
}

#[test]
fn cli_auto_without_adapter_uses_cpu() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let (base, finetuned) = write_synthetic_pair(folder.path());
    let (auto_file, cpu_file) = (folder.path().join("auto.adamix"), folder.path().join("cpu.adamix"));
    let auto = cli_compress(&base, &finetuned, &auto_file, "auto", Some("metal"));
    assert_cli_success(&auto, "adamix compress --device auto without an adapter");
    assert!(stdout_text(&auto).contains("device: cpu"), "the run reports the CPU:\n{}", stdout_text(&auto));
    let cpu = cli_compress(&base, &finetuned, &cpu_file, "cpu", None);
    assert_cli_success(&cpu, "adamix compress --device cpu");
    assert_cmp_identical(&auto_file, &cpu_file);
}

#[test]
fn cli_rejects_unknown_device() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let (base, finetuned) = write_synthetic_pair(folder.path());
    let output = cli_compress(&base, &finetuned, &folder.path().join("delta.adamix"), "tpu", None);
    assert!(!output.status.success(), "--device tpu was accepted");
    assert!(stderr_text(&output).contains("unknown device 'tpu'; use auto, gpu or cpu"), "{}", stderr_text(&output));
}
