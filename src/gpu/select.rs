//! Device selection: the `--device` choice, the one [`GpuContext`] of a run,
//! and driving the pipeline's futures.
//!
//! The per-tensor pipeline in [`crate::compress`] is `async` because the GPU
//! kernels are (WebGPU is). Natively [`block_on`] drives it with `pollster`.
//! In the browser the worker awaits it through `wasm-bindgen-futures`; there
//! [`block_on`] serves only futures that await no kernel.

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

/// Hint for error messages: the way a user switches to the CPU.
#[cfg(not(target_arch = "wasm32"))]
const CPU_HINT: &str = "use --device cpu";
#[cfg(target_arch = "wasm32")]
const CPU_HINT: &str = "choose Device: CPU on the page";

/// Message of the error that `Device::Gpu` raises when wgpu finds no adapter.
#[cfg(not(target_arch = "wasm32"))]
pub const NO_ADAPTER_MESSAGE: &str = "no GPU adapter found; install a Vulkan driver (mesa-vulkan-drivers) or use --device cpu";
/// Message of the error that `Device::Gpu` raises when the browser offers no WebGPU adapter.
#[cfg(target_arch = "wasm32")]
pub const NO_ADAPTER_MESSAGE: &str = "this browser offers no WebGPU adapter (WebGPU is off, or the GPU is blocklisted); choose Device: CPU on the page";

/// Builds the context that `device` selects, or returns `None` for the CPU.
///
/// A run calls this once and passes the context down by reference. With
/// `Device::Auto`, a missing adapter, a software adapter or a failed device
/// creation is logged and the run uses the CPU. With `Device::Gpu`, either one is an
/// [`Error::InvalidOptions`] whose message names the fix.
pub async fn select_context(device: Device) -> Result<Option<GpuContext>> {
    if device == Device::Cpu {
        return Ok(None);
    }
    match GpuContext::new().await {
        // A software adapter such as lavapipe emulates the GPU on the CPU and
        // was measured slower than the CPU path (7.7 s against 5.7 s on the demo
        // pair), so only an explicit `Device::Gpu` uses it.
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
        Err(error) => Err(Error::InvalidOptions(format!("{error}; {CPU_HINT} to run on the CPU"))),
    }
}

/// [`select_context`] for synchronous callers.
///
/// In the browser only [`Device::Cpu`] can be opened this way, because
/// finding a WebGPU adapter has to wait for the JavaScript event loop.
pub fn open_context(device: Device) -> Result<Option<GpuContext>> {
    if cfg!(target_arch = "wasm32") && device != Device::Cpu {
        return Err(Error::InvalidOptions("the synchronous entry points of the browser build run on the CPU only; use device cpu, or the async session API for the GPU".into()));
    }
    block_on(select_context(device))
}

/// Drives `future` to completion on the calling thread.
///
/// Natively this blocks until the GPU kernels it awaits are done. In the
/// browser a thread cannot block on WebGPU, whose callbacks run from the
/// JavaScript event loop, so there it polls once: callers pass futures that
/// await no kernel (the pipeline without a GPU context), which are ready then.
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: Future>(future: F) -> F::Output {
    pollster::block_on(future)
}

/// Polls `future` once and returns its output; see the native version.
#[cfg(target_arch = "wasm32")]
pub fn block_on<F: Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a synchronous call awaited WebGPU in the browser; use the async entry points of the wasm module there"),
    }
}

impl GpuContext {
    /// Names the adapter and its backend, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)`, for reports.
    ///
    /// Browsers may hide the adapter's name, and the label then reads `unnamed adapter`.
    pub fn adapter_label(&self) -> String {
        let name = match self.adapter_info.name.as_str() {
            "" => "unnamed adapter",
            name => name,
        };
        format!("{name} ({:?})", self.adapter_info.backend)
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
