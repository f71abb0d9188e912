"""Reliability across the public surface: bad inputs raise a specific Python exception that names
the culprit, and the process and the user's objects survive them; faults (SIGKILL while saving a
checkpoint, Ctrl+C in a pipeline, a NaN loss) lose nothing; memory does not grow over repeated
runs; no code from a model folder or the hub ever runs."""

import ast
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import datasets
import ferrotune
import pytest
import torch
import transformers

PACKAGE = Path(ferrotune.__file__).parent


def save_classifier(folder, vocab_size=30522, hidden=32, layers=2, num_labels=2):
    """A seeded BERT classifier saved by transformers, with MiniLM's vocabulary size so that
    MiniLM's tokenizer fits it."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    transformers.BertForSequenceClassification(cfg).save_pretrained(folder)
    return Path(folder)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_classifier(tmp_path_factory.mktemp("tiny"))


ROWS = [
    {"input_ids": [101, 2000 + i, 2100 + i, 102], "attention_mask": [1, 1, 1, 1], "labels": i % 2}
    for i in range(12)
]


def dataset(**changes):
    """The good rows, with `changes[column]` either a value for every row or a function of
    (row index, row) giving it."""
    rows = []
    for i, row in enumerate(ROWS):
        row = dict(row)
        for column, value in changes.items():
            row[column] = value(i, row) if callable(value) else value
        rows.append(row)
    return datasets.Dataset.from_list(rows)


class Context:
    """What the cases use: the tiny model, the user's objects that must survive, a scratch
    folder."""

    def __init__(self, tiny_dir, minilm_dir, scratch):
        self.tiny_dir, self.minilm_dir, self.scratch = tiny_dir, minilm_dir, scratch
        self.model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
        self.tokenizer = ferrotune.AutoTokenizer.from_pretrained(minilm_dir)
        self.pipe = ferrotune.pipeline("sentiment-analysis", model=tiny_dir, tokenizer=minilm_dir)

    def args(self, **overrides):
        kwargs = dict(
            output_dir=str(self.scratch / "out"),
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            num_train_epochs=1,
            save_strategy="no",
            per_device_train_batch_size=4,
        )
        kwargs.update(overrides)
        return ferrotune.TrainingArguments(**kwargs)

    def train(self, data, model=None, eval_dataset=None, **overrides):
        model = model or ferrotune.AutoModelForSequenceClassification.from_pretrained(self.tiny_dir)
        trainer = ferrotune.Trainer(
            model=model, args=self.args(**overrides), train_dataset=data, eval_dataset=eval_dataset
        )
        return trainer.train()

    def regression(self):
        return ferrotune.AutoModelForSequenceClassification.from_pretrained(
            self.tiny_dir, num_labels=1, ignore_mismatched_sizes=True
        )

    def folder(self, name, change):
        """A copy of the tiny model folder with `change(folder)` applied."""
        folder = self.scratch / name
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(self.tiny_dir, folder)
        change(folder)
        return folder

    def tokenizer_json(self, name, change):
        """A folder with only MiniLM's tokenizer.json, changed by `change(parsed json)`."""
        folder = self.scratch / name
        folder.mkdir(exist_ok=True)
        parsed = json.loads((self.minilm_dir / "tokenizer.json").read_text())
        change(parsed)
        (folder / "tokenizer.json").write_text(json.dumps(parsed))
        return folder

    def load(self, name, change):
        return ferrotune.AutoModelForSequenceClassification.from_pretrained(
            self.folder(name, change)
        )

    def checkpoint_without_state(self):
        out = self.scratch / "ckpt"
        shutil.rmtree(out, ignore_errors=True)
        self.train(dataset(), output_dir=str(out), save_strategy="epoch")
        (out / "checkpoint-3" / "trainer_state.json").unlink()
        trainer = ferrotune.Trainer(
            model=self.model, args=self.args(output_dir=str(out)), train_dataset=dataset()
        )
        return trainer.train(resume_from_checkpoint=str(out / "checkpoint-3"))


