//! The one place where Rust errors become Python exceptions (as safetensors and polars do):
//! not-found → FileNotFoundError (with `.filename`), other I/O → OSError and its subclasses,
//! bad values → ValueError, wrong types → TypeError, ids out of range → IndexError,
//! unsupported features → NotImplementedError, everything else → `ferrotune.FerrotuneError`.
//! Panics are caught at the boundary and reported as FerrotuneError, never as an abort.

use crate::error::Error;
use pyo3::create_exception;
use pyo3::exceptions::{
    PyException, PyFileNotFoundError, PyIndexError, PyKeyboardInterrupt, PyMemoryError,
    PyNotImplementedError, PyOSError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

create_exception!(
    ferrotune,
    FerrotuneError,
    PyException,
    "Raised by ferrotune for failures that no built-in Python exception describes."
);

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let message = err.to_string();
        match err {
            Error::NotFound(path) => PyFileNotFoundError::new_err((
                libc::ENOENT,
                "No such file or directory",
                path.display().to_string(),
            )),
            Error::NoneFound { dir, what, looked_for } => PyFileNotFoundError::new_err((
                libc::ENOENT,
                format!("no {what} found (looked for {})", looked_for.join(", ")),
                dir.display().to_string(),
            )),
            Error::Io { path, source } => match source.raw_os_error() {
                // OSError(errno, strerror, filename) picks the subclass (PermissionError, ...).
                Some(errno) => {
                    PyOSError::new_err((errno, source.to_string(), path.display().to_string()))
                }
                None => PyOSError::new_err(message),
            },
            Error::Value(_) => PyValueError::new_err(message),
            Error::Type(_) => PyTypeError::new_err(message),
            Error::Index(_) => PyIndexError::new_err(message),
            Error::NotImplemented(_) => PyNotImplementedError::new_err(message),
            Error::Interrupted => PyKeyboardInterrupt::new_err(message),
            Error::Memory(_) => PyMemoryError::new_err(message),
            Error::Torch(_) | Error::Other(_) => FerrotuneError::new_err(message),
        }
    }
}

/// Runs `f`, turning a panic into a FerrotuneError that carries the panic message.
pub fn guard<T>(f: impl FnOnce() -> crate::Result<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(PyErr::from),
        Err(payload) => {
            let detail = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(FerrotuneError::new_err(format!(
                "internal error in ferrotune's native core: {detail}"
            )))
        }
    }
}

/// Python's signal handlers, run between two batches of work done without the GIL, so that
/// Ctrl+C stops a long native call within a batch. The exception a handler raised (usually
/// KeyboardInterrupt) is kept and re-raised as it is.
#[derive(Default)]
pub struct Signals(Mutex<Option<PyErr>>);

impl Signals {
    /// Runs the pending signal handlers; an exception from one stops the call.
    pub fn check(&self) -> crate::Result<()> {
        Python::attach(|py| py.check_signals()).map_err(|err| {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
            Error::Interrupted
        })
    }

    /// `result`, unless a signal handler raised during the call: then that exception.
    pub fn raised<T>(&self, result: PyResult<T>) -> PyResult<T> {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(err) => Err(err),
            None => result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Python class name and message that `err` becomes.
    fn raised(err: Error) -> (String, String) {
        Python::initialize();
        Python::attach(|py| {
            // Normalizing builds the exception as Python would raise it (OSError(errno, ...)
            // becomes its subclass).
            let value = PyErr::from(err).into_value(py).into_bound(py);
            (value.get_type().name().unwrap().to_string(), value.str().unwrap().to_string())
        })
    }

    #[test]
    fn each_kind_maps_to_its_python_exception() {
        let path = std::path::PathBuf::from("/models/bert/config.json");
        assert_eq!(
            raised(Error::NotFound(path.clone())),
            (
                "FileNotFoundError".into(),
                "[Errno 2] No such file or directory: '/models/bert/config.json'".into()
            )
        );
        let none_found = Error::NoneFound {
            dir: "/models/bert".into(),
            what: "tokenizer files".into(),
            looked_for: vec!["tokenizer.json".into(), "vocab.txt".into()],
        };
        assert_eq!(
            raised(none_found),
            (
                "FileNotFoundError".into(),
                "[Errno 2] no tokenizer files found (looked for tokenizer.json, vocab.txt): \
                 '/models/bert'"
                    .into()
            )
        );
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(raised(Error::io(&path, denied)).0, "PermissionError");
        assert_eq!(raised(Error::value("learning_rate=-1.0 must be >= 0")).0, "ValueError");
        assert_eq!(raised(Error::type_error("labels must be int, got str")).0, "TypeError");
        assert_eq!(
            raised(Error::index("token id 70000 is outside the vocabulary (30522)")),
            ("IndexError".into(), "token id 70000 is outside the vocabulary (30522)".into())
        );
        assert_eq!(
            raised(Error::not_implemented("model_type 'gpt2' is not supported")).0,
            "NotImplementedError"
        );
        assert_eq!(raised(Error::Other("boom".into())), ("FerrotuneError".into(), "boom".into()));
        assert_eq!(raised(Error::Interrupted).0, "KeyboardInterrupt");
        assert_eq!(raised(Error::Memory("padding".into())).0, "MemoryError");
    }

    #[test]
    fn guard_turns_a_panic_into_an_exception() {
        Python::initialize();
        let result: PyResult<()> = guard(|| panic!("index 7 out of range"));
        Python::attach(|py| {
            let err = result.unwrap_err();
            assert!(err.is_instance_of::<FerrotuneError>(py));
            assert!(err.to_string().contains("index 7 out of range"), "{err}");
        });
    }
}
