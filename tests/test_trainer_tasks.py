"""Trainer for token classification and masked language modeling against transformers' Trainer
with its collators, on tiny seeded BERTs and a tiny WordPiece tokenizer."""

import ferrotune
import numpy as np
import pytest
import torch
import transformers
from test_trainer import arguments, compare_logs

VOCAB = 99
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
NUM_TAGS = 5


@pytest.fixture(scope="module")
def tiny_tokenizer_dir(tmp_path_factory):
    """A WordPiece tokenizer of VOCAB tokens (the 5 special ones, then w5 ... w98), saved by
    transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(SPECIAL + [f"w{i}" for i in range(len(SPECIAL), VOCAB)])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    folder = tmp_path_factory.mktemp("tiny-tokenizer")
    fast.save_pretrained(folder)
    return folder


def tiny_model(folder, head):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        num_labels=NUM_TAGS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    head(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("tagger"), transformers.BertForTokenClassification)


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("mlm"), transformers.BertForMaskedLM)


def sentences(n, seed):
    """[CLS] w... [SEP] rows of 3 to 14 tokens, with per-token tags (-100 on the special ones)."""
    import datasets

    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(1, 13, (1,), generator=g))
        words = torch.randint(len(SPECIAL), VOCAB, (length,), generator=g).tolist()
        rows.append(
            {
                "input_ids": [2, *words, 3],
                "attention_mask": [1] * (length + 2),
                "labels": [-100, *[w % NUM_TAGS for w in words], -100],
            }
        )
    return datasets.Dataset.from_list(rows)


def token_accuracy(eval_pred):
    predictions, labels = eval_pred
    kept = labels != -100
    return {"accuracy": float((predictions.argmax(-1)[kept] == labels[kept]).mean())}


def masked_accuracy(eval_pred):
    predictions, labels = eval_pred  # predictions: argmax ids (preprocess_logits_for_metrics)
    kept = labels != -100
    return {"accuracy": float((predictions[kept] == labels[kept]).mean())}


def run_both(
    lib_collator, model_dir, hf_class, ft_class, tokenizer_dir, train, evaluation, out, **kw
):
    collator_options = kw.pop("collator_options", {})
    compute_metrics = kw.pop("compute_metrics", None)
    preprocess = kw.pop("preprocess_logits_for_metrics", None)
    trainers = []
    for lib, model_class in ((transformers, hf_class), (ferrotune, ft_class)):
        tokenizer = lib.AutoTokenizer.from_pretrained(tokenizer_dir)
        torch.manual_seed(0)
        trainer = lib.Trainer(
            model=model_class.from_pretrained(model_dir),
            args=arguments(lib, out / lib.__name__, **kw),
            train_dataset=train,
            eval_dataset=evaluation,
            data_collator=getattr(lib, lib_collator)(tokenizer, **collator_options),
            compute_metrics=compute_metrics,
            preprocess_logits_for_metrics=preprocess,
        )
        trainer.train()
        trainers.append(trainer)
    return trainers


@pytest.mark.parametrize(
    "overrides", [{}, {"gradient_accumulation_steps": 2, "eval_strategy": "steps", "eval_steps": 3}]
)
def test_token_classification_trains_as_transformers(
    tagger_dir, tiny_tokenizer_dir, tmp_path, overrides
):
    train, evaluation = sentences(29, 1), sentences(13, 2)
    hf, ft = run_both(
        "DataCollatorForTokenClassification",
        tagger_dir,
        transformers.AutoModelForTokenClassification,
        ferrotune.AutoModelForTokenClassification,
        tiny_tokenizer_dir,
        train,
        evaluation,
        tmp_path,
        compute_metrics=token_accuracy,
        **overrides,
    )
    compare_logs(hf.state.log_history, ft.state.log_history)
    expected, got = hf.predict(evaluation), ft.predict(evaluation)
    # [examples, longest, tags], padded with -100 across batches as transformers' nested_concat.
    assert got.predictions.shape == expected.predictions.shape
    np.testing.assert_allclose(got.predictions, expected.predictions, atol=1e-5)
    np.testing.assert_array_equal(got.label_ids, expected.label_ids)
    assert got.metrics["test_loss"] == pytest.approx(expected.metrics["test_loss"], abs=1e-5)


def masked_lm_both(mlm_dir, tiny_tokenizer_dir, tmp_path, **kw):
    """Both Trainers on the same masked-LM data, their logs compared; then (transformers',
    ferrotune's) predictions of the evaluation set under the same torch seed."""
    train, evaluation = sentences(29, 3), sentences(13, 4)
    train, evaluation = train.remove_columns("labels"), evaluation.remove_columns("labels")
    hf, ft = run_both(
        "DataCollatorForLanguageModeling",
        mlm_dir,
        transformers.AutoModelForMaskedLM,
        ferrotune.AutoModelForMaskedLM,
        tiny_tokenizer_dir,
        train,
        evaluation,
        tmp_path,
        **kw,
    )
    compare_logs(hf.state.log_history, ft.state.log_history)
    torch.manual_seed(5)
    expected = hf.predict(evaluation)
    torch.manual_seed(5)
    return expected, ft.predict(evaluation)


@pytest.mark.parametrize(
    "overrides", [{}, {"gradient_accumulation_steps": 2, "eval_strategy": "steps", "eval_steps": 3}]
)
def test_masked_lm_trains_as_transformers(mlm_dir, tiny_tokenizer_dir, tmp_path, overrides):
    expected, got = masked_lm_both(
        mlm_dir,
        tiny_tokenizer_dir,
        tmp_path,
        collator_options={"mlm_probability": 0.3},
        compute_metrics=masked_accuracy,
        preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1),
        **overrides,
    )
    np.testing.assert_array_equal(got.label_ids, expected.label_ids)  # the same masks
    np.testing.assert_array_equal(got.predictions, expected.predictions)
    assert got.metrics["test_loss"] == pytest.approx(expected.metrics["test_loss"], abs=1e-5)


