//! Device limits and how large inputs are cut to fit them.
//!
//! Two limits shape every dispatch:
//!
//! - **Storage binding size.** One storage binding covers at most
//!   `max_storage_buffer_binding_size` bytes: 128 MiB on most browsers and on
//!   Mesa's lavapipe. Larger inputs and outputs are split into tiles (chunks of
//!   vectors or triplets, blocks of rows and columns), each with its own
//!   buffers and dispatch.
//! - **Workgroups per dimension.** A dispatch has at most 65535 workgroups
//!   along each dimension. Chromium returned all-zero output without an error
//!   for a larger 1-D dispatch, so every kernel that may need more uses a 2-D
//!   grid from [`Tiling::grid`] and recovers its linear index as
//!   `(workgroup.y · grid.x + workgroup.x) · workgroup size + lane`.
//!
//! The binding size is further capped at [`MAX_BINDING_BYTES`], so every bit
//! position inside one binding fits the u32 indices the kernels use.

use super::GpuError;

/// Cap on the bytes of one storage binding: 256 MiB is 2^31 bits, so a bit position in it fits a u32.
pub const MAX_BINDING_BYTES: u64 = 256 << 20;

/// Tile limits of one device: binding size and grid size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Bytes one storage binding (and so one tile's buffer) may cover.
    pub max_binding_bytes: u64,
    /// Workgroups along one dimension of a dispatch.
    pub max_workgroups_per_dimension: u32,
}

/// The workgroup counts of one dispatch along x and y.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Workgroups along x; kernels read it from their parameters as `grid_width`.
    pub x: u32,
    /// Workgroups along y.
    pub y: u32,
}

impl Tiling {
    /// Derives the tiling of a device from its `limits`.
    pub fn from_limits(limits: &wgpu::Limits) -> Tiling {
        let binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size).min(MAX_BINDING_BYTES);
        Tiling { max_binding_bytes: binding, max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension }
    }

    /// This tiling with each value lowered to at most `other`'s, and at least the smallest that works.
    pub fn clamped_to(self, other: &Tiling) -> Tiling {
        Tiling {
            max_binding_bytes: self.max_binding_bytes.min(other.max_binding_bytes).max(4096),
            max_workgroups_per_dimension: self.max_workgroups_per_dimension.min(other.max_workgroups_per_dimension).max(1),
        }
    }

    /// Elements of `element_bytes` bytes that fit in one binding.
    pub fn elements_per_binding(&self, element_bytes: u64) -> u64 {
        self.max_binding_bytes / element_bytes
    }

    /// Chooses a 2-D grid of at least `workgroups` workgroups, x filled first.
    ///
    /// Fails when even a square grid at the per-dimension limit is too small.
    /// Callers cut their runs with [`Tiling::split_runs`], which keeps below that.
    pub fn grid(&self, workgroups: u64, kernel: &'static str) -> Result<Grid, GpuError> {
        let max = self.max_workgroups_per_dimension as u64;
        let x = workgroups.clamp(1, max);
        let y = workgroups.div_ceil(x).max(1);
        if y > max {
            return Err(GpuError::InvalidInput {
                kernel,
                message: format!("{workgroups} workgroups exceed a {max} × {max} grid; the tile should have been smaller"),
            });
        }
        Ok(Grid { x: x as u32, y: y as u32 })
    }
}

/// Resources one item (a vector, a triplet) takes in a dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Bytes it takes in the largest buffer of the dispatch.
    pub bytes: u64,
    /// Invocations it takes in the dispatch.
    pub invocations: u64,
}

impl Tiling {
    /// Invocations one dispatch can hold: a full square grid of `workgroup_size`-invocation workgroups.
    pub fn invocations_per_dispatch(&self, workgroup_size: u64) -> u64 {
        let max = self.max_workgroups_per_dimension as u64;
        max * max * workgroup_size
    }

