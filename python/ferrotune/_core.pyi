"""Type stubs of the native module ferrotune._core (built from src/py/)."""

from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any

import torch

__version__: str
TORCH_VERSION: str

class FerrotuneError(Exception):
    """Raised by ferrotune for failures that no built-in Python exception describes."""

def echo_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """Passes a torch.Tensor to Rust and back: the same storage, no copy."""

def cuda_is_available() -> bool:
    """Whether libtorch, as seen from Rust, can use a CUDA device."""

def cuda_device_count() -> int:
    """The number of CUDA devices libtorch sees from Rust."""

def read_json(path: str | PathLike[str]) -> Any:
    """Reads a JSON file; FileNotFoundError or ValueError name the file."""

def parallelism_enabled() -> bool:
    """Whether native work runs in parallel (off in a child forked after parallel work)."""

def set_parallelism(enabled: bool) -> None:
    """Turns native parallelism on or off for this process."""

SUPPORTED_MODEL_TYPES: list[str]
# (model_type, transformers class name, base_model_prefix) of each supported architecture.
MODEL_CLASSES: list[tuple[str, str, str, str]]  # (model_type, task, class name, prefix)
# transformers' SPECIAL_TOKENS_ATTRIBUTES, in its order.
SPECIAL_TOKEN_NAMES: list[str]
# The names of transformers' `lr_scheduler_type`, `train_sampling_strategy` and
# `config.problem_type` values that ferrotune supports.
SCHEDULER_TYPES: list[str]
SAMPLING_STRATEGIES: list[str]
PROBLEM_TYPES: list[str]

def warmup_steps(warmup_steps: float, total_steps: int) -> int:
    """Warmup steps of a run: `warmup_steps` >= 1 is a number of steps, below 1 a ratio."""

def check_mixed_precision(bf16: bool, fp16: bool) -> None:
    """Raises ValueError when both fp16 and bf16 are set."""

def check_columns(columns: list[str], what: str) -> None:
    """Raises ValueError when a table with `columns` (`what`: "train set", ...) has no
    `input_ids` column."""

def check_labeling(labeling: dict[str, Any]) -> None:
    """ValueError for bad collator settings (`Labeling`, src/train/data.rs), with transformers'
    messages."""

def complete_config(config_json: str) -> str:
    """A config (JSON) with its model type's defaults filled in; NotImplementedError lists the
    supported model types."""

