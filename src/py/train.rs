//! Bindings of the training loop: `_core.Examples` (tokenized data read from Arrow),
//! `_core.TrainingRun` (the loop, calling back into the Python Trainer for callbacks, logs,
//! evaluation and checkpoints) and `_core.predict` (the evaluation loop).

use super::errors::{guard, Signals};
use super::json;
use super::model::PyModel;
use super::tensor::PyTensor;
use crate::error::Error;
use crate::inference;
use crate::models::ProblemType;
use crate::ops::Half;
use crate::train::config::TrainingConfig;
use crate::train::data::{Collator, Columns, Examples, Labeling, PadSettings};
use crate::train::run::{self, Control, Event, Hooks, Position, Run, UpdateStats};
use crate::train::scaler::{self, LossScaler};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::PyTable;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use tch::{Kind, Tensor};

/// Tokenized examples (input_ids, attention_mask, token_type_ids, labels) held in Rust.
#[pyclass(name = "Examples", module = "ferrotune._core", frozen)]
pub struct PyExamples {
    pub(crate) inner: Arc<Examples>,
}

#[pymethods]
impl PyExamples {
    /// Reads a table with an Arrow C stream (pyarrow.Table, ...): `input_ids` and optional
    /// `attention_mask`, `token_type_ids`, and the labels from `label_column`.
    /// With `per_token_labels`, the labels are a list column with one class id per token; with
    /// `special_tokens_mask`, that column is read where the table has it.
    #[new]
    #[pyo3(signature = (table, label_column=None, per_token_labels=false, special_tokens_mask=false))]
    fn new(
        py: Python<'_>,
        table: PyTable,
        label_column: Option<String>,
        per_token_labels: bool,
        special_tokens_mask: bool,
    ) -> PyResult<Self> {
        let (batches, _schema) = table.into_inner();
        let columns =
            Columns { labels: label_column.as_deref(), per_token_labels, special_tokens_mask };
        let examples = py.detach(|| guard(|| Examples::read(&batches, columns)))?;
        Ok(PyExamples { inner: Arc::new(examples) })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The rows `index`, `index + count`, ... (this process's part of an evaluation set).
    fn shard(&self, index: usize, count: usize) -> PyResult<Self> {
        if count == 0 || index >= count {
            return Err(Error::value(format!("shard {index} of {count} does not exist")).into());
        }
        let rows: Vec<usize> = (index..self.inner.len()).step_by(count).collect();
        Ok(PyExamples { inner: Arc::new(self.inner.select(&rows)) })
    }

    /// Raises ValueError naming the first label outside [0, num_labels) (or not finite).
    fn check_labels(&self, num_labels: i64) -> PyResult<()> {
        Ok(self.inner.check_labels(num_labels)?)
    }

    /// All the examples as one batch, as a data collator makes it (`labeling`: a mapping with
    /// the keys of `Labeling`, src/train/data.rs): (input_ids, attention_mask, token_type_ids or
    /// None, labels or None), int64 tensors.
    #[pyo3(signature = (pad_token_id=None, pad_left=false, pad_to_multiple_of=None, labeling=None))]
    #[allow(clippy::type_complexity)]
    fn collate(
        &self,
        py: Python<'_>,
        pad_token_id: Option<i64>,
        pad_left: bool,
        pad_to_multiple_of: Option<usize>,
        labeling: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<(PyTensor, PyTensor, Option<PyTensor>, Option<PyTensor>)> {
        let pad = PadSettings { pad_token_id, pad_left, pad_to_multiple_of };
        let collator = Collator::new(pad, None)?.with_labeling(labeling_from(labeling)?)?;
        let data = self.inner.clone();
        let indices: Vec<usize> = (0..data.len()).collect();
        let batch = py.detach(|| guard(|| collator.collate(&data, &indices, tch::Device::Cpu)))?;
        Ok((
            PyTensor(batch.input_ids),
            PyTensor(batch.attention_mask),
            batch.token_type_ids.map(PyTensor),
            batch.labels.map(PyTensor),
        ))
    }

    #[getter]
    fn has_labels(&self) -> bool {
        self.inner.labels.is_some()
    }

    /// "int" (class indices) or "float" (regression / multi-label values), or None.
    #[getter]
    fn label_kind(&self) -> Option<&'static str> {
        self.inner.labels.as_ref().map(|l| match crate::train::data::label_kind(l) {
            Kind::Int64 => "int",
            _ => "float",
        })
    }

    fn lengths(&self) -> Vec<usize> {
        self.inner.lengths()
    }
}

/// The collator's `Labeling` from a mapping with its keys (None: padding only).
fn labeling_from(value: Option<&Bound<'_, PyDict>>) -> PyResult<Labeling> {
    let Some(value) = value else {
        return Ok(Labeling::default());
    };
    serde_json::from_value(json::from_python(value.as_any())?)
        .map_err(|e| Error::value(format!("collator settings: {e}")).into())
}

/// Raises ValueError when a collator's settings (a mapping with the keys of `Labeling`) are
/// bad, as transformers' collators do when they are made.
#[pyfunction]
fn check_labeling(labeling: &Bound<'_, PyDict>) -> PyResult<()> {
    Collator::new(PadSettings::default(), None)?.with_labeling(labeling_from(Some(labeling))?)?;
    Ok(())
}

/// Raises ValueError when a table with `columns` (`what`: "train set", ...) is not tokenized.
#[pyfunction]
fn check_columns(columns: Vec<String>, what: &str) -> PyResult<()> {
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    Ok(crate::train::data::check_columns(&columns, what)?)
}

/// Runs `f` (which may return a Python error from a hook), turning a panic into FerrotuneError.
fn guard_py<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => guard(|| -> crate::Result<T> {
            Err(Error::Other("a panic in the training loop".into()))
        }),
    }
}

