// One tile of the reconstruction Δ̂ = Û diag(σ) V̂ᵀ:
// out[r, c] = Σ_j (û[r, j] · σ_j) · v̂[c, j] for a block of rows and columns.
//
// Each workgroup computes a 16 × 16 block of the output. It walks the rank in
// steps of 16, staging a 16 × 16 tile of Û diag(σ) and one of V̂ in
// workgroup memory so that each factor entry is read from the buffer once per
// workgroup instead of once per output. The workgroup grid is 2-D by nature
// (x over columns, y over rows); the host keeps both below 65535.

struct Params {
    // Rows of this output tile.
    rows: u32,
    // Columns of this output tile.
    cols: u32,
    // Rank k: the columns of Û and V̂.
    rank: u32,
    // Padding to 16 bytes.
    _padding: u32,
}

// Rows of Û for this tile, row-major [rows, rank].
@group(0) @binding(0) var<storage, read> u_rows: array<f32>;
// Rows of V̂ for this tile's columns, row-major [cols, rank].
@group(0) @binding(1) var<storage, read> v_rows: array<f32>;
// Singular values σ_j, length rank.
@group(0) @binding(2) var<storage, read> sigma: array<f32>;
// The output tile, row-major [rows, cols].
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
// Sizes of this tile.
@group(0) @binding(4) var<uniform> params: Params;

const TILE: u32 = 16u;

// Û diag(σ) for the workgroup's rows: [row in block][j in step].
var<workgroup> u_tile: array<array<f32, TILE>, TILE>;
// V̂ for the workgroup's columns: [column in block][j in step].
var<workgroup> v_tile: array<array<f32, TILE>, TILE>;

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
) {
    let row = workgroup.y * TILE + local.y;
    let col = workgroup.x * TILE + local.x;
    let tile_first_col = workgroup.x * TILE;
    var sum = 0.0;

    for (var first = 0u; first < params.rank; first += TILE) {
        // 1. Stage the tiles: thread (x, y) loads entry j = first + x of
        //    row y of the Û block and of row y of the V̂ block, zero outside.
        let j = first + local.x;
        var u_value = 0.0;
        if row < params.rows && j < params.rank {
            u_value = u_rows[row * params.rank + j] * sigma[j];
        }
        u_tile[local.y][local.x] = u_value;
        let v_row = tile_first_col + local.y;
        var v_value = 0.0;
        if v_row < params.cols && j < params.rank {
            v_value = v_rows[v_row * params.rank + j];
        }
        v_tile[local.y][local.x] = v_value;
        workgroupBarrier();

        // 2. Accumulate this step's products in rank order.
        for (var t = 0u; t < TILE; t++) {
            sum = sum + u_tile[local.y][t] * v_tile[local.x][t];
        }
        workgroupBarrier();
    }

    if row < params.rows && col < params.cols {
        output[row * params.cols + col] = sum;
    }
}