class Model:
    """An encoder with a classification head, in Rust (src/models/); the Python API is
    `ferrotune.modeling.PreTrainedModelForSequenceClassification`, which wraps it."""

    def __init__(
        self, config_json: str, device: str = "cpu", task: str = "sequence-classification"
    ) -> None: ...
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        problem_type: str | None = None,
        train: bool = False,
    ) -> tuple[torch.Tensor | None, torch.Tensor, str | None]:
        """(loss, logits, problem type used); IndexError / ValueError name bad ids and labels."""
    def load_safetensors(
        self, paths: Sequence[str | PathLike[str]], ignore_mismatched_sizes: bool = False
    ) -> dict[str, list]:
        """Loads checkpoint files; returns missing_keys, unexpected_keys, mismatched_keys."""
    def load_state_dict(
        self, state_dict: Sequence[tuple[str, torch.Tensor]], ignore_mismatched_sizes: bool = False
    ) -> dict[str, list]: ...
    def state_dict(self) -> list[tuple[str, torch.Tensor]]:
        """Every variable by its transformers name, sharing storage with the model."""
    def named_parameters(self) -> list[tuple[str, torch.Tensor]]: ...
    def save_safetensors(self, path: str | PathLike[str]) -> None: ...
    def to_device(self, device: str) -> None: ...
    def set_dtype(self, dtype: str) -> None: ...
    @property
    def device(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    attention: str
    """"auto" (chosen per call), "explicit" (matmul-softmax) or "fused"
    (scaled_dot_product_attention)."""
    @property
    def num_labels(self) -> int: ...
    @property
    def class_name(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def tied(self) -> list[tuple[str, str]]: ...
    @property
    def input_names(self) -> list[str]:
        """The tokenized columns `forward` takes (`token_type_ids` only where the model has
        token type embeddings)."""

def accuracy(predictions: Any, references: Any) -> float: ...
def precision_recall_f1(
    predictions: Any, references: Any, average: str | None = "binary", pos_label: int = 1
) -> tuple[float, float, float]: ...
def matthews_correlation(predictions: Any, references: Any) -> float: ...
def confusion_matrix(predictions: Any, references: Any) -> tuple[list[int], Any]: ...
def seqeval(
    predictions: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    suffix: bool = False,
    strict: bool = False,
    scheme: str | None = None,
    zero_division: float = 0.0,
) -> tuple[list[tuple[str, float, float, float, int]], tuple[float, float, float, int], float]:
    """Entity-level (precision, recall, f1, number) per type and overall, and tag accuracy."""

class Details:
    """Each row's tokens, word ids and sequence ids, kept in Rust; read a row at a time
    (negative indices count from the end; IndexError beyond the rows)."""

    def __len__(self) -> int: ...
    def tokens(self, batch_index: int) -> list[str]: ...
    def word_ids(self, batch_index: int) -> list[int | None]: ...
    def sequence_ids(self, batch_index: int) -> list[int | None]: ...

class Examples:
    """Tokenized examples held in Rust (src/train/data.rs), read from an Arrow table."""

    def __init__(
        self,
        table: Any,
        label_column: str | None = None,
        per_token_labels: bool = False,
        special_tokens_mask: bool = False,
    ) -> None:
        """With `per_token_labels` the labels are one class id per token (a list column as long
        as input_ids); with `special_tokens_mask` that column is read where the table has it."""
    def __len__(self) -> int: ...
    def collate(
        self,
        pad_token_id: int | None = None,
        pad_left: bool = False,
        pad_to_multiple_of: int | None = None,
        labeling: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """All the examples as one batch, as a data collator makes it (`labeling`: the keys of
        `Labeling`, src/train/data.rs): input_ids, attention_mask, token_type_ids, labels."""
    def shard(self, index: int, count: int) -> Examples:
        """The rows index, index + count, ... (one process's part of an evaluation set)."""
    def check_labels(self, num_labels: int) -> None:
        """ValueError naming the first label outside [0, num_labels) or not finite."""
    @property
    def has_labels(self) -> bool: ...
    @property
    def label_kind(self) -> str | None: ...
    def lengths(self) -> list[int]: ...

class TrainingRun:
    """The training loop (src/train/run.rs): data, AdamW, schedule and position."""

    def __init__(
        self,
        model: Model,
        examples: Examples,
        config: Mapping[str, Any],
        previous: TrainingRun | None = None,
    ) -> None:
        """`config` has the keys of TrainingConfig (src/train/config.rs): batch_size,
        grad_accum, num_train_epochs, max_steps, drop_last, sampling, seed, learning_rate,
        lr_scheduler_type, warmup_steps, weight_decay, adam_beta1, adam_beta2, adam_epsilon,
        max_grad_norm, and optionally bf16, fp16, nan_inf_filter, problem_type,
        process_index, num_processes, pad_token_id, pad_left, pad_to_multiple_of. From
        `previous` (the model's last run) it takes the optimizer, when it belongs to `model`,
        and the float16 loss scale, as transformers' Trainer keeps them between train()s."""
    def train(self, trainer: Any) -> tuple[int, int, float, float, float]:
        """Runs the loop, calling trainer._event, trainer._log_save_evaluate,
        trainer._average_across_processes (with several processes) and
        trainer._non_finite_loss; returns (global_step, steps this call, total loss, epoch,
        total flos)."""
    @property
    def max_steps(self) -> int: ...
    @property
    def num_train_epochs(self) -> int: ...
    @property
    def updates_per_epoch(self) -> int: ...
    @property
    def num_train_samples(self) -> float: ...
    @property
    def warmup_steps(self) -> int: ...
    @property
    def problem_type(self) -> str | None: ...
    @property
    def scheduler_steps(self) -> int: ...
    @property
    def last_lr(self) -> float: ...
    def resume_at(
        self, global_step: int, epoch: float, total_flos: float, scheduler_steps: int | None = None
    ) -> None: ...
    def settle(self) -> None:
        """Brings every weight and the optimizer's state up to date during train() (the word
        embeddings' rows the steps did not reach take the steps they missed): call before
        reading them from a hook."""
    @property
    def scaler_state(self) -> dict[str, float | int] | None:
        """The float16 loss scaler as GradScaler.state_dict() lays it out; None without fp16."""
    def load_scaler_state(self, scale: float, growth_tracker: int) -> None: ...
    def optimizer_state(
        self,
    ) -> list[tuple[float, list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]]]: ...
    def load_optimizer_state(
        self, state: Sequence[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]
    ) -> None: ...

def predict(
    model: Model,
    examples: Examples,
    batch_size: int,
    pad_token_id: int | None = None,
    pad_left: bool = False,
    pad_to_multiple_of: int | None = None,
    bf16: bool = False,
    problem_type: str | None = None,
    nan_inf_filter: bool = True,
    fp16: bool = False,
    labeling: dict[str, Any] | None = None,
    preprocess: Any = None,
    loss_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, float | None]:
    """The evaluation loop: (logits, labels, sample-weighted mean loss); per-token logits and
    labels are padded across batches with -100; `preprocess(logits, labels)` runs per batch;
    `loss_only`: no logits or labels kept (an empty tensor and None)."""

class Tokenizer:
    """A Hugging Face tokenizer in Rust (src/tokenizer/): loading, parallel encoding, decoding.
    The Python API is `ferrotune.tokenization.PreTrainedTokenizerFast`, which wraps it."""

    @staticmethod
    def from_folder(path: str | PathLike[str], overrides: str | None = None) -> Tokenizer:
        """Loads tokenizer.json, or vocab.txt, or vocab.json + merges.txt, or the SentencePiece
        model (sentencepiece.bpe.model, spm.model), with the config files; `overrides`, a JSON
        object, wins over tokenizer_config.json. FileNotFoundError lists what was looked for,
        ValueError names a corrupt file."""
    @property
    def tokenizer_class(self) -> str:
        """The transformers class this tokenizer behaves as ("BertTokenizer", ...)."""
    @property
    def vocab_size(self) -> int:
        """The size of the base vocabulary, without added tokens."""
    def __len__(self) -> int:
        """The size of the vocabulary with the added tokens."""
    model_max_length: int | None
    """The longest input of the model; None when it has no limit. Set to any number: above
    transformers' LARGE_INTEGER (1e20) it means no limit; ValueError for a negative or
    fractional one."""
    padding_side: str
    """"right" or "left"; ValueError for anything else."""
    truncation_side: str
    """"right" or "left"; ValueError for anything else."""
    @property
    def model_input_names(self) -> list[str]: ...
    @property
    def clean_up_tokenization_spaces(self) -> bool: ...
    @property
    def special_tokens(self) -> dict[str, str]:
        """The named special tokens that are set ("pad_token": "[PAD]", ...), in order."""
    @property
    def extra_special_tokens(self) -> list[str]: ...
    @property
    def all_special_tokens(self) -> list[str]: ...
    def get_vocab(self) -> dict[str, int]: ...
    def convert_token_to_id(self, token: str) -> int | None:
        """The id of `token`, else the unknown token's id."""
    def id_to_token(self, id: int) -> str | None: ...
    def num_special_tokens_to_add(self, pair: bool) -> int: ...
    def encode(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str | None = None,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool = False,
        return_attention_mask: bool = True,
    ) -> dict[str, Any]:
        """Encodes texts (and pairs) in parallel without the GIL; values are lists of lists, or
        int64 tensors ("pt") / arrays ("np") of shape (rows, length) when the rows have one length.
        TypeError names a non-str item by index."""
    def encode_details(
        self,
        texts: Sequence[str] | Sequence[Sequence[str]],
        pairs: Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        is_split_into_words: bool = False,
        add_special_tokens: bool = True,
        padding: bool | str | None = None,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool = False,
        return_attention_mask: bool = True,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
    ) -> tuple[dict[str, Any], Details]:
        """`encode` through the full pipeline, also for rows of words (`is_split_into_words`):
        the columns (with `special_tokens_mask`, `offset_mapping`, `length` as asked) and the
        rows' tokens, word ids and sequence ids, padded as the ids."""
    def encode_column(
        self,
        column: Any,
        pairs: Any = None,
        *,
        is_split_into_words: bool = False,
        add_special_tokens: bool = True,
        padding: bool | str | None = None,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_token_type_ids: bool = False,
        return_attention_mask: bool = True,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_word_ids: bool = False,
    ) -> Any:
        """Encodes an Arrow string column (or a sequence of str; with `is_split_into_words`,
        of word lists) in parallel into an Arrow table (an object with `__arrow_c_stream__`):
        list<int32> input_ids, list<int8> token_type_ids and attention_mask, then as asked
        list<int8> special_tokens_mask, list<fixed_size_list<int32, 2>> offset_mapping and
        list<int32> word_ids (null for special and pad tokens)."""
    def tokenize(
        self, text: str, pair: str | None = None, add_special_tokens: bool = False
    ) -> list[str]: ...
    def decode(
        self,
        ids: Sequence[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str: ...
    def decode_batch(
        self,
        sequences: Sequence[Sequence[int]],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]: ...
    def save(self, directory: str | PathLike[str]) -> list[PathLike[str]]:
        """Writes tokenizer_config.json and tokenizer.json; returns their paths."""

def classify(
    model: Model,
    tokenizer: Tokenizer,
    texts: Any,
    pairs: Any = None,
    truncation: bool | str | None = None,
    max_length: int | None = None,
    batch_size: int | None = None,
    bf16: bool = False,
) -> torch.Tensor:
    """Logits [texts, num_labels] of `pipeline("text-classification")`: parallel tokenization,
    batches of similar lengths (a token budget when batch_size is None), input order kept.
    ValueError names an input longer than the model takes without truncation."""

def token_classification(
    model: Model,
    tokenizer: Tokenizer,
    texts: Any,
    labels: list[str],
    aggregation_strategy: str = "none",
    ignore_labels: list[str] = ["O"],
    batch_size: int | None = None,
    bf16: bool = False,
) -> tuple[list[list[dict[str, Any]]], bool]:
    """`pipeline("ner")`: the entities of each text as transformers' dicts, and whether the
    tokenizer's words came from the fallback heuristic (transformers warns then)."""

def token_entities(
    tokenizer: Tokenizer,
    texts: Any,
    logits: list[torch.Tensor],
    labels: list[str],
    aggregation_strategy: str = "none",
    ignore_labels: list[str] = ["O"],
) -> tuple[list[list[dict[str, Any]]], bool]:
    """`token_classification`'s results from logits computed elsewhere ([tokens, labels] per
    text, for the texts tokenized as the pipeline tokenizes them)."""

def fill_mask_targets(tokenizer: Tokenizer, targets: list[str]) -> tuple[list[int], list[str]]:
    """`FillMaskPipeline.get_target_ids`: sorted ids of the targets, and the warnings to log."""

def fill_mask(
    model: Model,
    tokenizer: Tokenizer,
    texts: Any,
    top_k: int = 5,
    targets: list[int] | None = None,
    truncation: bool | str | None = None,
    max_length: int | None = None,
    batch_size: int | None = None,
    bf16: bool = False,
) -> list[list[list[dict[str, Any]]]]:
    """`pipeline("fill-mask")`: per text, per mask, the top_k candidates as transformers' dicts
    (score, token, token_str, sequence). ValueError names an input without a mask token."""
