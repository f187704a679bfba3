"""train.distribute on a CPU: MirroredStrategy over 2 logical CPU devices, MultiWorkerMirroredStrategy
with 2 worker processes on loopback ports, and a dead worker that ends in a clear error, not a hang."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepfake_detector import paths
from projectcopy import dvc, make_project, project_env, set_params

pytestmark = pytest.mark.slow
# 2 workers each compute half of every global batch, so batch-norm statistics (per replica) and
# float summation order differ from 1 worker's; the AUCs agree within this.
AUC_TOLERANCE = 0.05
WAIT_S = 15  # bound on waiting for a missing worker in the dead-worker test

TWO_CPUS = ("import runpy, tensorflow as tf; cpu = tf.config.list_physical_devices('CPU')[0]; "
            "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2); "
            "runpy.run_module('stages.train', run_name='__main__')")


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def train(project: Path, *, code: str | None = None, timeout: int = 900, **env: str) -> subprocess.Popen:
    args = [sys.executable, "-c", code] if code else [sys.executable, "-m", "stages.train"]
    return subprocess.Popen(args, cwd=project, env=project_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: int = 900) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"no end within {timeout} s:\n{out[-3000:]}") from None
    return out


def outputs(project: Path) -> list[str]:
    return sorted(str(p.relative_to(project)) for p in (project / "models").rglob("*"))


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory) -> Path:
    project = make_project(tmp_path_factory.mktemp("distribute") / "project", {"train.epochs": 2})
    dvc("repro", "preprocess", cwd=project)
    return project


def test_mirrored_over_two_logical_cpus(preprocessed):
    set_params(preprocessed, {"train.distribute": "mirrored"})
    out = finish(train(preprocessed, code=TWO_CPUS))
    set_params(preprocessed, {"train.distribute": "auto"})
    assert "mirrored over 2 replicas" in out, out[-3000:]
    metrics = json.loads((preprocessed / paths.TRAIN_METRICS).read_text())
    assert metrics["distribute"] == "mirrored over 2 replicas" and metrics["epochs"] == 2
    assert 0 <= metrics["val_roc_auc"] <= 1


def test_two_workers_match_one_and_only_the_chief_writes(preprocessed):
    single = finish(train(preprocessed))
    one = json.loads((preprocessed / paths.TRAIN_METRICS).read_text())
    for path in (paths.MODEL, paths.TRAIN_METRICS, paths.TRAIN_TIMING):
        (preprocessed / path).unlink()
    shutil.rmtree(preprocessed / paths.TRAIN_LIVE)
    set_params(preprocessed, {"train.distribute": "multi_worker"})
    ports = free_ports(2)
    workers = [train(preprocessed, TF_CONFIG=tf_config(ports, i)) for i in (0, 1)]
    logs = [finish(w) for w in workers]
    set_params(preprocessed, {"train.distribute": "auto"})
    assert [w.returncode for w in workers] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    assert "worker 1 done (the chief writes the outputs)" in logs[1]
    two = json.loads((preprocessed / paths.TRAIN_METRICS).read_text())
    assert two["distribute"].startswith("multi_worker over 2 replicas")
    assert abs(two["val_roc_auc"] - one["val_roc_auc"]) <= AUC_TOLERANCE, (one, two, single[-500:])
    # exactly one set of outputs, the chief's: no worker checkpoint or metrics left anywhere
    assert outputs(preprocessed) == ["models/model.keras", "models/train_checkpoint"], outputs(preprocessed)
    for path in (paths.TRAIN_METRICS, paths.TRAIN_TIMING, paths.TRAIN_LIVE / "metrics.json"):
        assert (preprocessed / path).is_file()
    assert not [p for p in preprocessed.rglob("*worker*") if ".git" not in p.parts]


def test_a_missing_worker_is_a_clear_error_not_a_hang(preprocessed):
    set_params(preprocessed, {"train.distribute": "multi_worker"})
    started = time.perf_counter()
    chief = train(preprocessed, TF_CONFIG=tf_config(free_ports(2), 0), DEEPFAKE_REGISTER_TIMEOUT=str(WAIT_S))
    out = finish(chief, timeout=WAIT_S + 300)
    set_params(preprocessed, {"train.distribute": "auto"})
    assert chief.returncode == 2, out[-3000:]
    assert out.strip().splitlines()[-1].startswith("error: multi-worker training:"), out[-3000:]
    assert "TF_CONFIG" in out.strip().splitlines()[-1]
    assert time.perf_counter() - started < WAIT_S + 300
