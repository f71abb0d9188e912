"""ferrotune on a shared CPU: its work inside a step runs on torch's own threads, as many as
`torch.get_num_threads()`, and torch's OpenMP threads spin only briefly before they sleep
(python/ferrotune/_openmp.py). The speed under load is measured by `bench/compare.py --load`."""

import os
import subprocess
import sys

import ferrotune
import pytest
import torch
import transformers
from ferrotune import _openmp


def spin_count_after_import(before: str = "", **env: str) -> str:
    """GOMP_SPINCOUNT in a fresh interpreter after `before` and `import ferrotune`."""
    environ = {k: v for k, v in os.environ.items() if k not in _openmp.SETTINGS}
    code = f"{before}\nimport os, ferrotune\nprint(os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=environ | env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_the_spin_count_is_set_before_torch_loads_openmp():
    assert spin_count_after_import() == _openmp.SPIN_COUNT


def test_an_openmp_runtime_already_loaded_is_left_alone():
    assert spin_count_after_import("import torch") == "None"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [("GOMP_SPINCOUNT", "7", "7"), ("OMP_WAIT_POLICY", "ACTIVE", "None")],
)
def test_the_users_own_openmp_setting_wins(name, value, expected):
    assert spin_count_after_import(**{name: value}) == expected


def test_dropout_masks_do_not_depend_on_the_threads(tmp_path):
    # Large enough that each dropout spans several independently seeded blocks of the mask.
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=99,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_dropout_prob=0.5,
        attention_probs_dropout_prob=0.5,
    )
    transformers.BertForSequenceClassification(config).save_pretrained(tmp_path)
    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    ids = torch.randint(5, 99, (8, 128))
    threads = torch.get_num_threads()
    runs = []
    try:
        model.train()
        for n, parallel in [(1, True), (2, True), (3, True), (2, False)]:
            torch.set_num_threads(n)
            ferrotune._core.set_parallelism(parallel)
            torch.manual_seed(7)
            with torch.no_grad():
                runs.append(model(input_ids=ids).logits)
    finally:
        torch.set_num_threads(threads)
        ferrotune._core.set_parallelism(True)
    for logits in runs[1:]:
        assert torch.equal(logits, runs[0])
    with torch.no_grad():
        assert not torch.allclose(model.eval()(input_ids=ids).logits, runs[0])
