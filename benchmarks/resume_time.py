"""What resuming saves: `dvc repro` with the train stage SIGKILLed after epoch 2 of 4, then `dvc repro`
again (resumes), against the train stage run from scratch (`dvc repro --force --single-item train`),
in one project copy on the tiny sample. Prints JSON: train's own wall seconds (metrics/timing/train.json)
and the CPU seconds of the resumed and the from-scratch train runs.

``python benchmarks/resume_time.py``
"""

from __future__ import annotations

import json
import resource
import tempfile
from pathlib import Path

from harness import dvc, emit, make_project  # also puts tests/ on the path
from test_resume import EPOCHS, repro_killed_after_epoch

from deepfake_detector.core import paths


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train_seconds(project: Path) -> float:
    return json.loads((project / paths.TRAIN_TIMING).read_text())["wall_seconds"]


def main() -> None:
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project", {"train.epochs": EPOCHS, "train.patience": EPOCHS})
        dvc("repro", "preprocess", cwd=project)
        repro_killed_after_epoch(project, 2)
        for name, args in (("resumed", ()), ("from_scratch", ("--force",))):
            cpu = children_cpu()
            dvc("repro", *args, "--single-item", "train", cwd=project)
            runs[name] = {"train_wall_seconds": train_seconds(project),
                          "cpu_seconds": round(children_cpu() - cpu, 1)}
    emit({"epochs": EPOCHS, "killed_after_epoch": 2, **runs,
          "wall_ratio": round(runs["resumed"]["train_wall_seconds"]
                              / runs["from_scratch"]["train_wall_seconds"], 3),
          "cpu_ratio": round(runs["resumed"]["cpu_seconds"] / runs["from_scratch"]["cpu_seconds"], 3)})


if __name__ == "__main__":
    main()
