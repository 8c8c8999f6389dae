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
