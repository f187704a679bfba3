"""Resume after a kill, and results that do not depend on the core count, with the real `dvc repro`.

The uninterrupted run is the suite's pipeline run (``trained.pipeline_run``, 4 epochs, on every core
the machine has). A copy of it retrains on ONE core: `dvc repro --force` whose train stage is
SIGKILLed after epoch 2, then `dvc repro` again, which resumes. Both must write the same bytes: the
model, eval.json and train.json.

What that guarantees (numerics.portable): with oneDNN held at AVX2 and a fixed number of threads per
op, one core computes exactly what two do (without it the thread count follows the cores and changes
how sums are split: different weights, measured), and a resumed run ends exactly where an
uninterrupted one does. Either broken, the bytes differ. A real AVX2 CPU is emulated by
``benchmarks/isa_reproducibility.py`` (qemu, minutes per stage): too slow for the suite.
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
from projectcopy import project_env
from trained import PIPELINE_EPOCHS as EPOCHS
from trained import copy_project

DVC = str(Path(sys.executable).parent / "dvc")
TIMEOUT = 1800  # a loaded 2-core machine: each repro here takes ~1 min idle, up to 10 under load

pytestmark = pytest.mark.slow


def on_one_core() -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def repro_killed_after_epoch(project: Path, epoch: int) -> str:
    """`dvc repro --force` of train and evaluate on one core, SIGKILLing the train stage's process
    once it logs the end of ``epoch``."""
    proc = subprocess.Popen([DVC, "repro", "--force", "--downstream", "train"], cwd=project,
                            env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=on_one_core)
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
def runs(pipeline_run, tmp_path_factory) -> dict:
    uninterrupted = pipeline_run / "project"
    project = copy_project(uninterrupted, tmp_path_factory.mktemp("resume") / "project")
    killed = repro_killed_after_epoch(project, 2)
    assert (project / paths.TRAIN_CHECKPOINT / "backup").is_dir()  # DVC kept the persisted checkpoint
    resumed = subprocess.run([DVC, "repro"], cwd=project, env=project_env(), capture_output=True, text=True,
                             timeout=TIMEOUT, preexec_fn=on_one_core)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return {"project": project, "killed_log": killed, "resumed_log": resumed.stdout + resumed.stderr,
            "resumed": snapshot(project), "uninterrupted": snapshot(uninterrupted),
            "uninterrupted_log": (pipeline_run / "repro.log").read_text()}


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
    # the uninterrupted run had nothing to resume and said why
    assert "starting fresh (no checkpoint" in runs["uninterrupted_log"]


def test_a_cpu_run_logs_one_device_line_and_one_line_per_epoch(runs):
    log = runs["uninterrupted_log"]
    lines = log.splitlines()  # every stage's output (dvc's stdout, then the stages' stderr)
    assert "cuda" not in log.lower() and "oneDNN custom operations" not in log, log
    assert "warning" not in log.lower(), log  # neither TensorFlow's, Keras' nor DVC's
    assert "absl" not in log and "I0000" not in log and "E0000" not in log, log
    assert len([line for line in lines if "device CPU" in line]) == 1, log
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == [f"epoch {i}/{EPOCHS}" for i in range(1, EPOCHS + 1)]


def test_a_resumed_run_on_one_core_ends_where_the_uninterrupted_run_on_every_core_does(runs):
    resumed, uninterrupted = runs["resumed"], runs["uninterrupted"]
    assert resumed["eval"] == uninterrupted["eval"]
    for a, b in zip(resumed["weights"], uninterrupted["weights"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert {k: v for k, v in resumed["train"].items() if k != "resumed_from_epoch"} == \
        {k: v for k, v in uninterrupted["train"].items() if k != "resumed_from_epoch"}
    facts = uninterrupted["train"]["machine"]
    # what decides the numbers, the same on every AVX2 CPU; this CPU's own ISA is only in the timing file
    assert facts["deterministic"] is True and facts["cpu_isa"] == "avx2" and facts["threads"] == 2
    assert facts["onednn_max_cpu_isa"] == "AVX2" and uninterrupted["timing"]["host_cpu_isa"]


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
