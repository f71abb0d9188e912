"""Installing next to the user's torch: one supported range, written the same everywhere; the
native module chosen by the installed torch; a clear ImportError for anything else; a source
build against the installed torch; and a wheel (scripts/build_wheels.py) that installs with no
Rust on the machine and passes the smoke tests."""

import importlib.machinery
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import ferrotune
import pytest
import tomllib
import torch
from ferrotune import _native
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def test_the_supported_torch_range_is_written_the_same_everywhere():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert _native.TORCH_REQUIREMENT in pyproject["project"]["dependencies"]
    specifier = Requirement(_native.TORCH_REQUIREMENT).specifier
    for minor in range(5, 25):
        assert specifier.contains(f"2.{minor}.1") == (f"2.{minor}" in _native.SUPPORTED_TORCH)
    build_rs = (ROOT / "vendor" / "torch-sys" / "build.rs").read_text()
    first, last = re.search(r"TORCH_MINORS: .* = (\d+)..=(\d+);", build_rs).groups()
    assert _native.SUPPORTED_TORCH == tuple(f"2.{m}" for m in range(int(first), int(last) + 1))


def import_with_torch(tmp_path, version):
    """Imports ferrotune in a fresh interpreter where a stand-in torch of `version` shadows the
    real one (and loads the real one's libtorch, as another torch would load its own); returns
    what it printed (the ImportError's message, if any)."""
    fake = tmp_path / "torch"
    fake.mkdir()
    libtorch = Path(torch.__file__).parent / "lib" / "libtorch_python.so"
    (fake / "__init__.py").write_text(
        f"import ctypes\nctypes.CDLL({str(libtorch)!r}, ctypes.RTLD_GLOBAL)\n"
        f'__version__ = "{version}"\n'
    )
    code = textwrap.dedent("""
        try:
            import ferrotune
        except ImportError as e:
            print("ImportError:", e)
    """)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr  # an ImportError, not a crash
    return out.stdout


@pytest.mark.parametrize("version", ["2.10.2+cpu", "2.16.0", "1.13.1"])
def test_a_torch_outside_the_range_is_an_import_error_saying_what_to_install(tmp_path, version):
    out = import_with_torch(tmp_path, version)
    assert (
        f"ImportError: ferrotune supports torch 2.11 to 2.15, but torch {version} is "
        f"installed. Install a supported torch: pip install 'torch>=2.11,<2.16'" in out
    )


def test_a_module_built_for_another_torch_is_refused_before_use(tmp_path):
    # The module here was built against the installed torch; claim another supported minor.
    built = torch.__version__
    other = "2.12.1+cpu" if _native.torch_minor(built) != "2.12" else "2.13.0+cpu"
    out = import_with_torch(tmp_path, other)
    assert f"was built against torch {built}, but torch {other} is installed" in out
    assert "pip install --no-build-isolation" in out


def test_the_module_for_the_installed_minor_is_chosen_and_a_missing_one_named(
    tmp_path, monkeypatch
):
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for minor in ["2.11", "2.14"]:
        (tmp_path / _native.MODULES / f"torch{minor}").mkdir(parents=True)
        (tmp_path / _native.MODULES / f"torch{minor}" / f"_core{suffix}").write_bytes(b"")
    monkeypatch.setattr(_native, "PACKAGE", tmp_path)
    chosen = _native.choose("2.14.0+cu130")
    assert chosen == tmp_path / _native.MODULES / "torch2.14" / f"_core{suffix}"
    with pytest.raises(
        ImportError,
        match=r"no native module for torch 2\.13 \(torch 2\.13\.0 is "
        r"installed; it has modules for: 2\.11, 2\.14\)\. .*"
        r"pip install --no-build-isolation",
    ):
        _native.choose("2.13.0")
    # A source build (one module beside _native.py) serves the minors the wheel part lacks.
    (tmp_path / f"_core{suffix}").write_bytes(b"")
    assert _native.choose("2.13.0") == tmp_path / f"_core{suffix}"


