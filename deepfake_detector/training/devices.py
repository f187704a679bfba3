"""Where training runs: the device, seeds and determinism, mixed precision, and the machine facts
that decide numeric results (the tf.distribute strategy is ``distribute.py``'s). TensorFlow itself is
loaded quietly by ``entrypoint.load_tensorflow``."""

from __future__ import annotations

import logging
import os

from deepfake_detector.core.entrypoint import load_tensorflow

log = logging.getLogger(__name__)


def gpus() -> list:
    return load_tensorflow().config.list_physical_devices("GPU")


def device_name() -> str:
    tf = load_tensorflow()
    found = gpus()
    if not found:
        return "CPU"
    details = tf.config.experimental.get_device_details(found[0])
    return f"GPU:{details.get('device_name', found[0].name)}" + (f" x{len(found)}" if len(found) > 1 else "")


def seed_everything(seed: int, deterministic: bool) -> None:
    """Python, NumPy, TensorFlow and Keras seeds; with ``deterministic`` also TensorFlow's
    deterministic kernels (and tf.data's deterministic order), so a rerun on the same machine gives
    the same weights by construction, whatever the thread scheduling."""
    import keras

    tf = load_tensorflow()
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def use_mixed_precision(mode: str) -> bool:
    """Mixed float16 pays off on GPUs only; on CPU it is slower and changes results. The models'
    output layer stays float32 (models._head), and Keras' LossScaleOptimizer is applied by compile."""
    import keras

    enabled = mode == "on" or (mode == "auto" and bool(gpus()))
    keras.mixed_precision.set_global_policy("mixed_float16" if enabled else "float32")
    return enabled


def cpu_isa() -> str:
    """The widest x86 vector extension this CPU has (oneDNN picks kernels by it), e.g. avx512."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    for name, flag in (("avx512_fp16", "avx512_fp16"), ("avx512_bf16", "avx512_bf16"),
                       ("avx512_vnni", "avx512_vnni"), ("avx512", "avx512f"), ("avx2", "avx2"),
                       ("avx", "avx"), ("sse4_2", "sse4_2")):
        if flag in flags:
            return name
    return "baseline"


def onednn_enabled() -> bool:
    """Whether TensorFlow's oneDNN (MKL) kernels are on: built in, and not switched off by
    TF_ENABLE_ONEDNN_OPTS=0 (they are on by default for x86 Linux builds)."""
    load_tensorflow()
    from tensorflow.python.util import _pywrap_util_port

    switch = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower()
    return bool(_pywrap_util_port.IsMklEnabled()) and switch not in ("0", "false")


def machine_facts(deterministic: bool) -> dict:
    """What decides the exact numbers of a run besides params and data (recorded in train.json). With
    ``numerics.portable`` (``entrypoint.portable_numerics``) that is the same on every AVX2 CPU, so
    this CPU's own ISA is not among them (``host_cpu_isa`` says it, in the timing file)."""
    tf = load_tensorflow()
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA")
    facts = {"cpu_isa": capped.lower() if capped else cpu_isa(), "tensorflow": tf.__version__,
             "onednn": onednn_enabled(), "deterministic": deterministic}
    if capped:
        facts["onednn_max_cpu_isa"] = capped
    if os.environ.get("TF_NUM_INTRAOP_THREADS"):
        facts["threads"] = int(os.environ["TF_NUM_INTRAOP_THREADS"])
    return facts
