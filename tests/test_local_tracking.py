"""A local dataset (data.source: local) is a real DVC dependency, through the real `dvc`: a changed
zip or folder reruns download, an unchanged one reruns nothing, and identical input gives a
byte-identical data/raw, so a re-download doesn't rerun preprocess."""

from __future__ import annotations

import json
import os
import re
import sys
import zipfile
from pathlib import Path

import pytest

import badimages
from deepfake_detector.core import paths
from projectcopy import dvc, make_project, run

pytestmark = pytest.mark.slow


def ran(result) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", result.stdout))


def dataset_files(first_seed: int, per_folder: int = 4) -> dict[str, bytes]:
    files, seed = {}, first_seed
    for split in ("Train", "Validation", "Test"):
        for label in ("Real", "Fake"):
            for i in range(per_folder):
                seed += 1
                files[f"Dataset/{split}/{label}/{i:03d}.jpg"] = badimages.good_jpeg(seed=seed, size=64)
    return files


def write(path: Path, kind: str, files: dict[str, bytes]) -> None:
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files.items():  # fixed times: the same files give the same bytes
                zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    else:
        for name, data in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)


def up_to_date(project: Path) -> bool:
    status = dvc("status", "preprocess", "--with-deps", cwd=project).stdout
    dry = dvc("repro", "--dry", "--allow-missing", "preprocess", cwd=project)
    return "up to date" in status and not ran(dry)


@pytest.mark.parametrize("kind", ["zip", "folder"])
def test_a_changed_local_dataset_reruns_download_and_an_unchanged_one_nothing(tmp_path, kind):
    source = tmp_path / ("mine.zip" if kind == "zip" else "mine")
    write(source, kind, dataset_files(0))
    project = make_project(tmp_path / "project", {
        "data.source": "local", "data.local_path": str(source), "preprocess.image_size": 64})
    assert ran(dvc("repro", "preprocess", cwd=project)) == {"local_input", "download", "preprocess"}
    assert up_to_date(project)
    assert ran(dvc("repro", "preprocess", cwd=project)) == set()

    # the same bytes written again (a new mtime) are no change
    write(source, kind, dataset_files(0))
    assert up_to_date(project)

    # different images under the same path: DVC sees it, and download and preprocess rerun
    if kind == "zip":
        write(source, kind, dataset_files(100, per_folder=5))
    else:
        write(source, kind, {"Dataset/Test/Fake/new.jpg": badimages.good_jpeg(seed=999, size=64)})
    status = dvc("status", "preprocess", "--with-deps", cwd=project).stdout
    assert "data/local_input" in status and "modified" in status
    assert {"download", "preprocess"} <= ran(dvc("repro", "preprocess", cwd=project))
    data = json.loads((project / paths.DATA_METRICS).read_text())
    assert data["test"] == ({"real": 5, "fake": 5} if kind == "zip" else {"real": 4, "fake": 5})
    assert up_to_date(project)


def test_a_forced_redownload_of_the_same_data_is_byte_identical_and_reruns_nothing_after(tmp_path):
    source = tmp_path / "mine.zip"
    write(source, "zip", dataset_files(0))
    project = make_project(tmp_path / "project", {
        "data.source": "local", "data.local_path": str(source), "preprocess.image_size": 64})
    dvc("repro", "preprocess", cwd=project)
    before = {p.name: p.read_bytes() for p in (project / paths.RAW_DIR).iterdir()}
    assert ran(dvc("repro", "--force", "--single-item", "download", cwd=project)) == {"download"}
    assert {p.name: p.read_bytes() for p in (project / paths.RAW_DIR).iterdir()} == before
    assert up_to_date(project)


def test_other_sources_need_no_local_path_and_stay_up_to_date(tmp_path):
    """data.local_path null (the default): local_input holds a fixed placeholder, and the pipeline
    is up to date after a run, also in a fresh clone where the placeholder is missing."""
    project = make_project(tmp_path / "project", {"data.local_path": None})
    dvc("repro", "download", cwd=project)
    assert (project / paths.LOCAL_INPUT).is_file() and not (project / paths.LOCAL_INPUT).is_symlink()
    assert "up to date" in dvc("status", "download", "--with-deps", cwd=project).stdout
    run(["git", "add", "-A"], cwd=project)
    run(["git", "commit", "-qm", "downloaded"], cwd=project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], cwd=tmp_path)
    assert not ran(dvc("repro", "--dry", "--allow-missing", "download", cwd=clone))


def test_a_fifo_in_a_local_folder_fails_fast_through_dvc(tmp_path):
    source = tmp_path / "mine"
    write(source, "folder", dataset_files(0))
    os.mkfifo(source / "Dataset/Train/Real/pipe.jpg")
    project = make_project(tmp_path / "project", {"data.source": "local", "data.local_path": str(source)})
    result = run([str(Path(sys.executable).parent / "dvc"), "repro", "download"], cwd=project, check=False,
                 timeout=120)  # DVC itself would block forever hashing the FIFO
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "pipe.jpg" in errors[0] and "FIFO" in errors[0]
    assert "Traceback" not in result.stderr and not (project / paths.ARCHIVE).exists()
