//! The `adamix` command-line tool: compress, apply, verify and inspect deltas.
//!
//! It runs the same core as the web page, on machines and models too big for
//! a browser tab. Outputs are written atomically: to a temporary file in the
//! output's folder, renamed into place only when complete.

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
