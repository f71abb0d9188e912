"""transformers' data collators for token classification and language modeling
(`data/data_collator.py`), with the same arguments and batches. The Rust core pads the rows and
makes the labels (`_core.Examples.collate`), the same code the Trainer's loop runs; the masks of
masked language modeling are drawn from torch's default generator with transformers' torch
operations, so that under `torch.manual_seed` they are transformers' masks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from . import _core
from .data import _plain
from .tokenization import BatchEncoding

__all__ = [
    "DataCollatorForLanguageModeling",
    "DataCollatorForTokenClassification",
    "DataCollatorWithPadding",
]

# The columns the core pads; any other key of the features is stacked as it is.
PADDED = ("input_ids", "attention_mask", "token_type_ids")


def _max_length(tokenizer: Any, padding: Any, max_length: int | None) -> int | None:
    """The length `padding` pads every row to (None: the longest of the batch)."""
    if padding is True or padding == "longest":
        return None
    if padding == "max_length":
        return max_length if max_length is not None else tokenizer.model_max_length
    raise NotImplementedError(
        f"padding={padding!r} is not supported: use True / 'longest' or 'max_length' (batches "
        f"are tensors, so their rows are padded)"
    )


def pad_settings(tokenizer: Any, pad_to_multiple_of: int | None) -> dict[str, Any]:
    """How `tokenizer` pads (its pad id and side) with the collator's rounding."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return {
        "pad_token_id": None if pad is None else int(pad),
        "pad_left": getattr(tokenizer, "padding_side", "right") == "left",
        "pad_to_multiple_of": pad_to_multiple_of,
    }


def labeling(collator: Any) -> dict[str, Any]:
    """The settings the core's collator takes (`Labeling` in src/train/data.rs) from a
    ferrotune or transformers collator: per-token label padding, language modeling."""
    out: dict[str, Any] = {}
    tokenizer = getattr(collator, "tokenizer", None)
    if hasattr(collator, "label_pad_token_id"):
        out["label_pad_token_id"] = int(collator.label_pad_token_id)
    if hasattr(collator, "padding"):
        out["max_length"] = _max_length(tokenizer, collator.padding, collator.max_length)
    if hasattr(collator, "mlm"):
        if getattr(collator, "whole_word_mask", False):
            raise NotImplementedError(
                "whole_word_mask=True is not supported; ferrotune masks single tokens"
            )
        out["language_modeling"] = language_modeling(
            tokenizer,
            mlm=collator.mlm,
            mlm_probability=collator.mlm_probability,
            mask_replace_prob=collator.mask_replace_prob,
            random_replace_prob=collator.random_replace_prob,
        )
    return out


def language_modeling(tokenizer: Any, **settings: Any) -> dict[str, Any]:
    """`LanguageModeling` (src/train/masking.rs): the collator's settings and its tokenizer's
    mask token, size, special ids and pad id."""
    mask = getattr(tokenizer, "mask_token", None)
    pad = getattr(tokenizer, "pad_token_id", None)
    return {
        **{
            k: (bool(v) if k == "mlm" else float(-1 if v is None else v))
            for k, v in settings.items()
        },
        "mask_token_id": None if mask is None else int(tokenizer.convert_tokens_to_ids(mask)),
        "vocab_size": len(tokenizer),
        "special_ids": [int(i) for i in tokenizer.all_special_ids],
        "pad_token_id": None if pad is None else int(pad),
    }


def _table(features: list[dict[str, Any]], columns: list[str]):
    import pyarrow as pa

    return pa.table({c: [_plain(f[c]) for f in features] for c in columns})


def _collate(
    collator: Any,
    features: list[Any],
    label_name: str | None,
    per_token_labels: bool,
    return_tensors: str | None,
) -> BatchEncoding:
    """The batch of `features` (dicts, or lists of token ids) as the core collates it."""
    return_tensors = return_tensors if return_tensors is not None else collator.return_tensors
    if return_tensors not in ("pt", "np"):
        raise ValueError(f"Framework '{return_tensors}' not recognized!")
    if not features:
        raise ValueError("the collator got no features (an empty batch)")
    # transformers stacks bare lists of ids without an attention mask (_torch_collate_batch).
    bare = not isinstance(features[0], Mapping)
    if bare:
        features = [{"input_ids": f} for f in features]
    keys = list(features[0])
    for i, feature in enumerate(features):
        if list(feature) != keys:
            raise ValueError(f"feature {i} has the keys {list(feature)}, feature 0 has {keys}")
    if "input_ids" not in keys:
        raise ValueError(f"the features have no 'input_ids' (keys: {', '.join(keys)})")
    special = "special_tokens_mask" in keys and not per_token_labels
    read = [k for k in keys if k in PADDED or k == "special_tokens_mask" or k == label_name]
    examples = _core.Examples(
        _table(features, read),
        label_name if label_name in keys else None,
        per_token_labels=per_token_labels,
        special_tokens_mask=special,
    )
    input_ids, attention_mask, token_type_ids, labels = examples.collate(
        **pad_settings(collator.tokenizer, collator.pad_to_multiple_of),
        labeling=labeling(collator),
    )
    padded = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        padded["token_type_ids"] = token_type_ids
    batch: dict[str, Any] = {}
    for key in keys:
        if key in padded:
            batch[key] = padded[key]
        elif key not in read:
            values = [_plain(f[key]) for f in features]
            # As transformers' BatchEncoding makes them (numpy keeps float64).
            batch[key] = np.asarray(values) if return_tensors == "np" else torch.tensor(values)
    if not bare:
        batch.setdefault("attention_mask", attention_mask)
    if labels is not None:
        batch[label_name or "labels"] = labels
    if return_tensors == "np":
        batch = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return BatchEncoding(batch)


