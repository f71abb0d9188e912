"""Token classification and masked-LM heads against transformers, for every architecture: logits,
losses, gradients, tied weights, checkpoints both ways, load reports and the domain-adaptation
flow (a masked-LM checkpoint fine-tuned as a sequence classifier)."""

import logging

import ferrotune
import pytest
import torch
import transformers
from test_models import MODEL_TYPES, VOCAB, padded_batch, tiny_config

NUM_LABELS = 5
TASKS = {
    "token": (
        transformers.AutoModelForTokenClassification,
        ferrotune.AutoModelForTokenClassification,
    ),
    "mlm": (transformers.AutoModelForMaskedLM, ferrotune.AutoModelForMaskedLM),
}


def save_tiny(folder, model_type, task, **overrides):
    torch.manual_seed(0)
    hf_auto = TASKS[task][0]
    hf = hf_auto.from_config(tiny_config(model_type, num_labels=NUM_LABELS, **overrides))
    hf.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=[(m, t) for t in TASKS for m in MODEL_TYPES])
def tiny_task(request, tmp_path_factory):
    """(model_type, task, folder) of a seeded random transformers model with that head."""
    model_type, task = request.param
    folder = save_tiny(tmp_path_factory.mktemp(f"{model_type}-{task}"), model_type, task)
    return model_type, task, folder


def load_both(task, folder, **kwargs):
    hf_auto, ft_auto = TASKS[task]
    return hf_auto.from_pretrained(folder, **kwargs).eval(), ft_auto.from_pretrained(
        folder, **kwargs
    )


def token_labels(batch, width, seed=2):
    """Random labels, -100 at the padding and at every third token."""
    ids = batch["input_ids"]
    labels = torch.randint(0, width, ids.shape, generator=torch.Generator().manual_seed(seed))
    labels[batch["attention_mask"] == 0] = -100
    labels[:, ::3] = -100
    return labels


def compared(model_type, batch):
    """The positions whose logits equal transformers': all of them, but for ModernBERT only the
    attended ones (at a padded position whose sliding window holds only padding, both compute a
    meaningless value, differently)."""
    if model_type == "modernbert":
        return batch["attention_mask"].bool()
    return torch.ones_like(batch["attention_mask"], dtype=torch.bool)


def test_logits_and_loss_match_transformers(tiny_task):
    model_type, task, folder = tiny_task
    hf, ft = load_both(task, folder)
    width = NUM_LABELS if task == "token" else VOCAB
    batch = padded_batch(model_type)
    labels = token_labels(batch, width)
    with torch.no_grad():
        expected = hf(**batch, labels=labels)
        got = ft(**batch, labels=labels)
    assert type(ft).__name__ == type(hf).__name__
    assert type(got).__name__ == type(expected).__name__
    assert got.logits.shape == expected.logits.shape == (3, 11, width)
    keep = compared(model_type, batch)
    torch.testing.assert_close(got.logits[keep], expected.logits[keep], rtol=0, atol=1e-5)
    torch.testing.assert_close(got.loss, expected.loss, rtol=0, atol=1e-6)
    # Without labels: logits only, as a tuple too.
    with torch.no_grad():
        (plain,) = ft(**batch, return_dict=False)
    torch.testing.assert_close(plain, got.logits, rtol=0, atol=0)


def test_gradients_match_after_one_backward(tiny_task):
    model_type, task, folder = tiny_task
    hf, ft = load_both(task, folder)
    batch = padded_batch(model_type)
    labels = token_labels(batch, NUM_LABELS if task == "token" else VOCAB)
    hf(**batch, labels=labels).loss.backward()
    ft(**batch, labels=labels).loss.backward()
    # Tied weights under every name: transformers lists one of them, not always the same one.
    reference = dict(hf.named_parameters(remove_duplicate=False))
    names = [n for n, _ in ft.named_parameters()]
    assert set(names) <= set(reference)
    assert len(names) == len([p for p in hf.parameters() if p.requires_grad])
    total = torch.stack([p.grad.norm() for p in reference.values()]).norm()
    for name, param in ft.named_parameters():
        expected, got = reference[name].grad, param.grad
        assert got is not None, name
        if name.endswith(("key.bias", "k_lin.bias")) or expected.norm() < 1e-6 * total:
            # Softmax ignores a constant added to every score: zero up to rounding.
            assert got.norm() < 1e-6 * total, name
            continue
        error = (got - expected).norm() / expected.norm()
        assert error < 1e-4, f"{name}: relative gradient error {error:.2e}"


