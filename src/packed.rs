//! Stage 8: the packed form of one compressed matrix, and its way back to factors.
//!
//! A matrix `[m, n]` with `k` stored triplets keeps, in triplet order:
//! the codes of `û_i` (m codes) then of `v̂_i` (n codes), all at the triplet's
//! width, in one bit stream ([`crate::quant::pack`]); the f16 scales and
//! minimums of the groups of `û_i` then of `v̂_i`; and `σ_i` as f32. The
//! reconstruction is `Δ̂ = Û diag(σ) V̂ᵀ`.

use faer::Mat;
use half::f16;

use crate::budget::{triplet_cost_bits, PADDING_BITS};
use crate::quant::quantizer::group_count;
use crate::quant::{dequantize_into, BitReader, BitWriter, QuantizedVector};

/// The stored form of one compressed matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedMatrix {
    /// Rows `m` of the delta.
    pub rows: usize,
    /// Columns `n` of the delta.
    pub cols: usize,
    /// Width of each stored triplet, all in 1..=8.
    pub widths: Vec<u8>,
    /// Singular value of each stored triplet.
    pub sigma: Vec<f32>,
    /// Bit-packed codes of all stored triplets.
    pub codes: Vec<u8>,
    /// Group scales: per triplet, the groups of `û_i` then of `v̂_i`.
    pub scales: Vec<f16>,
    /// Group minimums, in the order of `scales`.
    pub mins: Vec<f16>,
}

/// Dequantized factors of a compressed matrix.
pub struct Factors {
    /// `Û`, `[m, k]`.
    pub u: Mat<f32>,
    /// `V̂`, `[n, k]`.
    pub v: Mat<f32>,
    /// `σ`, length `k`.
    pub sigma: Vec<f32>,
}

impl PackedMatrix {
    /// Packs quantized triplets: `u_parts[i]` and `v_parts[i]` share the width of triplet `i`.
    pub fn pack(rows: usize, cols: usize, sigma: Vec<f32>, u_parts: &[QuantizedVector], v_parts: &[QuantizedVector]) -> PackedMatrix {
        let mut writer = BitWriter::new();
        let (mut scales, mut mins) = (Vec::new(), Vec::new());
        for (u, v) in u_parts.iter().zip(v_parts) {
            debug_assert_eq!(u.width, v.width);
            for part in [u, v] {
                writer.push_all(&part.codes, part.width);
                scales.extend_from_slice(&part.scales);
                mins.extend_from_slice(&part.mins);
            }
        }
        PackedMatrix { rows, cols, widths: u_parts.iter().map(|u| u.width).collect(), sigma, codes: writer.finish(), scales, mins }
    }

    /// Bytes this matrix takes in the file body: codes, scales, minimums and σ.
    pub fn stored_bytes(&self) -> u64 {
        self.codes.len() as u64 + 2 * (self.scales.len() + self.mins.len()) as u64 + 4 * self.sigma.len() as u64
    }

    /// Upper bound of [`Self::stored_bytes`] from the triplet cost model, used to check the budget.
    pub fn modelled_bits(&self) -> u64 {
        self.widths.iter().map(|&w| triplet_cost_bits(self.rows, self.cols, w)).sum::<u64>() + PADDING_BITS
    }

    /// Number of groups per triplet: those of `û_i` and of `v̂_i`.
    pub fn groups_per_triplet(&self) -> usize {
        group_count(self.rows) + group_count(self.cols)
    }

    /// Checks that the parts have the sizes the widths imply; returns a description of the first mismatch.
    pub fn check_sizes(&self) -> std::result::Result<(), String> {
        let k = self.widths.len();
        if let Some(w) = self.widths.iter().find(|&&w| !(1..=8).contains(&w)) {
            return Err(format!("stored width {w} is outside 1..=8"));
        }
        if self.sigma.len() != k {
            return Err(format!("{} singular values for {k} triplets", self.sigma.len()));
        }
        let groups = k * self.groups_per_triplet();
        if self.scales.len() != groups || self.mins.len() != groups {
            return Err(format!("{} scales and {} minimums where {groups} groups are expected", self.scales.len(), self.mins.len()));
        }
        let bits: u64 = self.widths.iter().map(|&w| w as u64 * (self.rows + self.cols) as u64).sum();
        if self.codes.len() as u64 != bits.div_ceil(8) {
            return Err(format!("{} code bytes where {} are expected", self.codes.len(), bits.div_ceil(8)));
        }
        Ok(())
    }

