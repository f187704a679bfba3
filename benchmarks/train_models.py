"""The default model against the seed project's 4-block CNN, on the same data with the same params.

Targets: the default model trains ≥ 2x as many images per second as the seed CNN, at equal or better
test ROC-AUC on the sample data; and the sample is not too easy (seed CNN test ROC-AUC < 0.995).

Two measurements per model:
- accuracy: the real pipeline (`dvc repro evaluate` with train.model set), test ROC-AUC from eval.json;
- speed: training steps on the same cached, augmented input pipeline, models alternated over several
  rounds (``harness.alternate``), because a shared 2-core VM drifts by ±30% over minutes and one run
  per model would measure the drift as much as the model; each model's rate is reported as a ratio to
  the seed CNN's (``vs_seed_cnn``), the figure to compare across machines.
Test ROC-AUC is averaged over several training seeds, since one run's AUC moves by about as much with the
seed as the models differ.
Usage: python benchmarks/train_models.py [--models mobilenet_v3_small seed_cnn] [--rounds 5] [--seeds 42 1 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from harness import ROOT, alternate, dvc, emit, machine, make_project, ratio_to, set_params, timed

from deepfake_detector.core import paths
from deepfake_detector.core.params import load_section


def accuracy(project: Path, model: str, seed: int, learning_rate: float) -> dict:
    set_params(project, {"train.model": model, "train.seed": seed, "train.learning_rate": learning_rate})
    timed([str(Path(sys.executable).parent / "dvc"), "repro", "evaluate"], cwd=project)
    train = {**json.loads((project / paths.TRAIN_METRICS).read_text()),
             **json.loads((project / paths.TRAIN_TIMING).read_text())}
    test = json.loads((project / paths.EVAL_METRICS).read_text())["test"]
    return {"seed": seed, "learning_rate": learning_rate, "test_roc_auc": round(test["roc_auc"], 4),
            "test_balanced_accuracy": round(test["balanced_accuracy"], 4),
            "epochs": train["epochs"], "best_epoch": train["best_epoch"], "parameters": train["parameters"],
            "train_wall_seconds": train["wall_seconds"],
            "pipeline_train_images_per_second": train["train_images_per_second"]}


def step_rates(project: Path, models: list[str], rounds: int, steps: int = 20) -> dict:
    """Median training images/s per model, models interleaved round by round."""
    sys.path.insert(0, str(project))
    import keras

    from deepfake_detector.model import builders as registry
    from deepfake_detector.core import params
    from deepfake_detector.data import records
    from deepfake_detector.training import feed

    train = params.load_section("train", project / "params.yaml")
    folder = project / paths.PROCESSED
    catalog = records.load_catalog(folder)
    data, _ = feed.train_dataset(folder, catalog, train.image_size, train.batch_size, 10**9,
                                     train.augment, train.seed)
    data = data.repeat()
    compiled = {}
    for name in models:
        model = registry.build(name, train.image_size)
        model.compile(optimizer=keras.optimizers.Adam(train.learning_rate), loss="binary_crossentropy",
                      jit_compile=False)
        model.fit(data, steps_per_epoch=5, epochs=1, verbose=0)  # trace, fill the cache
        compiled[name] = model
    def fit_steps(model) -> int:
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        return steps * train.batch_size

    runs = alternate({name: (lambda m=model: fit_steps(m)) for name, model in compiled.items()}, rounds)
    reference = runs.get("seed_cnn")
    result = {}
    for name, r in runs.items():
        rates = [x["items_per_second"] for x in r]
        result[name] = {"median": round(statistics.median(rates), 1), "min": min(rates), "max": max(rates)}
        if reference:
            result[name]["vs_seed_cnn"] = ratio_to(reference, r, "the seed project's CNN, same input "
                                                   "pipeline, interleaved training steps")
    return result


def summarize_runs(runs: list[dict]) -> dict:
    """Mean and spread over seeds of what decides the comparison; every run kept as measured."""
    aucs = [run["test_roc_auc"] for run in runs]
    rates = [run["pipeline_train_images_per_second"] for run in runs]
    return {"test_roc_auc": round(statistics.mean(aucs), 4),
            "test_roc_auc_stdev": round(statistics.stdev(aucs), 4) if len(aucs) > 1 else None,
            "pipeline_train_images_per_second": round(statistics.median(rates), 1),
            "parameters": runs[0]["parameters"], "runs": runs}


def main() -> None:
    shipped = load_section("train", ROOT / "params.yaml")
    default_model = shipped.model
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=[default_model, "seed_cnn"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--learning-rate", nargs="+", default=["seed_cnn=0.003"], metavar="MODEL=RATE",
                        help="per-model train.learning_rate (default: params.yaml's). The seed CNN diverges "
                             "at the shipped 0.004 (test ROC-AUC 0.5), so it is compared at 0.003, "
                             "where it still diverges for some seeds (look at the runs: a test ROC-AUC "
                             "near 0.5)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2],
                        help="training seeds per model: one run's AUC moves by ~0.005 with the seed alone")
    args = parser.parse_args()
    models = list(dict.fromkeys(args.models))
    rates = {model: shipped.learning_rate for model in models}
    rates.update({name: float(rate) for name, rate in (item.split("=", 1) for item in args.learning_rate)})
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project")
        (project / "params.yaml").write_text((ROOT / "params.yaml").read_text())
        dvc("repro", "preprocess", cwd=project)
        results = {}
        for model in models:
            runs = []
            for seed in args.seeds:
                print(f"training {model} (seed {seed}) through the pipeline...", file=sys.stderr)
                runs.append(accuracy(project, model, seed, rates[model]))
            results[model] = summarize_runs(runs)
        print("timing training steps, models interleaved...", file=sys.stderr)
        for model, rate in step_rates(project, models, args.rounds).items():
            results[model]["train_images_per_second"] = rate
    summary = {"default_model": default_model, "machine": machine(), "results": results}
    if {default_model, "seed_cnn"} <= set(results):
        default, seed = results[default_model], results["seed_cnn"]
        summary["speedup_vs_seed_cnn"] = default["train_images_per_second"]["vs_seed_cnn"]["ratio"]
        summary["pipeline_speedup_vs_seed_cnn"] = round(default["pipeline_train_images_per_second"]
                                                        / seed["pipeline_train_images_per_second"], 2)
        summary["auc_difference_vs_seed_cnn"] = round(default["test_roc_auc"] - seed["test_roc_auc"], 4)
        summary["sample_too_easy"] = max(run["test_roc_auc"] for run in seed["runs"]) >= 0.995
    emit(summary)


if __name__ == "__main__":
    main()
