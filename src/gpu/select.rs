//! Device selection for the synchronous pipeline: the `--device` choice, the
//! one [`GpuContext`] of a run, and waiting for a kernel on the calling thread.
//!
//! The pipeline in [`crate::compress`] is synchronous, and the kernels are
//! `async` because WebGPU is. Natively a kernel's future is driven to
//! completion with `pollster`. The browser cannot block on WebGPU, so there
//! the pipeline stays on the CPU.

use std::future::Future;

use super::{GpuContext, GpuError};
use crate::error::{Error, Result};

/// Device choice for the GPU kernels of a compression run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The GPU when wgpu finds an adapter, else the CPU.
    #[default]
    Auto,
    /// The GPU; the run fails when no adapter is found.
    Gpu,
    /// The CPU only.
    Cpu,
}

impl Device {
    /// Every choice, in the order the command line lists them.
    pub const ALL: [Device; 3] = [Device::Auto, Device::Gpu, Device::Cpu];

    /// Returns the name the command line uses: `auto`, `gpu` or `cpu`.
    pub fn name(self) -> &'static str {
        match self {
            Device::Auto => "auto",
            Device::Gpu => "gpu",
            Device::Cpu => "cpu",
        }
    }

    /// Parses a name returned by [`Device::name`].
    pub fn parse(name: &str) -> Option<Device> {
        Device::ALL.into_iter().find(|device| device.name() == name)
    }
}

/// Message of the error that `Device::Gpu` raises when wgpu finds no adapter.
pub const NO_ADAPTER_MESSAGE: &str = "no GPU adapter found; install a Vulkan driver (mesa-vulkan-drivers) or use --device cpu";

/// Builds the context that `device` selects, or returns `None` for the CPU.
///
/// A run calls this once and passes the context down by reference. With
/// `Device::Auto`, a missing adapter, a software adapter or a failed device
/// creation is logged and the run uses the CPU. With `Device::Gpu`, either one is an
/// [`Error::InvalidOptions`] whose message names the fix.
#[cfg(not(target_arch = "wasm32"))]
pub fn open_context(device: Device) -> Result<Option<GpuContext>> {
    if device == Device::Cpu {
        return Ok(None);
    }
    match pollster::block_on(GpuContext::new()) {
        // A software adapter such as lavapipe emulates the GPU on the CPU and
        // was measured slower than the CPU path (7.7 s against 5.7 s on the demo
        // pair), so only an explicit `--device gpu` uses it.
        Ok(ctx) if device == Device::Auto && ctx.adapter_info.device_type == wgpu::DeviceType::Cpu => {
            log::info!("{} is a software adapter; running on the CPU", ctx.describe());
            Ok(None)
        }
        Ok(ctx) => {
            log::info!("GPU kernels run on {}", ctx.describe());
            Ok(Some(ctx))
        }
        Err(error) if device == Device::Auto => {
            match &error {
                GpuError::NoAdapter(_) => log::info!("{error}; running on the CPU"),
                _ => log::warn!("{error}; running on the CPU"),
            }
            Ok(None)
        }
        Err(GpuError::NoAdapter(reason)) => {
            log::info!("wgpu found no adapter: {reason}");
            Err(Error::InvalidOptions(NO_ADAPTER_MESSAGE.into()))
        }
        Err(error) => Err(Error::InvalidOptions(format!("{error}; use --device cpu to run on the CPU"))),
    }
}

/// Builds the context that `device` selects: always `None` in the browser, where the pipeline runs on the CPU.
#[cfg(target_arch = "wasm32")]
pub fn open_context(device: Device) -> Result<Option<GpuContext>> {
    // TODO: The browser would select the GPU here. It stays on the CPU because
    // the wasm core is synchronous (a worker reads files with FileReaderSync)
    // and WebGPU is asynchronous, so nothing here can wait for a kernel. The
    // GPU path needs an async pipeline in the worker first.
    match device {
        Device::Auto | Device::Cpu => Ok(None),
        Device::Gpu => Err(Error::InvalidOptions("the browser build compresses on the CPU only; use device auto or cpu".into())),
    }
}

/// Waits on the calling thread for a kernel's future and returns its result.
///
/// `kernel` names the kernel in the error returned where waiting is impossible.
#[cfg(not(target_arch = "wasm32"))]
pub fn wait<T>(_kernel: &'static str, future: impl Future<Output = std::result::Result<T, GpuError>>) -> std::result::Result<T, GpuError> {
    pollster::block_on(future)
}

/// Returns an error naming `kernel`, because a thread in the browser cannot
/// block on WebGPU, whose callbacks run from the JavaScript event loop.
#[cfg(target_arch = "wasm32")]
pub fn wait<T>(kernel: &'static str, _future: impl Future<Output = std::result::Result<T, GpuError>>) -> std::result::Result<T, GpuError> {
    Err(GpuError::Kernel { kernel, message: "a synchronous caller cannot wait for WebGPU in the browser".into() })
}

impl GpuContext {
    /// Names the adapter and its backend, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)`, for reports.
    pub fn adapter_label(&self) -> String {
        format!("{} ({:?})", self.adapter_info.name, self.adapter_info.backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_round_trip() {
        for device in Device::ALL {
            assert_eq!(Device::parse(device.name()), Some(device));
        }
        assert_eq!(Device::parse("GPU"), None);
        assert_eq!(Device::default(), Device::Auto);
    }

    #[test]
    fn cpu_device_opens_no_context() {
        assert!(open_context(Device::Cpu).expect("the CPU needs no adapter").is_none());
    }
}
