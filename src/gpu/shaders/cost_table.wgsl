// The cost table of a matrix, `crate::cost::build_cost_table` on the GPU:
// c[i, b] = σ_i² · (‖v_i − Q_b(v_i)‖² + ‖u_i − Q_b(u_i)‖²) and c[i, 0] = σ_i².
//
// One workgroup per table entry (triplet i, width b), on a 2-D grid because
// one dimension holds at most 65535 workgroups. Each lane quantizes whole
// groups of 128 entries and sums a group's squared error in entry order; lane
// 0 then adds the group sums in group order, as the CPU does, so the entry
// has the same bits as on the CPU.

struct Params {
    // Triplets in this dispatch.
    rank: u32,
    // Length m of each u_i.
    rows: u32,
    // Length n of each v_i.
    cols: u32,
    // Candidate widths, at most 16.
    width_count: u32,
    // Workgroups along x in the 2-D grid.
    grid_width: u32,
    // Always 0; see `unfused`.
    zero_bits: u32,
    // Padding to 16 bytes.
    _padding0: u32,
    _padding1: u32,
    // Candidate widths in bits, four to an element; 0 means the triplet is dropped.
    widths: array<vec4<u32>, 4>,
}

// Left singular vectors: u_i at [i · rows, (i + 1) · rows).
@group(0) @binding(0) var<storage, read> u: array<f32>;
// Right singular vectors: v_i at [i · cols, (i + 1) · cols).
@group(0) @binding(1) var<storage, read> v: array<f32>;
// Singular values σ_i.
@group(0) @binding(2) var<storage, read> sigma: array<f32>;
// Cost entries, row-major [rank, width_count].
@group(0) @binding(3) var<storage, read_write> cost: array<f32>;
// Sizes of this dispatch and the candidate widths.
@group(0) @binding(4) var<uniform> params: Params;

const LANES: u32 = 64u;

// Squared errors of the groups that the lanes handled in one round.
var<workgroup> round_errors: array<f32, LANES>;

// Returns entry `index` of the left (part 0) or right (part 1) singular vectors.
fn load(part: u32, index: u32) -> f32 {
    if part == 0u {
        return u[index];
    }
    return v[index];
}

// Returns the squared error of one group of `len` entries starting at `start`, summed in entry order.
fn group_squared_error(part: u32, start: u32, len: u32, width: u32) -> f32 {
    // 1. Range of the group, with the quantizer kernel's strict comparisons.
    var lo = load(part, start);
    var hi = lo;
    for (var i = 1u; i < len; i++) {
        let x = load(part, start + i);
        if x < lo {
            lo = x;
        }
        if x > hi {
            hi = x;
        }
    }

    // 2. Stored parameters.
    let bits = group_parameter_bits(lo, hi, width);
    let min_value = f32_from_f16_bits(bits.x);
    let scale = f32_from_f16_bits(bits.y);
    let max_code = (1u << width) - 1u;

    // 3. Squared error in entry order.
    var sum = 0.0;
    for (var i = 0u; i < len; i++) {
        let x = load(part, start + i);
        let error = x - dequantized(code_of(x, min_value, scale, max_code), min_value, scale);
        sum = sum + unfused(error * error, params.zero_bits);
    }
    return sum;
}

// Returns ‖x − Q_width(x)‖² of the vector of `len` entries at `base` in lane
// 0; the other lanes return a value to ignore. All lanes must call it.
fn vector_squared_error(part: u32, base: u32, len: u32, width: u32, lane: u32) -> f32 {
    let group_count = (len + GROUP_SIZE - 1u) / GROUP_SIZE;
    var total = 0.0;
    for (var first = 0u; first < group_count; first += LANES) {
        // 1. Each lane quantizes one group of this round.
        let g = first + lane;
        var group_error = 0.0;
        if g < group_count {
            let start = g * GROUP_SIZE;
            group_error = group_squared_error(part, base + start, min(GROUP_SIZE, len - start), width);
        }
        round_errors[lane] = group_error;
        workgroupBarrier();

        // 2. Lane 0 adds the round's group sums in group order.
        if lane == 0u {
            let round_groups = min(LANES, group_count - first);
            for (var t = 0u; t < round_groups; t++) {
                total = total + round_errors[t];
            }
        }
        workgroupBarrier();
    }
    return total;
}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let entry = workgroup.y * params.grid_width + workgroup.x;
    if entry >= params.rank * params.width_count {
        return;
    }
    let i = entry / params.width_count;
    let j = entry % params.width_count;
    let width = params.widths[j / 4u][j % 4u];
    let sigma_squared = sigma[i] * sigma[i];
    if width == 0u {
        if lane == 0u {
            cost[entry] = sigma_squared;
        }
        return;
    }

    let error_v = vector_squared_error(1u, i * params.cols, params.cols, width, lane);
    let error_u = vector_squared_error(0u, i * params.rows, params.rows, width, lane);
    if lane == 0u {
        cost[entry] = sigma_squared * (error_v + error_u);
    }
}
