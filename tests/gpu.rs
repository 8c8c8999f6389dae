//! GPU kernels against their CPU references, on whatever adapter wgpu finds
//! (Mesa's lavapipe on a machine without a GPU).
//!
//! Codes, f16 scales and minimums, squared errors, cost-table entries and
//! dequantized factors must match bit for bit. Reconstructions must match
//! within [`RECONSTRUCT_TOLERANCE`] of each row's norm, because the GPU and
//! faer add the rank products in different orders.
//!
//! Without an adapter every test prints `SKIPPED: no GPU adapter (install
//! mesa-vulkan-drivers)` and passes, unless `ADAMIX_REQUIRE_GPU=1` is set,
//! in which case every test fails.

mod common;

use std::io::Write;
use std::sync::OnceLock;

use adamix::cost::build_cost_table;
use adamix::gpu::{self, GpuContext, GpuError, Tiling};
use adamix::packed::{Factors, PackedMatrix};
use adamix::quant::{quantize, squared_error, QuantizedVector};
use adamix::svd::Triplets;
use faer::Mat;
use half::f16;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// Largest difference allowed between a GPU and a CPU reconstruction entry, relative to the norm of its CPU row.
///
/// A rank-k dot product in f32 is off by at most about k · 2^-24 of the sum of
/// the absolute products, which is 2.4e-6 of that sum for the largest rank
/// tested here (40). On random factors the sum is of the order of the row norm.
const RECONSTRUCT_TOLERANCE: f32 = 1e-5;

/// Candidate widths of the method.
const WIDTHS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 8];

/// Returns the context with the device's own tiling, shared by all tests, or `None` without an adapter.
fn device_context() -> Option<&'static GpuContext> {
    static CONTEXT: OnceLock<Option<GpuContext>> = OnceLock::new();
    CONTEXT.get_or_init(|| open_context(None)).as_ref()
}

/// Returns a context with 4 KiB bindings and 3 workgroups per dimension, so
/// that small inputs are cut into many runs and tiles.
fn small_tile_context() -> Option<&'static GpuContext> {
    static CONTEXT: OnceLock<Option<GpuContext>> = OnceLock::new();
    CONTEXT.get_or_init(|| open_context(Some(Tiling { max_binding_bytes: 4096, max_workgroups_per_dimension: 3 }))).as_ref()
}

/// Returns a context with 1 MiB bindings and 2 workgroups per dimension, so
/// that small inputs fill a 2 × 2 grid and runs are cut at 256 invocations.
fn small_grid_context() -> Option<&'static GpuContext> {
    static CONTEXT: OnceLock<Option<GpuContext>> = OnceLock::new();
    CONTEXT.get_or_init(|| open_context(Some(Tiling { max_binding_bytes: 1 << 20, max_workgroups_per_dimension: 2 }))).as_ref()
}

fn open_context(tiling: Option<Tiling>) -> Option<GpuContext> {
    common::open_gpu_context(tiling, "GPU tests")
}

/// Returns the context, or prints the skip line (past the test harness's capture) and returns from the test.
macro_rules! context_or_skip {
    ($context:expr) => {
        match $context {
            Some(ctx) => ctx,
            None => {
                let test = std::thread::current().name().unwrap_or("gpu test").to_string();
                let _ = writeln!(std::io::stderr(), "\nSKIPPED: no GPU adapter (install mesa-vulkan-drivers): {test}");
                return;
            }
        }
    };
}

fn normal_sample(rng: &mut SmallRng) -> f32 {
    StandardNormal.sample(rng)
}

fn random_normal(len: usize, scale: f32, rng: &mut SmallRng) -> Vec<f32> {
    (0..len).map(|_| scale * normal_sample(rng)).collect()
}

fn random_mat(rows: usize, cols: usize, rng: &mut SmallRng) -> Mat<f32> {
    let scale = 1.0 / (rows as f32).sqrt();
    Mat::from_fn(rows, cols, |_, _| scale * normal_sample(rng))
}

/// Asserts that the GPU quantized `x` exactly as the CPU does, comparing bits (f16 equality treats ±0 as equal).
fn assert_same_quantization(x: &[f32], gpu: &gpu::QuantizedWithError, label: &str) {
    let width = gpu.quantized.width;
    let cpu = quantize(x, width);
    let bits = |h: &[f16]| h.iter().map(|h| h.to_bits()).collect::<Vec<u16>>();
    assert_eq!(gpu.quantized.codes, cpu.codes, "{label}: codes differ");
    assert_eq!(bits(&gpu.quantized.mins), bits(&cpu.mins), "{label}: minimums differ");
    assert_eq!(bits(&gpu.quantized.scales), bits(&cpu.scales), "{label}: scales differ");
    let cpu_error = squared_error(x, width);
    assert_eq!(gpu.squared_error.to_bits(), cpu_error.to_bits(), "{label}: squared error {} on the GPU, {cpu_error} on the CPU", gpu.squared_error);
}

