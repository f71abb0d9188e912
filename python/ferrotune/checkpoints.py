"""Checkpoint folders as transformers' Trainer writes them: their names, the torch layouts of
the optimizer, schedule and RNG files, the atomic write, the rotation and what a resume reads.

transformers references: `trainer.py` (`_save_checkpoint`, `_rotate_checkpoints`,
`_load_rng_state`, `_load_optimizer_and_scheduler`) and `trainer_utils.get_last_checkpoint`.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

PREFIX_CHECKPOINT_DIR = "checkpoint"
TRAINER_STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.pt"
SCALER_NAME = "scaler.pt"
RNG_STATE_NAME = "rng_state.pth"
TRAINING_ARGS_NAME = "training_args.bin"

# `checkpoint-<global step>`, and an unfinished one: `.checkpoint-<step>-<pid>-<random>`.
FOLDER = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
PARTIAL = re.compile(rf"^\.{PREFIX_CHECKPOINT_DIR}-\d+-(\d+)-")


def folder_name(global_step: int) -> str:
    return f"{PREFIX_CHECKPOINT_DIR}-{global_step}"


def sorted_checkpoints(output_dir: str) -> list[str]:
    """The checkpoint folders of `output_dir`, oldest step first."""
    found = [
        (int(m.group(1)), os.path.join(output_dir, p))
        for p in os.listdir(output_dir)
        if (m := FOLDER.match(p)) and os.path.isdir(os.path.join(output_dir, p))
    ]
    return [path for _, path in sorted(found)]


def get_last_checkpoint(folder: str) -> str | None:
    """The checkpoint-N folder with the largest N in `folder`, or None."""
    found = sorted_checkpoints(folder)
    return found[-1] if found else None


def remove_dead_partials(output_dir: str) -> None:
    """Removes the unfinished checkpoints of processes that died while saving; those of a live
    process are left to it."""
    for entry in os.listdir(output_dir):
        if (m := PARTIAL.match(entry)) is None:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            logger.info(f"Removing {entry}, an unfinished checkpoint of a process that stopped")
            shutil.rmtree(os.path.join(output_dir, entry), ignore_errors=True)
        except OSError:
            pass  # alive, owned by another user


def write(output_dir: str, global_step: int, fill: Callable[[str], None]) -> str:
    """`fill(folder)` writes a checkpoint into a temporary folder that is then renamed into
    place: a crash leaves the previous checkpoints as they were, never half of a new one.
    Returns the checkpoint's folder."""
    name = folder_name(global_step)
    final = os.path.join(output_dir, name)
    remove_dead_partials(output_dir)
    partial = tempfile.mkdtemp(prefix=f".{name}-{os.getpid()}-", dir=output_dir)
    try:
        fill(partial)
        if os.path.exists(final):  # the same step saved again (after a resume)
            stale = final + f".old-{os.getpid()}"
            os.replace(final, stale)
            os.replace(partial, final)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.replace(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def delete(folder: str) -> None:
    logger.info(f"Deleting older checkpoint [{folder}] due to args.save_total_limit")
    shutil.rmtree(folder, ignore_errors=True)


def rotate(output_dir: str, limit: int | None, best: str | None) -> None:
    """Keeps the newest `limit` checkpoints, and the best one."""
    if limit is None or limit <= 0:
        return
    checkpoints = sorted_checkpoints(output_dir)
    if len(checkpoints) <= limit:
        return
    protected = {os.path.abspath(checkpoints[-1])}
    if best is not None:
        protected.add(os.path.abspath(best))
    keep = max(limit, len(protected))
    remaining = len(checkpoints)
    for folder in checkpoints:
        if remaining <= keep:
            break
        if os.path.abspath(folder) not in protected:
            delete(folder)
            remaining -= 1


def keep_only(output_dir: str, best: str) -> None:
    """Deletes every checkpoint but the best (save_total_limit=1 with a best model)."""
    for folder in sorted_checkpoints(output_dir):
        if os.path.abspath(folder) != os.path.abspath(best):
            delete(folder)


def to_resume(resume: str | bool | None, output_dir: str, weights_name: str) -> str | None:
    """The folder `train(resume_from_checkpoint=...)` resumes from: the last checkpoint of
    output_dir for True, the folder given, or None."""
    if resume is None or resume is False:
        return None
    if resume is True:
        folder = get_last_checkpoint(output_dir)
        if folder is None:
            raise ValueError(f"No valid checkpoint found in output directory ({output_dir})")
        return folder
    if not os.path.isfile(os.path.join(resume, weights_name)):
        raise ValueError(f"Can't find a valid checkpoint at {resume}")
    return os.fspath(resume)


# -- the torch layouts ------------------------------------------------------------------------


def optimizer_state_dict(run: Any, args: Any) -> dict:
    """The optimizer as torch.optim.AdamW(fused=True).state_dict() lays it out."""
    state, groups, index = {}, [], 0
    for weight_decay, params in run.optimizer_state():
        ids, names = [], []
        for name, exp_avg, exp_avg_sq, step in params:
            state[index] = {"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
            ids.append(index)
            names.append(name)
            index += 1
        groups.append(
            {
                "weight_decay": weight_decay,
                "lr": run.last_lr,
                "betas": (args.adam_beta1, args.adam_beta2),
                "eps": args.adam_epsilon,
                "amsgrad": False,
                "maximize": False,
                "foreach": None,
                "capturable": False,
                "differentiable": False,
                "fused": True,
                "decoupled_weight_decay": True,
                "initial_lr": args.learning_rate,
                "params": ids,
                "param_names": names,
            }
        )
    return {"state": state, "param_groups": groups}


def scheduler_state_dict(run: Any, args: Any) -> dict:
    """torch's LambdaLR.state_dict() for the schedule's position."""
    steps, lr = run.scheduler_steps, run.last_lr
    return {
        "base_lrs": [args.learning_rate] * 2,
        "last_epoch": steps,
        "_step_count": steps + 1,
        "_is_initial": False,
        "_get_lr_called_within_step": False,
        "_last_lr": [lr] * 2,
        "lr_lambdas": [{}, {}],
    }


def save_training_state(folder: str, run: Any, args: Any) -> None:
    """optimizer.pt, scheduler.pt, scaler.pt (with loss scaling) and rng_state.pth."""
    torch.save(optimizer_state_dict(run, args), os.path.join(folder, OPTIMIZER_NAME))
    torch.save(scheduler_state_dict(run, args), os.path.join(folder, SCHEDULER_NAME))
    if (scaler := run.scaler_state) is not None:
        torch.save(scaler, os.path.join(folder, SCALER_NAME))
    torch.save(rng_state(), os.path.join(folder, RNG_STATE_NAME))


def load_training_state(folder: str, run: Any) -> int | None:
    """Loads the optimizer and the loss scaler of a checkpoint into `run`; returns the
    schedule's position (None without scheduler.pt)."""
    optimizer_path = os.path.join(folder, OPTIMIZER_NAME)
    scheduler_path = os.path.join(folder, SCHEDULER_NAME)
    if os.path.isfile(optimizer_path) and os.path.isfile(scheduler_path):
        saved = torch.load(optimizer_path, map_location="cpu", weights_only=True)
        rows = []
        for group in saved["param_groups"]:
            for i, name in zip(group["params"], group["param_names"]):
                s = saved["state"][i]
                rows.append((name, s["exp_avg"], s["exp_avg_sq"], s["step"]))
        run.load_optimizer_state(rows)
    scaler_path = os.path.join(folder, SCALER_NAME)
    if os.path.isfile(scaler_path) and run.scaler_state is not None:
        scaler = torch.load(scaler_path, map_location="cpu", weights_only=True)
        run.load_scaler_state(float(scaler["scale"]), int(scaler["_growth_tracker"]))
    if not os.path.isfile(scheduler_path):
        return None
    return int(torch.load(scheduler_path, map_location="cpu", weights_only=True)["last_epoch"])


def restore_rng(folder: str) -> None:
    """This process's random generators as the checkpoint saved them (if it has them)."""
    path = os.path.join(folder, RNG_STATE_NAME)
    if os.path.isfile(path):
        set_rng_state(load_rng_state(path))


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "cpu": torch.random.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.random.get_rng_state_all()
    return state


def load_rng_state(path: str) -> dict:
    """rng_state.pth read with weights_only=True, as every file of a checkpoint folder (it may
    come from anywhere): only numpy's array and dtype types are allowed besides tensors."""
    allowed = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.random.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.random.set_rng_state_all(state["cuda"])
