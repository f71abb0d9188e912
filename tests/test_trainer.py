"""Trainer and TrainingArguments against transformers' Trainer, on a tiny seeded model."""

import json
import logging
import os
import signal
import threading

import datasets
import ferrotune
import numpy as np
import pytest
import torch
import transformers
from ferrotune.demo import default_model
from test_models import DEBERTA_V3

VOCAB = 99


def save_tiny(folder, dropout):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        num_labels=2,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    transformers.BertForSequenceClassification(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny BERT classifier (dropout on) saved by transformers."""
    return save_tiny(tmp_path_factory.mktemp("tiny"), 0.1)


@pytest.fixture(scope="module")
def tiny_no_dropout_dir(tmp_path_factory):
    """The same without dropout: ferrotune draws its dropout masks differently from torch."""
    return save_tiny(tmp_path_factory.mktemp("tiny-no-dropout"), 0.0)


def make_dataset(n=37, seed=1):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(3, 12, (1,), generator=g))
        ids = torch.randint(1, VOCAB, (length,), generator=g).tolist()
        rows.append(
            {
                "input_ids": ids,
                "attention_mask": [1] * length,
                "labels": ids[0] % 2,
                "text": "unused column",
            }
        )
    return datasets.Dataset.from_list(rows)


def accuracy(eval_pred):
    predictions, labels = eval_pred
    return {"accuracy": float((predictions.argmax(-1) == labels).mean())}


def arguments(lib, out, **overrides):
    kwargs = dict(
        output_dir=str(out),
        num_train_epochs=3,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        weight_decay=0.01,
        logging_steps=2,
        eval_strategy="epoch",
        save_strategy="no",
        report_to="none",
        warmup_steps=0.2,
        use_cpu=True,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return lib.TrainingArguments(**kwargs)


def run_both(tiny_dir, tmp_path, train, evaluation, **overrides):
    collator = transformers.DataCollatorWithPadding(_bert_tokenizer())
    hf_model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    hf = transformers.Trainer(
        model=hf_model,
        args=arguments(transformers, tmp_path / "hf", **overrides),
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=collator,
        compute_metrics=accuracy,
    )
    hf_out = hf.train()
    ft_model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    ft = ferrotune.Trainer(
        model=ft_model,
        args=arguments(ferrotune, tmp_path / "ft", **overrides),
        train_dataset=train,
        eval_dataset=evaluation,
        compute_metrics=accuracy,
    )
    ft_out = ft.train()
    return (hf, hf_out), (ft, ft_out)


def _bert_tokenizer():
    return transformers.AutoTokenizer.from_pretrained(default_model())


def compare_logs(expected, got):
    assert len(expected) == len(got)
    for a, b in zip(expected, got):
        assert set(a) == set(b), (a, b)
        for key, value in a.items():
            if key.endswith(("runtime", "per_second")) or key == "total_flos":
                continue
            tolerance = {
                "loss": 1e-4,
                "learning_rate": 1e-12,
                "grad_norm": 1e-3,
                "eval_loss": 1e-5,
                "train_loss": 1e-4,
            }.get(key, 0)
            assert b[key] == pytest.approx(value, abs=tolerance), (key, a, b)


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_logs_match_transformers_with_shuffling(tiny_no_dropout_dir, tmp_path, grad_accum):
    # The same seeded sampler order: the runs agree step by step.
    data = make_dataset()
    (hf, hf_out), (ft, ft_out) = run_both(
        tiny_no_dropout_dir, tmp_path, data, data, gradient_accumulation_steps=grad_accum
    )
    compare_logs(hf.state.log_history, ft.state.log_history)
    assert ft_out.global_step == hf_out.global_step
    assert ft_out.training_loss == pytest.approx(hf_out.training_loss, abs=1e-4)
    assert list(ft_out.metrics) == list(hf_out.metrics)
    assert ft.state.log_history[-1]["epoch"] == 3.0


def test_a_second_train_keeps_the_optimizer_as_transformers(tiny_no_dropout_dir, tmp_path):
    # transformers' Trainer keeps self.optimizer from one train() to the next: its moments and
    # step counts, and the learning rate its new schedule starts from (the optimizer's
    # initial_lr, not args.learning_rate changed in between).
    data = make_dataset()
    (hf, _), (ft, _) = run_both(tiny_no_dropout_dir, tmp_path, data, data, eval_strategy="no")
    hf.args.learning_rate = ft.args.learning_rate = 5e-4
    hf_out, ft_out = hf.train(), ft.train()
    compare_logs(hf.state.log_history, ft.state.log_history)
    assert ft_out.training_loss == pytest.approx(hf_out.training_loss, abs=1e-4)
    peak = max(log.get("learning_rate", 0.0) for log in hf.state.log_history)
    assert peak == pytest.approx(1e-3)
    expected = hf.model.state_dict()
    for name, value in ft.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-4, atol=1e-5, msg=name)


TINY_SHAPE = dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_labels=2)


@pytest.mark.parametrize(
    "config",
    [
        # ELECTRA: embeddings narrower than the hidden size.
        lambda: transformers.ElectraConfig(
            vocab_size=VOCAB,
            embedding_size=16,
            num_hidden_layers=2,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            **TINY_SHAPE,
        ),
        # ModernBERT: global, sliding, global layers; a window shorter than the rows; mean pooling.
        lambda: transformers.ModernBertConfig(
            vocab_size=VOCAB,
            num_hidden_layers=3,
            global_attn_every_n_layers=2,
            local_attention=4,
            classifier_pooling="mean",
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            cls_token_id=1,
            sep_token_id=2,
            **TINY_SHAPE,
        ),
        # DeBERTa-v3's settings: relative positions only, log buckets, shared position keys.
        lambda: transformers.DebertaV2Config(
            vocab_size=VOCAB,
            num_hidden_layers=2,
            **DEBERTA_V3,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            **TINY_SHAPE,
        ),
    ],
    ids=["electra", "modernbert", "deberta-v2"],
)
def test_other_architectures_log_as_transformers(tmp_path, config):
    torch.manual_seed(0)
    config = config()
    transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(
        tmp_path / "model"
    )
    data = make_dataset()
    (hf, hf_out), (ft, ft_out) = run_both(tmp_path / "model", tmp_path, data, data)
    assert type(ft.model).__name__ == type(hf.model).__name__
    compare_logs(hf.state.log_history, ft.state.log_history)
    assert ft_out.training_loss == pytest.approx(hf_out.training_loss, abs=1e-4)


def test_runs_with_dropout_are_reproducible(tiny_dir, tiny_no_dropout_dir, tmp_path):
    data = make_dataset()
    runs = []
    # The same weights (both saved from seed 0), with dropout twice, then without.
    for i, folder in enumerate([tiny_dir, tiny_dir, tiny_no_dropout_dir]):
        model = ferrotune.AutoModelForSequenceClassification.from_pretrained(folder)
        trainer = ferrotune.Trainer(
            model=model,
            args=arguments(ferrotune, tmp_path / str(i)),
            train_dataset=data,
            eval_dataset=data,
        )
        trainer.train()
        runs.append([e.get("loss") for e in trainer.state.log_history])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]  # dropout did drop something


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant", "constant_with_warmup"])
def test_learning_rate_at_every_step_matches(tiny_dir, tmp_path, schedule):
    data = make_dataset(n=20)
    (hf, _), (ft, _) = run_both(
        tiny_dir,
        tmp_path,
        data,
        data,
        lr_scheduler_type=schedule,
        logging_steps=1,
        warmup_steps=3,
        eval_strategy="no",
    )
    hf_lr = [e["learning_rate"] for e in hf.state.log_history if "learning_rate" in e]
    ft_lr = [e["learning_rate"] for e in ft.state.log_history if "learning_rate" in e]
    assert len(ft_lr) == 9
    assert ft_lr == pytest.approx(hf_lr, abs=1e-15)


def test_evaluate_and_predict_match(tiny_no_dropout_dir, tmp_path):
    data = make_dataset()
    (hf, _), (ft, _) = run_both(tiny_no_dropout_dir, tmp_path, data, data, num_train_epochs=1)
    expected, got = hf.evaluate(), ft.evaluate()
    assert list(got) == list(expected)
    assert got["eval_loss"] == pytest.approx(expected["eval_loss"], abs=1e-5)
    assert got["eval_accuracy"] == expected["eval_accuracy"]
    hf_pred, ft_pred = hf.predict(data), ft.predict(data)
    np.testing.assert_allclose(ft_pred.predictions, hf_pred.predictions, atol=1e-5)
    np.testing.assert_array_equal(ft_pred.label_ids, hf_pred.label_ids)
    assert set(ft_pred.metrics) == set(hf_pred.metrics)


def test_checkpoint_layout_and_rotation(tiny_dir, tmp_path):
    data = make_dataset()
    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    args = arguments(
        ferrotune,
        tmp_path,
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
    )
    trainer = ferrotune.Trainer(
        model=model,
        args=args,
        train_dataset=data,
        eval_dataset=data,
        compute_metrics=accuracy,
        processing_class=_bert_tokenizer(),
    )
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best is not None and os.path.isdir(best)
    remaining = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("checkpoint-"))
    assert remaining == [os.path.basename(best)]
    files = sorted(os.listdir(best))
    for name in (
        "config.json",
        "model.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "trainer_state.json",
        "training_args.bin",
    ):
        assert name in files
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "temporary folders left"
    state = json.loads((tmp_path / os.path.basename(best) / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] == best
    # optimizer.pt reads as torch's AdamW state dict
    optimizer = torch.load(os.path.join(best, "optimizer.pt"), weights_only=True)
    assert [g["weight_decay"] for g in optimizer["param_groups"]] == [0.01, 0.0]
    assert "LayerNorm" not in " ".join(optimizer["param_groups"][0]["param_names"])
    # the checkpoint loads in transformers
    transformers.AutoModelForSequenceClassification.from_pretrained(best)


def test_resumed_run_ends_with_the_same_weights(tiny_dir, tmp_path, one_thread):
    data = make_dataset()

    def trainer(out, callbacks=None):
        model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
        args = arguments(ferrotune, out, save_strategy="steps", save_steps=3, eval_strategy="no")
        return ferrotune.Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks)

    full = trainer(tmp_path / "full")
    full.train()

    class Crash(ferrotune.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 7:
                raise KeyboardInterrupt

    interrupted = trainer(tmp_path / "resumed", callbacks=[Crash()])
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    resumed = trainer(tmp_path / "resumed")
    out = resumed.train(resume_from_checkpoint=True)
    assert out.global_step == full.state.global_step
    for (name, a), (_, b) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items()
    ):
        assert torch.equal(a, b), name
    assert resumed.state.log_history[:3] == full.state.log_history[:3]


def test_keyboard_interrupt_stops_within_a_step_and_leaves_objects_usable(tiny_dir, tmp_path):
    data = make_dataset(n=400)
    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)

    class InterruptSoon(ferrotune.TrainerCallback):
        """Ctrl+C from another thread shortly after the first step, wherever the loop is then
        (a timer started before train() could fire before any step on a loaded machine)."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()

    trainer = ferrotune.Trainer(
        model=model,
        args=arguments(ferrotune, tmp_path, num_train_epochs=50, eval_strategy="no"),
        train_dataset=data,
        callbacks=[InterruptSoon()],
    )
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert 0 < trainer.state.global_step < trainer.state.max_steps
    with torch.no_grad():
        assert model(input_ids=torch.tensor([[5, 6, 7]])).logits.shape == (1, 2)
    assert "eval_loss" in trainer.evaluate(data)


def test_drop_in_transformers_model_receives_the_trained_weights(tiny_dir, tmp_path):
    data = make_dataset()
    hf_model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    before = hf_model.classifier.weight.detach().clone()
    trainer = ferrotune.Trainer(
        model=hf_model, args=arguments(ferrotune, tmp_path, eval_strategy="no"), train_dataset=data
    )
    trainer.train()
    assert not torch.equal(hf_model.classifier.weight, before)
    assert torch.equal(hf_model.classifier.weight, trainer.model.state_dict()["classifier.weight"])


def test_callbacks_see_transformers_events_and_early_stopping_stops(tiny_dir, tmp_path):
    data = make_dataset()
    events = []

    class Recorder(ferrotune.TrainerCallback):
        def __getattribute__(self, name):
            if name.startswith("on_"):
                events.append(name)
            return object.__getattribute__(self, name)

    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    args = arguments(
        ferrotune,
        tmp_path,
        num_train_epochs=20,
        learning_rate=0.0,
        metric_for_best_model="loss",
        save_strategy="epoch",
        load_best_model_at_end=True,
    )
    trainer = ferrotune.Trainer(
        model=model,
        args=args,
        train_dataset=data,
        eval_dataset=data,
        callbacks=[Recorder(), ferrotune.EarlyStoppingCallback(2)],
    )
    trainer.train()
    # lr 0: the loss never improves after the first evaluation, so 3 epochs run.
    assert trainer.state.epoch == 3.0
    first_step = events[events.index("on_step_begin") : events.index("on_step_end") + 1]
    assert first_step == [
        "on_step_begin",
        "on_pre_optimizer_step",
        "on_optimizer_step",
        "on_step_end",
    ]
    assert events[0] == "on_init_end" and events[1] == "on_train_begin"
    assert events[-1] == "on_train_end"
    assert events.count("on_evaluate") == 3 and events.count("on_save") == 3


def test_training_arguments_validation_as_transformers():
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_argument'"):
        ferrotune.TrainingArguments("out", no_such_argument=1)
    with pytest.raises(ValueError, match="foo is not a valid IntervalStrategy"):
        ferrotune.TrainingArguments("out", eval_strategy="foo")
    with pytest.raises(
        ValueError, match="--load_best_model_at_end requires the save and eval strategy to match"
    ):
        ferrotune.TrainingArguments("out", load_best_model_at_end=True, eval_strategy="epoch")
    with pytest.raises(ValueError, match="not a round multiple of 3"):
        ferrotune.TrainingArguments(
            "out", load_best_model_at_end=True, eval_strategy="steps", eval_steps=3, save_steps=10
        )
    with pytest.raises(
        ValueError, match="per_device_train_batch_size must be a positive integer, got 0"
    ):
        ferrotune.TrainingArguments("out", per_device_train_batch_size=0)
    with pytest.raises(ValueError, match="Invalid learning rate: -1.0"):
        ferrotune.TrainingArguments("out", learning_rate=-1.0)
    with pytest.raises(ValueError, match="Got warmup_steps = -1"):
        ferrotune.TrainingArguments("out", warmup_steps=-1)
    args = ferrotune.TrainingArguments(
        "out", load_best_model_at_end=True, eval_strategy="epoch", save_strategy="epoch"
    )
    assert args.metric_for_best_model == "loss" and args.greater_is_better is False


def test_old_argument_names_of_the_seed_notebook_still_work():
    with pytest.warns(FutureWarning, match="`evaluation_strategy` is deprecated"):
        args = ferrotune.TrainingArguments(
            output_dir="results",
            evaluation_strategy="epoch",
            save_strategy="epoch",
            push_to_hub_model_id="my-model",
            warmup_ratio=0.1,
            group_by_length=True,
        )
    assert args.eval_strategy == "epoch"
    assert args.hub_model_id == "my-model"
    assert args.warmup_steps == 0.1
    assert args.train_sampling_strategy == "group_by_length"


def test_bad_data_fails_before_training(tiny_dir, tmp_path):
    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    data = make_dataset()

    def train(dataset, **kw):
        trainer = ferrotune.Trainer(
            model=model,
            args=arguments(ferrotune, tmp_path, eval_strategy="no", **kw),
            train_dataset=dataset,
        )
        return trainer.train()

    with pytest.raises(
        ValueError,
        match="has no label column: looked for labels, label, "
        "label_ids among its columns input_ids",
    ):
        train(data.remove_columns("labels"))
    with pytest.raises(ValueError, match=r"label 2 at row 0 is outside \[0, 2\)"):
        train(data.map(lambda e: {"labels": 2}))
    with pytest.raises(ValueError, match="the training set is empty"):
        train(data.select([]))
    with pytest.raises(ValueError, match="no 'input_ids' column"):
        train(data.remove_columns(["input_ids", "attention_mask"]))
    with pytest.raises(
        ValueError, match="You have set `args.eval_strategy` to IntervalStrategy.EPOCH"
    ):
        ferrotune.Trainer(model=model, args=arguments(ferrotune, tmp_path), train_dataset=data)
    with pytest.raises(ValueError, match=r"No valid checkpoint found in output directory"):
        ferrotune.Trainer(
            model=model,
            args=arguments(ferrotune, tmp_path / "empty", eval_strategy="no"),
            train_dataset=data,
        ).train(resume_from_checkpoint=True)


def test_metric_for_best_model_missing_is_reported_at_the_first_evaluation(tiny_dir, tmp_path):
    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    data = make_dataset()
    args = arguments(ferrotune, tmp_path, metric_for_best_model="f1")
    trainer = ferrotune.Trainer(
        model=model, args=args, train_dataset=data, eval_dataset=data, compute_metrics=accuracy
    )
    with pytest.raises(KeyError, match="'eval_f1', which is not found in the evaluation metrics"):
        trainer.train()
    assert trainer.state.global_step == 5  # one epoch, then the first evaluation


def test_unwritable_output_dir_fails_at_construction(tiny_dir, tmp_path):
    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="cannot be written"):
        ferrotune.Trainer(
            model=model,
            args=arguments(ferrotune, blocker / "out", eval_strategy="no"),
            train_dataset=make_dataset(),
        )


