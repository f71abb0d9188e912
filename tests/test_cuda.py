"""The same notebook on an NVIDIA GPU: models, Trainer (fp32, bf16, fp16 with loss scaling) and
pipeline against transformers on the same GPU. Skipped without CUDA; `bench/gpu_check.sh` runs
these with the benchmark."""

import datasets
import ferrotune
import pytest
import torch
import transformers
from test_models import MODEL_TYPES, tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# Each model type's dropout keys (the others: BERT's).
DROPOUT_KEYS = {
    "distilbert": ("dropout", "attention_dropout"),
    "modernbert": ("attention_dropout", "mlp_dropout", "embedding_dropout", "classifier_dropout"),
    "deberta-v2": ("hidden_dropout_prob", "attention_probs_dropout_prob", "pooler_dropout"),
}


def tiny(model_type, folder, dropout=0.0):
    """test_models' tiny model of `model_type`, with `dropout` everywhere, saved to `folder`."""
    torch.manual_seed(0)
    keys = DROPOUT_KEYS.get(model_type, ("hidden_dropout_prob", "attention_probs_dropout_prob"))
    config = tiny_config(model_type, num_labels=3, **dict.fromkeys(keys, dropout))
    transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    return folder


def batch(model_type):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 99, (3, 11), generator=g)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 1 if model_type in ("roberta", "xlm-roberta") else 0
    return {
        "input_ids": ids.cuda(),
        "attention_mask": mask.cuda(),
        "labels": torch.tensor([0, 2, 1]).cuda(),
    }


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_logits_and_gradients_match_transformers_on_cuda(model_type, tmp_path):
    folder = tiny(model_type, tmp_path)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(folder).cuda().train()
    ft = ferrotune.AutoModelForSequenceClassification.from_pretrained(folder, device="cuda")
    ft.train()
    inputs = batch(model_type)
    a, b = hf(**inputs), ft(**inputs)
    torch.testing.assert_close(b.logits, a.logits, atol=1e-5, rtol=1e-4)
    a.loss.backward()
    b.loss.backward()
    theirs = dict(hf.named_parameters())
    for name, mine in ft.named_parameters():
        if theirs[name].grad is None or "attention.self.key.bias" in name or "k_lin.bias" in name:
            continue  # the key bias has an analytically zero gradient
        torch.testing.assert_close(mine.grad, theirs[name].grad, atol=1e-5, rtol=1e-3, msg=name)


def rows(n=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(3, 12, (1,), generator=g))
        ids = torch.randint(5, 99, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "attention_mask": [1] * length, "labels": ids[0] % 3})
    return datasets.Dataset.from_list(out)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_cuda_logs_as_transformers(precision, tmp_path, minilm_dir):
    """The same run with each library on the GPU; fp16 includes accelerate's loss scaling."""
    folder = tiny("bert", tmp_path / "model")
    data = rows()
    collator = transformers.DataCollatorWithPadding(
        transformers.AutoTokenizer.from_pretrained(minilm_dir)
    )  # pads with id 0, as BERT

    def run(lib):
        model = lib.AutoModelForSequenceClassification.from_pretrained(folder)
        args = lib.TrainingArguments(
            output_dir=str(tmp_path / lib.__name__),
            num_train_epochs=2,
            per_device_train_batch_size=8,
            learning_rate=1e-3,
            logging_steps=2,
            save_strategy="epoch",
            report_to="none",
            disable_tqdm=True,
            bf16=precision == "bf16",
            fp16=precision == "fp16",
        )
        trainer = lib.Trainer(model=model, args=args, train_dataset=data, data_collator=collator)
        trainer.train()
        return trainer

    ours, theirs = run(ferrotune), run(transformers)
    assert ours.model.device.type == "cuda"
    tolerance = {"fp32": 1e-4, "bf16": 2e-2, "fp16": 5e-3}[precision]
    expected, got = theirs.state.log_history[:-1], ours.state.log_history[:-1]
    assert [log["step"] for log in got] == [log["step"] for log in expected]
    for a, b in zip(expected, got):
        assert b["loss"] == pytest.approx(a["loss"], abs=tolerance)
        assert b["learning_rate"] == pytest.approx(a["learning_rate"], abs=1e-12)
    if precision == "fp16":  # the loss scaler is saved as GradScaler.state_dict() lays it out
        saved = torch.load(
            tmp_path / "ferrotune" / "checkpoint-16" / "scaler.pt", weights_only=True
        )
        reference = torch.load(
            tmp_path / "transformers" / "checkpoint-16" / "scaler.pt", weights_only=True
        )
        assert saved == reference


def test_pipeline_on_gpu_matches_transformers(minilm_dir):
    texts = ["I love it", "this is terrible", "", "meh " * 600]
    theirs = transformers.pipeline("sentiment-analysis", model=str(minilm_dir), device=0)
    ours = ferrotune.pipeline("sentiment-analysis", model=str(minilm_dir), device=0)
    for a, b in zip(theirs(texts, truncation=True), ours(texts, truncation=True)):
        assert a["label"] == b["label"]
        assert b["score"] == pytest.approx(a["score"], abs=1e-4)


def test_bf16_fine_tuning_of_the_bundled_model_on_the_tweets(minilm_dir, tweets, tmp_path):
    """A real run on the GPU: MiniLM, 4,000 tweets, one epoch, bf16; accuracy within two points
    of transformers' on 1,000 held-out tweets."""
    frame = tweets[tweets.sentiment != "neutral"].sample(5000, random_state=0)
    data = datasets.Dataset.from_dict(
        {"text": frame.text.tolist(), "label": (frame.sentiment == "positive").astype(int).tolist()}
    )

    def accuracy(lib):
        tokenizer = lib.AutoTokenizer.from_pretrained(minilm_dir)
        encoded = data.map(lambda b: tokenizer(b["text"], truncation=True), batched=True)
        model = lib.AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=2)
        args = lib.TrainingArguments(
            output_dir=str(tmp_path / lib.__name__),
            bf16=True,
            num_train_epochs=1,
            per_device_train_batch_size=32,
            learning_rate=5e-5,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=0,
        )
        trainer = lib.Trainer(
            model=model,
            args=args,
            processing_class=tokenizer,
            train_dataset=encoded.select(range(4000)),
            compute_metrics=lambda p: {
                "accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())
            },
        )
        trainer.train()
        return trainer.evaluate(encoded.select(range(4000, 5000)))["eval_accuracy"]

    ours, theirs = accuracy(ferrotune), accuracy(transformers)
    assert ours > 0.75
    assert ours == pytest.approx(theirs, abs=0.02)
