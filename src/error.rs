//! The one error type of the core.
//!
//! Every message names the file and the tensor it concerns where there is
//! one, says what was expected and what was found, and what to do next. The
//! command-line tool prints it as is and the page shows it as is, so it must
//! read as a sentence to a user, not as a debug dump.

use std::fmt;

/// Result alias for the core.
pub type Result<T> = std::result::Result<T, Error>;

/// An error of the core, with the message shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A checkpoint file is not a valid safetensors file.
    #[error("{file}: {message}")]
    InvalidFile {
        /// File name as the user gave it.
        file: String,
        /// What is wrong and what to do.
        message: String,
    },

    /// A tensor cannot be used: bad values, bad shape or dtype.
    #[error("{file}: tensor '{tensor}': {message}")]
    InvalidTensor {
        /// File name as the user gave it.
        file: String,
        /// Tensor name.
        tensor: String,
        /// What is wrong and what to do.
        message: String,
    },

    /// The base and the fine-tune do not belong together.
    #[error("{message}")]
    Mismatch {
        /// What differs and what to do.
        message: String,
    },

    /// A compressed delta cannot be used.
    #[error("{file}: {message}")]
    InvalidDelta {
        /// File name of the compressed delta.
        file: String,
        /// What is wrong and what to do.
        message: String,
    },

    /// The requested options cannot be met.
    #[error("{0}")]
    InvalidOptions(String),

    /// A numerical step failed.
    #[error("tensor '{tensor}': {message}")]
    Numerical {
        /// Tensor name.
        tensor: String,
        /// What failed.
        message: String,
    },

    /// Reading or writing a file failed.
    #[error("{file}: {source}")]
    Io {
        /// File name.
        file: String,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// The run was cancelled by the user.
    #[error("cancelled by the user; no output was written")]
    Cancelled,
}

impl Error {
    /// Builds an [`Error::InvalidFile`].
    pub fn file(file: impl fmt::Display, message: impl Into<String>) -> Self {
        Error::InvalidFile { file: file.to_string(), message: message.into() }
    }

    /// Builds an [`Error::InvalidTensor`].
    pub fn tensor(file: impl fmt::Display, tensor: impl fmt::Display, message: impl Into<String>) -> Self {
        Error::InvalidTensor { file: file.to_string(), tensor: tensor.to_string(), message: message.into() }
    }

    /// Builds an [`Error::Io`].
    pub fn io(file: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io { file: file.to_string(), source }
    }
}
