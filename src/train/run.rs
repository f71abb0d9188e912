//! The training loop of transformers' `Trainer._inner_training_loop` / `_run_epoch`, and its
//! evaluation loop, in Rust. What belongs to the user stays in Python behind `Hooks`: the
//! callbacks (with their control flags), logging, evaluation metrics and checkpoint files.
//! No lock is held while a hook runs, so hooks may evaluate or save the model.

use super::config::TrainingConfig;
use super::data::{Collator, Examples, TensorBatch};
use super::optim::Optimizer;
use super::plan::{shard_batches, Plan, Sampling, Shard};
use super::scaler::LossScaler;
use super::schedule::{self, Schedule, ScheduleKind};
use crate::error::{Error, Result};
use crate::models::{Model, ProblemType};
use crate::ops::{Autocast, Half};
use crate::parallel::Threads;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
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

impl Run {
    /// A run of `config` over `data` for `model`, at step 0. From `previous`, the model's last
    /// run, it takes what transformers' Trainer keeps from one `train()` to the next: the
    /// optimizer (its moments, step counts and hyperparameters, and the learning rate its
    /// schedules start from: LambdaLR's `initial_lr`) when it belongs to `model`, and the
    /// float16 loss scale (the accelerator's GradScaler).
    pub fn new(
        model: &Mutex<Model>,
        data: std::sync::Arc<Examples>,
        config: &TrainingConfig,
        previous: Option<&mut Run>,
    ) -> Result<Run> {
        let half = Half::from_flags(config.bf16, config.fp16)?;
        let (index, count) = (config.process_index, config.num_processes);
        if index >= count {
            return Err(Error::value(format!(
                "process_index {index} must be below num_processes {count}"
            )));
        }
        let shard = Shard { index, count };
        let plan = Plan::new(
            data.len(),
            config.batch_size,
            config.grad_accum,
            config.num_train_epochs,
            config.max_steps,
            config.drop_last,
            shard,
        )?;
        let sampling =
            Sampling::parse(&config.sampling, config.seed, config.batch_size * config.grad_accum)?;
        let mut schedule = Schedule {
            kind: ScheduleKind::parse(&config.lr_scheduler_type)?,
            base_lr: config.learning_rate,
            warmup_steps: schedule::warmup_steps(config.warmup_steps, plan.max_steps),
            total_steps: plan.max_steps,
        };
        let problem_type = config.problem_type.as_deref().map(ProblemType::parse).transpose()?;
        let m = lock(model);
        let named = m.named_parameters();
        // total_flos counts the non-embedding parameters, as transformers' floating_point_ops.
        let flos_parameters: i64 = named
            .iter()
            .filter(|(name, _)| !name.contains("embeddings."))
            .map(|(_, t)| t.numel() as i64)
            .sum();
        let collator = Collator::new(config.padding(), m.config.pad_token_id)?
            .with_labeling(config.labeling.clone())?;
        // Nothing fails after this: `previous` loses what it gives only to a run that exists.
        let device = m.device();
        let mut previous = previous;
        let kept = previous.as_deref_mut().filter(|p| p.optimizer.belongs_to(&m.state_dict()));
        let mut optimizer = match kept {
            Some(p) => {
                schedule.base_lr = p.schedule.base_lr;
                p.optimizer.take()
            }
            None => Optimizer::new(
                named,
                config.weight_decay,
                config.adam_beta1,
                config.adam_beta2,
                config.adam_epsilon,
            ),
        };
        // The half weights' gradients are not the parameters' own (see `HalfWeight`).
        optimizer.use_half_weights(
            half == Some(Half::BFloat16)
                && device == tch::Device::Cpu
                && config.grad_accum == 1
                && count == 1
                && !config.callbacks_read_gradients,
        );
        // Callbacks may read the weights between steps, and other processes' gradients reach
        // every row.
        optimizer.use_lazy_words(
            device == tch::Device::Cpu && count == 1 && !config.callbacks_read_weights,
        )?;
        let scaler = config.fp16.then(|| {
            let kept = previous.and_then(|p| p.scaler.take());
            kept.unwrap_or_else(|| LossScaler::new(device))
        });
        Ok(Run {
            data,
            collator,
            batch_size: config.batch_size,
            drop_last: config.drop_last,
            sampling,
            shard,
            plan,
            schedule,
            optimizer,
            settings: StepSettings {
                max_grad_norm: config.max_grad_norm,
                half,
                nan_inf_filter: config.nan_inf_filter,
            },
            scaler,
            problem_type,
            scheduler_steps: 0,
            global_step: 0,
            epoch: 0.0,
            total_flos: 0.0,
            flos_parameters: flos_parameters as f64,
        })
    }

