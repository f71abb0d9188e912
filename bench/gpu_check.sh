#!/usr/bin/env bash
# The GPU checks: on a machine with an NVIDIA GPU and ferrotune installed with its test extras
# (pip install '.[test]', or the wheel next to the machine's CUDA torch 2.11 to 2.15), run the
# CUDA tests (models, Trainer in fp32/bf16/fp16, pipeline, a bf16 fine-tuning of MiniLM on the
# tweets), the tests whose device list grows with CUDA, and the benchmark against transformers
# on the same GPU.
# Writes bench/RESULTS-gpu.md and logs under ${OUT:-/tmp}.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print(torch.__version__, torch.cuda.get_device_name(0))"
python -m pytest -q tests/test_cuda.py tests/test_foundation.py tests/test_pipeline.py \
    2>&1 | tee "$out/gpu-tests.log"
python bench/compare.py --device cuda --quick --out bench/RESULTS-gpu.md \
    2>&1 | tee "$out/gpu-bench.log"
cp bench/RESULTS-gpu.md "$out/" 2>/dev/null || true
