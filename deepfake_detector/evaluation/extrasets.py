"""Other labelled sets scored with the same model and threshold (``evaluate.extra_sets``).

A detector can learn what one dataset's fakes have in common (one generator's traces, one
pipeline's compression) rather than what makes a face fake; its in-dataset ROC-AUC then says little
about faces from elsewhere. Each extra set is a zip or a folder in any layout the local source
understands (``sources.layout``); all of its images are scored, splits or not, as
``predict --no-detect`` scores a face crop: decoded by ``inference.decode``, centre square,
``inference.fit``, ``Scorer.score``. Unreadable images are skipped and counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deepfake_detector.model import inference
from deepfake_detector.core.errors import ParamError
from deepfake_detector.data.sources import archive, local

# The data section's archive-bomb guards at their defaults: an extra set is read like a local dataset.
LIMITS = archive.Limits(64 * 2**20, 20 * 2**30)


def check_paths(extra_sets: dict) -> None:
    """Every listed set exists and is a folder or a .zip: checked before evaluate does any work."""
    for name, path in extra_sets.items():
        src = Path(path).expanduser()
        if not (src.is_dir() or (src.is_file() and src.suffix.lower() == ".zip")):
            raise ParamError(f"params.yaml: evaluate.extra_sets.{name}={path!r} is not a folder or a .zip "
                             "file; point it at a labelled set (Real/Fake folders) or remove it")


def score_set(scorer: inference.Scorer, path: str | Path, batch_size: int) -> tuple[pd.DataFrame, dict]:
    """(DataFrame(name, label, score) in name order, {"skipped": {reason: n}}) for one set."""
    rows, pending, skipped = [], [], {}

    def flush():
        if pending:
            scores = scorer.score(np.stack([pixels for _, _, pixels in pending]), batch_size)
            rows.extend((name, label, float(s)) for (name, label, _), s in zip(pending, scores))
            pending.clear()

    for member, data in local.read_labelled(Path(path).expanduser(), LIMITS):
        try:
            rgb = inference.decode(data)
        except inference.Unreadable as exc:
            skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
            continue
        pending.append((member.name, member.label,
                        inference.crops(rgb, None, 0.0, scorer.image_size)[0].pixels))
        if len(pending) == batch_size:
            flush()
    flush()
    return pd.DataFrame(rows, columns=["name", "label", "score"]), {"skipped": skipped}


def summarize(frame: pd.DataFrame, threshold: float, skipped: dict) -> dict:
    """extra.<name>: ``evaluation.summarize``'s ROC-AUC, accuracies and counts at the Validation
    threshold, and the images skipped."""
    from deepfake_detector.evaluation.metrics import summarize as summarize_scores

    labels, scores = frame["label"].to_numpy(dtype=int), frame["score"].to_numpy(dtype=float)
    if len(labels):
        summary = summarize_scores(labels, scores, threshold)
        kept = {k: summary[k] for k in ("roc_auc", "balanced_accuracy", "accuracy", "n_real", "n_fake")}
    else:  # every image was skipped
        kept = {"roc_auc": None, "balanced_accuracy": None, "accuracy": None, "n_real": 0, "n_fake": 0}
    return {**kept, "skipped": int(sum(skipped.values()))}
