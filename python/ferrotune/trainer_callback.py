"""Callbacks with transformers' names, events and control flags (`trainer_callback.py`):
`TrainerState`, `TrainerControl`, `TrainerCallback`, `DefaultFlowCallback`, the progress
displays (tqdm in terminals, the training table in Jupyter) and `EarlyStoppingCallback`."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


def metric_key(name: str) -> str:
    """The evaluation metric that `metric_for_best_model` names ("accuracy": "eval_accuracy")."""
    return name if name.startswith("eval_") else f"eval_{name}"


def improves(value: float, best: float | None, greater_is_better: bool) -> bool:
    """Whether `value` beats the best metric so far (None: nothing to beat yet)."""
    if best is None:
        best = -math.inf if greater_is_better else math.inf
    return value > best if greater_is_better else value < best


@dataclass
class TrainerState:
    """The state saved in trainer_state.json, as transformers' TrainerState."""

    epoch: float | None = None
    global_step: int = 0
    max_steps: int = 0
    logging_steps: int = 500
    eval_steps: int = 500
    save_steps: int = 500
    train_batch_size: int | None = None
    num_train_epochs: int = 0
    num_input_tokens_seen: int = 0
    total_flos: float = 0
    log_history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float | None = None
    best_global_step: int | None = None
    best_model_checkpoint: str | None = None
    is_local_process_zero: bool = True
    is_world_process_zero: bool = True
    is_hyper_param_search: bool = False
    trial_name: str | None = None
    trial_params: dict[str, Any] | None = None
    stateful_callbacks: dict[str, Any] = field(default_factory=dict)

    def save_to_json(self, json_path: str) -> None:
        text = json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"
        with open(json_path, "w", encoding="utf-8") as f:
            f.write(text)

    @classmethod
    def load_from_json(cls, json_path: str) -> TrainerState:
        with open(json_path, encoding="utf-8") as f:
            return cls(**json.loads(f.read()))

    def compute_steps(self, args: Any, max_steps: int) -> None:
        """logging/eval/save steps below 1 are ratios of the run (rounded up)."""
        for kind in ("logging", "eval", "save"):
            steps = getattr(args, f"{kind}_steps")
            if steps is not None:
                if steps < 1:
                    steps = math.ceil(max_steps * steps)
                setattr(self, f"{kind}_steps", steps)


@dataclass
class TrainerControl:
    """Flags the callbacks set to steer the loop."""

    should_training_stop: bool = False
    should_epoch_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    should_log: bool = False

    def _new_training(self) -> None:
        self.should_training_stop = False

    def _new_epoch(self) -> None:
        self.should_epoch_stop = False

    def _new_step(self) -> None:
        self.should_save = False
        self.should_evaluate = False
        self.should_log = False

    def state(self) -> dict:
        return {"args": dataclasses.asdict(self), "attributes": {}}


class TrainerCallback:
    """Override the events you need; each receives `(args, state, control, **kwargs)` with
    `model`, `processing_class`, `optimizer`, `lr_scheduler`, `train_dataloader`,
    `eval_dataloader` in kwargs (and `logs` / `metrics` for on_log / on_evaluate)."""

    def on_init_end(self, args, state, control, **kwargs):
        pass

    def on_train_begin(self, args, state, control, **kwargs):
        pass

    def on_train_end(self, args, state, control, **kwargs):
        pass

    def on_epoch_begin(self, args, state, control, **kwargs):
        pass

    def on_epoch_end(self, args, state, control, **kwargs):
        pass

    def on_step_begin(self, args, state, control, **kwargs):
        pass

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        pass

    def on_optimizer_step(self, args, state, control, **kwargs):
        pass

    def on_substep_end(self, args, state, control, **kwargs):
        pass

    def on_step_end(self, args, state, control, **kwargs):
        pass

    def on_evaluate(self, args, state, control, **kwargs):
        pass

    def on_predict(self, args, state, control, metrics, **kwargs):
        pass

    def on_save(self, args, state, control, **kwargs):
        pass

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass

    def on_prediction_step(self, args, state, control, **kwargs):
        pass

    def on_push_begin(self, args, state, control, **kwargs):
        pass


