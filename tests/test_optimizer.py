"""The word embeddings updated only at the rows a step reaches (src/train/optim.rs, LazyWords),
against the update over the whole table, bit for bit: the rows a step did not reach take it
when they are read, and every row is up to date wherever the weights or the optimizer's state
can be seen (evaluations, checkpoints, the end of the run, callbacks)."""

import datasets
import ferrotune
import pyarrow as pa
import pytest
import safetensors.torch
import torch
from ferrotune import _core, trainer_callback
from ferrotune.trainer import _reads_weights
from test_mixed_precision import BATCH, rows, run_config

WORDS = "bert.embeddings.word_embeddings.weight"


class Snapshots:
    """The Trainer side of a `_core.TrainingRun`: after each update, the word table as the
    model holds it; at the updates of `settle_at`, the table after `run.settle()` too."""

    def __init__(self, model, settle_at):
        self.model, self.settle_at = model, settle_at
        self.run = None
        self.as_held, self.settled = [], {}

    def table(self):
        return self.model.state_dict()[WORDS].clone()

    def _event(self, name, global_step, epoch):
        return False, False, False

    def _log_save_evaluate(self, global_step, epoch, loss_sum, steps, grad_norm, learning_rate):
        if steps:
            self.as_held.append(self.table())
            if global_step in self.settle_at:
                self.run.settle()
                self.settled[global_step] = self.table()
        return False, False, True

    def _non_finite_loss(self, step, epoch, loss):
        pass


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_rows_a_step_does_not_reach_take_it_when_read(tiny_bert_dir, one_thread, bf16):
    """The tiny model's 99 rows, of which a step's 56 tokens reach about 40 (the ids 0 to 4
    never): held as they are, the table lags the plain update; settled, it is the plain
    update's bit for bit, and so are every weight and the optimizer's state at the end."""
    ids, labels = rows()
    table = pa.table({"input_ids": ids.tolist(), "labels": labels.tolist()})

    def train(reads_weights):
        model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
        config = run_config(bf16=bf16, callbacks_read_weights=reads_weights)
        run = _core.TrainingRun(model._model, _core.Examples(table, "labels"), config)
        snapshots = Snapshots(model, settle_at={3, 7})
        snapshots.run = run
        run.train(snapshots)
        return snapshots, model.state_dict(), run.optimizer_state()

    plain, plain_weights, plain_state = train(reads_weights=True)
    lazy, weights, state = train(reads_weights=False)
    assert len(lazy.as_held) == len(plain.as_held) == 16
    assert plain.settled.keys() == lazy.settled.keys() == {3, 7}
    for step, settled in lazy.settled.items():
        assert torch.equal(settled, plain.as_held[step - 1]), step
        assert torch.equal(settled, plain.settled[step]), step
    lagging = [i + 1 for i, (a, b) in enumerate(zip(lazy.as_held, plain.as_held)) if not a.equal(b)]
    assert lagging == list(range(1, 17))
    # The rows of never-seen ids only decay (weight_decay 0.01): later, as one multiplication
    # per step missed.
    assert not torch.equal(weights[WORDS][1:5], lazy.as_held[0][1:5])
    for name, value in plain_weights.items():
        assert torch.equal(weights[name], value), name
    for (decay, params), (plain_decay, plain_params) in zip(state, plain_state):
        assert decay == plain_decay
        for (name, *tensors), (plain_name, *plain_tensors) in zip(params, plain_params):
            assert name == plain_name
            for ours, theirs in zip(tensors, plain_tensors):
                assert torch.equal(ours, theirs), name


class _ReadsWeights(ferrotune.TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        pass


class _Evaluates(ferrotune.TrainerCallback):
    def on_evaluate(self, args, state, control, **kwargs):
        pass


def test_callbacks_that_may_read_the_weights_are_told_apart():
    for own in (
        trainer_callback.DefaultFlowCallback(),
        trainer_callback.ProgressCallback(),
        trainer_callback.PrinterCallback(),
        trainer_callback.EarlyStoppingCallback(),
        _Evaluates(),
    ):
        assert not _reads_weights(own), own
    assert _reads_weights(_ReadsWeights())

    class Progress(trainer_callback.ProgressCallback):
        pass

    assert _reads_weights(Progress())  # may override what ProgressCallback handles
    instance = ferrotune.TrainerCallback()
    instance.on_log = lambda *args, **kwargs: None
    assert _reads_weights(instance)


def test_checkpoints_and_evaluations_see_every_row_up_to_date(tiny_bert_dir, tmp_path, one_thread):
    """The Trainer with evaluations and checkpoints during the run, its rows updated where the
    steps reach them, against one whose callback may read the weights at every step (rows
    updated over the whole table): the same evaluation losses, checkpoints and weights."""
    ids, labels = rows()
    data = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})

    def train(name, callbacks):
        model = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
        args = ferrotune.TrainingArguments(
            str(tmp_path / name),
            num_train_epochs=3,
            per_device_train_batch_size=BATCH,
            learning_rate=1e-3,
            weight_decay=0.01,
            eval_strategy="steps",
            eval_steps=5,
            save_strategy="steps",
            save_steps=3,
            logging_steps=1,
            report_to="none",
            disable_tqdm=True,
        )
        trainer = ferrotune.Trainer(
            model=model, args=args, train_dataset=data, eval_dataset=data, callbacks=callbacks
        )
        trainer.train()
        return trainer

    lazy = train("lazy", [_Evaluates()])
    plain = train("plain", [_ReadsWeights()])
    eval_losses = [log["eval_loss"] for log in lazy.state.log_history if "eval_loss" in log]
    assert len(eval_losses) == 3  # at steps 5 and 10, and at the end
    assert eval_losses == [
        log["eval_loss"] for log in plain.state.log_history if "eval_loss" in log
    ]
    for step in (3, 6, 9, 12):
        folders = [tmp_path / name / f"checkpoint-{step}" for name in ("lazy", "plain")]
        ours, theirs = (safetensors.torch.load_file(f / "model.safetensors") for f in folders)
        assert ours.keys() == theirs.keys()
        for name in ours:
            assert torch.equal(ours[name], theirs[name]), (step, name)
        ours, theirs = (torch.load(f / "optimizer.pt", weights_only=True) for f in folders)
        for key, value in ours["state"].items():
            for part in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(value[part], theirs["state"][key][part]), (step, key, part)
    for name, value in plain.model.state_dict().items():
        assert torch.equal(lazy.model.state_dict()[name], value), name
