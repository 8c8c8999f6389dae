// Exact arithmetic shared by the quantizer kernels. The host puts this file
// in front of quantize.wgsl, cost_table.wgsl and dequantize.wgsl.
//
// The CPU quantizer rounds every step to nearest, ties to even. WGSL allows
// `x / y` to be 2.5 ULP off, lets an f32 → f16 conversion (`pack2x16float`)
// round to either neighbour, and lets implementations flush subnormals, so
// the steps that must match the CPU bit for bit are done here in integer
// arithmetic. Addition, subtraction and multiplication of f32 are correctly
// rounded in WGSL and are used as they are.

// Entries per quantization group; the last group of a vector may be shorter.
const GROUP_SIZE: u32 = 128u;

// Largest finite f16, the cap on a stored scale.
const F16_MAX: f32 = 65504.0;

// Largest finite f32, returned where a quotient overflows.
const F32_MAX: f32 = 0x1.fffffep+127f;

// Returns `value >> shift` rounded to nearest, ties to even, for shift in 1..=31.
fn shift_right_rounded(value: u32, shift: u32) -> u32 {
    let kept = value >> shift;
    let dropped = value & ((1u << shift) - 1u);
    let halfway = 1u << (shift - 1u);
    if dropped > halfway || (dropped == halfway && (kept & 1u) == 1u) {
        return kept + 1u;
    }
    return kept;
}

// Returns the bits of the f16 nearest to `x` (ties to even), as `half::f16::from_f32`
// does: values beyond the f16 range become ±infinity, tiny ones an f16 subnormal or ±0.
fn f16_bits_from_f32(x: f32) -> u32 {
    let bits = bitcast<u32>(x);
    let sign = (bits >> 16u) & 0x8000u;
    let exponent = i32((bits >> 23u) & 0xffu);
    let mantissa = bits & 0x7fffffu;

    // Infinity stays infinity; a NaN stays a quiet NaN with its top payload bits.
    if exponent == 255 {
        return sign | 0x7c00u | select(0u, 0x200u | (mantissa >> 13u), mantissa != 0u);
    }

    // Rebias the exponent from 127 to 15.
    let half_exponent = exponent - 112;
    if half_exponent >= 31 {
        return sign | 0x7c00u;
    }

    // f16 subnormal: the value in units of 2^-24 is the 24-bit significand
    // shifted right by 14 − half_exponent; beyond 24 places it rounds to zero.
    if half_exponent <= 0 {
        let shift = u32(14 - half_exponent);
        if shift > 24u {
            return sign;
        }
        return sign | shift_right_rounded(mantissa | 0x800000u, shift);
    }

    // Normal: drop 13 mantissa bits. A carry out of the mantissa moves into the
    // exponent, and from exponent 30 it gives infinity, as it should.
    return sign | shift_right_rounded((u32(half_exponent) << 23u) | mantissa, 13u);
}

// Returns the value of the f16 whose bits are the low 16 bits of `h`, built
// from its bits so that f16 subnormals survive on implementations that flush.
fn f32_from_f16_bits(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let exponent = (h >> 10u) & 0x1fu;
    let mantissa = h & 0x3ffu;
    if exponent == 31u {
        return bitcast<f32>(sign | 0x7f800000u | (mantissa << 13u));
    }
    if exponent != 0u {
        return bitcast<f32>(sign | ((exponent + 112u) << 23u) | (mantissa << 13u));
    }
    if mantissa == 0u {
        return bitcast<f32>(sign);
    }

    // f16 subnormal: mantissa · 2^-24 is a normal f32 whose leading bit is bit `lead`.
    let lead = firstLeadingBit(mantissa);
    return bitcast<f32>(sign | ((lead + 103u) << 23u) | ((mantissa << (23u - lead)) & 0x7fffffu));
}

// Returns a / b rounded to nearest, ties to even, as IEEE 754 division does,
// for a ≥ 0 and a normal b > 0. Quotients below the smallest normal f32 return
// 0 and quotients above the largest return F32_MAX; both callers map those to
// the same code or the same f16 as the exact quotient would give.
fn divide_rounded(a: f32, b: f32) -> f32 {
    let a_bits = bitcast<u32>(a);
    let b_bits = bitcast<u32>(b);
    let a_exponent = i32(a_bits >> 23u);
    let b_exponent = i32(b_bits >> 23u);
    if a_exponent == 0 {
        return 0.0;
    }
    if a_exponent == 255 {
        return F32_MAX;
    }

    // Normalise so that the significand quotient lies in [1, 2).
    var a_significand = (a_bits & 0x7fffffu) | 0x800000u;
    let b_significand = (b_bits & 0x7fffffu) | 0x800000u;
    var exponent = a_exponent - b_exponent + 127;
    if a_significand < b_significand {
        a_significand = a_significand << 1u;
        exponent -= 1;
    }

    // Long division, 8 quotient bits per step. The remainder stays below
    // b_significand < 2^24, so shifting it left by 8 still fits in a u32.
    var quotient = 1u;
    var remainder = a_significand - b_significand;
    for (var step = 0u; step < 3u; step++) {
        remainder = remainder << 8u;
        quotient = (quotient << 8u) | (remainder / b_significand);
        remainder = remainder % b_significand;
    }

    // `quotient` now has 25 bits: 24 significand bits and the rounding bit.
    // A non-zero remainder means the exact quotient lies above that bit.
    var significand = quotient >> 1u;
    if (quotient & 1u) == 1u && (remainder != 0u || (significand & 1u) == 1u) {
        significand += 1u;
    }
    if significand == 0x1000000u {
        significand = 0x800000u;
        exponent += 1;
    }
    if exponent >= 255 {
        return F32_MAX;
    }
    if exponent <= 0 {
        return 0.0;
    }
    return bitcast<f32>((u32(exponent) << 23u) | (significand & 0x7fffffu));
}

// Returns the stored f16 bits of a group's minimum (x) and scale (y) at
// `width` bits: scale = min((hi − lo) / (2^width − 1), F16_MAX).
fn group_parameter_bits(lo: f32, hi: f32, width: u32) -> vec2<u32> {
    let levels = f32((1u << width) - 1u);
    let scale = min(divide_rounded(hi - lo, levels), F16_MAX);
    return vec2<u32>(f16_bits_from_f32(lo), f16_bits_from_f32(scale));
}

// Returns the code of `x`: round((x − min) / scale) clamped to [0, max_code],
// or 0 when the scale is zero.
fn code_of(x: f32, min_value: f32, scale: f32, max_code: u32) -> u32 {
    if !(scale > 0.0) {
        return 0u;
    }
    let offset = x - min_value;
    if !(offset > 0.0) {
        return 0u;
    }
    return u32(min(round(divide_rounded(offset, scale)), f32(max_code)));
}

// Returns the reconstruction min + code · scale. The product is exact (at
// most 8 by 11 significant bits), so a fused multiply-add gives the same bits.
fn dequantized(code: u32, min_value: f32, scale: f32) -> f32 {
    return min_value + f32(code) * scale;
}

// Returns `x` unchanged, through a bit operation with `zero_bits` (always 0,
// read from a uniform buffer). The compiler cannot see through it, so it
// cannot fuse the product that produced `x` with the addition that follows
// into one FMA, which rounds once where the CPU rounds twice.
fn unfused(x: f32, zero_bits: u32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) | zero_bits);
}