def test_loss_only_evaluation_gathers_no_logits(mlm_dir, tiny_tokenizer_dir, tmp_path):
    """Without compute_metrics (and with prediction_loss_only) only the loss is computed, as in
    transformers: a masked LM's logits would be [examples, length, vocabulary]."""
    expected, got = masked_lm_both(mlm_dir, tiny_tokenizer_dir, tmp_path, prediction_loss_only=True)
    assert expected.predictions is None and expected.label_ids is None
    assert got.predictions is None and got.label_ids is None
    assert got.metrics["test_loss"] == pytest.approx(expected.metrics["test_loss"], abs=1e-5)


def test_sequence_classification_with_the_padding_collator_trains_as_transformers(
    tiny_tokenizer_dir, tmp_path_factory, tmp_path
):
    model_dir = tiny_model(
        tmp_path_factory.mktemp("classifier"), transformers.BertForSequenceClassification
    )

    def labelled(n, seed):
        data = sentences(n, seed).remove_columns("labels")
        return data.add_column("label", [len(r) % NUM_TAGS for r in data["input_ids"]])

    hf, ft = run_both(
        "DataCollatorWithPadding",
        model_dir,
        transformers.AutoModelForSequenceClassification,
        ferrotune.AutoModelForSequenceClassification,
        tiny_tokenizer_dir,
        labelled(29, 6),
        labelled(13, 7),
        tmp_path,
        collator_options={"pad_to_multiple_of": 8},
    )
    compare_logs(hf.state.log_history, ft.state.log_history)


def test_bad_token_labels_name_the_example(tagger_dir, tiny_tokenizer_dir, tmp_path):
    tokenizer = ferrotune.AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    collator = ferrotune.DataCollatorForTokenClassification(tokenizer)
    rows = sentences(6, 5).to_list()
    rows[4]["labels"] = rows[4]["labels"][:-1]
    n = len(rows[4]["input_ids"])

    def trainer(data):
        return ferrotune.Trainer(
            model=ferrotune.AutoModelForTokenClassification.from_pretrained(tagger_dir),
            args=arguments(ferrotune, tmp_path, eval_strategy="no"),
            train_dataset=data,
            data_collator=collator,
        )

    with pytest.raises(
        ValueError, match=f"labels at row 4 has {n - 1} values but input_ids has {n}"
    ):
        trainer(rows).train()
    rows = sentences(6, 5).to_list()
    rows[3]["labels"][2] = NUM_TAGS
    with pytest.raises(
        ValueError, match=rf"label {NUM_TAGS} at row 3 \(token 2\) is outside \[0, {NUM_TAGS}\)"
    ):
        trainer(rows).train()
