//! Host side of `cost_table.wgsl`: [`crate::cost::build_cost_table`] on the GPU.
//!
//! Every entry `c[i, b]` equals the CPU's bit for bit, so the allocation built
//! on it is the same. The whole table is one dispatch when the singular vectors
//! fit one storage binding; larger matrices are cut into runs of triplets,
//! one dispatch each.

use bytemuck::{Pod, Zeroable};

use super::buffers::{entry, floats_of, padded_size, staging, storage_input, storage_output, uniform};
use super::kernels::{ErrorCapture, COST_TABLE};
use super::limits::Footprint;
use super::quantize::in_f16_range;
use super::readback::read_staging;
use super::{GpuContext, GpuError};
use crate::allocate::CostTable;
use crate::budget::triplet_cost_bits;
use crate::svd::Triplets;

/// Workgroup size of `cost_table.wgsl`.
const WORKGROUP_SIZE: u64 = 64;

/// Candidate widths the kernel's parameter block holds.
const MAX_WIDTHS: usize = 16;

/// `Params` of `cost_table.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rank: u32,
    rows: u32,
    cols: u32,
    width_count: u32,
    grid_width: u32,
    zero_bits: u32,
    padding: [u32; 2],
    widths: [u32; MAX_WIDTHS],
}

/// Builds the cost table of `triplets` for their `[m, n]` matrix over `widths`, on the GPU.
///
/// Fails when there are no widths or more than 16, a width is above 8, the
/// triplets' shapes disagree, σ is not finite, or a vector entry is NaN or beyond ±65504.
pub async fn cost_table(ctx: &GpuContext, triplets: &Triplets, widths: &[u8]) -> Result<CostTable, GpuError> {
    check_inputs(triplets, widths)?;
    let (m, n, k) = (triplets.u.nrows(), triplets.v.nrows(), triplets.sigma.len());
    // Each triplet takes its longer vector in the largest buffer, and a workgroup per width.
    let footprint = Footprint { bytes: 4 * m.max(n) as u64, invocations: WORKGROUP_SIZE * widths.len() as u64 };
    let ends = ctx.tiling().split_runs(std::iter::repeat_n(footprint, k), WORKGROUP_SIZE, COST_TABLE, "triplet")?;

    let mut error = Vec::with_capacity(k * widths.len());
    let mut start = 0;
    for end in ends {
        let entries = cost_table_run(ctx, triplets, start..end, widths).await?;
        error.extend(entries.into_iter().map(f64::from));
        start = end;
    }
    Ok(CostTable {
        widths: widths.to_vec(),
        cost_bits: widths.iter().map(|&w| triplet_cost_bits(m, n, w)).collect(),
        error,
    })
}

/// Rejects inputs the kernel cannot take.
fn check_inputs(triplets: &Triplets, widths: &[u8]) -> Result<(), GpuError> {
    let invalid = |message: String| GpuError::InvalidInput { kernel: COST_TABLE, message };
    if widths.is_empty() || widths.len() > MAX_WIDTHS {
        return Err(invalid(format!("{} candidate widths; expected 1 to {MAX_WIDTHS}", widths.len())));
    }
    if let Some(w) = widths.iter().find(|&&w| w > 8) {
        return Err(invalid(format!("candidate width {w} is above 8")));
    }
    let k = triplets.sigma.len();
    if triplets.u.ncols() != k || triplets.v.ncols() != k {
        return Err(invalid(format!("{k} singular values but U has {} columns and V has {}", triplets.u.ncols(), triplets.v.ncols())));
    }
    if let Some(i) = triplets.sigma.iter().position(|s| !(s * s).is_finite()) {
        return Err(invalid(format!("singular value {i} is {}, whose square is not a finite f32", triplets.sigma[i])));
    }
    for i in 0..k {
        for (name, column) in [("u", triplets.u.col_as_slice(i)), ("v", triplets.v.col_as_slice(i))] {
            if let Some(j) = column.iter().position(|x| !in_f16_range(*x)) {
                return Err(invalid(format!("entry {j} of {name}_{i} is {}, outside the finite f16 range ±65504 that stored minimums need", column[j])));
            }
        }
    }
    Ok(())
}

/// Computes the table rows of triplets `run`, row-major `[run.len(), widths.len()]`, in one dispatch.
async fn cost_table_run(ctx: &GpuContext, triplets: &Triplets, run: std::ops::Range<usize>, widths: &[u8]) -> Result<Vec<f32>, GpuError> {
    let (m, n, rank) = (triplets.u.nrows(), triplets.v.nrows(), run.len());
    let u: Vec<f32> = run.clone().flat_map(|i| triplets.u.col_as_slice(i).iter().copied()).collect();
    let v: Vec<f32> = run.clone().flat_map(|i| triplets.v.col_as_slice(i).iter().copied()).collect();
    let sigma = &triplets.sigma[run];
    let entries = (rank * widths.len()) as u64;
    let grid = ctx.tiling().grid(entries, COST_TABLE)?;
    let mut params = Params {
        rank: rank as u32,
        rows: m as u32,
        cols: n as u32,
        width_count: widths.len() as u32,
        grid_width: grid.x,
        zero_bits: 0,
        padding: [0; 2],
        widths: [0; MAX_WIDTHS],
    };
    for (slot, &w) in params.widths.iter_mut().zip(widths) {
        *slot = w as u32;
    }
    let kernel = &ctx.kernels.cost_table;
    let errors = ErrorCapture::begin(&ctx.device);

    // Buffers: singular vectors and values, the table, parameters, staging.
    let u_buffer = storage_input(ctx, "cost_table u", bytemuck::cast_slice(&u));
    let v_buffer = storage_input(ctx, "cost_table v", bytemuck::cast_slice(&v));
    let sigma_buffer = storage_input(ctx, "cost_table sigma", bytemuck::cast_slice(sigma));
    let cost_bytes = padded_size(4 * entries);
    let cost_buffer = storage_output(ctx, "cost_table cost", cost_bytes);
    let params_buffer = uniform(ctx, "cost_table params", &params);
    let staging_buffer = staging(ctx, "cost_table staging", cost_bytes);

    // Bind group.
    let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("cost_table bind group"),
        layout: &kernel.layout,
        entries: &[entry(0, &u_buffer), entry(1, &v_buffer), entry(2, &sigma_buffer), entry(3, &cost_buffer), entry(4, &params_buffer)],
    });

    // Pass: one workgroup per table entry.
    let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("cost_table encoder") });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("cost_table pass"), timestamp_writes: None });
        pass.set_pipeline(&kernel.pipelines[0]);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(grid.x, grid.y, 1);
    }

    // Copy the table into the staging buffer.
    encoder.copy_buffer_to_buffer(&cost_buffer, 0, &staging_buffer, 0, cost_bytes);

    // Submit.
    ctx.queue.submit([encoder.finish()]);
    errors.end(COST_TABLE, "recording or submitting the dispatch").await?;

    // Map and read.
    let bytes = read_staging(ctx, &staging_buffer, COST_TABLE).await?;
    let mut table = floats_of(&bytes);
    table.truncate(entries as usize);
    Ok(table)
}
