// Figures of a result, drawn with Plotly.js (npm package plotly.js-dist-min,
// copied to www/vendor/ by scripts/build-web.sh). The figures only display
// numbers that the WebAssembly core returned. Where a figure sums values
// (triplets per width, bytes per tensor type), Plotly's histogram trace with
// histfunc 'sum' does it.

import { METHOD_LABELS, METHODS } from './methods.js';
import { formatBytes, formatFraction } from './format.js';

const PLOTLY_URL = new URL('./vendor/plotly.min.js', import.meta.url);

const PLOT_CONFIG = {
  displaylogo: false,
  responsive: true,
  modeBarButtonsToRemove: ['lasso2d', 'select2d'],
};

const FONT = {
  family: 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif',
  size: 13,
  color: '#1d2330',
};

// Colour of each bit width: light grey for dropped triplets, a viridis ramp
// from 1 to 8 bits, dark purple for f16 (low-rank).
const WIDTH_COLOURS = {
  0: '#d5dae3',
  1: '#fde725',
  2: '#b5de2b',
  3: '#6ece58',
  4: '#35b779',
  5: '#1f9e89',
  6: '#26828e',
  7: '#31688e',
  8: '#3e4989',
  16: '#440154',
};
const OTHER_WIDTH_COLOUR = '#7f7f7f';

export const METHOD_COLOURS = {
  adamix: '#2457c5',
  'delta-come': '#e8743b',
  'low-rank': '#19a979',
  bitdelta: '#945ecf',
};

const TENSOR_TYPE_LABELS = {
  attention: 'Attention',
  mlp: 'MLP',
  embedding: 'Embeddings',
  other: 'Other',
};

// ---- Loading Plotly ----

let plotlyPromise = null;

// Loads the Plotly bundle once, when the first figure is drawn, so that the
// page starts without parsing it (4.8 MB in plotly.js-dist-min 4.1.2).
export function loadPlotly() {
  if (window.Plotly) {
    return Promise.resolve(window.Plotly);
  }
  plotlyPromise ??= new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = PLOTLY_URL.href;
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => {
      plotlyPromise = null;
      reject(new Error(`The plotting library ${PLOTLY_URL.pathname} could not be loaded. Copy it into www/vendor/ with scripts/build-web.sh.`));
    };
    document.head.append(script);
  });
  return plotlyPromise;
}

// ---- Helpers ----

export function widthLabel(width) {
  if (width === 0) {
    return 'dropped';
  }
  if (width === 16) {
    return '16-bit (f16)';
  }
  return `${width}-bit`;
}

function widthColour(width) {
  return WIDTH_COLOURS[width] ?? OTHER_WIDTH_COLOUR;
}

// Drops the ".weight" suffix that every compressed matrix has, so that axis
// labels stay short. Hover texts show the full name.
function shortName(name) {
  return name.replace(/\.weight$/, '');
}

// The rows that have a stored SVD: a spectrum and an allocation.
export function spectralRows(rows) {
  return rows.filter((row) => row.matrix && row.spectrum?.length > 0 && row.allocation?.length > 0);
}

// The distinct widths in the allocations, in ascending order.
function widthsPresent(rows) {
  const widths = new Set();
  for (const row of rows) {
    for (const width of row.allocation) {
      widths.add(width);
    }
  }
  return [...widths].sort((a, b) => a - b);
}

function baseLayout(title, extra = {}) {
  return {
    title: { text: title, font: { size: 15 }, x: 0.01, xanchor: 'left' },
    font: FONT,
    paper_bgcolor: '#ffffff',
    plot_bgcolor: '#ffffff',
    margin: { l: 70, r: 20, t: 50, b: 60 },
    hoverlabel: { font: { size: 12 } },
    ...extra,
  };
}

function axis(title, extra = {}) {
  return {
    title: { text: title },
    automargin: true,
    gridcolor: '#e6e9ef',
    zerolinecolor: '#c9ced8',
    ...extra,
  };
}

// Returns a figure with no data and a centred sentence that gives the reason.
function emptyFigure(title, message) {
  return {
    data: [],
    layout: baseLayout(title, {
      xaxis: { visible: false },
      yaxis: { visible: false },
      annotations: [{
        text: message, showarrow: false, xref: 'paper', yref: 'paper', x: 0.5, y: 0.5,
        font: { size: 14, color: '#5b6475' },
      }],
    }),
  };
}

// ---- (a) Spectrum of one matrix ----

