// Page logic: choosing files, running the core in workers and showing what it
// returns. All computation happens in the WebAssembly core (worker.js). This
// file only moves files and results between the DOM, the workers and the
// figures.

import { adamixReduction, renderComparison } from './compare.js';
import { CoreWorker, isCancelled } from './core-worker.js';
import { clearLink, saveBlob, setLinkBlob } from './downloads.js';
import { BudgetExplorer } from './explorer.js';
import {
  checkpointStem, deltaFileName, fetchAsFile, filesFromDrop, selectCheckpointFiles,
} from './files.js';
import { formatBytes, formatError, formatFraction, formatSeconds } from './format.js';
import { METHOD_LABELS, METHODS } from './methods.js';
import { CompressionPool } from './pool.js';
import {
  bytesByTypeFigure, drawFigure, errorBarsFigure, methodTotalsFigure, spectralRows, spectrumFigure,
  widthHeatmapFigure, widthHistogramFigure,
} from './plots.js';
import {
  appendTensorRow, renderFileInfo, renderFileList, renderFileProblem, renderPairing, renderSummary,
  renderTensorRows,
} from './render.js';

const DEMO_FILES = {
  base: new URL('./demo/base.safetensors', import.meta.url),
  finetuned: new URL('./demo/finetuned.safetensors', import.meta.url),
};

const STAGE_LABELS = {
  read: 'reading',
  delta: 'computing the delta',
  svd: 'SVD',
  'cost table': 'building the cost table',
  allocate: 'allocating bit widths',
  quantize: 'quantizing',
  measure: 'measuring the error',
  write: 'writing',
  apply: 'applying the delta',
};

// Controls that are disabled while a task runs.
const TASK_CONTROLS = [
  'compress', 'compare', 'load-demo', 'method', 'device', 'ratio', 'base-input', 'finetuned-input',
  'download-report', 'export-peft', 'export-reconstructed',
];

const $ = (id) => document.getElementById(id);

// The chosen checkpoint of each side: its files and the dropped folder's name.
const chosen = {
  base: { files: [], folderName: null },
  finetuned: { files: [], folderName: null },
};

// The task that runs now (a compression, a comparison or an export), or null.
// A task owns the worker of its current step and the timer that updates the
// elapsed time.
let task = null;

// State of the shown result. Each is null until the first compression ends.
// - inputs: {base, finetuned, stem} of the last compression, which the
//   explorer and the reconstruction read again.
// - view: {method, ratio, summary, rows, source} that the table and figures
//   show, from a compression ('compress') or the explorer ('explorer').
// - deltaFile: {blob, name, method, ratio}, the compressed delta that the
//   Download link and the exports use.
// - comparison: {ratio, results, running} of Compare all methods, where
//   results maps a method to its {summary, rows}.
let inputs = null;
let view = null;
let deltaFile = null;
let comparison = null;

const explorer = new BudgetExplorer({
  onResult: (result) => showView(result),
  onFile: (file) => {
    setDeltaFile(file);
    saveBlob(file.blob, file.name);
  },
});

// ---- Choosing files ----

// ignoredFolders lists the subfolders of a dropped folder, which are not read.
function setChosenFiles(side, files, folderName, ignoredFolders = []) {
  const { checkpointFiles, ignoredNames } = selectCheckpointFiles(files);
  chosen[side] = { files: checkpointFiles, folderName };
  const items = renderFileList($(`${side}-files`), checkpointFiles, ignoredNames, ignoredFolders);
  inspectFiles(checkpointFiles, items);
}

// Reads each file's header in a worker and shows its tensor count and dtypes,
// or the reason it cannot be read, next to the file.
async function inspectFiles(files, items) {
  const safetensors = files
    .map((file, index) => ({ file, item: items[index] }))
    .filter(({ file }) => file.name.endsWith('.safetensors'));
  if (safetensors.length === 0) {
    return;
  }
  const worker = new CoreWorker();
  try {
    for (const { file, item } of safetensors) {
      try {
        renderFileInfo(item, await worker.request('inspect', { file }));
      } catch (error) {
        renderFileProblem(item, error.message);
      }
    }
  } finally {
    worker.terminate();
  }
}

