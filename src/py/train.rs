//! Bindings of the training loop: `_core.Examples` (tokenized data read from Arrow),
//! `_core.TrainingRun` (the loop, calling back into the Python Trainer for callbacks, logs,
//! evaluation and checkpoints) and `_core.predict` (the evaluation loop).

use super::errors::{guard, Signals};
use super::model::PySequenceClassifier;
use super::tensor::PyTensor;
use crate::error::Error;
use crate::models::ProblemType;
use crate::ops::Half;
use crate::train::data::{Collator, Examples};
use crate::train::optim::Optimizer;
use crate::train::plan::{Plan, Sampling, Shard};
use crate::train::run::{self, Control, Event, Hooks, Position, Run, StepSettings, UpdateStats};
use crate::train::scaler::{self, LossScaler};
use crate::train::schedule::{Schedule, ScheduleKind};
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
    #[new]
    #[pyo3(signature = (table, label_column=None))]
    fn new(py: Python<'_>, table: PyTable, label_column: Option<String>) -> PyResult<Self> {
        let (batches, _schema) = table.into_inner();
        let examples = py.detach(|| {
            guard(|| Examples::from_record_batches(&batches, label_column.as_deref()))
        })?;
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

fn collator(pad_token_id: i64, pad_left: bool, pad_to_multiple_of: Option<usize>) -> Collator {
    Collator { pad_token_id, pad_to_multiple_of, pad_left }
}

fn problem(problem_type: Option<&str>) -> PyResult<Option<ProblemType>> {
    Ok(problem_type.map(ProblemType::parse).transpose()?)
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

/// The evaluation loop: (logits [N, num_labels] float32, labels or None, mean loss or None).
#[pyfunction]
#[pyo3(signature = (model, examples, batch_size, pad_token_id=0, pad_left=false, pad_to_multiple_of=None, bf16=false, problem_type=None, nan_inf_filter=true, fp16=false))]
#[allow(clippy::too_many_arguments)]
fn predict(
    py: Python<'_>,
    model: Py<PySequenceClassifier>,
    examples: &PyExamples,
    batch_size: usize,
    pad_token_id: i64,
    pad_left: bool,
    pad_to_multiple_of: Option<usize>,
    bf16: bool,
    problem_type: Option<&str>,
    nan_inf_filter: bool,
    fp16: bool,
) -> PyResult<(PyTensor, Option<PyTensor>, Option<f64>)> {
    let half = mixed_precision(bf16, fp16)?;
    let problem_type = problem(problem_type)?;
    let data = examples.inner.clone();
    let collator = collator(pad_token_id, pad_left, pad_to_multiple_of);
    let signals = Signals::default();
    let out = signals.raised(py.detach(|| {
        guard(|| {
            // On the CPU the examples are grouped by a token budget instead of by
            // per_device_eval_batch_size (logits and loss do not depend on the grouping; the
            // budget's batches ran faster); on a GPU the batch size the user chose is kept.
            let cuda =
                model.get().model().lock().unwrap_or_else(|p| p.into_inner()).device().is_cuda();
            let batching = match (batch_size, cuda) {
                (0, _) | (_, true) => run::Batching::Examples(batch_size),
                (_, false) => run::Batching::automatic(false),
            };
            run::predict(
                model.get().model(),
                &data,
                &collator,
                batching,
                half,
                problem_type,
                nan_inf_filter,
                &|| signals.check(),
            )
        })
    }))?;
    Ok((PyTensor(out.logits), out.labels.map(PyTensor), out.loss))
}

/// The autocast precision of `bf16` / `fp16` (at most one).
fn mixed_precision(bf16: bool, fp16: bool) -> PyResult<Option<Half>> {
    match (bf16, fp16) {
        (true, true) => {
            Err(Error::value("At most one of fp16 and bf16 can be True, but not both").into())
        }
        (true, false) => Ok(Some(Half::BFloat16)),
        (false, true) => Ok(Some(Half::Float16)),
        (false, false) => Ok(None),
    }
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
    model: Py<PySequenceClassifier>,
    run: Mutex<Run>,
}

impl PyTrainingRun {
    fn lock(&self) -> MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl PyTrainingRun {
    #[new]
    #[pyo3(signature = (
        model, examples, *, batch_size, grad_accum, num_train_epochs, max_steps, drop_last,
        sampling, seed, learning_rate, lr_scheduler_type, warmup_steps, weight_decay, adam_beta1,
        adam_beta2, adam_epsilon, max_grad_norm, bf16, nan_inf_filter, pad_token_id, pad_left,
        pad_to_multiple_of=None, problem_type=None, process_index=0, num_processes=1, fp16=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        model: Py<PySequenceClassifier>,
        examples: &PyExamples,
        batch_size: usize,
        grad_accum: usize,
        num_train_epochs: f64,
        max_steps: i64,
        drop_last: bool,
        sampling: &str,
        seed: u64,
        learning_rate: f64,
        lr_scheduler_type: &str,
        warmup_steps: f64,
        weight_decay: f64,
        adam_beta1: f64,
        adam_beta2: f64,
        adam_epsilon: f64,
        max_grad_norm: f64,
        bf16: bool,
        nan_inf_filter: bool,
        pad_token_id: i64,
        pad_left: bool,
        pad_to_multiple_of: Option<usize>,
        problem_type: Option<&str>,
        process_index: usize,
        num_processes: usize,
        fp16: bool,
    ) -> PyResult<Self> {
        let half = mixed_precision(bf16, fp16)?;
        if process_index >= num_processes {
            return Err(Error::value(format!(
                "process_index {process_index} must be below num_processes {num_processes}"
            ))
            .into());
        }
        let shard = Shard { index: process_index, count: num_processes };
        let data = examples.inner.clone();
        let plan = Plan::new(
            data.len(),
            batch_size,
            grad_accum,
            num_train_epochs,
            max_steps,
            drop_last,
            shard,
        )?;
        let sampling = match sampling {
            "random" => Sampling::Random { seed },
            "sequential" => Sampling::Sequential,
            "group_by_length" => Sampling::GroupByLength { group_size: batch_size * grad_accum },
            other => {
                return Err(Error::value(format!(
                    "train_sampling_strategy must be 'random', 'sequential' or 'group_by_length', got {other:?}"
                ))
                .into())
            }
        };
        // warmup_steps >= 1 is a number of steps, below 1 a ratio of the run (training_args.py,
        // get_warmup_steps).
        let warmup = if warmup_steps >= 1.0 {
            warmup_steps as u64
        } else {
            (plan.max_steps as f64 * warmup_steps).ceil() as u64
        };
        let schedule = Schedule {
            kind: ScheduleKind::parse(lr_scheduler_type)?,
            base_lr: learning_rate,
            warmup_steps: warmup,
            total_steps: plan.max_steps,
        };
        let classifier = model.get().model();
        let (optimizer, flos_parameters, device) = {
            let m = classifier.lock().unwrap_or_else(|p| p.into_inner());
            let named = m.named_parameters();
            let non_embedding: i64 = named
                .iter()
                .filter(|(name, _)| !name.contains("embeddings."))
                .map(|(_, t)| t.numel() as i64)
                .sum();
            (
                Optimizer::new(named, weight_decay, adam_beta1, adam_beta2, adam_epsilon),
                non_embedding as f64,
                m.device(),
            )
        };
        let run = Run {
            data,
            collator: collator(pad_token_id, pad_left, pad_to_multiple_of),
            batch_size,
            drop_last,
            sampling,
            shard,
            plan,
            schedule,
            optimizer,
            settings: StepSettings { max_grad_norm, half, nan_inf_filter },
            scaler: fp16.then(|| LossScaler::new(device)),
            problem_type: problem(problem_type)?,
            scheduler_steps: 0,
            global_step: 0,
            epoch: 0.0,
            total_flos: 0.0,
            flos_parameters,
        };
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
        let r = self.lock();
        r.schedule.lr(r.scheduler_steps)
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
        let mut r = self.lock();
        r.global_step = global_step;
        r.scheduler_steps = scheduler_steps.unwrap_or(global_step);
        r.epoch = epoch;
        r.total_flos = total_flos;
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
        let r = self.lock();
        let by_name: std::collections::HashMap<&str, &crate::train::optim::Param> =
            r.optimizer.params().map(|p| (p.name.as_str(), p)).collect();
        for (name, exp_avg, exp_avg_sq, step) in &state {
            let p = by_name.get(name.as_str()).ok_or_else(|| {
                Error::value(format!(
                    "the optimizer state names {name:?}, which the model does not have"
                ))
            })?;
            if exp_avg.size() != p.exp_avg.size() {
                return Err(Error::value(format!(
                    "the optimizer state of {name:?} has shape {:?} but the parameter has {:?}",
                    exp_avg.size(),
                    p.exp_avg.size()
                ))
                .into());
            }
            tch::no_grad(|| -> Result<(), tch::TchError> {
                p.exp_avg.shallow_clone().f_copy_(exp_avg)?;
                p.exp_avg_sq.shallow_clone().f_copy_(exp_avg_sq)?;
                p.step.shallow_clone().f_copy_(step)?;
                Ok(())
            })
            .map_err(Error::from)?;
        }
        Ok(())
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyExamples>()?;
    m.add_class::<PyTrainingRun>()?;
    m.add_function(wrap_pyfunction!(predict, m)?)?;
    Ok(())
}
