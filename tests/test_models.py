"""Models against transformers in the same process: logits, losses, gradients, checkpoints.

Tiny seeded random models of each supported type are built with transformers at test time;
the real all-MiniLM-L6-v2 is used where it matters."""

import logging

import ferrotune
import pytest
import torch
import transformers

MODEL_TYPES = [
    "bert",
    "roberta",
    "xlm-roberta",
    "distilbert",
    "electra",
    "modernbert",
    "deberta-v2",
]
# The models whose classifier is `classifier.out_proj` and whose positions start after the pad id.
OUT_PROJ_HEADS = ("roberta", "xlm-roberta", "electra")
ROBERTA_POSITIONS = ("roberta", "xlm-roberta")
NO_TOKEN_TYPES = ("distilbert", "modernbert")
VOCAB = 99
# DeBERTa-v3's attention settings; 4 buckets reaching to 8 positions, so that the rows of up to
# 11 tokens read both the exact and the log-bucketed relative positions.
DEBERTA_V3 = dict(
    relative_attention=True,
    pos_att_type=["p2c", "c2p"],
    position_buckets=4,
    max_relative_positions=8,
    norm_rel_ebd="layer_norm",
    share_att_key=True,
    position_biased_input=False,
)


def tiny_config(model_type: str, **overrides):
    common = dict(vocab_size=VOCAB, initializer_range=0.2)
    if model_type == "distilbert":
        cfg = dict(dim=32, n_heads=4, n_layers=2, hidden_dim=37, max_position_embeddings=64)
    elif model_type == "modernbert":
        # Global, sliding, global; a window of 2 tokens each side, shorter than the test rows.
        cfg = dict(
            hidden_size=32,
            num_attention_heads=4,
            num_hidden_layers=3,
            intermediate_size=37,
            max_position_embeddings=64,
            global_attn_every_n_layers=2,
            local_attention=4,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            cls_token_id=1,
            sep_token_id=2,
            embedding_dropout=0.1,
            attention_dropout=0.1,
            mlp_dropout=0.1,
            classifier_dropout=0.1,
        )
    elif model_type == "deberta-v2":
        cfg = dict(
            hidden_size=32,
            num_attention_heads=4,
            num_hidden_layers=2,
            intermediate_size=37,
            max_position_embeddings=64,
            type_vocab_size=2,
            pooler_dropout=0.1,
            **DEBERTA_V3,
        )
    else:
        cfg = dict(
            hidden_size=32,
            num_attention_heads=4,
            num_hidden_layers=2,
            intermediate_size=37,
            max_position_embeddings=64,
            type_vocab_size=2,
        )
    if model_type == "electra":
        cfg["embedding_size"] = 16  # narrower than the hidden size: embeddings_project
    cfg.update(common, **overrides)
    return transformers.AutoConfig.for_model(model_type, **cfg)


@pytest.fixture(scope="module", params=MODEL_TYPES)
def tiny(request, tmp_path_factory):
    """(model_type, folder) of a seeded random transformers classifier (save_pretrained)."""
    torch.manual_seed(0)
    hf = transformers.AutoModelForSequenceClassification.from_config(
        tiny_config(request.param, num_labels=3)
    )
    folder = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(folder)
    return request.param, folder


def load_both(folder, **kwargs):
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(folder, **kwargs).eval()
    ft = ferrotune.AutoModelForSequenceClassification.from_pretrained(folder, **kwargs)
    return hf, ft