def test_a_module_that_does_not_load_is_an_import_error_naming_it(tmp_path, monkeypatch):
    module = tmp_path / f"_core{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    module.write_bytes(b"not a shared library")
    monkeypatch.setattr(_native, "PACKAGE", tmp_path)
    monkeypatch.setitem(sys.modules, "ferrotune._core", ferrotune._core)
    with pytest.raises(
        ImportError,
        match=f"native module {re.escape(str(module))} does not load "
        f"with torch 2.15.0 .*no-build-isolation",
    ):
        _native.load("2.15.0")
    assert sys.modules["ferrotune._core"] is ferrotune._core


def test_the_build_backend_builds_against_the_installed_torch():
    sys.path.insert(0, str(ROOT / "build_backend"))
    try:
        import ferrotune_build as backend
    finally:
        sys.path.pop(0)
    assert backend._torch_requirement() == _native.TORCH_REQUIREMENT
    assert backend._installed_torch() == torch.__version__.split("+")[0]
    for installed, expected in [
        ("2.12.1+cu130", "torch==2.12.1"),
        ("2.15.0", "torch==2.15.0"),
        (None, _native.TORCH_REQUIREMENT),
        ("2.10.0", _native.TORCH_REQUIREMENT),
        ("2.16.0.dev20261101", _native.TORCH_REQUIREMENT),
    ]:
        assert backend.torch_for_build(_native.TORCH_REQUIREMENT, installed) == expected
    requires = backend.get_requires_for_build_wheel()
    assert f"torch=={torch.__version__.split('+')[0]}" in requires


@pytest.mark.slow
def test_a_source_build_without_torch_says_what_to_install(tmp_path):
    venv = tmp_path / "no-torch"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = dict(
        os.environ,
        VIRTUAL_ENV=str(venv),
        PYO3_PYTHON=str(venv / "bin" / "python"),
        CARGO_TARGET_DIR=str(tmp_path / "target"),
    )
    build = subprocess.run(
        ["cargo", "check", "--offline", "-p", "torch-sys"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert build.returncode != 0
    assert "could not import torch" in build.stderr
    assert "ModuleNotFoundError: No module named 'torch'" in build.stderr
    assert "pip install 'torch>=2.11,<2.16'" in build.stderr


def without_rust(path: str) -> str:
    """PATH less every folder that holds cargo or rustc."""
    return os.pathsep.join(
        p
        for p in path.split(os.pathsep)
        if not any(Path(p, tool).exists() for tool in ("cargo", "rustc"))
    )


@pytest.mark.slow
def test_the_wheel_installs_without_rust_and_passes_the_smoke(tmp_path):
    wheel = os.environ.get("FERROTUNE_WHEEL")
    if not wheel:
        pytest.skip("set FERROTUNE_WHEEL to a wheel built by scripts/build_wheels.py")
    with zipfile.ZipFile(wheel) as zf:
        minors = sorted(
            {
                m
                for n in zf.namelist()
                for m in re.findall(rf"^ferrotune/{_native.MODULES}/torch([\d.]+)/", n)
            }
        )
        assert not [n for n in zf.namelist() if re.search(r"lib(torch|c10)[^/]*\.so", n)]
    minor = os.environ.get("FERROTUNE_WHEEL_TORCH", minors[0])
    env = dict(os.environ, PATH=without_rust(os.environ["PATH"]))
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    assert shutil.which("cargo", path=env["PATH"]) is None
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    start = time.perf_counter()
    subprocess.run(
        [python, "-m", "pip", "install", "-q", wheel, f"torch=={minor}.*"],
        env=env,
        check=True,
        timeout=1800,
    )
    print(f"wheel installed with torch {minor} in {time.perf_counter() - start:.0f} s")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", f"{wheel}[test]"], env=env, check=True, timeout=1800
    )
    where = subprocess.run(
        [python, "-c", "import ferrotune; print(ferrotune._core.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert where.returncode == 0, where.stderr
    assert f"/site-packages/ferrotune/{_native.MODULES}/torch{minor}/" in where.stdout
    tests = tmp_path / "tests"  # outside the checkout, so that only the wheel is importable
    tests.mkdir()
    for name in ["conftest.py", "test_smoke.py"]:
        shutil.copy(ROOT / "tests" / name, tests / name)
    run = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=1800,
        check=False,
    )
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
