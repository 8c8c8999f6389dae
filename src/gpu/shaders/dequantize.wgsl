// Dequantizes the packed triplets of a compressed matrix (`crate::packed`):
// reads each code from the least-significant-bit-first stream and writes
// min + code · scale with the group's stored f16 minimum and scale.
//
// One invocation per entry, on a 2-D grid of workgroups because one
// dimension holds at most 65535 workgroups. Entry e of the dispatch is entry
// p = e mod (rows + cols) of triplet t = e / (rows + cols), where entries
// [0, rows) are û_t and [rows, rows + cols) are v̂_t, the order of the stream.

struct Params {
    // Entries in this dispatch: triplets × (rows + cols).
    entry_count: u32,
    // Length m of each û_i.
    rows: u32,
    // Length n of each v̂_i.
    cols: u32,
    // Workgroups along x in the 2-D grid.
    grid_width: u32,
}

struct TripletTask {
    // Bit width of the triplet's codes, 1 to 8.
    width: u32,
    // Position in `codes`, in bits, of the triplet's first code.
    first_bit: u32,
    // Index in `scales` and `mins` of the first group of û_t.
    first_group: u32,
}

// Code stream, least significant bit first; byte k of the stream is byte k % 4 of word k / 4.
@group(0) @binding(0) var<storage, read> codes: array<u32>;
// Width and stream position of each triplet.
@group(0) @binding(1) var<storage, read> triplets: array<TripletTask>;
// f16 bits of the group scales, two to a word, the lower half first.
@group(0) @binding(2) var<storage, read> scales: array<u32>;
// f16 bits of the group minimums, in the layout of `scales`.
@group(0) @binding(3) var<storage, read> mins: array<u32>;
// Dequantized entries, [triplets, rows + cols].
@group(0) @binding(4) var<storage, read_write> factors: array<f32>;
// Sizes of this dispatch.
@group(0) @binding(5) var<uniform> params: Params;

const WORKGROUP_SIZE: u32 = 64u;

// Returns the `width`-bit code that starts at bit `bit` of the stream.
fn read_code(bit: u32, width: u32) -> u32 {
    let word = bit >> 5u;
    let shift = bit & 31u;
    var value = codes[word] >> shift;
    if shift + width > 32u {
        value = value | (codes[word + 1u] << (32u - shift));
    }
    return value & ((1u << width) - 1u);
}

// Returns the f16 bits of element `index` of a two-to-a-word array, given the word that holds it.
fn half_of(word: u32, index: u32) -> u32 {
    return (word >> ((index & 1u) * 16u)) & 0xffffu;
}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let e = (workgroup.y * params.grid_width + workgroup.x) * WORKGROUP_SIZE + lane;
    if e >= params.entry_count {
        return;
    }

    // 1. Which triplet, which part and which group the entry belongs to.
    let per_triplet = params.rows + params.cols;
    let t = e / per_triplet;
    let p = e % per_triplet;
    let task = triplets[t];
    let u_groups = (params.rows + GROUP_SIZE - 1u) / GROUP_SIZE;
    var group = task.first_group + p / GROUP_SIZE;
    if p >= params.rows {
        group = task.first_group + u_groups + (p - params.rows) / GROUP_SIZE;
    }

    // 2. The code and the stored parameters of its group.
    let code = read_code(task.first_bit + p * task.width, task.width);
    let min_value = f32_from_f16_bits(half_of(mins[group >> 1u], group));
    let scale = f32_from_f16_bits(half_of(scales[group >> 1u], group));

    // 3. The reconstruction, with the CPU's rounding (see `dequantized`).
    factors[e] = dequantized(code, min_value, scale);
}
