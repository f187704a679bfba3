"""train.distribute on a CPU: MirroredStrategy over 2 logical CPU devices; multi_worker refused in one
line (Keras 3 can't fit under MultiWorkerMirroredStrategy: keras-team/keras#20585)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deepfake_detector import paths
from projectcopy import dvc, make_project, project_env, set_params

pytestmark = pytest.mark.slow

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


def train(project: Path, *, code: str | None = None, **env: str) -> subprocess.Popen:
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


def test_multi_worker_is_refused_with_a_clear_line(preprocessed):
    """Keras 3 can't fit under MultiWorkerMirroredStrategy (keras-team/keras#20585): two real workers
    on loopback ports joined, then fit failed on PerReplica batches. Until Keras fixes it the stage
    refuses at start, in one line, instead of failing after the cluster formed."""
    set_params(preprocessed, {"train.distribute": "multi_worker"})
    ports = free_ports(2)
    chief = train(preprocessed, TF_CONFIG=tf_config(ports, 0))
    out = finish(chief, timeout=600)
    set_params(preprocessed, {"train.distribute": "auto"})
    assert chief.returncode == 2, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith("error: params.yaml: train.distribute=multi_worker") and "20585" in last, out[-3000:]
    assert not (preprocessed / "models" / "train_checkpoint-worker0").exists()
