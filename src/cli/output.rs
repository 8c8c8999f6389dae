//! Atomic output files: written under a temporary name, renamed when complete.
//!
//! A failed or interrupted run leaves no partial output under the final
//! name; the temporary file is removed when it is dropped uncommitted, and
//! on Ctrl-C (SIGINT) or SIGTERM by [`remove_partial_files`], because a
//! signal ends the process without running destructors.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tempfile::NamedTempFile;

use adamix::container::DataSink;
use adamix::error::{Error, Result};

/// Temporary files in progress, removed if the process is interrupted.
static PARTIAL_FILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Outputs this run completed, which an interruption leaves in place.
static COMPLETED_FILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Returns the message for an interrupted run: partial files were removed,
/// and the outputs completed before the signal (by `compare`, say) remain.
pub fn interrupted_message() -> String {
    let completed = match COMPLETED_FILES.lock() {
        Ok(paths) => paths.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    if completed.is_empty() {
        return "interrupted; no output was written".into();
    }
    let names: Vec<String> = completed.iter().map(|p| p.display().to_string()).collect();
    format!("interrupted; partial files were removed, and these outputs were complete before the interruption: {}", names.join(", "))
}

/// Removes every temporary file still in progress; called from the signal handler.
pub fn remove_partial_files() {
    let paths = match PARTIAL_FILES.lock() {
        Ok(paths) => paths.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

fn forget_partial_file(path: &Path) {
    if let Ok(mut paths) = PARTIAL_FILES.lock() {
        paths.retain(|p| p != path);
    }
}

/// Checks, before any work, that a file can be created at each output path.
///
/// `outputs` pairs each path with the option that gave it, such as
/// `--output`. A path that is an existing folder, a parent folder that is
/// missing or is not a folder, and two options naming the same file are
/// rejected here, before the run, instead of when the output is written.
///
/// NOTE: write permission is not checked here. A folder the user cannot
/// write to still fails only when the output is created.
pub fn check_output_files(outputs: &[(&str, &Path)]) -> Result<()> {
    for (index, &(option, path)) in outputs.iter().enumerate() {
        check_output_file(option, path)?;
        if let Some(&(other_option, _)) = outputs[..index].iter().find(|(_, other)| same_file(other, path)) {
            return Err(Error::InvalidOptions(format!(
                "{option} and {other_option} both name {}, so one would overwrite the other; give each a path of its own. Nothing was written",
                path.display())));
        }
    }
    Ok(())
}

fn check_output_file(option: &str, path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(Error::InvalidOptions(format!(
            "{option} {} is an existing folder, but the path of a file is expected; add a file name to the path. Nothing was written",
            path.display())));
    }
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !folder.exists() {
        return Err(Error::InvalidOptions(format!(
            "{option} {}: the folder {} does not exist; create it first (mkdir -p {}) or choose a path in an existing folder. Nothing was written",
            path.display(), folder.display(), folder.display())));
    }
    if !folder.is_dir() {
        return Err(Error::InvalidOptions(format!(
            "{option} {}: {} is not a folder; choose a path in an existing folder. Nothing was written",
            path.display(), folder.display())));
    }
    Ok(())
}

/// Checks, before any work, that `folder`, given with `option`, is an existing folder.
pub fn check_output_folder(option: &str, folder: &Path) -> Result<()> {
    if folder.is_dir() {
        return Ok(());
    }
    let problem = if folder.exists() { "is not a folder" } else { "does not exist" };
    Err(Error::InvalidOptions(format!(
        "{option} {} {problem}; create the folder first (mkdir -p {}) or choose an existing one. Nothing was written",
        folder.display(), folder.display())))
}

/// Returns whether `a` and `b` name the same file, comparing their folders
/// after resolving links (the files themselves may not exist yet).
fn same_file(a: &Path, b: &Path) -> bool {
    let resolve = |path: &Path| {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        folder.canonicalize().ok().map(|folder| folder.join(path.file_name().unwrap_or_default()))
    };
    match (resolve(a), resolve(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

/// A file being written that appears under its final name only on [`AtomicOutput::commit`].
pub struct AtomicOutput {
    name: String,
    file: BufWriter<NamedTempFile>,
    final_path: std::path::PathBuf,
}

impl AtomicOutput {
    /// Starts a temporary file in the folder of `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.display().to_string();
        let temp = tempfile::Builder::new().prefix(".adamix-").suffix(".partial").tempfile_in(folder)
            .map_err(|e| Error::io(&name, e))?;
        if let Ok(mut paths) = PARTIAL_FILES.lock() {
            paths.push(temp.path().to_path_buf());
        }
        Ok(AtomicOutput { name, file: BufWriter::with_capacity(1 << 20, temp), final_path: path.to_path_buf() })
    }

    /// A scratch file beside `path` for data assembled later; never committed.
    pub fn scratch(path: &Path) -> Result<Self> {
        Self::create(path)
    }

    /// Appends bytes.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes).map_err(|e| Error::io(&self.name, e))
    }

    /// Copies everything written so far into `target`.
    pub fn copy_into(self, target: &mut AtomicOutput) -> Result<()> {
        let name = self.name.clone();
        let temp = self.file.into_inner().map_err(|e| Error::io(&name, e.into_error()))?;
        forget_partial_file(temp.path());
        let mut file: File = temp.reopen().map_err(|e| Error::io(&name, e))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(&name, e))?;
        std::io::copy(&mut file, &mut target.file).map_err(|e| Error::io(&target.name, e))?;
        Ok(())
    }

    /// Flushes to disk and renames the file to its final name.
    pub fn commit(self) -> Result<()> {
        let name = self.name;
        let temp = self.file.into_inner().map_err(|e| Error::io(&name, e.into_error()))?;
        temp.as_file().sync_all().map_err(|e| Error::io(&name, e))?;
        // Temporary files are created private (0600); outputs get the usual 0644.
        use std::os::unix::fs::PermissionsExt;
        temp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(|e| Error::io(&name, e))?;
        let temp_path = temp.path().to_path_buf();
        temp.persist(&self.final_path).map_err(|e| Error::io(&name, e.error))?;
        forget_partial_file(&temp_path);
        if let Ok(mut completed) = COMPLETED_FILES.lock() {
            completed.push(self.final_path.clone());
        }
        Ok(())
    }

    /// Writes a small file whole, atomically.
    pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
        let mut output = Self::create(path)?;
        output.write_all(bytes)?;
        output.commit()
    }
}

impl DataSink for AtomicOutput {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_all(bytes)
    }
}
