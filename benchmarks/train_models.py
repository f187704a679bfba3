"""The default model against the seed project's 4-block CNN, same data, same params, same run.

Target: default model's training throughput ≥ 2x the seed CNN's, at equal or better test ROC-AUC on
the sample data. Also reports the sample's difficulty check (seed CNN < 0.995 test AUC).
Usage: python benchmarks/train_models.py [--models mobilenet_v3_small seed_cnn]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from harness import ROOT, dvc, emit, make_project, set_params, timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["mobilenet_v3_small", "seed_cnn"])
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project")
        (project / "params.yaml").write_text((ROOT / "params.yaml").read_text())
        dvc("repro", "preprocess", cwd=project)
        for model in args.models:
            print(f"training {model}...", file=sys.stderr)
            set_params(project, {"train.model": model})
            run = timed([str(Path(sys.executable).parent / "dvc"), "repro", "evaluate"], cwd=project)
            train = json.loads((project / "metrics/train.json").read_text())
            test = json.loads((project / "metrics/eval.json").read_text())["test"]
            results[model] = {"train_images_per_second": train["train_images_per_second"],
                              "parameters": train["parameters"], "epochs": train["epochs"],
                              "train_wall_seconds": train["wall_seconds"],
                              "test_roc_auc": round(test["roc_auc"], 4),
                              "test_balanced_accuracy": round(test["balanced_accuracy"], 4),
                              "train_plus_evaluate_seconds": run["seconds"]}
    summary = {"results": results}
    if {"mobilenet_v3_small", "seed_cnn"} <= set(results):
        default, seed = results["mobilenet_v3_small"], results["seed_cnn"]
        summary["speedup_vs_seed_cnn"] = round(default["train_images_per_second"]
                                               / seed["train_images_per_second"], 2)
        summary["auc_difference_vs_seed_cnn"] = round(default["test_roc_auc"] - seed["test_roc_auc"], 4)
        summary["sample_too_easy"] = seed["test_roc_auc"] >= 0.995
    emit(summary)


if __name__ == "__main__":
    main()
