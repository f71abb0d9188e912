"""`AutoConfig` and `PretrainedConfig`: config.json as transformers reads and writes it.

The defaults of each model type come from the Rust core (`_core.complete_config`), so they live
in one place; this class adds what transformers' `PreTrainedConfig` does for classification:
`num_labels` ⇄ `id2label`/`label2id` and `problem_type`.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from . import _core
from .hub import ignore_remote_code, resolve_folder

CONFIG_NAME = "config.json"
PROBLEM_TYPES = tuple(_core.PROBLEM_TYPES)

# Keys this class manages itself rather than storing as plain attributes.
_LABEL_KEYS = ("id2label", "label2id", "num_labels")


class PretrainedConfig:
    """A model configuration: every key of config.json is an attribute.

    >>> config = AutoConfig.from_pretrained("path/to/model", num_labels=3)
    >>> config.hidden_size, config.num_labels, config.id2label
    """

    def __init__(self, **kwargs: Any):
        if "model_type" not in kwargs:
            raise ValueError(
                f"a config needs a 'model_type'; ferrotune supports "
                f"{', '.join(_core.SUPPORTED_MODEL_TYPES)}"
            )
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        num_labels = kwargs.pop("num_labels", None)
        problem_type = kwargs.pop("problem_type", None)
        # Fill the model type's defaults and validate the model_type (NotImplementedError).
        completed = json.loads(_core.complete_config(json.dumps(kwargs)))
        self.__dict__.update(completed)
        if id2label is not None:
            self.id2label = id2label
            if label2id is not None:
                self.label2id = {str(k): int(v) for k, v in label2id.items()}
            if num_labels is not None and num_labels != len(self.id2label):
                self.num_labels = num_labels
        else:
            self.num_labels = 2 if num_labels is None else num_labels
            if label2id is not None and len(label2id) == self.num_labels:
                self.label2id = {str(k): int(v) for k, v in label2id.items()}
        self.problem_type = problem_type

    # -- labels, as transformers' PreTrainedConfig ---------------------------------------------
    @property
    def id2label(self) -> dict[int, str]:
        return self.__dict__["id2label"]

    @id2label.setter
    def id2label(self, value: dict) -> None:
        id2label = {int(k): str(v) for k, v in dict(value).items()}
        self.__dict__["id2label"] = id2label
        self.__dict__["label2id"] = {v: k for k, v in id2label.items()}

    @property
    def label2id(self) -> dict[str, int]:
        return self.__dict__["label2id"]

    @label2id.setter
    def label2id(self, value: dict) -> None:
        self.__dict__["label2id"] = dict(value)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"num_labels must be a positive integer, got {value!r}")
        if "id2label" not in self.__dict__ or len(self.id2label) != value:
            self.id2label = {i: f"LABEL_{i}" for i in range(value)}

    @property
    def problem_type(self) -> str | None:
        return self.__dict__["problem_type"]

    @problem_type.setter
    def problem_type(self, value: str | None) -> None:
        if value is not None and value not in PROBLEM_TYPES:
            raise ValueError(
                f"problem_type must be one of {', '.join(PROBLEM_TYPES)} or None, got {value!r}"
            )
        self.__dict__["problem_type"] = value

    # -- (de)serialization ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, config: dict, **kwargs: Any) -> PretrainedConfig:
        merged = dict(config)
        merged.update(kwargs)
        return cls(**merged)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **kwargs: Any) -> PretrainedConfig:
        config = _core.read_json(path)
        if not isinstance(config, dict):
            raise ValueError(f"{os.fspath(path)}: a config must be a JSON object")
        if "model_type" not in config:
            raise ValueError(
                f"{os.fspath(path)} has no 'model_type'; ferrotune supports "
                f"{', '.join(_core.SUPPORTED_MODEL_TYPES)}"
            )
        return cls.from_dict(config, **kwargs)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> PretrainedConfig:
        ignore_remote_code(kwargs.pop("trust_remote_code", False))
        hub_kwargs = {
            k: kwargs.pop(k)
            for k in ("revision", "cache_dir", "token", "local_files_only")
            if k in kwargs
        }
        folder = resolve_folder(pretrained_model_name_or_path, **hub_kwargs)
        path = folder / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                2, f"no {CONFIG_NAME} in {str(folder)!r} (looked for {str(path)!r})", str(path)
            )
        return cls.from_json_file(path, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = copy.deepcopy({k: v for k, v in self.__dict__.items() if not k.startswith("_")})
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        folder = Path(save_directory)
        if folder.is_file():
            raise NotADirectoryError(f"{str(folder)!r} is a file; pass a folder to save into")
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(folder / CONFIG_NAME, self.to_json_string())

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PretrainedConfig) and self.to_dict() == other.to_dict()

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not attributes: say which config lacks it.
        raise AttributeError(
            f"{type(self).__name__} ({self.__dict__.get('model_type')}) has no attribute {name!r}"
        )


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


class AutoConfig:
    """`AutoConfig.from_pretrained(path_or_id, **overrides)` as in transformers."""

    def __init__(self) -> None:
        raise OSError(
            "AutoConfig is not instantiated directly; use AutoConfig.from_pretrained(path_or_id)"
        )

    @staticmethod
    def from_pretrained(
        pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> PretrainedConfig:
        return PretrainedConfig.from_pretrained(pretrained_model_name_or_path, **kwargs)

    @staticmethod
    def for_model(model_type: str, **kwargs: Any) -> PretrainedConfig:
        return PretrainedConfig(model_type=model_type, **kwargs)
