"""`AutoModelForSequenceClassification`, `AutoModelForTokenClassification`,
`AutoModelForMaskedLM` and the model classes: the transformers surface over the Rust model
(`_core.Model`), whose weights are torch tensors shared with Python."""

from __future__ import annotations

import json
import logging
import os
import re
from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from . import _core
from .configuration import CONFIG_NAME, PretrainedConfig
from .hub import ignore_remote_code, resolve_folder

logger = logging.getLogger(__name__)

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "pytorch_model.bin"


class ModelOutput(OrderedDict):
    """transformers' ModelOutput: a dict of the fields that are not None, also readable as
    attributes and by position (`outputs[0]`)."""

    def __init__(self, **fields: Any):
        super().__init__((k, v) for k, v in fields.items() if v is not None)
        object.__setattr__(self, "_fields", tuple(fields))
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self) -> tuple:
        return tuple(self.values())

    def __repr__(self) -> str:  # every field, None ones too, as the dataclass repr shows them
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._fields)
        return f"{type(self).__name__}({fields})"


class SequenceClassifierOutput(ModelOutput):
    """`loss` (with labels) and `logits` [batch, num_labels], as in transformers."""

    def __init__(
        self,
        loss: torch.Tensor | None = None,
        logits: torch.Tensor | None = None,
        hidden_states: Any = None,
        attentions: Any = None,
    ):
        super().__init__(
            loss=loss, logits=logits, hidden_states=hidden_states, attentions=attentions
        )


class TokenClassifierOutput(SequenceClassifierOutput):
    """`loss` (with labels) and `logits` [batch, length, num_labels], as in transformers."""


class MaskedLMOutput(SequenceClassifierOutput):
    """`loss` (with labels) and `logits` [batch, length, vocab_size], as in transformers."""


def _group_keys(keys: list[str]) -> list[str]:
    """`encoder.layer.{0, 1}.x` for keys that differ only in layer numbers (the load report)."""
    groups: dict[str, list[set[int]]] = defaultdict(list)
    for key in sorted(keys):
        pattern = re.sub(r"(?<=\.)\d+(?=\.|$)", "*", key)
        numbers = [int(n) for n in re.findall(r"(?<=\.)(\d+)(?=\.|$)", key)]
        slots = groups[pattern]
        for i, n in enumerate(numbers):
            if len(slots) <= i:
                slots.append(set())
            slots[i].add(n)
    out = []
    for pattern, slots in groups.items():
        parts = pattern.split("*")
        text = parts[0]
        for i, part in enumerate(parts[1:]):
            values = sorted(slots[i])
            text += (
                str(values[0]) if len(values) == 1 else "{" + ", ".join(map(str, values)) + "}"
            ) + part
        out.append(text)
    return out


def _load_report(class_name: str, source: str, info: dict) -> str | None:
    """The report transformers logs after loading (`utils/loading_report.py`), or None."""
    rows, notes = [], []
    if info["unexpected_keys"]:
        notes.append(
            "- UNEXPECTED:\tcan be ignored when loading from different task/architecture;"
            " not ok if you expect identical arch."
        )
        rows += [(k, "UNEXPECTED", "") for k in _group_keys(info["unexpected_keys"])]
    if info["missing_keys"]:
        notes.append(
            "- MISSING:\tthose params were newly initialized because missing from the "
            "checkpoint. Consider training on your downstream task."
        )
        rows += [(k, "MISSING", "") for k in _group_keys(info["missing_keys"])]
    if info["mismatched_keys"]:
        notes.append(
            "- MISMATCH:\tckpt weights were loaded, but they did not match the original "
            "empty weight shapes."
        )
        rows += [
            (k, "MISMATCH", f"Reinit due to size mismatch - ckpt: {list(a)} vs model:{list(b)}")
            for k, a, b in info["mismatched_keys"]
        ]
    if not rows:
        return None
    widths = [max(len(r[i]) for r in rows + [("Key", "Status", "")]) for i in range(3)]
    line = lambda r: " | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    table = "\n".join(
        [line(("Key", "Status", "")), "-+-".join("-" * w for w in widths)] + [line(r) for r in rows]
    )
    return f"{class_name} LOAD REPORT from: {source}\n{table}\n\nNotes:\n" + "\n".join(notes)


