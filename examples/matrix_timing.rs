//! Times ADAMIX on one synthetic `[m, n]` delta with a long-tailed spectrum, stage by stage.
//!
//! Usage: `cargo run --release --example matrix_timing -- M N [full|auto]`.

use adamix::budget::WIDTHS;
use adamix::clock::Stopwatch;
use adamix::methods::{adamix::compress_matrix, squared_error};
use adamix::svd::SvdPolicy;
use faer::Mat;
use rand::{rngs::SmallRng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let m: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4096);
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4096);
    let policy = if args.get(3).map(String::as_str) == Some("full") { SvdPolicy::Full } else { SvdPolicy::Auto };

    // A delta U diag(s) Vᵀ with s_i = (i + 1)^-0.7, rank min(m, n) / 2, plus a small dense noise floor.
    let clock = Stopwatch::start();
    let rank = m.min(n) / 2;
    let mut rng = SmallRng::seed_from_u64(5);
    let a = Mat::<f32>::from_fn(m, rank, |_, _| StandardNormal.sample(&mut rng));
    let b = Mat::<f32>::from_fn(n, rank, |_, _| StandardNormal.sample(&mut rng));
    let (qa, qb) = (a.qr().compute_thin_Q(), b.qr().compute_thin_Q());
    let scaled = Mat::<f32>::from_fn(m, rank, |i, j| qa[(i, j)] * ((j + 1) as f32).powf(-0.7));
    let product = &scaled * qb.transpose();
    let delta: Vec<f32> = (0..m * n).map(|k| product[(k / n, k % n)]).collect();
    eprintln!("generated in {:.1} s", clock.seconds());

    let budget_bits = (16 * m * n / 16) as u64;
    let clock = Stopwatch::start();
    let mut last = 0.0;
    let compressed = compress_matrix("bench", &delta, m, n, &WIDTHS, budget_bits, policy, &mut |stage| {
        let now = clock.seconds();
        eprintln!("  {stage} starts at {now:.2} s (+{:.2})", now - last);
        last = now;
    }).expect("compression succeeds");
    let seconds = clock.seconds();
    let encoded = compressed.encoded;
    let reconstruction = encoded.decode().expect("decodes");
    let norm: f64 = delta.iter().map(|&x| (x as f64).powi(2)).sum();
    let error = (squared_error(reconstruction.as_ref(), &delta) / norm).sqrt();
    println!("[{m}, {n}] {policy:?}: {seconds:.2} s, kept rank {:?}, relative error {error:.5}", encoded.kept_rank());
}
