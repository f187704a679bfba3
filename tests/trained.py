"""What the tests of the `deepfake-detector` commands share: a project whose tiny model the real
pipeline trained and evaluated, real media (a portrait, a faceless picture, a video written by
OpenCV), and the command run in-process. ``conftest.py`` makes the fixtures available."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import cv2
import pytest
from matplotlib import cbook

from badimages import photo
from extraset import other_layout_zip
from projectcopy import dvc, make_project, run

FACE_IMAGE = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))  # a real portrait
FACE_CENTRE = (265, 215)  # (x, y) of her face's centre in that 512x600 image
PIPELINE_EPOCHS = 4  # test_resume retrains the pipeline run's model, killed and resumed halfway


def _run_pipeline(folder: Path) -> None:
    """``folder``/project: a project copy after one `dvc repro` of every stage, with an extra set in
    another layout (``folder``/other.zip); ``folder``/repro.log: what that run printed. It runs on
    every core the machine has (test_resume retrains it on one)."""
    other, _ = other_layout_zip(folder / "other.zip")
    project = make_project(folder / "project", {
        "train.model": "compact_cnn", "train.epochs": PIPELINE_EPOCHS, "train.patience": PIPELINE_EPOCHS,
        "evaluate.extra_sets": {"other": str(other)}})
    result = dvc("repro", cwd=project)
    (folder / "repro.log").write_text(result.stdout + result.stderr)


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, worker_id) -> Path:
    """The suite's one full pipeline run (see ``_run_pipeline``): its folder. Never write into it:
    take a ``copy_project``. compact_cnn: after two tiny epochs it already scores every image
    differently (MobileNetV3's batch-norm statistics have not settled yet, and it scores them all
    alike), so the parity tests can fail.

    Under pytest-xdist the first worker to ask runs it, under a lock, in the run's shared temp
    folder, and every worker reads that one."""
    if worker_id == "master":
        folder = tmp_path_factory.mktemp("pipeline-run")
        _run_pipeline(folder)
        return folder
    import fcntl

    folder = tmp_path_factory.getbasetemp().parent / "pipeline-run"
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this worker dies
        if not (folder / "built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a half-built one, from a worker that died
            folder.mkdir()
            _run_pipeline(folder)
            (folder / "built").touch()
    return folder


def copy_project(source: Path, dest: Path, commit: bool = False) -> Path:
    """A copy of the project at ``source`` (git history, DVC cache and outputs): tests that write
    into a trained project never meet. ``commit``: with the run committed on main, as a user who
    then tries variants (`dvc exp run`, a branch) would have it."""
    shutil.copytree(source, dest, symlinks=True)
    if commit:
        run(["git", "add", "-A"], cwd=dest)
        run(["git", "commit", "-qm", "baseline run"], cwd=dest)
    return dest


@pytest.fixture(scope="session")
def trained(pipeline_run, tmp_path_factory) -> Path:
    """This worker's copy of the trained and evaluated project of ``pipeline_run``."""
    return copy_project(pipeline_run / "project", tmp_path_factory.mktemp("trained") / "project")


def write_video(path: Path, frames: int, fps: float, codec: str = "MJPG") -> Path:
    """``frames`` 640x360 frames at ``fps`` of the portrait moving right (10 px a frame, wrapping
    after 36) over a photo-like background."""
    portrait = cv2.resize(cv2.imread(str(FACE_IMAGE)), (256, 300), interpolation=cv2.INTER_AREA)
    background = cv2.cvtColor(photo(4, 640, 360), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (640, 360))
    for i in range(frames):
        frame = background.copy()
        x = 20 + (i * 10) % 360
        frame[30:330, x:x + 256] = portrait
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """A portrait, a picture with no face, and a 3 s 640x360 video (10 fps) of the portrait moving."""
    folder = tmp_path_factory.mktemp("media")
    no_face = folder / "no_face.png"
    cv2.imwrite(str(no_face), cv2.cvtColor(photo(3, 320, 200), cv2.COLOR_RGB2BGR))
    return {"face": FACE_IMAGE, "no_face": no_face, "video": write_video(folder / "clip.avi", 30, 10)}


def run_cli(project: Path, *args: str) -> tuple[int, str, str]:
    """`deepfake-detector ARGS...` run in ``project`` by this process (TensorFlow loads once):
    (exit status, stdout, stderr)."""
    from deepfake_detector.apps import cli

    out, err, cwd = io.StringIO(), io.StringIO(), Path.cwd()
    os.chdir(project)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                pytest.raises(SystemExit) as exited:
            cli.main(list(args))
    finally:
        os.chdir(cwd)
    return exited.value.code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def native_model(tmp_path_factory) -> Path:
    """A rich_dct model file at 64 px (the pristine_faces recipe's model: it reads pixel noise and the
    JPEG grid), its head standardised on random features, with a threshold beside it."""
    import json

    import numpy as np

    from deepfake_detector.model import inference
    from deepfake_detector.model import modelfile
    from deepfake_detector.model import builders as models
    from deepfake_detector.model import richmodel
    from deepfake_detector.core.files import sha256_file

    folder = tmp_path_factory.mktemp("native")
    model = models.build("rich_dct", 64)
    head = model.get_layer("p_fake")
    richmodel.standardise(model, np.random.default_rng(0).random((8, head.input.shape[-1]), np.float32))
    path = folder / "rich.keras"
    modelfile.save(model, path, modelfile.ModelMeta(model="rich_dct", image_size=64, inference="whole_image"))
    inference.threshold_path(path).write_text(
        json.dumps({"threshold": 0.5, "model_sha256": sha256_file(path)}))
    return path
