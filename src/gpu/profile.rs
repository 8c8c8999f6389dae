//! Per-kernel timings of the GPU kernels against their CPU references, on the
//! factors of one synthetic `[m, n]` delta with a long-tailed spectrum, with
//! the bytes each kernel moves and the arithmetic it does beside the floor of
//! its task.
//!
//! Times are medians of `repeats` runs. A GPU time is what the caller waits
//! for: upload, dispatches and readback. The byte and operation counts are a
//! model read off the shaders, so they hold on any device:
//!
//! - *bytes moved*: global-memory bytes the kernel's invocations read and
//!   write, as the shaders are written;
//! - *bytes floor*: each input read once and each output written once;
//! - *operations*: arithmetic per element as written, where the exact f32
//!   division done in integer steps (`quant_common.wgsl`) counts as
//!   [`EXACT_DIVISION_OPS`];
//! - *operations floor*: the same task with one hardware division.

use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use super::{cost_table, dequantize, quantize_batch, reconstruct_rows, GpuContext, GpuError};
use crate::allocate::allocate;
use crate::budget::WIDTHS;
use crate::clock::Stopwatch;
use crate::cost::build_cost_table;
use crate::packed::{Factors, PackedMatrix};
use crate::quant::{quantize, squared_error, GROUP_SIZE};
use crate::svd::Triplets;

/// Integer operations of one exact division in `divide_rounded` (three long-division steps and the rounding).
pub const EXACT_DIVISION_OPS: f64 = 30.0;

/// Operations per entry of quantizing at one width, besides the division:
/// range (2), offset and clamp (3), dequantize (2), error and sum (3).
const QUANTIZE_OPS: f64 = 10.0;

/// Size ratio of the profiled run: the allocation spends this share of the f16 size.
const RATIO: f64 = 1.0 / 16.0;

/// One kernel's timings and counts.
#[derive(Debug, Clone, Serialize)]
pub struct KernelProfile {
    /// Kernel name: `cost table`, `quantize`, `dequantize` or `reconstruct`.
    pub kernel: &'static str,
    /// Size of the kernel's input, such as `1024 triplets × 8 widths`.
    pub work: String,
    /// Median seconds of the CPU reference.
    pub cpu_seconds: f64,
    /// Median seconds of the GPU kernel, when a GPU context was given.
    pub gpu_seconds: Option<f64>,
    /// Global-memory bytes the kernel reads and writes, as written.
    pub bytes_moved: f64,
    /// Bytes of reading each input once and writing each output once.
    pub bytes_floor: f64,
    /// Arithmetic operations as written.
    pub operations: f64,
    /// Arithmetic operations of the task with a hardware division.
    pub operations_floor: f64,
    /// Whether the GPU result equals the CPU's (bit for bit, or within 1e-5 of the row norm for `reconstruct`).
    pub agrees: Option<bool>,
}

/// Profiles every kernel on an `[m, n]` delta's leading `candidates` triplets.
pub async fn profile_kernels(ctx: Option<&GpuContext>, m: usize, n: usize, candidates: usize, repeats: usize) -> Result<Vec<KernelProfile>, GpuError> {
    let triplets = synthetic_triplets(m, n, candidates);
    let table = build_cost_table(&triplets, &WIDTHS);
    let budget_bits = (RATIO * 16.0 * (m * n) as f64) as u64;
    let widths = allocate(&table, budget_bits, None).map(|a| a.width_of).unwrap_or_default();
    let kept: Vec<usize> = (0..widths.len()).filter(|&i| widths[i] > 0).collect();

    let vectors: Vec<&[f32]> = kept.iter().flat_map(|&i| [triplets.u.col_as_slice(i), triplets.v.col_as_slice(i)]).collect();
    let vector_widths: Vec<u8> = kept.iter().flat_map(|&i| [widths[i], widths[i]]).collect();
    let parts: Vec<_> = vectors.iter().zip(&vector_widths).map(|(x, &w)| quantize(x, w)).collect();
    let (u_parts, v_parts): (Vec<_>, Vec<_>) = parts.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).unzip();
    let packed = PackedMatrix::pack(m, n, kept.iter().map(|&i| triplets.sigma[i]).collect(), &u_parts, &v_parts);
    let factors = packed.unpack().expect("packed from its own parts");

    Ok(vec![
        profile_cost_table(ctx, &triplets, repeats).await?,
        profile_quantize(ctx, &vectors, &vector_widths, repeats).await?,
        profile_dequantize(ctx, &packed, repeats).await?,
        profile_reconstruct(ctx, &factors, repeats).await?,
    ])
}