    /// Splits `items` into consecutive runs that each fit one binding and one grid.
    ///
    /// Returns the end index of each run. Fails on an item that does not fit
    /// alone, naming its index with `what`.
    pub fn split_runs(
        &self,
        items: impl Iterator<Item = Footprint>,
        workgroup_size: u64,
        kernel: &'static str,
        what: &str,
    ) -> Result<Vec<usize>, GpuError> {
        let capacity = Footprint { bytes: self.max_binding_bytes, invocations: self.invocations_per_dispatch(workgroup_size) };
        let mut ends = Vec::new();
        let mut filled = Footprint { bytes: 0, invocations: 0 };
        let mut count = 0usize;
        for (index, item) in items.enumerate() {
            if item.bytes > capacity.bytes || item.invocations > capacity.invocations {
                return Err(GpuError::InvalidInput {
                    kernel,
                    message: format!(
                        "{what} {index} needs {} bytes and {} invocations in one dispatch, above the limits of {} bytes and {} invocations",
                        item.bytes, item.invocations, capacity.bytes, capacity.invocations
                    ),
                });
            }
            if filled.bytes + item.bytes > capacity.bytes || filled.invocations + item.invocations > capacity.invocations {
                ends.push(index);
                filled = Footprint { bytes: 0, invocations: 0 };
            }
            filled.bytes += item.bytes;
            filled.invocations += item.invocations;
            count = index + 1;
        }
        if count > 0 && ends.last() != Some(&count) {
            ends.push(count);
        }
        Ok(ends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiling(max_workgroups_per_dimension: u32) -> Tiling {
        Tiling { max_binding_bytes: 128 << 20, max_workgroups_per_dimension }
    }

    #[test]
    fn grid_stays_one_row_below_limit() {
        assert_eq!(tiling(65535).grid(1000, "test").unwrap(), Grid { x: 1000, y: 1 });
        assert_eq!(tiling(65535).grid(0, "test").unwrap(), Grid { x: 1, y: 1 });
    }

    #[test]
    fn grid_wraps_above_limit() {
        let grid = tiling(65535).grid(65536, "test").unwrap();
        assert_eq!(grid, Grid { x: 65535, y: 2 });
        assert!(grid.x as u64 * grid.y as u64 >= 65536);
    }

    #[test]
    fn grid_rejects_beyond_square() {
        assert!(tiling(10).grid(101, "test").is_err());
        assert_eq!(tiling(10).grid(100, "test").unwrap(), Grid { x: 10, y: 10 });
    }

    #[test]
    fn binding_capped_for_u32_bit_positions() {
        let limits = wgpu::Limits { max_storage_buffer_binding_size: 2 << 30, max_buffer_size: 2 << 30, ..wgpu::Limits::default() };
        assert_eq!(Tiling::from_limits(&limits).max_binding_bytes, MAX_BINDING_BYTES);
        assert_eq!(Tiling::from_limits(&wgpu::Limits::default()).max_binding_bytes, 128 << 20);
    }

    fn bytes(sizes: &[u64]) -> impl Iterator<Item = Footprint> + '_ {
        sizes.iter().map(|&bytes| Footprint { bytes, invocations: 1 })
    }

    #[test]
    fn runs_split_at_binding_size() {
        let tiling = Tiling { max_binding_bytes: 8, max_workgroups_per_dimension: 65535 };
        assert_eq!(tiling.split_runs(bytes(&[4, 4, 4, 8, 1]), 64, "test", "vector").unwrap(), vec![2, 3, 4, 5]);
        assert_eq!(tiling.split_runs(bytes(&[]), 64, "test", "vector").unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn runs_split_at_grid_size() {
        // A 2 × 2 grid of 64-invocation workgroups has room for 256 invocations.
        let tiling = Tiling { max_binding_bytes: 1 << 20, max_workgroups_per_dimension: 2 };
        let items = [100u64, 100, 100, 256].map(|invocations| Footprint { bytes: 4, invocations });
        assert_eq!(tiling.split_runs(items.into_iter(), 64, "test", "triplet").unwrap(), vec![2, 3, 4]);
    }

    #[test]
    fn runs_reject_oversized_item() {
        let tiling = Tiling { max_binding_bytes: 8, max_workgroups_per_dimension: 65535 };
        let error = tiling.split_runs(bytes(&[4, 9]), 64, "test", "vector").unwrap_err();
        assert!(error.to_string().contains("vector 1"), "{error}");
    }
}