def edit_config(**changes):
    def change(folder):
        config = json.loads((folder / "config.json").read_text())
        for key, value in changes.items():
            if value is DELETE:
                del config[key]
            else:
                config[key] = value
        (folder / "config.json").write_text(json.dumps(config))

    return change


DELETE = object()


def write(name, content):
    def change(folder):
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif callable(content):
            path.write_bytes(content(path.read_bytes()))
        else:
            path.write_text(content)

    return change


def row(i, value, column):
    """A change of `column` at row `i` only."""
    return {column: lambda j, r: value if j == i else r[column]}


# (name, action on a Context, expected exception, regular expression its message must match)
BAD_INPUTS = [
    # data given to the Trainer
    (
        "empty training set",
        lambda c: c.train(dataset().select([])),
        ValueError,
        "the training set is empty",
    ),
    ("no training set", lambda c: c.train(None), ValueError, "requires a train_dataset"),
    (
        "no label column",
        lambda c: c.train(dataset().remove_columns("labels")),
        ValueError,
        "has no label column: looked for labels, label, label_ids",
    ),
    (
        "text not tokenized",
        lambda c: c.train(datasets.Dataset.from_list([{"text": "hello", "label": 1}])),
        ValueError,
        "no 'input_ids' column.*tokenize it first",
    ),
    (
        "label = num_labels",
        lambda c: c.train(dataset(labels=2)),
        ValueError,
        r"label 2 at row 0 is outside \[0, 2\) \(the model has num_labels=2\)",
    ),
    (
        "negative label",
        lambda c: c.train(dataset(**row(5, -1, "labels"))),
        ValueError,
        r"label -1 at row 5 is outside \[0, 2\)",
    ),
    (
        "data with 3 classes, model with 2",
        lambda c: c.train(dataset(labels=lambda i, r: i % 3)),
        ValueError,
        r"label 2 at row 2 is outside \[0, 2\)",
    ),
    (
        "evaluation set with 3 classes",
        lambda c: c.train(
            dataset(), eval_dataset=dataset(labels=lambda i, r: i % 3), eval_strategy="epoch"
        ),
        ValueError,
        r"label 2 at row 2 is outside \[0, 2\)",
    ),
    (
        "float label for single-label",
        lambda c: c.train(dataset(labels=0.5)),
        ValueError,
        r"the labels are floats \(0.5 at row 0\).*num_labels=1",
    ),
    (
        "string labels",
        lambda c: c.train(dataset(labels="positive")),
        TypeError,
        "labels holds strings; map them to integer class ids",
    ),
    (
        "missing label",
        lambda c: c.train(dataset(**row(3, None, "labels"))),
        ValueError,
        r"labels is missing \(null\) at row 3",
    ),
    (
        "NaN regression label",
        lambda c: c.train(dataset(**row(4, float("nan"), "labels")), model=c.regression()),
        ValueError,
        "label at row 4 is NaN",
    ),
    (
        "infinite regression label",
        lambda c: c.train(dataset(**row(4, float("inf"), "labels")), model=c.regression()),
        ValueError,
        "label at row 4 is inf",
    ),
    (
        "id outside the vocabulary",
        lambda c: c.train(
            dataset(**row(7, [101, 40000, 102], "input_ids")).remove_columns("attention_mask")
        ),
        IndexError,
        "input_ids contains 40000, outside the vocabulary \\(vocab_size 30522\\)",
    ),
    (
        "negative id",
        lambda c: c.train(dataset(input_ids=[101, -5, 6, 102])),
        IndexError,
        "input_ids contains -5",
    ),
    (
        "empty sequence",
        lambda c: c.train(dataset(**row(3, [], "input_ids")).remove_columns("attention_mask")),
        ValueError,
        "input_ids at row 3 is empty",
    ),
    (
        "ids as strings",
        lambda c: c.train(dataset(input_ids=["a", "b"])),
        TypeError,
        "input_ids must hold integers, got Arrow type Utf8",
    ),
    (
        "attention_mask of another length",
        lambda c: c.train(dataset(attention_mask=[1, 1])),
        ValueError,
        "attention_mask at row 0 has 2 values but input_ids has 4",
    ),
    (
        "sequence longer than the model",
        lambda c: c.train(dataset(input_ids=[5] * 1000, attention_mask=[1] * 1000)),
        ValueError,
        "the sequence length 1000 is longer than the model's maximum of 512 positions",
    ),
    (
        "empty evaluation set",
        lambda c: ferrotune.Trainer(model=c.model, args=c.args()).evaluate(dataset().select([])),
        ValueError,
        "the evaluation set is empty",
    ),
    # arguments
    (
        "batch size 0",
        lambda c: c.args(per_device_train_batch_size=0),
        ValueError,
        "per_device_train_batch_size must be a positive integer, got 0",
    ),
    (
        "negative learning rate",
        lambda c: c.args(learning_rate=-1e-3),
        ValueError,
        "Invalid learning rate: -0.001",
    ),
    (
        "misspelt TrainingArguments name",
        lambda c: c.args(learning_rat=1e-3),
        TypeError,
        "unexpected keyword argument 'learning_rat'",
    ),
    (
        "output_dir under a file",
        lambda c: ferrotune.Trainer(
            model=c.model,
            args=c.args(
                output_dir=str(c.folder("blocker", lambda f: None) / "config.json" / "out")
            ),
        ),
        NotADirectoryError,
        "output_dir .*config.json/out' cannot be written",
    ),
    (
        "output_dir on a read-only file system",
        lambda c: ferrotune.Trainer(model=c.model, args=c.args(output_dir="/proc/ferrotune/out")),
        OSError,
        "output_dir '/proc/ferrotune/out' cannot be written",
    ),
    (
        "checkpoint without trainer_state.json",
        lambda c: c.checkpoint_without_state(),
        FileNotFoundError,
        "checkpoint-3' has no trainer_state.json; it cannot be resumed",
    ),
    (
        "resume with no checkpoint",
        lambda c: ferrotune.Trainer(
            model=c.model, args=c.args(output_dir=str(c.scratch / "empty")), train_dataset=dataset()
        ).train(resume_from_checkpoint=True),
        ValueError,
        "No valid checkpoint found in output directory",
    ),
    # tokenizer
    (
        "None among the texts",
        lambda c: c.tokenizer(["fine", None]),
        TypeError,
        "text at index 1 is None, expected str",
    ),
    (
        "a number among the texts",
        lambda c: c.tokenizer(["fine", 3]),
        TypeError,
        "text at index 1 has type int, expected str",
    ),
    (
        "None in a dataset's text column",
        lambda c: datasets.Dataset.from_list([{"text": "fine"}, {"text": None}]).map(
            lambda b: c.tokenizer(b["text"]), batched=True
        ),
        TypeError,
        "text at index 1 is None, expected str",
    ),
    (
        "tokenizer folder without tokenizer files",
        lambda c: ferrotune.AutoTokenizer.from_pretrained(c.tiny_dir),
        FileNotFoundError,
        "no tokenizer files found",
    ),
    (
        "tokenizer.json not JSON",
        lambda c: ferrotune.AutoTokenizer.from_pretrained(
            c.folder("badtok", write("tokenizer.json", '{"version": '))
        ),
        ValueError,
        "tokenizer.json",
    ),
    (
        "template naming a missing special token",
        lambda c: ferrotune.AutoTokenizer.from_pretrained(
            c.tokenizer_json(
                "template", lambda t: t["post_processor"]["special_tokens"].pop("[CLS]")
            )
        ),
        ValueError,
        "post_processor fails on a plain sequence; does its template name a special token missing",
    ),
    (
        "token id far beyond the vocabulary",
        lambda c: ferrotune.AutoTokenizer.from_pretrained(
            c.tokenizer_json("stray-id", lambda t: t["model"]["vocab"].update(hello=4294967295))
        ),
        ValueError,
        'the vocabulary gives "hello" the id 4294967295, but it has 30522 tokens',
    ),
    (
        "padding to 10**12 tokens",
        lambda c: c.tokenizer("fine", padding="max_length", max_length=10**12),
        MemoryError,
        "padding 1 texts to 1000000000000 tokens needs more memory than can be had",
    ),
    # model files
    (
        "config.json not JSON",
        lambda c: c.load("c1", write("config.json", "{model_type: bert")),
        ValueError,
        "config.json: not valid JSON: key must be a string at line 1 column 2",
    ),
    (
        "config.json a list",
        lambda c: c.load("c2", write("config.json", "[1, 2]")),
        ValueError,
        "config.json: a config must be a JSON object",
    ),
    (
        "config.json without model_type",
        lambda c: c.load("c3", edit_config(model_type=DELETE)),
        ValueError,
        "config.json has no 'model_type'; ferrotune supports bert, roberta",
    ),
    (
        "config.json without hidden_size",
        lambda c: c.load("c4", edit_config(hidden_size=DELETE)),
        ValueError,
        r"has shape \[32\] but the model expects \[768\].*config.json does not set "
        r"hidden_size, so the defaults of the model type were used",
    ),
    (
        "hidden_size a string",
        lambda c: c.load("c5", edit_config(hidden_size="32")),
        ValueError,
        'config "hidden_size" must be a positive integer, got "32"',
    ),
    (
        "no attention heads",
        lambda c: c.load("c6", edit_config(num_attention_heads=0)),
        ValueError,
        'config "num_attention_heads" must be a positive integer, got 0',
    ),
    (
        "heads not dividing hidden_size",
        lambda c: c.load("c7", edit_config(num_attention_heads=5)),
        ValueError,
        r"the hidden size \(32\) is not a multiple of the number of attention heads \(5\)",
    ),
    (
        "unknown model_type",
        lambda c: c.load("c8", edit_config(model_type="gpt2")),
        NotImplementedError,
        'model_type "gpt2" is not supported; ferrotune supports bert',
    ),
    (
        "truncated model.safetensors",
        lambda c: c.load("s1", write("model.safetensors", lambda b: b[: len(b) // 2])),
        ValueError,
        "model.safetensors: not a valid safetensors file",
    ),
    (
        "model.safetensors of random bytes",
        lambda c: c.load("s2", write("model.safetensors", bytes(range(256)) * 20)),
        ValueError,
        "model.safetensors: not a valid safetensors file",
    ),
    (
        "empty model.safetensors",
        lambda c: c.load("s3", write("model.safetensors", b"")),
        ValueError,
        "model.safetensors: not a valid safetensors file: header too small",
    ),
    (
        "no weights",
        lambda c: c.load("s4", lambda f: (f / "model.safetensors").unlink()),
        FileNotFoundError,
        "no model weights in .*: looked for model.safetensors",
    ),
    (
        "hub id with ..",
        lambda c: ferrotune.AutoModelForSequenceClassification.from_pretrained("someone/../../etc"),
        FileNotFoundError,
        "never an absolute path nor one with '..'",
    ),
    (
        "absolute path that does not exist",
        lambda c: ferrotune.AutoTokenizer.from_pretrained("/no/such/model"),
        FileNotFoundError,
        "never an absolute path nor one with '..'",
    ),
    (
        "path that is not a string",
        lambda c: ferrotune.AutoModelForSequenceClassification.from_pretrained(42),
        TypeError,
        "expected a local folder or a hub id.*got int: 42",
    ),
    # model calls
    (
        "id outside the vocabulary in a forward",
        lambda c: c.model(input_ids=torch.tensor([[101, 30522]])),
        IndexError,
        "30522",
    ),
    (
        "sequence of no token",
        lambda c: c.model(input_ids=torch.zeros((1, 0), dtype=torch.long)),
        ValueError,
        r"input_ids has shape \[1, 0\]",
    ),
    (
        "float input ids",
        lambda c: c.model(input_ids=torch.zeros((1, 3))),
        TypeError,
        "input_ids must hold integers, got Float",
    ),
    (
        "1-D input ids",
        lambda c: c.model(input_ids=torch.zeros(3, dtype=torch.long)),
        ValueError,
        r"input_ids must have shape \(batch_size, sequence_length\), got \[3\]",
    ),
    (
        "mask of another shape",
        lambda c: c.model(
            input_ids=torch.ones((1, 3), dtype=torch.long),
            attention_mask=torch.ones((1, 4), dtype=torch.long),
        ),
        ValueError,
        r"attention_mask has shape \[1, 4\] but input_ids has shape \[1, 3\]",
    ),
    (
        "NaN regression label in a forward",
        lambda c: c.regression()(
            input_ids=torch.ones((1, 3), dtype=torch.long), labels=torch.tensor([float("nan")])
        ),
        ValueError,
        "labels contain NaN or infinity",
    ),
    # pipeline
    ("pipeline of None", lambda c: c.pipe(None), TypeError, "got NoneType: None"),
    ("pipeline of a number", lambda c: c.pipe(5), TypeError, "got int: 5"),
    (
        "pipeline with None among texts",
        lambda c: c.pipe(["fine", None]),
        TypeError,
        "text at index 1 is None",
    ),
    (
        "pipeline of 1 MB without truncation",
        lambda c: c.pipe("word " * 200_000),
        ValueError,
        "input 0 has 200002 tokens, more than the model's maximum of 512; pass truncation=True",
    ),
    (
        "pipeline top_k 0",
        lambda c: c.pipe("fine", top_k=0),
        ValueError,
        "top_k must be a positive integer or None, got 0",
    ),
    (
        "pipeline batch_size 0",
        lambda c: c.pipe(["fine"], batch_size=0),
        ValueError,
        "batch_size must be a positive integer or None, got 0",
    ),
] + (
    []
    if torch.cuda.is_available()
    else [
        (
            "model on a GPU that is not there",
            lambda c: ferrotune.AutoModelForSequenceClassification.from_pretrained(
                c.tiny_dir, device="cuda"
            ),
            ValueError,
            'device "cuda" is not available: libtorch sees 0 CUDA device',
        ),
        (
            "pipeline on a GPU that is not there",
            lambda c: ferrotune.pipeline(
                "sentiment-analysis", model=c.tiny_dir, tokenizer=c.minilm_dir, device=0
            ),
            ValueError,
            "was asked for, but torch sees no CUDA device",
        ),
    ]
)


@pytest.fixture(scope="module")
def context(tiny_dir, minilm_dir, tmp_path_factory):
    return Context(tiny_dir, minilm_dir, tmp_path_factory.mktemp("scratch"))


@pytest.mark.parametrize(
    "name, action, error, message", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS]
)
def test_bad_input_raises_a_clear_exception_and_loses_nothing(
    context, name, action, error, message
):
    before = {k: v.clone() for k, v in context.model.state_dict().items()}
    with pytest.raises(error, match=message):
        action(context)
    # The process is alive and the user's objects still work, unchanged.
    for key, value in context.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    with torch.no_grad():
        assert context.model(input_ids=torch.tensor([[101, 2000, 102]])).logits.shape == (1, 2)
    assert context.tokenizer("fine")["input_ids"] == [101, 2986, 102]
    assert context.pipe("fine")[0]["label"] in ("LABEL_0", "LABEL_1")


@pytest.mark.parametrize("text", ["", "   ", "word " * 200_000, "😡" * 1000, "\x00\x01"])
def test_edge_texts_that_are_valid_are_classified(context, text):
    """Empty, blank, 1 MB (with truncation) and odd texts are not errors."""
    expected = transformers.pipeline(
        "sentiment-analysis", model=str(context.tiny_dir), tokenizer=str(context.minilm_dir)
    )(text, truncation=True)
    got = context.pipe(text, truncation=True)
    assert got[0]["label"] == expected[0]["label"]
    assert got[0]["score"] == pytest.approx(expected[0]["score"], abs=1e-5)


# -- faults ---------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import os, signal, sys
    import datasets, torch
    import ferrotune

    model_dir, out, mode = sys.argv[1:4]
    rows = [{"input_ids": [101] + [1000 + (7 * i + j) % 500 for j in range(3 + i % 9)] + [102],
             "labels": i % 2} for i in range(40)]
    data = datasets.Dataset.from_list(rows)
    if mode == "kill":
        # SIGKILL in the middle of writing checkpoint-10: its weights are written, its
        # optimizer state is not.
        real_save = torch.save
        def save(obj, path, *args, **kwargs):
            if "checkpoint-10-" in str(path) and str(path).endswith("optimizer.pt"):
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, path, *args, **kwargs)
        torch.save = save
    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(model_dir)
    args = ferrotune.TrainingArguments(
        output_dir=out, num_train_epochs=2, per_device_train_batch_size=4, learning_rate=1e-3,
        save_strategy="steps", save_steps=5, report_to="none", use_cpu=True,
        disable_tqdm=True, seed=7)
    trainer = ferrotune.Trainer(model=model, args=args, train_dataset=data)
    output = trainer.train(resume_from_checkpoint=True if mode == "resume" else None)
    trainer.save_model(out + "/final")
    print("first logged step", trainer.state.log_history[0].get("step"),
          "global", output.global_step)
""")


def run_child(model_dir, out, mode):
    # One thread: the runs compared bit for bit then round alike whatever the machine's load
    # (each step's thread count follows the load, and reductions round by their thread count).
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(model_dir), str(out), mode],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


@pytest.mark.slow
def test_sigkill_while_saving_keeps_the_previous_checkpoint_and_resume_matches(tiny_dir, tmp_path):
    killed = run_child(tiny_dir, tmp_path / "run", "kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run = tmp_path / "run"
    # Only complete checkpoints are visible; the unfinished one is hidden.
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == ["checkpoint-5"]
    assert any(p.name.startswith(".checkpoint-10-") for p in run.iterdir())
    state = json.loads((run / "checkpoint-5" / "trainer_state.json").read_text())
    assert state["global_step"] == 5
    # The previous checkpoint loads in transformers as in ferrotune.
    transformers.AutoModelForSequenceClassification.from_pretrained(run / "checkpoint-5")
    ferrotune.AutoModelForSequenceClassification.from_pretrained(run / "checkpoint-5")

    resumed = run_child(tiny_dir, run, "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "global 20" in resumed.stdout
    assert not any(p.name.startswith(".checkpoint-") for p in run.iterdir())  # cleaned up
    full = run_child(tiny_dir, tmp_path / "full", "full")
    assert full.returncode == 0, full.stderr[-2000:]
    a = ferrotune.AutoModelForSequenceClassification.from_pretrained(run / "final").state_dict()
    b = ferrotune.AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "full" / "final"
    ).state_dict()
    for key in b:
        assert torch.equal(a[key], b[key]), key


def interrupt_midway(call, warm_up):
    """Runs `call()` with a SIGINT arriving about halfway through a tenth of its work (the time
    `warm_up()` takes); the KeyboardInterrupt must come out of it. How soon it stops is a timing,
    measured in bench/, not asserted here."""
    start = time.perf_counter()
    warm_up()
    tenth = time.perf_counter() - start
    timer = threading.Timer(tenth / 2, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        call()
    timer.join()


def test_ctrl_c_stops_a_pipeline_and_it_stays_usable(tmp_path, minilm_dir):
    model_dir = save_classifier(tmp_path / "wide", hidden=256, layers=4)
    pipe = ferrotune.pipeline("sentiment-analysis", model=model_dir, tokenizer=minilm_dir)
    texts = [f"text number {i} " + "with quite a few words in it " * 12 for i in range(4000)]
    expected = pipe(texts[:8])
    interrupt_midway(lambda: pipe(texts), lambda: pipe(texts[:400]))
    assert pipe(texts[:8]) == expected


def test_ctrl_c_stops_an_evaluation_and_the_trainer_stays_usable(tmp_path, tiny_dir):
    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(
        save_classifier(tmp_path / "wide", hidden=256, layers=4)
    )
    data = datasets.Dataset.from_list(
        [
            {"input_ids": [101] + [2000 + (i + j) % 900 for j in range(120)] + [102], "labels": 1}
            for i in range(2000)
        ]
    )
    trainer = ferrotune.Trainer(
        model=model,
        args=ferrotune.TrainingArguments(
            str(tmp_path / "out"),
            report_to="none",
            per_device_eval_batch_size=8,
            use_cpu=True,
            disable_tqdm=True,
        ),
    )
    expected = trainer.evaluate(data.select(range(8)))["eval_loss"]
    interrupt_midway(
        lambda: trainer.evaluate(data), lambda: trainer.evaluate(data.select(range(200)))
    )
    assert trainer.evaluate(data.select(range(8)))["eval_loss"] == expected


@pytest.mark.parametrize("nan_inf_filter", [True, False])
def test_a_nan_loss_is_reported_with_its_step_and_logged_as_transformers_does(
    tiny_dir, tmp_path, caplog, nan_inf_filter
):
    class Poison:
        """Makes the classifier's weights NaN at the end of step 3, so step 4's loss is NaN."""

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 3:
                weights = dict(model.named_parameters())["classifier.weight"]
                with torch.no_grad():
                    weights.fill_(float("nan"))

    def args(lib, out):
        return lib.TrainingArguments(
            output_dir=str(out),
            num_train_epochs=1,
            per_device_train_batch_size=2,
            learning_rate=1e-3,
            logging_steps=2,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            logging_nan_inf_filter=nan_inf_filter,
        )

    data = dataset()
    hf_model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    hf = transformers.Trainer(
        model=hf_model,
        args=args(transformers, tmp_path / "hf"),
        train_dataset=data,
        callbacks=[Poison()],
    )
    hf.train()
    ft_model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    ft = ferrotune.Trainer(
        model=ft_model,
        args=args(ferrotune, tmp_path / "ft"),
        train_dataset=data,
        callbacks=[Poison()],
    )
    with caplog.at_level("WARNING", logger="ferrotune"):
        ft.train()
    assert "The training loss is nan at step 4 (epoch 0.67)" in caplog.text
    assert "3 batches had a NaN or infinite training loss, the first at step 4" in caplog.text
    expected, got = hf.state.log_history[:-1], ft.state.log_history[:-1]
    assert [log["step"] for log in got] == [log["step"] for log in expected]
    for a, b in zip(expected, got):
        for key in ("loss", "grad_norm"):
            assert b[key] == pytest.approx(a[key], abs=1e-4, nan_ok=True), (key, a, b)


# -- memory ---------------------------------------------------------------------------------------

MEMORY_CHILD = textwrap.dedent("""
    import gc, json, resource, sys, weakref
    import datasets, torch
    import ferrotune

    model_dir, out = sys.argv[1:3]
    data = datasets.Dataset.from_list(
        [{"input_ids": [101] + [1000 + (5 * i + j) % 700 for j in range(30)] + [102],
          "labels": i % 2} for i in range(64)])
    page_kb = resource.getpagesize() // 1024
    peaks, current, refs = [], [], []
    for i in range(10):
        model = ferrotune.AutoModelForSequenceClassification.from_pretrained(model_dir)
        trainer = ferrotune.Trainer(model=model, train_dataset=data, eval_dataset=data,
                                    args=ferrotune.TrainingArguments(
                                        out, num_train_epochs=1, per_device_train_batch_size=16,
                                        save_strategy="no", report_to="none", use_cpu=True,
                                        disable_tqdm=True))
        trainer.train()
        trainer.evaluate()
        refs += [weakref.ref(trainer), weakref.ref(model)]
        del trainer, model
        gc.collect()
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        current.append(int(open("/proc/self/statm").read().split()[1]) * page_kb)
    print(json.dumps({"peaks": peaks, "current": current,
                      "alive": sum(r() is not None for r in refs)}))
""")


@pytest.mark.slow
def test_ten_runs_in_one_process_free_every_trainer_and_model(tmp_path):
    """10 Trainers, each training and evaluating a 4M-parameter model (its weights, gradients
    and AdamW state are about 70 MB). The resident memory after each run is printed, not
    asserted: its growth depends on the allocator and the machine's load."""
    model_dir = save_classifier(tmp_path / "model", hidden=128)
    child = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(model_dir), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    print("peak and current RSS (kB) after each run:", result["peaks"], result["current"])
    assert result["alive"] == 0  # every Trainer and model was freed


# -- safety ---------------------------------------------------------------------------------------


class Payload:
    """A pickle that, when loaded without weights_only, creates the file `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_with_code_in_pytorch_model_bin_is_refused_and_never_runs(tiny_dir, tmp_path):
    folder = tmp_path / "evil"
    shutil.copytree(tiny_dir, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "ran"
    torch.save(
        {"bert.embeddings.word_embeddings.weight": Payload(marker)}, folder / "pytorch_model.bin"
    )
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        ferrotune.AutoModelForSequenceClassification.from_pretrained(folder)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["rng_state.pth", "optimizer.pt"])
def test_a_checkpoint_with_code_in_its_pickles_is_refused_and_never_runs(tiny_dir, tmp_path, name):
    context_args = dict(
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        num_train_epochs=1,
        save_strategy="epoch",
        per_device_train_batch_size=4,
    )
    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    args = ferrotune.TrainingArguments(str(tmp_path / "out"), **context_args)
    ferrotune.Trainer(model=model, args=args, train_dataset=dataset()).train()
    marker = tmp_path / "ran"
    torch.save({"state": Payload(marker)}, tmp_path / "out" / "checkpoint-3" / name)
    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    args = ferrotune.TrainingArguments(
        str(tmp_path / "out"), **dict(context_args, num_train_epochs=2)
    )
    trainer = ferrotune.Trainer(model=model, args=args, train_dataset=dataset())
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        trainer.train(resume_from_checkpoint=True)
    assert not marker.exists()


def test_code_shipped_in_a_model_folder_never_runs(tiny_dir, minilm_dir, tmp_path, caplog):
    """transformers runs `modeling_*.py` of a folder with trust_remote_code=True; ferrotune
    accepts the flag, says it ignores it, and uses its own implementation."""
    folder = tmp_path / "remote"
    shutil.copytree(tiny_dir, folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        if (minilm_dir / name).exists():
            shutil.copy(minilm_dir / name, folder / name)
    marker = tmp_path / "ran"
    code = f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
    for name in ("modeling_evil.py", "configuration_evil.py", "tokenization_evil.py"):
        (folder / name).write_text(code)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForSequenceClassification": "modeling_evil.Evil",
    }
    (folder / "config.json").write_text(json.dumps(config))
    with caplog.at_level("WARNING", logger="ferrotune"):
        ferrotune.AutoConfig.from_pretrained(folder, trust_remote_code=True)
        model = ferrotune.AutoModelForSequenceClassification.from_pretrained(
            folder, trust_remote_code=True
        )
        ferrotune.AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        ferrotune.pipeline("sentiment-analysis", model=folder, trust_remote_code=True)("fine")
    assert not marker.exists()
    assert "trust_remote_code=True is ignored" in caplog.text
    assert type(model).__name__ == "BertForSequenceClassification"


def test_every_torch_load_of_the_package_is_weights_only():
    """No pickle ferrotune reads can run code: each torch.load passes weights_only=True, and
    nothing calls pickle.load, exec, eval or imports from a path."""
    loads = 0
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            assert name not in (
                "pickle.load",
                "pickle.loads",
                "exec",
                "eval",
                "importlib.import_module",
                "runpy.run_path",
            ), (path, name)
            if name == "torch.load":
                loads += 1
                flags = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert flags.get("weights_only") == "True", (path, node.lineno)
    assert loads >= 3  # pytorch_model.bin, optimizer.pt, rng_state.pth
