//! Host side of `reconstruct.wgsl`: rows of Δ̂ = Û diag(σ) V̂ᵀ, as
//! [`Factors::reconstruct_rows`] computes them, and `‖Δ − Δ̂‖²` from them.
//!
//! The output is cut into tiles of rows and columns so that each tile, and
//! the blocks of Û and V̂ it reads, fit one storage binding and at most 65535
//! workgroups per grid dimension. A requested block of rows may be far larger
//! than one binding. The GPU adds the rank products in order j = 0, 1, …, while the CPU
//! product (faer) blocks and fuses them, so the two agree to within rounding,
//! not bit for bit.

use bytemuck::{Pod, Zeroable};

use super::buffers::{entry, floats_of, padded_size, staging, storage_input, storage_output, uniform};
use super::kernels::{ErrorCapture, RECONSTRUCT};
use super::readback::read_staging;
use super::{GpuContext, GpuError};
use crate::packed::Factors;

/// Rows and columns of the output block one workgroup computes (`TILE` in `reconstruct.wgsl`).
const TILE: usize = 16;

/// `Params` of `reconstruct.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    rank: u32,
    padding: u32,
}

/// Computes rows `start..start + count` of `Δ̂ = Û diag(σ) V̂ᵀ` on the GPU, row-major `[count, n]`.
pub async fn reconstruct_rows(ctx: &GpuContext, factors: &Factors, start: usize, count: usize) -> Result<Vec<f32>, GpuError> {
    let (m, n, k) = (factors.u.nrows(), factors.v.nrows(), factors.sigma.len());
    check_inputs(factors, start, count)?;
    let mut out = vec![0.0f32; count * n];
    if k == 0 || count == 0 || n == 0 {
        return Ok(out);
    }
    debug_assert!(start + count <= m);

    // Tiles: as many columns as fit (whole rows when possible), then as many rows as fit.
    let (rows_per_tile, cols_per_tile) = tile_shape(ctx, count, n, k)?;
    for col_start in (0..n).step_by(cols_per_tile) {
        let cols = cols_per_tile.min(n - col_start);
        let v_block = rows_of(&factors.v, col_start, cols);
        for row_start in (start..start + count).step_by(rows_per_tile) {
            let rows = rows_per_tile.min(start + count - row_start);
            let u_block = rows_of(&factors.u, row_start, rows);
            let tile = reconstruct_tile(ctx, &u_block, &v_block, &factors.sigma, rows, cols).await?;
            for (r, tile_row) in tile.chunks_exact(cols).enumerate() {
                let first = (row_start - start + r) * n + col_start;
                out[first..first + cols].copy_from_slice(tile_row);
            }
        }
    }
    Ok(out)
}

/// Computes `‖Δ − Δ̂‖²` against a row-major delta `[m, n]`, reconstructing blocks of rows on the GPU and summing in f64.
pub async fn squared_error(ctx: &GpuContext, factors: &Factors, delta: &[f32]) -> Result<f64, GpuError> {
    let (m, n) = (factors.u.nrows(), factors.v.nrows());
    if delta.len() != m * n {
        return Err(GpuError::InvalidInput { kernel: RECONSTRUCT, message: format!("the delta has {} entries, expected {m} × {n}", delta.len()) });
    }
    let block_rows = (ctx.tiling().elements_per_binding(4) as usize / n.max(1)).max(1);
    let mut total = 0.0f64;
    for start in (0..m).step_by(block_rows) {
        let count = block_rows.min(m - start);
        let reconstruction = reconstruct_rows(ctx, factors, start, count).await?;
        let original = &delta[start * n..(start + count) * n];
        total += original.iter().zip(&reconstruction).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
    }
    Ok(total)
}

/// Rejects row ranges outside the factors and factors whose shapes disagree.
fn check_inputs(factors: &Factors, start: usize, count: usize) -> Result<(), GpuError> {
    let invalid = |message: String| GpuError::InvalidInput { kernel: RECONSTRUCT, message };
    let (m, k) = (factors.u.nrows(), factors.sigma.len());
    if factors.u.ncols() != k || factors.v.ncols() != k {
        return Err(invalid(format!("{k} singular values but Û has {} columns and V̂ has {}", factors.u.ncols(), factors.v.ncols())));
    }
    if start.checked_add(count).is_none_or(|end| end > m) {
        return Err(invalid(format!("rows {start}..{} requested from a matrix of {m} rows", start.saturating_add(count))));
    }
    Ok(())
}

