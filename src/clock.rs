//! Wall-clock seconds that work both natively and in the browser.
//!
//! `std::time::Instant` panics on `wasm32-unknown-unknown`, so the browser
//! build reads `Date.now()` instead. A WASI build (used to time the core as
//! WebAssembly outside a browser) has a working `Instant`.

/// A point in time to measure elapsed seconds from.
#[derive(Clone, Copy)]
pub struct Stopwatch {
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    start: std::time::Instant,
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    start_ms: f64,
}

impl Stopwatch {
    /// Starts measuring now.
    pub fn start() -> Self {
        #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
        return Stopwatch { start: std::time::Instant::now() };
        #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
        return Stopwatch { start_ms: js_sys::Date::now() };
    }

    /// Seconds since [`Stopwatch::start`].
    pub fn seconds(&self) -> f64 {
        #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
        return self.start.elapsed().as_secs_f64();
        #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
        return (js_sys::Date::now() - self.start_ms) / 1000.0;
    }
}
