"""Where a training step's time goes: the torch profiler around train() of the same Trainer as
bench/compare.py's train_fp32 / train_bf16 rows (MiniLM), modernbert_fp32 / modernbert_bf16
rows (`--model modernbert`) or deberta_fp32_128 / deberta_bf16_128 rows (`--model deberta`;
`--length 256` for the 256-token rows), for transformers and ferrotune, each in a fresh
process. Prints one table per precision: self CPU milliseconds per step of each libtorch
operation, the two libraries side by side, largest first (work done in ferrotune's Rust or C++
outside libtorch operations shows up only in the step's total).

    python bench/step_profile.py                    # fp32 and bf16, 12 steps each
    python bench/step_profile.py --precision bf16 --steps 20 --top 30
    python bench/step_profile.py --model modernbert --precision fp32 --steps 3
    python bench/step_profile.py --model deberta --precision bf16 --steps 3 --length 128
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402  (bench/compare.py: the same data, model and arguments)

MODELS = {
    "minilm": lambda: compare.MINILM,
    "modernbert": compare.modernbert_dir,
    "deberta": compare.deberta_dir,
}
TITLES = {
    "minilm": "MiniLM",
    "modernbert": "ModernBERT-base shape",
    "deberta": "deberta-v3-base shape",
}


def worker(library: str, model: str, bf16: bool, steps: int, length: int) -> dict:
    """Self CPU ms per step of each operation, and the step's wall time, of one library."""
    compare.lib(library)  # ferrotune is imported before torch, as its users do
    import time

    import torch
    from torch.profiler import ProfilerActivity, profile

    texts, labels = compare.tweets(16 * steps)
    folder = MODELS[model]()
    if model == "deberta":  # rows of exactly `length` tokens, as compare.work_deberta
        texts = [(t + " ") * 12 for t in texts]
        data, tokenizer = compare.dataset(library, texts, labels, folder, max_length=length)
    else:
        data, tokenizer = compare.dataset(library, texts, labels, folder)
    t = compare.trainer(library, folder, data, tokenizer, bf16=bf16, steps=steps)
    t.train()  # warms up the allocator, the kernels' caches and the thread pool
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        t.train()
        wall = time.perf_counter() - start
    ops: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith("aten::") or event.key.startswith("ferrotune"):
            ops[event.key] = ops.get(event.key, 0.0) + event.self_cpu_time_total / 1000 / steps
    del torch
    return {"step_ms": wall * 1000 / steps, "ops": ops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="minilm")
    parser.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--top", type=int, default=22)
    parser.add_argument("--length", type=int, default=128, help="deberta's tokens per row")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        library, precision = args.worker
        bf16 = precision == "bf16"
        print(json.dumps(worker(library, args.model, bf16, args.steps, args.length)))
        return
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    for precision in precisions:
        results = {}
        for library in compare.LIBRARIES:
            command = [sys.executable, __file__, "--steps", str(args.steps), "--model", args.model]
            command += ["--length", str(args.length)]
            command += ["--worker", library, precision]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[library] = json.loads(out.strip().splitlines()[-1])
        names = set().union(*(r["ops"] for r in results.values()))
        rows = sorted(names, key=lambda n: -max(r["ops"].get(n, 0.0) for r in results.values()))
        title = TITLES[args.model]
        if args.model == "deberta":
            title += f", {args.length} tokens"
        print(f"\n{title}, batch 16, {precision}: milliseconds per training step\n")
        print("| operation | " + " | ".join(compare.LIBRARIES) + " |")
        print("| --- |" + " ---: |" * len(compare.LIBRARIES))
        for name in rows[: args.top]:
            cells = [f"{results[lib]['ops'].get(name, 0.0):.1f}" for lib in compare.LIBRARIES]
            print(f"| `{name}` | " + " | ".join(cells) + " |")
        rest = [
            sum(v for n, v in results[lib]["ops"].items() if n not in rows[: args.top])
            for lib in compare.LIBRARIES
        ]
        print("| the other operations | " + " | ".join(f"{v:.1f}" for v in rest) + " |")
        steps = [f"**{results[lib]['step_ms']:.0f}**" for lib in compare.LIBRARIES]
        print("| **the whole step (wall)** | " + " | ".join(steps) + " |")


if __name__ == "__main__":
    main()