    /// Continues from a checkpoint's position; the schedule's own position (scheduler.pt's
    /// last_epoch) lags the global step by the updates a float16 run skipped.
    pub fn resume_at(&mut self, at: Position, total_flos: f64, scheduler_steps: Option<u64>) {
        self.global_step = at.global_step;
        self.scheduler_steps = scheduler_steps.unwrap_or(at.global_step);
        self.epoch = at.epoch;
        self.total_flos = total_flos;
    }

    /// The learning rate of the next update (LambdaLR's get_last_lr()).
    pub fn last_lr(&self) -> f64 {
        self.schedule.lr(self.scheduler_steps)
    }

    /// Unscales the gradients (float16) and clips them to `max_grad_norm` (none when it is 0);
    /// returns their total norm before clipping.
    fn clip_gradients(&mut self) -> Result<f64> {
        let grads = self.optimizer.grads();
        if let Some(scaler) = self.scaler.as_mut() {
            scaler.unscale(&grads)?;
        }
        let max_norm = self.settings.max_grad_norm;
        self.optimizer.clip_grad_norm(&grads, if max_norm > 0.0 { max_norm } else { f64::INFINITY })
    }

    /// The optimizer's step at the schedule's learning rate, unless the float16 gradients hold
    /// an inf or a NaN (GradScaler.step); returns (learning rate, whether it stepped).
    fn update(&mut self) -> Result<(f64, bool)> {
        let lr = self.last_lr();
        let skip = self.scaler.as_ref().is_some_and(LossScaler::found_inf);
        if !skip {
            self.optimizer.step(lr)?;
        }
        if let Some(scaler) = self.scaler.as_mut() {
            scaler.update()?;
        }
        Ok((lr, !skip))
    }

    /// After an update: the schedule moves on (accelerate's does not after a skipped update),
    /// the gradients are zeroed, and the run is at the next step, at `epoch`.
    fn finish_update(&mut self, stepped: bool, epoch: f64) -> Result<()> {
        if stepped {
            self.scheduler_steps += 1;
        }
        self.optimizer.zero_grad()?;
        self.global_step += 1;
        self.epoch = epoch;
        Ok(())
    }
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

/// Runs `f` on the run while holding the model too (the optimizer updates its weights).
fn exclusive<T>(
    model: &Mutex<Model>,
    run: &Mutex<Run>,
    f: impl FnOnce(&mut Run) -> Result<T>,
) -> Result<T> {
    let mut r = lock(run);
    let _model = lock(model);
    f(&mut r)
}

/// Forward and backward of one micro-batch; returns its (mean) loss.
fn micro_step(model: &Mutex<Model>, run: &mut Run, batch: &TensorBatch) -> Result<f32> {
    let model = lock(model);
    run.optimizer.catch_up_words(&batch.input_ids)?;
    run.optimizer.enter_half();
    let stepped = (|| {
        let (output, word_lookup) = {
            let _autocast =
                run.settings.half.map(|half| Autocast::enter(model.device(), half)).transpose()?;
            model.forward_for_training(&batch.view(), run.problem_type)?
        };
        run.problem_type = output.problem_type;
        let loss = output.loss.ok_or_else(|| Error::value("the training data has no labels"))?;
        run.optimizer.find_half_weights(&loss)?;
        match &run.scaler {
            Some(scaler) => scaler.scale(&loss).f_backward()?,
            None => loss.f_backward()?,
        }
        Ok::<_, Error>((loss, word_lookup))
    })();
    let left = run.optimizer.leave_half();
    let (loss, word_lookup) = stepped?;
    left?;
    if let Some(lookup) = word_lookup {
        run.optimizer.accumulate_words(model.word_embeddings(), lookup)?;
    }
    Ok(loss.to_kind(Kind::Float).double_value(&[]) as f32)
}

/// The training loop from `run.global_step` (0, or a resumed checkpoint's) to the plan's end.
/// However it ends, the weights and the optimizer's state are whole after it (`settle`).
pub fn train<H: Hooks>(
    model: &Mutex<Model>,
    run: &Mutex<Run>,
    hooks: &mut H,
) -> std::result::Result<Summary, H::Error> {
    // Also after a panic, which then goes on.
    let summary = std::panic::catch_unwind(AssertUnwindSafe(|| train_steps(model, run, hooks)));
    let settled = settle(model, run);
    let summary = summary.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    settled?;
    Ok(summary)
}

/// Brings the word table's rows the steps did not reach up to date (`Optimizer::settle`), for
/// whoever reads the weights or the optimizer's state during a run: evaluations and checkpoints.
pub fn settle(model: &Mutex<Model>, run: &Mutex<Run>) -> Result<()> {
    exclusive(model, run, |r| r.optimizer.settle())
}

fn train_steps<H: Hooks>(
    model: &Mutex<Model>,
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
    let threads = Threads::enter();
    let _heap = crate::heap::HeapReuse::enter();
    let (epochs_done, mut skip_batches) = plan.resume_point(start_step);
    let resumed_mid_epoch = skip_batches > 0;
    let mut losses = LossTracker::new(start_step);
    let mut grad_norm = None;
    let mut learning_rate = 0.0;
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
        let mut collated = next;
        let mut ready = VecDeque::new();
        while next < total && !epoch_stop && !stop {
            let window_end = (next / g * g + g).min(total);
            // transformers takes a window's batches before its first forward pass, and
            // accelerate's DataLoaderShard collates one batch ahead of the one it yields: the
            // batches up to `window_end` (included) are collated, and masked for language
            // modeling, before the window's forward passes draw their dropout.
            {
                let r = lock(run);
                let device = lock(model).device();
                while collated < total.min(window_end + 1) {
                    ready.push_back(r.collator.collate(
                        &r.data,
                        &epoch_batches[collated],
                        device,
                    )?);
                    collated += 1;
                }
            }
            hooks.event(Event::StepBegin, position(run))?;
            for i in next..window_end {
                threads.adapt();
                let mut r = lock(run);
                let batch = ready.pop_front().ok_or_else(|| Error::Other("no batch".into()))?;
                let loss = micro_step(model, &mut r, &batch)?;
                losses.add(loss, r.settings.nan_inf_filter, r.global_step);
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
            grad_norm = Some(exclusive(model, run, Run::clip_gradients)?);
            hooks.event(Event::PreOptimizerStep, position(run))?;
            let (lr, stepped) = exclusive(model, run, Run::update)?;
            learning_rate = lr;
            hooks.event(Event::OptimizerStep, position(run))?;
            lock(run).finish_update(stepped, epoch as f64 + window_end as f64 / total as f64)?;
            next = window_end;
            let ctl = hooks.event(Event::StepEnd, position(run))?;
            let after = log_save_evaluate(run, hooks, &mut losses, grad_norm, learning_rate)?;
            epoch_stop = ctl.epoch_stop || after.epoch_stop;
            stop = ctl.training_stop || after.training_stop;
        }
        let ctl = hooks.event(Event::EpochEnd, position(run))?;
        let after = log_save_evaluate(run, hooks, &mut losses, grad_norm, learning_rate)?;
        stop = stop || ctl.training_stop || after.training_stop;
    }
    let r = lock(run);
    Ok(Summary {
        global_step: r.global_step,
        steps_this_call: r.global_step - start_step,
        total_loss: losses.total(),
        epoch: r.epoch,
        total_flos: r.total_flos,
    })
}

/// transformers' `tr_loss` bookkeeping: the losses summed since the last log (a float32
/// accumulator, as `_tr_loss`), and those of the earlier logs.
struct LossTracker {
    since_log: f32,
    logged: f64,
    last_logged_step: u64,
}

impl LossTracker {
    fn new(global_step: u64) -> LossTracker {
        LossTracker { since_log: 0.0, logged: 0.0, last_logged_step: global_step }
    }