def padded_batch(model_type: str, with_token_types: bool = True):
    """Three sequences of lengths 11, 7 and 4, padded to 11 with the model's pad id."""
    pad = 1 if model_type in ROBERTA_POSITIONS else 0
    g = torch.Generator().manual_seed(1)
    lengths = [11, 7, 4]
    ids = torch.randint(3, VOCAB, (3, 11), generator=g)
    mask = torch.zeros(3, 11, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
        ids[row, n:] = pad
    batch = {"input_ids": ids, "attention_mask": mask}
    if with_token_types and model_type not in NO_TOKEN_TYPES:
        types = torch.zeros_like(ids)
        types[:, 5:] = 1
        batch["token_type_ids"] = types * mask
    return batch


@pytest.mark.parametrize("attention", ["explicit", "fused", "auto"])
def test_eval_logits_match_transformers(tiny, attention):
    model_type, folder = tiny
    hf, ft = load_both(folder)
    ft.attention_implementation = attention
    batch = padded_batch(model_type)
    with torch.no_grad():
        expected = hf(**batch).logits
        got = ft(**batch).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert isinstance(ft, getattr(ferrotune, type(hf).__name__))


def test_logits_without_attention_mask_or_token_types(tiny):
    model_type, folder = tiny
    hf, ft = load_both(folder)
    ids = padded_batch(model_type)["input_ids"][:, :4]  # no padding in the first 4 tokens
    with torch.no_grad():
        torch.testing.assert_close(
            ft(input_ids=ids).logits, hf(input_ids=ids).logits, rtol=0, atol=1e-5
        )


@pytest.mark.parametrize(
    "problem_type, num_labels, make_labels",
    [
        ("regression", 1, lambda: torch.tensor([0.5, -1.0, 2.0])),
        ("single_label_classification", 3, lambda: torch.tensor([0, 2, 1])),
        (
            "multi_label_classification",
            3,
            lambda: torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]),
        ),
    ],
)
def test_loss_and_inferred_problem_type_match(tiny, problem_type, num_labels, make_labels):
    model_type, folder = tiny
    hf, ft = load_both(folder, num_labels=num_labels, ignore_mismatched_sizes=True)
    # Same head weights for both (the head is re-initialized when num_labels changes).
    ft.load_state_dict(
        {k: v for k, v in hf.state_dict().items() if k in ft.state_dict()}, strict=False
    )
    batch = padded_batch(model_type)
    labels = make_labels()
    with torch.no_grad():
        expected = hf(**batch, labels=labels).loss
        got = ft(**batch, labels=labels).loss
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # DeBERTa-v2 computes its own loss without a problem type, and leaves it unset.
    inferred = None if model_type == "deberta-v2" else problem_type
    assert ft.config.problem_type == hf.config.problem_type == inferred


def test_gradients_match_after_one_backward(tiny):
    model_type, folder = tiny
    hf, ft = load_both(folder)
    batch = padded_batch(model_type)
    labels = torch.tensor([2, 0, 1])
    hf(**batch, labels=labels).loss.backward()
    ft(**batch, labels=labels).loss.backward()
    reference = dict(hf.named_parameters())
    names = [n for n, _ in ft.named_parameters()]
    assert sorted(names) == sorted(n for n, p in reference.items() if p.requires_grad)
    total = torch.stack([p.grad.norm() for p in reference.values()]).norm()
    for name, param in ft.named_parameters():
        expected, got = reference[name].grad, param.grad
        assert got is not None, name
        if name.endswith(("key.bias", "k_lin.bias")):
            # Softmax ignores a constant added to every score: these gradients are zero up to
            # rounding, so only their size is compared.
            assert got.norm() < 1e-6 * total and expected.norm() < 1e-6 * total, name
            continue
        error = (got - expected).norm() / expected.norm()
        assert error < 1e-4, f"{name}: relative gradient error {error:.2e}"


def test_dropout_in_train_mode_only(tiny):
    model_type, folder = tiny
    ft = ferrotune.AutoModelForSequenceClassification.from_pretrained(folder)
    batch = padded_batch(model_type)
    assert not ft.training
    with torch.no_grad():
        assert torch.equal(ft(**batch).logits, ft(**batch).logits)
        ft.train()
        torch.manual_seed(3)
        first = ft(**batch).logits
        torch.manual_seed(3)
        again = ft(**batch).logits
        other = ft(**batch).logits
    assert torch.equal(first, again)  # dropout draws from torch's generator
    assert not torch.equal(first, other)


def test_ferrotune_checkpoint_loads_in_transformers_with_equal_logits(tiny, tmp_path):
    model_type, folder = tiny
    ft = ferrotune.AutoModelForSequenceClassification.from_pretrained(
        folder, id2label={0: "neg", 1: "neu", 2: "pos"}
    )
    with torch.no_grad():  # change the weights so that the test sees them travel
        ft.state_dict()[
            "classifier.out_proj.weight" if model_type in OUT_PROJ_HEADS else "classifier.weight"
        ].mul_(-3)
    ft.save_pretrained(tmp_path)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path, output_loading_info=True
    )
    hf, info = hf
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert hf.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert type(hf).__name__ == type(ft).__name__
    batch = padded_batch(model_type)
    with torch.no_grad():
        torch.testing.assert_close(ft(**batch).logits, hf.eval()(**batch).logits, rtol=0, atol=1e-5)
    again = ferrotune.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(again(**batch).logits, ft(**batch).logits)


