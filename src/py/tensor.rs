//! The torch.Tensor ⇄ `tch::Tensor` bridge.
//!
//! Vendored from the `pyo3-tch` crate 0.26 (MIT OR Apache-2.0, Laurent Mazare), which pins an
//! old pyo3, and ported to pyo3 0.30. One change in behaviour: a tensor that cannot be wrapped
//! raises an exception instead of silently becoming `None`.
//! Both directions share the storage: no data is copied.

use crate::error::Error;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::Borrowed;
use tch::Tensor;

/// A `tch::Tensor` that converts from and to a Python `torch.Tensor`.
pub struct PyTensor(pub Tensor);

impl std::ops::Deref for PyTensor {
    type Target = Tensor;

    fn deref(&self) -> &Tensor {
        &self.0
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for PyTensor {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let ptr = ob.as_ptr() as *mut tch::python::CPyObject;
        // SAFETY: `ptr` is a live Python object for the duration of the borrow; torch checks
        // its type (THPVariable_Check) before unpacking it.
        let tensor = unsafe { Tensor::pyobject_unpack(ptr) }.map_err(Error::from)?;
        match tensor {
            Some(tensor) => Ok(PyTensor(tensor)),
            None => Err(PyTypeError::new_err(format!(
                "expected a torch.Tensor, got {}",
                ob.get_type().name()?
            ))),
        }
    }
}

impl<'py> IntoPyObject<'py> for PyTensor {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let ptr = self.0.pyobject_wrap().map_err(Error::from)?;
        // SAFETY: THPVariable_Wrap returns a new reference, or NULL with a Python error set.
        unsafe { Bound::from_owned_ptr_or_err(py, ptr as *mut pyo3::ffi::PyObject) }
    }
}
