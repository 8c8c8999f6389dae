//! Uniform asymmetric min–max quantizer over groups of [`GROUP_SIZE`] entries.
//!
//! Per group: `scale = (max − min) / (2^b − 1)`, code `q = round((x − min) / scale)`
//! clamped to `[0, 2^b − 1]`, reconstruction `min + q · scale`. The scale and
//! the minimum are stored as f16, and both the codes and the error are
//! computed with the stored f16 values, so the error a caller sees is the
//! error the file will have. Rounding is ties-to-even (`round_ties_even`),
//! which is what WGSL's `round` does, so a GPU kernel can match the codes.
//!
//! Errors are summed in f32 in a fixed order: entries in order within a group,
//! then group sums in order. A GPU kernel that sums the same way gets the same
//! bits, so a cost table built on either side yields the same allocation.

use half::f16;

/// Entries per quantization group; the last group of a vector may be shorter.
pub const GROUP_SIZE: usize = 128;

/// A quantized vector: one code per entry, one f16 scale and minimum per group.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedVector {
    /// Bit width of every code.
    pub width: u8,
    /// Codes in `[0, 2^width − 1]`, one per entry.
    pub codes: Vec<u8>,
    /// Group scales as stored.
    pub scales: Vec<f16>,
    /// Group minimums as stored.
    pub mins: Vec<f16>,
}

impl QuantizedVector {
    /// Returns an empty vector at `width` bits with room for `len` entries.
    pub fn with_capacity(width: u8, len: usize) -> Self {
        QuantizedVector { width, codes: Vec::with_capacity(len), scales: Vec::with_capacity(group_count(len)), mins: Vec::with_capacity(group_count(len)) }
    }
}

/// Number of groups of a vector of `len` entries.
pub fn group_count(len: usize) -> usize {
    len.div_ceil(GROUP_SIZE)
}

/// The stored (f16) minimum and scale of one group at `width` bits.
fn group_params(group: &[f32], width: u8) -> (f16, f16) {
    let (lo, hi) = group_range(group);
    let levels = ((1u32 << width) - 1) as f32;
    let scale = ((hi - lo) / levels).min(f16::MAX.to_f32());
    (f16::from_f32(lo), f16::from_f32(scale))
}

/// Number of independent minimums and maximums in [`group_range`], so that the compiler can use SIMD.
const RANGE_LANES: usize = 8;

/// Returns the smallest and largest entry of `group`; NaN entries are skipped.
///
/// Written with comparisons rather than `f32::min`, which WebAssembly runs as
/// a call to `fminf` per entry. Those calls took 7% of a budget explorer's solve.
fn group_range(group: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = ([f32::INFINITY; RANGE_LANES], [f32::NEG_INFINITY; RANGE_LANES]);
    let chunks = group.chunks_exact(RANGE_LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for lane in 0..RANGE_LANES {
            lo[lane] = if chunk[lane] < lo[lane] { chunk[lane] } else { lo[lane] };
            hi[lane] = if chunk[lane] > hi[lane] { chunk[lane] } else { hi[lane] };
        }
    }
    let smaller = |a: f32, b: f32| if b < a { b } else { a };
    let larger = |a: f32, b: f32| if b > a { b } else { a };
    let lo = rest.iter().copied().chain(lo).fold(f32::INFINITY, smaller);
    let hi = rest.iter().copied().chain(hi).fold(f32::NEG_INFINITY, larger);
    (lo, hi)
}

/// The code of `x` given the stored minimum and scale.
#[inline]
fn code_of(x: f32, min: f32, scale: f32, width: u8) -> u8 {
    if scale <= 0.0 {
        return 0;
    }
    scaled_code(x, min, scale, ((1u32 << width) - 1) as f32)
}

/// The code of `x` for a positive scale, clamped to `[0, max_code]`.
///
/// Comparisons instead of `f32::clamp` keep the loop in [`encode_group`] free
/// of branches, so that it compiles to SIMD.
#[inline]
fn scaled_code(x: f32, min: f32, scale: f32, max_code: f32) -> u8 {
    let q = ((x - min) / scale).round_ties_even();
    let q = if q < 0.0 { 0.0 } else { q };
    let q = if q > max_code { max_code } else { q };
    q as u8
}

/// Writes the code of every entry of `group` into `codes`, as [`code_of`] does.
fn encode_group(group: &[f32], min: f32, scale: f32, width: u8, codes: &mut [u8]) {
    if scale <= 0.0 {
        codes.fill(0);
        return;
    }
    let max_code = ((1u32 << width) - 1) as f32;
    for (code, &x) in codes.iter_mut().zip(group) {
        *code = scaled_code(x, min, scale, max_code);
    }
}

/// Quantizes `x` at `width` bits (1 to 8).
pub fn quantize(x: &[f32], width: u8) -> QuantizedVector {
    let mut out = QuantizedVector::with_capacity(width, x.len());
    quantize_into(x, &mut out);
    out
}

