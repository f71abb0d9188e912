//! The Python bindings: the native module `ferrotune._core`. This is the only module that
//! touches pyo3; it converts arguments, releases the GIL around the work and maps errors.

mod errors;
mod json;
mod metrics;
mod model;
mod pipeline;
mod tensor;
mod tokenizer;
mod train;

use errors::{guard, FerrotuneError};
use pyo3::prelude::*;
use std::path::PathBuf;
use tensor::PyTensor;

/// Passes a torch.Tensor to Rust and back: the same storage, no copy.
#[pyfunction]
fn echo_tensor(tensor: PyTensor) -> PyTensor {
    tensor
}

/// Whether libtorch, as seen from Rust, can use a CUDA device.
#[pyfunction]
fn cuda_is_available() -> bool {
    tch::Cuda::is_available()
}

/// The number of CUDA devices libtorch sees from Rust.
#[pyfunction]
fn cuda_device_count() -> i64 {
    tch::Cuda::device_count()
}

/// Reads a JSON file (config.json, tokenizer_config.json, ...).
#[pyfunction]
fn read_json<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let value = py.detach(|| guard(|| crate::files::read_json(&path)))?;
    json::to_python(py, &value)
}

/// Whether native work runs in parallel (off in a child forked after parallel work).
#[pyfunction]
fn parallelism_enabled() -> bool {
    crate::parallel::enabled()
}

/// Turns native parallelism on or off for this process.
#[pyfunction]
fn set_parallelism(enabled: bool) {
    crate::parallel::set_enabled(enabled)
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    crate::parallel::init();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("TORCH_VERSION", crate::TORCH_VERSION)?;
    m.add("FerrotuneError", m.py().get_type::<FerrotuneError>())?;
    m.add_function(wrap_pyfunction!(echo_tensor, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_is_available, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_device_count, m)?)?;
    m.add_function(wrap_pyfunction!(read_json, m)?)?;
    m.add_function(wrap_pyfunction!(parallelism_enabled, m)?)?;
    m.add_function(wrap_pyfunction!(set_parallelism, m)?)?;
    model::register(m)?;
    metrics::register(m)?;
    train::register(m)?;
    pipeline::register(m)?;
    tokenizer::register(m)?;
    Ok(())
}
