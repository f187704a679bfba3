"""The whole pipeline on an archive you have (data.source=local), in a fresh copy, summarised as JSON.

Used to verify on real faces: `python benchmarks/local_archive.py ../shared/data/faces140k-sample.zip`
(extra `-S key=value` pairs override params.yaml, e.g. `-S train.image_size=256`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT, emit, make_project, set_params, timed
from ruamel.yaml import YAML

from deepfake_detector.core import paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("archive", type=Path)
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    # values mean what they mean to `dvc exp run -S` (YAML 1.2: `on` is a string, 4e-3 a number)
    overrides = {k: YAML(typ="safe").load(v) for k, v in (item.split("=", 1) for item in args.set)}
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project")
        (project / "params.yaml").write_text((ROOT / "params.yaml").read_text())
        set_params(project, {"data.source": "local", "data.local_path": str(args.archive.resolve()),
                             **overrides})
        stages = {}
        for stage in ("local_input", "download", "preprocess", "train", "evaluate"):
            started = time.perf_counter()
            timed([str(Path(sys.executable).parent / "dvc"), "repro", "--single-item", stage], cwd=project)
            stages[stage] = round(time.perf_counter() - started, 1)
            print(f"{stage}: {stages[stage]} s", file=sys.stderr)
        data = json.loads((project / paths.DATA_METRICS).read_text())
        train = json.loads((project / paths.TRAIN_METRICS).read_text())
        evaluation = json.loads((project / paths.EVAL_METRICS).read_text())
        near = (project / paths.PROCESSED / paths.NEAR_FILE).read_text().splitlines()[1:6]
    emit({"archive": str(args.archive), "overrides": overrides, "stage_seconds": stages,
          "data": {k: data[k] for k in ("train", "validation", "test", "skipped", "converted", "duplicates")},
          "preprocess_timing": json.loads((project / paths.PREPROCESS_TIMING).read_text()),
          "closest_cross_split_near_pairs": near,
          "train": train,
          "threshold": round(evaluation["threshold"], 4),
          **{split: {k: round(evaluation[split][k], 4) for k in ("roc_auc", "balanced_accuracy", "eer",
                                                                   "accuracy_at_0_5")}
             for split in ("validation", "test")}})


if __name__ == "__main__":
    main()