function setUpDropZone(side) {
  const zone = $(`${side}-drop`);
  const input = $(`${side}-input`);

  input.addEventListener('change', () => setChosenFiles(side, [...input.files], null));

  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    if (!task) {
      zone.classList.add('dragging');
    }
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', async (event) => {
    event.preventDefault();
    zone.classList.remove('dragging');
    if (task) {
      return;
    }
    const { files, folderName, ignoredFolders } = await filesFromDrop(event.dataTransfer);
    setChosenFiles(side, files, folderName, ignoredFolders);
  });
}

// ---- Tasks ----

function beginTask(statusMessage) {
  task = {
    worker: null,
    started: performance.now(),
    statusMessage,
    timer: setInterval(renderRunningStatus, 200),
    abort: new AbortController(),
  };
  $('error').hidden = true;
  $('error').textContent = '';
  setControlsDisabled(true);
  $('progress').removeAttribute('value');
  renderRunningStatus();
  return task;
}

function endTask() {
  clearInterval(task.timer);
  task.worker?.terminate();
  task.abort.abort();
  const seconds = elapsedSeconds();
  task = null;
  setControlsDisabled(false);
  return seconds;
}

function elapsedSeconds() {
  return (performance.now() - task.started) / 1000;
}

function setControlsDisabled(disabled) {
  for (const id of TASK_CONTROLS) {
    $(id).disabled = disabled;
  }
  // A LoRA adapter contains low-rank factors, which a BitDelta file does not have.
  if (deltaFile?.method === 'bitdelta') {
    $('export-peft').disabled = true;
  }
  $('cancel').hidden = !disabled;
}

function setStatus(state, text) {
  const status = $('status');
  status.dataset.state = state;
  status.textContent = text;
}

function renderRunningStatus() {
  setStatus('running', `${task.statusMessage} · ${formatSeconds(elapsedSeconds())}`);
}

function failTask(message) {
  const seconds = endTask();
  $('progress').value = 0;
  setStatus('error', `Failed after ${formatSeconds(seconds)}.`);
  const box = $('error');
  box.textContent = message;
  box.hidden = false;
}

function cancelTask() {
  if (!task) {
    return;
  }
  // A cancelled compression leaves no half-filled table or comparison behind.
  const clearsResults = task.clearsResultsOnCancel;
  const seconds = endTask();
  if (clearsResults) {
    clearResults();
  }
  $('progress').value = 0;
  setStatus('cancelled', `Cancelled after ${formatSeconds(seconds)}. Nothing was written.`);
}

// Handles the end of a failed request of `thisTask`: a cancelled task has
// already reported itself, and a task that was replaced reports nothing.
function handleTaskError(thisTask, error) {
  if (task === thisTask && !isCancelled(error)) {
    failTask(error.message);
  }
}

function showProgress(prefix, event) {
  const stage = STAGE_LABELS[event.stage] ?? event.stage;
  $('progress').max = Math.max(event.total, 1);
  $('progress').value = event.index;
  task.statusMessage = `${prefix}tensor ${event.index + 1} of ${event.total}: ${event.tensor} (${stage})`;
  renderRunningStatus();
}

// Shows the pool's progress: tensors done, what each worker does, time left.
function showPoolProgress(prefix, { done, total, running, etaSeconds }) {
  $('progress').max = Math.max(total, 1);
  $('progress').value = done;
  const working = running.map(({ tensor, stage }) => `${tensor} (${STAGE_LABELS[stage] ?? stage})`).join(', ');
  const eta = etaSeconds === null ? '' : ` · about ${formatSeconds(etaSeconds)} left`;
  task.statusMessage = `${prefix}${done} of ${total} tensors done${working ? ` · ${working}` : ''}${eta}`;
  renderRunningStatus();
}

// Names the device of a session: 'cpu', or the WebGPU adapter's name.
function deviceLabel(device) {
  return device === 'cpu' ? 'the CPU' : `the GPU (${device})`;
}