def _checkpoint_files(folder: Path) -> tuple[str, list[Path]]:
    """("safetensors" | "bin", files) for the weights in `folder`, as transformers looks for
    them: model.safetensors, then a sharded index, then pytorch_model.bin."""
    single = folder / SAFE_WEIGHTS_NAME
    if single.is_file():
        return "safetensors", [single]
    index = folder / SAFE_WEIGHTS_INDEX_NAME
    if index.is_file():
        weight_map = _core.read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index}: no 'weight_map' listing the shards")
        shards = [folder / name for name in sorted(set(weight_map.values()))]
        for shard in shards:
            if not shard.is_file():
                raise FileNotFoundError(2, f"shard listed in {index.name} is missing", str(shard))
        return "safetensors", shards
    binary = folder / WEIGHTS_NAME
    if binary.is_file():
        return "bin", [binary]
    raise FileNotFoundError(
        2,
        f"no model weights in {str(folder)!r}: looked for {SAFE_WEIGHTS_NAME}, "
        f"{SAFE_WEIGHTS_INDEX_NAME} and {WEIGHTS_NAME}",
        str(folder),
    )


def _unset_sizes(path: Path) -> list[str]:
    """The size keys that config.json leaves to the model type's defaults."""
    sizes = (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "intermediate_size",
        "max_position_embeddings",
        "type_vocab_size",
        "dim",
        "hidden_dim",
        "n_layers",
    )
    try:
        written = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(written, dict) or not isinstance(written.get("model_type"), str):
        return []
    defaults = json.loads(_core.complete_config(json.dumps({"model_type": written["model_type"]})))
    return [key for key in sizes if key in defaults and key not in written]


def _read_torch_bin(path: Path) -> list[tuple[str, torch.Tensor]]:
    # weights_only=True: a pickle from the hub must never run code.
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return [(k, v) for k, v in state.items() if isinstance(v, torch.Tensor)]