/// Orthogonal-looking random factors (Gaussian columns of unit norm) with `σ_i = (i + 1)^(−1/2)`.
fn synthetic_triplets(m: usize, n: usize, k: usize) -> Triplets {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut column = |len: usize| {
        let values: Vec<f32> = (0..len).map(|_| StandardNormal.sample(&mut rng)).collect();
        let norm = values.iter().map(|x| x * x).sum::<f32>().sqrt();
        values.into_iter().map(move |x| x / norm)
    };
    let u_columns: Vec<f32> = (0..k).flat_map(|_| column(m)).collect();
    let v_columns: Vec<f32> = (0..k).flat_map(|_| column(n)).collect();
    Triplets {
        sigma: (0..k).map(|i| ((i + 1) as f32).powf(-0.5)).collect(),
        u: faer::Mat::from_fn(m, k, |r, c| u_columns[c * m + r]),
        v: faer::Mat::from_fn(n, k, |r, c| v_columns[c * n + r]),
    }
}

/// Median seconds of `repeats` calls of `run`, and the last result.
async fn timed<T, F: std::future::Future<Output = Result<T, GpuError>>>(repeats: usize, mut run: impl FnMut() -> F) -> Result<(f64, T), GpuError> {
    let mut seconds = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let clock = Stopwatch::start();
        last = Some(run().await?);
        seconds.push(clock.seconds());
    }
    seconds.sort_by(f64::total_cmp);
    Ok((seconds[seconds.len() / 2], last.expect("at least one run")))
}

async fn profile_cost_table(ctx: Option<&GpuContext>, triplets: &Triplets, repeats: usize) -> Result<KernelProfile, GpuError> {
    let (m, n, k) = (triplets.u.nrows() as f64, triplets.v.nrows() as f64, triplets.sigma.len() as f64);
    let (all, nonzero) = (WIDTHS.len() as f64, (WIDTHS.len() - 1) as f64);
    let (cpu_seconds, cpu) = timed(repeats, || async { Ok(build_cost_table(triplets, &WIDTHS)) }).await?;
    let gpu = match ctx {
        Some(ctx) => Some(timed(repeats, || cost_table(ctx, triplets, &WIDTHS)).await?),
        None => None,
    };
    let entries = (m + n) * k;
    Ok(KernelProfile {
        kernel: "cost table",
        work: format!("{k} triplets × {all} widths"),
        cpu_seconds,
        gpu_seconds: gpu.as_ref().map(|g| g.0),
        // Each (triplet, width) workgroup reads u_i and v_i twice: range, then codes.
        bytes_moved: 4.0 * (2.0 * nonzero * entries + k + k * all),
        bytes_floor: 4.0 * (entries + k + k * all),
        operations: nonzero * entries * (QUANTIZE_OPS + EXACT_DIVISION_OPS),
        // The range is shared by all widths; the rest is per width.
        operations_floor: entries * (2.0 + nonzero * (QUANTIZE_OPS - 2.0 + 1.0)),
        agrees: gpu.map(|g| g.1.error == cpu.error),
    })
}

async fn profile_quantize(ctx: Option<&GpuContext>, vectors: &[&[f32]], widths: &[u8], repeats: usize) -> Result<KernelProfile, GpuError> {
    let entries: f64 = vectors.iter().map(|x| x.len() as f64).sum();
    let groups: f64 = vectors.iter().map(|x| x.len().div_ceil(GROUP_SIZE) as f64).sum();
    let code_bits: f64 = vectors.iter().zip(widths).map(|(x, &w)| (x.len() * w as usize) as f64).sum();
    let (cpu_seconds, cpu) = timed(repeats, || async {
        Ok(vectors.iter().zip(widths).map(|(x, &w)| (quantize(x, w), squared_error(x, w))).collect::<Vec<_>>())
    }).await?;
    let gpu = match ctx {
        Some(ctx) => Some(timed(repeats, || quantize_batch(ctx, vectors, widths)).await?),
        None => None,
    };
    Ok(KernelProfile {
        kernel: "quantize",
        work: format!("{} vectors, {entries} entries", vectors.len()),
        cpu_seconds,
        gpu_seconds: gpu.as_ref().map(|g| g.0),
        // Reads every entry twice (range, then codes); writes a byte per code and 12 bytes per group.
        bytes_moved: 8.0 * entries + entries + 12.0 * groups + 4.0 * vectors.len() as f64,
        bytes_floor: 4.0 * entries + code_bits / 8.0 + 4.0 * groups + 4.0 * vectors.len() as f64,
        operations: entries * (QUANTIZE_OPS + EXACT_DIVISION_OPS),
        operations_floor: entries * (QUANTIZE_OPS + 1.0),
        agrees: gpu.map(|(_, results)| results.iter().zip(&cpu).all(|(g, (q, e))| &g.quantized == q && g.squared_error == *e)),
    })
}