// ---- Compressing and comparing ----

function clearResults() {
  for (const id of ['pairing', 'summary', 'results', 'plots', 'compare-section']) {
    $(id).hidden = true;
  }
  $('results-body').replaceChildren();
  delete $('summary').dataset.relErrorTotal;
  delete $('summary').dataset.compressedBytes;
  for (const id of ['download', 'report-link', 'peft-adapter-link', 'peft-config-link', 'reconstructed-link']) {
    clearLink($(id));
  }
  $('peft-skipped').hidden = true;
  explorer.hide();
  inputs = null;
  view = null;
  deltaFile = null;
  comparison = null;
}

// Compresses with each of `methods` in turn at the chosen ratio. The file of
// `keptMethod` is kept and shown; the other runs only report their totals.
async function runCompressions(methods, keptMethod) {
  const thisTask = task;
  const runInputs = {
    base: chosen.base.files,
    finetuned: chosen.finetuned.files,
    stem: checkpointStem(chosen.finetuned.files, chosen.finetuned.folderName),
  };
  const ratio = Number($('ratio').value);
  comparison = methods.length > 1 ? { ratio, results: new Map(), running: null } : null;
  let pairingShown = false;
  let keptResult = null;

  for (const [index, method] of methods.entries()) {
    const label = METHOD_LABELS[method] ?? method;
    const prefix = methods.length > 1 ? `${label} (${index + 1} of ${methods.length}): ` : '';
    const keepFile = method === keptMethod;
    if (comparison) {
      comparison.running = method;
      renderComparison($('compare-section'), comparison);
    }
    thisTask.statusMessage = `${prefix}reading the checkpoint headers`;
    if (keepFile) {
      $('results-body').replaceChildren();
    }

    let pairing = null;
    let tensorCount = 0;
    const pool = new CompressionPool();
    thisTask.worker = pool;
    let result;
    try {
      result = await pool.run({
        base: runInputs.base, finetuned: runInputs.finetuned, ratio, method, device: $('device').value, keepFile,
      }, {
        onPlan: (plan) => {
          pairing = plan.pairing;
          tensorCount = plan.tensors.length;
          thisTask.statusMessage = `${prefix}${plan.workers} ${plan.workers === 1 ? 'worker' : 'workers'} on ${deviceLabel(plan.device)}`;
          if (!pairingShown) {
            renderPairing($('pairing'), pairing, tensorCount);
            pairingShown = true;
          }
        },
        onProgress: (progress) => showPoolProgress(prefix, progress),
        onTensor: (row) => {
          if (keepFile) {
            appendTensorRow($('results-body'), row);
            $('results').hidden = false;
            noteUnchangedTensor(pairing, tensorCount, row);
          }
        },
      });
    } catch (error) {
      handleTaskError(thisTask, error);
      return;
    } finally {
      pool.terminate();
    }
    if (task !== thisTask) {
      return;
    }

    // The pool's figures belong to the page, not to the core's summary.
    result.summary.worker_memory_bytes = result.workerMemoryBytes;
    if (result.summary.pairing) {
      renderPairing($('pairing'), result.summary.pairing, tensorCount);
    }
    if (comparison) {
      comparison.results.set(method, { summary: result.summary, rows: result.rows });
    }
    if (keepFile) {
      // The output stays a list of chunks. A Blob made from the list avoids
      // copying a large output into one array.
      const blob = new Blob([result.header, ...result.chunks], { type: 'application/octet-stream' });
      keptResult = { method, ratio, summary: result.summary, rows: result.rows, blob };
    }
  }
  if (comparison) {
    comparison.running = null;
    renderComparison($('compare-section'), comparison);
  }
  await finishCompression(keptResult, runInputs);
}

// The core finds an unchanged tensor (delta exactly zero) only when it reads
// the tensor, after the 'plan' event, so the pairing report is updated here.
function noteUnchangedTensor(pairing, tensorCount, row) {
  const unchanged = pairing?.unchanged;
  if (row.kind !== 'unchanged' || !unchanged || unchanged.includes(row.name)) {
    return;
  }
  unchanged.push(row.name);
  renderPairing($('pairing'), pairing, tensorCount);
}

