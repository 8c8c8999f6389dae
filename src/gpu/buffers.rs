//! Small constructors for the buffers every kernel call creates.
//!
//! WebGPU rejects copies whose size is not a multiple of 4 bytes, and
//! bindings smaller than one element of the shader's array. So every buffer
//! here is a multiple of 4 bytes and at least [`MIN_BUFFER_BYTES`], which is
//! more than the largest element of any kernel (12 bytes).

use wgpu::util::DeviceExt;

use super::GpuContext;

/// Smallest buffer created, in bytes.
pub(crate) const MIN_BUFFER_BYTES: u64 = 16;

/// Rounds a byte count up to a multiple of 4 of at least [`MIN_BUFFER_BYTES`].
pub(crate) fn padded_size(bytes: u64) -> u64 {
    bytes.max(MIN_BUFFER_BYTES).next_multiple_of(4)
}

/// Creates a read-only storage buffer filled with `contents`, padded with zeros to a multiple of 4 bytes.
pub(crate) fn storage_input(ctx: &GpuContext, label: &str, contents: &[u8]) -> wgpu::Buffer {
    let size = padded_size(contents.len() as u64) as usize;
    let padded;
    let contents = if size == contents.len() {
        contents
    } else {
        padded = [contents, &vec![0u8; size - contents.len()]].concat();
        &padded
    };
    ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents,
        usage: wgpu::BufferUsages::STORAGE,
    })
}

/// Creates a storage buffer of `bytes` bytes that a kernel writes and the host copies out.
pub(crate) fn storage_output(ctx: &GpuContext, label: &str, bytes: u64) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: padded_size(bytes),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// Creates a uniform buffer that contains one parameter struct.
pub(crate) fn uniform<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, params: &T) -> wgpu::Buffer {
    ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::bytes_of(params),
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

/// Creates a host-mappable buffer of `bytes` bytes that outputs are copied into for reading.
pub(crate) fn staging(ctx: &GpuContext, label: &str, bytes: u64) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: padded_size(bytes),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Returns a bind group entry that covers the whole of `buffer`.
pub(crate) fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry { binding, resource: buffer.as_entire_binding() }
}

/// Packs f16 values two to a u32 word, the lower half first, as the kernels read them.
pub(crate) fn f16_words(values: &[half::f16]) -> Vec<u32> {
    values.chunks(2).map(|pair| {
        let low = pair[0].to_bits() as u32;
        let high = pair.get(1).map_or(0, |h| h.to_bits() as u32);
        low | (high << 16)
    }).collect()
}

/// Reads little-endian u32 words from bytes copied out of a buffer.
pub(crate) fn words_of(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Reads little-endian f32 values from bytes copied out of a buffer.
pub(crate) fn floats_of(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}
