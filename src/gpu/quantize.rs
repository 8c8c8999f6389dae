//! Host side of `quantize.wgsl`: a batch of vectors, each at its own width,
//! quantized as [`crate::quant::quantize`] does, with the squared error of
//! [`crate::quant::squared_error`].
//!
//! Codes, f16 scales and minimums, and errors are identical to the CPU's bit
//! for bit (see the module documentation of [`crate::gpu`] for the conditions).
//! Codes come back one byte each, ready for [`crate::quant::BitWriter`].

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::buffers::{entry, floats_of, padded_size, staging, storage_input, storage_output, uniform, words_of};
use super::kernels::{ErrorCapture, QUANTIZE};
use super::limits::Footprint;
use super::readback::read_staging;
use super::{GpuContext, GpuError};
use crate::quant::quantizer::group_count;
use crate::quant::{QuantizedVector, GROUP_SIZE};

/// Workgroup size of both entry points of `quantize.wgsl`.
const WORKGROUP_SIZE: u64 = 64;

/// Bytes of codes per group on the device: one byte per entry, a full group each.
const CODE_BYTES_PER_GROUP: u64 = GROUP_SIZE as u64;

/// A vector quantized on the GPU, with its squared error.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedWithError {
    /// Codes, scales and minimums, as [`crate::quant::quantize`] returns them.
    pub quantized: QuantizedVector,
    /// `‖x − Q_b(x)‖²` with the stored parameters, as [`crate::quant::squared_error`] returns it.
    pub squared_error: f32,
}

/// `Params` of `quantize.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    group_count: u32,
    vector_count: u32,
    group_grid_width: u32,
    vector_grid_width: u32,
    zero_bits: u32,
    padding: [u32; 3],
}

/// `GroupTask` of `quantize.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GroupTask {
    start: u32,
    len: u32,
    width: u32,
}

/// `VectorTask` of `quantize.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct VectorTask {
    first_group: u32,
    group_count: u32,
}

/// Words of one `GroupResult` of `quantize.wgsl`: minimum bits, scale bits, squared error.
const GROUP_RESULT_WORDS: usize = 3;

/// Quantizes `vectors[i]` at `widths[i]` bits (1 to 8) on the GPU.
///
/// Fails when the lengths differ, a width is outside 1..=8, an entry is NaN
/// or beyond ±65504 (see [`in_f16_range`]), or one vector alone does not fit
/// one storage binding. Large
/// batches are split into chunks that fit, one dispatch pair each.
pub async fn quantize_batch(ctx: &GpuContext, vectors: &[&[f32]], widths: &[u8]) -> Result<Vec<QuantizedWithError>, GpuError> {
    check_inputs(vectors, widths)?;
    // Each vector takes its entries or its codes in the largest buffer, and an
    // invocation per group (at least one, for `sum_vector_errors`).
    let footprint = |x: &&[f32]| Footprint {
        bytes: (4 * x.len() as u64).max(CODE_BYTES_PER_GROUP * group_count(x.len()) as u64),
        invocations: group_count(x.len()).max(1) as u64,
    };
    let ends = ctx.tiling().split_runs(vectors.iter().map(footprint), WORKGROUP_SIZE, QUANTIZE, "vector")?;

    let mut results = Vec::with_capacity(vectors.len());
    let mut start = 0;
    for end in ends {
        results.extend(quantize_chunk(ctx, &vectors[start..end], &widths[start..end]).await?);
        start = end;
    }
    Ok(results)
}

/// Returns whether `x` is a finite number within the finite f16 range.
///
/// A group minimum beyond that range is stored as an infinite f16, and WGSL
/// lets implementations assume that no infinity occurs, so such inputs stay
/// on the CPU path. Singular vectors, of unit norm, are far inside it.
pub(crate) fn in_f16_range(x: f32) -> bool {
    x.abs() <= f16::MAX.to_f32()
}

/// Rejects inputs the kernel cannot take.
fn check_inputs(vectors: &[&[f32]], widths: &[u8]) -> Result<(), GpuError> {
    let invalid = |message: String| GpuError::InvalidInput { kernel: QUANTIZE, message };
    if vectors.len() != widths.len() {
        return Err(invalid(format!("{} vectors but {} widths; pass one width per vector", vectors.len(), widths.len())));
    }
    if let Some((i, w)) = widths.iter().enumerate().find(|(_, w)| !(1..=8).contains(*w)) {
        return Err(invalid(format!("vector {i} has width {w}, outside 1..=8")));
    }
    for (i, x) in vectors.iter().enumerate() {
        if let Some(j) = x.iter().position(|v| !in_f16_range(*v)) {
            return Err(invalid(format!("entry {j} of vector {i} is {}, outside the finite f16 range ±65504 that stored minimums need", x[j])));
        }
    }
    Ok(())
}