def test_push_to_hub_offline_saves_locally_then_fails_clearly(
    tiny_dir, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    args = arguments(
        ferrotune,
        tmp_path,
        eval_strategy="no",
        save_strategy="epoch",
        push_to_hub=True,
        hub_model_id="someone/tiny",
    )
    trainer = ferrotune.Trainer(model=model, args=args, train_dataset=make_dataset())
    with caplog.at_level(logging.WARNING, logger="ferrotune"):
        trainer.train()  # trains and saves although every push fails
    assert "could not push" in caplog.text
    assert (tmp_path / "checkpoint-15" / "model.safetensors").is_file()
    with pytest.raises(OSError, match="could not push .* 'someone/tiny'.*saved locally"):
        trainer.push_to_hub()
    assert (tmp_path / "model.safetensors").is_file()


def test_token_type_ids_are_dropped_for_a_model_without_them(tmp_path, caplog):
    """A BERT tokenizer's token_type_ids column with a ModernBERT model: transformers' Trainer
    drops the column the model's forward does not take, and logs it."""
    torch.manual_seed(0)
    config = transformers.ModernBertConfig(
        vocab_size=VOCAB, num_hidden_layers=2, pad_token_id=0, **TINY_SHAPE
    )
    transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path)
    data = make_dataset().map(lambda row: {"token_type_ids": [0] * len(row["input_ids"])})
    model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    args = arguments(ferrotune, tmp_path / "out", num_train_epochs=1, eval_strategy="no")
    with caplog.at_level(logging.INFO, logger="ferrotune"):
        ferrotune.Trainer(model=model, args=args, train_dataset=data).train()
    assert "have been ignored: text, token_type_ids" in caplog.text
