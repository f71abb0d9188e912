"""Data-parallel training under torchrun: two CPU processes over gloo against one process with
twice the batch size, on a tiny seeded model."""

import json
import subprocess
import sys

import ferrotune
import pytest
import torch

SCRIPT = """
import hashlib, json, sys
import datasets, torch
import ferrotune

model_dir, out, batch, examples, results = sys.argv[1:3] + [int(a) for a in sys.argv[3:5]] + [
    sys.argv[5]]
g = torch.Generator().manual_seed(1)
def rows(n):
    out = []
    for _ in range(n):
        length = int(torch.randint(3, 14, (1,), generator=g))
        ids = torch.randint(5, 99, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "attention_mask": [1] * length, "labels": ids[0] % 2})
    return datasets.Dataset.from_list(out)
train, evaluation = rows(48).select(range(examples)), rows(21)

def accuracy(prediction):
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

model = ferrotune.AutoModelForSequenceClassification.from_pretrained(model_dir)
args = ferrotune.TrainingArguments(
    output_dir=out, num_train_epochs=2, per_device_train_batch_size=batch,
    per_device_eval_batch_size=4, learning_rate=1e-3, weight_decay=0.01, warmup_steps=0.2,
    logging_steps=2, eval_strategy="epoch", save_strategy="epoch", report_to="none",
    use_cpu=True, disable_tqdm=True, seed=3)
trainer = ferrotune.Trainer(model=model, args=args, train_dataset=train,
                            eval_dataset=evaluation, compute_metrics=accuracy)
result = trainer.train()
trainer.save_model()
digest = hashlib.sha256(b"".join(t.detach().numpy().tobytes()
                                 for t in model.state_dict().values())).hexdigest()
# Each process its own file: the processes' prints can interleave.
with open(f"{results}/result-{args.process_index}.json", "w") as f:
    json.dump({"rank": args.process_index, "world": args.world_size, "digest": digest,
               "log": trainer.state.log_history, "train_loss": result.training_loss}, f)
"""


@pytest.fixture(scope="module")
def tiny_dir(tiny_bert_dir):
    return tiny_bert_dir


def launch(tmp_path, tiny_dir, out, batch, processes, examples=48):
    """Runs the script alone or under torchrun; returns (the run, its results folder)."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    command = [sys.executable, str(script)]
    if processes > 1:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            str(script),
        ]
    found = tmp_path / f"results-{out.name}"
    found.mkdir()
    run = subprocess.run(
        [*command, str(tiny_dir), str(out), str(batch), str(examples), str(found)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return run, found


def results(launched):
    run, found = launched
    assert run.returncode == 0, run.stderr[-3000:]
    return [json.loads(p.read_text()) for p in sorted(found.glob("result-*.json"))]


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.slow
def test_two_processes_train_as_one_with_twice_the_batch(tiny_dir, tmp_path):
    single_run = launch(tmp_path, tiny_dir, tmp_path / "single", batch=8, processes=1)
    pair_run = launch(tmp_path, tiny_dir, tmp_path / "pair", batch=4, processes=2)
    [single], pair = results(single_run), results(pair_run)
    single_run, pair_run = single_run[0], pair_run[0]
    assert [r["world"] for r in pair] == [2, 2]
    # Both processes hold the same weights at the end.
    assert pair[0]["digest"] == pair[1]["digest"]
    # ... equal to the single process's.
    a = ferrotune.AutoModelForSequenceClassification.from_pretrained(tmp_path / "single")
    b = ferrotune.AutoModelForSequenceClassification.from_pretrained(tmp_path / "pair")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-4, msg=name)
    # The same logs: losses averaged over the processes, evaluation over the whole set.
    for log in pair:
        assert [e["step"] for e in log["log"]] == [e["step"] for e in single["log"]]
        for expected, got in zip(single["log"], log["log"]):
            for key in ("loss", "grad_norm", "learning_rate", "eval_loss", "eval_accuracy"):
                if key in expected:
                    assert got[key] == pytest.approx(expected[key], abs=1e-5), (key, expected, got)
        assert log["train_loss"] == pytest.approx(single["train_loss"], abs=1e-5)
    # Only the first process writes: the same files as one process, and logs printed once.
    assert files(tmp_path / "pair") == files(tmp_path / "single")
    assert pair_run.stdout.count("'eval_loss'") == single_run.stdout.count("'eval_loss'") == 2


@pytest.mark.slow
def test_processes_that_disagree_on_the_data_are_stopped_at_the_start(tiny_dir, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        SCRIPT.replace(
            "train, evaluation = rows(48).select(range(examples)), rows(21)",
            "train, evaluation = rows(48).select(range(examples - torch.distributed.get_rank() "
            "if torch.distributed.is_initialized() else examples)), rows(21)\n"
            "import torch.distributed",
        ).replace(
            "import datasets, torch\n",
            "import datasets, torch\nimport torch.distributed as dist\n"
            "dist.init_process_group('gloo')\n",
        )
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(script),
            str(tiny_dir),
            str(tmp_path / "out"),
            "4",
            "48",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode != 0
    assert (
        "the processes training together disagree on training_examples (rank 0: 48, rank 1: 47)"
    ) in run.stderr


class FakeGroup:
    """torch.distributed as seen from a process in a group of another backend."""

    def __init__(self, backend):
        self.backend = backend

    def is_initialized(self):
        return True

    def get_backend(self):
        return self.backend


@pytest.mark.parametrize(
    "backend, error, message",
    [
        ("mpi", NotImplementedError, "uses the 'mpi' backend; ferrotune trains over gloo"),
        ("nccl", ValueError, "uses nccl, which needs CUDA tensors, but the model is on cpu"),
    ],
)
def test_an_unsupported_process_group_is_a_clear_error(
    tiny_dir, tmp_path, monkeypatch, backend, error, message
):
    monkeypatch.setattr(ferrotune.distributed, "_dist", lambda: FakeGroup(backend))
    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    with pytest.raises(error, match=message):
        ferrotune.Trainer(
            model=model,
            args=ferrotune.TrainingArguments(str(tmp_path), use_cpu=True, report_to="none"),
        )
