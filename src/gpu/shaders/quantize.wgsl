// Quantizes a batch of vectors, each at its own width, with the min–max
// quantizer of `crate::quant::quantizer`, in two passes over one bind group:
//
// 1. `quantize_groups`: one invocation per group of up to 128 entries. It
//    finds the group's range, stores the f16 minimum and scale, writes the
//    codes and sums the squared error of the group in entry order.
// 2. `sum_vector_errors`: one invocation per vector. It adds the group sums
//    of its vector in group order, as the CPU does.
//
// Both passes use a 2-D grid of workgroups, because one dimension holds at
// most 65535 workgroups.

struct Params {
    // Groups in this dispatch.
    group_count: u32,
    // Vectors in this dispatch.
    vector_count: u32,
    // Workgroups along x in the grid of `quantize_groups`.
    group_grid_width: u32,
    // Workgroups along x in the grid of `sum_vector_errors`.
    vector_grid_width: u32,
    // Always 0; see `unfused`.
    zero_bits: u32,
    // Padding to 16 bytes.
    _padding0: u32,
    _padding1: u32,
    _padding2: u32,
}

struct GroupTask {
    // Index in `values` of the group's first entry.
    start: u32,
    // Entries in the group, 1 to 128.
    len: u32,
    // Bit width of the group's vector, 1 to 8.
    width: u32,
}

struct GroupResult {
    // f16 bits of the stored minimum.
    min_bits: u32,
    // f16 bits of the stored scale.
    scale_bits: u32,
    // Squared error of the group, summed in entry order.
    squared_error: f32,
}

struct VectorTask {
    // Index in `groups` of the vector's first group.
    first_group: u32,
    // Groups of the vector (0 for an empty vector).
    group_count: u32,
}

// Entries of all vectors of the batch, one vector after another.
@group(0) @binding(0) var<storage, read> values: array<f32>;
// One task per group, in vector order.
@group(0) @binding(1) var<storage, read> groups: array<GroupTask>;
// Codes, one byte each, least significant byte first; 32 words per group, so
// no two invocations write the same word.
@group(0) @binding(2) var<storage, read_write> codes: array<u32>;
// Stored parameters and squared error of each group.
@group(0) @binding(3) var<storage, read_write> group_results: array<GroupResult>;
// The groups of each vector.
@group(0) @binding(4) var<storage, read> vectors: array<VectorTask>;
// Squared error of each vector.
@group(0) @binding(5) var<storage, read_write> vector_errors: array<f32>;
// Sizes of this dispatch.
@group(0) @binding(6) var<uniform> params: Params;

const WORKGROUP_SIZE: u32 = 64u;

@compute @workgroup_size(64)
fn quantize_groups(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let g = (workgroup.y * params.group_grid_width + workgroup.x) * WORKGROUP_SIZE + lane;
    if g >= params.group_count {
        return;
    }
    let task = groups[g];
    let end = task.start + task.len;

    // 1. Range of the group. Strict comparisons keep the first of equal
    //    values, so the sign of a zero minimum is that of the first zero.
    var lo = values[task.start];
    var hi = lo;
    for (var i = task.start + 1u; i < end; i++) {
        let x = values[i];
        if x < lo {
            lo = x;
        }
        if x > hi {
            hi = x;
        }
    }

    // 2. Stored parameters, as f16 bits and as the f32 values the codes use.
    let bits = group_parameter_bits(lo, hi, task.width);
    let min_value = f32_from_f16_bits(bits.x);
    let scale = f32_from_f16_bits(bits.y);
    let max_code = (1u << task.width) - 1u;

    // 3. Codes, four to a word, and the squared error summed in entry order.
    var sum = 0.0;
    var word = 0u;
    for (var i = 0u; i < task.len; i++) {
        let x = values[task.start + i];
        let code = code_of(x, min_value, scale, max_code);
        let error = x - dequantized(code, min_value, scale);
        sum = sum + unfused(error * error, params.zero_bits);
        word = word | (code << ((i & 3u) * 8u));
        if (i & 3u) == 3u || i + 1u == task.len {
            codes[g * (GROUP_SIZE / 4u) + (i >> 2u)] = word;
            word = 0u;
        }
    }
    group_results[g] = GroupResult(bits.x, bits.y, sum);
}

@compute @workgroup_size(64)
fn sum_vector_errors(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let v = (workgroup.y * params.vector_grid_width + workgroup.x) * WORKGROUP_SIZE + lane;
    if v >= params.vector_count {
        return;
    }
    let task = vectors[v];
    var total = 0.0;
    for (var g = task.first_group; g < task.first_group + task.group_count; g++) {
        total = total + group_results[g].squared_error;
    }
    vector_errors[v] = total;
}