/// Chooses the rows and columns of one output tile for `count` rows of an `[_, n]` reconstruction of rank `k`.
fn tile_shape(ctx: &GpuContext, count: usize, n: usize, k: usize) -> Result<(usize, usize), GpuError> {
    let tiling = ctx.tiling();
    let elements = tiling.elements_per_binding(4) as usize;
    let max_span = tiling.max_workgroups_per_dimension as usize * TILE;
    let fit = |wanted: usize, limit: usize| if wanted <= limit { wanted } else { (limit / TILE * TILE).max(limit.min(TILE)) };

    // Columns: bounded by the V̂ block [cols, k], one output row, and the grid width.
    let cols = fit(n, (elements / k).min(elements).min(max_span));
    // Rows: bounded by the output tile [rows, cols], the Û block [rows, k], and the grid height.
    let rows = fit(count, (elements / cols.max(1)).min(elements / k).min(max_span));
    if rows == 0 || cols == 0 {
        return Err(GpuError::InvalidInput {
            kernel: RECONSTRUCT,
            message: format!("rank {k} needs more than one storage binding ({} bytes) per factor row", tiling.max_binding_bytes),
        });
    }
    Ok((rows, cols))
}

/// Copies rows `first..first + count` of a column-major factor into a row-major `[count, k]` block.
fn rows_of(factor: &faer::Mat<f32>, first: usize, count: usize) -> Vec<f32> {
    let k = factor.ncols();
    let mut block = vec![0.0f32; count * k];
    for j in 0..k {
        for (r, &x) in factor.col_as_slice(j)[first..first + count].iter().enumerate() {
            block[r * k + j] = x;
        }
    }
    block
}

/// Computes one output tile `[rows, cols]` from a Û block `[rows, k]` and a V̂ block `[cols, k]`.
async fn reconstruct_tile(ctx: &GpuContext, u_block: &[f32], v_block: &[f32], sigma: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>, GpuError> {
    let params = Params { rows: rows as u32, cols: cols as u32, rank: sigma.len() as u32, padding: 0 };
    let kernel = &ctx.kernels.reconstruct;
    let errors = ErrorCapture::begin(&ctx.device);

    // Buffers: factor blocks, σ, the output tile, parameters, staging.
    let u_buffer = storage_input(ctx, "reconstruct u block", bytemuck::cast_slice(u_block));
    let v_buffer = storage_input(ctx, "reconstruct v block", bytemuck::cast_slice(v_block));
    let sigma_buffer = storage_input(ctx, "reconstruct sigma", bytemuck::cast_slice(sigma));
    let output_bytes = padded_size(4 * (rows * cols) as u64);
    let output_buffer = storage_output(ctx, "reconstruct output tile", output_bytes);
    let params_buffer = uniform(ctx, "reconstruct params", &params);
    let staging_buffer = staging(ctx, "reconstruct staging", output_bytes);

    // Bind group.
    let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("reconstruct bind group"),
        layout: &kernel.layout,
        entries: &[entry(0, &u_buffer), entry(1, &v_buffer), entry(2, &sigma_buffer), entry(3, &output_buffer), entry(4, &params_buffer)],
    });

    // Pass: one workgroup per 16 × 16 block of the tile.
    let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("reconstruct encoder") });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("reconstruct pass"), timestamp_writes: None });
        pass.set_pipeline(&kernel.pipelines[0]);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(cols.div_ceil(TILE) as u32, rows.div_ceil(TILE) as u32, 1);
    }

    // Copy the tile into the staging buffer.
    encoder.copy_buffer_to_buffer(&output_buffer, 0, &staging_buffer, 0, output_bytes);

    // Submit.
    ctx.queue.submit([encoder.finish()]);
    errors.end(RECONSTRUCT, "recording or submitting the dispatch").await?;

    // Map and read.
    let bytes = read_staging(ctx, &staging_buffer, RECONSTRUCT).await?;
    let mut tile = floats_of(&bytes);
    tile.truncate(rows * cols);
    Ok(tile)
}