def test_pytorch_bin_and_sharded_checkpoints(tiny, tmp_path):
    model_type, folder = tiny
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = padded_batch(model_type)
    with torch.no_grad():
        expected = hf(**batch).logits
    sharded = tmp_path / "sharded"
    hf.save_pretrained(sharded, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    binary = tmp_path / "bin"
    hf.config.save_pretrained(binary)
    torch.save(hf.state_dict(), binary / "pytorch_model.bin")
    for source in (sharded, binary):
        ft = ferrotune.AutoModelForSequenceClassification.from_pretrained(source)
        with torch.no_grad():
            torch.testing.assert_close(ft(**batch).logits, expected, rtol=0, atol=1e-5)


def test_interop_with_transformers_objects(tiny):
    model_type, folder = tiny
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    ft = ferrotune.AutoModelForSequenceClassification.from_pretrained(hf)
    back = ft.to_transformers().eval()
    batch = padded_batch(model_type)
    with torch.no_grad():
        expected = hf(**batch).logits
        torch.testing.assert_close(ft(**batch).logits, expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(back(**batch).logits, expected, rtol=0, atol=1e-6)


def test_parameters_share_storage_with_the_rust_model(tiny):
    model_type, folder = tiny
    ft = ferrotune.AutoModelForSequenceClassification.from_pretrained(folder)
    batch = padded_batch(model_type)
    params = dict(ft.named_parameters())
    assert all(p.requires_grad for p in params.values())
    state = ft.state_dict()
    assert all(state[k].data_ptr() == p.data_ptr() for k, p in params.items())
    with torch.no_grad():
        before = ft(**batch).logits
        for p in ft.parameters():
            if p.dim() == 2 and p.shape[0] == ft.num_labels:
                p.zero_()  # the last linear layer: logits become its bias
        after = ft(**batch).logits
    assert not torch.equal(before, after)
    assert torch.allclose(after, after[0].expand_as(after))
    assert ft.num_parameters() == sum(p.numel() for p in hf_params(folder))


def hf_params(folder):
    return transformers.AutoModelForSequenceClassification.from_pretrained(folder).parameters()


def test_to_dtype_and_device(tiny):
    model_type, folder = tiny
    ft = ferrotune.AutoModelForSequenceClassification.from_pretrained(folder)
    assert ft.device == torch.device("cpu") and ft.dtype == torch.float32
    batch = padded_batch(model_type)
    with torch.no_grad():
        ref = ft(**batch).logits
        ft.to(torch.bfloat16)
        assert ft.dtype == torch.bfloat16
        assert all(p.dtype == torch.bfloat16 for p in ft.parameters())
        low = ft(**batch).logits
        assert low.dtype == torch.bfloat16
        torch.testing.assert_close(low.float(), ref, rtol=0, atol=0.1)
        ft.to("cpu", torch.float32)
    assert ft.dtype == torch.float32


def test_minilm_matches_transformers(minilm_dir):
    torch.manual_seed(0)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=2)
    ft = ferrotune.AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=2)
    ft.load_state_dict(
        {k: v for k, v in hf.state_dict().items() if k.startswith("classifier")}, strict=False
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    batch = tokenizer(
        [
            "I can't see how autonomous cars won't cause a mess",
            "¡hola, me llamo lewis!",
            "Claritin works wonders 😀 http://t.co/x",
        ],
        padding=True,
        return_tensors="pt",
    )
    labels = torch.tensor([0, 1, 1])
    out_hf, out_ft = hf.eval()(**batch, labels=labels), ft(**batch, labels=labels)
    torch.testing.assert_close(out_ft.logits, out_hf.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(out_ft.loss, out_hf.loss, rtol=0, atol=1e-6)
    out_hf.loss.backward()
    out_ft.loss.backward()
    reference = dict(hf.named_parameters())
    for name, param in ft.named_parameters():
        if name.endswith("key.bias"):
            continue  # analytically zero, see test_gradients_match_after_one_backward
        expected = reference[name].grad
        error = (param.grad - expected).norm() / expected.norm()
        assert error < 1e-4, f"{name}: relative gradient error {error:.2e}"


def test_load_report_is_logged_as_transformers_does(minilm_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="ferrotune"):
        model, info = ferrotune.AutoModelForSequenceClassification.from_pretrained(
            minilm_dir, num_labels=2, output_loading_info=True
        )
    assert info["missing_keys"] == ["classifier.bias", "classifier.weight"]
    assert info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    assert "BertForSequenceClassification LOAD REPORT" in caplog.text
    assert "classifier.weight | MISSING" in caplog.text
    assert "Consider training on your downstream task" in caplog.text
    # New head: normal(0, initializer_range) weights and zero bias, as transformers.
    state = model.state_dict()
    assert torch.equal(state["classifier.bias"], torch.zeros(2))
    assert abs(state["classifier.weight"].std().item() - 0.02) < 0.005


def test_config_round_trip_and_labels(tiny, tmp_path):
    model_type, folder = tiny
    config = ferrotune.AutoConfig.from_pretrained(folder)
    assert config.num_labels == 3 and config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    config.num_labels = 2
    assert config.label2id == {"LABEL_0": 0, "LABEL_1": 1}
    config.save_pretrained(tmp_path)
    hf_config = transformers.AutoConfig.from_pretrained(tmp_path)
    assert hf_config.num_labels == 2 and hf_config.model_type == model_type
    with pytest.raises(ValueError, match="problem_type must be one of"):
        config.problem_type = "ranking"


# -- bad input -------------------------------------------------------------------------------


def test_unsupported_model_type_lists_the_supported_ones(tmp_path):
    transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(
        NotImplementedError,
        match='"gpt2" is not supported; ferrotune supports bert, roberta, xlm-roberta, distilbert, '
        "electra, modernbert, deberta-v2",
    ):
        ferrotune.AutoModelForSequenceClassification.from_pretrained(tmp_path)


def test_mismatched_head_is_an_error_naming_key_and_shapes(tiny):
    model_type, folder = tiny
    head = "classifier.out_proj" if model_type in OUT_PROJ_HEADS else "classifier"
    # Keys are checked in sorted order: the bias comes first.
    with pytest.raises(
        ValueError,
        match=rf'"{head}.bias" has shape \[3\] but the model expects '
        r"\[5\]; pass ignore_mismatched_sizes=True",
    ):
        ferrotune.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=5)
    model, info = ferrotune.AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert [(k, list(a), list(b)) for k, a, b in info["mismatched_keys"]] == [
        (f"{head}.bias", [3], [5]),
        (f"{head}.weight", [3, 32], [5, 32]),
    ]
    assert model.num_labels == 5


def test_out_of_vocabulary_id_is_an_index_error(tiny):
    model_type, folder = tiny
    ft = ferrotune.AutoModelForSequenceClassification.from_pretrained(folder)
    with pytest.raises(
        IndexError,
        match=f"input_ids contains {VOCAB + 5}, outside the vocabulary \\(vocab_size {VOCAB}\\)",
    ):
        ft(input_ids=torch.tensor([[5, 6, VOCAB + 5]]))
    with pytest.raises(IndexError, match="input_ids contains -1"):
        ft(input_ids=torch.tensor([[5, -1]]))


def test_too_long_sequence_names_both_lengths(tiny):
    model_type, folder = tiny
    ft = ferrotune.AutoModelForSequenceClassification.from_pretrained(folder)
    if model_type == "deberta-v2":  # relative positions only: no limit, as in transformers
        hf = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
        ids = torch.randint(3, VOCAB, (2, 100), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(
                ft(input_ids=ids).logits, hf(input_ids=ids).logits, rtol=0, atol=1e-5
            )
        return
    limit = 62 if model_type in ROBERTA_POSITIONS else 64
    ft(input_ids=torch.full((1, limit), 5))  # the longest allowed runs
    with pytest.raises(
        ValueError,
        match=f"sequence length {limit + 1} is longer than the "
        f"model's maximum of {limit} positions",
    ):
        ft(input_ids=torch.full((1, limit + 1), 5))


def test_bad_labels_are_value_or_type_errors(tiny):
    model_type, folder = tiny
    ft = ferrotune.AutoModelForSequenceClassification.from_pretrained(folder)
    ids = torch.full((2, 3), 5)
    with pytest.raises(ValueError, match=r"label 3 is outside \[0, 3\) \(num_labels=3\)"):
        ft(input_ids=ids, labels=torch.tensor([0, 3]))
    if model_type == "deberta-v2":  # its own loss leaves out every negative label
        both = ft(input_ids=ids, labels=torch.tensor([-2, 1])).loss
        torch.testing.assert_close(both, ft(input_ids=ids[1:], labels=torch.tensor([1])).loss)
    else:
        with pytest.raises(ValueError, match="label -2 is outside"):
            ft(input_ids=ids, labels=torch.tensor([-2, 1]))
    assert ft(input_ids=ids, labels=torch.tensor([-100, 1])).loss is not None  # ignore_index
    with pytest.raises(ValueError, match="expected one label per example"):
        ft(input_ids=ids, labels=torch.tensor([0, 1, 2]))
    ft.config.problem_type = "multi_label_classification"
    with pytest.raises(TypeError, match="multi-label classification needs float labels"):
        ft(input_ids=ids, labels=torch.tensor([[0, 1, 1], [1, 0, 0]]))
    regression = ferrotune.AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=1, ignore_mismatched_sizes=True
    )
    with pytest.raises(ValueError, match="NaN or infinity"):
        regression(input_ids=ids, labels=torch.tensor([0.5, float("nan")]))


def test_missing_and_corrupt_files(tiny, tmp_path):
    model_type, folder = tiny
    with pytest.raises(
        FileNotFoundError,
        match="model.safetensors, model.safetensors.index.json and pytorch_model.bin",
    ):
        ferrotune.AutoModelForSequenceClassification.from_pretrained(
            _copy(folder, tmp_path / "no_weights", skip="model.safetensors")
        )
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ferrotune.AutoModelForSequenceClassification.from_pretrained(
            _copy(folder, tmp_path / "no_config", skip="config.json")
        )
    corrupt = _copy(folder, tmp_path / "corrupt")
    data = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors: not a valid safetensors file"):
        ferrotune.AutoModelForSequenceClassification.from_pretrained(corrupt)
    broken = _copy(folder, tmp_path / "broken")
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        ferrotune.AutoModelForSequenceClassification.from_pretrained(broken)


def _copy(src, dst, skip=None):
    dst.mkdir()
    for f in src.iterdir():
        if f.name != skip:
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize("model_type", ferrotune._core.SUPPORTED_MODEL_TYPES)
def test_each_class_is_named_and_prefixed_as_in_transformers(model_type):
    theirs = transformers.AutoModelForSequenceClassification._model_mapping[
        transformers.AutoConfig.for_model(model_type).__class__
    ]
    ours = getattr(ferrotune, theirs.__name__)
    assert ours.base_model_prefix == theirs.base_model_prefix
    assert ours.__module__ == "ferrotune.modeling" and ours.__qualname__ == theirs.__name__


def test_electra_without_a_projection_matches_transformers(tmp_path):
    """embedding_size == hidden_size: no `embeddings_project`, in either library."""
    torch.manual_seed(0)
    config = tiny_config("electra", embedding_size=32, num_labels=2)
    transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path)
    hf, ft = load_both(tmp_path)
    assert not any("embeddings_project" in k for k in ft.state_dict())
    batch = padded_batch("electra")
    with torch.no_grad():
        torch.testing.assert_close(ft(**batch).logits, hf(**batch).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_modernbert_pooling_and_older_config_keys(tmp_path, pooling):
    """Mean pooling over padded rows, and a config.json as older checkpoints write it
    (global_attn_every_n_layers, global/local_rope_theta, no layer_types/rope_parameters)."""
    import json

    torch.manual_seed(0)
    config = tiny_config("modernbert", classifier_pooling=pooling, num_labels=2)
    transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["layer_types"] == ["full_attention", "sliding_attention", "full_attention"]
    for key in ("layer_types", "rope_parameters"):
        written.pop(key)
    written.update(global_attn_every_n_layers=2, global_rope_theta=500.0, local_rope_theta=50.0)
    (tmp_path / "config.json").write_text(json.dumps(written))
    hf, ft = load_both(tmp_path)
    assert hf.config.rope_parameters["full_attention"]["rope_theta"] == 500.0
    batch = padded_batch("modernbert")
    with torch.no_grad():
        torch.testing.assert_close(ft(**batch).logits, hf(**batch).logits, rtol=0, atol=1e-5)
        ids = batch["input_ids"][:, :4]
        torch.testing.assert_close(
            ft(input_ids=ids).logits, hf(input_ids=ids).logits, rtol=0, atol=1e-5
        )


def test_modernbert_config_errors_name_the_key():
    config = tiny_config("modernbert").to_dict()
    config["layer_types"] = ["full_attention", "dilated_attention", "full_attention"]
    build = ferrotune.AutoModelForSequenceClassification.from_config
    with pytest.raises(ValueError, match='"layer_types" holds "dilated_attention"'):
        build(ferrotune.PretrainedConfig(**config))
    config["layer_types"] = None
    config["rope_parameters"]["full_attention"]["rope_type"] = "yarn"
    with pytest.raises(NotImplementedError, match='rope_type "yarn"'):
        build(ferrotune.PretrainedConfig(**config))


def test_attn_implementation_takes_transformers_names(tiny):
    model_type, folder = tiny
    load = ferrotune.AutoModelForSequenceClassification.from_pretrained
    assert load(folder, attn_implementation="eager").attention_implementation == "explicit"
    assert load(folder, attn_implementation="sdpa").attention_implementation == "fused"
    with pytest.raises(ValueError, match='"flash_attention_2" is not available in ferrotune'):
        load(folder, attn_implementation="flash_attention_2")


# -- DeBERTa-v2 settings beyond the tiny model's ----------------------------------------------


def deberta_pair(tmp_path, **overrides):
    torch.manual_seed(0)
    config = tiny_config("deberta-v2", num_labels=3, **overrides)
    transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path)
    return load_both(tmp_path)


