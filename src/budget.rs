//! Stage 2 bookkeeping: the size budget, counted in stored bits.
//!
//! The target is a ratio `α` of the f16 size of the delta. A matrix
//! `[m, n]` has `α · 16 · m · n` bits. A kept singular triplet at width `b`
//! costs its codes, `b · (m + n)` bits, plus everything else stored for it:
//! one f16 scale and one f16 minimum per group of `u` and of `v`, and its
//! σ as f32. The file as a whole must meet the ratio, so fixed costs (small
//! tensors stored as f16 deltas, whole tensors, the header) are paid first
//! and the matrices share what remains in proportion to their size.

use crate::quant::quantizer::group_count;

/// Candidate widths, ascending; 0 means the triplet is dropped.
pub const WIDTHS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 8];

/// Bits of one stored group scale (f16).
pub const SCALE_BITS: u64 = 16;
/// Bits of one stored group minimum (f16).
pub const MIN_BITS: u64 = 16;
/// Bits of one stored singular value (f32).
pub const SIGMA_BITS: u64 = 32;
/// Bits lost at most to padding the code stream of a matrix to whole bytes.
pub const PADDING_BITS: u64 = 7;

/// Stored bits of one singular triplet of an `[m, n]` matrix at `width` bits per code.
pub fn triplet_cost_bits(m: usize, n: usize, width: u8) -> u64 {
    if width == 0 {
        return 0;
    }
    let groups = (group_count(m) + group_count(n)) as u64;
    width as u64 * (m + n) as u64 + (SCALE_BITS + MIN_BITS) * groups + SIGMA_BITS
}

/// Bits of an `[m, n]` matrix stored as f16.
pub fn f16_bits(m: usize, n: usize) -> u64 {
    16 * m as u64 * n as u64
}

/// The most triplets that fit in `budget_bits`, at the narrowest non-zero width.
pub fn max_rank(m: usize, n: usize, widths: &[u8], budget_bits: u64) -> usize {
    let narrowest = widths.iter().copied().filter(|&w| w > 0).min().unwrap_or(1);
    let fit = budget_bits / triplet_cost_bits(m, n, narrowest);
    (fit as usize).min(m.min(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triplet_cost_counts_codes_scales_and_sigma() {
        // [384, 384]: 768 codes, 3 + 3 groups, each with a 16-bit scale and minimum, and a 32-bit σ.
        assert_eq!(triplet_cost_bits(384, 384, 1), 768 + 6 * 32 + 32);
        assert_eq!(triplet_cost_bits(384, 384, 0), 0);
        assert_eq!(triplet_cost_bits(100, 300, 8), 8 * 400 + (1 + 3) * 32 + 32);
    }

    #[test]
    fn max_rank_is_capped_by_shape() {
        assert_eq!(max_rank(384, 384, &WIDTHS, f16_bits(384, 384) / 16), 147456 / 992);
        assert_eq!(max_rank(20, 30, &WIDTHS, u64::MAX), 20);
    }
}
