"""What the tests of the `deepfake-detector` commands share: a project whose tiny model the real
pipeline trained and evaluated, real media (a portrait, a faceless picture, a video written by
OpenCV), and the command run in-process. ``conftest.py`` makes the fixtures available."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import cv2
import pytest
from matplotlib import cbook

from badimages import photo
from projectcopy import dvc, make_project

FACE_IMAGE = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))  # a real portrait
FACE_CENTRE = (265, 215)  # (x, y) of her face's centre in that 512x600 image


@pytest.fixture(scope="session")
def trained(tmp_path_factory, worker_id) -> Path:
    """A project whose tiny model was trained and evaluated by the real pipeline. compact_cnn: after
    two tiny epochs it already scores every image differently (MobileNetV3's batch-norm statistics
    have not settled yet, and it scores them all alike), so the parity tests can fail.

    Under pytest-xdist the first worker to ask builds it, under a lock, in the run's shared temp
    folder; every worker then gets its own copy, so tests that write into it never meet."""
    if worker_id == "master":
        project = make_project(tmp_path_factory.mktemp("trained") / "project", {"train.model": "compact_cnn"})
        dvc("repro", cwd=project)
        return project
    import fcntl
    import shutil

    shared = tmp_path_factory.getbasetemp().parent / "trained-shared"
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this worker dies
        if not (shared / "built").exists():
            shutil.rmtree(shared, ignore_errors=True)  # a half-built one, from a worker that died
            make_project(shared / "project", {"train.model": "compact_cnn"})
            dvc("repro", cwd=shared / "project")
            (shared / "built").touch()
    project = tmp_path_factory.mktemp("trained") / "project"
    shutil.copytree(shared / "project", project, symlinks=True)
    return project


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
    """A rich_dct model file at 64 px (the real_faces recipe's model: it reads pixel noise and the
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
    inference.threshold_path(path).write_text(json.dumps({"threshold": 0.5, "model_sha256": sha256_file(path)}))
    return path
