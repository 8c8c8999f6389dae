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

    // glibc raises its mmap threshold as large buffers are freed, after which
    // tensor-sized buffers come from heap arenas that are rarely trimmed, and
    // peak memory grew with the number of tensors (1.1 GB at 4 layers, 2.2 GB
    // at 16, BENCHMARKS.md). A fixed 1 MiB threshold returns every large buffer
    // to the system when it is freed.
    // SAFETY: mallopt only changes allocator settings and is called before any thread starts.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }

    // A signal ends the process without destructors, so remove partial outputs here.
    let handler = ctrlc::set_handler(|| {
        cli::remove_partial_files();
        eprintln!("\n{}", cli::interrupted_message());
        std::process::exit(130);
    });
    if let Err(error) = handler {
        eprintln!("warning: could not install the Ctrl-C handler ({error}); an interrupted run may leave a .partial file");
    }
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
