//! Times each GPU kernel against its CPU reference on one synthetic delta.
//!
//!   cargo run --release --example kernel_profile -- M N [CANDIDATES] [REPEATS]
//!
//! Prints one JSON object per kernel (see `adamix::gpu::profile`). Without a
//! GPU adapter (natively, Mesa's lavapipe counts as one) only the CPU runs.

use adamix::gpu::profile::profile_kernels;
use adamix::gpu::{block_on, select_context, Device};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("arguments are whole numbers")).collect();
    let (m, n) = match args[..] {
        [m, n, ..] => (m, n),
        _ => {
            eprintln!("usage: kernel_profile M N [CANDIDATES] [REPEATS]");
            std::process::exit(2);
        }
    };
    let candidates = args.get(2).copied().unwrap_or(1024);
    let repeats = args.get(3).copied().unwrap_or(3);
    let ctx = block_on(select_context(Device::Gpu)).unwrap_or_else(|error| {
        eprintln!("no GPU: {error}; timing the CPU only");
        None
    });
    let device = ctx.as_ref().map_or_else(|| "cpu only".to_string(), |c| c.describe());
    eprintln!("[{m}, {n}], {candidates} candidate triplets, median of {repeats}; GPU: {device}");
    match block_on(profile_kernels(ctx.as_ref(), m, n, candidates, repeats)) {
        Ok(profiles) => {
            for profile in profiles {
                println!("{}", serde_json::to_string(&profile).expect("profiles serialize"));
            }
        }
        Err(error) => {
            eprintln!("profiling failed: {error}");
            std::process::exit(1);
        }
    }
}
