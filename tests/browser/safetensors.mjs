// Writes small safetensors files for the tests: an 8-byte little-endian
// header length, a JSON header with each tensor's dtype, shape and byte range
// in the data section, then the data. The header is padded with spaces to a
// multiple of 8 bytes, as the safetensors library writes it.

const BYTES_PER_ELEMENT = { F32: 4 };

// Builds a safetensors file from [{name, dtype: 'F32', shape, values}] and
// returns it as a Buffer.
export function buildSafetensors(tensors, metadata = null) {
  const header = {};
  if (metadata) {
    header.__metadata__ = metadata;
  }
  const dataParts = [];
  let offset = 0;
  for (const { name, dtype, shape, values } of tensors) {
    if (!(dtype in BYTES_PER_ELEMENT)) {
      throw new Error(`buildSafetensors: dtype ${dtype} is not supported, use F32`);
    }
    const count = shape.reduce((product, size) => product * size, 1);
    if (values.length !== count) {
      throw new Error(`buildSafetensors: tensor ${name} has ${values.length} values, shape ${shape} needs ${count}`);
    }
    const bytes = Buffer.from(Float32Array.from(values).buffer);
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
