"""float16 training with loss scaling against torch.amp.GradScaler, and what fp16=True means on
a CPU (as in transformers: float32)."""

import logging

import ferrotune
import pyarrow as pa
import pytest
import torch
import transformers
from ferrotune import _core

STEPS_PER_EPOCH, EPOCHS, BATCH = 4, 4, 8


@pytest.fixture(scope="module")
def tiny_dir(tiny_bert_dir):
    return tiny_bert_dir


def rows():
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(5, 99, (STEPS_PER_EPOCH * BATCH, 7), generator=g)
    return ids, ids[:, 0] % 2


def run_config(**overrides):
    """A `_core.TrainingRun` configuration: sequential batches of the rows, transformers'
    AdamW settings at learning rate 1e-3."""
    return {
        "batch_size": BATCH,
        "grad_accum": 1,
        "num_train_epochs": EPOCHS,
        "max_steps": -1,
        "drop_last": False,
        "sampling": "sequential",
        "seed": 0,
        "learning_rate": 1e-3,
        "lr_scheduler_type": "linear",
        "warmup_steps": 0.0,
        "weight_decay": 0.01,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "adam_epsilon": 1e-8,
        "max_grad_norm": 1.0,
        **overrides,
    }


class Recorder:
    """The Trainer side of the loop, recording what each update logs."""

    def __init__(self):
        self.logs = []

    def _event(self, name, global_step, epoch):
        return False, False, False

    def _log_save_evaluate(self, global_step, epoch, loss_sum, steps, grad_norm, learning_rate):
        if steps:
            self.logs.append((loss_sum / steps, grad_norm, learning_rate))
        return False, False, True

    def _non_finite_loss(self, step, epoch, loss):
        pass


def test_float16_loss_scaling_follows_torch_grad_scaler(tiny_dir, tmp_path):
    """transformers trains in float16 on GPUs only, with autocast and accelerate's GradScaler;
    the same loop runs here on the CPU (autocast to float16 works there too) against torch's
    GradScaler. A first scale of 2**24 overflows: the first updates are skipped, the scale
    halves each time, and the schedule does not advance over them."""
    ids, labels = rows()
    # The reference: transformers' own optimizer and schedule, driven as accelerate does.
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    args = transformers.TrainingArguments(
        str(tmp_path), learning_rate=1e-3, weight_decay=0.01, use_cpu=True, report_to="none"
    )
    helper = transformers.Trainer(model=model, args=args)
    helper.create_optimizer_and_scheduler(STEPS_PER_EPOCH * EPOCHS)
    optimizer, schedule = helper.optimizer, helper.lr_scheduler
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)
    expected = []
    for step in range(STEPS_PER_EPOCH * EPOCHS):
        rows_of_step = slice(step % STEPS_PER_EPOCH * BATCH, (step % STEPS_PER_EPOCH + 1) * BATCH)
        learning_rate = schedule.get_last_lr()[0]
        with torch.autocast("cpu", dtype=torch.float16):
            loss = model(input_ids=ids[rows_of_step], labels=labels[rows_of_step]).loss
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        before = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        if scaler.get_scale() >= before:  # accelerate: no scheduler step after a skipped one
            schedule.step()
        optimizer.zero_grad()
        expected.append((loss.item(), norm.item(), learning_rate))

    ours = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    table = pa.table({"input_ids": ids.tolist(), "labels": labels.tolist()})
    config = run_config(fp16=True)
    run = _core.TrainingRun(ours._model, _core.Examples(table, "labels"), config)
    run.load_scaler_state(2.0**24, 0)
    recorder = Recorder()
    run.train(recorder)

    skipped = sum(1 for _, norm, _ in expected if not torch.isfinite(torch.tensor(norm)))
    assert 3 <= skipped < len(expected)  # the test covers both kinds of update
    assert len(recorder.logs) == len(expected)
    for (loss, norm, lr), (our_loss, our_norm, our_lr) in zip(expected, recorder.logs):
        assert our_loss == pytest.approx(loss, abs=1e-4)
        assert our_norm == pytest.approx(norm, rel=1e-3, nan_ok=True)
        assert our_lr == pytest.approx(lr, abs=1e-12)
    assert run.scaler_state == scaler.state_dict()
    # float16 rounding differs between the kernels; AdamW turns it into at most about half a
    # learning rate of difference.
    mine = ours.state_dict()
    for name, theirs in model.state_dict().items():
        torch.testing.assert_close(mine[name], theirs, atol=5e-4, rtol=1e-3, msg=name)
    # The model's next run keeps the loss scale, as the accelerator's GradScaler outlives
    # train().
    again = _core.TrainingRun(ours._model, _core.Examples(table, "labels"), config, run)
    assert again.scaler_state == scaler.state_dict()
    fresh = _core.TrainingRun(ours._model, _core.Examples(table, "labels"), config)
    assert fresh.scaler_state != scaler.state_dict()


