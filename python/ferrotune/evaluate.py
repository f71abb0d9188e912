"""`ferrotune.evaluate.load("accuracy")`: the metrics of Hugging Face `evaluate` that text
classification uses, computed in Rust with scikit-learn's definitions, and token
classification's "seqeval" with the seqeval package's, without the `evaluate` package:

>>> metric = ferrotune.evaluate.load("accuracy")
>>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
{'accuracy': 0.6666666666666666}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import _core


def _labels(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one label per example (1-D), got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(np.mod(array, 1) == 0):
            return array.astype(np.int64)
        raise TypeError(f"{name} must hold integer labels, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)


def _no_weights(kwargs: dict) -> None:
    if kwargs.pop("sample_weight", None) is not None:
        raise NotImplementedError("sample_weight is not supported by ferrotune's metrics")
    if kwargs:
        raise TypeError(f"unexpected arguments {sorted(kwargs)}")


def _accuracy(p: np.ndarray, r: np.ndarray, normalize: bool = True, **kw: Any) -> dict:
    _no_weights(kw)
    score = _core.accuracy(p, r)
    return {"accuracy": float(score if normalize else round(score * len(p)))}


def _prf(index: int, key: str) -> Callable[..., dict]:
    def compute(
        p: np.ndarray,
        r: np.ndarray,
        average: str = "binary",
        pos_label: int = 1,
        labels: Any = None,
        **kw: Any,
    ) -> dict:
        _no_weights(kw)
        if labels is not None:
            raise NotImplementedError("labels= is not supported; the labels are those present")
        return {key: float(_core.precision_recall_f1(p, r, average, pos_label)[index])}

    return compute


def _matthews(p: np.ndarray, r: np.ndarray, **kw: Any) -> dict:
    _no_weights(kw)
    return {"matthews_correlation": float(_core.matthews_correlation(p, r))}


def _confusion(
    p: np.ndarray, r: np.ndarray, labels: Any = None, normalize: str | None = None, **kw: Any
) -> dict:
    _no_weights(kw)
    present, counts = _core.confusion_matrix(p, r)
    if labels is not None:
        # Rows and columns for exactly the requested labels, in their order (sklearn).
        index = {label: i for i, label in enumerate(present)}
        full = np.zeros((len(labels), len(labels)), dtype=np.int64)
        for i, a in enumerate(labels):
            for j, b in enumerate(labels):
                if a in index and b in index:
                    full[i, j] = counts[index[a], index[b]]
        counts = full
    counts = counts.astype(np.int64)
    if normalize is None:
        return {"confusion_matrix": counts}
    axis = {"true": 1, "pred": 0, "all": None}.get(normalize, "bad")
    if axis == "bad":
        raise ValueError(f"normalize must be 'true', 'pred', 'all' or None, got {normalize!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        totals = counts.sum() if axis is None else counts.sum(axis=axis, keepdims=True)
        return {"confusion_matrix": np.nan_to_num(counts / totals)}


def _seqeval(
    predictions: Any,
    references: Any,
    suffix: bool = False,
    scheme: str | None = None,
    mode: str | None = None,
    sample_weight: Any = None,
    zero_division: str | int = "warn",
) -> dict:
    """evaluate's "seqeval": entity-level scores per type and overall, and the tag accuracy."""
    _no_weights({"sample_weight": sample_weight})
    if zero_division not in ("warn", 0, 1):
        raise ValueError(f'zero_division must be "warn", 0 or 1, got {zero_division!r}')
    types, overall, accuracy = _core.seqeval(
        predictions,
        references,
        suffix=suffix,
        strict=mode == "strict",
        scheme=scheme,
        zero_division=0.0 if zero_division == "warn" else float(zero_division),
    )
    scores: dict[str, Any] = {
        name: {"precision": p, "recall": r, "f1": f, "number": n} for name, p, r, f, n in types
    }
    scores["overall_precision"], scores["overall_recall"], scores["overall_f1"] = overall[:3]
    scores["overall_accuracy"] = accuracy
    return scores


_METRICS: dict[str, Callable[..., dict]] = {
    "accuracy": _accuracy,
    "precision": _prf(0, "precision"),
    "recall": _prf(1, "recall"),
    "f1": _prf(2, "f1"),
    "matthews_correlation": _matthews,
    "confusion_matrix": _confusion,
    "seqeval": _seqeval,
}
# Metrics of sequences of tags (strings), not of label ids.
_SEQUENCE_METRICS = {"seqeval"}


class Metric:
    """One metric; `compute(predictions=, references=)` or accumulate with `add_batch`."""

    def __init__(self, name: str):
        self.name = name
        self._compute = _METRICS[name]
        self._predictions: list = []
        self._references: list = []

    def add_batch(self, *, predictions: Any, references: Any) -> None:
        for kept, values in ((self._predictions, predictions), (self._references, references)):
            kept.extend(values.tolist() if hasattr(values, "tolist") else list(values))

    def add(self, *, prediction: Any, reference: Any) -> None:
        self._predictions.append(prediction)
        self._references.append(reference)

    def compute(self, *, predictions: Any = None, references: Any = None, **kwargs: Any) -> dict:
        if predictions is None and references is None:
            predictions, references = self._predictions, self._references
            self._predictions, self._references = [], []
        elif predictions is None or references is None:
            raise ValueError("pass both predictions= and references=")
        if self.name in _SEQUENCE_METRICS:
            return self._compute(predictions, references, **kwargs)
        return self._compute(
            _labels(predictions, "predictions"), _labels(references, "references"), **kwargs
        )

    def __repr__(self) -> str:
        return f"Metric(name={self.name!r})"


def load(path: str, config_name: str | None = None, **kwargs: Any) -> Metric:
    """The metric named `path` ("accuracy", "f1", "precision", "recall",
    "matthews_correlation", "confusion_matrix", "seqeval"), as `evaluate.load`."""
    name = path.rsplit("/", 1)[-1]
    if name not in _METRICS:
        raise ValueError(f"unknown metric {path!r}; ferrotune provides {', '.join(_METRICS)}")
    return Metric(name)


load_metric = load
