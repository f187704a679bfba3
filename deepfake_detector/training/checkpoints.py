"""Resuming a killed training run: a checkpoint at the end of every epoch, keyed by params and data.

Keras' ``BackupAndRestore`` saves the weights (optimizer state and step count included) and the
epoch reached. ``EpochBackup`` extends it with what an identical resumed run also needs: the
per-epoch logs so far (history, dvclive curves, early stopping's wait) and early stopping's best
weights. The checkpoint folder holds ``key.json``: the hash of the train params and of the processed
data it was written under. A checkpoint with another key is never resumed; the log says why a run
starts fresh. The stage removes the checkpoint once the model file is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import keras
import numpy as np

from deepfake_detector.core.files import atomic_path, read_json, sha256_file, write_json

log = logging.getLogger(__name__)
KEY_FILE = "key.json"
STATE_FILE = "state.json"
BEST_FILE = "best_weights.npz"


def run_key(params: dict, data_folder: Path) -> str:
    """sha256 over the train params and every file of the processed data (name and content)."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for path in sorted(p for p in Path(data_folder).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(data_folder)}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def prepare(folder: Path, key: str) -> int:
    """Make ``folder`` ready for a run under ``key``; returns the epoch to resume from (0 = fresh),
    having logged why."""
    folder = Path(folder)
    stored = read_json(folder / KEY_FILE).get("key") if (folder / KEY_FILE).is_file() else None
    metadata = folder / "backup" / "training_metadata.json"
    epoch = read_json(metadata).get("epoch", 0) if metadata.is_file() and stored == key else 0
    if stored is None:
        log.info("train: starting fresh (no checkpoint in %s)", folder)
    elif stored != key:
        log.info("train: starting fresh: the checkpoint in %s was written under other params or data "
                 "(key %s..., now %s...); discarding it", folder, stored[:12], key[:12])
    elif not epoch:
        log.info("train: starting fresh (the checkpoint in %s holds no finished epoch)", folder)
    if not epoch:
        clear(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / KEY_FILE, {"key": key})
    else:
        log.info("train: resuming from epoch %d (checkpoint in %s)", epoch, folder)
    return epoch


NOTE_FILE = "README.txt"


def clear(folder: Path) -> None:
    """Remove every checkpoint file. The folder stays (DVC declares it as an output) with a note in
    it: DVC warns about an empty output folder."""
    folder = Path(folder)
    if folder.is_dir():
        for child in folder.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / NOTE_FILE).write_text("No checkpoint: the last training run finished. A killed run leaves its "
                                    "last finished epoch here, and `dvc repro` resumes from it.\n")


def stopped_early(folder: Path) -> bool:
    """Whether early stopping ended the run whose checkpoint this is (nothing is left to train)."""
    return bool(read_json(Path(folder) / STATE_FILE).get("stopped_early"))


def _rng_states(model: keras.Model) -> list:
    """The layers' random-generator states (dropout masks): model variables, but not in its weights."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


class EpochBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore plus the per-epoch logs and early stopping's state. Put it after the
    ``EarlyStopping`` it restores and before callbacks that replay ``history``."""

    def __init__(self, folder: Path, stopper: keras.callbacks.EarlyStopping, replay=()):
        super().__init__(str(Path(folder) / "backup"), delete_checkpoint=False)
        self.folder, self.stopper, self.replay = Path(folder), stopper, replay
        self.history: list[dict] = []

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # loads weights + optimizer, sets the initial epoch
        epoch = getattr(self.model, "_initial_epoch", 0) or 0
        if not epoch:
            return
        state = read_json(self.folder / STATE_FILE)
        self.history = state["history"][:epoch]
        for variable, value in zip(_rng_states(self.model), state["rng"], strict=True):
            variable.assign(np.asarray(value, dtype=variable.dtype))  # dropout's RNG: not in the weights
        values = [entry[self.stopper.monitor] for entry in self.history]
        best = int(np.argmax(values) if self.stopper.mode == "max" else np.argmin(values))
        self.stopper.best, self.stopper.best_epoch = values[best], best
        self.stopper.wait = epoch - 1 - best
        if self.stopper.restore_best_weights:
            with np.load(self.folder / BEST_FILE) as saved:
                if int(saved["epoch"]) != best:
                    raise RuntimeError(f"{self.folder}: best weights of epoch {int(saved['epoch']) + 1} "
                                       f"do not match the history (best epoch {best + 1}); delete the folder")
                self.stopper.best_weights = [saved[f"w{i}"] for i in range(len(saved.files) - 1)]
        for callback in self.replay:  # e.g. dvclive: curves continue from epoch 1, not from here
            for i, entry in enumerate(self.history):
                callback.on_epoch_end(i, entry)

    def on_epoch_end(self, epoch, logs=None):
        self.history.append({k: float(v) for k, v in (logs or {}).items()})
        if self.stopper.restore_best_weights and self.stopper.best_epoch == epoch:
            arrays = {f"w{i}": w for i, w in enumerate(self.stopper.best_weights)}
            with atomic_path(self.folder / BEST_FILE, suffix=".npz") as tmp:  # np.savez adds .npz otherwise
                np.savez(tmp, epoch=epoch, **arrays)
        write_json(self.folder / STATE_FILE, {
            "history": self.history, "stopped_early": bool(self.model.stop_training),
            "rng": [np.asarray(v).tolist() for v in _rng_states(self.model)]})
        super().on_epoch_end(epoch, logs)  # weights, then the epoch reached: the commit point
