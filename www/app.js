// Page logic: choosing files, running the compression worker and showing its
// events. All computation happens in the WebAssembly core inside worker.js.

import { fetchAsFile, filesFromDrop, outputFileName, selectCheckpointFiles } from './files.js';
import { formatBytes, formatError, formatFraction, formatSeconds } from './format.js';
import {
  appendTensorRow, renderFileInfo, renderFileList, renderFileProblem, renderPairing, renderSummary,
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
};

const $ = (id) => document.getElementById(id);

// The chosen checkpoint of each side: its files and the dropped folder's name.
const chosen = {
  base: { files: [], folderName: null },
  finetuned: { files: [], folderName: null },
};

// The current run, or null when idle. A run owns its worker, the output
// chunks received so far, the pairing report and the timer that updates the
// elapsed time.
let run = null;
let downloadUrl = null;

// ---- Choosing files ----

function setChosenFiles(side, files, folderName) {
  const { checkpointFiles, ignoredNames } = selectCheckpointFiles(files);
  chosen[side] = { files: checkpointFiles, folderName };
  const items = renderFileList($(`${side}-files`), checkpointFiles, ignoredNames);
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
  const worker = startWorker();
  try {
    for (const { file, item } of safetensors) {
      const reply = await requestOnce(worker, { kind: 'inspect', file });
      if (reply.kind === 'inspected') {
        renderFileInfo(item, reply.info);
      } else {
        renderFileProblem(item, reply.message);
      }
    }
  } finally {
    worker.terminate();
  }
}

function requestOnce(worker, request) {
  return new Promise((resolve) => {
    worker.onmessage = (message) => resolve(message.data);
    worker.onerror = (event) => {
      event.preventDefault();
      resolve({ kind: 'error', message: describeWorkerError(event) });
    };
    worker.postMessage(request);
  });
}

function setUpDropZone(side) {
  const zone = $(`${side}-drop`);
  const input = $(`${side}-input`);

  input.addEventListener('change', () => setChosenFiles(side, [...input.files], null));

  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    if (!run) {
      zone.classList.add('dragging');
    }
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', async (event) => {
    event.preventDefault();
    zone.classList.remove('dragging');
    if (run) {
      return;
    }
    const { files, folderName } = await filesFromDrop(event.dataTransfer);
    setChosenFiles(side, files, folderName);
  });
}

// ---- Running ----

function startWorker() {
  return new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
}

function describeWorkerError(event) {
  if (event.message) {
    return `The compression worker failed: ${event.message}`;
  }
  return 'The compression worker could not start. Check that www/pkg/adamix.js exists ' +
    '(build it with scripts/build-web.sh) and that the page is served over http://.';
}

function beginRun(statusMessage) {
  clearOutputs();
  run = {
    worker: null,
    chunks: [],
    total: 0,
    pairing: null,
    started: performance.now(),
    statusMessage,
    timer: setInterval(renderRunningStatus, 200),
    abort: new AbortController(),
  };
  setControlsDisabled(true);
  $('progress').removeAttribute('value');
  renderRunningStatus();
}

function endRun() {
  clearInterval(run.timer);
  run.worker?.terminate();
  run.abort.abort();
  const seconds = elapsedSeconds();
  run = null;
  setControlsDisabled(false);
  return seconds;
}

function elapsedSeconds() {
  return (performance.now() - run.started) / 1000;
}

function setControlsDisabled(disabled) {
  for (const id of ['compress', 'load-demo', 'ratio', 'base-input', 'finetuned-input']) {
    $(id).disabled = disabled;
  }
  $('cancel').hidden = !disabled;
}

function setStatus(state, text) {
  const status = $('status');
  status.dataset.state = state;
  status.textContent = text;
}

function renderRunningStatus() {
  setStatus('running', `${run.statusMessage} · ${formatSeconds(elapsedSeconds())}`);
}

function clearOutputs() {
  $('error').hidden = true;
  $('error').textContent = '';
  for (const id of ['pairing', 'summary', 'results']) {
    $(id).hidden = true;
  }
  $('results-body').replaceChildren();
  delete $('summary').dataset.relErrorTotal;
  delete $('summary').dataset.compressedBytes;
  delete $('summary').dataset.fileBytes;
  $('download').hidden = true;
  $('download').removeAttribute('href');
  if (downloadUrl) {
    URL.revokeObjectURL(downloadUrl);
    downloadUrl = null;
  }
}

function failRun(message) {
  const seconds = endRun();
  $('progress').value = 0;
  setStatus('error', `Failed after ${formatSeconds(seconds)}.`);
  const box = $('error');
  box.textContent = message;
  box.hidden = false;
}

function cancelRun() {
  if (!run) {
    return;
  }
  const seconds = endRun();
  $('progress').value = 0;
  setStatus('cancelled', `Cancelled after ${formatSeconds(seconds)}. Nothing was written.`);
}

