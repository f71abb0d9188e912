"""Loads the native module (`ferrotune._core`) that matches the installed torch.

libtorch has no stable C++ ABI between minor versions: a module built against one torch minor
fails to load on another, or loads and then aborts. So a wheel carries one native module per
supported minor, `_modules/torch2.N/_core.abi3.so`, and a source build one module beside this
file, built against the torch it found. The module is chosen from `torch.__version__` before it
is loaded, and its own record of the torch it was built against is checked before it is used;
anything that does not match is an ImportError that says what to do, never a crash.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

# The torch minors ferrotune supports; pyproject.toml's torch range and the vendored torch-sys
# (vendor/torch-sys/build.rs) say the same, as tests/test_install.py checks.
SUPPORTED_TORCH = ("2.11", "2.12", "2.13", "2.14", "2.15")
TORCH_REQUIREMENT = "torch>=2.11,<2.16"

SOURCE_BUILD = (
    "pip install maturin && pip install --no-build-isolation --no-binary ferrotune ferrotune "
    "(or `pip install --no-build-isolation .` in a ferrotune checkout; needs a Rust toolchain "
    "and takes 6 to 10 minutes)"
)

PACKAGE = Path(__file__).parent
# The wheel's folder of per-minor modules, inside the package.
MODULES = "_modules"


def torch_minor(version: str) -> str:
    """'2.13' of '2.13.0+cu130'."""
    return ".".join(version.split("+")[0].split(".")[:2])


def module_files(folder: Path) -> list[Path]:
    """The native `_core` module files in `folder`, by this interpreter's extension suffixes."""
    return [
        folder / f"_core{suffix}"
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if (folder / f"_core{suffix}").is_file()
    ]


def wheel_minors() -> list[str]:
    """The torch minors this installation has a per-minor native module for."""
    folders = sorted((PACKAGE / MODULES).glob("torch*"))
    return [f.name.removeprefix("torch") for f in folders if module_files(f)]


def choose(installed: str) -> Path:
    """The native module file for torch `installed`, or an ImportError saying what to do."""
    minor = torch_minor(installed)
    supported = f"{SUPPORTED_TORCH[0]} to {SUPPORTED_TORCH[-1]}"
    if minor not in SUPPORTED_TORCH:
        raise ImportError(
            f"ferrotune supports torch {supported}, but torch {installed} is installed. "
            f"Install a supported torch: pip install '{TORCH_REQUIREMENT}'"
        )
    files = module_files(PACKAGE / MODULES / f"torch{minor}") or module_files(PACKAGE)
    if not files:
        built = ", ".join(wheel_minors()) or "none"
        raise ImportError(
            f"this ferrotune installation has no native module for torch {minor} (torch "
            f"{installed} is installed; it has modules for: {built}). Install a torch it has, "
            f"or build ferrotune from source against this one: {SOURCE_BUILD}"
        )
    return files[0]


def load(installed: str) -> ModuleType:
    """Loads the module for torch `installed` as `ferrotune._core` and checks its torch."""
    path = choose(installed)
    spec = importlib.util.spec_from_file_location("ferrotune._core", path)
    assert spec is not None and spec.loader is not None
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError as e:  # e.g. an undefined libtorch symbol: built for another torch
        raise ImportError(
            f"ferrotune's native module {path} does not load with torch {installed} ({e}). "
            f"Reinstall ferrotune for this torch, or build it from source: {SOURCE_BUILD}"
        ) from e
    if torch_minor(module.TORCH_VERSION) != torch_minor(installed):
        raise ImportError(
            f"ferrotune's native module {path} was built against torch {module.TORCH_VERSION}, "
            f"but torch {installed} is installed; its libtorch is not compatible. Install torch "
            f"{torch_minor(module.TORCH_VERSION)}.x (pip install "
            f"'torch=={torch_minor(module.TORCH_VERSION)}.*'), or rebuild ferrotune against "
            f"this torch: {SOURCE_BUILD}"
        )
    sys.modules["ferrotune._core"] = module
    return module
