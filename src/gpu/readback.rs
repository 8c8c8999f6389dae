//! The one way results come back from the GPU: map a staging buffer and copy its bytes.
//!
//! Mapping is asynchronous because the GPU may still be writing the buffer:
//! `map_async` only registers a callback, which runs once the queued work is
//! done. Natively the callback runs inside `device.poll`, which this helper
//! calls and which blocks until then. In the browser, polling does nothing and
//! the callback runs from the JavaScript event loop, so the helper must yield
//! to it. Awaiting a oneshot channel works in both cases with one piece of code.

use futures_channel::oneshot;

use super::{GpuContext, GpuError};

/// Maps `staging` (a `MAP_READ` buffer whose copies were submitted), returns its bytes and unmaps it.
pub(crate) async fn read_staging(ctx: &GpuContext, staging: &wgpu::Buffer, kernel: &'static str) -> Result<Vec<u8>, GpuError> {
    let failed = |message: String| GpuError::Kernel { kernel, message };

    // 1. Ask for the mapping; the callback sends its result through the channel.
    let slice = staging.slice(..);
    let (sender, receiver) = oneshot::channel();
    slice.map_async(wgpu::MapMode::Read, move |result| {
        // The receiver is only gone when the caller's future was dropped, so the result is no longer needed.
        let _ = sender.send(result);
    });

    // 2. Natively, drive the device until the submitted work and the callback have run.
    #[cfg(not(target_arch = "wasm32"))]
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| failed(format!("waiting for the device failed: {e}")))?;
    #[cfg(target_arch = "wasm32")]
    let _ = ctx;

    // 3. Wait for the callback.
    receiver
        .await
        .map_err(|_| failed("the buffer mapping was cancelled before it completed".into()))?
        .map_err(|e| failed(format!("mapping the result buffer failed: {e}")))?;

    // 4. Copy the bytes out and release the mapping.
    let bytes = {
        let view = slice.get_mapped_range().map_err(|e| failed(format!("reading the mapped result buffer failed: {e}")))?;
        view.to_vec()
    };
    staging.unmap();
    Ok(bytes)
}