def test_fp16_on_the_cpu_trains_in_float32_as_transformers_does(tiny_dir, tmp_path, caplog):
    ids, labels = rows()
    import datasets

    data = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})

    def train(lib, fp16):
        model = lib.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
        args = lib.TrainingArguments(
            str(tmp_path / lib.__name__ / str(fp16)),
            fp16=fp16,
            use_cpu=True,
            report_to="none",
            num_train_epochs=1,
            per_device_train_batch_size=BATCH,
            save_strategy="no",
            logging_steps=1,
            disable_tqdm=True,
        )
        trainer = lib.Trainer(model=model, args=args, train_dataset=data)
        trainer.train()
        return [log["loss"] for log in trainer.state.log_history if "loss" in log]

    with caplog.at_level(logging.WARNING, logger="ferrotune"):
        ours = train(ferrotune, fp16=True)
    assert "fp16 mixed precision needs a GPU" in caplog.text
    assert ours == pytest.approx(train(ferrotune, fp16=False), abs=0)
    assert ours == pytest.approx(train(transformers, fp16=True), abs=1e-5)


def test_bfloat16_on_the_cpu_follows_autocast_and_transformers_optimizer(tiny_dir, tmp_path):
    """bfloat16 autocast on the CPU, against transformers' model under torch.autocast with its
    optimizer, clipping and schedule. The linear layers' weights then live in bfloat16 during
    the forward and backward and their float32 update reads the bfloat16 gradients
    (src/train/optim.rs): the same numbers bit for bit as a run that keeps the gradients on the
    parameters in float32, which it does where callbacks may read them."""
    ids, labels = rows()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
    args = transformers.TrainingArguments(
        str(tmp_path), learning_rate=1e-3, weight_decay=0.01, use_cpu=True, report_to="none"
    )
    helper = transformers.Trainer(model=model, args=args)
    steps = STEPS_PER_EPOCH * 2
    helper.create_optimizer_and_scheduler(steps)
    optimizer, schedule = helper.optimizer, helper.lr_scheduler
    expected = []
    for step in range(steps):
        rows_of_step = slice(step % STEPS_PER_EPOCH * BATCH, (step % STEPS_PER_EPOCH + 1) * BATCH)
        learning_rate = schedule.get_last_lr()[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids[rows_of_step], labels=labels[rows_of_step]).loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        expected.append((loss.item(), norm.item(), learning_rate))

    table = pa.table({"input_ids": ids.tolist(), "labels": labels.tolist()})

    def train(**extra):
        ours = ferrotune.AutoModelForSequenceClassification.from_pretrained(tiny_dir)
        run = _core.TrainingRun(
            ours._model,
            _core.Examples(table, "labels"),
            run_config(num_train_epochs=2, max_grad_norm=0.1, bf16=True, **extra),
        )
        recorder = Recorder()
        run.train(recorder)
        return recorder.logs, ours.state_dict()

    logs, weights = train()
    kept_logs, kept_weights = train(callbacks_read_gradients=True)
    assert logs == kept_logs
    assert weights.keys() == kept_weights.keys()
    for name, value in weights.items():
        assert value.dtype == torch.float32, name
        assert torch.equal(value, kept_weights[name]), name
    assert len(logs) == len(expected)
    for (loss, norm, lr), (our_loss, our_norm, our_lr) in zip(expected, logs):
        assert our_loss == pytest.approx(loss, abs=2e-2)
        assert our_norm == pytest.approx(norm, rel=2e-2)
        assert our_lr == pytest.approx(lr, abs=1e-12)
    assert min(norm for _, norm, _ in expected) > 0.1  # every update was clipped
    for name, theirs in model.state_dict().items():
        torch.testing.assert_close(weights[name], theirs, atol=5e-3, rtol=1e-2, msg=name)


class _Reads(ferrotune.TrainerCallback):
    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        pass


class _Plain(ferrotune.TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        pass


def test_callbacks_that_may_read_gradients_are_told_apart():
    from ferrotune.trainer import _reads_gradients

    assert _reads_gradients(_Reads())
    assert not _reads_gradients(_Plain())
    assert not _reads_gradients(ferrotune.TrainerCallback())
    plain = _Plain()
    plain.on_optimizer_step = lambda *a, **k: None
    assert _reads_gradients(plain)
