//! BitDelta baseline, data-free: `Δ̂ = s · sign(ΔW)` with `s = mean |ΔW|`.
//!
//! One bit per parameter plus one f32 scale (Liu et al., 2024, "BitDelta:
//! Your Fine-Tune May Only Be Worth One Bit"). When the budget is below one
//! bit per parameter, only the rows with the largest `Σ |ΔW|` keep their
//! signs (their indices are stored as u32) and the other rows of `Δ̂` are zero,
//! so the method respects the same budget as the others.

use super::{EncodedMatrix, Reconstruction, StoredPart};
use crate::checkpoint::Dtype;
use crate::quant::{BitReader, BitWriter};

/// Sign bits of the kept rows of a delta, and one scale.
#[derive(Debug, Clone)]
pub struct SignMatrix {
    /// Rows `m`.
    pub rows: usize,
    /// Columns `n`.
    pub cols: usize,
    /// Indices of the rows that keep their signs, ascending.
    pub kept_rows: Vec<u32>,
    /// One bit per entry of the kept rows, 1 = positive, packed LSB first.
    pub signs: Vec<u8>,
    /// `mean |ΔW|` over the kept rows.
    pub scale: f32,
}

/// Bits of a sign matrix keeping `kept` of `m` rows of `n` columns.
fn stored_bits(m: usize, n: usize, kept: usize) -> u64 {
    let index_bits = if kept == m { 0 } else { 32 * kept as u64 };
    (kept as u64 * n as u64).div_ceil(8) * 8 + index_bits + 32
}

/// Encodes `delta` (`[m, n]`, row-major) within `budget_bits`.
pub fn compress_matrix(delta: &[f32], m: usize, n: usize, budget_bits: u64) -> EncodedMatrix {
    // 1. As many rows as fit, the ones with the most mass first.
    let mut kept = m;
    while kept > 0 && stored_bits(m, n, kept) > budget_bits {
        kept = if kept == m { ((budget_bits.saturating_sub(32)) / (n as u64 + 32)) as usize } else { kept - 1 };
    }
    let row_mass = |r: usize| delta[r * n..(r + 1) * n].iter().map(|x| x.abs() as f64).sum::<f64>();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| row_mass(b).total_cmp(&row_mass(a)));
    let mut kept_rows: Vec<u32> = order[..kept].iter().map(|&r| r as u32).collect();
    kept_rows.sort_unstable();

    // 2. The scale and the sign bits of the kept rows.
    let mass: f64 = kept_rows.iter().map(|&r| row_mass(r as usize)).sum();
    let scale = if kept == 0 { 0.0 } else { (mass / (kept * n) as f64) as f32 };
    let mut writer = BitWriter::new();
    for &r in &kept_rows {
        let bits: Vec<u8> = delta[r as usize * n..(r as usize + 1) * n].iter().map(|&x| (x >= 0.0) as u8).collect();
        writer.push_all(&bits, 1);
    }
    EncodedMatrix::BitDelta(SignMatrix { rows: m, cols: n, kept_rows, signs: writer.finish(), scale })
}

impl SignMatrix {
    /// Stored tensors: `signs`, `scale`, and `rows` when not every row is kept.
    pub fn parts(&self) -> Vec<StoredPart> {
        let mut parts = vec![
            ("signs", Dtype::U8, vec![self.signs.len()], self.signs.clone()),
            ("scale", Dtype::F32, vec![1], self.scale.to_le_bytes().to_vec()),
        ];
        if self.kept_rows.len() != self.rows {
            parts.push(("rows", Dtype::U32, vec![self.kept_rows.len()], self.kept_rows.iter().flat_map(|r| r.to_le_bytes()).collect()));
        }
        parts
    }

    /// Checks sizes and indices; returns a description of the first problem.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.signs.len() as u64 != (self.kept_rows.len() as u64 * self.cols as u64).div_ceil(8) {
            return Err(format!("{} sign bytes for {} rows of {} columns", self.signs.len(), self.kept_rows.len(), self.cols));
        }
        if self.kept_rows.windows(2).any(|w| w[0] >= w[1]) || self.kept_rows.last().is_some_and(|&r| r as usize >= self.rows) {
            return Err("row indices are not ascending or out of range".into());
        }
        Ok(())
    }
}

impl Reconstruction for SignMatrix {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn rows(&self, start: usize, count: usize) -> Vec<f32> {
        let n = self.cols;
        let mut out = vec![0.0f32; count * n];
        let mut bits = vec![0u8; n];
        let first = self.kept_rows.partition_point(|&r| (r as usize) < start);
        for (slot, &row) in self.kept_rows.iter().enumerate().skip(first) {
            let row = row as usize;
            if row >= start + count {
                break;
            }
            let mut reader = BitReader::new(&self.signs[slot * n / 8..]);
            // Row `slot` starts at bit slot·n of the stream, not always on a byte boundary.
            let skip = (slot * n) % 8;
            let mut skipped = vec![0u8; skip];
            reader.read_into(&mut skipped, 1).expect("checked sizes");
            reader.read_into(&mut bits, 1).expect("checked sizes");
            for (o, &b) in out[(row - start) * n..(row - start + 1) * n].iter_mut().zip(&bits) {
                *o = if b == 1 { self.scale } else { -self.scale };
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::squared_error;

    #[test]
    fn full_budget_keeps_every_sign() {
        let delta = vec![0.5f32, -1.5, 1.0, -1.0, 1.5, -0.5];
        let EncodedMatrix::BitDelta(signs) = compress_matrix(&delta, 2, 3, 1_000) else { panic!("bitdelta") };
        assert_eq!(signs.kept_rows, vec![0, 1]);
        assert_eq!(signs.scale, 1.0);
        assert_eq!(signs.rows(0, 2), vec![1.0, -1.0, 1.0, -1.0, 1.0, -1.0]);
    }

    #[test]
    fn small_budget_keeps_heaviest_rows() {
        // Three rows of 64: all signs take 192 + 32 bits, one row with its index 64 + 32 + 32.
        let n = 64;
        let mut delta = vec![0.1f32; 3 * n];
        delta[n..2 * n].iter_mut().enumerate().for_each(|(i, x)| *x = if i % 2 == 0 { 3.0 } else { -3.0 });
        let EncodedMatrix::BitDelta(signs) = compress_matrix(&delta, 3, n, 130) else { panic!("bitdelta") };
        assert_eq!(signs.kept_rows, vec![1]);
        assert_eq!(signs.scale, 3.0);
        assert_eq!(signs.check(), Ok(()));
        let error = squared_error(&signs, &delta);
        let expected = 2.0 * n as f64 * 0.01;
        assert!((error - expected).abs() < 1e-4, "error {error}, expected {expected}");
    }
}