def test_checkpoint_round_trip_through_transformers(tiny_task, tmp_path):
    model_type, task, folder = tiny_task
    hf_auto, ft_auto = TASKS[task]
    ft = ft_auto.from_pretrained(folder)
    state = ft.state_dict()
    with torch.no_grad():  # change a head weight so that the test sees it travel
        head = [k for k in state if not k.startswith(type(ft).base_model_prefix + ".")]
        state[sorted(head)[-1]].add_(0.5)
    ft.save_pretrained(tmp_path)
    hf, info = hf_auto.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    batch = padded_batch(model_type)
    keep = compared(model_type, batch)
    with torch.no_grad():
        torch.testing.assert_close(
            ft(**batch).logits[keep], hf.eval()(**batch).logits[keep], rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_decoder_is_the_word_embeddings(model_type, tmp_path):
    ft = ferrotune.AutoModelForMaskedLM.from_pretrained(save_tiny(tmp_path, model_type, "mlm"))
    hf = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path)
    ours, theirs = ft.state_dict(), hf.state_dict()
    assert sorted(ours) == sorted(theirs)
    shared = {}
    for name, tensor in theirs.items():
        shared.setdefault(tensor.data_ptr(), []).append(name)
    for names in shared.values():  # transformers' tied names share storage here too
        assert len({ours[n].data_ptr() for n in names}) == 1, names
    batch = padded_batch(model_type)
    with torch.no_grad():
        before = ft(**batch).logits
        ours[[n for n in ours if "word_embeddings" in n or "tok_embeddings" in n][0]][5].add_(1.0)
        assert not torch.equal(ft(**batch).logits, before)


@pytest.mark.parametrize(
    "model_type, overrides",
    [
        ("bert", dict(tie_word_embeddings=False)),
        ("distilbert", dict(tie_word_embeddings=False)),
        ("modernbert", dict(tie_word_embeddings=False, decoder_bias=False)),
        ("deberta-v2", dict(legacy=False)),
        ("deberta-v2", dict(embedding_size=16)),
    ],
)
def test_head_settings_match_transformers(model_type, overrides, tmp_path):
    save_tiny(tmp_path, model_type, "mlm", **overrides)
    hf, ft = load_both("mlm", tmp_path)
    assert sorted(ft.state_dict()) == sorted(hf.state_dict())
    batch = padded_batch(model_type)
    labels = token_labels(batch, VOCAB)
    with torch.no_grad():
        expected, got = hf(**batch, labels=labels), ft(**batch, labels=labels)
    keep = compared(model_type, batch)
    torch.testing.assert_close(got.logits[keep], expected.logits[keep], rtol=0, atol=1e-5)
    torch.testing.assert_close(got.loss, expected.loss, rtol=0, atol=1e-6)


