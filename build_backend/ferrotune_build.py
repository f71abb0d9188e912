"""The build backend: maturin, building against the torch that ferrotune will run with.

The native module links against the libtorch inside the torch package, and libtorch's C++ ABI
changes with every minor version, so a source build must use the torch minor that is installed
where ferrotune is going. pip builds in an isolated environment; this backend asks the target
environment's interpreter (`python -I`, which ignores the isolation's path) which torch it has,
and requires that version in the build environment. Where no supported torch is installed it
requires the range of `[project] dependencies`, so the newest supported torch is used for both.
With `pip install --no-build-isolation .` none of this runs: the installed torch is used as is.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import maturin
from maturin import (  # noqa: F401  (the rest of the PEP 517 interface, as maturin has it)
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

_INSTALLED_TORCH = (
    "import importlib.metadata as m\n"
    "try: print(m.version('torch'))\n"
    "except m.PackageNotFoundError: pass\n"
)


def _torch_requirement() -> str:
    """The torch of `[project] dependencies` (a version range), one line, written once there."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the build requirements bring tomli there
        import tomli as tomllib
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    (requirement,) = [r for r in pyproject["project"]["dependencies"] if r.startswith("torch")]
    return requirement


def _installed_torch() -> str | None:
    """The torch version of the environment being installed into, if it has one."""
    out = subprocess.run(
        [sys.executable, "-I", "-c", _INSTALLED_TORCH], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or None


def torch_for_build(requirement: str, installed: str | None) -> str:
    """`torch==<installed>` where the installed torch is in `requirement`'s range, else that."""
    if installed is None:
        return requirement
    from packaging.requirements import Requirement

    release = installed.split("+")[0]
    if not Requirement(requirement).specifier.contains(release, prereleases=True):
        return requirement
    return f"torch=={release}"


def get_requires_for_build_wheel(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    return [
        *maturin.get_requires_for_build_wheel(config_settings),
        torch_for_build(_torch_requirement(), _installed_torch()),
    ]


get_requires_for_build_editable = get_requires_for_build_wheel
