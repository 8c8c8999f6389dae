//! Host side of `dequantize.wgsl`: [`PackedMatrix::unpack`] on the GPU.
//!
//! The kernel reads the packed code stream directly, so the host only slices
//! the stream, the scales and the minimums per run of triplets. The factors
//! equal the CPU's bit for bit: `min + code · scale` has an exact product, so
//! it rounds once on either side.

use bytemuck::{Pod, Zeroable};
use faer::Mat;

use super::buffers::{entry, f16_words, floats_of, padded_size, staging, storage_input, storage_output, uniform, words_of};
use super::kernels::{ErrorCapture, DEQUANTIZE};
use super::limits::Footprint;
use super::readback::read_staging;
use super::{GpuContext, GpuError};
use crate::packed::{Factors, PackedMatrix};

/// Workgroup size of `dequantize.wgsl`.
const WORKGROUP_SIZE: u64 = 64;

/// `Params` of `dequantize.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    entry_count: u32,
    rows: u32,
    cols: u32,
    grid_width: u32,
}

/// `TripletTask` of `dequantize.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct TripletTask {
    width: u32,
    first_bit: u32,
    first_group: u32,
}

/// Dequantizes the stored triplets of `packed` on the GPU; fails when its parts do not match its widths.
pub async fn dequantize(ctx: &GpuContext, packed: &PackedMatrix) -> Result<Factors, GpuError> {
    packed.check_sizes().map_err(|message| GpuError::InvalidInput { kernel: DEQUANTIZE, message })?;
    let (m, n, k) = (packed.rows, packed.cols, packed.widths.len());
    let mut factors = Factors { u: Mat::zeros(m, k), v: Mat::zeros(n, k), sigma: packed.sigma.clone() };

    // Runs of triplets whose dequantized entries fit one binding, one invocation per entry.
    let footprint = Footprint { bytes: 4 * (m + n) as u64, invocations: (m + n) as u64 };
    let ends = ctx.tiling().split_runs(std::iter::repeat_n(footprint, k), WORKGROUP_SIZE, DEQUANTIZE, "triplet")?;
    let mut start = 0;
    let mut first_bit = 0u64;
    for end in ends {
        let entries = dequantize_run(ctx, packed, start..end, first_bit).await?;
        for (t, triplet) in entries.chunks_exact(m + n).enumerate() {
            factors.u.col_as_slice_mut(start + t).copy_from_slice(&triplet[..m]);
            factors.v.col_as_slice_mut(start + t).copy_from_slice(&triplet[m..]);
        }
        first_bit += packed.widths[start..end].iter().map(|&w| w as u64 * (m + n) as u64).sum::<u64>();
        start = end;
    }
    Ok(factors)
}

/// Dequantizes triplets `run`, whose codes start at bit `first_bit` of the stream, in one dispatch.
///
/// Returns `[run.len(), m + n]`: per triplet, û_i then v̂_i.
async fn dequantize_run(ctx: &GpuContext, packed: &PackedMatrix, run: std::ops::Range<usize>, first_bit: u64) -> Result<Vec<f32>, GpuError> {
    let (m, n) = (packed.rows, packed.cols);
    let groups_per_triplet = packed.groups_per_triplet();

    // Host-side slices: the words of the stream that hold the run's codes, and its groups' parameters.
    let run_bits: u64 = packed.widths[run.clone()].iter().map(|&w| w as u64 * (m + n) as u64).sum();
    let first_byte = (first_bit / 32 * 4) as usize;
    let end_byte = ((first_bit + run_bits).div_ceil(32) * 4) as usize;
    let code_words = words_of(&padded_bytes(&packed.codes, first_byte, end_byte));
    let mut tasks = Vec::with_capacity(run.len());
    let mut bit = first_bit % 32;
    for (t, &width) in packed.widths[run.clone()].iter().enumerate() {
        tasks.push(TripletTask { width: width as u32, first_bit: bit as u32, first_group: (t * groups_per_triplet) as u32 });
        bit += width as u64 * (m + n) as u64;
    }
    let groups = run.start * groups_per_triplet..run.end * groups_per_triplet;
    let scale_words = f16_words(&packed.scales[groups.clone()]);
    let min_words = f16_words(&packed.mins[groups]);
    let entries = (run.len() * (m + n)) as u64;
    let grid = ctx.tiling().grid(entries.div_ceil(WORKGROUP_SIZE), DEQUANTIZE)?;
    let params = Params { entry_count: entries as u32, rows: m as u32, cols: n as u32, grid_width: grid.x };
    let kernel = &ctx.kernels.dequantize;
    let errors = ErrorCapture::begin(&ctx.device);

    // Buffers: codes, triplet tasks, scales, minimums, factors, parameters, staging.
    let codes_buffer = storage_input(ctx, "dequantize codes", bytemuck::cast_slice(&code_words));
    let tasks_buffer = storage_input(ctx, "dequantize triplet tasks", bytemuck::cast_slice(&tasks));
    let scales_buffer = storage_input(ctx, "dequantize scales", bytemuck::cast_slice(&scale_words));
    let mins_buffer = storage_input(ctx, "dequantize minimums", bytemuck::cast_slice(&min_words));
    let factors_bytes = padded_size(4 * entries);
    let factors_buffer = storage_output(ctx, "dequantize factors", factors_bytes);
    let params_buffer = uniform(ctx, "dequantize params", &params);
    let staging_buffer = staging(ctx, "dequantize staging", factors_bytes);

    // Bind group.
    let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("dequantize bind group"),
        layout: &kernel.layout,
        entries: &[
            entry(0, &codes_buffer),
            entry(1, &tasks_buffer),
            entry(2, &scales_buffer),
            entry(3, &mins_buffer),
            entry(4, &factors_buffer),
            entry(5, &params_buffer),
        ],
    });

    // Pass: one invocation per entry.
    let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("dequantize encoder") });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("dequantize pass"), timestamp_writes: None });
        pass.set_pipeline(&kernel.pipelines[0]);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(grid.x, grid.y, 1);
    }

    // Copy the factors into the staging buffer.
    encoder.copy_buffer_to_buffer(&factors_buffer, 0, &staging_buffer, 0, factors_bytes);

    // Submit.
    ctx.queue.submit([encoder.finish()]);
    errors.end(DEQUANTIZE, "recording or submitting the dispatch").await?;

    // Map and read.
    let bytes = read_staging(ctx, &staging_buffer, DEQUANTIZE).await?;
    let mut values = floats_of(&bytes);
    values.truncate(entries as usize);
    Ok(values)
}

/// Bytes `start..end` of `bytes`, with zeros where the range runs past its end.
fn padded_bytes(bytes: &[u8], start: usize, end: usize) -> Vec<u8> {
    let mut out = bytes[start.min(bytes.len())..end.min(bytes.len())].to_vec();
    out.resize(end - start, 0);
    out
}
