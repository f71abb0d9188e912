//! The training loop of transformers' `Trainer._inner_training_loop` / `_run_epoch`, and its
//! evaluation loop, in Rust. What belongs to the user stays in Python behind `Hooks`: the
//! callbacks (with their control flags), logging, evaluation metrics and checkpoint files.
//! No lock is held while a hook runs, so hooks may evaluate or save the model.

use super::data::{Collator, Examples, TensorBatch};
use super::optim::Optimizer;
use super::plan::{shard_batches, Plan, Sampling, Shard};
use super::scaler::LossScaler;
use super::schedule::Schedule;
use crate::error::{Error, Result};
use crate::models::{Batch, ProblemType, SequenceClassifier};
use crate::ops::{self, Autocast, Half};
use std::sync::{Mutex, MutexGuard};

use tch::{Kind, Tensor};

/// transformers' callback events that the loop itself raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    EpochBegin,
    StepBegin,
    SubstepEnd,
    PreOptimizerStep,
    OptimizerStep,
    StepEnd,
    EpochEnd,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::EpochBegin => "on_epoch_begin",
            Event::StepBegin => "on_step_begin",
            Event::SubstepEnd => "on_substep_end",
            Event::PreOptimizerStep => "on_pre_optimizer_step",
            Event::OptimizerStep => "on_optimizer_step",
            Event::StepEnd => "on_step_end",
            Event::EpochEnd => "on_epoch_end",
        }
    }
}

/// Where the run is, as `TrainerState` has it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub global_step: u64,
    pub epoch: f64,
}

/// The numbers `_maybe_log_save_evaluate` needs after an update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpdateStats {
    /// Sum of the losses since the last log (a float32 accumulator, as transformers' _tr_loss).
    pub loss_since_log: f64,
    pub steps_since_log: u64,
    /// Total gradient norm before clipping, of the last update.
    pub grad_norm: Option<f64>,
    /// The learning rate the last update used.
    pub learning_rate: f64,
}

/// What the callbacks decided (`TrainerControl`), and whether a training log was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Control {
    pub epoch_stop: bool,
    pub training_stop: bool,
    pub logged: bool,
}

pub trait Hooks {
    type Error: From<Error>;
    /// Runs the callbacks of `event`.
    fn event(&mut self, event: Event, at: Position) -> std::result::Result<Control, Self::Error>;
    /// Logs, evaluates and saves as the callbacks asked (`_maybe_log_save_evaluate`).
    fn log_save_evaluate(
        &mut self,
        at: Position,
        stats: UpdateStats,
    ) -> std::result::Result<Control, Self::Error>;
    /// Replaces `flat` (every gradient, flattened into one tensor) by its mean over the
    /// processes that train together (an all-reduce), in place.
    fn average_across_processes(&mut self, flat: &Tensor) -> std::result::Result<(), Self::Error>;
    /// The loss of a batch of step `at.global_step` (counted from 1, as the logs do) was NaN or
    /// infinite; transformers stays silent, ferrotune says where it began.
    fn non_finite_loss(&mut self, at: Position, loss: f32) -> std::result::Result<(), Self::Error>;
}

/// Settings of the training step.
#[derive(Debug, Clone, Copy)]
pub struct StepSettings {
    pub max_grad_norm: f64,
    /// Mixed precision: autocast to bfloat16 or float16 (the latter with loss scaling).
    pub half: Option<Half>,
    pub nan_inf_filter: bool,
}

/// Everything a training run keeps between steps (and between `train()` calls).
pub struct Run {
    pub data: std::sync::Arc<Examples>,
    pub collator: Collator,
    pub batch_size: usize,
    pub drop_last: bool,
    pub sampling: Sampling,
    /// This process among those that train together.
    pub shard: Shard,
    /// Loss scaling, for float16.
    pub scaler: Option<LossScaler>,
    pub plan: Plan,
    pub schedule: Schedule,
    pub optimizer: Optimizer,
    pub settings: StepSettings,
    pub problem_type: Option<ProblemType>,
    /// Scheduler steps taken (LambdaLR's last_epoch).
    pub scheduler_steps: u64,
    pub global_step: u64,
    pub epoch: f64,
    pub total_flos: f64,
    /// Non-embedding parameters, for total_flos (6 × tokens × parameters).
    pub flos_parameters: f64,
}

/// The result of a `train()` call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub global_step: u64,
    pub steps_this_call: u64,
    /// Sum of the training losses of this call (per update), for train_loss.
    pub total_loss: f64,
    pub epoch: f64,
    pub total_flos: f64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn batch_view<'a>(t: &'a TensorBatch) -> Batch<'a> {
    Batch {
        input_ids: &t.input_ids,
        attention_mask: Some(&t.attention_mask),
        token_type_ids: t.token_type_ids.as_ref(),
        position_ids: None,
        labels: t.labels.as_ref(),
    }
}