fn quantize_and_compare(ctx: &GpuContext, vectors: &[Vec<f32>], widths: &[u8]) {
    let slices: Vec<&[f32]> = vectors.iter().map(|x| x.as_slice()).collect();
    let results = pollster::block_on(gpu::quantize_batch(ctx, &slices, widths)).expect("quantize_batch runs");
    assert_eq!(results.len(), vectors.len());
    for (i, (x, result)) in vectors.iter().zip(&results).enumerate() {
        assert_eq!(result.quantized.width, widths[i]);
        assert_same_quantization(x, result, &format!("vector {i} (length {}, width {})", x.len(), widths[i]));
    }
}

#[test]
fn quantize_awkward_lengths_match_cpu() {
    let ctx = context_or_skip!(device_context());
    let mut rng = SmallRng::seed_from_u64(1);
    let (mut vectors, mut widths) = (Vec::new(), Vec::new());
    for width in 1..=8u8 {
        for len in [0, 1, 2, 127, 128, 129, 255, 300, 1000, 4097] {
            vectors.push(random_normal(len, 0.05, &mut rng));
            widths.push(width);
            // Uniform values and a constant group, whose scale is zero.
            vectors.push((0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect());
            widths.push(width);
            vectors.push(vec![0.375; len]);
            widths.push(width);
        }
    }
    quantize_and_compare(ctx, &vectors, &widths);
}

#[test]
fn quantize_code_ties_round_to_even() {
    let ctx = context_or_skip!(device_context());
    let (mut vectors, mut widths) = (Vec::new(), Vec::new());
    for width in 1..=8u8 {
        // Range [0, levels · 0.25], so the scale is exactly 0.25 and (q + 0.5) · 0.25 is a tie.
        let levels = ((1u32 << width) - 1) as f32;
        let mut x: Vec<f32> = (0..levels as u32).map(|q| (q as f32 + 0.5) * 0.25).collect();
        x.push(0.0);
        x.push(levels * 0.25);
        vectors.push(x);
        widths.push(width);
    }
    quantize_and_compare(ctx, &vectors, &widths);
}

#[test]
fn quantize_f16_rounding_matches_half() {
    let ctx = context_or_skip!(device_context());
    // For every pair of adjacent finite f16 values, the f32 midpoint (a tie)
    // and its two f32 neighbours, with both signs. One-entry vectors store the
    // value itself as the minimum, so this checks the f16 rounding of normal
    // and subnormal values, and the round-up to the largest f16.
    let mut vectors = Vec::new();
    for h in 0..0x7bffu16 {
        let midpoint = ((f16::from_bits(h).to_f64() + f16::from_bits(h + 1).to_f64()) / 2.0) as f32;
        for x in [f32::from_bits(midpoint.to_bits() - 1), midpoint, f32::from_bits(midpoint.to_bits() + 1)] {
            vectors.push(vec![x]);
            vectors.push(vec![-x]);
        }
    }
    // Two-entry vectors at width 1 store hi − lo as the scale, so this checks the scale's rounding too.
    vectors.extend(vectors.clone().into_iter().map(|x| vec![0.0, x[0].abs()]));
    let widths = vec![1u8; vectors.len()];
    quantize_and_compare(ctx, &vectors, &widths);
}

#[test]
fn quantize_over_65535_workgroups_of_elements() {
    let ctx = context_or_skip!(device_context());
    // 4.4 M entries, more than 65535 × 64, in one batch that fits one binding.
    let mut rng = SmallRng::seed_from_u64(2);
    let vectors: Vec<Vec<f32>> = (0..40).map(|_| random_normal(110_001, 0.003, &mut rng)).collect();
    let widths: Vec<u8> = (0..40).map(|i| WIDTHS[1 + i % 7]).collect();
    quantize_and_compare(ctx, &vectors, &widths);
}

#[test]
fn quantize_small_tiles_match_cpu() {
    let ctx = context_or_skip!(small_tile_context());
    // A 4 KiB binding has room for 1024 entries, so this batch takes many runs.
    let mut rng = SmallRng::seed_from_u64(3);
    let lengths = [1000, 1, 129, 700, 0, 513, 1024, 3, 900, 257];
    let vectors: Vec<Vec<f32>> = lengths.iter().map(|&len| random_normal(len, 0.1, &mut rng)).collect();
    let widths: Vec<u8> = (0..vectors.len()).map(|i| (i % 8 + 1) as u8).collect();
    quantize_and_compare(ctx, &vectors, &widths);
}

#[test]
fn quantize_small_grid_matches_cpu() {
    let ctx = context_or_skip!(small_grid_context());
    // Runs of at most 256 groups, the first of 215 groups on a 2 × 2 grid.
    let mut rng = SmallRng::seed_from_u64(4);
    let lengths = [20_000, 1, 129, 7000, 0, 30_000, 300];
    let vectors: Vec<Vec<f32>> = lengths.iter().map(|&len| random_normal(len, 0.1, &mut rng)).collect();
    let widths: Vec<u8> = (0..vectors.len()).map(|i| (i % 8 + 1) as u8).collect();
    quantize_and_compare(ctx, &vectors, &widths);
}

#[test]
fn quantize_rejects_invalid_input() {
    let ctx = context_or_skip!(device_context());
    let x = [0.5f32, 1.0];
    let invalid = |result: Result<Vec<gpu::QuantizedWithError>, GpuError>| matches!(result, Err(GpuError::InvalidInput { .. }));
    assert!(invalid(pollster::block_on(gpu::quantize_batch(ctx, &[&x], &[]))), "width count mismatch");
    assert!(invalid(pollster::block_on(gpu::quantize_batch(ctx, &[&x], &[9]))), "width 9");
    assert!(invalid(pollster::block_on(gpu::quantize_batch(ctx, &[&[f32::NAN]], &[4]))), "NaN entry");
    assert!(invalid(pollster::block_on(gpu::quantize_batch(ctx, &[&[1e6]], &[4]))), "entry beyond the f16 range");
    assert!(pollster::block_on(gpu::quantize_batch(ctx, &[], &[])).expect("empty batch").is_empty());
}

fn random_triplets(m: usize, n: usize, k: usize, seed: u64) -> Triplets {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut sigma: Vec<f32> = (0..k).map(|_| rng.random_range(0.01f32..10.0)).collect();
    sigma.sort_by(|a, b| b.total_cmp(a));
    Triplets { sigma, u: random_mat(m, k, &mut rng), v: random_mat(n, k, &mut rng) }
}

fn assert_same_cost_table(ctx: &GpuContext, triplets: &Triplets, widths: &[u8]) {
    let (m, n, k) = (triplets.u.nrows(), triplets.v.nrows(), triplets.sigma.len());
    let gpu_table = pollster::block_on(gpu::cost_table(ctx, triplets, widths)).expect("cost_table runs");
    let cpu_table = build_cost_table(triplets, widths);
    assert_eq!(gpu_table.widths, cpu_table.widths);
    assert_eq!(gpu_table.cost_bits, cpu_table.cost_bits);
    assert_eq!(gpu_table.error.len(), cpu_table.error.len(), "[{m}, {n}] rank {k}: table sizes differ");
    for (index, (g, c)) in gpu_table.error.iter().zip(&cpu_table.error).enumerate() {
        let (i, b) = (index / widths.len(), widths[index % widths.len()]);
        assert_eq!(g.to_bits(), c.to_bits(), "[{m}, {n}] rank {k}: c[{i}, width {b}] is {g} on the GPU, {c} on the CPU");
    }
}

#[test]
fn cost_table_awkward_shapes_match_cpu() {
    let ctx = context_or_skip!(device_context());
    for (seed, (m, n, k)) in [(300, 1, 5), (1, 257, 3), (1000, 700, 20), (129, 128, 1), (5000, 8200, 7)].into_iter().enumerate() {
        assert_same_cost_table(ctx, &random_triplets(m, n, k, 10 + seed as u64), &WIDTHS);
    }
}

#[test]
fn cost_table_over_65535_workgroups_of_elements() {
    let ctx = context_or_skip!(device_context());
    // 64 triplets of [33000, 33000]: 4.2 M vector entries in one dispatch.
    assert_same_cost_table(ctx, &random_triplets(33_000, 33_000, 64, 20), &[0, 1, 3, 8]);
}

#[test]
fn cost_table_small_tiles_match_cpu() {
    let ctx = context_or_skip!(small_tile_context());
    // A 4 KiB binding has room for one triplet of 1000 entries, so 9 dispatches, each on a 3 × 3 grid for 8 entries.
    assert_same_cost_table(ctx, &random_triplets(1000, 300, 9, 21), &WIDTHS);
}

#[test]
fn cost_table_small_grid_matches_cpu() {
    let ctx = context_or_skip!(small_grid_context());
    // Four widths fill a 2 × 2 grid, so each triplet takes its own dispatch.
    assert_same_cost_table(ctx, &random_triplets(700, 129, 5, 23), &[0, 2, 5, 8]);
}

#[test]
fn cost_table_rejects_invalid_widths() {
    let ctx = context_or_skip!(device_context());
    let triplets = random_triplets(10, 10, 2, 22);
    let invalid = |widths: &[u8]| matches!(pollster::block_on(gpu::cost_table(ctx, &triplets, widths)), Err(GpuError::InvalidInput { .. }));
    assert!(invalid(&[0, 9]), "width 9");
    assert!(invalid(&[]), "no widths");
    assert!(invalid(&[1; 17]), "17 widths");
}

/// Packs random triplets of an `[m, n]` matrix quantized on the CPU at the given widths.
fn random_packed(m: usize, n: usize, widths: &[u8], seed: u64) -> PackedMatrix {
    let mut rng = SmallRng::seed_from_u64(seed);
    let u_parts: Vec<QuantizedVector> = widths.iter().map(|&w| quantize(&random_normal(m, 0.05, &mut rng), w)).collect();
    let v_parts: Vec<QuantizedVector> = widths.iter().map(|&w| quantize(&random_normal(n, 0.05, &mut rng), w)).collect();
    let sigma = (0..widths.len()).map(|i| 1.0 / (i + 1) as f32).collect();
    PackedMatrix::pack(m, n, sigma, &u_parts, &v_parts)
}

fn assert_same_dequantization(ctx: &GpuContext, packed: &PackedMatrix) {
    let (m, n) = (packed.rows, packed.cols);
    let gpu_factors = pollster::block_on(gpu::dequantize(ctx, packed)).expect("dequantize runs");
    let cpu_factors = packed.unpack().expect("sizes match");
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    assert_eq!(gpu_factors.sigma, cpu_factors.sigma);
    for i in 0..packed.widths.len() {
        assert_eq!(bits(gpu_factors.u.col_as_slice(i)), bits(cpu_factors.u.col_as_slice(i)), "[{m}, {n}]: û_{i} differs");
        assert_eq!(bits(gpu_factors.v.col_as_slice(i)), bits(cpu_factors.v.col_as_slice(i)), "[{m}, {n}]: v̂_{i} differs");
    }
}

#[test]
fn dequantize_awkward_shapes_match_unpack() {
    let ctx = context_or_skip!(device_context());
    // Odd widths make codes straddle word boundaries.
    let widths = [3u8, 8, 1, 5, 7, 2, 6, 4, 3];
    for (seed, (m, n)) in [(300, 1), (1, 129), (130, 40), (1, 1), (4097, 1000)].into_iter().enumerate() {
        assert_same_dequantization(ctx, &random_packed(m, n, &widths, 30 + seed as u64));
    }
    assert_same_dequantization(ctx, &random_packed(50, 60, &[], 39));
}

#[test]
fn dequantize_over_65535_workgroups() {
    let ctx = context_or_skip!(device_context());
    // 900 triplets of [3000, 2000]: 4.5 M entries, one invocation each, so more than 65535 workgroups of 64.
    let widths: Vec<u8> = (0..900).map(|i| WIDTHS[1 + i % 7]).collect();
    assert_same_dequantization(ctx, &random_packed(3000, 2000, &widths, 40));
}

#[test]
fn dequantize_small_tiles_match_unpack() {
    let ctx = context_or_skip!(small_tile_context());
    // A 3 × 3 grid has room for 576 invocations, so each run is one triplet of
    // 300 + 200 entries, and most runs start in the middle of a word of the code stream.
    assert_same_dequantization(ctx, &random_packed(300, 200, &[3, 5, 7, 1, 2, 8, 6], 41));
}

#[test]
fn dequantize_small_grid_matches_unpack() {
    let ctx = context_or_skip!(small_grid_context());
    // 150 + 100 entries per triplet fill 4 workgroups of a 2 × 2 grid.
    assert_same_dequantization(ctx, &random_packed(150, 100, &[5, 1, 8, 3], 43));
}

#[test]
fn dequantize_rejects_short_stream() {
    let ctx = context_or_skip!(device_context());
    let mut packed = random_packed(10, 10, &[2], 42);
    packed.codes.pop();
    assert!(matches!(pollster::block_on(gpu::dequantize(ctx, &packed)), Err(GpuError::InvalidInput { .. })));
}

fn random_factors(m: usize, n: usize, k: usize, seed: u64) -> Factors {
    let triplets = random_triplets(m, n, k, seed);
    Factors { u: triplets.u, v: triplets.v, sigma: triplets.sigma }
}

/// Asserts that GPU rows `start..start + count` match the CPU's within the tolerance of each row's norm.
fn assert_close_reconstruction(ctx: &GpuContext, factors: &Factors, start: usize, count: usize) {
    let (m, n, k) = (factors.u.nrows(), factors.v.nrows(), factors.sigma.len());
    let gpu_rows = pollster::block_on(gpu::reconstruct_rows(ctx, factors, start, count)).expect("reconstruct_rows runs");
    let cpu_rows = factors.reconstruct_rows(start, count);
    assert_eq!(gpu_rows.len(), cpu_rows.len());
    for (r, (g, c)) in gpu_rows.chunks(n.max(1)).zip(cpu_rows.chunks(n.max(1))).enumerate() {
        let norm = c.iter().map(|x| x * x).sum::<f32>().sqrt();
        let worst = g.iter().zip(c).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(
            worst <= RECONSTRUCT_TOLERANCE * norm,
            "[{m}, {n}] rank {k}: row {} differs by {worst}, above {RECONSTRUCT_TOLERANCE} × row norm {norm}",
            start + r
        );
    }
}

#[test]
fn reconstruct_awkward_shapes_match_cpu() {
    let ctx = context_or_skip!(device_context());
    for (seed, (m, n, k)) in [(300, 1, 5), (1, 1000, 37), (257, 130, 1), (1, 1, 1), (100, 50, 0), (513, 777, 40)].into_iter().enumerate() {
        let factors = random_factors(m, n, k, 50 + seed as u64);
        assert_close_reconstruction(ctx, &factors, 0, m);
        assert_close_reconstruction(ctx, &factors, m / 3, m - m / 3);
        assert_close_reconstruction(ctx, &factors, m, 0);
    }
}

#[test]
fn reconstruct_above_128_mib_is_tiled() {
    let ctx = context_or_skip!(device_context());
    // [8193, 4097] in f32 is 134.3 MB, above a 128 MiB binding, so the output takes more than one tile.
    let (m, n) = (8193, 4097);
    assert!((m * n * 4) as u64 > ctx.tiling().max_binding_bytes.min(128 << 20));
    assert_close_reconstruction(ctx, &random_factors(m, n, 3, 60), 0, m);
}

#[test]
fn reconstruct_small_tiles_match_cpu() {
    let ctx = context_or_skip!(small_tile_context());
    // 4 KiB bindings: tiles of at most 1024 entries, cut in both rows and columns.
    let factors = random_factors(100, 90, 7, 61);
    assert_close_reconstruction(ctx, &factors, 0, 100);
    assert_close_reconstruction(ctx, &factors, 17, 50);
}

#[test]
fn reconstruct_small_grid_matches_cpu() {
    let ctx = context_or_skip!(small_grid_context());
    // Two workgroups per dimension: tiles of at most 32 × 32 entries.
    assert_close_reconstruction(ctx, &random_factors(100, 70, 20, 62), 0, 100);
}

#[test]
fn squared_error_matches_cpu() {
    let ctx = context_or_skip!(device_context());
    let (m, n) = (300, 200);
    let factors = random_factors(m, n, 12, 70);
    let mut rng = SmallRng::seed_from_u64(71);
    let delta = random_normal(m * n, 0.1, &mut rng);
    let gpu_error = pollster::block_on(gpu::squared_error(ctx, &factors, &delta)).expect("squared_error runs");
    let reconstruction = factors.reconstruct_rows(0, m);
    let cpu_error: f64 = delta.iter().zip(&reconstruction).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    assert!((gpu_error - cpu_error).abs() <= 1e-5 * cpu_error, "‖Δ − Δ̂‖² is {gpu_error} on the GPU, {cpu_error} on the CPU");
}

#[test]
fn reconstruct_rejects_rows_out_of_range() {
    let ctx = context_or_skip!(device_context());
    let factors = random_factors(10, 10, 2, 72);
    assert!(matches!(pollster::block_on(gpu::reconstruct_rows(ctx, &factors, 5, 6)), Err(GpuError::InvalidInput { .. })));
}
