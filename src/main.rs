//! The `adamix` command-line tool: compress, apply, verify and inspect deltas.
//!
//! It runs the same core as the web page, on machines and models too big for
//! a browser tab. Outputs are written atomically: to a temporary file in the
//! output's folder, renamed into place only when complete.

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    // Like other Unix tools, end quietly when a reader of the output (such as `head`) closes the pipe.
    // SAFETY: setting a signal's disposition to the default touches no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }

    // A signal ends the process without destructors, so remove partial outputs here.
    let handler = ctrlc::set_handler(|| {
        cli::remove_partial_files();
        eprintln!("\ninterrupted; no output was written");
        std::process::exit(130);
    });
    if let Err(error) = handler {
        eprintln!("warning: could not install the Ctrl-C handler ({error}); an interrupted run may leave a .partial file");
    }
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
