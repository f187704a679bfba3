"""deepfake-detector: train and evaluate a real-vs-fake face image detector, reproducibly.

Labels are fixed everywhere, from the records to the CLI's output: Real = 0, Fake = 1, and every score
is P(fake). Anything that infers class indices from folder names (Keras does so alphabetically, which
makes Fake = 0) must be handed ``CLASS_NAMES`` explicitly.
"""

import os

__version__ = "0.1.0"

CLASS_NAMES = ("Real", "Fake")  # index == label; Fake is the positive class
SPLITS = ("train", "validation", "test")  # also the precedence order for duplicate dropping


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1
