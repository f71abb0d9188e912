//! The one error type of the Rust core.
//!
//! Each variant says what kind of mistake it is, so that the bindings map it to the Python
//! exception a user expects (`src/py/errors.rs`); each message names the file, key or value at
//! fault.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder that should exist does not.
    #[error("{}: no such file or directory", .0.display())]
    NotFound(PathBuf),

    /// None of the files that would serve is in a folder.
    #[error("{}: no {what} found (looked for {})", dir.display(), looked_for.join(", "))]
    NoneFound { dir: PathBuf, what: String, looked_for: Vec<String> },

    /// Any other I/O failure, with the path it concerned.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A value of the right type but not acceptable (a bad number, a malformed file).
    #[error("{0}")]
    Value(String),

    /// A value of the wrong type.
    #[error("{0}")]
    Type(String),

    /// An index or id outside its range.
    #[error("{0}")]
    Index(String),

    /// A feature that ferrotune does not (yet) support.
    #[error("{0}")]
    NotImplemented(String),

    /// An error raised by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),

    /// More memory than can be had (a padding length far beyond the data, say).
    #[error("{0}")]
    Memory(String),

    /// A long call stopped because a Python signal handler raised (Ctrl+C); the bindings
    /// re-raise that exception itself.
    #[error("interrupted")]
    Interrupted,

    /// Anything else: an internal failure, reported rather than aborting.
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A ValueError unless `value`, the argument `name`, is a positive count.
pub fn positive(name: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::value(format!("{name} must be a positive integer, got 0")));
    }
    Ok(())
}

/// An error of the tokenizers crate (truncation impossible, ...): a bad value, with its own
/// message.
impl From<tokenizers::Error> for Error {
    fn from(error: tokenizers::Error) -> Error {
        Error::Value(error.to_string())
    }
}

impl Error {
    /// The error for an I/O failure on `path`, keeping "not found" distinguishable.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        let path = path.as_ref().to_path_buf();
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound(path)
        } else {
            Error::Io { path, source }
        }
    }

    pub fn value(msg: impl Into<String>) -> Self {
        Error::Value(msg.into())
    }

    pub fn type_error(msg: impl Into<String>) -> Self {
        Error::Type(msg.into())
    }

    pub fn index(msg: impl Into<String>) -> Self {
        Error::Index(msg.into())
    }

    pub fn not_implemented(msg: impl Into<String>) -> Self {
        Error::NotImplemented(msg.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_not_found_keeps_the_path() {
        let err = Error::io("/no/such/config.json", std::io::ErrorKind::NotFound.into());
        assert!(matches!(err, Error::NotFound(_)));
        assert_eq!(err.to_string(), "/no/such/config.json: no such file or directory");
    }

    #[test]
    fn other_io_errors_name_the_path_and_the_cause() {
        let source = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        let err = Error::io("/root/x", source);
        assert!(matches!(err, Error::Io { .. }));
        assert_eq!(err.to_string(), "/root/x: permission denied");
    }
}