/// Quantizes `x` at `out.width` bits and appends its codes and groups to `out`.
///
/// `out` must end on a whole group, so that the groups stay aligned to
/// [`GROUP_SIZE`] entries.
pub fn quantize_into(x: &[f32], out: &mut QuantizedVector) {
    let width = out.width;
    assert!((1..=8).contains(&width), "width {width} is outside 1..=8");
    debug_assert!(out.codes.len() % GROUP_SIZE == 0, "the vector does not end on a whole group");
    for group in x.chunks(GROUP_SIZE) {
        let (min, scale) = group_params(group, width);
        let start = out.codes.len();
        out.codes.resize(start + group.len(), 0);
        encode_group(group, min.to_f32(), scale.to_f32(), width, &mut out.codes[start..]);
        out.mins.push(min);
        out.scales.push(scale);
    }
}

/// Writes the reconstruction `min + q · scale` of every entry into `out`.
pub fn dequantize_into(codes: &[u8], scales: &[f16], mins: &[f16], out: &mut [f32]) {
    for (g, (code_group, out_group)) in codes.chunks(GROUP_SIZE).zip(out.chunks_mut(GROUP_SIZE)).enumerate() {
        let (min, scale) = (mins[g].to_f32(), scales[g].to_f32());
        for (o, &q) in out_group.iter_mut().zip(code_group) {
            *o = min + q as f32 * scale;
        }
    }
}

/// Returns `‖x − Q_b(x)‖²` with the stored f16 parameters; width 0 returns `‖x‖²`.
pub fn squared_error(x: &[f32], width: u8) -> f32 {
    let mut total = 0.0f32;
    for group in x.chunks(GROUP_SIZE) {
        let mut group_sum = 0.0f32;
        if width == 0 {
            for &v in group {
                group_sum += v * v;
            }
        } else {
            let (min, scale) = group_params(group, width);
            let (min, scale) = (min.to_f32(), scale.to_f32());
            for &v in group {
                let r = min + code_of(v, min, scale, width) as f32 * scale;
                group_sum += (v - r) * (v - r);
            }
        }
        total += group_sum;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    fn random_vector(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = SmallRng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// Squared error of the stored reconstruction, summed the same way as `squared_error`.
    fn stored_error(x: &[f32], q: &QuantizedVector) -> f32 {
        let mut reconstruction = vec![0.0; x.len()];
        dequantize_into(&q.codes, &q.scales, &q.mins, &mut reconstruction);
        x.chunks(GROUP_SIZE).zip(reconstruction.chunks(GROUP_SIZE))
            .map(|(a, b)| a.iter().zip(b).fold(0.0f32, |s, (p, r)| s + (p - r) * (p - r)))
            .fold(0.0f32, |s, g| s + g)
    }

    #[test]
    fn error_matches_stored_reconstruction() {
        for width in 1..=8u8 {
            for len in [1, 127, 128, 129, 300, 1000] {
                let x = random_vector(len, width as u64 * 1000 + len as u64);
                let q = quantize(&x, width);
                assert_eq!(squared_error(&x, width), stored_error(&x, &q), "width {width}, length {len}");
            }
        }
    }

    #[test]
    fn codes_stay_in_range() {
        for width in 1..=8u8 {
            let q = quantize(&random_vector(500, width as u64), width);
            let max_code = (1u16 << width) - 1;
            assert!(q.codes.iter().all(|&c| c as u16 <= max_code), "width {width}");
            assert_eq!(q.scales.len(), 4);
        }
    }

    /// Relative error bound per width: the step is range/(2^b − 1), so the RMS error is about step/√12.
    #[test]
    fn error_shrinks_with_width() {
        let x = random_vector(4096, 7);
        let norm: f32 = x.iter().map(|v| v * v).sum();
        let mut previous = f32::INFINITY;
        for width in 1..=8u8 {
            let relative = squared_error(&x, width) / norm;
            let step = 2.0 / ((1u32 << width) - 1) as f32;
            let bound = step * step / 12.0 / (1.0 / 3.0) * 1.5;
            assert!(relative <= bound, "width {width}: relative squared error {relative} above {bound}");
            assert!(relative < previous, "width {width}: error did not shrink");
            previous = relative;
        }
    }

    #[test]
    fn ties_round_to_even() {
        // Group [0, 1, 2, 3] at 1 bit: scale 3, so 1.5 / 3 = 0.5 rounds to 0, not 1.
        let q = quantize(&[0.0, 1.5, 3.0], 1);
        assert_eq!(q.codes, vec![0, 0, 1]);
    }

    #[test]
    fn constant_group_is_exact() {
        let x = vec![0.25f32; 200];
        assert_eq!(squared_error(&x, 3), 0.0);
        assert_eq!(squared_error(&x, 0), 12.5);
    }
}