// Singular values of one matrix on a log axis, one marker per candidate
// triplet, coloured by the width it was given (one legend entry per width).
export function spectrumFigure(row, method) {
  if (!row || !row.spectrum?.length) {
    return emptyFigure('Singular values', `${METHOD_LABELS[method] ?? method} stores no singular vectors.`);
  }
  const title = `Singular values of ${row.name}`;
  const traces = widthsPresent([row]).map((width) => {
    const x = [];
    const y = [];
    row.allocation.forEach((allocated, index) => {
      if (allocated === width && index < row.spectrum.length) {
        x.push(index + 1);
        y.push(row.spectrum[index]);
      }
    });
    return {
      type: 'scatter',
      mode: 'markers',
      name: widthLabel(width),
      x,
      y,
      marker: { color: widthColour(width), size: 7, line: { width: 0.6, color: '#1d2330' } },
      hovertemplate: `σ<sub>%{x}</sub> = %{y:.4g}<br>${widthLabel(width)}<extra></extra>`,
    };
  });
  return {
    data: traces,
    layout: baseLayout(title, {
      xaxis: axis('Singular index i (1 = largest)'),
      yaxis: axis('Singular value σᵢ of ΔW (log scale)', { type: 'log', exponentformat: 'power' }),
      legend: { title: { text: 'Allocated width' } },
    }),
  };
}

// ---- (b) Heatmap of widths ----

// A colour scale that gives each present width one flat band, with band
// edges halfway between neighbouring widths, so that the colour bar reads
// as a legend of widths.
function steppedColourScale(widths) {
  const low = widths[0];
  const high = widths[widths.length - 1];
  if (low === high) {
    return [[0, widthColour(low)], [1, widthColour(low)]];
  }
  const position = (value) => (value - low) / (high - low);
  const scale = [];
  widths.forEach((width, index) => {
    const start = index === 0 ? 0 : position((widths[index - 1] + width) / 2);
    const end = index === widths.length - 1 ? 1 : position((width + widths[index + 1]) / 2);
    scale.push([start, widthColour(width)], [end, widthColour(width)]);
  });
  return scale;
}

// Allocated width of every candidate triplet of every matrix: one row per
// matrix in file order, one column per singular index. Cells past a matrix's
// candidates are empty.
export function widthHeatmapFigure(rows, method, ratio) {
  const title = `Allocated bit widths across the model (${METHOD_LABELS[method] ?? method}, ${formatFraction(ratio)})`;
  const matrices = spectralRows(rows);
  if (matrices.length === 0) {
    return emptyFigure(title, `${METHOD_LABELS[method] ?? method} stores no singular vectors,<br>so there are no widths to show.`);
  }
  const columns = Math.max(...matrices.map((row) => row.allocation.length));
  const z = matrices.map((row) => {
    const line = new Array(columns).fill(null);
    row.allocation.forEach((width, index) => {
      line[index] = width;
    });
    return line;
  });
  const widths = widthsPresent(matrices);
  return {
    data: [{
      type: 'heatmap',
      z,
      x: Array.from({ length: columns }, (_, index) => index + 1),
      y: matrices.map((row) => shortName(row.name)),
      colorscale: steppedColourScale(widths),
      zmin: widths[0],
      zmax: widths[widths.length - 1],
      xgap: 0,
      ygap: 1,
      colorbar: {
        title: { text: 'Width' },
        tickvals: widths,
        ticktext: widths.map(widthLabel),
        outlinewidth: 0,
      },
      hovertemplate: '%{y}<br>singular index %{x}<br>width %{z} bits<extra></extra>',
    }],
    layout: baseLayout(title, {
      height: Math.min(900, 220 + 14 * matrices.length),
      xaxis: axis('Singular index i (1 = largest)', { showgrid: false }),
      yaxis: axis('Matrix (file order, top = first)', { autorange: 'reversed', showgrid: false, tickfont: { size: 10 } }),
    }),
  };
}

// ---- (c) Relative error per matrix, by method ----

// Grouped bars of each compressed matrix's relative error, one series per
// method in `results` (a Map from method name to {summary, rows}).
export function errorBarsFigure(results, ratio) {
  const methods = METHODS.filter((method) => results.has(method));
  const title = methods.length > 1
    ? `Relative error per matrix, by method (${formatFraction(ratio)})`
    : `Relative error per matrix (${METHOD_LABELS[methods[0]] ?? methods[0]}, ${formatFraction(ratio)})`;
  const traces = methods.map((method) => {
    const rows = results.get(method).rows.filter((row) => row.matrix && row.rel_error !== null && row.rel_error !== undefined);
    return {
      type: 'bar',
      name: METHOD_LABELS[method] ?? method,
      x: rows.map((row) => shortName(row.name)),
      y: rows.map((row) => row.rel_error),
      marker: { color: METHOD_COLOURS[method] },
      hovertemplate: `%{x}<br>${METHOD_LABELS[method] ?? method}: %{y:.4f}<extra></extra>`,
    };
  });
  if (traces.every((trace) => trace.x.length === 0)) {
    return emptyFigure(title, 'No compressed matrices.');
  }
  const layout = baseLayout(title, {
    height: 480,
    barmode: 'group',
    bargap: 0.25,
    bargroupgap: 0.05,
    xaxis: axis('Matrix (file order)', { tickangle: -60, tickfont: { size: 10 } }),
    yaxis: axis('Relative error (unitless)', { rangemode: 'tozero' }),
    legend: { title: { text: 'Method' }, orientation: 'h', y: 1.02, yanchor: 'bottom', x: 1, xanchor: 'right' },
  });
  if (methods.length === 1) {
    layout.annotations = [compareHint()];
  }
  return { data: traces, layout };
}

