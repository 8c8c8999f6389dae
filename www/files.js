// Choosing checkpoint files: dropped files and folders, and the demo pair.

// A checkpoint is its .safetensors files plus, when sharded, an index such as
// model.safetensors.index.json. Other files of a model folder (config.json,
// tokenizer files) are not part of it.
export function isCheckpointFile(name) {
  return name.endsWith('.safetensors') || name.endsWith('.safetensors.index.json');
}

// Splits files into the checkpoint files and the names of the others.
export function selectCheckpointFiles(files) {
  const checkpointFiles = files.filter((file) => isCheckpointFile(file.name));
  const ignoredNames = files.filter((file) => !isCheckpointFile(file.name)).map((file) => file.name);
  return { checkpointFiles, ignoredNames };
}

// Collects the files of a drop event. A dropped folder contributes the files
// at its top level, as the CLI reads a folder. Its subfolders (a training
// run's checkpoint-500/, say) are not read, and ignoredFolders lists them.
// Returns {files, folderName, ignoredFolders}, where folderName is the name
// of the one dropped folder, or null. The DataTransfer items are only
// readable during the event, so they are captured before the first await.
export async function filesFromDrop(dataTransfer) {
  const items = [...(dataTransfer.items ?? [])].filter((item) => item.kind === 'file');
  const dropped = items.map((item) => ({
    entry: item.webkitGetAsEntry?.() ?? null,
    file: item.getAsFile(),
  }));
  if (dropped.length === 0) {
    return { files: [...(dataTransfer.files ?? [])], folderName: null, ignoredFolders: [] };
  }

  const files = [];
  const folders = [];
  const ignoredFolders = [];
  for (const { entry, file } of dropped) {
    if (entry?.isDirectory) {
      folders.push(entry.name);
      const contents = await topLevelFiles(entry);
      files.push(...contents.files);
      ignoredFolders.push(...contents.subfolders);
    } else if (file) {
      files.push(file);
    }
  }
  const folderName = folders.length === 1 && dropped.length === 1 ? folders[0] : null;
  return { files, folderName, ignoredFolders };
}

// Returns {files, subfolders}: the files directly in a dropped folder and the
// paths of the folders in it, which are not read.
async function topLevelFiles(directoryEntry) {
  const files = [];
  const subfolders = [];
  for (const entry of await readAllEntries(directoryEntry)) {
    if (entry.isDirectory) {
      subfolders.push(`${directoryEntry.name}/${entry.name}/`);
    } else if (entry.isFile) {
      files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    }
  }
  return { files, subfolders };
}

// readEntries returns a directory's entries in batches and an empty batch at
// the end, so it is called until then.
async function readAllEntries(directoryEntry) {
  const reader = directoryEntry.createReader();
  const entries = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) {
      return entries;
    }
    entries.push(...batch);
  }
}

// Downloads a file from this site and returns it as a File named `name`.
export async function fetchAsFile(url, name, signal) {
  let response;
  try {
    response = await fetch(url, { signal });
  } catch (error) {
    if (error.name === 'AbortError') {
      throw error;
    }
    throw new Error(`Downloading the demo file ${url} failed: ${error.message}`);
  }
  if (!response.ok) {
    throw new Error(
      `The demo file ${url} could not be downloaded (HTTP ${response.status}). ` +
      'Place the demo pair in www/demo/ with scripts/fetch-demo.sh.',
    );
  }
  const blob = await response.blob();
  return new File([blob], name, { type: 'application/octet-stream' });
}

// Returns the name a checkpoint's outputs start with: the dropped folder's
// name, the single file's name without its extension, or the shard name
// without "-00001-of-00004".
export function checkpointStem(files, folderName) {
  if (folderName) {
    return folderName;
  }
  const shards = files.filter((file) => file.name.endsWith('.safetensors'));
  const first = shards.map((file) => file.name).sort()[0] ?? 'model.safetensors';
  return first.replace(/\.safetensors$/, '').replace(/-\d+-of-\d+$/, '');
}

// Returns the name of a compressed delta: "<stem>.adamix.safetensors" for
// ADAMIX at the ratio the user chose, with the method and a ratio label such
// as "1-32" inserted before ".adamix" otherwise. Every method writes the same
// container format, which ".adamix.safetensors" names.
export function deltaFileName(stem, method = 'adamix', ratioLabel = null) {
  const parts = [stem];
  if (method !== 'adamix') {
    parts.push(method);
  }
  if (ratioLabel) {
    parts.push(ratioLabel.replace('/', '-'));
  }
  return `${parts.join('.')}.adamix.safetensors`;
}
