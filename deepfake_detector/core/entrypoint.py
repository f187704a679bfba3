"""What every entry point (each ``stages/<name>.py`` script and the ``deepfake-detector`` command)
shares: quiet libraries, and user errors as one line, not a traceback.

TensorFlow prints its start-up lines (oneDNN notice, "Could not find cuda drivers", CPU feature
guard, cuInit failure) from C++ through absl before any log level applies, so
``load_tensorflow`` catches file descriptor 2 while TensorFlow loads and looks for devices, and
passes on every line except those known, meaningless ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from typing import Callable

from deepfake_detector.core.errors import UserError

# C++ start-up lines that tell a CPU user nothing they can act on.
_NOISE = re.compile(r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
                    r"Could not find cuda drivers|cpu_feature_guard|To enable the following instructions|"
                    r"failed call to cuInit|rebuild TensorFlow with the appropriate compiler flags|"
                    r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
                    r"TF-TRT Warning|could not open file to read NUMA node|"
                    r"Created TensorFlow Lite XNNPACK delegate")
# Keras warnings that hold for our datasets by design (they are shuffled and sized in tf.data).
_KERAS_NOISE = (r"`shuffle=True` was passed", r"Your input ran out of data")
_loaded = False


@contextlib.contextmanager
def filtered_stderr():
    """Run the block with fd 2 going to a temp file, then pass on its lines that are not noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines()
                    if line.strip() and not _NOISE.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def load_tensorflow():
    """Import TensorFlow and enumerate devices once, quietly; returns the module."""
    global _loaded
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not _loaded:
        with filtered_stderr():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the cuInit attempt happens here
        for message in _KERAS_NOISE:
            warnings.filterwarnings("ignore", message=f".*{message}.*")
        # tf.distribute logs INFO lines per traced all-reduce and strategy ("Collective all_reduce
        # tensors: ...") that the root INFO level would print; its warnings still show
        logging.getLogger("tensorflow").setLevel(logging.WARNING)
        _loaded = True
    import tensorflow as tf

    return tf


# numerics.portable: what every x86-64 CPU with AVX2 computes alike (benchmarks/isa_reproducibility.py).
# oneDNN picks its kernels by the CPU it finds, and TensorFlow's own (Eigen) matrix products call
# oneDNN's sgemm too, so both are held at AVX2; how many threads split a sum decides its rounding, so
# their number is fixed too (taken from the param, not from the machine's core count).
PORTABLE_ENVIRONMENT = {"ONEDNN_MAX_CPU_ISA": "AVX2", "TF_ENABLE_ONEDNN_OPTS": "0"}


def portable_numerics(portable: bool, threads: int) -> dict:
    """Apply ``params.yaml``'s ``numerics`` section before TensorFlow loads; returns what was set
    (empty when not ``portable``: TensorFlow then picks the fastest kernels for this CPU)."""
    if not portable:
        return {}
    settings = {**PORTABLE_ENVIRONMENT, "TF_NUM_INTRAOP_THREADS": str(threads)}
    # oneDNN and TensorFlow's thread pools read these once, at load: too late unless already in effect
    if "tensorflow" in sys.modules and any(os.environ.get(k) != v for k, v in settings.items()):
        raise RuntimeError("portable_numerics must run before TensorFlow is imported")
    os.environ.update(settings)
    return settings


def quiet_libraries(tf_level: str = "2") -> None:
    """Before TensorFlow or OpenCV load: their C++ logs at ``tf_level`` and above only, OpenCV's own
    warnings ("[ WARN:0@...]") and FFmpeg's ("moov atom not found") off. A file they cannot read
    is reported by the caller, in its own words. Each is an environment default a user can override."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", tf_level)
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def run(main: Callable[[], None]) -> None:
    """Run an entry point's ``main``; a ``UserError`` becomes ``error: <message>`` and exit status 2."""
    quiet_libraries()  # before TensorFlow or OpenCV is imported anywhere
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: outputs were not replaced; re-run to continue", file=sys.stderr)
        sys.exit(130)
