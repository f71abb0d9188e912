"""Tokenizers with the API of transformers (`AutoTokenizer`, `PreTrainedTokenizerFast`,
`BatchEncoding`), on ferrotune's Rust core (`ferrotune._core.Tokenizer`).

This module only maps transformers' arguments and return types; loading, encoding (in parallel,
without the GIL), padding, truncation and decoding happen in Rust.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import _core
from .hub import ignore_remote_code, resolve_folder

# transformers' VERY_LARGE_INTEGER (tokenization_utils_base.py): the model_max_length of a
# tokenizer without a limit.
VERY_LARGE_INTEGER = int(1e30)

# The files a tokenizer may need; a hub download fetches only these.
TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spm.model",
]

# transformers' `SPECIAL_TOKENS_ATTRIBUTES`, in its order.
SPECIAL_TOKENS_ATTRIBUTES = list(_core.SPECIAL_TOKEN_NAMES)


class BatchEncoding(dict):
    """The output of a tokenizer call: a dict of `input_ids`, `attention_mask`, ... that also
    reads as attributes (`enc.input_ids`), moves to a device with `.to(device)`, unpacks into a
    model with `model(**enc)`, and is a valid return value for `datasets.Dataset.map`."""

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        tensor_type: str | None = None,
        details: Any = None,
    ):
        super().__init__(data or {})
        # The tokens, word and sequence ids of each row (a tokenizer call gives them, computed
        # when first asked for); None for an encoding built by hand, as in transformers.
        self._details = details
        self.convert_to_tensors(tensor_type)

    def __getattr__(self, item: str) -> Any:
        if item.startswith("__") or item == "_details":
            raise AttributeError(item)
        try:
            return self[item]
        except KeyError:
            raise AttributeError(item) from None

    def __reduce__(self):
        details = self._row_details()
        if details is not None and not isinstance(details, dict):
            details = {
                key: [getattr(details, key)(i) for i in range(len(details))]
                for key in ("tokens", "word_ids", "sequence_ids")
            }
        return (BatchEncoding, (dict(self), None, details))

    @property
    def is_fast(self) -> bool:
        """Whether the encoding knows its tokens' words and sequences (a tokenizer call's does)."""
        return self._details is not None

    @property
    def n_sequences(self) -> int | None:
        """1 or 2: the sequences of the rows (None for an encoding built by hand)."""
        details = self._row_details()
        if details is None:
            return None
        rows = range(len(details["tokens"]) if isinstance(details, dict) else len(details))
        found = {s for i in rows for s in self._row("sequence_ids", "sequence_ids", i)}
        return len(found - {None}) or 1

    def _row_details(self) -> Any:
        """`_core.Details` (or, after pickling, a dict of rows); None for one built by hand."""
        if callable(self._details):
            self._details = self._details()
        return self._details

    def _row(self, key: str, method: str, batch_index: int) -> list:
        details = self._row_details()
        if details is None:
            raise ValueError(f"{method}() is not available when using Python based tokenizers")
        if isinstance(details, dict):
            return list(details[key][batch_index])
        return getattr(details, key)(batch_index)

    def tokens(self, batch_index: int = 0) -> list[str]:
        """The tokens of row `batch_index`, special and pad tokens included."""
        return self._row("tokens", "tokens", batch_index)

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token of row `batch_index`, the index of the word it comes from (the
        pre-tokenizer's words, or the given words with `is_split_into_words=True`); None for
        special and pad tokens."""
        return self._row("word_ids", "word_ids", batch_index)

    def words(self, batch_index: int = 0) -> list[int | None]:
        """`word_ids` (the older name)."""
        return self.word_ids(batch_index)

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token of row `batch_index`, 0 or 1 for the first or second sequence; None
        for special and pad tokens."""
        return self._row("sequence_ids", "sequence_ids", batch_index)

    def token_to_word(
        self, batch_or_token_index: int, token_index: int | None = None
    ) -> int | None:
        """The word of a token: `token_to_word(token)` in row 0, or `token_to_word(row, token)`."""
        batch, token = _row_and_token(batch_or_token_index, token_index)
        return self.word_ids(batch)[token]

    def token_to_sequence(
        self, batch_or_token_index: int, token_index: int | None = None
    ) -> int | None:
        """The sequence (0 or 1) of a token, as `token_to_word` takes its indices."""
        batch, token = _row_and_token(batch_or_token_index, token_index)
        return self.sequence_ids(batch)[token]

    def convert_to_tensors(self, tensor_type: str | None = None) -> BatchEncoding:
        """Turns list values into torch tensors ("pt") or numpy arrays ("np"), as transformers'
        `BatchEncoding.convert_to_tensors` does: ragged rows are an error for "pt" and an
        object array for "np"."""
        kind = _tensor_kind(tensor_type)
        if kind is None:
            return self
        for key, value in self.items():
            if kind == "pt" and not torch.is_tensor(value):
                try:
                    self[key] = torch.tensor(value, dtype=torch.int64)
                except (ValueError, TypeError) as e:
                    raise ValueError(
                        "Unable to create tensor, you should probably activate truncation and/or "
                        "padding with 'padding=True' 'truncation=True' to have batched tensors "
                        f"with the same length. Perhaps your features (`{key}` in this case) have "
                        "excessive nesting (inputs type `list` where type `int` is expected)."
                    ) from e
            elif kind == "np" and not isinstance(value, np.ndarray):
                lengths = {len(row) for row in value if isinstance(row, (list, tuple))}
                if len(lengths) > 1:
                    self[key] = np.asarray([np.asarray(row) for row in value], dtype=object)
                else:
                    self[key] = np.asarray(value, dtype=np.int64)
        return self

    def to(self, device: str | torch.device | int, *, non_blocking: bool = False) -> BatchEncoding:
        """Moves every tensor to `device`; returns this encoding."""
        for key, value in self.items():
            if torch.is_tensor(value):
                self[key] = value.to(device=device, non_blocking=non_blocking)
        return self


def _row_and_token(batch_or_token_index: int, token_index: int | None) -> tuple[int, int]:
    """transformers' (row, token) of `token_to_*(token)` (row 0) or `token_to_*(row, token)`."""
    if token_index is None:
        return 0, batch_or_token_index
    return batch_or_token_index, token_index