class DataCollatorWithPadding:
    """Pads the inputs of a batch with the tokenizer's pad id, on its padding side; the other
    keys (a `label` or `label_ids` becomes `labels`) are stacked as they are."""

    def __init__(
        self,
        tokenizer: Any,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_tensors: str = "pt",
    ):
        self.tokenizer = tokenizer
        self.padding = padding
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.return_tensors = return_tensors
        _core.check_labeling(labeling(self))

    def __call__(self, features: list[Any]) -> BatchEncoding:
        batch = _collate(self, features, None, False, None)
        for name in ("label", "label_ids"):
            if name in batch:
                batch["labels"] = batch.pop(name)
        return batch

    def __repr__(self) -> str:
        settings = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in ("padding", "max_length", "pad_to_multiple_of", "label_pad_token_id")
            if hasattr(self, name)
        )
        return f"{type(self).__name__}({settings})"


class DataCollatorForTokenClassification(DataCollatorWithPadding):
    """Pads the inputs of a batch with the tokenizer's pad id and its `labels` (one class id per
    token) with `label_pad_token_id`, on the tokenizer's padding side."""

    def __init__(
        self,
        tokenizer: Any,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        label_pad_token_id: int = -100,
        return_tensors: str = "pt",
    ):
        self.label_pad_token_id = label_pad_token_id
        super().__init__(tokenizer, padding, max_length, pad_to_multiple_of, return_tensors)

    def __call__(self, features: list[Any], return_tensors: str | None = None) -> BatchEncoding:
        label_name = "label" if "label" in features[0] else "labels"
        return _collate(self, features, label_name, True, return_tensors)


class DataCollatorForLanguageModeling:
    """Pads a batch and makes its labels: with `mlm`, `mlm_probability` of the tokens that are
    not special (`special_tokens_mask` of the features, else the tokenizer's special ids) become
    targets, `mask_replace_prob` of those are replaced by the mask token, `random_replace_prob`
    by a random token, the rest kept; other labels are -100. Without `mlm` the labels are the
    inputs with the padding -100. With `seed`, the masks come from a generator of the collator's
    own (transformers' `torch.Generator().manual_seed(seed)`), else from torch's default one."""

    def __init__(
        self,
        tokenizer: Any,
        mlm: bool = True,
        whole_word_mask: bool = False,
        mlm_probability: float | None = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        pad_to_multiple_of: int | None = None,
        return_tensors: str = "pt",
        seed: int | None = None,
    ):
        self.tokenizer = tokenizer
        self.mlm = mlm
        self.whole_word_mask = whole_word_mask
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.pad_to_multiple_of = pad_to_multiple_of
        self.return_tensors = return_tensors
        self.seed = seed
        self.generator: torch.Generator | None = None
        _core.check_labeling(labeling(self))

    def __call__(self, examples: list[Any], return_tensors: str | None = None) -> BatchEncoding:
        if (return_tensors or self.return_tensors) == "np" and self.mlm:
            raise NotImplementedError(
                "return_tensors='np' with mlm=True is not supported (transformers draws those "
                "masks from numpy's generator); use 'pt'"
            )
        if self.seed is None:
            return _collate(self, examples, None, False, return_tensors)
        if self.generator is None:
            self.generator = torch.Generator().manual_seed(self.seed)
        # The core draws from torch's default generator: it holds this collator's state for
        # the call, and gets its own back after.
        saved = torch.get_rng_state()
        torch.set_rng_state(self.generator.get_state())
        try:
            return _collate(self, examples, None, False, return_tensors)
        finally:
            self.generator.set_state(torch.get_rng_state())
            torch.set_rng_state(saved)

    def __repr__(self) -> str:
        return (
            f"DataCollatorForLanguageModeling(mlm={self.mlm}, mlm_probability="
            f"{self.mlm_probability}, mask_replace_prob={self.mask_replace_prob}, "
            f"random_replace_prob={self.random_replace_prob}, pad_to_multiple_of="
            f"{self.pad_to_multiple_of}, seed={self.seed})"
        )
