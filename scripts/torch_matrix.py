"""Runs the model, Trainer-parity, pipeline and smoke tests on every supported torch minor,
from the wheel that scripts/build_wheels.py made, and prints a table.

    python scripts/build_wheels.py && python scripts/torch_matrix.py [--torch 2.11 2.15]

Each minor gets its own environment (`.build/matrix2.N`, made once: that torch, the wheel and
the test dependencies); the tests run from a copy outside the checkout, so that what is tested
is the installed wheel, with no Rust involved.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python" / "ferrotune"))
from _native import SUPPORTED_TORCH  # noqa: E402 (found through the path above)

TESTS = ["test_models.py", "test_trainer.py", "test_pipeline.py", "test_smoke.py"]


def matrix_env(envs: Path, minor: str, wheel: Path) -> Path:
    env = envs / f"matrix{minor}"
    python = env / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    # The wheel's own test extra brings the test dependencies; then this build of the wheel.
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"torch=={minor}.*", f"{wheel}[test]"],
        check=True,
    )
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", str(wheel)],
        check=True,
    )
    return python


def counts(summary: str) -> dict[str, int]:
    """{'passed': 40, 'failed': 1, ...} from pytest's closing line."""
    return {
        word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", summary)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch", nargs="+", default=list(SUPPORTED_TORCH), metavar="MINOR")
    parser.add_argument("--wheel", type=Path, help="default: the newest wheel in dist/")
    parser.add_argument("--envs", type=Path, default=ROOT / ".build")
    args = parser.parse_args()
    wheel = args.wheel or max(
        (ROOT / "dist").glob("ferrotune-*.whl"), key=lambda p: p.stat().st_mtime
    )
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        tests = Path(scratch, "tests")
        tests.mkdir()
        for name in ["conftest.py", *TESTS]:
            shutil.copy(ROOT / "tests" / name, tests / name)
        for minor in args.torch:
            python = matrix_env(args.envs, minor, wheel)
            version = subprocess.run(
                [str(python), "-c", "import torch; print(torch.__version__)"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            row = [minor, version]
            for name in TESTS:
                start = time.perf_counter()
                run = subprocess.run(
                    [
                        str(python),
                        "-m",
                        "pytest",
                        "-q",
                        "-p",
                        "no:cacheprovider",
                        str(tests / name),
                    ],
                    capture_output=True,
                    text=True,
                    cwd=scratch,
                    check=False,
                )
                found = counts(run.stdout.strip().splitlines()[-1] if run.stdout else "")
                failed = found.get("failed", 0) + found.get("error", 0) + found.get("errors", 0)
                if run.returncode not in (0, 1) or (run.returncode == 1 and not failed):
                    row.append(f"crashed (exit {run.returncode})")
                    print(run.stdout[-3000:], run.stderr[-3000:], sep="\n")
                else:
                    row.append(
                        f"{found.get('passed', 0)} passed"
                        + (f", {failed} failed" if failed else "")
                    )
                    if failed:
                        print(run.stdout[-5000:])
                print(
                    f"torch {version} {name}: {row[-1]} ({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
            rows.append(row)

    header = ["torch", "installed", *(n.removeprefix("test_").removesuffix(".py") for n in TESTS)]
    print(f"\nwheel: {wheel.name}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