    /// Dequantizes the stored triplets; fails when the parts do not match the widths.
    pub fn unpack(&self) -> std::result::Result<Factors, String> {
        self.check_sizes()?;
        let (m, n, k) = (self.rows, self.cols, self.widths.len());
        let mut u = Mat::<f32>::zeros(m, k);
        let mut v = Mat::<f32>::zeros(n, k);
        let mut reader = BitReader::new(&self.codes);
        let (gu, gv) = (group_count(m), group_count(n));
        let mut group = 0;
        let mut codes = Vec::new();
        for (i, &width) in self.widths.iter().enumerate() {
            for (column, groups) in [(u.col_as_slice_mut(i), gu), (v.col_as_slice_mut(i), gv)] {
                codes.resize(column.len(), 0);
                reader.read_into(&mut codes, width).ok_or("the code stream is shorter than the widths require")?;
                dequantize_into(&codes, &self.scales[group..group + groups], &self.mins[group..group + groups], column);
                group += groups;
            }
        }
        Ok(Factors { u, v, sigma: self.sigma.clone() })
    }
}

impl Factors {
    /// Rows `start..start + count` of `Δ̂ = Û diag(σ) V̂ᵀ`, row-major `[count, n]`.
    pub fn reconstruct_rows(&self, start: usize, count: usize) -> Vec<f32> {
        let n = self.v.nrows();
        let k = self.sigma.len();
        let mut out = vec![0.0f32; count * n];
        if k == 0 {
            return out;
        }
        let scaled = Mat::<f32>::from_fn(count, k, |r, j| self.u[(start + r, j)] * self.sigma[j]);
        let product = &scaled * self.v.transpose();
        for r in 0..count {
            for c in 0..n {
                out[r * n + c] = product[(r, c)];
            }
        }
        out
    }
}

/// Rows per block so that one block of a reconstruction stays near 16 MiB.
pub fn rows_per_block(cols: usize) -> usize {
    ((4 << 20) / cols.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize;

    #[test]
    fn pack_then_unpack_matches_dequantized_parts() {
        let (m, n) = (130, 40);
        let u0: Vec<f32> = (0..m).map(|i| (i as f32 * 0.37).sin()).collect();
        let v0: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
        let u1: Vec<f32> = (0..m).map(|i| (i as f32 * 0.05).cos()).collect();
        let v1: Vec<f32> = (0..n).map(|i| (i as f32 * 0.71).sin()).collect();
        let u_parts = [quantize(&u0, 3), quantize(&u1, 8)];
        let v_parts = [quantize(&v0, 3), quantize(&v1, 8)];
        let packed = PackedMatrix::pack(m, n, vec![2.0, 0.5], &u_parts, &v_parts);
        assert_eq!(packed.check_sizes(), Ok(()));
        assert!(packed.stored_bytes() * 8 <= packed.modelled_bits(), "stored {} bytes, modelled {} bits", packed.stored_bytes(), packed.modelled_bits());

        let factors = packed.unpack().expect("sizes match");
        let mut expected = vec![0.0f32; m];
        dequantize_into(&u_parts[1].codes, &u_parts[1].scales, &u_parts[1].mins, &mut expected);
        assert_eq!(factors.u.col_as_slice(1), expected.as_slice());
    }

    #[test]
    fn unpack_rejects_short_parts() {
        let mut packed = PackedMatrix::pack(10, 10, vec![1.0], &[quantize(&[0.5; 10], 2)], &[quantize(&[0.5; 10], 2)]);
        packed.codes.pop();
        assert!(packed.unpack().is_err());
    }
}