/// Quantizes a batch that fits one storage binding per buffer.
async fn quantize_chunk(ctx: &GpuContext, vectors: &[&[f32]], widths: &[u8]) -> Result<Vec<QuantizedWithError>, GpuError> {
    // Host-side tables: the entries one vector after another, a task per group, a task per vector.
    let mut values: Vec<f32> = Vec::with_capacity(vectors.iter().map(|x| x.len()).sum());
    let mut group_tasks = Vec::new();
    let mut vector_tasks = Vec::with_capacity(vectors.len());
    for (x, &width) in vectors.iter().zip(widths) {
        vector_tasks.push(VectorTask { first_group: group_tasks.len() as u32, group_count: group_count(x.len()) as u32 });
        for (g, group) in x.chunks(GROUP_SIZE).enumerate() {
            group_tasks.push(GroupTask { start: (values.len() + g * GROUP_SIZE) as u32, len: group.len() as u32, width: width as u32 });
        }
        values.extend_from_slice(x);
    }
    let groups = group_tasks.len() as u64;
    let group_grid = ctx.tiling().grid(groups.div_ceil(WORKGROUP_SIZE), QUANTIZE)?;
    let vector_grid = ctx.tiling().grid((vectors.len() as u64).div_ceil(WORKGROUP_SIZE), QUANTIZE)?;
    let params = Params {
        group_count: groups as u32,
        vector_count: vectors.len() as u32,
        group_grid_width: group_grid.x,
        vector_grid_width: vector_grid.x,
        zero_bits: 0,
        padding: [0; 3],
    };
    let kernel = &ctx.kernels.quantize;
    let errors = ErrorCapture::begin(&ctx.device);

    // Buffers: inputs, outputs, parameters, and one staging buffer for all outputs.
    let values_buffer = storage_input(ctx, "quantize values", bytemuck::cast_slice(&values));
    let groups_buffer = storage_input(ctx, "quantize group tasks", bytemuck::cast_slice(&group_tasks));
    let vectors_buffer = storage_input(ctx, "quantize vector tasks", bytemuck::cast_slice(&vector_tasks));
    let codes_bytes = padded_size(groups * CODE_BYTES_PER_GROUP);
    let results_bytes = padded_size(groups * 4 * GROUP_RESULT_WORDS as u64);
    let errors_bytes = padded_size(4 * vectors.len() as u64);
    let codes_buffer = storage_output(ctx, "quantize codes", codes_bytes);
    let results_buffer = storage_output(ctx, "quantize group results", results_bytes);
    let errors_buffer = storage_output(ctx, "quantize vector errors", errors_bytes);
    let params_buffer = uniform(ctx, "quantize params", &params);
    let staging_buffer = staging(ctx, "quantize staging", codes_bytes + results_bytes + errors_bytes);

    // Bind group.
    let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("quantize bind group"),
        layout: &kernel.layout,
        entries: &[
            entry(0, &values_buffer),
            entry(1, &groups_buffer),
            entry(2, &codes_buffer),
            entry(3, &results_buffer),
            entry(4, &vectors_buffer),
            entry(5, &errors_buffer),
            entry(6, &params_buffer),
        ],
    });

    // Pass: quantize every group, then add each vector's group errors in order.
    let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("quantize encoder") });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("quantize pass"), timestamp_writes: None });
        pass.set_bind_group(0, &bind_group, &[]);
        pass.set_pipeline(&kernel.pipelines[0]);
        pass.dispatch_workgroups(group_grid.x, group_grid.y, 1);
        pass.set_pipeline(&kernel.pipelines[1]);
        pass.dispatch_workgroups(vector_grid.x, vector_grid.y, 1);
    }

    // Copy the outputs into the staging buffer, one after another.
    encoder.copy_buffer_to_buffer(&codes_buffer, 0, &staging_buffer, 0, codes_bytes);
    encoder.copy_buffer_to_buffer(&results_buffer, 0, &staging_buffer, codes_bytes, results_bytes);
    encoder.copy_buffer_to_buffer(&errors_buffer, 0, &staging_buffer, codes_bytes + results_bytes, errors_bytes);

    // Submit.
    ctx.queue.submit([encoder.finish()]);
    errors.end(QUANTIZE, "recording or submitting the dispatch").await?;

    // Map and read.
    let bytes = read_staging(ctx, &staging_buffer, QUANTIZE).await?;
    let (code_bytes, rest) = bytes.split_at(codes_bytes as usize);
    let (result_bytes, error_bytes) = rest.split_at(results_bytes as usize);
    Ok(unpack_results(vectors, widths, &vector_tasks, code_bytes, &words_of(result_bytes), &floats_of(error_bytes)))
}

/// Cuts the kernel's outputs into one [`QuantizedWithError`] per vector.
fn unpack_results(
    vectors: &[&[f32]],
    widths: &[u8],
    vector_tasks: &[VectorTask],
    code_bytes: &[u8],
    group_results: &[u32],
    vector_errors: &[f32],
) -> Vec<QuantizedWithError> {
    let mut out = Vec::with_capacity(vectors.len());
    for (i, (x, task)) in vectors.iter().zip(vector_tasks).enumerate() {
        let mut quantized = QuantizedVector { width: widths[i], codes: Vec::with_capacity(x.len()), scales: Vec::new(), mins: Vec::new() };
        for (k, group) in x.chunks(GROUP_SIZE).enumerate() {
            let g = task.first_group as usize + k;
            let first_code = g * GROUP_SIZE;
            quantized.codes.extend_from_slice(&code_bytes[first_code..first_code + group.len()]);
            let result = &group_results[g * GROUP_RESULT_WORDS..(g + 1) * GROUP_RESULT_WORDS];
            quantized.mins.push(f16::from_bits(result[0] as u16));
            quantized.scales.push(f16::from_bits(result[1] as u16));
        }
        out.push(QuantizedWithError { quantized, squared_error: vector_errors[i] });
    }
    out
}
