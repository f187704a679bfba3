"""The real `dvc repro`, end to end, in a throwaway copy of the project with tiny params."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from deepfake_detector.core import paths
from deepfake_detector.model import modelfile
from projectcopy import dvc, run, set_params
from trained import PIPELINE_EPOCHS, copy_project

pytestmark = pytest.mark.slow

STAGES = ("local_input", "download", "preprocess", "train", "evaluate")
METRIC_KEYS = ("roc_auc", "average_precision", "accuracy", "balanced_accuracy", "precision", "recall",
               "f1", "eer", "log_loss", "accuracy_at_0_5", "n_real", "n_fake", "confusion")


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def skipped_stages(output: str) -> set[str]:
    return set(re.findall(r"Stage '(\w+)' didn't change, skipping", output))


@pytest.fixture(scope="module")
def pipeline(pipeline_run, tmp_path_factory) -> tuple[Path, str]:
    """A copy of the suite's one `dvc repro` of every stage (``trained.pipeline_run``: tiny params, an
    extra set in another layout), committed on main: (project, what that run printed)."""
    project = copy_project(pipeline_run / "project", tmp_path_factory.mktemp("pipeline") / "project",
                           commit=True)
    return project, (pipeline_run / "repro.log").read_text()


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
    assert isinstance(data["skipped"], dict) and "images_per_second" not in data
    assert load(project, paths.PREPROCESS_TIMING)["images_per_second"] > 0  # timing apart from the results

    train = load(project, paths.TRAIN_METRICS)
    assert set(train) >= {"epochs", "best_epoch", "val_roc_auc", "val_loss", "device", "parameters",
                          "machine"}
    # timing figures live in their own file, so `dvc metrics diff` on the results shows only real changes
    assert not set(train) & {"train_images_per_second", "wall_seconds"}
    timing = load(project, paths.TRAIN_TIMING)
    assert timing["train_images_per_second"] > 0 and timing["wall_seconds"] > 0
    assert train["device"] == "CPU" and 1 <= train["best_epoch"] <= train["epochs"] == PIPELINE_EPOCHS

    trained_on = modelfile.read_meta(project / paths.MODEL).trained_on  # what download fetched
    assert {k: trained_on[k] for k in ("source", "sha256", "bytes")} == {
        k: data["source"][k] for k in ("source", "sha256", "bytes")}
    assert trained_on["images"] == {split: {"real": data[split]["real"], "fake": data[split]["fake"]}
                                    for split in ("train", "validation", "test")}

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


def test_evaluate_reports_robustness_extra_sets_calibration_and_pictures(pipeline):
    project, _ = pipeline
    evaluation = load(project, paths.EVAL_METRICS)
    assert set(evaluation["robustness"]) == {"jpeg_q50", "blur_sigma1", "downscale_x0.5", "noise_sigma5"}
    for scores in evaluation["robustness"].values():
        assert set(scores) == {"roc_auc", "accuracy"} and 0 <= scores["roc_auc"] <= 1
    assert len({s["roc_auc"] for s in evaluation["robustness"].values()}) > 1  # really other images
    other = evaluation["extra"]["other"]
    assert (other["n_real"], other["n_fake"], other["skipped"]) == (14, 14, 1)  # tests/extraset.py
    assert 0 <= other["roc_auc"] <= 1 and 0 <= other["balanced_accuracy"] <= 1
    for split in ("validation", "test"):
        assert 0 <= evaluation[split]["ece"] <= 1
        reliability = pd.read_csv(project / paths.PLOTS / f"reliability_{split}.csv")
        assert reliability["images"].sum() == 64
    shown = dvc("plots", "show", "--json", cwd=project).stdout
    for name in ("reliability.png", "mistakes_test.jpg", "samples.jpg", "roc.png", "confusion_test.png",
                 "reliability_test.csv"):
        assert name in shown, name
    for file in (project / paths.PLOTS).iterdir():
        assert file.stat().st_size < 200_000, file.name  # committed with git: plots stay small


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
    assert (params_diff["train.augment.flip"]["old"],
            params_diff["train.augment.flip"]["new"]) == (True, False)


def check_pipeline(project: Path):
    """CI's stale-lock check and `dvc dag` (.ci/check-pipeline), run in ``project``."""
    return run(["bash", ".ci/check-pipeline"], cwd=project, check=False)


