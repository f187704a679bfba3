"""Train's peak memory against its cache budget (train.cache_ram_mb): cache what fits, stream the rest.

Runs one epoch on a larger sample with several budgets; peak RSS should follow the budget, not the
dataset size. Usage: python benchmarks/train_memory.py [--images 8000] [--budgets 0 128 1024]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml
from harness import ROOT, dvc, emit, make_project, set_params, timed

from deepfake_detector.core import paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=8000)
    parser.add_argument("--budgets", type=int, nargs="+", default=[0, 128, 1024])
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project", {
            "data.sample.image_size": 256, "preprocess.image_size": 256, "preprocess.shard_images": 512,
            "data.sample.train": args.images, "data.sample.validation": 200, "data.sample.test": 200,
            "train.image_size": 128, "train.epochs": 1, "train.batch_size": 64,
            "train.model": yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["model"]})
        dvc("repro", "preprocess", cwd=project)
        decoded_mib = args.images * 128 * 128 * 3 / 2**20
        for budget in args.budgets:
            print(f"cache budget {budget} MiB...", file=sys.stderr)
            set_params(project, {"train.cache_ram_mb": budget})
            run = timed([sys.executable, "-m", "stages.train"], cwd=project)
            train = json.loads((project / paths.TRAIN_METRICS).read_text())
            results[str(budget)] = {"peak_rss_mib": run["peak_rss_mib"],
                                    "cached_images": train["cached_images"], "seconds": run["seconds"]}
    emit({"train_images": args.images, "decoded_dataset_mib": round(decoded_mib, 1),
          "by_budget_mib": results})


if __name__ == "__main__":
    main()