    /// Adds a micro-batch's loss at `global_step` (the updates done so far); with
    /// `nan_inf_filter` a non-finite loss counts as the mean since the last log.
    fn add(&mut self, loss: f32, nan_inf_filter: bool, global_step: u64) {
        if nan_inf_filter && !loss.is_finite() {
            self.since_log += self.since_log / (1 + global_step - self.last_logged_step) as f32;
        } else {
            self.since_log += loss;
        }
    }

    fn stats(&self, global_step: u64, grad_norm: Option<f64>, learning_rate: f64) -> UpdateStats {
        UpdateStats {
            loss_since_log: self.since_log as f64,
            steps_since_log: global_step - self.last_logged_step,
            grad_norm,
            learning_rate,
        }
    }

    /// A training log was written at `global_step`.
    fn logged_at(&mut self, global_step: u64) {
        self.logged += self.since_log as f64;
        self.since_log = 0.0;
        self.last_logged_step = global_step;
    }

    fn total(&self) -> f64 {
        self.logged + self.since_log as f64
    }
}

/// transformers' `_maybe_log_save_evaluate` after an update or at an epoch's end.
fn log_save_evaluate<H: Hooks>(
    run: &Mutex<Run>,
    hooks: &mut H,
    losses: &mut LossTracker,
    grad_norm: Option<f64>,
    learning_rate: f64,
) -> std::result::Result<Control, H::Error> {
    let at = position(run);
    let after =
        hooks.log_save_evaluate(at, losses.stats(at.global_step, grad_norm, learning_rate))?;
    if after.logged {
        losses.logged_at(at.global_step);
    }
    Ok(after)
}

/// DistributedDataParallel's gradient synchronization at the end of an accumulation window:
/// the gradients, flattened into one bucket, averaged over the processes, copied back.
fn average_gradients<H: Hooks>(
    model: &Mutex<Model>,
    run: &Mutex<Run>,
    hooks: &mut H,
) -> std::result::Result<(), H::Error> {
    let mut grads = {
        let _model = lock(model);
        lock(run).optimizer.grads_to_average()
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
