// Writes small safetensors files for the tests: an 8-byte little-endian
// header length, a JSON header with each tensor's dtype, shape and byte range
// in the data section, then the data. The header is padded with spaces to a
// multiple of 8 bytes, as the safetensors library writes it.

const BYTES_PER_ELEMENT = { F32: 4, F16: 2, BF16: 2, I64: 8 };

// Builds a safetensors file from [{name, dtype, shape, values}] and returns it
// as a Buffer. dtype is F32, F16, BF16 (values are rounded to nearest, ties to
// even) or I64 (values must be integers).
export function buildSafetensors(tensors, metadata = null) {
  const header = {};
  if (metadata) {
    header.__metadata__ = metadata;
  }
  const dataParts = [];
  let offset = 0;
  for (const { name, dtype, shape, values } of tensors) {
    if (!(dtype in BYTES_PER_ELEMENT)) {
      throw new Error(`buildSafetensors: dtype ${dtype} is not supported, use one of ${Object.keys(BYTES_PER_ELEMENT).join(', ')}`);
    }
    const count = shape.reduce((product, size) => product * size, 1);
    if (values.length !== count) {
      throw new Error(`buildSafetensors: tensor ${name} has ${values.length} values, shape ${shape} needs ${count}`);
    }
    const bytes = encodeValues(dtype, values);
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes.length] };
    dataParts.push(bytes);
    offset += bytes.length;
  }

  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const jsonBytes = Buffer.from(json, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(jsonBytes.length));
  return Buffer.concat([length, jsonBytes, ...dataParts]);
}

function encodeValues(dtype, values) {
  if (dtype === 'F32') {
    return Buffer.from(Float32Array.from(values).buffer);
  }
  if (dtype === 'I64') {
    return Buffer.from(BigInt64Array.from(values, (value) => BigInt(value)).buffer);
  }
  return Buffer.from(halfBits(dtype, values).buffer);
}

// Returns the `index.json` of a sharded checkpoint as a string: shards is
// [{fileName, tensors}] with tensors as buildSafetensors takes them.
export function buildShardIndex(shards) {
  const weightMap = {};
  let totalSize = 0;
  for (const { fileName, tensors } of shards) {
    for (const { name, dtype, shape } of tensors) {
      weightMap[name] = fileName;
      totalSize += BYTES_PER_ELEMENT[dtype] * shape.reduce((product, size) => product * size, 1);
    }
  }
  return JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap });
}

// File name of shard `number` (counted from 1) of `count`, as transformers
// names shards: model-00001-of-00003.safetensors.
export function shardName(number, count) {
  return `model-${String(number).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.safetensors`;
}

// Returns `count` reproducible values in [-1, 1) from a linear congruential
// generator, so that the test files are the same on every run.
export function seededValues(count, seed) {
  const values = new Float32Array(count);
  let state = (seed * 2654435761) >>> 0;
  for (let i = 0; i < count; i += 1) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    values[i] = state / 2 ** 31 - 1;
  }
  return values;
}

// Returns `count` reproducible values from a normal distribution with mean 0
// and standard deviation `std`, as a Float32Array: mulberry32 draws and the
// Box–Muller transform. It is the counterpart of normal_values in
// tests/common/mod.rs.
export function seededNormalValues(count, seed, std = 1) {
  const values = new Float32Array(count);
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 2 ** 32;
  };
  for (let i = 0; i < count; i += 2) {
    const radius = std * Math.sqrt(-2 * Math.log(uniform()));
    const angle = 2 * Math.PI * uniform();
    values[i] = radius * Math.cos(angle);
    if (i + 1 < count) {
      values[i + 1] = radius * Math.sin(angle);
    }
  }
  return values;
}

// ---- F16 and BF16 ----

// Returns the F16 or BF16 bits of `values` as a Uint16Array. A plain loop over
// the f32 bits, because a mapping function per element makes files of tens of
// millions of values take many seconds.
function halfBits(dtype, values) {
  const f32Values = values instanceof Float32Array ? values : Float32Array.from(values);
  const bits = new Uint32Array(f32Values.buffer, f32Values.byteOffset, f32Values.length);
  const half = new Uint16Array(bits.length);
  const convert = dtype === 'F16' ? f16FromF32Bits : bf16FromF32Bits;
  for (let i = 0; i < bits.length; i += 1) {
    half[i] = convert(bits[i]);
  }
  return half;
}

// BF16 is the upper half of an f32: round the lower 16 bits to nearest, ties
// to even. NaN keeps a set mantissa bit.
function bf16FromF32Bits(bits) {
  if ((bits & 0x7fffffff) >>> 0 > 0x7f800000) {
    return ((bits >>> 16) | 0x40) & 0xffff;
  }
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

// IEEE 754 binary16 from the f32 bits, rounded to nearest, ties to even, with
// subnormals and overflow to infinity.
function f16FromF32Bits(bits) {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) {
    return sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200);
  }
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) {
    return sign | 0x7c00;
  }
  if (halfExponent <= 0) {
    // Subnormal: the 24-bit significand shifted right by 14 − halfExponent bits.
    const shift = 14 - halfExponent;
    if (shift > 24) {
      return sign;
    }
    return sign | roundShifted(mantissa | 0x800000, shift);
  }
  // A carry out of the mantissa raises the exponent, which is the correct rounding.
  return sign | ((halfExponent << 10) + roundShifted(mantissa, 13));
}

// Returns value >> shift (shift from 1 to 24) rounded to nearest, ties to even.
function roundShifted(value, shift) {
  const quotient = value >>> shift;
  const remainder = value & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  return remainder > halfway || (remainder === halfway && (quotient & 1) === 1) ? quotient + 1 : quotient;
}

function f16ToF32(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) {
    return sign * mantissa * 2 ** -24;
  }
  if (exponent === 0x1f) {
    return mantissa === 0 ? sign * Infinity : Number.NaN;
  }
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

// Returns the values a file of `dtype` stores for `values`, as a Float32Array:
// rounded to F16 or BF16 and read back, or the f32 values for F32.
export function roundToDtype(dtype, values) {
  if (dtype === 'F32') {
    return Float32Array.from(values);
  }
  const half = halfBits(dtype, values);
  if (dtype === 'BF16') {
    const widened = new Uint32Array(half.length);
    for (let i = 0; i < half.length; i += 1) {
      widened[i] = half[i] << 16;
    }
    return new Float32Array(widened.buffer);
  }
  return Float32Array.from(half, f16ToF32);
}
