"""`dvc repro` with the shipped params.yaml in a fresh copy of the project, timed stage by stage.

Target: the whole pipeline ≤ 180 s on a 2-core machine, with test ROC-AUC ≥ 0.97 on the sample data.
Seconds don't carry across machines, so a reference is measured right after the run, in the same
process (plain multi-process ``cv2.imdecode`` of the sample's images, ``harness.DecodeReference``):
``reference_decodes_per_second`` and ``total_in_reference_seconds``, the total scaled to a machine whose
reference rate is ``REFERENCE_RATE`` (what this machine did when it was idle), are what compare.
Usage: python benchmarks/repro_time.py
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import DecodeReference, alternate, dvc, emit, machine, make_project, timed, zip_images

from deepfake_detector import usable_cpus
from deepfake_detector.core import paths

REFERENCE_RATE = 4645  # cv2.imdecode img/s of 256 px JPEGs in Pool(2), issue 14's second machine


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project")
        # undo the tiny test params: this benchmark runs exactly what ships
        (project / "params.yaml").write_text(
            (Path(__file__).resolve().parents[1] / "params.yaml").read_text())
        stages, started = {}, time.perf_counter()
        for stage in ("local_input", "download", "preprocess", "train", "evaluate"):
            result = timed([str(Path(sys.executable).parent / "dvc"), "repro", "--single-item", stage],
                           cwd=project)
            stages[stage] = {"seconds": result["seconds"], "peak_rss_mib": result["peak_rss_mib"]}
            print(f"{stage}: {result['seconds']} s", file=sys.stderr)
        total = round(time.perf_counter() - started, 1)
        with DecodeReference(zip_images(project / paths.ARCHIVE), usable_cpus()) as decode:
            rounds = alternate({"decode": decode}, 3)["decode"]
        decode_rate = statistics.median(r["items_per_second"] for r in rounds)
        evaluation = json.loads((project / paths.EVAL_METRICS).read_text())
        train = {**json.loads((project / paths.TRAIN_METRICS).read_text()),
                 **json.loads((project / paths.TRAIN_TIMING).read_text())}
        preprocess_timing = json.loads((project / paths.PREPROCESS_TIMING).read_text())
        status = dvc("status", cwd=project).stdout.strip()
    emit({"total_seconds": total, "target_seconds": 180, "machine": machine(),
          "reference_decodes_per_second": round(decode_rate, 1),
          "total_in_reference_seconds": round(total * decode_rate / REFERENCE_RATE, 1), "stages": stages,
          "test_roc_auc": round(evaluation["test"]["roc_auc"], 4),
          "validation_roc_auc": round(evaluation["validation"]["roc_auc"], 4),
          "train": {k: train[k] for k in ("epochs", "best_epoch", "train_images_per_second", "wall_seconds")},
          "preprocess_images_per_second": preprocess_timing["images_per_second"],
          "dvc_status_after": status})


if __name__ == "__main__":
    main()