async function finishCompression(keptResult, runInputs) {
  const seconds = endTask();
  $('progress').value = $('progress').max;
  inputs = runInputs;
  const { method, ratio, summary, rows, blob } = keptResult;
  setDeltaFile({ blob, name: deltaFileName(runInputs.stem, method), method, ratio });
  if (method === 'adamix') {
    const matrixElements = rows.filter((row) => row.matrix).map((row) => row.shape[0] * row.shape[1]);
    explorer.show({ ...runInputs, ratio, matrixElements });
  } else {
    explorer.hide();
  }

  const workers = summary.worker_memory_bytes?.length ?? 1;
  const ranOn = `on ${deviceLabel(summary.device ?? 'cpu')} with ${workers} ${workers === 1 ? 'worker' : 'workers'}`;
  let text = `Done in ${formatSeconds(seconds)} ${ranOn}: ${METHOD_LABELS[method]}, ${formatBytes(blob.size)}, ` +
    `${formatFraction(summary.ratio_achieved)} of the f16 delta, overall relative error ${formatError(summary.rel_error_total)}.`;
  const outcome = comparison ? adamixReduction(comparison.results) : null;
  if (outcome) {
    const direction = outcome.reduction >= 0 ? 'below' : 'above';
    text = `Compared ${comparison.results.size} methods in ${formatSeconds(seconds)}. ADAMIX's error is ` +
      `${(Math.abs(outcome.reduction) * 100).toFixed(1)}% ${direction} the best baseline (${METHOD_LABELS[outcome.baseline]}).`;
  }
  setStatus('done', text);
  await showView({ method, ratio, summary, rows, source: 'compress' });
}

// ---- Showing a result ----

// Shows `result` in the summary, the tensor table and the figures. Returns
// once the figures are drawn. A figure that fails is reported on the page and
// does not reject.
async function showView(result) {
  view = result;
  const label = METHOD_LABELS[result.method] ?? result.method;
  $('result-title').textContent = `Result: ${label} at ${formatFraction(result.ratio)} of the f16 delta`;
  $('result-source').textContent = result.source === 'explorer'
    ? 'From the budget explorer. No file has been written at this size: use Download at this ratio for one.'
    : '';
  renderSummary($('summary'), result.summary);
  renderTensorRows($('results-body'), result.rows);
  $('results').hidden = false;
  await drawPlots();
}

function setDeltaFile(file) {
  deltaFile = file;
  const size = formatBytes(file.blob.size);
  setLinkBlob($('download'), file.blob, file.name, `Download ${file.name} (${size})`);
  $('delta-note').textContent =
    `The PEFT and reconstruction exports use ${file.name}: ${METHOD_LABELS[file.method]} at ${formatFraction(file.ratio)}, ${size}.` +
    (file.method === 'bitdelta' ? ' BitDelta stores sign matrices, which a LoRA adapter cannot hold, so there is no PEFT export.' : '');
  $('export-peft').disabled = Boolean(task) || file.method === 'bitdelta';
  for (const id of ['peft-adapter-link', 'peft-config-link', 'reconstructed-link']) {
    clearLink($(id));
  }
  $('peft-skipped').hidden = true;
}

// The series of the error figure: every method of the comparison when it
// was made at the shown ratio (with the shown result in place of its
// method's), else the shown result alone.
function errorSeries() {
  if (comparison && comparison.ratio === view.ratio && comparison.results.size > 0) {
    const results = new Map(comparison.results);
    results.set(view.method, view);
    return results;
  }
  return new Map([[view.method, view]]);
}

function fillMatrixSelect() {
  const select = $('matrix-select');
  const previous = select.value;
  const matrices = spectralRows(view.rows);
  select.replaceChildren(...matrices.map((row) => new Option(row.name, row.name)));
  select.disabled = matrices.length === 0;
  if (matrices.some((row) => row.name === previous)) {
    select.value = previous;
  }
}

