"""Stage behaviour on bad params, bad images and labels, through the real stage scripts and dvc."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import psutil
import pytest

import badimages
from deepfake_detector.core import paths
from projectcopy import dvc, make_project, project_env, run, set_params


@pytest.mark.parametrize("stage, key, value", [
    ("download", "data.source", "dropbox"),
    ("train", "train.epochs", -3),
    ("preprocess", "preprocess.image_size", 12.5),
    ("train", "train.model", "resnet9000"),
    ("train", "train.augment.jpeg_quality", [95, 60]),
    ("download", "data.sample.difficulty", "hard"),
])
def test_bad_params_fail_at_stage_start_with_one_line_naming_the_key(project, stage, key, value):
    set_params(project, {key: value})
    result = run([sys.executable, "-m", f"stages.{stage}"], cwd=project, check=False)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("error: params.yaml: ") and key in message
    assert not (project / paths.RAW_DIR).exists() and not (project / paths.MODEL).exists()


def test_unknown_and_missing_keys_are_named(project):
    text = (project / "params.yaml").read_text().replace("  epochs:", "  epoch:")
    (project / "params.yaml").write_text(text)
    result = run([sys.executable, "-m", "stages.train"], cwd=project, check=False)
    assert result.returncode == 2 and "train.epoch" in result.stderr


def _dataset_with_bad_images(path: Path) -> dict:
    """A small Kaggle-layout zip: good JPEGs in every split plus each bad image in Train."""
    with zipfile.ZipFile(path, "w") as archive:
        n = 0
        for split, count in (("Train", 24), ("Validation", 8), ("Test", 8)):
            for label in ("Real", "Fake"):
                for i in range(count // 2):
                    n += 1
                    archive.writestr(f"Dataset/{split}/{label}/{i:03d}.jpg", badimages.good_jpeg(seed=n))
        for name, (build, _, _) in badimages.BAD_IMAGES.items():
            archive.writestr(f"Dataset/Train/Fake/bad_{name}.jpg", build())
        # the same image in Train and in Test: the Test copy is dropped (cross-split duplicate)
        archive.writestr("Dataset/Test/Real/copy_of_train.jpg", badimages.good_jpeg(seed=1))
    return badimages.BAD_IMAGES


@pytest.mark.slow
def test_bad_images_are_skipped_or_converted_and_counted(tmp_path):
    source = tmp_path / "mine.zip"
    bad = _dataset_with_bad_images(source)
    project = make_project(tmp_path / "project", {
        "data.source": "local", "data.local_path": str(source), "preprocess.image_size": 256})
    dvc("repro", "preprocess", cwd=project)

    data = json.loads((project / paths.DATA_METRICS).read_text())
    manifest = pd.read_csv(project / paths.MANIFEST, keep_default_na=False)
    for name, (_, status, reason) in bad.items():
        row = manifest[manifest["path"].str.endswith(f"bad_{name}.jpg")].iloc[0]
        assert row["status"] == status, name
        assert reason in row["reason"].split(";"), name
        if status == "skipped":
            assert data["skipped"][reason] >= 1, name
        elif status == "converted":
            assert data["converted"][reason] >= 1, name
    assert data["duplicates"]["cross_split"] == 1 and data["duplicates"]["dropped"] == 1
    copy = manifest[manifest["path"].str.endswith("copy_of_train.jpg")].iloc[0]
    assert copy["status"] == "dropped" and copy["reason"] == "duplicate_of_train"
    assert data["test"] == {"real": 4, "fake": 4}


def _bright_fake_dark_real_zip(path: Path) -> None:
    """Fake images bright, Real images dark, named against their folder: only folders carry labels."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for split, count in (("Train", 40), ("Validation", 20), ("Test", 20)):
            for label, (low, high) in (("Real", (0, 100)), ("Fake", (150, 255))):
                for i in range(count // 2):
                    pixels = rng.integers(low, high, (64, 64, 3), dtype=np.uint8)
                    ok, jpeg = cv2.imencode(".jpg", pixels)
                    wrong = "real" if label == "Fake" else "fake"
                    archive.writestr(f"Dataset/{split}/{label}/{wrong}_{i}.jpg", jpeg.tobytes())


@pytest.fixture(scope="module")
def bright_fakes(tmp_path_factory) -> Path:
    """A project copy whose local dataset has bright Fake and dark Real images, preprocessed by dvc
    (shards of 10 records)."""
    folder = tmp_path_factory.mktemp("bright_fakes")
    source = folder / "bright_fakes.zip"
    _bright_fake_dark_real_zip(source)
    project = make_project(folder / "project", {
        "data.source": "local", "data.local_path": str(source), "preprocess.image_size": 64,
        "preprocess.shard_images": 10})
    dvc("repro", "preprocess", cwd=project)
    return project


@pytest.mark.slow
def test_training_records_mix_the_classes(bright_fakes):
    """Archives list one class after the other; the records must not, or training's cache would hold
    one class and the stream the other, and a streaming shuffle buffer would feed one-class batches."""
    from deepfake_detector.data import records

    folder = bright_fakes / paths.PROCESSED
    labels = [[label for _, label, _ in records.decoded_dataset([path]).as_numpy_iterator()]
              for path in records.split_files(folder, records.load_catalog(folder), "train")]
    assert [len(shard) for shard in labels] == [10, 10, 10, 10]
    assert all(0 < sum(shard) < 10 for shard in labels), labels  # every shard holds both classes
    order = [label for shard in labels for label in shard]
    assert sum(a != b for a, b in zip(order, order[1:])) >= 10, order  # interleaved, not two blocks


@pytest.mark.slow
def test_fake_is_the_positive_class_end_to_end(bright_fakes):
    """A "model" scoring brightness must get AUC 1.0 when Fake (bright) = 1, and 0.0 if labels flip;
    a model that calls everything fake has recall 1.0 on Fake."""
    import keras

    from deepfake_detector.model import modelfile

    project = bright_fakes
    manifest = pd.read_csv(project / paths.MANIFEST)
    assert (manifest["label"] == manifest["path"].str.contains("/Fake/").astype(int)).all()

    def evaluate(weight: float, bias: float) -> dict:
        """Save a fixed linear model of mean brightness as the trained model, run evaluate."""
        inputs = keras.Input((64, 64, 3))
        dense = keras.layers.Dense(1)
        model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
        dense.set_weights([np.full((3, 1), weight), np.array([bias])])
        modelfile.save(model, project / paths.MODEL, modelfile.ModelMeta(image_size=64))
        run([sys.executable, "-m", "stages.evaluate"], cwd=project)
        return json.loads((project / paths.EVAL_METRICS).read_text())["test"]

    brightness = evaluate(1 / (3 * 255), 0.0)  # score = mean brightness in [0, 1]
    assert brightness["roc_auc"] == 1.0 and brightness["recall"] == 1.0 and brightness["precision"] == 1.0
    assert brightness["n_fake"] == 10 and brightness["n_real"] == 10

    all_fake = evaluate(0.0, 1.0)
    assert all_fake["recall"] == 1.0
    assert all_fake["confusion"] == {"tn": 0, "fp": 10, "fn": 0, "tp": 10}


@pytest.mark.slow
def test_kaggle_source_through_dvc_with_the_real_client(kaggle_server, tmp_path):
    """`dvc repro` with data.source=kaggle fetches from the loopback Kaggle API and preprocesses it."""
    project = make_project(tmp_path / "project", {"data.source": "kaggle",
                                                  "data.kaggle.dataset": kaggle_server.dataset})
    env = kaggle_server.child_env(project_env())
    dvc("repro", "preprocess", cwd=project, env=env)
    source = json.loads((project / paths.SOURCE_INFO).read_text())
    assert source["kaggle"]["sha256"] == kaggle_server.sha256 and source["kaggle"]["version"] == 3
    data = json.loads((project / paths.DATA_METRICS).read_text())
    assert data["train"] == {"real": 2, "fake": 2} and data["source"]["kaggle"]["version"] == 3
    assert "DownloadDataset" in " ".join(kaggle_server.calls())
    assert kaggle_server.key not in (project / paths.SOURCE_INFO).read_text()
    # the same archive downloaded again is the same data/raw (no timings or temp paths in
    # source.json), so preprocess, minutes on the full dataset, does not rerun
    raw = {p.name: p.read_bytes() for p in (project / paths.RAW_DIR).iterdir()}
    dvc("repro", "--force", "--single-item", "download", cwd=project, env=env)
    assert {p.name: p.read_bytes() for p in (project / paths.RAW_DIR).iterdir()} == raw
    assert "up to date" in dvc("status", "preprocess", "--with-deps", cwd=project, env=env).stdout


def test_kaggle_without_credentials_stops_before_any_work(kaggle_server, tmp_path):
    project = make_project(tmp_path / "project", {"data.source": "kaggle"})
    kaggle_server.env(tmp_path / "nobody", "none")
    result = run([sys.executable, "-m", "stages.download"], cwd=project, check=False,
                 env=kaggle_server.child_env(project_env()))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "kaggle.json" in result.stderr
    assert kaggle_server.requests == [] and not (project / paths.ARCHIVE).exists()


def _session_processes(session: int) -> list[int]:
    alive = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if os.getsid(pid) == session and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
    return alive


def test_ctrl_c_during_preprocess_is_one_line_and_stops_every_worker(tmp_path):
    source = tmp_path / "mine.zip"
    tiles = [badimages.good_jpeg(seed=i, size=48) for i in range(20)]
    with zipfile.ZipFile(source, "w") as archive:
        n = 0
        for split, count in (("Train", 3000), ("Validation", 500), ("Test", 500)):
            for label in ("Real", "Fake"):
                for i in range(count // 2):
                    n += 1  # distinct bytes, so none is a duplicate; each is resized: seconds of work
                    archive.writestr(f"Dataset/{split}/{label}/{i:05d}.jpg",
                                     tiles[n % 20] + n.to_bytes(4, "big"))
    project = make_project(tmp_path / "project", {
        "data.source": "local", "data.local_path": str(source), "preprocess.image_size": 256,
        "preprocess.workers": 2})
    run([sys.executable, "-m", "stages.download"], cwd=project)
    stage = subprocess.Popen([sys.executable, "-m", "stages.preprocess"], cwd=project, env=project_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(psutil.Process(stage.pid).children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)  # the workers are busy
        os.killpg(stage.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
        _, stderr = stage.communicate(timeout=60)
    finally:
        if stage.poll() is None:
            stage.kill()
    assert stage.returncode == 130, stderr
    lines = [line.strip() for line in re.split(r"[\r\n]", stderr) if line.strip()]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert [line for line in lines if not line.startswith("preprocess:")] == [
        "interrupted: outputs were not replaced; re-run to continue"]
    time.sleep(1)
    assert _session_processes(stage.pid) == []  # the parent stopped every worker
    assert not (project / paths.PROCESSED).exists()