class PreTrainedModel:
    """An encoder with the head of its task, run by ferrotune's Rust core.

    Behaves as the transformers class of the same name: call it with the tokenizer's output
    (`model(**batch)`), switch `train()` / `eval()`, move it with `.to(...)`, save it with
    `save_pretrained`. Its parameters are torch tensors that share storage with the Rust model.
    """

    base_model_prefix = ""
    # The core's name of the task, and what calling the model returns.
    task = ""
    output_class: type = SequenceClassifierOutput

    def __init__(self, config: PretrainedConfig, *, device: str | torch.device = "cpu"):
        if not self.task:
            raise TypeError(
                "PreTrainedModel has no head; use AutoModelForSequenceClassification, "
                "AutoModelForTokenClassification or AutoModelForMaskedLM"
            )
        self.config = config
        self._model = _core.Model(config.to_json_string(), str(torch.device(device)), self.task)
        self.training = False

    # -- calling ---------------------------------------------------------------------------
    def __call__(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        token_type_ids: Any = None,
        position_ids: Any = None,
        labels: Any = None,
        inputs_embeds: Any = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> ModelOutput | tuple:
        if inputs_embeds is not None:
            raise NotImplementedError("inputs_embeds is not supported; pass input_ids")
        if input_ids is None:
            raise ValueError("You must specify input_ids")
        tensors = [
            None if t is None else torch.as_tensor(t)
            for t in (input_ids, attention_mask, token_type_ids, position_ids, labels)
        ]
        sequence = self.task == "sequence-classification"
        loss, logits, problem_type = self._model.forward(
            *tensors,
            problem_type=self.config.problem_type if sequence else None,
            train=self.training,
        )
        if problem_type is not None and self.config.problem_type is None:
            self.config.problem_type = problem_type  # inferred from the labels, as transformers
        if return_dict is False:
            return (logits,) if loss is None else (loss, logits)
        return self.output_class(loss=loss, logits=logits)

    forward = __call__

    # -- modes, devices, dtypes -------------------------------------------------------------
    def train(self, mode: bool = True) -> PreTrainedModel:
        self.training = bool(mode)
        return self

    def eval(self) -> PreTrainedModel:
        return self.train(False)

    @property
    def device(self) -> torch.device:
        return torch.device(self._model.device)

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self._model.dtype)

    def to(self, *args: Any, **kwargs: Any) -> PreTrainedModel:
        """`.to(device)`, `.to(dtype)` or both, as nn.Module.to."""
        device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for arg in args:
            if isinstance(arg, torch.dtype):
                dtype = arg
            elif isinstance(arg, (str, torch.device, int)):
                device = arg
            else:
                raise TypeError(f"to() takes a device or a dtype, got {type(arg).__name__}")
        if device is not None:
            device = (
                torch.device(device)
                if not isinstance(device, int)
                else torch.device("cuda", device)
            )
            if device.type == "cuda" and device.index is None:
                device = torch.device(
                    "cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0
                )
            self._model.to_device(str(device))
        if dtype is not None:
            self._model.set_dtype(str(dtype))
        return self

    def cpu(self) -> PreTrainedModel:
        return self.to("cpu")

    def cuda(self, device: int | None = None) -> PreTrainedModel:
        return self.to(torch.device("cuda", device) if device is not None else "cuda")

    def float(self) -> PreTrainedModel:
        return self.to(torch.float32)

    def half(self) -> PreTrainedModel:
        return self.to(torch.float16)

    def bfloat16(self) -> PreTrainedModel:
        return self.to(torch.bfloat16)

    # -- parameters ---------------------------------------------------------------------------
    def named_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        return iter(self._model.named_parameters())

    def parameters(self) -> Iterator[torch.Tensor]:
        return (t for _, t in self._model.named_parameters())

    def state_dict(self) -> OrderedDict[str, torch.Tensor]:
        """Every weight by name, the tied ones (a masked-LM decoder's) under both names, as in
        transformers."""
        state = OrderedDict(self._model.state_dict())
        for tied, variable in self._model.tied:
            state[tied] = state[variable]
        return state

    def load_state_dict(self, state_dict: dict[str, torch.Tensor], strict: bool = True) -> dict:
        """Copies `state_dict` into the model; with `strict`, missing or unexpected keys raise
        a RuntimeError as torch's does."""
        info = self._model.load_state_dict(list(state_dict.items()))
        if strict and (info["missing_keys"] or info["unexpected_keys"]):
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}: missing keys "
                f"{info['missing_keys']}, unexpected keys {info['unexpected_keys']}"
            )
        return info

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        named = self._model.named_parameters() if only_trainable else self._model.state_dict()
        return sum(
            t.numel() for name, t in named if not (exclude_embeddings and "embeddings." in name)
        )

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    @property
    def attention_implementation(self) -> str:
        """ "auto" (the faster per call, the default), "explicit" (matmul-softmax) or "fused"
        (libtorch's scaled_dot_product_attention); all give the same results. Set it also with
        transformers' names "eager" and "sdpa"."""
        return self._model.attention

    @attention_implementation.setter
    def attention_implementation(self, value: str) -> None:
        self._model.attention = value

    # -- saving and loading --------------------------------------------------------------------
    def save_pretrained(
        self, save_directory: str | os.PathLike, safe_serialization: bool = True, **kwargs: Any
    ) -> None:
        """Writes config.json and model.safetensors, which transformers loads."""
        if not safe_serialization:
            raise NotImplementedError("ferrotune saves safetensors only (safe_serialization=True)")
        folder = Path(save_directory)
        if folder.is_file():
            raise NotADirectoryError(f"{str(folder)!r} is a file; pass a folder to save into")
        folder.mkdir(parents=True, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        self.config.dtype = self._model.dtype
        self.config.save_pretrained(folder)
        self._model.save_safetensors(folder / SAFE_WEIGHTS_NAME)

    @classmethod
    def from_config(
        cls, config: PretrainedConfig, attn_implementation: str | None = None, **kwargs: Any
    ):
        """A model with fresh weights; `attn_implementation` as `attention_implementation`."""
        # The config has validated model_type.
        model_class = _CLASSES[config.model_type, cls.task or "sequence-classification"]
        if not issubclass(model_class, cls):
            raise ValueError(f"{cls.__name__} cannot be built from a {config.model_type!r} config")
        model = model_class(config, **kwargs)
        if attn_implementation is not None:
            model.attention_implementation = attn_implementation
        return model

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        config: PretrainedConfig | None = None,
        ignore_mismatched_sizes: bool = False,
        output_loading_info: bool = False,
        device: str | torch.device | None = None,
        device_map: Any = None,
        dtype: Any = None,
        torch_dtype: Any = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        attn_implementation: str | None = None,
        **config_kwargs: Any,
    ):
        """Loads config.json and the weights of a local folder or a hub id; `num_labels`,
        `id2label`, `label2id`, `problem_type` and other config keys may be overridden;
        `attn_implementation` as `attention_implementation`."""
        ignore_remote_code(trust_remote_code)
        folder = resolve_folder(
            pretrained_model_name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
        )
        if config is None:
            config = PretrainedConfig.from_pretrained(folder, **config_kwargs)
        elif config_kwargs:
            config = PretrainedConfig.from_dict(config.to_dict(), **config_kwargs)
        kind, files = _checkpoint_files(folder)
        device = (
            device
            if device is not None
            else (device_map if isinstance(device_map, (str, torch.device)) else "cpu")
        )
        model = cls.from_config(config, attn_implementation, device=device)
        try:
            if kind == "safetensors":
                info = model._model.load_safetensors(
                    [str(f) for f in files], ignore_mismatched_sizes
                )
            else:
                info = model._model.load_state_dict(
                    _read_torch_bin(files[0]), ignore_mismatched_sizes
                )
        except ValueError as e:
            unset = _unset_sizes(folder / CONFIG_NAME)
            if unset and "has shape" in str(e):
                raise ValueError(
                    f"{e}. {folder / CONFIG_NAME} does not set {', '.join(unset)}, so "
                    f"the defaults of the model type were used"
                ) from e
            raise
        dtype = dtype if dtype is not None else torch_dtype
        if dtype is not None and dtype != "auto":
            model.to(dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype)))
        report = _load_report(type(model).__name__, os.fspath(pretrained_model_name_or_path), info)
        if report:
            logger.warning(report)
        info["error_msgs"] = []
        model.eval()
        return (model, info) if output_loading_info else model

    # -- interop with transformers -------------------------------------------------------------
    @classmethod
    def from_transformers(cls, hf_model: Any, **kwargs: Any):
        """A ferrotune model with the weights and config of a transformers model object."""
        config = PretrainedConfig.from_dict(hf_model.config.to_dict())
        model = cls.from_config(config, device=kwargs.pop("device", hf_model.device), **kwargs)
        state = [(k, v.detach()) for k, v in hf_model.state_dict().items()]
        info = model._model.load_state_dict(state)
        if info["missing_keys"] or info["mismatched_keys"]:
            raise ValueError(
                f"{type(hf_model).__name__} does not match {type(model).__name__}: "
                f"missing {info['missing_keys']}, mismatched {info['mismatched_keys']}"
            )
        model.to(hf_model.dtype)
        return model.train(hf_model.training)

    def to_transformers(self) -> Any:
        """The equivalent transformers model (same config and weights), built in memory."""
        import transformers

        config = transformers.AutoConfig.for_model(**self.config.to_dict())
        hf_model = getattr(transformers, type(self).__name__)(config)
        hf_model.load_state_dict(
            {k: v.detach() for k, v in self.state_dict().items()}, strict=False
        )
        return hf_model.to(device=self.device, dtype=self.dtype).train(self.training)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model_type={self.config.model_type!r}, "
            f"num_labels={self.num_labels}, parameters={self.num_parameters():,}, "
            f"device={self._model.device}, dtype={self._model.dtype})"
        )


