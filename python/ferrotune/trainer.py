"""`Trainer`: transformers' fine-tuning API over ferrotune's Rust training loop.

The loop (batching, forward/backward, clipping, AdamW, schedule, evaluation) runs in Rust with
the GIL released. It calls back into this class at transformers' events, so that callbacks,
logs, `compute_metrics` and checkpoint files behave as transformers' Trainer
(`trainer.py`; see the semantics in its `_inner_training_loop` and `_maybe_log_save_evaluate`).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import _core, checkpoints, distributed
from .checkpoints import (
    OPTIMIZER_NAME,
    PREFIX_CHECKPOINT_DIR,
    RNG_STATE_NAME,
    SCALER_NAME,
    SCHEDULER_NAME,
    TRAINER_STATE_NAME,
    TRAINING_ARGS_NAME,
    get_last_checkpoint,
)
from .data import examples as to_examples
from .data_collator import labeling as collator_labeling
from .modeling import (
    SAFE_WEIGHTS_NAME,
    PreTrainedModel,
    PreTrainedModelForMaskedLM,
    PreTrainedModelForSequenceClassification,
    PreTrainedModelForTokenClassification,
)
from .trainer_callback import (
    CallbackHandler,
    DefaultFlowCallback,
    EarlyStoppingCallback,
    NotebookProgressCallback,
    PrinterCallback,
    ProgressCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    improves,
    is_in_notebook,
    metric_key,
)
from .trainer_utils import (
    EvalPrediction,
    PredictionOutput,
    TrainOutput,
    denumpify_detensorize,
    set_seed,
    speed_metrics,
)
from .training_args import TrainingArguments

logger = logging.getLogger(__name__)

__all__ = [
    "OPTIMIZER_NAME",
    "PREFIX_CHECKPOINT_DIR",
    "RNG_STATE_NAME",
    "SCALER_NAME",
    "SCHEDULER_NAME",
    "TRAINER_STATE_NAME",
    "TRAINING_ARGS_NAME",
    "EvalPrediction",
    "PredictionOutput",
    "TrainOutput",
    "Trainer",
    "get_last_checkpoint",
    "set_seed",
    "speed_metrics",
]


def _handles(callback: Any, events: tuple[str, ...]) -> bool:
    """Whether `callback` handles one of `events` (its class or the instance overrides
    TrainerCallback's)."""
    for event in events:
        if event in getattr(callback, "__dict__", {}):
            return True
        owner = next((k for k in type(callback).__mro__ if event in vars(k)), None)
        if owner is not None and owner.__name__ != "TrainerCallback":
            return True
    return False


def _reads_gradients(callback: Any) -> bool:
    """Whether `callback` handles an event at which transformers' parameters hold their
    gradients (after clipping, before and after the optimizer's step): then the run keeps them
    there, where a bfloat16 run on the CPU otherwise keeps its linear layers' gradients beside
    the parameters, in bfloat16, for the update (src/train/optim.rs)."""
    return _handles(callback, ("on_pre_optimizer_step", "on_optimizer_step"))


# Callbacks of this package that read no weights during the steps.
_WEIGHTLESS = (
    DefaultFlowCallback,
    ProgressCallback,
    PrinterCallback,
    NotebookProgressCallback,
    EarlyStoppingCallback,
)


def _reads_weights(callback: Any) -> bool:
    """Whether `callback` may read the weights or the optimizer's state between two steps: it
    is not one of this package's own and handles an event raised there. Otherwise the run
    updates the word embeddings' rows only where a step reaches them, and brings the others up
    to date before evaluations and checkpoints (src/train/optim.rs, LazyWords)."""
    events = (
        "on_epoch_begin",
        "on_step_begin",
        "on_substep_end",
        "on_pre_optimizer_step",
        "on_optimizer_step",
        "on_step_end",
        "on_epoch_end",
        "on_log",
    )
    return type(callback) not in _WEIGHTLESS and _handles(callback, events)


class Trainer:
    """Trains and evaluates a ferrotune (or transformers) sequence-classification model.

    >>> trainer = Trainer(model=model, args=TrainingArguments("out", eval_strategy="epoch"),
    ...                   train_dataset=train, eval_dataset=val, processing_class=tokenizer,
    ...                   compute_metrics=compute_metrics)
    >>> trainer.train(); trainer.evaluate()
    """

    def __init__(
        self,
        model: Any = None,
        args: TrainingArguments | None = None,
        data_collator: Any = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        model_init: Callable[[], Any] | None = None,
        compute_metrics: Callable[[EvalPrediction], dict] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple = (None, None),
        preprocess_logits_for_metrics: Callable | None = None,
        tokenizer: Any = None,
    ):
        if args is None:
            args = TrainingArguments(output_dir="tmp_trainer")
        self.args = args
        set_seed(args.seed)
        self._processes = distributed.join(args.device)
        if tokenizer is not None:
            warnings.warn(
                "`tokenizer` is deprecated (transformers 5 removed it); use "
                "`processing_class` instead",
                FutureWarning,
                stacklevel=2,
            )
            processing_class = processing_class if processing_class is not None else tokenizer
        if model is None and model_init is None:
            raise RuntimeError("`Trainer` requires either a `model` or `model_init` argument")
        if model is not None and model_init is not None:
            raise ValueError(
                "`Trainer` requires either a `model` or `model_init` argument, but not both."
            )
        if optimizers != (None, None):
            raise NotImplementedError(
                "custom optimizers are not supported; ferrotune uses "
                "AdamW with the arguments' hyper-parameters"
            )
        if data_collator is not None:
            pad_to = getattr(data_collator, "pad_to_multiple_of", None)
            self._pad_to_multiple_of = pad_to
            if not hasattr(data_collator, "tokenizer"):
                raise NotImplementedError(
                    "only the collators DataCollatorWithPadding, "
                    "DataCollatorForTokenClassification and DataCollatorForLanguageModeling (or "
                    "collators with their attributes) are supported: ferrotune collates each "
                    "batch in Rust"
                )
            if hasattr(data_collator, "mlm") and getattr(data_collator, "seed", None) is not None:
                raise NotImplementedError(
                    "the Trainer does not support DataCollatorForLanguageModeling(seed=...) yet; "
                    "leave seed=None: the masks then follow TrainingArguments.seed"
                )
            processing_class = (
                processing_class if processing_class is not None else data_collator.tokenizer
            )
        else:
            self._pad_to_multiple_of = None
        # What the collator does besides padding (src/train/data.rs, Labeling).
        self._labeling = collator_labeling(data_collator) if data_collator is not None else {}
        if self._labeling:
            _core.check_labeling(self._labeling)
        self.model_init = model_init
        self._hf_model = None
        self.model = self._adopt(model) if model is not None else None
        self.processing_class = processing_class
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.compute_metrics = compute_metrics
        self.preprocess_logits_for_metrics = preprocess_logits_for_metrics
        if args.eval_strategy != "no" and eval_dataset is None:
            raise ValueError(
                "You have set `args.eval_strategy` to "
                f"IntervalStrategy.{args.eval_strategy.upper()} "
                f"but you didn't pass an `eval_dataset` to `Trainer`. Either set "
                f"`args.eval_strategy` to `no` or pass an `eval_dataset`. "
            )
        if (
            args.save_strategy == "best" or args.load_best_model_at_end
        ) and args.metric_for_best_model is None:
            raise ValueError(
                "`args.metric_for_best_model` must be provided when using 'best' "
                "save_strategy or if `args.load_best_model_at_end` is set to `True`."
            )
        if self._processes.is_main:
            self._make_output_dir()
        progress = (
            PrinterCallback
            if args.disable_tqdm
            else NotebookProgressCallback
            if is_in_notebook()
            else ProgressCallback
        )
        self.callback_handler = CallbackHandler(
            [DefaultFlowCallback, *(callbacks or []), progress], self.model, processing_class
        )
        self.state = self._new_state()
        self.control = TrainerControl()
        self._examples: dict[int, tuple[Any, Any]] = {}
        self._run = None
        self._push_warned = False
        self.control = self.callback_handler.call_event(
            "on_init_end", args, self.state, self.control
        )

    # -- setup -----------------------------------------------------------------------------------
    def _adopt(self, model: Any) -> PreTrainedModel:
        """A ferrotune model on the arguments' device; a transformers model is copied in (the
        head of its class's task, from the core's table of class names) and receives the
        trained weights back at the end of train()."""
        if not isinstance(model, PreTrainedModel):
            if not (hasattr(model, "state_dict") and hasattr(model, "config")):
                raise TypeError(
                    f"model must be a ferrotune or transformers model, got {type(model).__name__}"
                )
            self._hf_model = model
            name = type(model).__name__
            task = next(
                (t for _, t, n, _ in _core.MODEL_CLASSES if n == name), "sequence-classification"
            )
            base = next(
                b
                for b in (
                    PreTrainedModelForSequenceClassification,
                    PreTrainedModelForTokenClassification,
                    PreTrainedModelForMaskedLM,
                )
                if b.task == task
            )
            model = base.from_transformers(model)
        return model.to(self.args.device)

    def _make_output_dir(self) -> None:
        try:
            os.makedirs(self.args.output_dir, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.args.output_dir, prefix=".write-test-")
            probe.close()
        except OSError as e:
            # OSError(errno, ...) is the subclass of that errno (PermissionError, ...).
            raise OSError(
                e.errno,
                f"output_dir {self.args.output_dir!r} cannot be written ({e.strerror})",
                self.args.output_dir,
            ) from e

    def add_callback(self, callback) -> None:
        self.callback_handler.add_callback(callback)

    def pop_callback(self, callback):
        return self.callback_handler.pop_callback(callback)

    def remove_callback(self, callback) -> None:
        self.callback_handler.remove_callback(callback)

    def _pad(self) -> dict[str, Any]:
        """How the tokenizer pads; without a pad token the model config's (then 0) is used."""
        tok = self.processing_class
        pad = getattr(tok, "pad_token_id", None)
        return {
            "pad_token_id": None if pad is None else int(pad),
            "pad_left": getattr(tok, "padding_side", "right") == "left",
            "pad_to_multiple_of": self._pad_to_multiple_of,
        }

    def _data(self, dataset: Any, description: str, require_labels: bool) -> Any:
        cached = self._examples.get(id(dataset))
        if cached is not None and cached[0] is dataset:
            return cached[1]
        data = to_examples(
            dataset,
            description=description,
            label_names=self.args.label_names,
            model_class=type(self.model).__name__,
            model_inputs=self.model._model.input_names,
            remove_unused_columns=self.args.remove_unused_columns,
            require_labels=require_labels,
            per_token_labels=getattr(self.model._model, "task", None) == "token-classification",
            labels_from_collator="language_modeling" in self._labeling,
        )
        if data.has_labels:
            data.check_labels(self.model.num_labels)
        self._examples[id(dataset)] = (dataset, data)
        return data

    # -- training ------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> TrainOutput:
        """Fine-tunes the model; resumes from the last checkpoint of output_dir with `True`, or
        from the checkpoint folder given."""
        if kwargs:
            raise TypeError(f"train() got unexpected keyword arguments: {', '.join(kwargs)}")
        args = self.args
        if self.model_init is not None:
            set_seed(args.seed)
            self.model = self._adopt(self.model_init())
            self.callback_handler.model = self.model
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        checkpoint = checkpoints.to_resume(
            resume_from_checkpoint, args.output_dir, SAFE_WEIGHTS_NAME
        )
        train_data = self._data(self.train_dataset, "training", require_labels=True)
        if self.eval_dataset is not None and args.eval_strategy != "no":
            for eval_set in (
                self.eval_dataset.values()
                if isinstance(self.eval_dataset, dict)
                else [self.eval_dataset]
            ):
                self._data(eval_set, "evaluation", require_labels=False)
        model = self.model
        distributed.check_agreement(
            self._processes, parameters=model.num_parameters(), training_examples=len(train_data)
        )
        model.train()
        # The last run's optimizer and loss scale carry over, as transformers' Trainer keeps
        # self.optimizer and its accelerator's GradScaler from one train() to the next.
        self._run = run = _core.TrainingRun(
            model._model,
            train_data,
            {
                "batch_size": args.train_batch_size,
                "grad_accum": args.gradient_accumulation_steps,
                "num_train_epochs": float(args.num_train_epochs),
                "max_steps": int(args.max_steps),
                "drop_last": args.dataloader_drop_last,
                "sampling": args.train_sampling_strategy,
                "seed": args.data_seed if args.data_seed is not None else torch.initial_seed(),
                "learning_rate": args.learning_rate,
                "lr_scheduler_type": args.lr_scheduler_type,
                "warmup_steps": float(args.warmup_steps),
                "weight_decay": args.weight_decay,
                "adam_beta1": args.adam_beta1,
                "adam_beta2": args.adam_beta2,
                "adam_epsilon": args.adam_epsilon,
                "max_grad_norm": args.max_grad_norm,
                "bf16": args.bf16,
                "fp16": self._fp16(),
                "callbacks_read_gradients": any(
                    _reads_gradients(callback) for callback in self.callback_handler.callbacks
                ),
                "callbacks_read_weights": any(
                    _reads_weights(callback) for callback in self.callback_handler.callbacks
                ),
                "nan_inf_filter": args.logging_nan_inf_filter,
                "problem_type": model.config.problem_type,
                "process_index": self._processes.index,
                "num_processes": self._processes.count,
                "labeling": self._labeling,
                **self._pad(),
            },
            self._run,
        )
        self.state = self._new_state(train_batch_size=args.train_batch_size)
        self.state.compute_steps(args, run.max_steps)
        self.state.max_steps = run.max_steps
        self.state.num_train_epochs = run.num_train_epochs
        self.state.epoch = 0
        self.control = TrainerControl()
        if checkpoint is not None:
            self._load_checkpoint(checkpoint)
        logger.info(
            f"***** Running training *****\n  Num examples = {len(train_data):,}\n"
            f"  Num Epochs = {run.num_train_epochs:,}\n"
            f"  Instantaneous batch size per device = {args.train_batch_size:,}\n"
            f"  Gradient Accumulation steps = {args.gradient_accumulation_steps}\n"
            f"  Total optimization steps = {run.max_steps:,}\n"
            f"  Number of trainable parameters = {model.num_parameters(only_trainable=True):,}"
        )
        self._start_time = time.time()
        self.control = self.callback_handler.call_event(
            "on_train_begin", args, self.state, self.control
        )
        if args.eval_on_start:
            self._evaluate_and_track()
        self._non_finite_steps: list[int] = []
        # The logged losses, this process's and averaged over the processes (train_loss).
        self._logged_loss = [0.0, 0.0]
        try:
            global_step, steps, total_loss, epoch, total_flos = run.train(self)
        finally:
            model.config.problem_type = model.config.problem_type or run.problem_type
            model.eval()
            self._write_back()
        self.state.global_step, self.state.epoch, self.state.total_flos = (
            global_step,
            epoch,
            total_flos,
        )
        # As transformers: the logged parts averaged over the processes, the rest this process's.
        total_loss += self._logged_loss[1] - self._logged_loss[0]
        train_loss = total_loss / max(steps, 0.001)
        metrics = speed_metrics(
            "train",
            self._start_time,
            num_samples=run.num_train_samples * steps / max(run.max_steps, 1),
            num_steps=steps,
        )
        metrics["total_flos"] = total_flos
        metrics["train_loss"] = train_loss
        self.log(metrics)
        if len(self._non_finite_steps) > 1:
            logger.warning(
                f"{len(self._non_finite_steps)} batches had a NaN or infinite training "
                f"loss, the first at step {self._non_finite_steps[0]}"
            )
        if args.load_best_model_at_end and self.state.best_model_checkpoint is not None:
            logger.info(
                f"Loading best model from {self.state.best_model_checkpoint} "
                f"(score: {self.state.best_metric})."
            )
            self.model._model.load_safetensors(
                [os.path.join(self.state.best_model_checkpoint, SAFE_WEIGHTS_NAME)]
            )
            self._write_back()
        if (
            args.save_total_limit == 1
            and self.state.best_model_checkpoint is not None
            and self._processes.is_main
        ):
            checkpoints.keep_only(args.output_dir, self.state.best_model_checkpoint)
        self.control = self.callback_handler.call_event(
            "on_train_end", args, self.state, self.control
        )
        return TrainOutput(global_step, train_loss, metrics)

    def _write_back(self) -> None:
        """Copies the trained weights into the transformers model the Trainer was given."""
        if self._hf_model is not None:
            with torch.no_grad():
                self._hf_model.load_state_dict(
                    {k: v.detach() for k, v in self.model.state_dict().items()}, strict=False
                )
            self._hf_model.config.problem_type = self.model.config.problem_type

    def _fp16(self) -> bool:
        """float16 autocast with loss scaling, on a GPU only: on the CPU, as transformers
        (accelerate) does, fp16=True trains in float32."""
        if self.args.fp16 and self.model.device.type == "cpu":
            if not getattr(self, "_fp16_warned", False):
                logger.warning(
                    "fp16 mixed precision needs a GPU; on the CPU the model trains in "
                    "float32, as with transformers (bf16=True is the CPU's half "
                    "precision)"
                )
                self._fp16_warned = True
            return False
        return self.args.fp16

    def _new_state(self, **kwargs: Any) -> TrainerState:
        return TrainerState(
            is_world_process_zero=self._processes.is_main,
            is_local_process_zero=int(os.environ.get("LOCAL_RANK", "0")) == 0,
            **kwargs,
        )

    # -- hooks called by the Rust loop -----------------------------------------------------------
    def _average_across_processes(self, flat: torch.Tensor) -> None:
        distributed.average_(flat, self._processes)

    def _non_finite_loss(self, step: int, epoch: float, loss: float) -> None:
        """Says where the training loss first became NaN or infinite (transformers is silent)."""
        self._non_finite_steps.append(step)
        if len(self._non_finite_steps) == 1:
            treatment = (
                "logging_nan_inf_filter=True leaves such losses out of the logged loss"
                if self.args.logging_nan_inf_filter
                else "the logged loss will be non-finite too (logging_nan_inf_filter=False)"
            )
            logger.warning(
                f"The training loss is {loss} at step {step} (epoch {epoch:.2f}); "
                f"{treatment}. Lower the learning rate or check the inputs and labels."
            )

    def _event(self, name: str, global_step: int, epoch: float) -> tuple[bool, bool, bool]:
        self.state.global_step, self.state.epoch = global_step, epoch
        self.control = self.callback_handler.call_event(name, self.args, self.state, self.control)
        return self.control.should_epoch_stop, self.control.should_training_stop, False

    def _log_save_evaluate(
        self,
        global_step: int,
        epoch: float,
        loss_sum: float,
        steps: int,
        grad_norm: float | None,
        learning_rate: float,
    ) -> tuple[bool, bool, bool]:
        self.state.global_step, self.state.epoch = global_step, epoch
        logged = False
        if self.control.should_log and steps > 0:
            averaged = distributed.mean(loss_sum, self._processes)
            self._logged_loss[0] += loss_sum
            self._logged_loss[1] += averaged
            logs: dict[str, float] = {"loss": averaged / steps}
            if grad_norm is not None:
                logs["grad_norm"] = grad_norm
            logs["learning_rate"] = learning_rate
            self.log(logs)
            logged = True
        if self.control.should_evaluate or self.control.should_save:
            self._run.settle()
        if self.control.should_evaluate:
            is_new_best = self._evaluate_and_track()
            if self.args.save_strategy == "best":
                self.control.should_save = is_new_best
        if self.control.should_save:
            self._save_checkpoint()
            self.control = self.callback_handler.call_event(
                "on_save", self.args, self.state, self.control
            )
        return self.control.should_epoch_stop, self.control.should_training_stop, logged

    def _evaluate_and_track(self) -> bool:
        metrics = self.evaluate()
        return self._determine_best_metric(metrics)

    def _determine_best_metric(self, metrics: dict[str, float]) -> bool:
        name = self.args.metric_for_best_model
        if name is None:
            return False
        key = metric_key(name)
        if key not in metrics:
            raise KeyError(
                f"The `metric_for_best_model` training argument is set to '{key}', which is not "
                f"found in the evaluation metrics. The available evaluation metrics are: "
                f"{list(metrics)}. Consider changing the `metric_for_best_model` via the "
                f"TrainingArguments."
            )
        value = metrics[key]
        improved = improves(value, self.state.best_metric, self.args.greater_is_better)
        if improved:
            self.state.best_metric = value
            if self.args.save_strategy != "no":
                self.state.best_global_step = self.state.global_step
        return improved

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        logs["epoch"] = self.state.epoch
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.control = self.callback_handler.call_event(
            "on_log", self.args, self.state, self.control, logs=logs
        )

    # -- evaluation ----------------------------------------------------------------------------
    def _predict(self, dataset: Any, description: str, prefix: str, loss_only: bool = False):
        """(predictions, label ids, metrics); with `loss_only` (transformers'
        `prediction_loss_only`) the predictions and label ids are None and only the loss is
        computed, without gathering the logits."""
        data = self._data(dataset, description, require_labels=False)
        start = time.time()
        processes = self._processes
        if len(data) < processes.count:
            raise ValueError(
                f"the {description} set has {len(data)} examples, fewer than the "
                f"{processes.count} processes that share it"
            )
        part = data.shard(processes.index, processes.count) if processes.count > 1 else data
        logits, labels, loss = _core.predict(
            self.model._model,
            part,
            self.args.eval_batch_size,
            bf16=self.args.bf16,
            fp16=self._fp16(),
            problem_type=self.model.config.problem_type,
            nan_inf_filter=self.args.logging_nan_inf_filter,
            labeling=self._labeling,
            preprocess=self.preprocess_logits_for_metrics,
            loss_only=loss_only,
            **self._pad(),
        )
        predictions = None if loss_only else logits.numpy()
        label_ids = labels.numpy() if labels is not None else None
        if processes.count > 1 and not loss_only:
            # Every process gets all the rows back in order, and computes the same metrics.
            predictions = distributed.gather_rows(processes, len(data), predictions)
            label_ids = distributed.gather_rows(processes, len(data), label_ids)
        if processes.count > 1 and loss is not None:
            loss = distributed.mean(loss * len(part), processes) * processes.count / len(data)
        metrics: dict[str, float] = {}
        if self.compute_metrics is not None and label_ids is not None:
            metrics = denumpify_detensorize(
                self.compute_metrics(EvalPrediction(predictions, label_ids))
            )
            if not isinstance(metrics, dict):
                raise TypeError(f"compute_metrics must return a dict, got {type(metrics).__name__}")
        if loss is not None:
            metrics[f"{prefix}_loss"] = float(np.float32(loss))
        metrics = {
            (k if k.startswith(f"{prefix}_") else f"{prefix}_{k}"): v
            for k, v in sorted(metrics.items(), key=lambda kv: not kv[0].startswith(f"{prefix}_"))
        }
        n = len(data)
        metrics.update(
            speed_metrics(
                prefix, start, num_samples=n, num_steps=math.ceil(n / self.args.eval_batch_size)
            )
        )
        return predictions, label_ids, metrics

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """eval_loss, the metrics of compute_metrics (prefixed eval_), runtime and speed."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("Trainer: evaluation requires an eval_dataset.")
        if isinstance(dataset, dict):
            metrics = {}
            for name, part in dataset.items():
                metrics.update(self.evaluate(part, ignore_keys, f"{metric_key_prefix}_{name}"))
            return metrics
        # As transformers: without compute_metrics only the loss is computed.
        loss_only = self.compute_metrics is None or self.args.prediction_loss_only
        _, _, metrics = self._predict(dataset, "evaluation", metric_key_prefix, loss_only)
        self.log(metrics)
        self.control = self.callback_handler.call_event(
            "on_evaluate", self.args, self.state, self.control, metrics=metrics
        )
        return metrics

    def predict(
        self,
        test_dataset: Any,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "test",
    ) -> PredictionOutput:
        """Logits of every example, its labels if any, and test_ metrics."""
        predictions, label_ids, metrics = self._predict(
            test_dataset, "test", metric_key_prefix, self.args.prediction_loss_only
        )
        self.control = self.callback_handler.call_event(
            "on_predict", self.args, self.state, self.control, metrics=metrics
        )
        return PredictionOutput(predictions, label_ids, metrics)

    # -- checkpoints -----------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """config.json, model.safetensors, the tokenizer files and training_args.bin (written
        by the first process only)."""
        if not self._processes.is_main:
            return
        folder = output_dir if output_dir is not None else self.args.output_dir
        os.makedirs(folder, exist_ok=True)
        self.model.save_pretrained(folder)
        if self.processing_class is not None and hasattr(self.processing_class, "save_pretrained"):
            self.processing_class.save_pretrained(folder)
        torch.save(self.args, os.path.join(folder, TRAINING_ARGS_NAME))

    def _save_checkpoint(self) -> None:
        """The checkpoint of this step, written by the first process; the others wait for it."""
        args, state = self.args, self.state
        if state.best_global_step is not None:
            best = os.path.join(args.output_dir, checkpoints.folder_name(state.best_global_step))
            if os.path.exists(best) or state.best_global_step == state.global_step:
                state.best_model_checkpoint = best
        if self._processes.is_main:
            self._write_checkpoint()
        distributed.barrier(self._processes)

    def _write_checkpoint(self) -> None:
        args, state = self.args, self.state

        def fill(folder: str) -> None:
            self.save_model(folder)
            if not args.save_only_model:
                checkpoints.save_training_state(folder, self._run, args)
            state.stateful_callbacks = {"TrainerControl": self.control.state()}
            for cb in self.callback_handler.callbacks:
                if hasattr(cb, "state") and callable(cb.state):
                    state.stateful_callbacks[type(cb).__name__] = cb.state()
            state.save_to_json(os.path.join(folder, TRAINER_STATE_NAME))

        checkpoints.write(args.output_dir, state.global_step, fill)
        if args.push_to_hub and args.hub_strategy != "end":
            self._push_quietly(
                f"Training in progress, step {state.global_step}"
                if args.save_strategy == "steps"
                else f"Training in progress, epoch {int(state.epoch)}"
            )
        checkpoints.rotate(args.output_dir, args.save_total_limit, state.best_model_checkpoint)

    def _load_checkpoint(self, folder: str) -> None:
        """Weights, trainer state, optimizer, schedule position and RNG of a checkpoint."""
        state_path = os.path.join(folder, TRAINER_STATE_NAME)
        if not os.path.isfile(state_path):
            raise FileNotFoundError(
                2,
                f"the checkpoint {folder!r} has no {TRAINER_STATE_NAME}; it cannot be resumed",
                state_path,
            )
        self.model._model.load_safetensors([os.path.join(folder, SAFE_WEIGHTS_NAME)])
        saved = TrainerState.load_from_json(state_path)
        if saved.best_model_checkpoint is not None and not os.path.isdir(
            saved.best_model_checkpoint
        ):
            logger.warning(
                f"The best checkpoint {saved.best_model_checkpoint} recorded in "
                f"{state_path} no longer exists"
            )
            saved.best_model_checkpoint = None
        for key in (
            "global_step",
            "epoch",
            "log_history",
            "best_metric",
            "best_global_step",
            "best_model_checkpoint",
            "total_flos",
        ):
            setattr(self.state, key, getattr(saved, key))
        scheduler_steps = checkpoints.load_training_state(folder, self._run)
        self._run.resume_at(
            saved.global_step, float(saved.epoch or 0), float(saved.total_flos), scheduler_steps
        )
        checkpoints.restore_rng(folder)

    # -- hub -------------------------------------------------------------------------------------
    def _repo_id(self) -> str:
        return self.args.hub_model_id or Path(self.args.output_dir).absolute().name

    def push_to_hub(
        self,
        commit_message: str = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Saves the model in output_dir, then uploads that folder to the hub (create_repo and
        upload_folder). The local save happens first, so a failed upload loses nothing. Only
        the first of several processes pushes."""
        if not self._processes.is_main:
            return None
        self.callback_handler.call_event("on_push_begin", self.args, self.state, self.control)
        self.save_model()
        from huggingface_hub import HfApi

        repo_id = self._repo_id()
        try:
            api = HfApi(library_name="ferrotune", library_version=_core.__version__)
            token = token if token is not None else self.args.hub_token
            repo = api.create_repo(
                repo_id,
                token=token,
                exist_ok=True,
                private=private if private is not None else self.args.hub_private_repo,
            )
            return api.upload_folder(
                repo_id=repo.repo_id,
                folder_path=self.args.output_dir,
                commit_message=commit_message,
                token=token,
                revision=revision,
                ignore_patterns=["_*", f"{PREFIX_CHECKPOINT_DIR}-*", ".*"],
                run_as_future=not blocking,
            )
        except Exception as e:
            raise OSError(
                f"could not push {self.args.output_dir!r} to the hub repository "
                f"{repo_id!r} ({type(e).__name__}: {e}); the model is saved locally "
                f"in {self.args.output_dir!r}"
            ) from e

    def _push_quietly(self, message: str) -> None:
        try:
            self.push_to_hub(commit_message=message)
        except OSError as e:
            if not self._push_warned:
                logger.warning(f"{e}. Training goes on; checkpoints are saved locally.")
                self._push_warned = True
