"""Stage `evaluate`: the model scored on Validation and Test → metrics/eval.json and plots.

The decision threshold is chosen on Validation (maximum balanced accuracy) and only applied to Test.
Plots: ROC and precision-recall curves per split (thinned), the Test confusion matrix, and PNG
renderings in metrics/plots/. Per-image scores go to data/eval/predictions.csv for error analysis.
Images are scored through deepfake_detector.model.inference, as predict scores them, and the threshold is
written beside the model with the model file's sha256 (models/model.keras.threshold.json), so
predict uses it only with the model it was chosen for.
Beyond one number: Test under corruptions (robustness.*), other labelled sets (extra.*), calibration
(ece, the reliability diagram), and pictures (confident mistakes, sample images per split).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from deepfake_detector import CLASS_NAMES
from deepfake_detector.core import entrypoint
from deepfake_detector import SPLITS as ALL_SPLITS
from deepfake_detector.core.files import atomic_path, write_json
from deepfake_detector.core.params import load_section
from deepfake_detector.core.paths import EVAL_METRICS, MANIFEST, MODEL, PLOTS, PREDICTIONS, PROCESSED

SPLITS = ("validation", "test")
log = logging.getLogger("evaluate")


def score_split(scorer, catalog: dict, split: str, batch_size: int) -> pd.DataFrame:
    from deepfake_detector.data import records

    scored = scorer.score_records(records.split_files(PROCESSED, catalog, split), catalog["image_size"],
                                  batch_size)
    scored.insert(1, "split", split)
    return scored


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)


def check(params) -> None:
    from deepfake_detector.evaluation import extrasets

    extrasets.check_paths(params.extra_sets)


def beyond_one_number(scorer, catalog: dict, scored: dict, threshold: float, params, report: dict) -> None:
    """Robustness, extra sets, calibration and pictures: keys added to ``report``, files to PLOTS."""
    from deepfake_detector.evaluation import metrics as evaluation
    from deepfake_detector.evaluation import extrasets
    from deepfake_detector.evaluation import gallery
    from deepfake_detector.data import records
    from deepfake_detector.evaluation import robustness

    test_files = records.split_files(PROCESSED, catalog, "test")
    report["robustness"] = {}
    for name, frame in robustness.score_corrupted(scorer, test_files, params.batch_size).items():
        summary = evaluation.summarize(frame["label"].to_numpy(), frame["score"].to_numpy(), threshold)
        report["robustness"][name] = {k: summary[k] for k in ("roc_auc", "accuracy")}
    report["extra"] = {}
    for name, path in params.extra_sets.items():
        frame, details = extrasets.score_set(scorer, path, params.batch_size)
        report["extra"][name] = extrasets.summarize(frame, threshold, details["skipped"])
    curves = {s: (f["label"].to_numpy(), f["score"].to_numpy()) for s, f in scored.items()}
    for split, (labels, scores) in curves.items():
        write_csv(pd.DataFrame(evaluation.reliability_points(labels, scores)),
                  PLOTS / f"reliability_{split}.csv")
    evaluation.save_reliability_png(curves, PLOTS)
    gallery.save_mistakes(test_files, scored["test"], threshold, params.gallery_size,
                          PLOTS / "mistakes_test.jpg")
    gallery.save_samples({s: records.split_files(PROCESSED, catalog, s) for s in ALL_SPLITS},
                         params.gallery_size, PLOTS / "samples.jpg")


def main() -> None:
    params = load_section("evaluate", extra_checks=check)
    numerics = load_section("numerics")
    entrypoint.portable_numerics(numerics.portable, numerics.threads)  # before TensorFlow loads
    entrypoint.load_tensorflow()  # quietly: no CUDA-missing lines on a CPU
    from deepfake_detector.evaluation import metrics as evaluation
    from deepfake_detector.model import inference
    from deepfake_detector.data import records

    scorer = inference.Scorer.load(MODEL)
    catalog = records.load_catalog(PROCESSED)
    scored = {s: score_split(scorer, catalog, s, params.batch_size) for s in SPLITS}
    val, test = scored["validation"], scored["test"]
    threshold = evaluation.choose_threshold(val["label"].to_numpy(), val["score"].to_numpy())
    report = {"threshold": threshold, "threshold_rule": "max balanced accuracy on validation"}
    for split, frame in scored.items():
        report[split] = evaluation.summarize(frame["label"].to_numpy(), frame["score"].to_numpy(), threshold)
        labels, scores = frame["label"].to_numpy(), frame["score"].to_numpy()
        write_csv(pd.DataFrame(evaluation.roc_points(labels, scores, params.max_curve_points)),
                  PLOTS / f"roc_{split}.csv")
        write_csv(pd.DataFrame(evaluation.pr_points(labels, scores, params.max_curve_points)),
                  PLOTS / f"pr_{split}.csv")
    write_csv(pd.DataFrame(evaluation.confusion_rows(test["label"], test["score"], threshold)),
              PLOTS / "confusion_test.csv")
    evaluation.save_pngs({s: (f["label"].to_numpy(), f["score"].to_numpy()) for s, f in scored.items()},
                         report["test"]["confusion"], threshold, PLOTS)
    beyond_one_number(scorer, catalog, scored, threshold, params, report)
    write_json(EVAL_METRICS, report)
    facts = ("roc_auc", "balanced_accuracy", "n_real", "n_fake")
    validation, test_facts = ({k: report[split][k] for k in facts} for split in SPLITS)
    # the test AUC rides along too: serve shows the model's facts from this one file
    inference.write_threshold(scorer, threshold, {"model": str(MODEL), "rule": report["threshold_rule"],
                                                  "validation": validation, "test": test_facts})

    manifest = pd.read_csv(MANIFEST, usecols=["index", "path"])
    predictions = pd.concat([val, test]).merge(manifest, on="index", how="left")
    predictions["predicted"] = np.where(predictions["score"] >= threshold, CLASS_NAMES[1], CLASS_NAMES[0])
    write_csv(predictions[["path", "split", "label", "score", "predicted"]], PREDICTIONS)
    log.info("evaluate: threshold %.4f, test %s", threshold,
             {k: report["test"][k] for k in ("roc_auc", "accuracy", "balanced_accuracy", "eer", "ece")})
    log.info("evaluate: robustness %s, extra sets %s", report["robustness"], report["extra"])


if __name__ == "__main__":
    entrypoint.run(main)
