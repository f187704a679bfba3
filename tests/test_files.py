"""Atomic outputs: temp files honour the umask like a plain open(), and an output folder is replaced
as a whole, so a failure leaves the old output whole or no output, never a mix."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import badimages
from deepfake_detector.core import files
from deepfake_detector.core import paths
from deepfake_detector.core.errors import UserError
from projectcopy import make_project, project_env


@contextlib.contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writes_get_the_mode_a_plain_open_gives(tmp_path, mask):
    with umask(mask):
        with open(tmp_path / "plain.txt", "w") as handle:
            handle.write("x")
        files.write_json(tmp_path / "a.json", {"x": 1})
        with files.atomic_open(tmp_path / "b.csv") as handle:
            handle.write("x")
        with files.atomic_path(tmp_path / "model.keras", suffix=".keras") as tmp:
            with zipfile.ZipFile(tmp, "w") as bundle:  # as Keras writes a model into the temp path
                bundle.writestr("config.json", "{}")
        with files.scratch_path(tmp_path) as scratch:
            made = mode(scratch)
    expected = 0o666 & ~mask
    assert mode(tmp_path / "plain.txt") == expected
    assert [mode(tmp_path / n) for n in ("a.json", "b.csv", "model.keras")] == [expected] * 3
    assert made == expected


def test_the_download_stage_outputs_are_readable_by_others_under_umask_022(tmp_path):
    source = tmp_path / "mine.zip"
    with zipfile.ZipFile(source, "w") as zf:
        for split in ("Train", "Validation", "Test"):
            for label in ("Real", "Fake"):
                zf.writestr(f"Dataset/{split}/{label}/a.jpg", badimages.good_jpeg(seed=len(split + label)))
    project = make_project(tmp_path / "project", {"data.source": "local", "data.local_path": str(source)})
    subprocess.run([sys.executable, "-m", "stages.download"], cwd=project, env=project_env(), check=True,
                   capture_output=True, preexec_fn=lambda: os.umask(0o022))
    assert mode(project / paths.ARCHIVE) == 0o644
    assert mode(project / paths.SOURCE_INFO) == 0o644


def folder(path: Path, names: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, text in names.items():
        (path / name).write_text(text)
    return path


def contents(path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(path.iterdir())}


def undeletable(path: Path, on: bool = True) -> None:
    """Make ``path`` impossible to delete or rename (or undo that), for real: `chattr +i` on it as
    root (who ignores permissions), otherwise a read-only folder (``path`` must then be a folder)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)
    else:
        (path if path.is_dir() else path.parent).chmod(0o555 if on else 0o755)


def test_replace_dir_swaps_a_folder_in_whole(tmp_path):
    dest = folder(tmp_path / "processed", {"records.json": "old", "train-0.tfrecord": "old"})
    files.replace_dir(folder(tmp_path / "processed.partial", {"records.json": "new"}), dest)
    assert contents(dest) == {"records.json": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["processed"]


def test_an_old_file_that_cannot_be_deleted_leaves_the_new_output_whole(tmp_path, caplog):
    """The old way (rmtree ignoring errors, then rename) deleted the shards, failed on the rest,
    and left records.json pointing at missing shards."""
    dest = folder(tmp_path / "processed", {"records.json": "old", "train-0.tfrecord": "old"})
    stuck = dest / "records.json" if os.geteuid() == 0 else dest / "locked"
    if stuck.name == "locked":
        folder(stuck, {"x": "old"})
    undeletable(stuck)
    try:
        with caplog.at_level(logging.WARNING):
            files.replace_dir(folder(tmp_path / "processed.partial", {"records.json": "new"}), dest)
        assert contents(dest) == {"records.json": "new"}
        assert "could not delete the previous processed" in caplog.text
        leftover = [p for p in tmp_path.iterdir() if p.name.startswith(".processed.old.")]
        assert len(leftover) == 1
    finally:
        for moved in tmp_path.glob(f".processed.old.*/{stuck.name}"):
            undeletable(moved, on=False)
    files.replace_dir(folder(tmp_path / "processed.partial", {"records.json": "newer"}), dest)
    assert contents(dest) == {"records.json": "newer"}  # and the next run clears the leftover
    assert sorted(p.name for p in tmp_path.iterdir()) == ["processed"]


def test_a_swap_that_fails_leaves_the_old_output_whole(tmp_path):
    dest = folder(tmp_path / "out" / "processed", {"records.json": "old", "train-0.tfrecord": "old"})
    new = folder(tmp_path / "out" / "processed.partial", {"records.json": "new"})
    locked = dest if os.geteuid() == 0 else dest.parent
    undeletable(locked)
    try:
        with pytest.raises(UserError, match="cannot replace .*processed.*left as it was"):
            files.replace_dir(new, dest)
    finally:
        undeletable(locked, on=False)
    assert contents(dest) == {"records.json": "old", "train-0.tfrecord": "old"}


def small_zip(path: Path, per_folder: int = 3) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        seed = 0
        for split in ("Train", "Validation", "Test"):
            for label in ("Real", "Fake"):
                for i in range(per_folder):
                    seed += 1
                    zf.writestr(f"Dataset/{split}/{label}/{i}.jpg", badimages.good_jpeg(seed=seed, size=64))
    return path


def test_preprocess_replaces_a_processed_folder_it_cannot_fully_delete_as_a_whole(tmp_path):
    from deepfake_detector.data import records

    project = make_project(tmp_path / "project", {
        "data.source": "local", "data.local_path": str(small_zip(tmp_path / "mine.zip")),
        "preprocess.image_size": 64, "preprocess.shard_images": 2})
    for stage in ("download", "preprocess"):
        subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=project, env=project_env(),
                       check=True, capture_output=True)
    processed = project / paths.PROCESSED
    stuck = processed / "records.json" if os.geteuid() == 0 else folder(processed / "locked", {"x": ""})
    undeletable(stuck)
    try:
        text = (project / "params.yaml").read_text().replace("shard_images: 2", "shard_images: 3")
        (project / "params.yaml").write_text(text)
        result = subprocess.run([sys.executable, "-m", "stages.preprocess"], cwd=project, env=project_env(),
                                capture_output=True, text=True)
    finally:
        for moved in (project / "data").glob(f".processed.old.*/{stuck.name}"):
            undeletable(moved, on=False)
    assert result.returncode == 0, result.stderr
    assert "could not delete the previous processed" in result.stderr and "Traceback" not in result.stderr
    catalog = records.load_catalog(processed)
    shards = [shard["file"] for split in catalog["splits"].values() for shard in split["shards"]]
    assert len(shards) == 6 and all((processed / name).is_file() for name in shards)  # 3 per shard now
    assert sorted(p.name for p in processed.iterdir()) == sorted(
        [*shards, "records.json", "manifest.csv", "near_duplicates.csv"])
