"""`dvc repro` with the shipped params.yaml in a fresh copy of the project, timed stage by stage.

Target: the whole pipeline ≤ 180 s on a 2-core machine, with test ROC-AUC ≥ 0.97 on the sample data.
Usage: python benchmarks/repro_time.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from harness import dvc, emit, make_project, timed

from deepfake_detector import paths


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project")
        # undo the tiny test params: this benchmark runs exactly what ships
        (project / "params.yaml").write_text((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
        stages, started = {}, time.perf_counter()
        for stage in ("local_input", "download", "preprocess", "train", "evaluate"):
            result = timed([str(Path(sys.executable).parent / "dvc"), "repro", "--single-item", stage],
                           cwd=project)
            stages[stage] = {"seconds": result["seconds"], "peak_rss_mib": result["peak_rss_mib"]}
            print(f"{stage}: {result['seconds']} s", file=sys.stderr)
        total = round(time.perf_counter() - started, 1)
        evaluation = json.loads((project / paths.EVAL_METRICS).read_text())
        train = {**json.loads((project / paths.TRAIN_METRICS).read_text()),
                 **json.loads((project / paths.TRAIN_TIMING).read_text())}
        data = json.loads((project / paths.DATA_METRICS).read_text())
        status = dvc("status", cwd=project).stdout.strip()
    emit({"total_seconds": total, "target_seconds": 180, "stages": stages,
          "test_roc_auc": round(evaluation["test"]["roc_auc"], 4),
          "validation_roc_auc": round(evaluation["validation"]["roc_auc"], 4),
          "train": {k: train[k] for k in ("epochs", "best_epoch", "train_images_per_second", "wall_seconds")},
          "preprocess_images_per_second": data["images_per_second"],
          "dvc_status_after": status})


if __name__ == "__main__":
    main()
