"""Type stubs of the native module ferrotune._core (built from src/py/)."""

from collections.abc import Sequence
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

class Tokenizer:
    """A Hugging Face tokenizer in Rust (src/tokenizer/): loading, parallel encoding, decoding.
    The Python API is `ferrotune.tokenization.PreTrainedTokenizerFast`, which wraps it."""

    @staticmethod
    def from_folder(path: str | PathLike[str]) -> Tokenizer:
        """Loads tokenizer.json, or vocab.txt, or vocab.json + merges.txt, with the config files;
        FileNotFoundError lists what was looked for, ValueError names a corrupt file."""
    @property
    def tokenizer_class(self) -> str:
        """The transformers class this tokenizer behaves as ("BertTokenizer", ...)."""
    @property
    def vocab_size(self) -> int:
        """The size of the base vocabulary, without added tokens."""
    def __len__(self) -> int:
        """The size of the vocabulary with the added tokens."""
    model_max_length: int | None
    """The longest input of the model; None when it has no limit."""
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
    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None, *,
               add_special_tokens: bool = True, padding: bool | str | None = None,
               truncation: bool | str | None = None, max_length: int | None = None,
               pad_to_multiple_of: int | None = None, padding_side: str | None = None,
               return_tensors: str | None = None, return_token_type_ids: bool = False,
               return_attention_mask: bool = True) -> dict[str, Any]:
        """Encodes texts (and pairs) in parallel without the GIL; values are lists of lists, or
        int64 tensors ("pt") / arrays ("np") of shape (rows, length) when the rows have one length.
        TypeError names a non-str item by index."""
    def encode_column(self, column: Any, pairs: Any = None, *, add_special_tokens: bool = True,
                      padding: bool | str | None = None, truncation: bool | str | None = None,
                      max_length: int | None = None, pad_to_multiple_of: int | None = None,
                      padding_side: str | None = None, return_token_type_ids: bool = False,
                      return_attention_mask: bool = True) -> Any:
        """Encodes an Arrow string column (or a sequence of str) in parallel into an Arrow table
        (an object with `__arrow_c_stream__`): list<int32> input_ids, list<int8> token_type_ids
        and attention_mask."""
    def tokenize(self, text: str, pair: str | None = None,
                 add_special_tokens: bool = False) -> list[str]: ...
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str: ...
    def decode_batch(self, sequences: Sequence[Sequence[int]], skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]: ...
    def save(self, directory: str | PathLike[str]) -> list[PathLike[str]]:
        """Writes tokenizer_config.json and tokenizer.json; returns their paths."""
