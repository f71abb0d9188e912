//! Bindings of `models::Model` as `ferrotune._core.Model`. The Python
//! class in `python/ferrotune/modeling.py` gives it the transformers surface.

use super::errors::guard;
use super::tensor::PyTensor;
use crate::error::{Error, Result};
use crate::models::{AttentionImpl, Batch, LoadReport, Model, ModelConfig, ProblemType, Task};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

pub(crate) fn parse_device(device: &str) -> Result<Device> {
    match device {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => match device.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => Ok(Device::Cuda(n)),
            None => Err(Error::value(format!(
                "unsupported device {device:?}; use \"cpu\", \"cuda\" or \"cuda:N\""
            ))),
        },
    }
    .and_then(|d| match d {
        Device::Cuda(n) if n as i64 >= tch::Cuda::device_count() => Err(Error::value(format!(
            "device {device:?} is not available: libtorch sees {} CUDA device(s)",
            tch::Cuda::device_count()
        ))),
        d => Ok(d),
    })
}

pub(crate) fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
        Device::Cpu => "cpu".into(),
    }
}

pub(crate) fn parse_kind(dtype: &str) -> Result<Kind> {
    match dtype.trim_start_matches("torch.") {
        "float32" | "float" => Ok(Kind::Float),
        "float64" | "double" => Ok(Kind::Double),
        "float16" | "half" => Ok(Kind::Half),
        "bfloat16" => Ok(Kind::BFloat16),
        other => Err(Error::value(format!(
            "unsupported dtype {other:?}; use float32, bfloat16, float16 or float64"
        ))),
    }
}

pub(crate) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Double => "float64",
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        _ => "float32",
    }
}

fn report_dict<'py>(py: Python<'py>, report: LoadReport) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("missing_keys", report.missing)?;
    dict.set_item("unexpected_keys", report.unexpected)?;
    dict.set_item("mismatched_keys", report.mismatched)?;
    Ok(dict)
}

fn wrap_all(named: Vec<(String, Tensor)>) -> Vec<(String, PyTensor)> {
    named.into_iter().map(|(k, t)| (k, PyTensor(t))).collect()
}

/// A classification model whose weights live in Rust (tch) and are torch tensors to Python.
#[pyclass(name = "Model", module = "ferrotune._core", frozen)]
pub struct PyModel {
    inner: Mutex<Model>,
}

impl PyModel {
    pub(crate) fn model(&self) -> &Mutex<Model> {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, Model> {
        // A panic while holding the lock (caught by `guard`) leaves the model usable.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[pymethods]
impl PyModel {
    /// A model with freshly initialized weights from a config (a JSON string).
    #[new]
    #[pyo3(signature = (config_json, device="cpu", task="sequence-classification"))]
    fn new(py: Python<'_>, config_json: &str, device: &str, task: &str) -> PyResult<Self> {
        let task = Task::parse(task)?;
        let value: serde_json::Value = serde_json::from_str(config_json)
            .map_err(|e| Error::value(format!("config is not valid JSON: {e}")))?;
        let config = ModelConfig::from_json(&value)?;
        let device = parse_device(device)?;
        let model = py.detach(|| guard(|| Ok(Model::new(config, task, device))))?;
        Ok(PyModel { inner: Mutex::new(model) })
    }

    /// Logits and, with labels, the loss: `(loss | None, logits, problem_type | None)`.
    #[pyo3(signature = (input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None, problem_type=None, train=false))]
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        py: Python<'_>,
        input_ids: PyTensor,
        attention_mask: Option<PyTensor>,
        token_type_ids: Option<PyTensor>,
        position_ids: Option<PyTensor>,
        labels: Option<PyTensor>,
        problem_type: Option<&str>,
        train: bool,
    ) -> PyResult<(Option<PyTensor>, PyTensor, Option<&'static str>)> {
        let problem_type = problem_type.map(ProblemType::parse).transpose()?;
        let output = py.detach(move || {
            guard(|| {
                let batch = Batch {
                    input_ids: &input_ids,
                    attention_mask: attention_mask.as_deref(),
                    token_type_ids: token_type_ids.as_deref(),
                    position_ids: position_ids.as_deref(),
                    labels: labels.as_deref(),
                };
                self.lock().forward(&batch, problem_type, train)
            })
        })?;
        Ok((
            output.loss.map(PyTensor),
            PyTensor(output.logits),
            output.problem_type.map(ProblemType::as_str),
        ))
    }

    /// Loads safetensors files (one, or the shards of an index) into the model.
    #[pyo3(signature = (paths, ignore_mismatched_sizes=false))]
    fn load_safetensors<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
        ignore_mismatched_sizes: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let report =
            py.detach(|| guard(|| self.lock().load_safetensors(&paths, ignore_mismatched_sizes)))?;
        report_dict(py, report)
    }

    /// Loads a state dict (name → torch.Tensor) into the model.
    #[pyo3(signature = (state_dict, ignore_mismatched_sizes=false))]
    fn load_state_dict<'py>(
        &self,
        py: Python<'py>,
        state_dict: Vec<(String, PyTensor)>,
        ignore_mismatched_sizes: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let tensors: Vec<(String, Tensor)> =
            state_dict.into_iter().map(|(k, t)| (k, t.0)).collect();
        let report =
            py.detach(|| guard(|| self.lock().load_state_dict(tensors, ignore_mismatched_sizes)))?;
        report_dict(py, report)
    }