def _tensor_kind(return_tensors: Any) -> str | None:
    """ "pt", "np" or None from a `return_tensors` value (a str or transformers' TensorType)."""
    if return_tensors is None:
        return None
    kind = str(getattr(return_tensors, "value", return_tensors))
    if kind not in ("pt", "np"):
        raise ValueError(f"return_tensors={kind!r} is not supported: use 'pt' (torch) or 'np'")
    return kind


def _special_token_property(name: str, as_id: bool) -> property:
    def get(self):
        token = self._core.special_tokens.get(name)
        if token is None or not as_id:
            return token
        return self._core.convert_token_to_id(token)

    what = name.replace("_", " ")
    doc = f"The id of the {what}, or None." if as_id else f"The {what}, or None."
    return property(get, doc=doc)


def _core_attribute(name: str, doc: str) -> property:
    """An attribute the Rust core keeps (and checks), read and written through."""
    return property(
        lambda self: getattr(self._core, name),
        lambda self, value: setattr(self._core, name, value),
        doc=doc,
    )


def _as_ids(token_ids: Any) -> Any:
    """Token ids as Python ints (or lists of them) from ints, lists, tensors or numpy arrays."""
    if hasattr(token_ids, "tolist"):
        return token_ids.tolist()
    return token_ids


class PreTrainedTokenizerFast:
    """A Hugging Face tokenizer (BERT WordPiece, RoBERTa byte-level BPE, or any `tokenizer.json`)
    with the API of transformers' fast tokenizers, encoding in parallel in Rust.

    Beyond transformers, a whole text column is tokenized in Rust without Python lists:

        tokenizer.encode_column(column, text_pair=None, *, is_split_into_words=False,
                                add_special_tokens=True, padding=False, truncation=None,
                                max_length=None, pad_to_multiple_of=None, padding_side=None,
                                return_token_type_ids=None, return_attention_mask=None,
                                return_special_tokens_mask=False,
                                return_offsets_mapping=False,
                                return_word_ids=False) -> pyarrow.Table

    `column` is a pyarrow Array or ChunkedArray of strings, a `datasets` column
    (`dataset["text"]`), a pandas Series, or a list of str; with `is_split_into_words=True`, of
    word lists (`list<string>`, or lists of str). The table has a `list<int32>` column
    `input_ids` and `list<int8>` columns `token_type_ids` (where the model takes them) and
    `attention_mask`: the values and Arrow types `dataset.map(tokenizer, batched=True)` stores;
    then, as asked, `special_tokens_mask` (`list<int8>`), `offset_mapping`
    (`list<fixed_size_list<int32, 2>>`) and `word_ids` (`list<int32>`, null where
    `BatchEncoding.word_ids()` is None). Put them back beside the dataset's columns with
    `datasets.concatenate_datasets([dataset, datasets.Dataset(table)], axis=1)`. The same
    arguments mean what they mean in `__call__`, over the whole column as one batch.
    """

    is_fast = True

    def __init__(self, core: _core.Tokenizer, name_or_path: str = ""):
        self._core = core
        self.name_or_path = name_or_path

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        use_fast: bool = True,
        model_max_length: int | None = None,
        padding_side: str | None = None,
        truncation_side: str | None = None,
        trust_remote_code: bool = False,
        **init_kwargs: Any,
    ) -> PreTrainedTokenizerFast:
        """Loads the tokenizer of a local folder or of a Hugging Face hub id (through
        huggingface_hub's cache, which honours HF_HUB_OFFLINE). Other keyword arguments
        (`add_prefix_space=True`, `do_lower_case`, special tokens as strings, ...) win over the
        folder's `tokenizer_config.json`, as in transformers. `use_fast` is accepted for
        compatibility; ferrotune's tokenizers are all fast."""
        ignore_remote_code(trust_remote_code)
        for key, value in init_kwargs.items():
            if not isinstance(value, (str, int, float, bool, type(None), list)):
                raise TypeError(
                    f"from_pretrained({key}=...): ferrotune takes tokenizer settings as strings, "
                    f"numbers, booleans or lists, got {type(value).__name__}"
                )
        folder = resolve_folder(
            pretrained_model_name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            allow_patterns=TOKENIZER_FILES,
        )
        tokenizer = cls(
            _core.Tokenizer.from_folder(folder, json.dumps(init_kwargs) if init_kwargs else None),
            name_or_path=os.fspath(pretrained_model_name_or_path),
        )
        for name, value in [
            ("model_max_length", model_max_length),
            ("padding_side", padding_side),
            ("truncation_side", truncation_side),
        ]:
            if value is not None:
                setattr(tokenizer, name, value)
        return tokenizer

    # -- vocabulary and settings -------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """The size of the base vocabulary, without added tokens."""
        return self._core.vocab_size

    def __len__(self) -> int:
        """The size of the vocabulary with the added tokens."""
        return len(self._core)

    def get_vocab(self) -> dict[str, int]:
        return self._core.get_vocab()

    @property
    def vocab(self) -> dict[str, int]:
        return self.get_vocab()

    @property
    def model_max_length(self) -> int:
        """The longest input the model takes (`VERY_LARGE_INTEGER` when it has no limit)."""
        limit = self._core.model_max_length
        return VERY_LARGE_INTEGER if limit is None else limit

    @model_max_length.setter
    def model_max_length(self, value: int) -> None:
        self._core.model_max_length = value

    padding_side = _core_attribute("padding_side", "Where padding goes: 'right' or 'left'.")
    truncation_side = _core_attribute(
        "truncation_side", "Where truncation cuts: 'right' or 'left'."
    )

    @property
    def model_input_names(self) -> list[str]:
        return self._core.model_input_names

    @property
    def clean_up_tokenization_spaces(self) -> bool:
        """Whether `decode` removes spaces before punctuation by default."""
        return self._core.clean_up_tokenization_spaces

    @property
    def pad_token_type_id(self) -> int:
        return 0

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens that are set ("pad_token": "[PAD]", ...)."""
        return dict(self._core.special_tokens)

    @property
    def extra_special_tokens(self) -> list[str]:
        return self._core.extra_special_tokens

    additional_special_tokens = extra_special_tokens

    @property
    def all_special_tokens(self) -> list[str]:
        return self._core.all_special_tokens

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._core.num_special_tokens_to_add(pair)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | None | list[int | None]:
        """The id of each token; tokens outside the vocabulary get the unknown token's id."""
        if isinstance(tokens, str):
            return self._core.convert_token_to_id(tokens)
        return [self._core.convert_token_to_id(token) for token in tokens]

    def convert_ids_to_tokens(
        self, ids: int | list[int], skip_special_tokens: bool = False
    ) -> str | None | list[str | None]:
        """The token of each id (None for ids outside the vocabulary)."""
        ids = _as_ids(ids)
        if isinstance(ids, int):
            return self._core.id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._core.id_to_token(int(i)) for i in ids if int(i) not in skip]

    # -- encoding ----------------------------------------------------------------------------

    def __call__(
        self,
        text: str | list[str] | tuple[str, ...] | None = None,
        text_pair: str | list[str] | tuple[str, ...] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        is_split_into_words: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Tokenizes one text or a batch (list) of texts, optionally with their pairs, as
        transformers' tokenizer call does; a batch is encoded in parallel in Rust. With
        `is_split_into_words=True` a row is a list of words (a batch, a list of such lists)."""
        if text is None:
            raise ValueError("You need to specify either `text` or `text_target`.")
        if is_split_into_words:
            batched = (
                isinstance(text, (list, tuple))
                and bool(text)
                and isinstance(text[0], (list, tuple))
            )
        else:
            batched = isinstance(text, (list, tuple))
        if is_split_into_words and not isinstance(text, (list, tuple)):
            raise ValueError(
                "text input must be of type `str` (single example), `list[str]` (batch or single "
                "pretokenized example) or `list[list[str]]` (batch of pretokenized examples) or "
                "`list[tuple[list[str], list[str]]]` (batch of pretokenized sequence pairs)."
            )
        if batched:
            if isinstance(text_pair, str):
                raise TypeError(
                    "when tokenizing batches of text, `text_pair` must be a list or "
                    "tuple with the same length as `text`."
                )
            texts, pairs = text, text_pair
        elif isinstance(text, str) or is_split_into_words:
            # transformers: `[(text, text_pair)] if text_pair else [text]`: an empty pair is none.
            texts, pairs = [text], ([text_pair] if text_pair else None)
        else:
            raise ValueError(
                "text input must be of type `str` (single example), `list[str]` (batch or single "
                "pretokenized example) or `list[list[str]]` (batch of pretokenized examples) or "
                "`list[tuple[list[str], list[str]]]` (batch of pretokenized sequence pairs)."
            )
        kind = _tensor_kind(return_tensors)
        arguments = dict(
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_tensors=kind,
            **self._outputs(return_token_type_ids, return_attention_mask),
        )

        def details(**outputs) -> tuple[dict, dict]:
            """The full pipeline's columns and the rows' tokens, word and sequence ids."""
            return self._core.encode_details(
                texts, pairs, is_split_into_words=is_split_into_words, **arguments, **outputs
            )

        outputs = dict(
            return_special_tokens_mask=return_special_tokens_mask,
            return_offsets_mapping=return_offsets_mapping,
            return_length=return_length,
        )
        if is_split_into_words or any(outputs.values()):
            columns, known = details(**outputs)
        else:
            # The fast path; the details only if asked for later (word_ids(), ...).
            columns = self._core.encode(texts, pairs, **arguments)
            known = lambda: details()[1]  # noqa: E731
        if not batched and kind is None:
            # transformers: each row's list becomes the value; `length` ([n]) stays a list.
            columns = {
                key: value[0] if value and isinstance(value[0], list) else value
                for key, value in columns.items()
            }
        return BatchEncoding(columns, tensor_type=kind, details=known)

    def encode(
        self,
        text: str | list[str],
        text_pair: str | list[str] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
    ) -> Any:
        """The `input_ids` of a call with the same arguments."""
        return self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            padding_side=padding_side,
            return_tensors=return_tensors,
        )["input_ids"]

    def encode_column(
        self,
        column: Any,
        text_pair: Any = None,
        *,
        is_split_into_words: bool = False,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_word_ids: bool = False,
    ):
        """Tokenizes a whole text column in parallel in Rust into a `pyarrow.Table` (see the
        class docstring)."""
        try:
            import pyarrow as pa
        except ImportError as e:
            raise ImportError(
                "encode_column returns a pyarrow.Table and needs pyarrow: pip install pyarrow"
            ) from e
        table = self._core.encode_column(
            _text_column(column),
            None if text_pair is None else _text_column(text_pair),
            is_split_into_words=is_split_into_words,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            **self._outputs(return_token_type_ids, return_attention_mask),
            return_special_tokens_mask=return_special_tokens_mask,
            return_offsets_mapping=return_offsets_mapping,
            return_word_ids=return_word_ids,
        )
        return pa.table(table)

    def _outputs(self, token_type_ids: bool | None, attention_mask: bool | None) -> dict:
        """Which outputs to return: as asked, else those in `model_input_names`."""
        names = self.model_input_names
        return {
            "return_token_type_ids": (
                "token_type_ids" in names if token_type_ids is None else bool(token_type_ids)
            ),
            "return_attention_mask": (
                "attention_mask" in names if attention_mask is None else bool(attention_mask)
            ),
        }

    def tokenize(
        self, text: str, pair: str | None = None, add_special_tokens: bool = False
    ) -> list[str]:
        """The tokens of `text` (and `pair`)."""
        return self._core.tokenize(text, pair, add_special_tokens)

    # -- decoding ----------------------------------------------------------------------------

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str | list[str]:
        """The text of a sequence of ids, or the texts of a batch of sequences."""
        ids = _as_ids(token_ids)
        if isinstance(ids, int):
            ids = [ids]
        if ids and isinstance(ids[0], (list, tuple)):
            return self._core.decode_batch(ids, skip_special_tokens, clean_up_tokenization_spaces)
        return self._core.decode(ids, skip_special_tokens, clean_up_tokenization_spaces)

    def batch_decode(
        self,
        sequences: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        """The texts of a batch of sequences of ids."""
        sequences = _as_ids(sequences)
        if len(sequences) == 0:
            return []
        texts = self.decode(sequences, skip_special_tokens, clean_up_tokenization_spaces)
        return [texts] if isinstance(texts, str) else texts

    # -- saving ------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """Writes `tokenizer_config.json` and `tokenizer.json` into `save_directory`, for
        ferrotune's or transformers' `from_pretrained`; returns their paths."""
        if os.path.isfile(save_directory):
            raise NotADirectoryError(f"{os.fspath(save_directory)!r} is a file, not a directory")
        return tuple(os.fspath(path) for path in self._core.save(save_directory))

    def __getstate__(self) -> dict[str, Any]:
        """A pickle holds the files `save_pretrained` writes: `datasets` hashes the tokenizer of
        a `map` function this way (for its cache) and ships it to `num_proc` workers."""
        with tempfile.TemporaryDirectory() as folder:
            files = {Path(path).name: Path(path).read_bytes() for path in self._core.save(folder)}
        return {"files": files, "name_or_path": self.name_or_path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as folder:
            for name, contents in state["files"].items():
                Path(folder, name).write_bytes(contents)
            self._core = _core.Tokenizer.from_folder(folder)
        self.name_or_path = state["name_or_path"]

    def __repr__(self) -> str:
        return (
            f"{self._core.tokenizer_class}(name_or_path='{self.name_or_path}', "
            f"vocab_size={self.vocab_size}, model_max_length={self.model_max_length}, "
            f"padding_side='{self.padding_side}', truncation_side='{self.truncation_side}', "
            f"special_tokens={self.special_tokens_map})"
        )


# `bos_token`, `bos_token_id`, ... `mask_token_id`, read-only.
for _name in SPECIAL_TOKENS_ATTRIBUTES:
    setattr(PreTrainedTokenizerFast, _name, _special_token_property(_name, as_id=False))
    setattr(PreTrainedTokenizerFast, f"{_name}_id", _special_token_property(_name, as_id=True))
del _name


def _text_column(column: Any) -> Any:
    """What the Rust core reads a text column from: an object with the Arrow PyCapsule interface
    (pyarrow, pandas, polars), or a sequence of str. A `datasets` column becomes its Arrow
    column (in the dataset's row order); object-dtype columns (numpy, pandas) are read item by
    item, so that a non-string is reported with its index."""
    source, name = getattr(column, "source", None), getattr(column, "column_name", None)
    if name is not None and hasattr(source, "with_format"):
        return source.with_format("arrow")[name]
    if getattr(column, "dtype", None) == object:  # noqa: E721 (numpy's object dtype equals it)
        return list(column)
    if isinstance(column, np.ndarray):
        return column.tolist()
    return column


class AutoTokenizer:
    """transformers' `AutoTokenizer`: `AutoTokenizer.from_pretrained(path_or_id)` gives the
    tokenizer of a folder or hub id, as a `PreTrainedTokenizerFast`."""

    def __init__(self):
        raise OSError(
            "AutoTokenizer is designed to be instantiated using the "
            "`AutoTokenizer.from_pretrained(pretrained_model_name_or_path)` method."
        )

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> PreTrainedTokenizerFast:
        """See `PreTrainedTokenizerFast.from_pretrained`."""
        return PreTrainedTokenizerFast.from_pretrained(pretrained_model_name_or_path, **kwargs)
