"""The real `dvc repro`, end to end, in a throwaway copy of the project with tiny params."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from deepfake_detector import paths
from projectcopy import dvc, make_project, run, set_params

pytestmark = pytest.mark.slow

STAGES = ("local_input", "download", "preprocess", "train", "evaluate")
METRIC_KEYS = ("roc_auc", "average_precision", "accuracy", "balanced_accuracy", "precision", "recall",
               "f1", "eer", "log_loss", "accuracy_at_0_5", "n_real", "n_fake", "confusion")


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def skipped_stages(output: str) -> set[str]:
    return set(re.findall(r"Stage '(\w+)' didn't change, skipping", output))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> tuple[Path, str]:
    """A project copy after `dvc repro`, committed on main (the run every test here shares)."""
    project = make_project(tmp_path_factory.mktemp("pipeline") / "project")
    result = dvc("repro", cwd=project)
    run(["git", "add", "-A"], cwd=project)
    run(["git", "commit", "-qm", "baseline run"], cwd=project)
    return project, result.stdout + result.stderr


@pytest.fixture(scope="module")
def variant(pipeline) -> tuple[Path, str, str]:
    """The same project re-run unchanged, then on a branch `variant` with other train params,
    re-run and committed: (project, output of the unchanged re-run, output of the variant's)."""
    project, _ = pipeline
    again = dvc("repro", cwd=project)
    run(["git", "checkout", "-qb", "variant"], cwd=project)
    set_params(project, {"train.learning_rate": 0.0005, "train.augment.flip": False})
    changed = dvc("repro", cwd=project)
    run(["git", "add", "-A"], cwd=project)
    run(["git", "commit", "-qm", "variant run"], cwd=project)
    return project, again.stdout, changed.stdout


def load(project: Path, path: Path) -> dict:
    return json.loads((project / path).read_text())


def test_repro_runs_every_stage_and_writes_the_metric_files(pipeline):
    project, output = pipeline
    assert ran_stages(output) == set(STAGES)
    assert (project / paths.ARCHIVE).is_file()
    assert (project / paths.PROCESSED / paths.CATALOG_FILE).is_file()
    assert (project / paths.MODEL).is_file()

    data = load(project, paths.DATA_METRICS)
    for split, size in (("train", 160), ("validation", 64), ("test", 64)):
        assert data[split]["real"] + data[split]["fake"] == size, split
        assert data[split]["real"] > 0 and data[split]["fake"] > 0
    assert set(data["duplicates"]) >= {"within_split", "cross_split", "dropped"}
    assert isinstance(data["skipped"], dict) and data["images_per_second"] > 0

    train = load(project, paths.TRAIN_METRICS)
    assert set(train) >= {"epochs", "best_epoch", "val_roc_auc", "val_loss", "device", "parameters", "machine"}
    # timing figures live in their own file, so `dvc metrics diff` on the results shows only real changes
    assert not set(train) & {"train_images_per_second", "wall_seconds"}
    timing = load(project, paths.TRAIN_TIMING)
    assert timing["train_images_per_second"] > 0 and timing["wall_seconds"] > 0
    assert train["device"] == "CPU" and 1 <= train["best_epoch"] <= train["epochs"] <= 2

    evaluation = load(project, paths.EVAL_METRICS)
    assert 0 < evaluation["threshold"] < 1
    for split, size in (("validation", 64), ("test", 64)):
        assert set(evaluation[split]) >= set(METRIC_KEYS)
        assert evaluation[split]["n_real"] + evaluation[split]["n_fake"] == size
        assert sum(evaluation[split]["confusion"].values()) == size

    manifest = pd.read_csv(project / paths.MANIFEST)
    assert list(manifest.columns[:3]) == ["index", "path", "split"]
    assert {"sha256", "width", "height", "status", "reason", "label"} <= set(manifest.columns)
    assert len(manifest) == 160 + 64 + 64
    for name in ("roc_validation.csv", "roc_test.csv", "pr_test.csv", "confusion_test.csv", "roc.png",
                 "confusion_test.png"):
        assert (project / paths.PLOTS / name).stat().st_size > 0, name
    assert len(pd.read_csv(project / paths.PLOTS / "roc_test.csv")) <= 200
    shown = dvc("plots", "show", "--json", cwd=project).stdout
    assert "ROC" in shown and "confusion" in shown.lower()


def test_second_repro_skips_and_train_params_rerun_only_train_and_evaluate(variant):
    _, again, changed = variant
    assert ran_stages(again) == set()
    assert skipped_stages(again) == set(STAGES)
    assert ran_stages(changed) == {"train", "evaluate"}
    assert skipped_stages(changed) == {"local_input", "download", "preprocess"}


def test_metrics_diff_between_branches_in_a_fresh_clone(variant, tmp_path):
    project, _, _ = variant
    clone = tmp_path / "clone"  # no DVC cache, no remote: only what git holds
    run(["git", "clone", "-q", "-b", "variant", str(project), str(clone)], cwd=tmp_path)
    run(["git", "branch", "-q", "main", "origin/main"], cwd=clone)
    diff = json.loads(dvc("metrics", "diff", "main", "--json", cwd=clone).stdout)
    # what changed shows up with its old (main) and new (this branch) values, read from git alone
    committed = {ref: json.loads(run(["git", "show", f"{ref}:{paths.EVAL_METRICS}"], cwd=clone).stdout)
                 for ref in ("main", "variant")}
    loss = diff[str(paths.EVAL_METRICS)]["test.log_loss"]
    assert loss["old"] == pytest.approx(committed["main"]["test"]["log_loss"])
    assert loss["new"] == pytest.approx(committed["variant"]["test"]["log_loss"]) and loss["diff"] != 0
    params_diff = json.loads(dvc("params", "diff", "main", "--json", cwd=clone).stdout)["params.yaml"]
    assert params_diff["train.learning_rate"]["new"] == 0.0005
    assert (params_diff["train.augment.flip"]["old"], params_diff["train.augment.flip"]["new"]) == (True, False)