class PreTrainedModelForSequenceClassification(PreTrainedModel):
    """An encoder with a sequence-classification head: logits [batch, num_labels]."""

    task = "sequence-classification"
    output_class = SequenceClassifierOutput


class PreTrainedModelForTokenClassification(PreTrainedModel):
    """An encoder with a token-classification head (NER): logits [batch, length, num_labels]."""

    task = "token-classification"
    output_class = TokenClassifierOutput


class PreTrainedModelForMaskedLM(PreTrainedModel):
    """An encoder with its masked-language-model head: logits [batch, length, vocab_size]."""

    task = "masked-lm"
    output_class = MaskedLMOutput


_BASES = {
    base.task: base
    for base in (
        PreTrainedModelForSequenceClassification,
        PreTrainedModelForTokenClassification,
        PreTrainedModelForMaskedLM,
    )
}

# (model_type, task) -> the transformers class of that name, from the core's table.
_CLASSES = {
    (model_type, task): type(
        name,
        (_BASES[task],),
        {
            "base_model_prefix": prefix,
            "__module__": __name__,
            "__doc__": f"transformers' {name}, run by ferrotune.",
        },
    )
    for model_type, task, name, prefix in _core.MODEL_CLASSES
}
BertForSequenceClassification = _CLASSES["bert", "sequence-classification"]
RobertaForSequenceClassification = _CLASSES["roberta", "sequence-classification"]
XLMRobertaForSequenceClassification = _CLASSES["xlm-roberta", "sequence-classification"]
DistilBertForSequenceClassification = _CLASSES["distilbert", "sequence-classification"]
ElectraForSequenceClassification = _CLASSES["electra", "sequence-classification"]
ModernBertForSequenceClassification = _CLASSES["modernbert", "sequence-classification"]
DebertaV2ForSequenceClassification = _CLASSES["deberta-v2", "sequence-classification"]
BertForTokenClassification = _CLASSES["bert", "token-classification"]
RobertaForTokenClassification = _CLASSES["roberta", "token-classification"]
XLMRobertaForTokenClassification = _CLASSES["xlm-roberta", "token-classification"]
DistilBertForTokenClassification = _CLASSES["distilbert", "token-classification"]
ElectraForTokenClassification = _CLASSES["electra", "token-classification"]
ModernBertForTokenClassification = _CLASSES["modernbert", "token-classification"]
DebertaV2ForTokenClassification = _CLASSES["deberta-v2", "token-classification"]
BertForMaskedLM = _CLASSES["bert", "masked-lm"]
RobertaForMaskedLM = _CLASSES["roberta", "masked-lm"]
XLMRobertaForMaskedLM = _CLASSES["xlm-roberta", "masked-lm"]
DistilBertForMaskedLM = _CLASSES["distilbert", "masked-lm"]
ElectraForMaskedLM = _CLASSES["electra", "masked-lm"]
ModernBertForMaskedLM = _CLASSES["modernbert", "masked-lm"]
DebertaV2ForMaskedLM = _CLASSES["deberta-v2", "masked-lm"]


class _AutoModel:
    """`AutoModelFor<Task>.from_pretrained(path_or_id, ...)` picks the class for the config's
    model_type, as in transformers."""

    _base: type[PreTrainedModel] = PreTrainedModel

    def __init__(self) -> None:
        name = type(self).__name__
        raise OSError(
            f"{name} is not instantiated directly; use {name}.from_pretrained(path_or_id)"
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any):
        if hasattr(pretrained_model_name_or_path, "state_dict") and hasattr(
            pretrained_model_name_or_path, "config"
        ):
            return cls._base.from_transformers(pretrained_model_name_or_path, **kwargs)
        return cls._base.from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs: Any):
        return cls._base.from_config(config, **kwargs)


class AutoModelForSequenceClassification(_AutoModel):
    _base = PreTrainedModelForSequenceClassification


class AutoModelForTokenClassification(_AutoModel):
    _base = PreTrainedModelForTokenClassification


class AutoModelForMaskedLM(_AutoModel):
    _base = PreTrainedModelForMaskedLM