def test_modernbert_sparse_prediction_returns_the_labelled_logits(tmp_path):
    save_tiny(tmp_path, "modernbert", "mlm", sparse_prediction=True)
    hf, ft = load_both("mlm", tmp_path)
    batch = padded_batch("modernbert")
    labels = token_labels(batch, VOCAB)
    with torch.no_grad():
        expected, got = hf(**batch, labels=labels), ft(**batch, labels=labels)
    assert got.logits.shape == expected.logits.shape == ((labels != -100).sum().item(), VOCAB)
    torch.testing.assert_close(got.logits, expected.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(got.loss, expected.loss, rtol=0, atol=1e-6)


def report_of(info):
    return {k: sorted(map(str, info[k])) for k in ("missing_keys", "unexpected_keys")}


@pytest.mark.parametrize("task", list(TASKS))
def test_minilm_loads_with_the_report_of_transformers(minilm_dir, task, caplog):
    hf_auto, ft_auto = TASKS[task]
    _, expected = hf_auto.from_pretrained(minilm_dir, num_labels=3, output_loading_info=True)
    with caplog.at_level(logging.WARNING, logger="ferrotune"):
        ft, info = ft_auto.from_pretrained(minilm_dir, num_labels=3, output_loading_info=True)
    assert report_of(info) == report_of(expected)
    assert f"{type(ft).__name__} LOAD REPORT" in caplog.text
    if task == "token":
        assert info["missing_keys"] == ["classifier.bias", "classifier.weight"]
    else:
        assert "cls.predictions.bias" in info["missing_keys"]
        # The decoder's weight is the (loaded) word embeddings; its bias is the missing one.
        assert "cls.predictions.decoder.weight" not in info["missing_keys"]
        assert "cls.predictions.decoder.bias" in info["missing_keys"]


def test_deberta_v3_checkpoint_heads_are_reported_as_transformers_does(tmp_path):
    """deberta-v3's checkpoints carry `lm_predictions.lm_head.*` and `mask_predictions.*`: the
    default (legacy) masked-LM head does not load them, and the second is ignored silently."""
    save_tiny(tmp_path, "deberta-v2", "mlm", legacy=False)
    from safetensors.torch import load_file, save_file

    state = load_file(tmp_path / "model.safetensors")
    state["mask_predictions.dense.weight"] = torch.zeros(4, 4)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    config = transformers.AutoConfig.from_pretrained(tmp_path)
    config.legacy = True
    config.save_pretrained(tmp_path)
    _, expected = transformers.AutoModelForMaskedLM.from_pretrained(
        tmp_path, output_loading_info=True
    )
    _, info = ferrotune.AutoModelForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert report_of(info) == report_of(expected)
    assert not any("mask_predictions" in k for k in info["unexpected_keys"])


def test_domain_adaptation_checkpoint_becomes_a_classifier(tmp_path, caplog):
    """Masked-LM training saves a checkpoint; the classifier built from it keeps the encoder,
    gets a new head and reports the masked-LM head as unexpected, as transformers does."""
    mlm = ferrotune.AutoModelForMaskedLM.from_pretrained(
        save_tiny(tmp_path / "a", "roberta", "mlm")
    )
    with torch.no_grad():
        mlm.state_dict()["roberta.encoder.layer.0.output.dense.weight"].mul_(1.5)
    mlm.save_pretrained(tmp_path / "adapted")
    _, expected = transformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "adapted", num_labels=2, output_loading_info=True
    )
    with caplog.at_level(logging.WARNING, logger="ferrotune"):
        clf, info = ferrotune.AutoModelForSequenceClassification.from_pretrained(
            tmp_path / "adapted", num_labels=2, output_loading_info=True
        )
    assert report_of(info) == report_of(expected)
    assert "lm_head.dense.weight" in info["unexpected_keys"]
    assert "classifier.out_proj.weight" in info["missing_keys"]
    assert "RobertaForSequenceClassification LOAD REPORT" in caplog.text
    assert torch.equal(
        clf.state_dict()["roberta.encoder.layer.0.output.dense.weight"],
        mlm.state_dict()["roberta.encoder.layer.0.output.dense.weight"],
    )


@pytest.mark.parametrize("task", list(TASKS))
def test_bad_labels_name_the_row_and_token(tmp_path, task):
    _, ft_auto = TASKS[task]
    ft = ft_auto.from_pretrained(save_tiny(tmp_path, "bert", task))
    batch = padded_batch("bert")
    width, what = (NUM_LABELS, "num_labels") if task == "token" else (VOCAB, "vocab_size")
    labels = token_labels(batch, width)
    labels[1, 4] = width
    with pytest.raises(ValueError, match=rf"label {width} at row 1, token 4 .*{what}={width}"):
        ft(**batch, labels=labels)
    with pytest.raises(ValueError, match="one label per token"):
        ft(**batch, labels=labels[:, :5])
    with pytest.raises(TypeError, match="must be integers"):
        ft(**batch, labels=labels.float())


def test_from_config_and_class_names():
    config = ferrotune.PretrainedConfig(**tiny_config("electra").to_dict())
    model = ferrotune.AutoModelForTokenClassification.from_config(config)
    assert type(model) is ferrotune.ElectraForTokenClassification
    assert model._model.task == "token-classification"
    assert isinstance(model, ferrotune.PreTrainedModel)
    mlm = ferrotune.ElectraForMaskedLM.from_config(config)
    assert type(mlm).__name__ == "ElectraForMaskedLM"
    with pytest.raises(ValueError, match="BertForMaskedLM cannot be built"):
        ferrotune.BertForMaskedLM.from_config(config)
    with pytest.raises(OSError, match="AutoModelForMaskedLM is not instantiated directly"):
        ferrotune.AutoModelForMaskedLM()
