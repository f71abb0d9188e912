"""The foundation: the package imports on the pip torch, the tensor bridge shares storage,
Rust errors arrive as the mapped Python exceptions, and forked children stay safe."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import ferrotune
import pytest
import tomllib
import torch
from ferrotune import _core

ROOT = Path(__file__).resolve().parents[1]


def test_version_matches_the_crate():
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert ferrotune.__version__ == cargo["package"]["version"]


def test_rust_sees_the_same_cuda_as_torch():
    assert _core.cuda_is_available() == torch.cuda.is_available()
    assert _core.cuda_device_count() == torch.cuda.device_count()


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64, torch.bool])
def test_tensor_round_trip_keeps_the_storage(device, dtype):
    tensor = torch.ones(3, 5, dtype=dtype, device=device)
    back = _core.echo_tensor(tensor)
    assert back.data_ptr() == tensor.data_ptr()
    assert back.dtype == dtype and back.device == tensor.device and back.shape == (3, 5)
    back[0, 0] = 0  # a write through the returned tensor is seen by the original
    assert tensor[0, 0].item() == 0


def test_round_trip_of_a_view_keeps_strides_and_autograd():
    base = torch.randn(4, 6, requires_grad=True)
    view = base.t()[1:]
    back = _core.echo_tensor(view)
    assert back.data_ptr() == view.data_ptr()
    assert back.stride() == view.stride() and back.shape == view.shape
    back.sum().backward()
    expected = torch.ones(4, 6)
    expected[:, 0] = 0  # column 0 of base is not in the view
    assert torch.equal(base.grad, expected)


@pytest.mark.parametrize("value", [3, "tensor", [1.0, 2.0], None])
def test_a_non_tensor_is_a_type_error_naming_the_type(value):
    with pytest.raises(TypeError, match=f"expected a torch.Tensor, got {type(value).__name__}"):
        _core.echo_tensor(value)


def test_read_json_keeps_types_and_key_order(tmp_path):
    config = {
        "model_type": "bert",
        "hidden_size": 384,
        "layer_norm_eps": 1e-12,
        "id2label": {"0": "NEGATIVE", "1": "POSITIVE"},
        "is_decoder": False,
        "pruned_heads": {},
        "architectures": ["BertModel"],
        "torch_dtype": None,
        "vocab_size": 2**63,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    loaded = _core.read_json(path)
    assert loaded == config
    assert list(loaded) == list(config)
    assert loaded["layer_norm_eps"] == 1e-12


def test_missing_file_is_file_not_found_with_the_filename(tmp_path):
    missing = tmp_path / "nowhere" / "config.json"
    with pytest.raises(FileNotFoundError) as info:
        _core.read_json(missing)
    assert info.value.filename == str(missing)
    assert info.value.errno == 2
    assert str(missing) in str(info.value)


def test_malformed_json_is_a_value_error_naming_file_and_position(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"hidden_size": 384,\n "model_type": bert}')
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON: .* line 2 column 16"):
        _core.read_json(path)


def test_other_os_errors_keep_their_subclass(tmp_path):
    with pytest.raises(IsADirectoryError) as info:
        _core.read_json(tmp_path)
    assert info.value.filename == str(tmp_path)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_parallelism_stays_on_in_a_child_forked_before_any_parallel_work():
    # Nothing has run on the rayon pool yet in a fresh interpreter, so a child may still use it.
    code = textwrap.dedent("""
        import os, ferrotune._core as c
        pid = os.fork()
        if pid == 0:
            os._exit(0 if c.parallelism_enabled() else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "0", out.stderr


def test_parallelism_can_be_turned_off_by_the_environment():
    code = "import ferrotune._core as c; print(c.parallelism_enabled())"
    env = dict(os.environ, FERROTUNE_PARALLELISM="false")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == "False", out.stderr