def assert_same_logits_and_gradients(hf, ft, batch):
    with torch.no_grad():
        torch.testing.assert_close(ft(**batch).logits, hf(**batch).logits, rtol=0, atol=1e-5)
    labels = torch.tensor([2, 0, 1])
    hf(**batch, labels=labels).loss.backward()
    ft(**batch, labels=labels).loss.backward()
    reference = dict(hf.named_parameters())
    assert sorted(n for n, _ in ft.named_parameters()) == sorted(reference)
    total = torch.stack([p.grad.norm() for p in reference.values() if p.grad is not None]).norm()
    for name, param in ft.named_parameters():
        expected, got = reference[name].grad, param.grad
        if expected is None:  # unused: relative embeddings without c2p or p2c
            assert got is None or not got.any(), name
            continue
        if expected.norm() < 1e-6 * total:
            # A bias that softmax ignores (a constant added to a row of scores).
            assert got.norm() < 1e-5 * total, name
            continue
        error = (got - expected).norm() / expected.norm()
        assert error < 1e-4, f"{name}: relative gradient error {error:.2e}"


@pytest.mark.parametrize(
    "overrides",
    [
        dict(share_att_key=False),
        dict(share_att_key=False, pos_att_type=["c2p"]),
        dict(pos_att_type="c2p|p2c"),  # the older string form
        dict(pos_att_type=["p2c"]),
        dict(position_buckets=-1),
        dict(position_buckets=0, max_relative_positions=-1),
        dict(position_buckets=-1, max_relative_positions=3),
        dict(embedding_size=16),
        dict(position_biased_input=True, type_vocab_size=0),
        dict(norm_rel_ebd="none"),
        dict(relative_attention=False),
        dict(pos_att_type=None),
        dict(conv_kernel_size=3),
        dict(conv_kernel_size=3, conv_groups=4, conv_act="gelu"),
        dict(hidden_act="gelu_new", pooler_hidden_act="tanh", cls_dropout=0.2),
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_deberta_settings_match_transformers(tmp_path, overrides):
    hf, ft = deberta_pair(tmp_path, **overrides)
    types = overrides.get("type_vocab_size", 2) > 0
    assert_same_logits_and_gradients(hf, ft, padded_batch("deberta-v2", types))
    if overrides.get("embedding_size"):
        assert ft.state_dict()["deberta.embeddings.embed_proj.weight"].shape == (32, 16)


def test_deberta_left_padding_matches_transformers(tmp_path):
    """Padding first: the head reads a padded position, which attends to nothing (the mask is
    the outer product of the 2-D mask) and so averages every value, as in transformers."""
    hf, ft = deberta_pair(tmp_path, conv_kernel_size=3)
    batch = padded_batch("deberta-v2")
    batch = {k: v.flip(1) for k, v in batch.items()}
    with torch.no_grad():
        torch.testing.assert_close(ft(**batch).logits, hf(**batch).logits, rtol=0, atol=1e-5)


def test_deberta_under_bfloat16_autocast_is_transformers_bit_for_bit(tmp_path):
    """Under bfloat16 autocast transformers divides the scores by the scale cast to the
    queries' dtype (the tiny model's sqrt(8 · 3) = 4.899 is 4.906 in bfloat16), and so does
    ferrotune: the same logits, bit for bit, padding included."""
    hf, ft = deberta_pair(tmp_path)
    hf.eval()
    ft.eval()
    batch = padded_batch("deberta-v2")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        theirs, ours = hf(**batch).logits, ft(**batch).logits
    assert ours.dtype == theirs.dtype == torch.bfloat16
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize(
    "problem_type, num_labels, labels",
    [
        ("regression", 1, [0.5, -1.0, 2.0]),
        ("single_label_classification", 3, [0, 2, 1]),
        ("multi_label_classification", 3, [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]),
        (None, 3, [0, -1, 2]),  # negative labels are left out
        (None, 3, [[0.2, 0.3, 0.5], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),  # soft labels
    ],
)
def test_deberta_losses_match_transformers(tmp_path, problem_type, num_labels, labels):
    kwargs = {"problem_type": problem_type} if problem_type else {}
    hf, ft = deberta_pair(tmp_path, **kwargs)
    if num_labels != 3:
        hf, ft = load_both(tmp_path, num_labels=num_labels, ignore_mismatched_sizes=True)
        ft.load_state_dict(
            {k: v for k, v in hf.state_dict().items() if k in ft.state_dict()}, strict=False
        )
    batch = padded_batch("deberta-v2")
    labels = torch.tensor(labels)
    expected = hf(**batch, labels=labels).loss
    got = ft(**batch, labels=labels).loss
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert ft.config.problem_type == hf.config.problem_type
    expected.backward()
    got.backward()
    reference = dict(hf.named_parameters())
    for name in ("classifier.weight", "deberta.encoder.layer.0.attention.self.query_proj.weight"):
        torch.testing.assert_close(
            dict(ft.named_parameters())[name].grad, reference[name].grad, rtol=1e-4, atol=1e-7
        )


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("pos_att_type", ["c2p", "p2p"], '"pos_att_type" holds "p2p"'),
        ("pos_att_type", "c2p|p2p", '"pos_att_type" holds "p2p"'),
        ("norm_rel_ebd", "batch_norm", '"norm_rel_ebd" holds "batch_norm"'),
        ("conv_kernel_size", 4, '"conv_kernel_size" must be odd'),
        ("pooler_hidden_size", 16, '"pooler_hidden_size" \\(16\\) must equal'),
        ("share_att_key", "yes", '"share_att_key" must be true or false'),
    ],
)
def test_deberta_unsupported_settings_name_the_key(key, value, message):
    config = tiny_config("deberta-v2").to_dict()
    config[key] = value
    with pytest.raises(ValueError, match=message):
        ferrotune.AutoModelForSequenceClassification.from_config(
            ferrotune.PretrainedConfig(**config)
        )


def test_deberta_from_config_initializes_as_transformers():
    config = tiny_config("deberta-v2", initializer_range=0.02, embedding_size=16)
    torch.manual_seed(0)
    ft = ferrotune.AutoModelForSequenceClassification.from_config(
        ferrotune.PretrainedConfig(**config.to_dict())
    )
    hf = transformers.AutoModelForSequenceClassification.from_config(config)
    theirs = hf.state_dict()
    ours = ft.state_dict()
    assert sorted(ours) == sorted(theirs)
    for name, tensor in ours.items():
        assert tensor.shape == theirs[name].shape, name
        if name.endswith("bias") or "LayerNorm" in name:
            assert torch.equal(tensor, theirs[name]), name  # zeros and ones
        elif tensor.numel() >= 256:
            assert abs(tensor.std().item() - 0.02) < 0.004, name
    assert torch.equal(ours["deberta.embeddings.word_embeddings.weight"][0], torch.zeros(16))
