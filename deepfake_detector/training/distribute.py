"""How training is spread over devices and machines: the tf.distribute strategy for
``train.distribute`` (docs/gpu-and-multi-machine.md), the multi-worker cluster (TF_CONFIG, which
process is the chief), and bounds on every cluster wait, so that a worker that is missing or dies is
one clear line, never a hang. Keras 3's own multi-worker gaps are patched in ``keras_multi_worker``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys

from deepfake_detector.core.entrypoint import load_tensorflow
from deepfake_detector.training.devices import gpus


def tf_config() -> dict:
    """The parsed TF_CONFIG (multi-worker cluster and this task), or {}."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        from deepfake_detector.core.errors import UserError
        raise UserError(f"TF_CONFIG is not valid JSON ({exc}); see docs/gpu-and-multi-machine.md") from None


def is_chief() -> bool:
    """Whether this process writes outputs: always, except a non-chief multi-worker task."""
    config = tf_config()
    task, cluster = config.get("task", {}), config.get("cluster", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in cluster


def worker_index() -> int:
    return int(tf_config().get("task", {}).get("index", 0))


# Bounds on every multi-worker wait: a dead or missing worker becomes an error, never a hang.
COLLECTIVE_TIMEOUT_S = int(os.environ.get("DEEPFAKE_COLLECTIVE_TIMEOUT", "120"))
REGISTER_TIMEOUT_S = int(os.environ.get("DEEPFAKE_REGISTER_TIMEOUT", "120"))
# The watchdog's wait past the register timeout, so that TensorFlow's own timeout speaks first where
# it can (a worker that never starts leaves TensorFlow waiting past it: the watchdog ends that).
WATCHDOG_GRACE_S = int(os.environ.get("DEEPFAKE_WATCHDOG_GRACE", "30"))


def strategy(mode: str):
    """The tf.distribute strategy for ``train.distribute``: auto = MirroredStrategy when TensorFlow
    sees more than one GPU, else the default (one device)."""
    tf = load_tensorflow()
    from deepfake_detector.core.errors import ParamError

    if mode == "auto":
        mode = "mirrored" if len(gpus()) > 1 else "none"
    if mode == "none":
        return tf.distribute.get_strategy()
    if mode == "mirrored":
        names = [d.name for d in tf.config.list_logical_devices("GPU")]
        if names:
            return tf.distribute.MirroredStrategy(names)
        # CPU replicas (logical CPU devices, as in the tests) reduce on one device: NCCL needs GPUs
        names = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(names, cross_device_ops=tf.distribute.ReductionToOneDevice())
    config = tf_config()
    if not config.get("cluster") or not config.get("task"):
        raise ParamError("params.yaml: train.distribute=multi_worker needs the TF_CONFIG environment "
                         "variable (cluster and task); see docs/gpu-and-multi-machine.md")
    _configure_coordination(tf, config)
    from deepfake_detector.training import keras_multi_worker

    keras_multi_worker.apply()  # Keras 3's fit fails under this strategy without it (keras#20585)
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_S)
    workers = ", ".join(config["cluster"].get("worker", []))
    with cluster_errors(f"joining the cluster (waited up to {REGISTER_TIMEOUT_S} s)"), _watchdog(
            REGISTER_TIMEOUT_S + WATCHDOG_GRACE_S,
            f"error: multi-worker training: no contact with every worker "
            f"of TF_CONFIG ({workers}) after {REGISTER_TIMEOUT_S + WATCHDOG_GRACE_S} s; "
            "start them all with the same params and data, "
            "and check the addresses and ports"):
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


@contextlib.contextmanager
def _watchdog(seconds: int, message: str):
    """Bound the block by a child process that prints ``message`` and kills this one after ``seconds``.
    TensorFlow's cluster join can wait for a worker that never starts inside C++ holding the GIL,
    past its own register timeout, where no Python timer or signal handler runs."""
    import subprocess

    read_end, write_end = os.pipe()
    guard = ("import os, select, signal, sys\n"
             "if not select.select([int(sys.argv[1])], [], [], float(sys.argv[3]))[0]:\n"
             "    print(sys.argv[4], file=sys.stderr, flush=True)\n"
             "    os.kill(int(sys.argv[2]), signal.SIGKILL)\n")
    child = subprocess.Popen([sys.executable, "-c", guard, str(read_end), str(os.getpid()), str(seconds),
                              message], pass_fds=(read_end,))
    os.close(read_end)
    try:
        yield
    finally:
        os.close(write_end)  # end of file: the guard wakes and exits quietly (also if this process dies)
        child.wait()


def _configure_coordination(tf, config: dict) -> None:
    """MultiWorkerMirroredStrategy waits for every worker without limit by default; bound it."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    leader = "chief" if "chief" in config["cluster"] else "worker"
    jobs = [coordination_config_pb2.CoordinatedJob(name=name, num_tasks=len(tasks))
            for name, tasks in config["cluster"].items() if name in ("chief", "worker")]
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=f"/job:{leader}/replica:0/task:0",
        coordinated_jobs=jobs, cluster_register_timeout_in_ms=REGISTER_TIMEOUT_S * 1000,
        heartbeat_timeout_in_ms=30_000, shutdown_barrier_timeout_in_ms=REGISTER_TIMEOUT_S * 1000)


def is_multi_worker(strategy) -> bool:
    return isinstance(strategy, load_tensorflow().distribute.MultiWorkerMirroredStrategy)


def describe(strategy) -> str:
    """", mirrored over 2 replicas" or "" for the default strategy (for the device log line)."""
    replicas = strategy.num_replicas_in_sync
    kind = type(strategy).__name__
    if is_multi_worker(strategy):
        return f", multi_worker over {replicas} replicas (worker {worker_index()})"
    if kind == "MirroredStrategy":
        return f", mirrored over {replicas} replicas"
    return ""


def shard_options(dataset):
    """Every worker reads all records with the same seed and keeps its share of the batches
    (DATA sharding): the split doesn't depend on how many record files there are."""
    tf = load_tensorflow()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


@contextlib.contextmanager
def cluster_errors(what: str):
    """A multi-worker failure (a worker missing, dead or unreachable: TensorFlow's waits time out) as
    one clear ``UserError`` line instead of a TensorFlow traceback."""
    tf = load_tensorflow()
    try:
        yield
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError, tf.errors.CancelledError,
            tf.errors.AbortedError, tf.errors.InternalError) as exc:
        from deepfake_detector.core.errors import UserError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", first)[:200]  # TF's op name: no help
        workers = tf_config().get("cluster", {}).get("worker", [])
        raise UserError(f"multi-worker training: {what} failed ({first}); a worker is missing, died or "
                        f"is unreachable: start every worker of TF_CONFIG ({', '.join(workers)}) "
                        "with the same params and data, and check the addresses and ports") from None
