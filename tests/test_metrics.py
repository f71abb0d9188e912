"""ferrotune.evaluate's metrics (computed in Rust) against scikit-learn's and seqeval's."""

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


def seqeval_reference(predictions, references, **kwargs):
    """What `evaluate.load("seqeval").compute` returns, from the seqeval package."""
    from seqeval import scheme as schemes
    from seqeval.metrics import accuracy_score, classification_report

    if kwargs.get("scheme") is not None:
        kwargs["scheme"] = getattr(schemes, kwargs["scheme"])
    report = classification_report(
        y_true=references, y_pred=predictions, output_dict=True, **kwargs
    )
    report.pop("macro avg")
    report.pop("weighted avg")
    overall = report.pop("micro avg")
    scores = {
        name: {
            "precision": s["precision"],
            "recall": s["recall"],
            "f1": s["f1-score"],
            "number": s["support"],
        }
        for name, s in report.items()
    }
    scores["overall_precision"] = overall["precision"]
    scores["overall_recall"] = overall["recall"]
    scores["overall_f1"] = overall["f1-score"]
    scores["overall_accuracy"] = accuracy_score(y_true=references, y_pred=predictions)
    return scores


def random_tag(rng, prefixes: str, suffix: bool) -> str:
    """A tag with a prefix of `prefixes` and one of three types ("O" alone)."""
    prefix = prefixes[int(rng.integers(len(prefixes)))]
    kind = ["PER", "LOC", "MISC"][int(rng.integers(3))]
    if prefix == "O":
        return "O"
    return f"{kind}-{prefix}" if suffix else f"{prefix}-{kind}"


def outcome_of(compute, *args, **kwargs):
    try:
        return compute(*args, **kwargs)
    except Exception as e:  # both must fail on the same inputs
        return type(e)


@pytest.mark.parametrize("prefixes", ["IOB", "IOE", "BIOES", "BILOU", "IOBESUL", "IO"])
@pytest.mark.parametrize("suffix", [False, True])
def test_seqeval_equals_the_seqeval_package(prefixes, suffix):
    """Random sentences of tags (and predictions: the same with 30% of the tags redrawn) in
    default and strict mode, every scheme and zero_division: the numbers of seqeval, or an
    error where seqeval raises one."""
    import warnings

    metric = evaluate.load("seqeval")
    rng = np.random.default_rng(len(prefixes) + suffix)
    schemes = ["IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU"]
    modes = [{}, {"mode": "strict"}] + [{"mode": "strict", "scheme": s} for s in schemes]
    for trial in range(6):
        lengths = rng.integers(0, 12, size=40)
        references = [[random_tag(rng, prefixes, suffix) for _ in range(n)] for n in lengths]
        predictions = [
            [t if rng.random() < 0.7 else random_tag(rng, prefixes, suffix) for t in row]
            for row in references
        ]
        for mode in modes:
            for zero in ("warn", 0, 1):
                kwargs = dict(suffix=suffix, zero_division=zero, **mode)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    expected = outcome_of(seqeval_reference, predictions, references, **kwargs)
                got = outcome_of(
                    metric.compute, predictions=predictions, references=references, **kwargs
                )
                if isinstance(expected, type):
                    assert isinstance(got, type), (trial, mode, got)
                else:
                    assert got == expected, (trial, mode, zero)
