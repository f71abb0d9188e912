"""notebooks/sentiment_finetune.ipynb runs without a cell error (on a few hundred tweets), and
the main job's model loads in transformers' pipeline with the same labels."""

from pathlib import Path

import ferrotune
import nbformat
import pytest
import transformers
from ferrotune import demo
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "sentiment_finetune.ipynb"


@pytest.mark.slow
def test_the_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("FERROTUNE_NOTEBOOK_SUBSET", "200")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert not errors
    trained = [c for c in notebook.cells if "trainer.train()" in c.source][0]
    assert "TrainOutput(global_step=" in str(trained.outputs)
    assert (tmp_path / "sentiment-model" / "model.safetensors").is_file()


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
