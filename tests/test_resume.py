"""Identical reruns and resume after a kill, with the real `dvc repro` in a project copy.

One project, 4 epochs: `dvc repro` whose train stage is SIGKILLed after epoch 2, `dvc repro` again
(resumes), then a forced run of train and evaluate from scratch. Deterministic training makes both
trained models identical, so the resumed run's metrics equal the uninterrupted run's. (Two
from-scratch runs giving the same bytes is test_numerics', on one core and on two.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

from deepfake_detector.core import paths
from projectcopy import make_project, project_env, run

DVC = str(Path(sys.executable).parent / "dvc")
TIMEOUT = 1800  # a loaded 2-core machine: each repro here takes ~1 min idle, up to 10 under load

pytestmark = pytest.mark.slow
EPOCHS = 4


def repro_killed_after_epoch(project: Path, epoch: int) -> str:
    """`dvc repro`, SIGKILLing the train stage's process once it logs the end of ``epoch``."""
    proc = subprocess.Popen([DVC, "repro"], cwd=project,
                            env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, killed = [], False
    try:
        for line in proc.stdout:  # ends when dvc exits: every wait here is bounded by the stage's end
            output.append(line)
            if not killed and line.startswith(f"epoch {epoch}/{EPOCHS}:"):
                train = [p for p in psutil.Process(proc.pid).children(recursive=True)
                         if "stages.train" in " ".join(p.cmdline())]
                # dvc runs the cmd through /bin/sh: dash execs it, bash stays as its parent. Kill the Python.
                stage = [p for p in train if not set(p.children()) & set(train)]
                assert len(stage) == 1, train
                os.kill(stage[0].pid, signal.SIGKILL)
                killed = True
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(output)
    assert killed, text[-3000:]
    assert proc.returncode != 0, text[-3000:]
    return text


def weights(project: Path) -> list[np.ndarray]:
    from deepfake_detector.model import modelfile

    model, _ = modelfile.load(project / paths.MODEL)
    return model.get_weights()


def snapshot(project: Path) -> dict:
    return {"eval": (project / paths.EVAL_METRICS).read_bytes(), "weights": weights(project),
            "train": json.loads((project / paths.TRAIN_METRICS).read_text()),
            "timing": json.loads((project / paths.TRAIN_TIMING).read_text())}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    project = make_project(tmp_path_factory.mktemp("resume") / "project",
                           {"train.epochs": EPOCHS, "train.patience": EPOCHS})
    killed = repro_killed_after_epoch(project, 2)
    assert (project / paths.TRAIN_CHECKPOINT / "backup").is_dir()  # DVC kept the persisted checkpoint
    resumed = run([DVC, "repro"], cwd=project, timeout=TIMEOUT)
    result = {"project": project, "killed_log": killed, "resumed_log": resumed.stdout + resumed.stderr,
              "resumed": snapshot(project)}
    forced = run([DVC, "repro", "--force", "--downstream", "train"], cwd=project, timeout=TIMEOUT)
    result["forced"] = snapshot(project)
    result["forced_log"] = forced.stdout + forced.stderr
    return result


def test_a_killed_train_stage_resumes_from_its_last_epoch(runs):
    assert "epoch 3/4" not in runs["killed_log"]
    log = runs["resumed_log"]
    assert "resuming from epoch 2" in log
    # only the epochs left were trained
    assert "epoch 3/4" in log and "epoch 4/4" in log and "epoch 1/4" not in log and "epoch 2/4" not in log
    train = runs["resumed"]["train"]
    assert train["epochs"] == EPOCHS and train["resumed_from_epoch"] == 2
    # the checkpoint is gone after success; the folder stays (DVC declares it), with a note
    assert [p.name for p in (runs["project"] / paths.TRAIN_CHECKPOINT).iterdir()] == ["README.txt"]
    # the forced rerun had nothing to resume and said why
    assert "starting fresh (no checkpoint" in runs["forced_log"]


def test_a_cpu_run_logs_one_device_line_and_one_line_per_epoch(runs):
    log = runs["forced_log"]
    lines = log.splitlines()  # train's and evaluate's output (dvc's stdout, then the stages' stderr)
    assert "cuda" not in log.lower() and "oneDNN custom operations" not in log, log
    assert "warning" not in log.lower(), log  # neither TensorFlow's, Keras' nor DVC's
    assert "absl" not in log and "I0000" not in log and "E0000" not in log, log
    assert len([line for line in lines if "device CPU" in line]) == 1, log
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == [f"epoch {i}/{EPOCHS}" for i in range(1, EPOCHS + 1)]


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(runs):
    resumed, uninterrupted = runs["resumed"], runs["forced"]
    assert resumed["eval"] == uninterrupted["eval"]
    for a, b in zip(resumed["weights"], uninterrupted["weights"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert {k: v for k, v in resumed["train"].items() if k != "resumed_from_epoch"} == \
        {k: v for k, v in uninterrupted["train"].items() if k != "resumed_from_epoch"}
    assert uninterrupted["train"]["machine"]["deterministic"] is True


def test_a_checkpoint_under_other_params_is_not_resumed(tmp_path, caplog):
    import logging

    from deepfake_detector.training import checkpoints

    caplog.set_level(logging.INFO)

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.tfrecord").write_bytes(b"records")
    folder = tmp_path / "checkpoint"
    key = checkpoints.run_key({"epochs": 4}, data)
    assert checkpoints.prepare(folder, key) == 0
    (folder / "backup").mkdir()
    (folder / "backup" / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    assert checkpoints.prepare(folder, key) == 2
    (data / "a.tfrecord").write_bytes(b"other records")
    assert checkpoints.prepare(folder, checkpoints.run_key({"epochs": 4}, data)) == 0
    assert "starting fresh: the checkpoint in" in caplog.text and "other params or data" in caplog.text
    assert not (folder / "backup").exists()
    assert checkpoints.run_key({"epochs": 5}, data) != checkpoints.run_key({"epochs": 4}, data)
