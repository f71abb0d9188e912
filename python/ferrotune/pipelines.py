"""`pipeline("sentiment-analysis")` / `pipeline("text-classification")`, `pipeline("ner")` /
`pipeline("token-classification")` and `pipeline("fill-mask")`: transformers' outputs, computed
by one native call per input list (parallel tokenization, length-sorted batches, no autograd,
results in input order)."""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from . import _core
from .hub import ignore_remote_code
from .modeling import PreTrainedModelForSequenceClassification
from .tokenization import AutoTokenizer, PreTrainedTokenizerFast

SUPPORTED_TASKS = (
    "sentiment-analysis",
    "text-classification",
    "ner",
    "token-classification",
    "fill-mask",
)
# The head of each task's models: ferrotune.modeling's AutoModelFor<head>, PreTrainedModelFor<head>.
TASK_MODELS = {
    "sentiment-analysis": "SequenceClassification",
    "text-classification": "SequenceClassification",
    "ner": "TokenClassification",
    "token-classification": "TokenClassification",
    "fill-mask": "MaskedLM",
}
logger = logging.getLogger(__name__)
FUNCTIONS = ("softmax", "sigmoid", "none")
# Inputs of a generator are classified this many at a time.
STREAM_CHUNK = 4096


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class _TaskPipeline:
    """What the pipelines share: the model, the tokenizer, the task, the arguments given at
    construction (which each call's arguments override)."""

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerFast, task: str, **defaults: Any):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.task = task
        self._defaults = defaults

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _run(self, kwargs: dict) -> dict:
        """The forward-pass arguments: `batch_size` and bfloat16 autocast."""
        return {
            "batch_size": _check_batch_size(kwargs.pop("batch_size", None)),
            "bf16": self.model.dtype == torch.bfloat16,
        }


class TextClassificationPipeline(_TaskPipeline):
    """Classifies texts (or text pairs given as {"text": ..., "text_pair": ...})."""

    def __init__(
        self,
        model: PreTrainedModelForSequenceClassification,
        tokenizer: PreTrainedTokenizerFast,
        batch_size: int | None = None,
        task: str = "text-classification",
        **defaults: Any,
    ):
        super().__init__(model, tokenizer, task, **defaults)
        self.batch_size = batch_size

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


def _texts(inputs: Any, what: str) -> tuple[list, bool]:
    """(texts, single) of a string or a list of strings."""
    if isinstance(inputs, str):
        return [inputs], True
    if isinstance(inputs, (list, tuple)) and len(inputs) > 0:
        for i, item in enumerate(inputs):
            if not isinstance(item, str):
                raise TypeError(
                    f"{what} input {i} has type {type(item).__name__}, expected str: {item!r:.80}"
                )
        return list(inputs), False
    raise ValueError(
        f"At least one input is required (a string or a list of strings), got {inputs!r:.80}"
    )


class TokenClassificationPipeline(_TaskPipeline):
    """`pipeline("ner")`: the entities of texts, as transformers' TokenClassificationPipeline
    gives them (`aggregation_strategy` "none", "simple", "first", "average" or "max";
    `ignore_labels`, default ["O"])."""

    def __call__(self, inputs: Any, **kwargs: Any) -> list:
        kwargs = {**self._defaults, **kwargs}
        strategy = kwargs.pop("aggregation_strategy", None)
        strategy = "none" if strategy is None else str(getattr(strategy, "value", strategy))
        ignore_labels = kwargs.pop("ignore_labels", None)
        ignore_labels = ["O"] if ignore_labels is None else list(ignore_labels)
        for name in ("stride", "offset_mapping"):
            if kwargs.pop(name, None) is not None:
                raise NotImplementedError(
                    f"ferrotune's token-classification pipeline has no {name}"
                )
        if kwargs.pop("is_split_into_words", False):
            raise NotImplementedError(
                "ferrotune's token-classification pipeline takes texts, not is_split_into_words"
            )
        run = self._run(kwargs)
        if kwargs:
            raise TypeError(f"unsupported arguments for the pipeline: {', '.join(sorted(kwargs))}")
        texts, single = _texts(inputs, "token-classification")
        config = self.model.config
        labels = [config.id2label[i] for i in range(len(config.id2label))]
        results, heuristic = _core.token_classification(
            self.model._model,
            self.tokenizer._core,
            texts,
            labels,
            aggregation_strategy=strategy,
            ignore_labels=ignore_labels,
            **run,
        )
        if heuristic:
            message = "Tokenizer does not support real words, using fallback heuristic"
            warnings.warn(message, UserWarning, stacklevel=2)
        for entities in results:
            for entity in entities:  # transformers' scores are numpy float32
                entity["score"] = np.float32(entity["score"])
        return results[0] if single else results


