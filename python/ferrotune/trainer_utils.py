"""The small types and helpers of the Trainer, as transformers' `trainer_utils.py` has them:
what `compute_metrics` receives, what `train` and `predict` return, seeding, speed metrics."""

from __future__ import annotations

import random
import time
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = [
    "EvalPrediction",
    "PredictionOutput",
    "TrainOutput",
    "denumpify_detensorize",
    "set_seed",
    "speed_metrics",
]


class EvalPrediction:
    """What `compute_metrics` receives: `predictions, labels = eval_pred` works."""

    def __init__(self, predictions: np.ndarray, label_ids: np.ndarray | None):
        self.predictions = predictions
        self.label_ids = label_ids

    def __iter__(self):
        return iter((self.predictions, self.label_ids))

    def __getitem__(self, index: int):
        return (self.predictions, self.label_ids)[index]

    def __len__(self) -> int:
        return 2


class TrainOutput(NamedTuple):
    global_step: int
    training_loss: float
    metrics: dict[str, float]


class PredictionOutput(NamedTuple):
    predictions: np.ndarray
    label_ids: np.ndarray | None
    metrics: dict[str, float]


def set_seed(seed: int) -> None:
    """Seeds Python, numpy and torch (CPU and CUDA), as transformers' set_seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def speed_metrics(
    split: str, start_time: float, num_samples: float | None = None, num_steps: int | None = None
) -> dict[str, float]:
    runtime = time.time() - start_time
    result = {f"{split}_runtime": round(runtime, 4)}
    if runtime == 0:
        return result
    if num_samples is not None:
        result[f"{split}_samples_per_second"] = round(num_samples / runtime, 3)
    if num_steps is not None:
        result[f"{split}_steps_per_second"] = round(num_steps / runtime, 3)
    return result


def denumpify_detensorize(value: Any) -> Any:
    """numpy scalars and 0-d tensors as Python numbers, as transformers' function of this name."""
    if isinstance(value, dict):
        return {k: denumpify_detensorize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(denumpify_detensorize(v) for v in value)
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value
