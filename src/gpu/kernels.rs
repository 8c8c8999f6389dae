//! The compiled kernels of a [`GpuContext`](super::GpuContext): shader
//! sources, bind group layouts and pipelines, created once per device.
//!
//! The quantizer kernels share `shaders/quant_common.wgsl`, which is put in
//! front of each of them here, so the f16 rounding and the division they all
//! rely on exist once.

use super::GpuError;

/// Source of the quantizer kernel (`quantize_groups` and `sum_vector_errors`).
pub(crate) const QUANTIZE_SOURCE: &str = concat!(include_str!("shaders/quant_common.wgsl"), include_str!("shaders/quantize.wgsl"));
/// Source of the cost table kernel.
pub(crate) const COST_TABLE_SOURCE: &str = concat!(include_str!("shaders/quant_common.wgsl"), include_str!("shaders/cost_table.wgsl"));
/// Source of the dequantization kernel.
pub(crate) const DEQUANTIZE_SOURCE: &str = concat!(include_str!("shaders/quant_common.wgsl"), include_str!("shaders/dequantize.wgsl"));
/// Source of the reconstruction kernel.
pub(crate) const RECONSTRUCT_SOURCE: &str = include_str!("shaders/reconstruct.wgsl");

/// The kernels' names, as their `.wgsl` files are named; error messages use them.
pub(crate) const QUANTIZE: &str = "quantize";
/// See [`QUANTIZE`].
pub(crate) const COST_TABLE: &str = "cost_table";
/// See [`QUANTIZE`].
pub(crate) const DEQUANTIZE: &str = "dequantize";
/// See [`QUANTIZE`].
pub(crate) const RECONSTRUCT: &str = "reconstruct";

/// The binding kinds a kernel uses, in binding order.
#[derive(Clone, Copy)]
enum Slot {
    /// `var<storage, read>`.
    Input,
    /// `var<storage, read_write>`.
    Output,
    /// `var<uniform>`.
    Uniform,
}

/// One kernel: its bind group layout and its pipelines (one per entry point).
pub(crate) struct Kernel {
    /// Layout of bind group 0, shared by all entry points of the kernel.
    pub layout: wgpu::BindGroupLayout,
    /// Pipelines in the order of the entry points given to [`Kernel::new`].
    pub pipelines: Vec<wgpu::ComputePipeline>,
}

/// All kernels of a context.
pub(crate) struct Kernels {
    /// `quantize.wgsl`: pipelines `quantize_groups` then `sum_vector_errors`.
    pub quantize: Kernel,
    /// `cost_table.wgsl`.
    pub cost_table: Kernel,
    /// `dequantize.wgsl`.
    pub dequantize: Kernel,
    /// `reconstruct.wgsl`.
    pub reconstruct: Kernel,
}

impl Kernels {
    /// Compiles every kernel on `device`; validation errors are returned, not raised.
    pub async fn new(device: &wgpu::Device) -> Result<Kernels, GpuError> {
        use Slot::{Input, Output, Uniform};
        Ok(Kernels {
            quantize: Kernel::new(
                device,
                QUANTIZE,
                QUANTIZE_SOURCE,
                &[Input, Input, Output, Output, Input, Output, Uniform],
                &["quantize_groups", "sum_vector_errors"],
            )
            .await?,
            cost_table: Kernel::new(device, COST_TABLE, COST_TABLE_SOURCE, &[Input, Input, Input, Output, Uniform], &["main"]).await?,
            dequantize: Kernel::new(device, DEQUANTIZE, DEQUANTIZE_SOURCE, &[Input, Input, Input, Input, Output, Uniform], &["main"]).await?,
            reconstruct: Kernel::new(device, RECONSTRUCT, RECONSTRUCT_SOURCE, &[Input, Input, Input, Output, Uniform], &["main"]).await?,
        })
    }
}

