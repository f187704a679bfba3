"""Recipes on real faces: the shared FFHQ/StyleGAN sample through the real pipeline, several seeds.

Per recipe (train.recipe, or `default` = the shipped train params as they are) and seed: `dvc repro
evaluate` on a project copy with data.source=local, then Validation and Test ROC-AUC from
metrics/eval.json, and the same Test images under each of evaluate's corruptions (its `robustness`:
ROC-AUC, and accuracy at the Validation threshold), training wall and CPU seconds from the stage.
The recipe is chosen on Validation;
Test is reported. Runs alternate recipes seed by seed (A, B, A, B...) so machine load drifts hit both.
Usage: python benchmarks/real_faces.py --archive ../shared/data/faces140k-sample.zip
         [--recipes default pristine_faces real_faces] [--seeds 42 1 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
from pathlib import Path

from harness import ROOT, dvc, emit, make_project, set_params, timed

from deepfake_detector.core import paths
from deepfake_detector.core.params import load_section


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(project: Path, recipe: str, seed: int) -> dict:
    set_params(project, {"train.recipe": recipe, "train.seed": seed})
    train = load_section("train", project / "params.yaml")
    cpu = children_cpu_seconds()
    run = timed([str(Path(sys.executable).parent / "dvc"), "repro", "evaluate"], cwd=project)
    metrics = json.loads((project / paths.TRAIN_METRICS).read_text())
    timing = json.loads((project / paths.TRAIN_TIMING).read_text())  # speed lives apart from metrics
    scores = json.loads((project / paths.EVAL_METRICS).read_text())
    return {"seed": seed, "model": train.model, "image_size": train.image_size,
            "patch_size": train.patch_size, "inference": train.inference,
            "validation_roc_auc": round(scores["validation"]["roc_auc"], 4),
            "test_roc_auc": round(scores["test"]["roc_auc"], 4),
            "test_accuracy": round(scores["test"]["accuracy"], 4),
            "corrupted_test": {name: {key: round(value, 4) for key, value in corrupted.items()}
                               for name, corrupted in scores["robustness"].items()},
            "train_wall_seconds": timing["wall_seconds"], "epochs": metrics["epochs"],
            "best_epoch": metrics["best_epoch"],
            "train_and_evaluate_wall_seconds": run["seconds"],
            "train_and_evaluate_cpu_seconds": round(children_cpu_seconds() - cpu, 1)}


def summary(runs: list[dict]) -> dict:
    def mean_sd(key, of=lambda run: run):
        values = [of(r)[key] for r in runs]
        return {"mean": round(statistics.mean(values), 4),
                "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None}

    first = runs[0]
    return {"model": first["model"], "image_size": first["image_size"], "patch_size": first["patch_size"],
            "inference": first["inference"], "validation_roc_auc": mean_sd("validation_roc_auc"),
            "test_roc_auc": mean_sd("test_roc_auc"), "test_accuracy": mean_sd("test_accuracy"),
            "corrupted_test": {name: {key: mean_sd(key, lambda run: run["corrupted_test"][name])
                                      for key in ("roc_auc", "accuracy")}
                               for name in first["corrupted_test"]},
            "train_wall_seconds": mean_sd("train_wall_seconds"), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archive", type=Path, required=True, help="a Kaggle-layout zip of real faces")
    parser.add_argument("--recipes", nargs="+", default=["default", "pristine_faces", "real_faces"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project")
        (project / "params.yaml").write_text((ROOT / "params.yaml").read_text())
        set_params(project, {"data.source": "local", "data.local_path": str(args.archive.resolve())})
        print("preprocessing the archive...", file=sys.stderr)
        dvc("repro", "preprocess", cwd=project)
        runs: dict[str, list] = {recipe: [] for recipe in args.recipes}
        for seed in args.seeds:
            for recipe in args.recipes:
                print(f"{recipe}, seed {seed}...", file=sys.stderr)
                runs[recipe].append(one_run(project, recipe, seed))
                print(json.dumps(runs[recipe][-1]), file=sys.stderr)
    emit({"archive": args.archive.name, "seeds": args.seeds,
          "recipes": {recipe: summary(r) for recipe, r in runs.items()}})


if __name__ == "__main__":
    main()
