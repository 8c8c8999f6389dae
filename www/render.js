// DOM builders for the file lists, the pairing report, the tensor table and
// the totals. They only display data, and app.js owns the state.

import {
  formatBytes, formatCount, formatError, formatFraction, formatSeconds, formatShape,
  formatSmall, formatWidthCounts,
} from './format.js';

function element(tag, attributes = {}, text = null) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, value);
  }
  if (text !== null) {
    node.textContent = text;
  }
  return node;
}

// Fills a file list: the checkpoint files, then the other files and the
// subfolders that are not read. Returns the <li> of each checkpoint file, in
// order, so that the caller can add what inspecting the file found.
export function renderFileList(list, files, ignoredNames, ignoredFolders = []) {
  list.replaceChildren();
  const items = files.map((file) => {
    const item = element('li');
    item.append(
      element('span', { class: 'file-name' }, file.name),
      element('span', { class: 'file-size' }, formatBytes(file.size)),
      element('span', { class: 'file-info' }),
    );
    list.append(item);
    return item;
  });
  if (ignoredNames.length > 0) {
    list.append(element('li', { class: 'ignored' }, `Ignored (not a checkpoint file): ${ignoredNames.join(', ')}`));
  }
  if (ignoredFolders.length > 0) {
    list.append(element('li', { class: 'ignored' }, `Not read (subfolders, as the CLI reads only a folder's own files): ${ignoredFolders.join(', ')}`));
  }
  return items;
}

// Shows the tensor count, parameter count and dtypes that inspect_file found.
export function renderFileInfo(item, info) {
  const dtypes = [...new Set(info.tensors.map((tensor) => tensor.dtype))].join(', ');
  const parameters = info.tensors.reduce(
    (sum, tensor) => sum + tensor.shape.reduce((product, size) => product * Number(size), 1),
    0,
  );
  item.querySelector('.file-info').textContent =
    `${formatCount(info.tensors.length)} tensors, ${(parameters / 1e6).toFixed(1)} M parameters, ${dtypes}`;
}

export function renderFileProblem(item, message) {
  item.classList.add('problem');
  item.querySelector('.file-info').textContent = message;
}

// Pairing lists of the 'plan' event: key, heading of the list, label of the count.
const PAIRING_LISTS = [
  ['only_in_base', 'Only in the base (not in the output)', 'only in the base'],
  ['only_in_finetuned', 'Only in the fine-tune (stored whole)', 'only in the fine-tune'],
  ['shape_mismatch', 'Shape differs between base and fine-tune', 'shape mismatches'],
  ['unchanged', 'Unchanged (delta is exactly zero)', 'unchanged'],
  ['skipped_integer', 'Integer tensors (not compressed)', 'integer'],
];

// Shows the pairing of base and fine-tuned tensors from the 'plan' event.
export function renderPairing(section, pairing, tensorCount) {
  const matched = Array.isArray(pairing.matched) ? pairing.matched.length : Number(pairing.matched);
  const counts = [`${formatCount(matched)} matched`];
  for (const [key, , countLabel] of PAIRING_LISTS) {
    counts.push(`${formatCount(pairing[key]?.length ?? 0)} ${countLabel}`);
  }
  section.querySelector('#pairing-counts').textContent =
    `${formatCount(tensorCount)} tensors to process. ${counts.join(' · ')}.`;

  const lists = section.querySelector('#pairing-lists');
  lists.replaceChildren();
  for (const [key, label] of PAIRING_LISTS) {
    const entries = pairing[key] ?? [];
    if (entries.length === 0) {
      continue;
    }
    const list = element('ul');
    for (const entry of entries) {
      list.append(element('li', {}, describePairingEntry(entry)));
    }
    lists.append(element('h3', {}, `${label}: ${entries.length}`), list);
  }
  section.querySelector('#pairing-details').hidden = lists.childElementCount === 0;
  section.hidden = false;
}

function describePairingEntry(entry) {
  if (typeof entry === 'string') {
    return entry;
  }
  return `${entry.name}: base ${formatShape(entry.base_shape)}, fine-tune ${formatShape(entry.finetuned_shape)}`;
}

// Tensor types as the core names them, and how the table shows them.
const TENSOR_TYPE_LABELS = { attention: 'attention', mlp: 'MLP', embedding: 'embedding', other: 'other' };

// Builds one row of the tensor table. The rel_error cell carries the raw
// number in data-value, which the browser test compares with the CLI.
function tensorRow(row) {
  // Only compressed matrices have a kept rank and widths.
  const isMatrix = row.kept_rank !== null && row.kept_rank !== undefined;
  const hasBudget = row.budget_bytes !== null && row.budget_bytes !== undefined;
  const tr = element('tr', { 'data-tensor': row.name, 'data-kind': row.kind, 'data-device': row.device ?? 'cpu' });
  tr.append(
    tensorNameCell(row.name),
    element('td', {}, row.kind),
    element('td', {}, TENSOR_TYPE_LABELS[row.tensor_type] ?? row.tensor_type ?? '—'),
    element('td', { class: 'shape' }, formatShape(row.shape)),
    element('td', { class: 'number' }, formatSmall(row.delta_norm_ratio)),
    element('td', { class: 'number' }, isMatrix ? formatCount(row.kept_rank) : '—'),
    element('td', { class: 'widths' }, isMatrix ? formatWidthCounts(row.width_counts) : '—'),
    relativeErrorCell(row.rel_error),
    element('td', { class: 'number', 'data-field': 'bytes', 'data-value': String(row.bytes) }, formatBytes(row.bytes)),
    element('td', { class: 'number' }, hasBudget ? formatBytes(row.budget_bytes) : '—'),
  );
  return tr;
}