/// Forward and backward of one micro-batch; returns its (mean) loss.
fn micro_step(
    model: &Mutex<SequenceClassifier>,
    run: &mut Run,
    batch: &TensorBatch,
) -> Result<f32> {
    let model = lock(model);
    let (output, word_lookup) = {
        let _autocast =
            run.settings.half.map(|half| Autocast::enter(model.device(), half)).transpose()?;
        model.forward_for_training(&batch_view(batch), run.problem_type)?
    };
    run.problem_type = output.problem_type;
    let loss = output.loss.ok_or_else(|| Error::value("the training data has no labels"))?;
    match &run.scaler {
        Some(scaler) => scaler.scale(&loss).f_backward()?,
        None => loss.f_backward()?,
    }
    if let Some(lookup) = word_lookup {
        run.optimizer.accumulate_words(model.word_embeddings(), lookup)?;
    }
    Ok(loss.to_kind(Kind::Float).double_value(&[]) as f32)
}

/// The training loop from `run.global_step` (0, or a resumed checkpoint's) to the plan's end.
pub fn train<H: Hooks>(
    model: &Mutex<SequenceClassifier>,
    run: &Mutex<Run>,
    hooks: &mut H,
) -> std::result::Result<Summary, H::Error> {
    let (plan, start_step, lengths) = {
        let mut r = lock(run);
        // As `_inner_training_loop` calls model.zero_grad() before the first step.
        let _model = lock(model);
        r.optimizer.zero_grad()?;
        (r.plan, r.global_step, r.data.lengths())
    };
    let (epochs_done, mut skip_batches) = plan.resume_point(start_step);
    let resumed_mid_epoch = skip_batches > 0;
    let mut tr_loss: f32 = 0.0;
    let mut total_loss = 0.0f64;
    let mut last_logged = start_step;
    let mut stats = UpdateStats {
        loss_since_log: 0.0,
        steps_since_log: 0,
        grad_norm: None,
        learning_rate: 0.0,
    };
    let mut stop = false;
    for epoch in epochs_done..plan.num_epochs {
        if stop {
            break;
        }
        let ctl = hooks.event(Event::EpochBegin, position(run))?;
        let mut epoch_stop = ctl.epoch_stop;
        let epoch_batches = {
            let r = lock(run);
            shard_batches(&r.sampling.order(epoch, &lengths)?, r.batch_size, r.drop_last, r.shard)
        };
        // A DataLoader iterator draws one int64 from torch's generator when it starts; a run
        // resumed mid-epoch restored the generator after that draw.
        if !(resumed_mid_epoch && epoch == epochs_done) {
            let _ = Tensor::empty([], (Kind::Int64, tch::Device::Cpu)).random_();
        }
        let g = plan.grad_accum;
        let total = epoch_batches.len();
        let mut next = std::mem::take(&mut skip_batches);
        while next < total && !epoch_stop && !stop {
            let window_end = (next / g * g + g).min(total);
            hooks.event(Event::StepBegin, position(run))?;
            for (i, ids) in epoch_batches.iter().enumerate().take(window_end).skip(next) {
                let mut r = lock(run);
                let batch = r.collator.collate(&r.data, ids, lock(model).device());
                let loss = micro_step(model, &mut r, &batch)?;
                if r.settings.nan_inf_filter && !loss.is_finite() {
                    tr_loss += tr_loss / (1 + r.global_step - last_logged) as f32;
                } else {
                    tr_loss += loss;
                }
                r.total_flos += 6.0 * batch.input_ids.numel() as f64 * r.flos_parameters;
                // The step and epoch this batch belongs to, as the logs will give them.
                let at = Position {
                    global_step: r.global_step + 1,
                    epoch: epoch as f64 + window_end as f64 / total as f64,
                };
                drop(r);
                if !loss.is_finite() {
                    hooks.non_finite_loss(at, loss)?;
                }
                if i + 1 < window_end {
                    hooks.event(Event::SubstepEnd, position(run))?;
                }
            }
            let shared = lock(run).shard.count > 1;
            if shared {
                average_gradients(model, run, hooks)?;
            }
            let grad_norm = {
                let mut r = lock(run);
                let _model = lock(model);
                let grads = r.optimizer.grads();
                if let Some(scaler) = r.scaler.as_mut() {
                    scaler.unscale(&grads)?;
                }
                let limit = if r.settings.max_grad_norm > 0.0 {
                    r.settings.max_grad_norm
                } else {
                    f64::INFINITY
                };
                ops::clip_grad_norm(&grads, limit)?
            };
            hooks.event(Event::PreOptimizerStep, position(run))?;
            let (learning_rate, stepped) = {
                let mut r = lock(run);
                let _model = lock(model);
                let lr = r.schedule.lr(r.scheduler_steps);
                // GradScaler.step: no update from gradients with an inf or a NaN.
                let skip = r.scaler.as_ref().is_some_and(LossScaler::found_inf);
                if !skip {
                    r.optimizer.step(lr)?;
                }
                if let Some(scaler) = r.scaler.as_mut() {
                    scaler.update()?;
                }
                (lr, !skip)
            };
            hooks.event(Event::OptimizerStep, position(run))?;
            {
                let mut r = lock(run);
                // accelerate's scheduler does not step after a skipped update.
                if stepped {
                    r.scheduler_steps += 1;
                }
                r.optimizer.zero_grad()?;
                r.global_step += 1;
                r.epoch = epoch as f64 + window_end as f64 / total as f64;
            }
            next = window_end;
            let mut ctl = hooks.event(Event::StepEnd, position(run))?;
            stats = UpdateStats {
                loss_since_log: tr_loss as f64,
                steps_since_log: lock(run).global_step - last_logged,
                grad_norm: Some(grad_norm),
                learning_rate,
            };
            let after = hooks.log_save_evaluate(position(run), stats)?;
            if after.logged {
                total_loss += tr_loss as f64;
                tr_loss = 0.0;
                last_logged = lock(run).global_step;
            }
            ctl = Control {
                epoch_stop: ctl.epoch_stop || after.epoch_stop,
                training_stop: ctl.training_stop || after.training_stop,
                logged: after.logged,
            };
            epoch_stop = ctl.epoch_stop;
            stop = ctl.training_stop;
        }
        let ctl = hooks.event(Event::EpochEnd, position(run))?;
        stats.loss_since_log = tr_loss as f64;
        stats.steps_since_log = lock(run).global_step - last_logged;
        let after = hooks.log_save_evaluate(position(run), stats)?;
        if after.logged {
            total_loss += tr_loss as f64;
            tr_loss = 0.0;
            last_logged = lock(run).global_step;
        }
        stop = stop || ctl.training_stop || after.training_stop;
    }
    total_loss += tr_loss as f64;
    let r = lock(run);
    Ok(Summary {
        global_step: r.global_step,
        steps_this_call: r.global_step - start_step,
        total_loss,
        epoch: r.epoch,
        total_flos: r.total_flos,
    })
}