class FillMaskPipeline(_TaskPipeline):
    """`pipeline("fill-mask")`: the `top_k` most likely tokens for each mask of texts (only
    among `targets` when given), as transformers' FillMaskPipeline gives them."""

    def __call__(self, inputs: Any, **kwargs: Any) -> list:
        kwargs = {**self._defaults, **kwargs}
        top_k = kwargs.pop("top_k", None)
        top_k = 5 if top_k is None else top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"top_k must be a non-negative integer, got {top_k!r}")
        targets = kwargs.pop("targets", None)
        tokenizer_kwargs = dict(kwargs.pop("tokenizer_kwargs", None) or {})
        run = self._run(kwargs)
        if kwargs:
            raise TypeError(f"unsupported arguments for the pipeline: {', '.join(sorted(kwargs))}")
        truncation = tokenizer_kwargs.pop("truncation", None)
        max_length = tokenizer_kwargs.pop("max_length", None)
        tokenizer_kwargs.pop("padding", None)  # batches are padded as needed
        if tokenizer_kwargs:
            raise TypeError(f"unsupported tokenizer_kwargs: {', '.join(sorted(tokenizer_kwargs))}")
        target_ids = None
        if targets is not None:
            targets = [targets] if isinstance(targets, str) else list(targets)
            target_ids, messages = _core.fill_mask_targets(self.tokenizer._core, targets)
            for message in messages:
                logger.warning(message)
        texts, single = _texts(inputs, "fill-mask")
        results = _core.fill_mask(
            self.model._model,
            self.tokenizer._core,
            texts,
            top_k=top_k,
            targets=target_ids,
            truncation=truncation,
            max_length=max_length,
            **run,
        )
        # One mask: its candidates; several: a list per mask (transformers' `postprocess`).
        outputs = [masks[0] if len(masks) == 1 else masks for masks in results]
        return outputs[0] if single or len(outputs) == 1 else outputs


def _check_batch_size(batch_size: Any) -> int | None:
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    return batch_size


def _load_model(model: Any, device: Any, dtype: Any, task: str = "text-classification") -> Any:
    from . import modeling

    head = TASK_MODELS[task]
    base = getattr(modeling, f"PreTrainedModelFor{head}")
    if isinstance(model, modeling.PreTrainedModel):
        loaded = model
    elif isinstance(model, (str, os.PathLike)):
        loaded = getattr(modeling, f"AutoModelFor{head}").from_pretrained(model)
    elif hasattr(model, "state_dict") and hasattr(model, "config"):
        loaded = base.from_transformers(model)
    else:
        raise TypeError(
            f"model must be a path, a hub id or a model for {task}, got {type(model).__name__}"
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
) -> Any:
    """`pipeline("sentiment-analysis" | "ner" | "fill-mask", model=path_or_model, tokenizer=...)`,
    as transformers';
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
    loaded = _load_model(model, device, dtype if dtype is not None else torch_dtype, task)
    loaded_tokenizer = _load_tokenizer(tokenizer, model)
    if TASK_MODELS[task] == "SequenceClassification":
        return TextClassificationPipeline(
            loaded, loaded_tokenizer, batch_size=batch_size, task=task, **kwargs
        )
    if task == "fill-mask":
        if loaded_tokenizer.mask_token is None:
            raise ValueError("The tokenizer does not define a `mask_token`.")
        pipeline_class = FillMaskPipeline
    else:
        pipeline_class = TokenClassificationPipeline
    return pipeline_class(loaded, loaded_tokenizer, task, batch_size=batch_size, **kwargs)
