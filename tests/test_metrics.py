"""ferrotune.evaluate's metrics (computed in Rust) against scikit-learn's."""

import numpy as np
import pytest
from ferrotune import evaluate
from sklearn import metrics as sk


def cases():
    rng = np.random.default_rng(0)
    yield rng.integers(0, 2, 200), rng.integers(0, 2, 200)  # binary
    yield rng.integers(0, 4, 300), rng.integers(0, 4, 300)  # multiclass
    yield rng.integers(0, 3, 50), rng.integers(1, 4, 50)  # labels differ
    yield np.zeros(10, int), np.zeros(10, int)  # one class only
    yield np.array([1, 1, 1]), np.array([0, 0, 0])  # all wrong


@pytest.mark.parametrize("preds, refs", list(cases()))
def test_equal_to_sklearn(preds, refs):
    assert evaluate.load("accuracy").compute(predictions=preds, references=refs) == {
        "accuracy": sk.accuracy_score(refs, preds)
    }
    labels = np.union1d(preds, refs)
    averages = ["micro", "macro", "weighted"] + (["binary"] if set(labels) <= {0, 1} else [])
    for average in averages:
        for name, fn in (
            ("precision", sk.precision_score),
            ("recall", sk.recall_score),
            ("f1", sk.f1_score),
        ):
            got = evaluate.load(name).compute(predictions=preds, references=refs, average=average)
            want = fn(refs, preds, average=average, zero_division=0)
            assert got[name] == pytest.approx(want, abs=1e-12), (name, average)
    got = evaluate.load("matthews_correlation").compute(predictions=preds, references=refs)
    assert got["matthews_correlation"] == pytest.approx(
        sk.matthews_corrcoef(refs, preds), abs=1e-12
    )
    got = evaluate.load("confusion_matrix").compute(predictions=preds, references=refs)
    np.testing.assert_array_equal(got["confusion_matrix"], sk.confusion_matrix(refs, preds))


def test_confusion_matrix_options():
    preds, refs = [0, 1, 1, 2], [0, 1, 2, 2]
    got = evaluate.load("confusion_matrix").compute(
        predictions=preds, references=refs, labels=[2, 0], normalize="true"
    )
    np.testing.assert_allclose(
        got["confusion_matrix"], sk.confusion_matrix(refs, preds, labels=[2, 0], normalize="true")
    )


def test_accumulating_batches_and_the_old_name():
    metric = evaluate.load_metric("accuracy")
    metric.add_batch(predictions=[0, 1], references=[0, 0])
    metric.add(prediction=1, reference=1)
    assert metric.compute() == {"accuracy": 2 / 3}
    assert evaluate.load("accuracy").compute(
        predictions=[1, 0], references=[1, 1], normalize=False
    ) == {"accuracy": 1.0}


def test_bad_input():
    with pytest.raises(ValueError, match="unknown metric 'bleu'; ferrotune provides accuracy"):
        evaluate.load("bleu")
    with pytest.raises(ValueError, match="different lengths: 2 and 3"):
        evaluate.load("accuracy").compute(predictions=[0, 1], references=[0, 1, 1])
    with pytest.raises(ValueError, match="Target is multiclass but average='binary'"):
        evaluate.load("f1").compute(predictions=[0, 1, 2], references=[0, 1, 2])
    with pytest.raises(TypeError, match="predictions must hold integer labels"):
        evaluate.load("accuracy").compute(predictions=[0.5, 1.0], references=[0, 1])
    with pytest.raises(ValueError, match=r"1-D\), got shape \(2, 2\)"):
        evaluate.load("accuracy").compute(predictions=[[0, 1], [1, 0]], references=[0, 1])