function startCompression(base, finetuned) {
  const worker = startWorker();
  run.worker = worker;
  const outputName = outputFileName(finetuned.files, finetuned.folderName);
  worker.onmessage = (message) => handleWorkerMessage(worker, message.data, outputName);
  worker.onerror = (event) => {
    event.preventDefault();
    if (run?.worker === worker) {
      failRun(describeWorkerError(event));
    }
  };
  worker.onmessageerror = () => {
    if (run?.worker === worker) {
      failRun('A message from the compression worker could not be read.');
    }
  };
  run.statusMessage = 'Reading the checkpoint headers';
  worker.postMessage({
    kind: 'compress',
    base: base.files,
    finetuned: finetuned.files,
    ratio: Number($('ratio').value),
  });
}

function handleWorkerMessage(worker, message, outputName) {
  if (run?.worker !== worker) {
    return; // A message from a cancelled run.
  }
  switch (message.kind) {
    case 'plan':
      run.total = message.tensors;
      run.pairing = message.pairing;
      $('progress').max = Math.max(message.tensors, 1);
      $('progress').value = 0;
      renderPairing($('pairing'), run.pairing, run.total);
      run.statusMessage = `Paired ${message.tensors} tensors`;
      break;
    case 'progress': {
      const stage = STAGE_LABELS[message.stage] ?? message.stage;
      $('progress').max = Math.max(message.total, 1);
      $('progress').value = message.index;
      run.statusMessage = `Tensor ${message.index + 1} of ${message.total}: ${message.tensor} (${stage})`;
      break;
    }
    case 'chunk':
      run.chunks.push(message.bytes);
      break;
    case 'tensor':
      appendTensorRow($('results-body'), message.row);
      $('results').hidden = false;
      noteUnchangedTensor(message.row);
      break;
    case 'result':
      finishRun(message.header, message.summary, outputName);
      return;
    case 'error':
      failRun(message.message);
      return;
    default:
      failRun(`The compression worker sent an unknown message kind '${message.kind}'.`);
      return;
  }
  renderRunningStatus();
}

// The core finds an unchanged tensor (delta exactly zero) only when it reads
// the tensor, after the 'plan' event, so the pairing report is updated here.
function noteUnchangedTensor(row) {
  const unchanged = run.pairing?.unchanged;
  if (row.kind !== 'unchanged' || !unchanged || unchanged.includes(row.name)) {
    return;
  }
  unchanged.push(row.name);
  renderPairing($('pairing'), run.pairing, run.total);
}

function finishRun(header, summary, outputName) {
  // The output stays a list of chunks. A Blob made from the list avoids
  // copying a large output into one array.
  const blob = new Blob([header, ...run.chunks], { type: 'application/octet-stream' });
  const tensorCount = run.total;
  const seconds = endRun();
  $('progress').value = $('progress').max;
  if (summary.pairing) {
    renderPairing($('pairing'), summary.pairing, tensorCount);
  }

  renderSummary($('summary'), summary, blob.size);
  downloadUrl = URL.createObjectURL(blob);
  const link = $('download');
  link.href = downloadUrl;
  link.download = outputName;
  link.textContent = `Download ${outputName} (${formatBytes(blob.size)})`;
  link.hidden = false;

  setStatus('done',
    `Done in ${formatSeconds(seconds)}: ${formatBytes(blob.size)}, ` +
    `${formatFraction(summary.ratio_achieved)} of the f16 delta, ` +
    `overall relative error ${formatError(summary.rel_error_total)}.`);
}

// ---- Buttons ----

function compress() {
  if (run) {
    return;
  }
  for (const [side, label] of [['base', 'base'], ['finetuned', 'fine-tuned']]) {
    if (chosen[side].files.length === 0) {
      clearOutputs();
      showError(`No ${label} checkpoint is chosen. Drop its .safetensors file(s) or folder on the ${label === 'base' ? 'Base' : 'Fine-tuned'} box, or use Choose files.`);
      return;
    }
  }
  beginRun('Starting');
  startCompression(chosen.base, chosen.finetuned);
}

async function loadDemo() {
  if (run) {
    return;
  }
  beginRun('Downloading the demo checkpoints');
  const thisRun = run;
  let files;
  try {
    files = await Promise.all([
      fetchAsFile(DEMO_FILES.base, 'base.safetensors', thisRun.abort.signal),
      fetchAsFile(DEMO_FILES.finetuned, 'finetuned.safetensors', thisRun.abort.signal),
    ]);
  } catch (error) {
    if (run === thisRun) {
      failRun(error.message);
    }
    return;
  }
  if (run !== thisRun) {
    return; // Cancelled while downloading.
  }
  setChosenFiles('base', [files[0]], null);
  setChosenFiles('finetuned', [files[1]], null);
  startCompression(chosen.base, chosen.finetuned);
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
$('load-demo').addEventListener('click', loadDemo);
$('cancel').addEventListener('click', cancelRun);

// A file dropped outside a drop zone would otherwise replace the page.
for (const type of ['dragover', 'drop']) {
  window.addEventListener(type, (event) => event.preventDefault());
}
