// Number formatting for the page. Sizes use decimal units (1 MB = 10^6 bytes).

const DASH = '—';

export function formatBytes(bytes) {
  const value = Number(bytes);
  if (value >= 1e9) {
    return `${(value / 1e9).toFixed(2)} GB`;
  }
  if (value >= 1e6) {
    return `${(value / 1e6).toFixed(2)} MB`;
  }
  if (value >= 1e3) {
    return `${(value / 1e3).toFixed(1)} kB`;
  }
  return `${value} B`;
}

// Formats a relative error with 4 decimals, or a dash where there is none.
export function formatError(value) {
  if (value === null || value === undefined) {
    return DASH;
  }
  return Number(value).toFixed(4);
}

// Formats a small non-negative quantity such as ‖ΔW‖/‖W‖: 4 decimals, or
// scientific notation below 0.001 so that tiny deltas do not read as zero.
export function formatSmall(value) {
  if (value === null || value === undefined) {
    return DASH;
  }
  const number = Number(value);
  if (number !== 0 && Math.abs(number) < 1e-3) {
    return number.toExponential(2);
  }
  return number.toFixed(4);
}

// Formats a size ratio such as 0.0625 as "1/16", or 0.0613 as "1/16.31".
// A ratio above 1, which only a typed target size gives, reads "500×".
export function formatFraction(ratio) {
  const number = Number(ratio);
  if (!(number > 0)) {
    return String(ratio);
  }
  if (number > 1) {
    return `${Number(number.toPrecision(3))}×`;
  }
  const denominator = 1 / number;
  const rounded = Math.round(denominator);
  if (Math.abs(denominator - rounded) < 1e-9) {
    return `1/${rounded}`;
  }
  return `1/${denominator.toFixed(2)}`;
}

export function formatShape(shape) {
  if (!shape || shape.length === 0) {
    return 'scalar';
  }
  return shape.join(' × ');
}

// Formats {"2": 40, "3": 5} as "2-bit × 40, 3-bit × 5", in width order.
// Width 0 (dropped triplets) and widths with no triplets are left out.
export function formatWidthCounts(widthCounts) {
  const entries = Object.entries(widthCounts ?? {})
    .map(([width, count]) => [Number(width), Number(count)])
    .filter(([width, count]) => width > 0 && count > 0)
    .sort((a, b) => a[0] - b[0]);
  if (entries.length === 0) {
    return DASH;
  }
  return entries.map(([width, count]) => `${width}-bit × ${count}`).join(', ');
}

export function formatSeconds(seconds) {
  const value = Number(seconds);
  if (value < 60) {
    return `${value.toFixed(1)} s`;
  }
  const totalSeconds = Math.round(value);
  return `${Math.floor(totalSeconds / 60)} min ${totalSeconds % 60} s`;
}

export function formatCount(value) {
  return Number(value).toLocaleString('en-US');
}

// Formats a duration in milliseconds: one decimal below 10 ms, whole
// milliseconds below 10 s, else seconds.
export function formatMilliseconds(milliseconds) {
  const value = Number(milliseconds);
  if (value < 10) {
    return `${value.toFixed(1)} ms`;
  }
  if (value < 10_000) {
    return `${Math.round(value)} ms`;
  }
  return formatSeconds(value / 1000);
}
