//! Wall-clock seconds that work both natively and in the browser.
//!
//! `std::time::Instant` panics on `wasm32-unknown-unknown`, so the browser
//! build reads `Date.now()` instead.

/// A point in time to measure elapsed seconds from.
#[derive(Clone, Copy)]
pub struct Stopwatch {
    #[cfg(not(target_arch = "wasm32"))]
    start: std::time::Instant,
    #[cfg(target_arch = "wasm32")]
    start_ms: f64,
}

impl Stopwatch {
    /// Starts measuring now.
    pub fn start() -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        return Stopwatch { start: std::time::Instant::now() };
        #[cfg(target_arch = "wasm32")]
        return Stopwatch { start_ms: js_sys::Date::now() };
    }

    /// Seconds since [`Stopwatch::start`].
    pub fn seconds(&self) -> f64 {
        #[cfg(not(target_arch = "wasm32"))]
        return self.start.elapsed().as_secs_f64();
        #[cfg(target_arch = "wasm32")]
        return (js_sys::Date::now() - self.start_ms) / 1000.0;
    }
}