/// The evaluation loop: (logits [N, num_labels] or [N, length, num_labels] float32, labels or
/// None, mean loss or None). `labeling`: the collator's labels (see `collate`);
/// `preprocess(logits, labels)` runs on each batch's logits (preprocess_logits_for_metrics);
/// with `loss_only` no logits or labels are kept (an empty tensor and None).
#[pyfunction]
#[pyo3(signature = (model, examples, batch_size, pad_token_id=None, pad_left=false, pad_to_multiple_of=None, bf16=false, problem_type=None, nan_inf_filter=true, fp16=false, labeling=None, preprocess=None, loss_only=false))]
#[allow(clippy::too_many_arguments)]
fn predict(
    py: Python<'_>,
    model: Py<PyModel>,
    examples: &PyExamples,
    batch_size: usize,
    pad_token_id: Option<i64>,
    pad_left: bool,
    pad_to_multiple_of: Option<usize>,
    bf16: bool,
    problem_type: Option<&str>,
    nan_inf_filter: bool,
    fp16: bool,
    labeling: Option<&Bound<'_, PyDict>>,
    preprocess: Option<Py<PyAny>>,
    loss_only: bool,
) -> PyResult<(PyTensor, Option<PyTensor>, Option<f64>)> {
    let labeling = labeling_from(labeling)?;
    let settings = inference::Settings {
        half: Half::from_flags(bf16, fp16)?,
        problem_type: problem_type.map(ProblemType::parse).transpose()?,
        nan_inf_filter,
        loss_only,
    };
    let pad = PadSettings { pad_token_id, pad_left, pad_to_multiple_of };
    let data = examples.inner.clone();
    let signals = Signals::default();
    // The hook's Python error, kept to be raised as it is.
    let hook_error: Mutex<Option<PyErr>> = Mutex::new(None);
    let hook = |logits: Tensor, labels: Option<&Tensor>| -> crate::Result<Tensor> {
        let f = preprocess.as_ref().expect("only given with a hook");
        Python::attach(|py| {
            let labels = labels.map(|l| PyTensor(l.shallow_clone()));
            f.bind(py).call1((PyTensor(logits), labels))?.extract::<PyTensor>().map(|t| t.0)
        })
        .map_err(|e| {
            *hook_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            Error::Other("preprocess_logits_for_metrics failed".into())
        })
    };
    let out = py.detach(|| {
        guard(|| {
            let model = model.get().model();
            let preprocess = preprocess.is_some().then_some(&hook as inference::Preprocess<'_>);
            inference::evaluate(
                model,
                &data,
                batch_size,
                pad,
                labeling,
                settings,
                &|| signals.check(),
                preprocess,
            )
        })
    });
    if let Some(e) = hook_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let out = signals.raised(out)?;
    Ok((PyTensor(out.logits), out.labels.map(PyTensor), out.loss))
}

/// Calls the Python Trainer's `_event` and `_log_save_evaluate` from the loop.
struct PyHooks {
    trainer: Py<PyAny>,
}

fn control(value: Bound<'_, PyAny>) -> PyResult<Control> {
    let (epoch_stop, training_stop, logged): (bool, bool, bool) = value.extract()?;
    Ok(Control { epoch_stop, training_stop, logged })
}

impl Hooks for PyHooks {
    type Error = PyErr;

    fn event(&mut self, event: Event, at: Position) -> PyResult<Control> {
        Python::attach(|py| {
            py.check_signals()?; // Ctrl+C stops the run between two steps
            control(
                self.trainer
                    .bind(py)
                    .call_method1("_event", (event.name(), at.global_step, at.epoch))?,
            )
        })
    }

    fn average_across_processes(&mut self, flat: &Tensor) -> PyResult<()> {
        Python::attach(|py| {
            self.trainer
                .bind(py)
                .call_method1("_average_across_processes", (PyTensor(flat.shallow_clone()),))?;
            Ok(())
        })
    }

    fn non_finite_loss(&mut self, at: Position, loss: f32) -> PyResult<()> {
        Python::attach(|py| {
            self.trainer
                .bind(py)
                .call_method1("_non_finite_loss", (at.global_step, at.epoch, loss))?;
            Ok(())
        })
    }

    fn log_save_evaluate(&mut self, at: Position, s: UpdateStats) -> PyResult<Control> {
        Python::attach(|py| {
            let args = (
                at.global_step,
                at.epoch,
                s.loss_since_log,
                s.steps_since_log,
                s.grad_norm,
                s.learning_rate,
            );
            control(self.trainer.bind(py).call_method1("_log_save_evaluate", args)?)
        })
    }
}

/// One training run: data, optimizer, schedule and position.
#[pyclass(name = "TrainingRun", module = "ferrotune._core", frozen)]
pub struct PyTrainingRun {
    model: Py<PyModel>,
    run: Mutex<Run>,
}

impl PyTrainingRun {
    fn lock(&self) -> MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl PyTrainingRun {
    /// A run of `config` (a mapping with the keys of `TrainingConfig`, src/train/config.rs)
    /// over `examples`, keeping from `previous` what `Run::new` says.
    #[new]
    #[pyo3(signature = (model, examples, config, previous=None))]
    fn new(
        model: Py<PyModel>,
        examples: &PyExamples,
        config: &Bound<'_, PyDict>,
        previous: Option<&PyTrainingRun>,
    ) -> PyResult<Self> {
        let config = TrainingConfig::from_json(json::from_python(config.as_any())?)?;
        let mut previous = previous.map(PyTrainingRun::lock);
        let run = guard(|| {
            Run::new(model.get().model(), examples.inner.clone(), &config, previous.as_deref_mut())
        })?;
        Ok(PyTrainingRun { model, run: Mutex::new(run) })
    }

    /// Runs the loop; `trainer` receives `_event(name, global_step, epoch)` and
    /// `_log_save_evaluate(global_step, epoch, loss_sum, steps, grad_norm, learning_rate)`, each
    /// returning `(epoch_stop, training_stop, logged)`. Returns
    /// `(global_step, steps_this_call, total_loss, epoch, total_flos)`.
    fn train(&self, py: Python<'_>, trainer: Py<PyAny>) -> PyResult<(u64, u64, f64, f64, f64)> {
        let mut hooks = PyHooks { trainer };
        let summary =
            py.detach(|| guard_py(|| run::train(self.model.get().model(), &self.run, &mut hooks)))?;
        Ok((
            summary.global_step,
            summary.steps_this_call,
            summary.total_loss,
            summary.epoch,
            summary.total_flos,
        ))
    }

    /// Brings every weight and the optimizer's state up to date during `train` (the word
    /// table's rows the steps did not reach take the steps they missed): call before reading
    /// them from a hook (an evaluation, a checkpoint).
    fn settle(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| guard(|| run::settle(self.model.get().model(), &self.run)))
    }

    /// The float16 loss scaler as torch's GradScaler.state_dict() lays it out (scaler.pt),
    /// None without one.
    #[getter]
    fn scaler_state<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some((scale, growth_tracker)) = self.lock().scaler.as_ref().map(LossScaler::state)
        else {
            return Ok(None);
        };
        let state = PyDict::new(py);
        state.set_item("scale", scale)?;
        state.set_item("growth_factor", scaler::GROWTH_FACTOR)?;
        state.set_item("backoff_factor", scaler::BACKOFF_FACTOR)?;
        state.set_item("growth_interval", scaler::GROWTH_INTERVAL)?;
        state.set_item("_growth_tracker", growth_tracker)?;
        Ok(Some(state))
    }

    /// Restores the loss scaler of a checkpoint (scaler.pt).
    fn load_scaler_state(&self, scale: f64, growth_tracker: i64) -> PyResult<()> {
        match self.lock().scaler.as_mut() {
            Some(scaler) => Ok(scaler.load_state(scale, growth_tracker)?),
            None => Err(Error::value("this run has no loss scaler (fp16 is off)").into()),
        }
    }

    #[getter]
    fn max_steps(&self) -> u64 {
        self.lock().plan.max_steps
    }

    #[getter]
    fn num_train_epochs(&self) -> u64 {
        self.lock().plan.num_epochs
    }

    #[getter]
    fn updates_per_epoch(&self) -> u64 {
        self.lock().plan.updates_per_epoch
    }

    #[getter]
    fn num_train_samples(&self) -> f64 {
        self.lock().plan.num_train_samples
    }

    #[getter]
    fn warmup_steps(&self) -> u64 {
        self.lock().schedule.warmup_steps
    }

    #[getter]
    fn problem_type(&self) -> Option<&'static str> {
        self.lock().problem_type.map(ProblemType::as_str)
    }

    #[getter]
    fn scheduler_steps(&self) -> u64 {
        self.lock().scheduler_steps
    }

    /// The learning rate of the next update (LambdaLR's get_last_lr()).
    #[getter]
    fn last_lr(&self) -> f64 {
        self.lock().last_lr()
    }

    /// Continues from a checkpoint's position; the schedule's own position (scheduler.pt's
    /// last_epoch) lags the global step by the updates a float16 run skipped.
    #[pyo3(signature = (global_step, epoch, total_flos, scheduler_steps=None))]
    fn resume_at(
        &self,
        global_step: u64,
        epoch: f64,
        total_flos: f64,
        scheduler_steps: Option<u64>,
    ) {
        self.lock().resume_at(Position { global_step, epoch }, total_flos, scheduler_steps);
    }

    /// The optimizer state as torch's AdamW.state_dict() lays it out: per group
    /// (weight_decay, [(name, exp_avg, exp_avg_sq, step)]), sharing storage with the optimizer.
    #[allow(clippy::type_complexity)]
    fn optimizer_state(&self) -> Vec<(f64, Vec<(String, PyTensor, PyTensor, PyTensor)>)> {
        let r = self.lock();
        r.optimizer
            .groups
            .iter()
            .map(|g| {
                let params = g
                    .params
                    .iter()
                    .map(|p| {
                        (
                            p.name.clone(),
                            PyTensor(p.exp_avg.shallow_clone()),
                            PyTensor(p.exp_avg_sq.shallow_clone()),
                            PyTensor(p.step.shallow_clone()),
                        )
                    })
                    .collect();
                (g.weight_decay, params)
            })
            .collect()
    }

    /// Copies saved moments and steps (by parameter name) into the optimizer.
    fn load_optimizer_state(
        &self,
        state: Vec<(String, PyTensor, PyTensor, PyTensor)>,
    ) -> PyResult<()> {
        let saved: Vec<_> = state
            .into_iter()
            .map(|(name, exp_avg, exp_avg_sq, step)| (name, exp_avg.0, exp_avg_sq.0, step.0))
            .collect();
        Ok(self.lock().optimizer.load_state(&saved)?)
    }
}