// Appends one row of the tensor table.
export function appendTensorRow(body, row) {
  body.append(tensorRow(row));
}

// Replaces the table's rows with `rows`. When the table already lists the
// same tensors in the same order, as after a ratio change in the budget
// explorer, only the cells that differ are replaced. Rebuilding every row of
// the demo pair took about 60 ms of each explorer redraw.
export function renderTensorRows(body, rows) {
  const current = body.rows;
  const sameTensors = current.length === rows.length &&
    rows.every((row, index) => current[index].dataset.tensor === row.name);
  if (!sameTensors) {
    body.replaceChildren(...rows.map(tensorRow));
    return;
  }
  rows.forEach((row, index) => updateCells(current[index], tensorRow(row)));
}

// Gives `tr` the attributes and cells of `fresh`, replacing only the cells that differ.
function updateCells(tr, fresh) {
  for (const name of ['data-kind', 'data-device']) {
    tr.setAttribute(name, fresh.getAttribute(name));
  }
  [...fresh.cells].forEach((cell, index) => {
    if (!cell.isEqualNode(tr.cells[index])) {
      tr.replaceChild(cell, tr.cells[index]);
    }
  });
}

// Long names like encoder.layer.0.attention.output.LayerNorm.weight may wrap
// after each dot. <wbr> adds no character, so a copied name stays intact.
function tensorNameCell(name) {
  const cell = element('td', { class: 'name' });
  name.split('.').forEach((part, index) => {
    if (index > 0) {
      cell.append('.', element('wbr'));
    }
    cell.append(part);
  });
  return cell;
}

function relativeErrorCell(relError) {
  if (relError === null || relError === undefined) {
    return element('td', { class: 'number' }, formatError(null));
  }
  return element(
    'td',
    { class: 'number', 'data-field': 'rel_error', 'data-value': String(relError) },
    formatError(relError),
  );
}

// Shows the totals of a result: the key figures, then the details.
// data-rel-error-total, data-compressed-bytes, data-device and
// data-worker-memory-bytes carry raw values for tests and benchmarks.
export function renderSummary(section, summary) {
  renderKeyFigures(section.querySelector('#key-figures'), summary);
  const values = section.querySelector('#summary-values');
  values.replaceChildren();
  const rows = [
    ['Compressed size', formatBytes(summary.compressed_bytes)],
    ['f16 delta size', formatBytes(summary.f16_delta_bytes)],
    ['Achieved ratio', `${formatFraction(summary.ratio_achieved)} (target ${formatFraction(summary.ratio_target)})`],
    ['Overall relative error of the compressed matrices', formatError(summary.rel_error_total)],
    ['Bytes spent on', `matrices ${formatBytes(summary.matrix_bytes)}, fixed costs ${formatBytes(summary.fixed_bytes)}, header ${formatBytes(summary.header_bytes)}`],
    ['Compression time', formatSeconds(summary.seconds)],
    ['Ran on', describeDevice(summary.device ?? 'cpu')],
  ];
  const workerMemory = summary.worker_memory_bytes;
  if (workerMemory?.length > 0) {
    // A worker that found no tensor left in the queue reports 0 bytes.
    const peaks = workerMemory.map((bytes) => (bytes > 0 ? formatBytes(bytes) : 'no tensor'));
    rows.push(['Web Workers', `${workerMemory.length}, peak WebAssembly memory ${peaks.join(', ')}`]);
  }
  if (typeof summary.nominal_bits_per_parameter === 'number') {
    rows.splice(3, 0, ['Code bits per matrix parameter',
      `${summary.nominal_bits_per_parameter.toFixed(3)} (codes only, without scales, zero points and header)`]);
  }
  for (const [term, description] of rows) {
    values.append(element('dt', {}, term), element('dd', {}, description));
  }
  section.querySelector('#budget-note').textContent = summary.budget_note ?? '';
  const notices = section.querySelector('#notices');
  notices.replaceChildren(...(summary.notices ?? []).map((notice) => element('li', {}, notice)));
  notices.hidden = notices.childElementCount === 0;
  section.dataset.relErrorTotal = String(summary.rel_error_total);
  section.dataset.compressedBytes = String(summary.compressed_bytes);
  section.dataset.device = summary.device ?? 'cpu';
  section.dataset.workerMemoryBytes = JSON.stringify(summary.worker_memory_bytes ?? []);
  section.hidden = false;
}

// The device line of the summary: only the cost tables run on the GPU.
function describeDevice(device) {
  if (device === 'cpu') {
    return 'CPU (WebAssembly)';
  }
  return `GPU ${device} for the cost tables, CPU (WebAssembly) for the other steps`;
}

// The four numbers a reader looks for first, in large type.
function renderKeyFigures(list, summary) {
  const figures = [
    ['Size', formatBytes(summary.compressed_bytes), `of ${formatBytes(summary.f16_delta_bytes)} as f16`],
    ['Ratio', formatFraction(summary.ratio_achieved), `target ${formatFraction(summary.ratio_target)}`],
    ['Relative error', formatError(summary.rel_error_total), '‖ΔW − Δ̂‖ / ‖ΔW‖ over all matrices'],
    ['Time', formatSeconds(summary.seconds), 'in this browser tab'],
  ];
  list.replaceChildren(...figures.map(([label, value, detail]) => {
    const item = element('div', { class: 'figure' });
    item.append(
      element('div', { class: 'figure-label' }, label),
      element('div', { class: 'figure-value' }, value),
      element('div', { class: 'figure-detail' }, detail),
    );
    return item;
  }));
}
