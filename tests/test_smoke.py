"""The smoke run: what ferrotune must do on every supported torch, in seconds. It runs with the
full suite on the newest torch, and on the oldest from an installed wheel with no Rust on the
machine (tests/test_install.py): import, tokenize, a forward and backward against transformers,
three Trainer steps against transformers' Trainer, a pipeline call."""

import shutil

import datasets
import ferrotune
import pytest
import torch
import transformers
from ferrotune import _native

TEXTS = ["Me encantó, llegó a tiempo", "¿Funciona? ¡No! 😡 http://t.co/abc", "ok", "   "]


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory, minilm_dir):
    """A seeded tiny BERT classifier (hidden 32, no dropout) with all-MiniLM-L6-v2's tokenizer."""
    folder = tmp_path_factory.mktemp("smoke")
    vocab = len(transformers.AutoTokenizer.from_pretrained(minilm_dir))
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.5,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
    )
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    for f in minilm_dir.iterdir():
        if f.is_file() and f.name != "config.json" and not f.name.endswith(".safetensors"):
            shutil.copy(f, folder / f.name)
    return folder


def test_the_native_module_is_the_one_for_the_installed_torch():
    assert _native.torch_minor(ferrotune._core.TORCH_VERSION) == _native.torch_minor(
        torch.__version__
    )


def test_tokenize_as_transformers(smoke_dir):
    ours = ferrotune.AutoTokenizer.from_pretrained(smoke_dir)(TEXTS, padding=True)
    theirs = transformers.AutoTokenizer.from_pretrained(smoke_dir)(TEXTS, padding=True)
    assert ours["input_ids"] == theirs["input_ids"]
    assert ours["attention_mask"] == theirs["attention_mask"]


def test_forward_and_backward_as_transformers(smoke_dir):
    batch = dict(
        transformers.AutoTokenizer.from_pretrained(smoke_dir)(
            TEXTS, padding=True, return_tensors="pt"
        )
    )
    labels = torch.tensor([1, 0, 1, 0])
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(smoke_dir)
    ft = ferrotune.AutoModelForSequenceClassification.from_pretrained(smoke_dir)
    expected, got = hf(**batch, labels=labels), ft(**batch, labels=labels)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=0)
    assert got.loss.item() == pytest.approx(expected.loss.item(), abs=1e-6)
    expected.loss.backward()
    got.loss.backward()
    reference = dict(hf.named_parameters())
    for name, param in ft.named_parameters():
        if name.endswith("key.bias"):  # zero up to rounding: softmax ignores a constant shift
            continue
        error = (param.grad - reference[name].grad).norm() / reference[name].grad.norm()
        assert error < 1e-4, f"{name}: relative gradient error {error:.2e}"


def test_three_trainer_steps_as_transformers(smoke_dir, tmp_path):
    tokenizer = transformers.AutoTokenizer.from_pretrained(smoke_dir)
    rows = [{"text": f"{t} {i}", "label": i % 2} for i in range(6) for t in TEXTS]
    data = datasets.Dataset.from_list(rows).map(lambda b: tokenizer(b["text"]), batched=True)

    def train(lib, model):
        args = lib.TrainingArguments(
            output_dir=str(tmp_path / lib.__name__),
            max_steps=3,
            per_device_train_batch_size=8,
            learning_rate=1e-3,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = lib.Trainer(
            model=model,
            args=args,
            train_dataset=data,
            processing_class=lib.AutoTokenizer.from_pretrained(smoke_dir),
        )
        trainer.train()
        return [log for log in trainer.state.log_history if "loss" in log]

    expected = train(
        transformers, transformers.AutoModelForSequenceClassification.from_pretrained(smoke_dir)
    )
    got = train(ferrotune, ferrotune.AutoModelForSequenceClassification.from_pretrained(smoke_dir))
    assert [log["step"] for log in got] == [log["step"] for log in expected] == [1, 2, 3]
    for e, g in zip(expected, got):
        assert g["loss"] == pytest.approx(e["loss"], abs=1e-4), (e, g)
        assert g["grad_norm"] == pytest.approx(e["grad_norm"], rel=1e-3), (e, g)
        assert g["learning_rate"] == pytest.approx(e["learning_rate"], abs=1e-12), (e, g)


def test_pipeline_as_transformers(smoke_dir):
    expected = transformers.pipeline("sentiment-analysis", model=str(smoke_dir))(TEXTS)
    got = ferrotune.pipeline("sentiment-analysis", model=str(smoke_dir))(TEXTS)
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    assert [g["score"] for g in got] == pytest.approx([e["score"] for e in expected], abs=1e-5)
