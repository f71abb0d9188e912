"""`TrainingArguments`: transformers' names, defaults and validation errors
(`training_args.py`, `__post_init__` and `_validate_args`).

Names that transformers 5 removed but older notebooks still use are accepted with a
FutureWarning and mapped to their successors: `evaluation_strategy` → `eval_strategy`,
`push_to_hub_model_id` → `hub_model_id`, `warmup_ratio` → `warmup_steps` (a ratio below 1),
`group_by_length=True` → `train_sampling_strategy="group_by_length"`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from . import _core

INTERVALS = ("no", "steps", "epoch")
SAVE_STRATEGIES = ("no", "steps", "epoch", "best")
SCHEDULERS = tuple(_core.SCHEDULER_TYPES)
OPTIMIZERS = ("adamw_torch_fused", "adamw_torch")
SAMPLING = tuple(_core.SAMPLING_STRATEGIES)
HUB_STRATEGIES = ("end", "every_save", "checkpoint", "all_checkpoints")

# transformers' enum names, which its messages print (e.g. IntervalStrategy.STEPS).
_ENUMS = {
    "eval_strategy": "IntervalStrategy",
    "logging_strategy": "IntervalStrategy",
    "save_strategy": "SaveStrategy",
    "hub_strategy": "HubStrategy",
    "lr_scheduler_type": "SchedulerType",
    "optim": "OptimizerNames",
}


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    value = getattr(value, "value", value)
    if value not in allowed:
        raise ValueError(
            f"{value} is not a valid {_ENUMS.get(name, name)}, please select one of {list(allowed)}"
        )
    return value


def _enum(args: TrainingArguments, name: str) -> str:
    return f"{_ENUMS[name]}.{getattr(args, name).upper()}"


@dataclass
class TrainingArguments:
    """The arguments of `Trainer`, as transformers names them. See transformers'
    documentation for each; ferrotune implements the subset listed here."""

    output_dir: str | None = None
    eval_strategy: str = "no"
    prediction_loss_only: bool = False
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    eval_delay: float = 0
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    num_train_epochs: float = 3.0
    max_steps: int = -1
    lr_scheduler_type: str = "linear"
    lr_scheduler_kwargs: dict | None = None
    warmup_steps: float = 0
    log_level: str = "passive"
    logging_strategy: str = "steps"
    logging_first_step: bool = False
    logging_steps: float = 500
    logging_nan_inf_filter: bool = True
    save_strategy: str = "steps"
    save_steps: float = 500
    save_total_limit: int | None = None
    save_only_model: bool = False
    use_cpu: bool = False
    seed: int = 42
    data_seed: int | None = None
    bf16: bool = False
    fp16: bool = False
    eval_steps: float | None = None
    dataloader_drop_last: bool = False
    dataloader_num_workers: int = 0
    dataloader_pin_memory: bool = True
    remove_unused_columns: bool = True
    label_names: list[str] | None = None
    load_best_model_at_end: bool = False
    metric_for_best_model: str | None = None
    greater_is_better: bool | None = None
    disable_tqdm: bool | None = None
    train_sampling_strategy: str = "random"
    length_column_name: str = "length"
    report_to: str | list[str] | None = "none"
    optim: str = "adamw_torch_fused"
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_strategy: str = "every_save"
    hub_token: str | None = None
    hub_private_repo: bool | None = None
    eval_on_start: bool = False
    label_smoothing_factor: float = 0.0
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    # Names of transformers 4, kept so that older notebooks run unchanged.
    evaluation_strategy: str | None = field(default=None, repr=False)
    push_to_hub_model_id: str | None = field(default=None, repr=False)
    warmup_ratio: float | None = field(default=None, repr=False)
    group_by_length: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self._map_old_names()
        if self.output_dir is None:
            self.output_dir = "trainer_output"
        self.output_dir = os.path.expanduser(os.fspath(self.output_dir))
        if self.disable_tqdm is None:
            import logging

            self.disable_tqdm = logging.getLogger("ferrotune").getEffectiveLevel() > logging.WARN
        self.eval_strategy = _choice("eval_strategy", self.eval_strategy, INTERVALS)
        self.logging_strategy = _choice("logging_strategy", self.logging_strategy, INTERVALS)
        self.save_strategy = _choice("save_strategy", self.save_strategy, SAVE_STRATEGIES)
        self.hub_strategy = _choice("hub_strategy", self.hub_strategy, HUB_STRATEGIES)
        self.lr_scheduler_type = _choice("lr_scheduler_type", self.lr_scheduler_type, SCHEDULERS)
        self.optim = _choice("optim", self.optim, OPTIMIZERS)
        self.train_sampling_strategy = _choice(
            "train_sampling_strategy", self.train_sampling_strategy, SAMPLING
        )
        if self.eval_strategy != "no":
            self.do_eval = True
        if self.eval_strategy == "steps" and (self.eval_steps is None or self.eval_steps == 0):
            if self.logging_steps > 0:
                self.eval_steps = self.logging_steps
            else:
                raise ValueError(
                    f"evaluation strategy {_enum(self, 'eval_strategy')} requires "
                    f"either non-zero --eval_steps or --logging_steps"
                )
        if self.load_best_model_at_end and self.metric_for_best_model is None:
            self.metric_for_best_model = "loss"
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")
        if self.report_to in (None, "none") or self.report_to == ["none"]:
            self.report_to = []
        elif isinstance(self.report_to, str):
            self.report_to = [self.report_to]
        self._validate()

    def _map_old_names(self) -> None:
        def renamed(old: str, new: str) -> None:
            warnings.warn(
                f"`{old}` is deprecated (transformers 5 removed it); use `{new}` instead",
                FutureWarning,
                stacklevel=5,
            )

        if self.evaluation_strategy is not None:
            renamed("evaluation_strategy", "eval_strategy")
            self.eval_strategy = self.evaluation_strategy
        if self.push_to_hub_model_id is not None:
            renamed("push_to_hub_model_id", "hub_model_id")
            if self.hub_model_id is None:
                self.hub_model_id = self.push_to_hub_model_id
        if self.warmup_ratio is not None:
            renamed("warmup_ratio", "warmup_steps")
            if not 0 <= self.warmup_ratio < 1:
                raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
            if self.warmup_steps == 0:
                self.warmup_steps = self.warmup_ratio
        if self.group_by_length:
            renamed("group_by_length", 'train_sampling_strategy="group_by_length"')
            self.train_sampling_strategy = "group_by_length"

    def _validate(self) -> None:
        for kind in ("logging", "eval", "save"):
            steps = getattr(self, f"{kind}_steps")
            strategy = (
                self.logging_strategy
                if kind == "logging"
                else (self.eval_strategy if kind == "eval" else self.save_strategy)
            )
            if strategy == "steps" and steps is not None and steps > 1:
                if steps != int(steps):
                    raise ValueError(f"--{kind}_steps must be an integer if bigger than 1: {steps}")
                setattr(self, f"{kind}_steps", int(steps))
        if self.logging_strategy == "steps" and self.logging_steps == 0:
            raise ValueError(
                f"logging strategy {_enum(self, 'logging_strategy')} requires "
                f"non-zero --logging_steps"
            )
        if self.load_best_model_at_end and self.save_strategy != "best":
            if self.eval_strategy != self.save_strategy:
                raise ValueError(
                    "--load_best_model_at_end requires the save and eval strategy to match, "
                    'except when --save_strategy="best", but found\n- Evaluation strategy: '
                    f"{_enum(self, 'eval_strategy')}\n- Save strategy: "
                    f"{_enum(self, 'save_strategy')}"
                )
            if self.eval_strategy == "steps":
                if self.eval_steps < 1 or self.save_steps < 1:
                    if not (self.eval_steps < 1 and self.save_steps < 1):
                        raise ValueError(
                            "--load_best_model_at_end requires the saving steps to be a multiple "
                            "of the evaluation steps, which cannot get guaranteed when mixing "
                            f"ratio and absolute steps for save_steps {self.save_steps} and "
                            f"eval_steps {self.eval_steps}."
                        )
                    if round(self.save_steps * 1e6) % round(self.eval_steps * 1e6) != 0:
                        raise ValueError(
                            "--load_best_model_at_end requires the saving steps to be a multiple "
                            f"of the evaluation steps, but found {self.save_steps}, which is not "
                            f"a multiple of {self.eval_steps}."
                        )
                elif self.save_steps % self.eval_steps != 0:
                    raise ValueError(
                        "--load_best_model_at_end requires the saving steps to be a round "
                        f"multiple of the evaluation steps, but found {self.save_steps}, which "
                        f"is not a round multiple of {self.eval_steps}."
                    )
        if (self.bf16 or self.fp16) and not self.use_cpu and not torch.cuda.is_available():
            raise ValueError(
                "Your setup doesn't support bf16/gpu. You need to assign use_cpu if "
                "you want to train the model on CPU."
            )
        _core.check_mixed_precision(self.bf16, self.fp16)
        if self.warmup_steps < 0:
            raise ValueError(
                f"Got warmup_steps = {self.warmup_steps}, Expected value warmup_steps >= 0"
            )
        # Checked here rather than deep in the loop, so that nothing runs with them.
        for name in (
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.learning_rate >= 0:
            raise ValueError(f"Invalid learning rate: {self.learning_rate}")
        for i, beta in enumerate((self.adam_beta1, self.adam_beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        if not self.adam_epsilon >= 0:
            raise ValueError(f"Invalid epsilon value: {self.adam_epsilon}")
        if not self.weight_decay >= 0:
            raise ValueError(f"Invalid weight_decay value: {self.weight_decay}")
        if self.label_smoothing_factor != 0:
            raise NotImplementedError("label_smoothing_factor is not supported yet")
        if self.lr_scheduler_kwargs:
            raise NotImplementedError("lr_scheduler_kwargs is not supported yet")
        if self.report_to:
            raise ValueError(
                f"{self.report_to[0]} is not supported, only [] are supported; "
                f"ferrotune reports to no integration (report_to='none')"
            )

    # -- derived values, as transformers names them ------------------------------------------
    @property
    def train_batch_size(self) -> int:
        return self.per_device_train_batch_size

    @property
    def eval_batch_size(self) -> int:
        return self.per_device_eval_batch_size

    @property
    def device(self) -> torch.device:
        """The CPU with use_cpu or without CUDA; else this process's GPU (torchrun's
        LOCAL_RANK)."""
        if self.use_cpu or not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def n_gpu(self) -> int:
        return 0 if self.device.type == "cpu" else 1

    @property
    def world_size(self) -> int:
        """The number of processes training together (torch.distributed), 1 alone."""
        dist = torch.distributed
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @property
    def process_index(self) -> int:
        dist = torch.distributed
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    @property
    def should_save(self) -> bool:
        """Whether this process writes checkpoints and models: the first one only."""
        return self.process_index == 0

    @property
    def should_log(self) -> bool:
        return self.process_index == 0

    def get_warmup_steps(self, num_training_steps: int) -> int:
        return _core.warmup_steps(float(self.warmup_steps), num_training_steps)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.repr}

    def __repr__(self) -> str:
        body = ",\n".join(f"{k}={v!r}" for k, v in sorted(self.to_dict().items()))
        return f"{type(self).__name__}(\n{body},\n)"
