//! The GPU backend (wgpu): the quantizer, the cost table, dequantization and
//! the reconstruction Û diag(σ) V̂ᵀ as WGSL compute kernels.
//!
//! Each public function mirrors a CPU reference and returns the same types:
//!
//! | GPU | CPU reference | agreement |
//! |---|---|---|
//! | [`quantize_batch`] | [`crate::quant::quantize`], [`crate::quant::squared_error`] | bit for bit |
//! | [`cost_table`] | [`crate::cost::build_cost_table`] | bit for bit |
//! | [`dequantize`] | [`crate::packed::PackedMatrix::unpack`] | bit for bit |
//! | [`reconstruct_rows`] | [`crate::packed::Factors::reconstruct_rows`] | within rounding (different summation order) |
//!
//! The CPU path stays the reference and the fallback where no adapter exists.
//! A [`GpuContext`] is built once, holds the device and the compiled
//! pipelines, and is passed by reference to every call. The same async code
//! runs natively (under `pollster::block_on`) and in the browser (WebGPU).
//! [`select_context`] builds the context of a run and [`block_on`] drives the
//! pipeline's futures for synchronous callers.
//!
//! The bit-exact kernels compute f16 rounding and division in integer
//! arithmetic (`shaders/quant_common.wgsl`), because WGSL leaves both looser
//! than IEEE 754. Their inputs must lie within ±65504, so that every stored
//! minimum is a finite f16; the functions check this and return
//! [`GpuError::InvalidInput`] otherwise.
//!
//! NOTE: Exactness also assumes that no squared error or difference is an f32
//! subnormal (below 1.2e-38), because a GPU may flush those to zero where the
//! CPU keeps them. The minimum of a group that contains both +0 and −0 is the
//! first zero on the GPU, as with Rust's `f32::min` on x86-64; other CPU targets
//! may store the other sign, with the same value, codes and errors.

mod buffers;
mod cost_table;
mod dequantize;
mod kernels;
pub mod limits;
pub mod profile;
mod readback;
mod quantize;
mod reconstruct;
mod select;

pub use cost_table::cost_table;
pub use dequantize::dequantize;
pub use limits::Tiling;
pub use quantize::{quantize_batch, QuantizedWithError};
pub use reconstruct::{reconstruct_rows, squared_error};
pub use select::{block_on, open_context, select_context, Device, NO_ADAPTER_MESSAGE};

use kernels::Kernels;

/// An error of the GPU backend; the message names the kernel or the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No adapter was found, so the caller should use the CPU path.
    #[error("no GPU adapter found ({0}); install mesa-vulkan-drivers for a software adapter, or use the CPU path")]
    NoAdapter(String),

    /// The adapter was found but could not create a device with the limits the kernels need.
    #[error("GPU adapter '{adapter}' could not create a device: {message}")]
    Device {
        /// Adapter name, as the driver reports it.
        adapter: String,
        /// The driver's or wgpu's message.
        message: String,
    },

    /// A kernel failed on the device: validation, out of memory, or a failed readback.
    #[error("GPU kernel '{kernel}' failed: {message}")]
    Kernel {
        /// Kernel name, the `.wgsl` file without its extension.
        kernel: &'static str,
        /// What failed.
        message: String,
    },

    /// The input cannot be processed by the kernel.
    #[error("GPU kernel '{kernel}': invalid input: {message}")]
    InvalidInput {
        /// Kernel name, the `.wgsl` file without its extension.
        kernel: &'static str,
        /// Description of the invalid value, with the value and the limit.
        message: String,
    },
}

/// The device, its queue and the compiled kernels; built once and passed by reference.
pub struct GpuContext {
    /// The wgpu instance the adapter came from.
    pub instance: wgpu::Instance,
    /// The adapter the device was created on.
    pub adapter: wgpu::Adapter,
    /// The logical device.
    pub device: wgpu::Device,
    /// The device's queue.
    pub queue: wgpu::Queue,
    /// Name, backend and driver of the adapter.
    pub adapter_info: wgpu::AdapterInfo,
    /// Limits the device was created with.
    pub limits: wgpu::Limits,
    tiling: Tiling,
    kernels: Kernels,
}

impl GpuContext {
    /// Finds an adapter (honouring `WGPU_BACKEND`), creates a device and compiles the kernels.
    pub async fn new() -> Result<GpuContext, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let options = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        };
        let adapter = instance.request_adapter(&options).await.map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        GpuContext::from_adapter(instance, adapter).await
    }

    /// Creates a device on `adapter` with the limits the kernels need, then compiles the kernels.
    ///
    /// The device gets WebGPU's default limits, except the storage binding and
    /// buffer sizes, which are raised to what the adapter supports so that
    /// large matrices need fewer tiles.
    pub async fn from_adapter(instance: wgpu::Instance, adapter: wgpu::Adapter) -> Result<GpuContext, GpuError> {
        let supported = adapter.limits();
        let required_limits = wgpu::Limits {
            max_storage_buffer_binding_size: supported.max_storage_buffer_binding_size,
            max_buffer_size: supported.max_buffer_size,
            ..wgpu::Limits::default()
        };
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("adamix device"),
            required_features: wgpu::Features::empty(),
            required_limits,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = adapter.request_device(&descriptor).await.map_err(|e| GpuError::Device {
            adapter: adapter.get_info().name,
            message: e.to_string(),
        })?;
        GpuContext::from_device(instance, adapter, device, queue).await
    }

    /// Wraps a device the caller created and compiles the kernels on it.
    ///
    /// The device needs at least 6 storage buffers per shader stage, 256
    /// invocations per workgroup and 2 KiB of workgroup memory (WebGPU's defaults cover that).
    pub async fn from_device(
        instance: wgpu::Instance,
        adapter: wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
    ) -> Result<GpuContext, GpuError> {
        let limits = device.limits();
        let tiling = Tiling::from_limits(&limits);
        let kernels = Kernels::new(&device).await?;
        Ok(GpuContext { adapter_info: adapter.get_info(), instance, adapter, device, queue, limits, tiling, kernels })
    }

    /// Returns the tiling of large inputs, derived from the device limits unless [`Self::set_tiling`] lowered it.
    pub fn tiling(&self) -> Tiling {
        self.tiling
    }

    /// Replaces the tiling with a smaller one, so that tests can reach the
    /// tiled and 2-D-grid paths with small inputs. Values above the device
    /// limits are lowered to them.
    pub fn set_tiling(&mut self, tiling: Tiling) {
        self.tiling = tiling.clamped_to(&Tiling::from_limits(&self.limits));
    }

    /// Describes the adapter in one line (name, backend, driver), for logs and test output.
    pub fn describe(&self) -> String {
        format!("{} ({:?}, {})", self.adapter_info.name, self.adapter_info.backend, self.adapter_info.driver_info)
    }
}