/// DistributedDataParallel's gradient synchronization at the end of an accumulation window:
/// the gradients, flattened into one bucket, averaged over the processes, copied back.
fn average_gradients<H: Hooks>(
    model: &Mutex<SequenceClassifier>,
    run: &Mutex<Run>,
    hooks: &mut H,
) -> std::result::Result<(), H::Error> {
    let mut grads = {
        let _model = lock(model);
        lock(run).optimizer.grads()
    };
    let flat = Tensor::cat(&grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0);
    hooks.average_across_processes(&flat)?;
    let _model = lock(model);
    let mut offset = 0;
    for g in grads.iter_mut() {
        let n = g.numel() as i64;
        g.f_copy_(&flat.narrow(0, offset, n).view_as(g)).map_err(Error::from)?;
        offset += n;
    }
    Ok(())
}

fn position(run: &Mutex<Run>) -> Position {
    let r = lock(run);
    Position { global_step: r.global_step, epoch: r.epoch }
}

/// Logits, labels and the sample-weighted mean loss of an evaluation set.
pub struct Predictions {
    /// [examples, num_labels], float32, on the CPU, in the data's order.
    pub logits: Tensor,
    pub labels: Option<Tensor>,
    pub loss: Option<f64>,
}

/// How inference groups the examples (sorted by length, longest first) into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// A fixed number of examples per batch.
    Examples(usize),
    /// As many examples as fit `tokens` padded tokens, at most `max_examples`.
    Tokens { tokens: usize, max_examples: usize },
}

impl Batching {
    /// Padded tokens per batch when the batch size is free: inference results do not depend on
    /// how examples are grouped. On the CPU, batches of about 1,500 tokens were fastest for
    /// MiniLM on the tweets (32 rows of ~40 tokens: 170 texts/s; 8,192 tokens: 149): the
    /// activations stay in cache. A GPU wants far larger batches.
    pub fn automatic(cuda: bool) -> Batching {
        if cuda {
            Batching::Tokens { tokens: 65_536, max_examples: 1024 }
        } else {
            Batching::Tokens { tokens: 1_536, max_examples: 64 }
        }
    }