async fn profile_dequantize(ctx: Option<&GpuContext>, packed: &PackedMatrix, repeats: usize) -> Result<KernelProfile, GpuError> {
    let unpack = || packed.unpack().map_err(|message| GpuError::InvalidInput { kernel: "dequantize", message });
    let (cpu_seconds, cpu) = timed(repeats, || async { unpack() }).await?;
    let gpu = match ctx {
        Some(ctx) => Some(timed(repeats, || dequantize(ctx, packed)).await?),
        None => None,
    };
    let entries = ((packed.rows + packed.cols) * packed.widths.len()) as f64;
    let stored = (packed.codes.len() + 2 * packed.scales.len() + 2 * packed.mins.len() + 4 * packed.sigma.len()) as f64;
    Ok(KernelProfile {
        kernel: "dequantize",
        work: format!("{} triplets, {entries} entries", packed.widths.len()),
        cpu_seconds,
        gpu_seconds: gpu.as_ref().map(|g| g.0),
        // Codes arrive as whole words: an invocation reads the one or two words its code spans.
        bytes_moved: stored + 4.0 * entries,
        bytes_floor: stored + 4.0 * entries,
        operations: entries * 6.0,
        operations_floor: entries * 6.0,
        agrees: gpu.map(|(_, factors)| factors.u == cpu.u && factors.v == cpu.v && factors.sigma == cpu.sigma),
    })
}

/// Rows of `Δ̂` the reconstruct profile computes: enough to fill the
/// device, few enough that a software adapter finishes in seconds.
const RECONSTRUCT_ROWS: usize = 256;

async fn profile_reconstruct(ctx: Option<&GpuContext>, factors: &Factors, repeats: usize) -> Result<KernelProfile, GpuError> {
    let (m, n, k) = (factors.u.nrows().min(RECONSTRUCT_ROWS), factors.v.nrows(), factors.sigma.len());
    let (cpu_seconds, cpu) = timed(repeats, || async { Ok(factors.reconstruct_rows(0, m)) }).await?;
    let gpu = match ctx {
        Some(ctx) => Some(timed(repeats, || reconstruct_rows(ctx, factors, 0, m)).await?),
        None => None,
    };
    let (mf, nf, kf) = (m as f64, n as f64, k as f64);
    Ok(KernelProfile {
        kernel: "reconstruct",
        work: format!("rows 0..{m}: [{m}, {k}] × [{k}, {n}]"),
        cpu_seconds,
        gpu_seconds: gpu.as_ref().map(|g| g.0),
        // 16 × 16 tiles: each output tile reads 16 rows of Û and of V̂ once.
        bytes_moved: 4.0 * (mf * nf * kf / 16.0 * 2.0 + kf + mf * nf),
        bytes_floor: 4.0 * ((mf + nf) * kf + kf + mf * nf),
        operations: 2.0 * mf * nf * kf + mf * kf,
        operations_floor: 2.0 * mf * nf * kf,
        agrees: gpu.map(|(_, rows)| within_row_norms(&rows, &cpu, n)),
    })
}

/// Returns whether every entry of `a` is within 1e-5 of the norm of its row in `b`.
fn within_row_norms(a: &[f32], b: &[f32], n: usize) -> bool {
    a.chunks(n.max(1)).zip(b.chunks(n.max(1))).all(|(x, y)| {
        let norm = y.iter().map(|v| v * v).sum::<f32>().sqrt();
        x.iter().zip(y).all(|(p, q)| (p - q).abs() <= 1e-5 * norm.max(f32::MIN_POSITIVE))
    })
}