class CallbackHandler(TrainerCallback):
    """Runs the callbacks in order; a callback's non-None return value replaces the control."""

    # Flags each event clears before the callbacks run (transformers' CallbackHandler).
    _RESETS = {
        "on_train_begin": "_new_training",
        "on_epoch_begin": "_new_epoch",
        "on_step_begin": "_new_step",
    }
    _CLEARS = {"on_evaluate": "should_evaluate", "on_save": "should_save", "on_log": "should_log"}

    def __init__(self, callbacks, model, processing_class):
        self.callbacks: list[TrainerCallback] = []
        for cb in callbacks:
            self.add_callback(cb)
        self.model = model
        self.processing_class = processing_class
        self.optimizer = None
        self.lr_scheduler = None
        self.train_dataloader = None
        self.eval_dataloader = None

    def add_callback(self, callback) -> None:
        cb = callback() if isinstance(callback, type) else callback
        if type(cb) in {type(c) for c in self.callbacks}:
            logger.warning(
                f"You are adding a {type(cb).__name__} to the callbacks of this Trainer, "
                f"but there is already one. The current list of callbacks is:\n"
                + self.callback_list
            )
        self.callbacks.append(cb)

    def pop_callback(self, callback):
        for cb in self.callbacks:
            if (isinstance(callback, type) and isinstance(cb, callback)) or cb is callback:
                self.callbacks.remove(cb)
                return cb
        return None

    def remove_callback(self, callback) -> None:
        self.pop_callback(callback)

    @property
    def callback_list(self) -> str:
        return "\n".join(type(cb).__name__ for cb in self.callbacks)

    def call_event(self, event: str, args, state, control, **kwargs) -> TrainerControl:
        if event in self._RESETS:
            getattr(control, self._RESETS[event])()
        for cb in self.callbacks:
            result = getattr(cb, event)(
                args,
                state,
                control,
                model=self.model,
                processing_class=self.processing_class,
                optimizer=self.optimizer,
                lr_scheduler=self.lr_scheduler,
                train_dataloader=self.train_dataloader,
                eval_dataloader=self.eval_dataloader,
                **kwargs,
            )
            if result is not None:
                control = result
        if event in self._CLEARS:
            setattr(control, self._CLEARS[event], False)
        return control


class DefaultFlowCallback(TrainerCallback):
    """When to log, evaluate, save and stop, from the strategies of the arguments."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1 and args.logging_first_step:
            control.should_log = True
        if args.logging_strategy == "steps" and state.global_step % state.logging_steps == 0:
            control.should_log = True
        if (
            args.eval_strategy == "steps"
            and state.global_step % state.eval_steps == 0
            and args.eval_delay <= state.global_step
        ):
            control.should_evaluate = True
        if (
            args.save_strategy == "steps"
            and state.save_steps > 0
            and state.global_step % state.save_steps == 0
        ):
            control.should_save = True
        if state.global_step >= state.max_steps:
            control.should_training_stop = True
            # A last evaluation and checkpoint at the end of a step-based run.
            if (
                args.eval_strategy == "steps"
                and state.global_step % state.eval_steps != 0
                and args.eval_delay <= state.global_step
            ):
                control.should_evaluate = True
            if args.save_strategy == "steps":
                control.should_save = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if args.logging_strategy == "epoch":
            control.should_log = True
        if args.eval_strategy == "epoch" and args.eval_delay <= state.epoch:
            control.should_evaluate = True
        if args.save_strategy == "epoch":
            control.should_save = True
        return control


def _formatted(logs: dict) -> dict:
    return {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in logs.items()}


class ProgressCallback(TrainerCallback):
    """A tqdm bar over the optimizer steps; logs are printed under it."""

    def __init__(self):
        self.training_bar = None
        self.prediction_bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        if not state.is_world_process_zero:
            return
        self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True)
        self.training_bar.update(state.global_step)
        self.current_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            self.training_bar.update(state.global_step - self.current_step)
            self.current_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None:
            shown = {k: v for k, v in (logs or {}).items() if k != "total_flos"}
            self.training_bar.write(str(_formatted(shown)))

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            self.training_bar.close()
            self.training_bar = None


class PrinterCallback(TrainerCallback):
    """Prints the logs (used when the progress bar is disabled)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and state.is_local_process_zero:
            logs.pop("total_flos", None)
            print(_formatted(logs))


