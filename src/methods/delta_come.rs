//! Delta-CoMe baseline: a fixed split of widths by rank.
//!
//! The first 2 triplets get 8 bits, the next 32 get 3 bits, then 2 bits for
//! as many as the budget allows; the rest are dropped. V and U are quantized
//! directly from the SVD, with no correction step (Ping et al., 2024,
//! "Delta-CoMe: Training-Free Delta-Compression with Mixed-Precision").

use faer::MatRef;

use super::adamix::quantize_columns;
use super::EncodedMatrix;
use crate::budget::triplet_cost_bits;
use crate::error::Result;
use crate::packed::PackedMatrix;
use crate::svd::{top_triplets, SvdPolicy};

/// The fixed split: `(width, triplets)` in rank order; the last tier takes what fits.
pub const TIERS: [(u8, usize); 3] = [(8, 2), (3, 32), (2, usize::MAX)];

/// Widths of the leading triplets under the fixed split within `budget_bits`.
pub fn fixed_allocation(m: usize, n: usize, budget_bits: u64) -> Vec<u8> {
    let mut widths = Vec::new();
    let mut spent = 0u64;
    'tiers: for (width, count) in TIERS {
        for _ in 0..count {
            let cost = triplet_cost_bits(m, n, width);
            if widths.len() == m.min(n) || spent + cost > budget_bits {
                break 'tiers;
            }
            spent += cost;
            widths.push(width);
        }
    }
    widths
}

/// Compresses `delta` (`[m, n]`, row-major) with the fixed split within `budget_bits`.
pub fn compress_matrix(tensor: &str, delta: &[f32], m: usize, n: usize, budget_bits: u64, policy: SvdPolicy, stage: &mut dyn FnMut(&str)) -> Result<EncodedMatrix> {
    let allocation = fixed_allocation(m, n, budget_bits);
    stage("svd");
    let triplets = top_triplets(MatRef::from_row_major_slice(delta, m, n), allocation.len(), policy, tensor)?;
    stage("quantize");
    let kept: Vec<usize> = (0..allocation.len()).collect();
    let (v_parts, _) = quantize_columns(&triplets.v, &kept, &allocation);
    let (u_parts, _) = quantize_columns(&triplets.u, &kept, &allocation);
    Ok(EncodedMatrix::Quantized {
        packed: PackedMatrix::pack(m, n, triplets.sigma.clone(), &u_parts, &v_parts),
        allocation,
        spectrum: triplets.sigma,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_matches_reference_example() {
        // [4096, 4096] at 1/16 counting codes only is 2 + 32 + 968 triplets; this
        // product also counts scales, minimums and σ, so fewer 2-bit triplets fit.
        let widths = fixed_allocation(4096, 4096, 16 * 4096 * 4096 / 16);
        assert_eq!(widths.iter().filter(|&&w| w == 8).count(), 2);
        assert_eq!(widths.iter().filter(|&&w| w == 3).count(), 32);
        let two_bit = widths.iter().filter(|&&w| w == 2).count();
        assert!(two_bit > 700 && two_bit < 968, "{two_bit} triplets at 2 bits");
    }

    #[test]
    fn small_budget_fills_tiers_in_order() {
        let one = triplet_cost_bits(64, 64, 8);
        assert_eq!(fixed_allocation(64, 64, one), vec![8]);
        assert_eq!(fixed_allocation(64, 64, 0), Vec::<u8>::new());
    }
}