function compareHint() {
  return {
    text: 'Compare all methods adds the other methods.', showarrow: false, xref: 'paper', yref: 'paper',
    x: 1, y: 1.02, xanchor: 'right', yanchor: 'bottom', font: { size: 12, color: '#5b6475' },
  };
}

// ---- Overall error by method ----

// One bar per method in `results`: the overall relative error over all
// compressed matrices, with the file size in the hover text.
export function methodTotalsFigure(results, ratio) {
  const methods = METHODS.filter((method) => results.has(method));
  const title = `Overall relative error by method (${formatFraction(ratio)})`;
  const summaries = methods.map((method) => results.get(method).summary);
  const layout = baseLayout(title, {
    bargap: 0.35,
    xaxis: axis('Method', { type: 'category' }),
    yaxis: axis('Overall relative error (unitless)', { rangemode: 'tozero' }),
  });
  if (methods.length === 1) {
    layout.annotations = [compareHint()];
  }
  return {
    data: [{
      type: 'bar',
      x: methods.map((method) => METHOD_LABELS[method] ?? method),
      y: summaries.map((summary) => summary.rel_error_total),
      customdata: summaries.map((summary) => formatBytes(summary.compressed_bytes)),
      text: summaries.map((summary) => summary.rel_error_total.toFixed(4)),
      textposition: 'outside',
      cliponaxis: false,
      marker: { color: methods.map((method) => METHOD_COLOURS[method]) },
      hovertemplate: '%{x}: relative error %{y:.4f}, file %{customdata}<extra></extra>',
    }],
    layout,
  };
}

// ---- (d) Widths histogram and bytes per tensor type ----

// Stored triplets per width over the whole model. Each matrix contributes its
// width_counts, and Plotly sums them per width.
export function widthHistogramFigure(rows, method) {
  const title = `Stored singular triplets per bit width, whole model (${METHOD_LABELS[method] ?? method})`;
  const byWidth = new Map();
  for (const row of rows.filter((candidate) => candidate.matrix)) {
    for (const [key, count] of Object.entries(row.width_counts ?? {})) {
      const width = Number(key);
      if (width > 0 && count > 0) {
        if (!byWidth.has(width)) {
          byWidth.set(width, { x: [], y: [] });
        }
        byWidth.get(width).x.push(widthLabel(width));
        byWidth.get(width).y.push(count);
      }
    }
  }
  if (byWidth.size === 0) {
    return emptyFigure(title, `${METHOD_LABELS[method] ?? method} stores no singular triplets.`);
  }
  const widths = [...byWidth.keys()].sort((a, b) => a - b);
  return {
    data: widths.map((width) => ({
      type: 'histogram',
      histfunc: 'sum',
      name: widthLabel(width),
      x: byWidth.get(width).x,
      y: byWidth.get(width).y,
      marker: { color: widthColour(width), line: { width: 0.6, color: '#1d2330' } },
      hovertemplate: '%{x}: %{y} triplets<extra></extra>',
      showlegend: false,
    })),
    layout: baseLayout(title, {
      barmode: 'stack',
      bargap: 0.2,
      xaxis: axis('Bit width of the triplet', {
        type: 'category', categoryorder: 'array', categoryarray: widths.map(widthLabel),
      }),
      yaxis: axis('Triplets (count)', { rangemode: 'tozero' }),
    }),
  };
}

// Share of the file body's bytes per tensor type. Plotly sums the bytes of
// each type and normalises them to percent (histnorm 'percent').
export function bytesByTypeFigure(rows, method) {
  const title = `Share of the file body per tensor type (${METHOD_LABELS[method] ?? method})`;
  const stored = rows.filter((row) => Number(row.bytes) > 0);
  if (stored.length === 0) {
    return emptyFigure(title, 'No stored tensors.');
  }
  const types = Object.keys(TENSOR_TYPE_LABELS);
  const label = (row) => TENSOR_TYPE_LABELS[row.tensor_type] ?? row.tensor_type ?? 'Other';
  return {
    data: [{
      type: 'histogram',
      histfunc: 'sum',
      histnorm: 'percent',
      x: stored.map(label),
      y: stored.map((row) => Number(row.bytes)),
      marker: { color: '#2457c5' },
      hovertemplate: '%{x}: %{y:.1f}% of the bytes<extra></extra>',
    }],
    layout: baseLayout(title, {
      bargap: 0.35,
      xaxis: axis('Tensor type', {
        type: 'category', categoryorder: 'array', categoryarray: types.map((type) => TENSOR_TYPE_LABELS[type]),
      }),
      yaxis: axis('Share of stored bytes (%)', { rangemode: 'tozero', ticksuffix: '%' }),
    }),
  };
}

// Draws or updates one figure in `element`. Plotly.react reuses the existing
// plot, which keeps updates from the budget explorer fast.
export async function drawFigure(element, figure) {
  const Plotly = await loadPlotly();
  await Plotly.react(element, figure.data, figure.layout, PLOT_CONFIG);
  element.dataset.traces = String(figure.data.length);
}