    /// Splits `order` (longest first) into batches.
    fn split(self, order: &[usize], lengths: &[usize]) -> Vec<Vec<usize>> {
        match self {
            Batching::Examples(n) => order.chunks(n.max(1)).map(<[usize]>::to_vec).collect(),
            Batching::Tokens { tokens, max_examples } => {
                let mut out: Vec<Vec<usize>> = Vec::new();
                let mut current: Vec<usize> = Vec::new();
                for &i in order {
                    // Longest first: the batch's first example sets its width.
                    let width = current.first().map_or(lengths[i], |&f| lengths[f]);
                    if !current.is_empty()
                        && ((current.len() + 1) * width > tokens || current.len() == max_examples)
                    {
                        out.push(std::mem::take(&mut current));
                    }
                    current.push(i);
                }
                if !current.is_empty() {
                    out.push(current);
                }
                out
            }
        }
    }
}

/// transformers' `evaluation_loop`: no gradients, no dropout. Batches are formed from examples
/// sorted by length (less padding; each example's logits do not depend on its batch) and the
/// results are put back in the data's order. `interrupt` runs before each batch; its error
/// stops the loop (Ctrl+C).
#[allow(clippy::too_many_arguments)]
pub fn predict(
    model: &Mutex<SequenceClassifier>,
    data: &Examples,
    collator: &Collator,
    batching: Batching,
    half: Option<Half>,
    problem_type: Option<ProblemType>,
    nan_inf_filter: bool,
    interrupt: &dyn Fn() -> Result<()>,
) -> Result<Predictions> {
    if batching == Batching::Examples(0) {
        return Err(Error::value("per_device_eval_batch_size must be a positive integer, got 0"));
    }
    let lengths = data.lengths();
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let model = lock(model);
    let _no_grad = tch::no_grad_guard();
    let _autocast = half.map(|half| Autocast::enter(model.device(), half)).transpose()?;
    // As a DataLoader iterator does at its start.
    let _ = Tensor::empty([], (Kind::Int64, tch::Device::Cpu)).random_();
    let mut logits = Vec::new();
    let mut losses: Vec<(f64, usize)> = Vec::new();
    for chunk in batching.split(&order, &lengths) {
        interrupt()?;
        let batch = collator.collate(data, &chunk, model.device());
        let out = model.forward(&batch_view(&batch), problem_type, false)?;
        if let Some(loss) = out.loss {
            losses.push((loss.to_kind(Kind::Double).double_value(&[]), chunk.len()));
        }
        logits.push(out.logits.to_kind(Kind::Float).to_device(tch::Device::Cpu));
    }
    if logits.is_empty() {
        return Err(Error::value("there is nothing to predict (no examples)"));
    }
    let sorted = Tensor::cat(&logits, 0);
    let position: Vec<i64> = {
        let mut inverse = vec![0i64; order.len()];
        for (pos, &i) in order.iter().enumerate() {
            inverse[i] = pos as i64;
        }
        inverse
    };
    let logits = sorted.index_select(0, &Tensor::from_slice(&position));
    let labels = collator_labels(data);
    let loss = (!losses.is_empty()).then(|| {
        let kept: Vec<&(f64, usize)> =
            if nan_inf_filter && losses.iter().any(|(l, _)| l.is_finite()) {
                losses.iter().filter(|(l, _)| l.is_finite()).collect()
            } else {
                losses.iter().collect()
            };
        let n: usize = kept.iter().map(|(_, n)| n).sum();
        kept.iter().map(|(l, n)| l * *n as f64).sum::<f64>() / n as f64
    });
    Ok(Predictions { logits, labels, loss })
}

/// All labels of `data` as one tensor, in order.
fn collator_labels(data: &Examples) -> Option<Tensor> {
    use super::data::Labels;
    data.labels.as_ref().map(|labels| match labels {
        Labels::Classes(c) => Tensor::from_slice(c),
        Labels::Values { values, width } => {
            let t = Tensor::from_slice(values);
            if *width == 1 {
                t
            } else {
                t.view([-1, *width as i64])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::Batching;

    #[test]
    fn token_budget_batches_grow_as_examples_shrink() {
        let lengths = [10, 2, 8, 2, 4, 2];
        let order = [0, 2, 4, 1, 3, 5]; // longest first
        let b = Batching::Tokens { tokens: 20, max_examples: 100 }.split(&order, &lengths);
        assert_eq!(b, vec![vec![0, 2], vec![4, 1, 3, 5]]);
        let b = Batching::Tokens { tokens: 100, max_examples: 4 }.split(&order, &lengths);
        assert_eq!(b, vec![vec![0, 2, 4, 1], vec![3, 5]]);
        assert_eq!(
            Batching::Examples(4).split(&order, &lengths),
            vec![vec![0, 2, 4, 1], vec![3, 5]]
        );
    }
}
