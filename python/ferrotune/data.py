"""Training and evaluation data as Arrow tables for the Rust core: a `datasets.Dataset` (its
indices mapping applied), a pyarrow Table, a pandas DataFrame, a dict of lists, or a sequence of
example dicts. Only the columns the model uses are kept, as transformers'
`remove_unused_columns` does."""

from __future__ import annotations

import logging
from typing import Any

from . import _core

logger = logging.getLogger(__name__)

LABEL_COLUMNS = ("labels", "label", "label_ids")


def column_names(dataset: Any) -> list[str]:
    if hasattr(dataset, "column_names"):  # datasets.Dataset, pyarrow.Table
        names = dataset.column_names
        return list(names) if not isinstance(names, dict) else list(names)
    if hasattr(dataset, "columns"):  # pandas
        return [str(c) for c in dataset.columns]
    if isinstance(dataset, dict):
        return list(dataset)
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        if len(dataset) == 0:
            return []
        first = dataset[0]
        if isinstance(first, dict):
            return list(first)
    raise TypeError(
        f"a dataset must be a datasets.Dataset, a pyarrow Table, a pandas DataFrame, a dict of "
        f"lists or a sequence of dicts, got {type(dataset).__name__}"
    )


def label_column(columns: list[str], label_names: list[str] | None) -> str | None:
    for name in list(label_names or []) + list(LABEL_COLUMNS):
        if name in columns:
            return name
    return None


def to_arrow(dataset: Any, keep: list[str]):
    """`dataset` restricted to the columns `keep`, as a pyarrow Table."""
    import pyarrow as pa

    if isinstance(dataset, pa.Table):
        return dataset.select(keep)
    if hasattr(dataset, "select_columns") and hasattr(dataset, "with_format"):  # datasets
        return dataset.select_columns(keep).with_format("arrow")[:]
    if hasattr(dataset, "columns") and hasattr(dataset, "iloc"):  # pandas
        return pa.Table.from_pandas(dataset[keep], preserve_index=False)
    if isinstance(dataset, dict):
        return pa.table({k: _plain(dataset[k]) for k in keep})
    rows = [{k: _plain(dataset[i][k]) for k in keep} for i in range(len(dataset))]
    return pa.Table.from_pylist(rows)


def _plain(value: Any) -> Any:
    """Lists instead of tensors or arrays, which pyarrow does not take inside rows."""
    return value.tolist() if hasattr(value, "tolist") else value


def examples(
    dataset: Any,
    *,
    description: str,
    label_names: list[str] | None,
    model_class: str,
    model_inputs: list[str],
    remove_unused_columns: bool = True,
    require_labels: bool = False,
    per_token_labels: bool = False,
    labels_from_collator: bool = False,
) -> _core.Examples:
    """The Rust-side examples of `dataset`: its `model_inputs` columns and its labels (one per
    token with `per_token_labels`; none when the collator makes them, for language modeling,
    which then reads a `special_tokens_mask` column kept by `remove_unused_columns=False`);
    raises before any training on bad data."""
    columns = column_names(dataset)
    if not columns or (hasattr(dataset, "__len__") and len(dataset) == 0):
        raise ValueError(f"the {description} set is empty")
    label = None if labels_from_collator else label_column(columns, label_names)
    require_labels = require_labels and not labels_from_collator
    if require_labels and label is None:
        raise ValueError(
            f"the {description} set has no label column: looked for "
            f"{', '.join(list(label_names or []) + list(LABEL_COLUMNS))} among its columns "
            f"{', '.join(columns)}"
        )
    special = (
        labels_from_collator and not remove_unused_columns and "special_tokens_mask" in columns
    )
    keep = (
        [c for c in model_inputs if c in columns]
        + ([label] if label else [])
        + (["special_tokens_mask"] if special else [])
    )
    _core.check_columns(list(columns), f"{description} set")
    ignored = [c for c in columns if c not in keep]
    if ignored and remove_unused_columns:
        logger.info(
            f"The following columns in the {description} set don't have a corresponding argument "
            f"in `{model_class}.forward` and have been ignored: {', '.join(ignored)}. If "
            f"{', '.join(ignored)} are not expected by `{model_class}.forward`,  you can safely "
            f"ignore this message."
        )
    return _core.Examples(
        to_arrow(dataset, keep),
        label,
        per_token_labels=per_token_labels,
        special_tokens_mask=special,
    )
