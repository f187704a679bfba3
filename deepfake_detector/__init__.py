"""deepfake-detector: train and evaluate a real-vs-fake face image detector, reproducibly.

Labels are fixed everywhere, from the records to the metrics: Real = 0, Fake = 1, and every score
is P(fake). Anything that infers class indices from folder names (Keras does so alphabetically, which
makes Fake = 0) must be handed ``CLASS_NAMES`` explicitly.
"""

import multiprocessing
import os
import signal
import threading

from deepfake_detector.core.errors import DataError

__version__ = "0.1.0"

CLASS_NAMES = ("Real", "Fake")  # index == label; Fake is the positive class
SPLITS = ("train", "validation", "test")  # also the precedence order for duplicate dropping


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def spawn_pool(workers: int, initializer=None, initargs=()):
    """A ``multiprocessing`` pool of freshly spawned workers (never forked: forking a process that
    holds TensorFlow or threads can deadlock) that ignore Ctrl-C.

    Ctrl-C signals the whole process group; the parent alone handles it, and leaving the pool's
    ``with`` block terminates the workers, so no worker prints a ``KeyboardInterrupt`` traceback.
    They are started with SIGINT ignored, which a new Python process keeps from its first line.
    """
    context = multiprocessing.get_context("spawn")
    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        return context.Pool(workers, initializer, initargs)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return context.Pool(workers, initializer, initargs)
    finally:
        signal.signal(signal.SIGINT, previous)


def check_both_classes(counts: dict, where: str, fix: str) -> None:
    """Every split needs Real and Fake images: training, early stopping and ROC-AUC are undefined
    otherwise. ``counts``: split (None for a dataset without splits) -> {"real": n, "fake": n}.
    Raises one ``DataError`` line naming ``where``, the split and the ``fix``."""
    for split, count in counts.items():
        present = [name for name in CLASS_NAMES if count.get(name.lower(), 0) > 0]
        if len(present) < 2:
            what = f"the {split} split" if split else "the dataset"
            has = f"only {present[0]} images" if present else "no images"
            raise DataError(f"{where}: {what} has {has} (a detector needs Real and Fake images in every "
                            f"split); {fix}")