function selectedMatrixRow() {
  const name = $('matrix-select').value;
  return view.rows.find((row) => row.name === name) ?? null;
}

async function drawPlots() {
  const section = $('plots');
  section.hidden = false;
  section.dataset.state = 'drawing';
  fillMatrixSelect();
  const series = errorSeries();
  const figures = [
    ['plot-spectrum', spectrumFigure(selectedMatrixRow(), view.method)],
    ['plot-width-histogram', widthHistogramFigure(view.rows, view.method)],
    ['plot-widths-heatmap', widthHeatmapFigure(view.rows, view.method, view.ratio)],
    ['plot-errors', errorBarsFigure(series, view.ratio)],
    ['plot-bytes-by-type', bytesByTypeFigure(view.rows, view.method)],
    ['plot-method-totals', methodTotalsFigure(series, view.ratio)],
  ];
  try {
    await Promise.all(figures.map(([id, figure]) => drawFigure($(id), figure)));
    $('plots-error').hidden = true;
    section.dataset.state = 'ready';
  } catch (error) {
    $('plots-error').textContent = `The plots could not be drawn: ${error.message}`;
    $('plots-error').hidden = false;
    section.dataset.state = 'error';
  }
}

async function drawSpectrum() {
  if (!view) {
    return;
  }
  try {
    await drawFigure($('plot-spectrum'), spectrumFigure(selectedMatrixRow(), view.method));
  } catch (error) {
    $('plots-error').textContent = `The spectrum could not be drawn: ${error.message}`;
    $('plots-error').hidden = false;
  }
}

// ---- Exports ----

function downloadReport() {
  if (!view) {
    return;
  }
  const report = {
    method: view.method,
    ratio: view.ratio,
    source: view.source,
    summary: view.summary,
    rows: view.rows,
    comparison: comparison
      ? {
        ratio: comparison.ratio,
        methods: METHODS.filter((method) => comparison.results.has(method))
          .map((method) => ({ method, ...comparison.results.get(method) })),
      }
      : null,
  };
  const blob = new Blob([JSON.stringify(report, null, 2)], { type: 'application/json' });
  const name = `${inputs.stem}.${view.method}.${formatFraction(view.ratio).replace('/', '-')}.report.json`;
  setLinkBlob($('report-link'), blob, name, `${name} (${formatBytes(blob.size)})`);
  saveBlob(blob, name);
}

// The compressed delta as a File, which the core reads by byte range.
function deltaAsFile() {
  return new File([deltaFile.blob], deltaFile.name, { type: 'application/octet-stream' });
}

async function exportPeft() {
  if (task || !deltaFile) {
    return;
  }
  const thisTask = beginTask(`Exporting ${deltaFile.name} as a PEFT LoRA adapter`);
  const worker = new CoreWorker();
  thisTask.worker = worker;
  let exported;
  try {
    exported = await worker.request('export-peft', { delta: deltaAsFile() });
  } catch (error) {
    handleTaskError(thisTask, error);
    return;
  } finally {
    worker.terminate();
  }
  if (task !== thisTask) {
    return;
  }
  const seconds = endTask();
  $('progress').value = $('progress').max;
  const adapter = new Blob([exported.adapter], { type: 'application/octet-stream' });
  const config = new Blob([exported.config], { type: 'application/json' });
  setLinkBlob($('peft-adapter-link'), adapter, 'adapter_model.safetensors', `adapter_model.safetensors (${formatBytes(adapter.size)})`);
  setLinkBlob($('peft-config-link'), config, 'adapter_config.json', 'adapter_config.json');
  saveBlob(adapter, 'adapter_model.safetensors');
  saveBlob(config, 'adapter_config.json');

  const skipped = $('peft-skipped');
  skipped.textContent = exported.skipped.length > 0
    ? `Not in the adapter (LoRA stores only low-rank matrices), ${exported.skipped.length}: ${exported.skipped.join(', ')}.`
    : '';
  skipped.hidden = exported.skipped.length === 0;
  setStatus('done', `Exported the PEFT LoRA adapter in ${formatSeconds(seconds)}: adapter_model.safetensors (${formatBytes(adapter.size)}) and adapter_config.json.`);
}