def test_stale_lock_check_fails_on_unrun_code_or_params_and_passes_after_a_rerun(variant, tmp_path):
    project, _, _ = variant
    ok = check_pipeline(project)
    assert ok.returncode == 0, ok.stderr
    assert "up to date" in ok.stdout and "evaluate" in ok.stdout and "preprocess" in ok.stdout  # the dag

    script = project / "stages" / "train.py"
    original = script.read_text()
    script.write_text(original + "\n# an edit without a rerun\n")
    stale = check_pipeline(project)
    script.write_text(original)
    assert stale.returncode == 1
    assert "stale: stage(s) train would rerun" in stale.stderr and "dvc repro" in stale.stderr

    set_params(project, {"evaluate.max_curve_points": 50})
    stale = check_pipeline(project)
    assert stale.returncode == 1 and "stage(s) evaluate would rerun" in stale.stderr
    assert ran_stages(dvc("repro", cwd=project).stdout) == {"evaluate"}
    assert check_pipeline(project).returncode == 0
    run(["git", "commit", "-qam", "fewer curve points"], cwd=project)

    clone = tmp_path / "clone"  # no data, no cache: missing outputs are no reason to rerun
    run(["git", "clone", "-q", "-b", "variant", str(project), str(clone)], cwd=tmp_path)
    fresh = check_pipeline(clone)
    assert fresh.returncode == 0, fresh.stderr
    set_params(clone, {"train.epochs": 3})
    assert "stage(s) train would rerun" in check_pipeline(clone).stderr


def test_make_report_compares_two_real_commits_with_different_params(variant):
    """`make report` on the variant branch against main: both commits are real runs, with other
    train params; the report has the diffs of both and every picture it links to."""
    project, _, _ = variant
    venv = Path(sys.executable).parent.parent
    result = run(["make", "-o", "install", "report", f"VENV={venv}", "REPORT_BASE=main"], cwd=project)
    assert "report.md" in result.stdout
    report = (project / "report.md").read_text()
    assert "against `main`" in report
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[3:-1]]
            for line in report.splitlines() if line.startswith("| params.yaml")}
    assert rows["train.learning_rate"] == ["0.004", "0.0005"]
    assert rows["train.augment.flip"] == ["True", "False"]
    committed = {ref: json.loads(run(["git", "show", f"{ref}:{paths.EVAL_METRICS}"], cwd=project).stdout)
                 for ref in ("main", "variant")}
    loss = next(line for line in report.splitlines() if "| test.log_loss " in line)
    assert f"{committed['main']['test']['log_loss']:.5g}"[:5] in loss
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert {Path(link).name for link in links} == {"roc.png", "confusion_test.png", "training_curves.png",
                                                   "reliability.png", "mistakes_test.jpg"}
    for link in links:
        assert (project / link).stat().st_size > 1000, link
    missing = run(["make", "-o", "install", "report", f"VENV={venv}", "REPORT_BASE=nosuch"], cwd=project,
                  check=False)
    assert missing.returncode != 0 and "git revision 'nosuch' not found" in missing.stderr


def test_a_team_shares_data_models_and_run_cache_through_a_remote(variant, tmp_path):
    """Push to a local-folder remote, clone fresh, pull: the clone is up to date and `dvc repro`
    runs no data stage (local_input, which holds no data, rewrites its placeholder)."""
    project, _, _ = variant
    store = tmp_path / "store"
    run(["git", "checkout", "-qb", "shared"], cwd=project)
    dvc("remote", "add", "-d", "store", str(store), cwd=project)
    run(["git", "commit", "-qam", "a DVC remote for the team"], cwd=project)
    dvc("push", "--run-cache", cwd=project)
    assert any(store.rglob("*")) and (store / "runs").is_dir()

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", "-b", "shared", str(project), str(clone)], cwd=tmp_path)
    dvc("pull", cwd=clone)
    for path in (paths.ARCHIVE, paths.PROCESSED / paths.CATALOG_FILE, paths.MODEL, paths.PREDICTIONS):
        assert (clone / path).exists(), path
    status = json.loads(dvc("status", "--json", cwd=clone).stdout)
    placeholder = str(paths.LOCAL_INPUT)  # the only thing missing: uncached, it holds no data
    assert status == {"local_input": [{"changed outs": {placeholder: "deleted"}}],
                      "download": [{"changed deps": {placeholder: "deleted"}}]}, status
    again = dvc("repro", cwd=clone).stdout
    assert ran_stages(again) <= {"local_input"}
    assert skipped_stages(again) >= {"download", "preprocess", "train", "evaluate"}
    assert json.loads(dvc("status", "--json", cwd=clone).stdout) == {}
    assert check_pipeline(clone).returncode == 0
