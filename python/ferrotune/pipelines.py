"""`pipeline("sentiment-analysis")` / `pipeline("text-classification")`: transformers'
`TextClassificationPipeline` outputs, computed by one native call per input list (parallel
tokenization, length-sorted batches, no autograd, results in input order)."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from . import _core
from .hub import ignore_remote_code
from .modeling import PreTrainedModelForSequenceClassification
from .tokenization import AutoTokenizer, PreTrainedTokenizerFast

SUPPORTED_TASKS = ("sentiment-analysis", "text-classification")
FUNCTIONS = ("softmax", "sigmoid", "none")
# Inputs of a generator are classified this many at a time.
STREAM_CHUNK = 4096


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class TextClassificationPipeline:
    """Classifies texts (or text pairs given as {"text": ..., "text_pair": ...})."""

    def __init__(
        self,
        model: PreTrainedModelForSequenceClassification,
        tokenizer: PreTrainedTokenizerFast,
        batch_size: int | None = None,
        task: str = "text-classification",
        **defaults: Any,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.task = task
        self._defaults = defaults

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _function(self, name: str | None) -> str:
        if name is not None:
            name = str(getattr(name, "value", name)).lower()
            if name not in FUNCTIONS:
                raise ValueError(f"Unrecognized `function_to_apply` argument: {name}")
            return name
        config = self.model.config
        if config.problem_type == "regression":
            return "none"
        if config.problem_type == "multi_label_classification" or config.num_labels == 1:
            return "sigmoid"
        return "softmax"

    def _results(self, logits: np.ndarray, function: str, top_k: Any, legacy: bool) -> list:
        scores = {"softmax": _softmax, "sigmoid": _sigmoid, "none": lambda x: x}[function](logits)
        id2label = self.model.config.id2label
        out = []
        for row in scores:
            if legacy:
                best = int(row.argmax())
                out.append({"label": id2label[best], "score": row[best].item()})
                continue
            entries = [{"label": id2label[i], "score": s.item()} for i, s in enumerate(row)]
            entries.sort(key=lambda e: e["score"], reverse=True)
            out.append(entries if top_k is None else entries[:top_k])
        return out

    def _logits(self, texts: list, pairs: list | None, kwargs: dict) -> np.ndarray:
        truncation = kwargs.pop("truncation", None)
        max_length = kwargs.pop("max_length", None)
        kwargs.pop("padding", None)  # batches are padded as needed
        batch_size = _check_batch_size(kwargs.pop("batch_size", self.batch_size))
        if kwargs:
            raise TypeError(f"unsupported arguments for the pipeline: {', '.join(sorted(kwargs))}")
        logits = _core.classify(
            self.model._model,
            self.tokenizer._core,
            texts,
            pairs,
            truncation=truncation,
            max_length=max_length,
            batch_size=batch_size,
            bf16=self.model.dtype == torch.bfloat16,
        )
        return logits.numpy()

    def _split(self, items: list) -> tuple[list, list | None]:
        """(texts, pairs) of a list of strings or of {"text", "text_pair"} dicts."""
        if any(isinstance(x, (list, tuple)) for x in items):
            raise ValueError(
                "The pipeline received invalid inputs, if you are trying to send text pairs, you "
                'can try to send a dictionary `{"text": "My text", "text_pair": "My '
                'pair"}` in order to send a text pair.'
            )
        if not any(isinstance(x, dict) for x in items):
            return items, None
        texts, pairs = [], []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "text" not in item:
                raise TypeError(
                    f"input {i} is {type(item).__name__}; pass either strings or "
                    f"{{'text': ..., 'text_pair': ...}} dicts, not a mix"
                )
            texts.append(item["text"])
            pairs.append(item.get("text_pair", ""))
        return texts, pairs

    def __call__(
        self, inputs: Any, top_k: Any = "", function_to_apply: Any = None, **kwargs: Any
    ) -> Any:
        kwargs = {**self._defaults, **kwargs}
        legacy = isinstance(top_k, str)  # top_k not given: one {label, score} per input
        if not legacy and not (top_k is None or (isinstance(top_k, int) and top_k > 0)):
            raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
        function = self._function(function_to_apply)

        def run(items: list) -> list:
            if not items:
                return []
            texts, pairs = self._split(items)
            return self._results(self._logits(texts, pairs, dict(kwargs)), function, top_k, legacy)

        if isinstance(inputs, str):
            result = run([inputs])
            return result if legacy else result[0]
        if isinstance(inputs, dict):
            return run([inputs])[0]
        if inputs is None or not isinstance(inputs, Iterable):
            raise TypeError(
                f"the pipeline needs a string, a list of strings or text pairs, got "
                f"{type(inputs).__name__}: {inputs!r:.80}"
            )
        if isinstance(inputs, (Iterator,)) or (
            isinstance(inputs, Iterable) and not hasattr(inputs, "__len__")
        ):
            return self._stream(iter(inputs), run)
        return run(list(inputs))

    @staticmethod
    def _stream(items: Iterator, run) -> Iterator:
        """Results of a generator, as they come, classified in chunks."""
        while chunk := list(itertools.islice(items, STREAM_CHUNK)):
            yield from run(chunk)


def _check_batch_size(batch_size: Any) -> int | None:
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    return batch_size


def _load_model(model: Any, device: Any, dtype: Any) -> PreTrainedModelForSequenceClassification:
    from .modeling import AutoModelForSequenceClassification

    if isinstance(model, PreTrainedModelForSequenceClassification):
        loaded = model
    elif isinstance(model, (str, os.PathLike)):
        loaded = AutoModelForSequenceClassification.from_pretrained(model)
    elif hasattr(model, "state_dict") and hasattr(model, "config"):
        loaded = PreTrainedModelForSequenceClassification.from_transformers(model)
    else:
        raise TypeError(
            f"model must be a path, a hub id or a sequence-classification model, "
            f"got {type(model).__name__}"
        )
    if device is not None:
        if isinstance(device, int):
            device = "cpu" if device < 0 else torch.device("cuda", device)
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for, but torch sees no CUDA device")
        loaded.to(device)
    if dtype is not None and dtype != "auto":
        loaded.to(dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype)))
    return loaded


def _load_tokenizer(tokenizer: Any, model: Any) -> PreTrainedTokenizerFast:
    if isinstance(tokenizer, PreTrainedTokenizerFast):
        return tokenizer
    if isinstance(tokenizer, (str, os.PathLike)):
        return AutoTokenizer.from_pretrained(tokenizer)
    if tokenizer is None:
        if isinstance(model, (str, os.PathLike)):
            return AutoTokenizer.from_pretrained(model)
        raise ValueError(
            "Impossible to guess which tokenizer to use. Please provide a "
            "PreTrainedTokenizer class or a path/identifier to a pretrained tokenizer."
        )
    if hasattr(tokenizer, "save_pretrained"):  # a transformers tokenizer: use its files
        with tempfile.TemporaryDirectory() as folder:
            tokenizer.save_pretrained(folder)
            return AutoTokenizer.from_pretrained(folder)
    raise TypeError(
        f"tokenizer must be a path, a hub id or a tokenizer, got {type(tokenizer).__name__}"
    )


def pipeline(
    task: str | None = None,
    model: Any = None,
    tokenizer: Any = None,
    device: Any = None,
    batch_size: int | None = None,
    dtype: Any = None,
    torch_dtype: Any = None,
    **kwargs: Any,
) -> TextClassificationPipeline:
    """`pipeline("sentiment-analysis", model=path_or_model, tokenizer=...)`, as transformers';
    `batch_size` None lets ferrotune batch by length. Extra keyword arguments (e.g.
    `truncation=True`) apply to every call."""
    ignore_remote_code(kwargs.pop("trust_remote_code", False))
    if task is None and model is None:
        raise RuntimeError(
            "Impossible to instantiate a pipeline without either a task or a model being specified."
        )
    task = task or "text-classification"
    if task not in SUPPORTED_TASKS:
        raise ValueError(f"Unknown task {task}, available tasks are {list(SUPPORTED_TASKS)}")
    if model is None:
        raise ValueError(
            "ferrotune has no default model to download; pass model=<a local "
            "folder, a hub id or a model object>"
        )
    _check_batch_size(batch_size)
    loaded = _load_model(model, device, dtype if dtype is not None else torch_dtype)
    return TextClassificationPipeline(
        loaded, _load_tokenizer(tokenizer, model), batch_size=batch_size, task=task, **kwargs
    )