    /// Every variable by its transformers name, sharing storage with the model.
    fn state_dict(&self) -> Vec<(String, PyTensor)> {
        wrap_all(self.lock().state_dict())
    }

    /// The trainable variables by name, sharing storage with the model.
    fn named_parameters(&self) -> Vec<(String, PyTensor)> {
        wrap_all(self.lock().named_parameters())
    }

    /// Writes the weights to a safetensors file that transformers loads.
    fn save_safetensors(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| guard(|| self.lock().save_safetensors(&path)))
    }

    fn to_device(&self, py: Python<'_>, device: &str) -> PyResult<()> {
        let device = parse_device(device)?;
        py.detach(|| {
            guard(|| {
                self.lock().to_device(device);
                Ok(())
            })
        })
    }

    fn set_dtype(&self, py: Python<'_>, dtype: &str) -> PyResult<()> {
        let kind = parse_kind(dtype)?;
        py.detach(|| guard(|| self.lock().set_kind(kind)))
    }

    #[getter]
    fn device(&self) -> String {
        device_name(self.lock().device())
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        kind_name(self.lock().kind())
    }

    /// "auto" (chosen per call), "explicit" (matmul-softmax) or "fused"
    /// (scaled_dot_product_attention).
    #[getter]
    fn attention(&self) -> &'static str {
        self.lock().attention().name()
    }

    /// Also transformers' `attn_implementation` names "eager" and "sdpa".
    #[setter]
    fn set_attention(&self, value: &str) -> PyResult<()> {
        let attention = AttentionImpl::parse(value)?;
        self.lock().set_attention(attention);
        Ok(())
    }

    #[getter]
    fn num_labels(&self) -> i64 {
        self.lock().config.num_labels
    }

    /// "sequence-classification", "token-classification" or "masked-lm".
    #[getter]
    fn task(&self) -> &'static str {
        self.lock().task.name()
    }

    /// (transformers' name, variable name) of each tied weight (a masked-LM decoder's).
    #[getter]
    fn tied(&self) -> Vec<(String, String)> {
        self.lock().tied().to_vec()
    }

    /// transformers' class name for this architecture, e.g. BertForSequenceClassification.
    #[getter]
    fn class_name(&self) -> String {
        let model = self.lock();
        model.config.arch.class_name(model.task)
    }

    /// The tokenized columns `forward` takes (`token_type_ids` only where the model has them).
    #[getter]
    fn input_names(&self) -> Vec<&'static str> {
        self.lock().config.input_names()
    }
}

/// A config (JSON string) with the defaults of its model type filled in, as a JSON string.
#[pyfunction]
fn complete_config(config_json: &str) -> PyResult<String> {
    let value: serde_json::Value = serde_json::from_str(config_json)
        .map_err(|e| Error::value(format!("config is not valid JSON: {e}")))?;
    Ok(crate::models::config::complete(&value)?.to_string())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyModel>()?;
    m.add_function(wrap_pyfunction!(complete_config, m)?)?;
    m.add("SUPPORTED_MODEL_TYPES", crate::models::supported_model_types())?;
    // (model_type, task, transformers class, base_model_prefix) of each supported architecture
    // and task.
    let classes: Vec<_> = crate::models::Arch::ALL
        .iter()
        .flat_map(|arch| {
            Task::ALL
                .map(|task| (arch.model_type(), task.name(), arch.class_name(task), arch.prefix()))
        })
        .collect();
    m.add("MODEL_CLASSES", classes)?;
    Ok(())
}
