"""Type stubs of the native module ferrotune._core (built from src/py/)."""

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