/// The warmup of a run of `total_steps` updates: `warmup_steps` ≥ 1 is a number of steps,
/// below 1 a ratio of the run.
#[pyfunction]
fn warmup_steps(warmup_steps: f64, total_steps: u64) -> u64 {
    crate::train::schedule::warmup_steps(warmup_steps, total_steps)
}

/// Raises ValueError when both fp16 and bf16 are set.
#[pyfunction]
fn check_mixed_precision(bf16: bool, fp16: bool) -> PyResult<()> {
    Half::from_flags(bf16, fp16)?;
    Ok(())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyExamples>()?;
    m.add_class::<PyTrainingRun>()?;
    m.add_function(wrap_pyfunction!(predict, m)?)?;
    m.add_function(wrap_pyfunction!(warmup_steps, m)?)?;
    m.add_function(wrap_pyfunction!(check_mixed_precision, m)?)?;
    m.add_function(wrap_pyfunction!(check_columns, m)?)?;
    m.add_function(wrap_pyfunction!(check_labeling, m)?)?;
    m.add("SCHEDULER_TYPES", crate::train::schedule::ScheduleKind::names())?;
    m.add("SAMPLING_STRATEGIES", crate::train::plan::Sampling::NAMES.to_vec())?;
    m.add("PROBLEM_TYPES", ProblemType::names())?;
    Ok(())
}
