"""Builds the ferrotune wheel: one native module per supported torch minor, no Rust needed to
install it.

    python scripts/build_wheels.py                   # every minor of SUPPORTED_TORCH
    python scripts/build_wheels.py --torch 2.11      # only some (CI's smoke wheel)

For each torch minor, a build environment (`.build/torch2.N`, made once, with that torch and
maturin) is used to build the module against that torch's libtorch. The builds share `target/`,
so the crates that do not depend on torch compile once. The modules go into one wheel as
`ferrotune/_modules/torch2.N/_core.abi3.so` (ferrotune/_native.py loads the one matching the
installed torch). The wheel is tagged with the glibc floor read from the modules' symbol
versions; libtorch is never bundled (the modules find it beside them, in the installed torch).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python" / "ferrotune"))
from _native import MODULES, SUPPORTED_TORCH  # noqa: E402 (found through the path above)

MODULE = re.compile(r"^ferrotune/_core\.[^/]*so$")


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in command), flush=True)
    return subprocess.run(command, check=True, **kwargs)


def build_env(envs: Path, minor: str) -> Path:
    """A virtual environment with torch `minor` and maturin (made once, then reused)."""
    env = envs / f"torch{minor}"
    python = env / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", str(env)])
        run([str(python), "-m", "pip", "install", "-q", f"torch=={minor}.*", "maturin>=1.9.4,<2"])
    version = subprocess.run(
        [str(python), "-c", "import torch; print(torch.__version__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not version.startswith(minor + "."):
        sys.exit(f"{env} has torch {version}, not {minor}: remove it and run again")
    return env


def build_module(env: Path, minor: str, scratch: Path) -> bytes:
    """The native module built against the torch of `env`, from a wheel maturin builds there."""
    out = scratch / minor
    environ = dict(
        os.environ,
        VIRTUAL_ENV=str(env),
        PYO3_PYTHON=str(env / "bin" / "python"),
        PATH=f"{env / 'bin'}{os.pathsep}{os.environ['PATH']}",
    )
    run(
        [
            str(env / "bin" / "maturin"),
            "build",
            "--release",
            "--out",
            str(out),
            "--interpreter",
            str(env / "bin" / "python"),
        ],
        cwd=ROOT,
        env=environ,
    )
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if MODULE.match(n)]
        return zf.read(name)


def objdump(module: bytes, option: str) -> str:
    """What `objdump <option>` prints of the module."""
    with tempfile.NamedTemporaryFile(suffix=".so") as f:
        f.write(module)
        f.flush()
        return subprocess.run(
            ["objdump", option, f.name], check=True, capture_output=True, text=True
        ).stdout


def symbol_versions(module: bytes, prefix: str) -> list[tuple[int, ...]]:
    """The versions of `prefix` (GLIBC_, GLIBCXX_) that the module's dynamic symbols need."""
    found = re.findall(rf"\b{prefix}_(\d+(?:\.\d+)*)\b", objdump(module, "-T"))
    return sorted({tuple(int(p) for p in v.split(".")) for v in found})


def needed_libraries(module: bytes) -> list[str]:
    """The shared libraries the module names (DT_NEEDED)."""
    return re.findall(r"NEEDED\s+(\S+)", objdump(module, "-p"))


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def assemble(
    base_wheel_bytes: dict[str, bytes], modules: dict[str, bytes], tag: str, out_dir: Path
) -> Path:
    """The wheel: maturin's files less its one module, plus one module per torch minor."""
    files = {
        n: d
        for n, d in base_wheel_bytes.items()
        if not MODULE.match(n) and not n.endswith((".dist-info/RECORD", ".dist-info/WHEEL"))
    }
    for minor, data in modules.items():
        files[f"ferrotune/{MODULES}/torch{minor}/_core.abi3.so"] = data
    dist_info = next(n.split("/")[0] for n in base_wheel_bytes if ".dist-info/" in n)
    wheel_meta = base_wheel_bytes[f"{dist_info}/WHEEL"].decode()
    wheel_meta = re.sub(r"(?m)^Tag: .*$", f"Tag: {tag}", wheel_meta)
    files[f"{dist_info}/WHEEL"] = wheel_meta.encode()
    record = f"{dist_info}/RECORD"
    lines = [record_line(n, d) for n, d in files.items()] + [f"{record},,"]
    files[record] = ("\n".join(lines) + "\n").encode()
    name, version = dist_info.removesuffix(".dist-info").split("-")
    path = out_dir / f"{name}-{version}-{tag}.whl"
    out_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, d in files.items():
            zf.writestr(n, d)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--torch",
        nargs="+",
        default=list(SUPPORTED_TORCH),
        metavar="MINOR",
        help="torch minors to build for (default: all supported)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument(
        "--envs", type=Path, default=ROOT / ".build", help="where the build environments are kept"
    )
    args = parser.parse_args()
    unknown = [m for m in args.torch if m not in SUPPORTED_TORCH]
    if unknown:
        sys.exit(
            f"not a supported torch minor: {', '.join(unknown)} "
            f"(supported: {', '.join(SUPPORTED_TORCH)})"
        )

    modules: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for minor in args.torch:
            start = time.perf_counter()
            modules[minor] = build_module(build_env(args.envs, minor), minor, Path(scratch))
            print(f"torch {minor}: built in {time.perf_counter() - start:.0f} s", flush=True)
        (base,) = Path(scratch, args.torch[0]).glob("*.whl")
        with zipfile.ZipFile(base) as zf:
            base_files = {n: zf.read(n) for n in zf.namelist()}

    glibc = max(max(symbol_versions(m, "GLIBC")) for m in modules.values())
    glibcxx = max(max(symbol_versions(m, "GLIBCXX")) for m in modules.values())
    libraries = sorted({lib for m in modules.values() for lib in needed_libraries(m)})
    tag = f"cp310-abi3-manylinux_{glibc[0]}_{glibc[1]}_x86_64"
    wheel = assemble(base_files, modules, tag, args.out)
    print(f"\n{wheel} ({wheel.stat().st_size / 2**20:.1f} MiB)")
    print(
        f"glibc floor: {'.'.join(map(str, glibc))}; "
        f"libstdc++ floor: GLIBCXX_{'.'.join(map(str, glibcxx))}"
    )
    print(f"needed libraries (libtorch from the installed torch): {', '.join(libraries)}")


if __name__ == "__main__":
    main()