def is_in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _format_time(seconds: float) -> str:
    seconds = int(seconds)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class NotebookProgressCallback(TrainerCallback):
    """The progress bar and the table of transformers' notebooks: one row per evaluation
    (Epoch or Step, Training Loss, Validation Loss, one column per metric)."""

    def __init__(self):
        self.handle = None
        self.rows: list[list[str]] | None = None
        self.columns: list[str] = []
        self._first_column = "Step"

    def _render(self, state, label: str = "") -> None:
        from IPython.display import HTML, display

        done = state.global_step
        elapsed = time.time() - self.start
        rate = (done - self.first_step) / elapsed if elapsed > 0 and done > self.first_step else 0
        remaining = (state.max_steps - done) / rate if rate else 0
        html = (
            f"<div><progress value='{done}' max='{state.max_steps}' style='width:300px; "
            f"height:20px; vertical-align: middle;'></progress> [{done}/{state.max_steps} "
            f"{_format_time(elapsed)} &lt; {_format_time(remaining)}"
            f"{', ' + label if label else ''}]</div>"
        )
        if self.rows:
            head = "".join(f"<th>{c}</th>" for c in self.columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in self.rows
            )
            html += (
                f"<table border='1' class='dataframe'><thead><tr style='text-align: left;'>"
                f"{head}</tr></thead><tbody>{body}</tbody></table>"
            )
        if self.handle is None:
            self.handle = display(HTML(html), display_id=True)
        else:
            self.handle.update(HTML(html))

    def on_train_begin(self, args, state, control, **kwargs):
        self._first_column = "Epoch" if args.eval_strategy == "epoch" else "Step"
        self.columns = [self._first_column, "Training Loss"]
        if args.eval_strategy != "no":
            self.columns.append("Validation Loss")
        self.rows = []
        self.handle = None
        self.start = time.time()
        self.first_step = state.global_step
        self.last_render = 0.0
        self._render(state)

    def on_step_end(self, args, state, control, **kwargs):
        now = time.time()
        if self.rows is not None and (
            now - self.last_render > 0.2 or state.global_step >= state.max_steps
        ):
            self.last_render = now
            self._render(state, f"Epoch {state.epoch:.2f}/{state.num_train_epochs}")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.rows is not None and args.eval_strategy == "no" and "loss" in (logs or {}):
            self._add_row({"Step": state.global_step, "Training Loss": logs["loss"]})
            self._render(state)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.rows is None:
            return
        training_loss = "No log"
        for entry in reversed(state.log_history):
            if "loss" in entry:
                training_loss = entry["loss"]
                break
        first = int(state.epoch) if self._first_column == "Epoch" else state.global_step
        values = {self._first_column: first, "Training Loss": training_loss}
        metrics = dict(metrics or {})
        prefix = next((k[: -len("_loss")] for k in metrics if k.endswith("_loss")), "eval")
        for key in (
            "total_flos",
            "epoch",
            f"{prefix}_runtime",
            f"{prefix}_samples_per_second",
            f"{prefix}_steps_per_second",
            f"{prefix}_model_preparation_time",
        ):
            metrics.pop(key, None)
        if f"{prefix}_loss" in metrics:
            values["Validation Loss"] = metrics.pop(f"{prefix}_loss")
        for key, value in metrics.items():
            name = " ".join(part.capitalize() for part in key.split("_")[1:])
            values[name] = value
        self._add_row(values)
        self._render(state)

    def _add_row(self, values: dict) -> None:
        for name in values:
            if name not in self.columns:
                self.columns.append(name)
        cell = lambda v: f"{v:.6f}" if isinstance(v, float) else str(v)  # noqa: E731
        row = [cell(values[c]) if c in values else "No Log" for c in self.columns]
        if self.rows and self.rows[-1][0] == row[0]:
            self.rows[-1] = row
        else:
            self.rows.append(row)

    def on_train_end(self, args, state, control, **kwargs):
        if self.rows is not None:
            self._render(state, f"Epoch {int(state.epoch or 0)}/{state.num_train_epochs}")
        self.rows = None


class EarlyStoppingCallback(TrainerCallback):
    """Stops training when `metric_for_best_model` has not improved for
    `early_stopping_patience` evaluations (by more than `early_stopping_threshold`)."""

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0):
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_threshold = early_stopping_threshold
        self.early_stopping_patience_counter = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if not args.load_best_model_at_end:
            logger.warning(
                "Using EarlyStoppingCallback without load_best_model_at_end=True. Once "
                "training is finished, the best model will not be loaded automatically."
            )
        assert args.metric_for_best_model is not None, (
            "EarlyStoppingCallback requires metric_for_best_model to be defined"
        )
        assert args.eval_strategy != "no", (
            "EarlyStoppingCallback requires IntervalStrategy of steps or epoch"
        )

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        name = metric_key(args.metric_for_best_model)
        value = (metrics or {}).get(name)
        if value is None:
            logger.warning(
                f"early stopping required metric_for_best_model, but did not find {name} "
                f"so early stopping is disabled"
            )
            return
        best = state.best_metric  # not yet updated by this evaluation
        if best is None or (
            improves(value, best, args.greater_is_better)
            and abs(value - best) > self.early_stopping_threshold
        ):
            self.early_stopping_patience_counter = 0
        else:
            self.early_stopping_patience_counter += 1
        if self.early_stopping_patience_counter >= self.early_stopping_patience:
            control.should_training_stop = True

    def state(self) -> dict:
        return {
            "args": {
                "early_stopping_patience": self.early_stopping_patience,
                "early_stopping_threshold": self.early_stopping_threshold,
            },
            "attributes": {"early_stopping_patience_counter": self.early_stopping_patience_counter},
        }