async function exportReconstructed() {
  if (task || !deltaFile || !inputs) {
    return;
  }
  const thisTask = beginTask(`Applying ${deltaFile.name} to the base`);
  const worker = new CoreWorker();
  thisTask.worker = worker;
  const chunks = [];

  try {
    await worker.request('apply', { base: inputs.base, delta: deltaAsFile() }, (event) => {
      if (event.kind === 'chunk') {
        chunks.push(event.bytes);
      } else if (event.kind === 'progress') {
        showProgress('Reconstructing: ', event);
      }
    });
  } catch (error) {
    handleTaskError(thisTask, error);
    return;
  } finally {
    worker.terminate();
  }
  if (task !== thisTask) {
    return;
  }

  const seconds = endTask();
  $('progress').value = $('progress').max;
  // Built from the chunk list, so a checkpoint of many GB is never one array.
  const blob = new Blob(chunks, { type: 'application/octet-stream' });
  const name = `${inputs.stem}.reconstructed.safetensors`;
  setLinkBlob($('reconstructed-link'), blob, name, `${name} (${formatBytes(blob.size)})`);
  saveBlob(blob, name);
  setStatus('done', `Reconstructed the fine-tune in ${formatSeconds(seconds)}: ${name} (${formatBytes(blob.size)}).`);
}

// ---- Buttons ----

function checkChosenFiles() {
  for (const [side, label, box] of [['base', 'base', 'Base'], ['finetuned', 'fine-tuned', 'Fine-tuned']]) {
    if (chosen[side].files.length === 0) {
      clearResults();
      showError(`No ${label} checkpoint is chosen. Drop its .safetensors file(s) or folder on the ${box} box, or use Choose files.`);
      return false;
    }
  }
  return true;
}

function compress() {
  if (task || !checkChosenFiles()) {
    return;
  }
  clearResults();
  beginTask('Starting').clearsResultsOnCancel = true;
  runCompressions([$('method').value], $('method').value);
}

function compareAll() {
  if (task || !checkChosenFiles()) {
    return;
  }
  clearResults();
  beginTask('Starting the comparison').clearsResultsOnCancel = true;
  runCompressions(METHODS, $('method').value);
}

async function loadDemo() {
  if (task) {
    return;
  }
  clearResults();
  const thisTask = beginTask('Downloading the demo checkpoints');
  thisTask.clearsResultsOnCancel = true;
  let files;
  try {
    files = await Promise.all([
      fetchAsFile(DEMO_FILES.base, 'base.safetensors', thisTask.abort.signal),
      fetchAsFile(DEMO_FILES.finetuned, 'finetuned.safetensors', thisTask.abort.signal),
    ]);
  } catch (error) {
    if (task === thisTask) {
      failTask(error.message);
    }
    return;
  }
  if (task !== thisTask) {
    return; // Cancelled while downloading.
  }
  setChosenFiles('base', [files[0]], null);
  setChosenFiles('finetuned', [files[1]], null);
  runCompressions([$('method').value], $('method').value);
}

function showError(message) {
  setStatus('error', 'Cannot start.');
  const box = $('error');
  box.textContent = message;
  box.hidden = false;
}

// ---- Start-up ----

setUpDropZone('base');
setUpDropZone('finetuned');
$('compress').addEventListener('click', compress);
$('compare').addEventListener('click', compareAll);
$('load-demo').addEventListener('click', loadDemo);
$('cancel').addEventListener('click', cancelTask);
$('matrix-select').addEventListener('change', drawSpectrum);
$('download-report').addEventListener('click', downloadReport);
$('export-peft').addEventListener('click', exportPeft);
$('export-reconstructed').addEventListener('click', exportReconstructed);

// A file dropped outside a drop zone would otherwise replace the page.
for (const type of ['dragover', 'drop']) {
  window.addEventListener(type, (event) => event.preventDefault());
}