impl Kernel {
    /// Compiles one kernel with bindings `slots` (binding i has kind `slots[i]`) and one pipeline per entry point.
    async fn new(device: &wgpu::Device, name: &'static str, source: &str, slots: &[Slot], entry_points: &[&str]) -> Result<Kernel, GpuError> {
        let errors = ErrorCapture::begin(device);

        // Shader module.
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });

        // Bind group layout, one entry per slot.
        let entries: Vec<wgpu::BindGroupLayoutEntry> = slots.iter().enumerate().map(|(i, &slot)| layout_entry(i as u32, slot)).collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&format!("{name} bind group layout")),
            entries: &entries,
        });

        // Pipeline layout and one pipeline per entry point.
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&format!("{name} pipeline layout")),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipelines = entry_points
            .iter()
            .map(|&entry_point| {
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&format!("{name} pipeline ({entry_point})")),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some(entry_point),
                    compilation_options: wgpu::PipelineCompilationOptions::default(),
                    cache: None,
                })
            })
            .collect();

        errors.end(name, "compiling the kernel").await?;
        Ok(Kernel { layout, pipelines })
    }
}

/// Builds the layout entry of binding `binding` of kind `slot`, visible to compute shaders.
fn layout_entry(binding: u32, slot: Slot) -> wgpu::BindGroupLayoutEntry {
    let ty = match slot {
        Slot::Input => wgpu::BufferBindingType::Storage { read_only: true },
        Slot::Output => wgpu::BufferBindingType::Storage { read_only: false },
        Slot::Uniform => wgpu::BufferBindingType::Uniform,
    };
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
        count: None,
    }
}

/// Catches validation and out-of-memory errors of a stretch of wgpu calls,
/// which wgpu would otherwise pass to its uncaptured-error handler (a panic natively).
pub(crate) struct ErrorCapture {
    out_of_memory: wgpu::ErrorScopeGuard,
    validation: wgpu::ErrorScopeGuard,
}

impl ErrorCapture {
    /// Starts catching errors on `device`, on the calling thread.
    pub fn begin(device: &wgpu::Device) -> ErrorCapture {
        let out_of_memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        ErrorCapture { out_of_memory, validation }
    }

    /// Stops catching and returns the first error caught, naming `kernel` and the `step` it was in.
    pub async fn end(self, kernel: &'static str, step: &str) -> Result<(), GpuError> {
        // Scopes pop in the reverse order of their pushes.
        let validation = self.validation.pop().await;
        let out_of_memory = self.out_of_memory.pop().await;
        match validation.or(out_of_memory) {
            None => Ok(()),
            Some(error) => Err(GpuError::Kernel { kernel, message: format!("{step}: {error}") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses and validates one kernel with naga, as wgpu does before compiling it.
    fn validate(name: &str, source: &str) -> naga::Module {
        let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{name}.wgsl does not parse:\n{}", e.emit_to_string(source)));
        // No optional capabilities: the kernels must run on any WebGPU device, including SwiftShader without shader-f16.
        let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty());
        validator.validate(&module).unwrap_or_else(|e| panic!("{name}.wgsl is invalid:\n{}", e.emit_to_string(source)));
        module
    }

    fn entry_points(module: &naga::Module) -> Vec<&str> {
        module.entry_points.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn quantize_shader_validates() {
        let module = validate(QUANTIZE, QUANTIZE_SOURCE);
        assert_eq!(entry_points(&module), ["quantize_groups", "sum_vector_errors"]);
    }

    #[test]
    fn cost_table_shader_validates() {
        assert_eq!(entry_points(&validate(COST_TABLE, COST_TABLE_SOURCE)), ["main"]);
    }

    #[test]
    fn dequantize_shader_validates() {
        assert_eq!(entry_points(&validate(DEQUANTIZE, DEQUANTIZE_SOURCE)), ["main"]);
    }

    #[test]
    fn reconstruct_shader_validates() {
        assert_eq!(entry_points(&validate(RECONSTRUCT, RECONSTRUCT_SOURCE)), ["main"]);
    }

    #[test]
    fn workgroup_sizes_match_host() {
        for (name, source, size) in [
            (QUANTIZE, QUANTIZE_SOURCE, [64, 1, 1]),
            (COST_TABLE, COST_TABLE_SOURCE, [64, 1, 1]),
            (DEQUANTIZE, DEQUANTIZE_SOURCE, [64, 1, 1]),
            (RECONSTRUCT, RECONSTRUCT_SOURCE, [16, 16, 1]),
        ] {
            for entry_point in &validate(name, source).entry_points {
                assert_eq!(entry_point.workgroup_size, size, "{name}.wgsl, entry point {}", entry_point.name);
            }
        }
    }
}
