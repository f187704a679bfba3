"""``deepfake-detector serve``'s work, without HTTP (``webapp`` is the HTTP side): the model, limits,
the one inference worker, and predict's own code run on an uploaded file.

``POST /api/predict`` (multipart, field ``file``) runs ``predict.predict`` on the upload, with the
command's options, and returns exactly what ``predict --format json`` prints for that file: the same
header, the same rows, the same scores. Only ``file`` in each row is the upload's own name (shown,
never used as a path). ``explain=true`` adds ``explain``: a Grad-CAM PNG (data URL) per face row.

Bounded work: a request takes one of ``Limits.queue`` slots before its body is read and keeps it
until its temp folder is deleted; with every slot taken the answer is 503 at once. So the body's read
is bounded too (``read_seconds`` without a byte, ``upload_seconds`` in all: 408), or a few stalled
clients would hold every slot. One thread runs
the model (TensorFlow already uses both cores inside a call), so memory is at most ``queue``
uploads on disk plus one being scored. Uploads are written under a fresh temp folder with a name the
server chooses (``image``, ``video.mp4``...), and the folder is deleted when the answer is sent.
"""

from __future__ import annotations

import base64
import datetime
import queue
import re
import shutil
import tempfile
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake_detector.apps import faces
from deepfake_detector.model import inference
from deepfake_detector.apps import predict

# A video is told from its first bytes; anything else goes to the image decoder, which names what it is.
VIDEO_MAGIC = ((4, b"ftyp", "video.mp4"), (8, b"AVI ", "video.avi"), (0, b"\x1a\x45\xdf\xa3", "video.mkv"))
FORMATS_HINT = "upload a JPEG, PNG, WebP, BMP or GIF image, or an MP4, MOV, AVI, WebM or MKV video"


@dataclass(frozen=True)
class Limits:
    upload_bytes: int = 50 * 2**20
    pixels: int = 25_000_000  # per image or video frame, checked from the header before decoding
    video_seconds: float = 120.0
    queue: int = 32  # requests admitted at once (uploading, waiting or being scored); more get 503
    read_seconds: float = 10.0  # an upload that sends no byte for this long is cut (408)
    upload_seconds: float = 120.0  # a whole upload's deadline: 50 MiB at ~3.5 Mbit/s


class Rejected(Exception):
    """A request refused with ``status`` and a one-line ``detail``."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class Worker:
    """One thread running jobs in arrival order from a bounded queue (``submit`` raises queue.Full)."""

    def __init__(self, size: int):
        self._jobs: queue.Queue = queue.Queue(size)
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def submit(self, job, *args) -> Future:
        future: Future = Future()
        self._jobs.put_nowait((future, job, args))
        return future

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, job, args = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job(*args))
                except BaseException as exc:
                    future.set_exception(exc)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()


class Service:
    """The loaded model, its threshold and facts, the worker and the scratch folder."""

    def __init__(self, model: str | Path, threshold: float | None = None, limits: Limits = Limits(),
                 margin: float = faces.DEFAULT_MARGIN, fps: float = predict.FPS, top_k: int = predict.TOP_K):
        self.scorer, self.threshold = inference.load_scorer(model, threshold)
        self.header = predict.json_header(self.scorer, self.threshold, threshold is not None)
        self.limits, self.margin, self.fps, self.top_k = limits, margin, fps, top_k
        self.facts = model_facts(self.scorer, self.threshold)
        self.finder = faces.FaceFinder()
        self._cam = None  # Grad-CAM, built on its first use
        self._slots = threading.BoundedSemaphore(limits.queue)
        self._worker = Worker(limits.queue)
        size = self.scorer.image_size
        self.scorer.score(np.zeros((1, size, size, 3), np.uint8))  # trace now, not in the first request
        # last, so that nothing can fail between making it and the caller's `finally: close()`
        self.scratch = Path(tempfile.mkdtemp(prefix="deepfake-detector-serve-"))

    def admit(self) -> bool:
        return self._slots.acquire(blocking=False)

    def release(self) -> None:
        self._slots.release()

    def submit(self, path: Path, name: str, detect: bool, explain: bool) -> Future:
        return self._worker.submit(self._predict, path, name, detect, explain)

    def _predict(self, path: Path, name: str, detect: bool, explain: bool) -> dict:
        """On the worker thread: predict's rows for one uploaded file, or ``Rejected``."""
        options = predict.Options(threshold=self.threshold, finder=self.finder if detect else None,
                                  margin=self.margin, fps=self.fps, top_k=self.top_k,
                                  max_pixels=self.limits.pixels, max_seconds=self.limits.video_seconds)
        if explain:
            from deepfake_detector.apps.explain import GradCam, Writer

            self._cam = self._cam or GradCam(self.scorer)
            options.explain = Writer(self.scorer, path.parent / "explain", self.threshold, cam=self._cam)
        rows = predict.predict([path], self.scorer, options, progress=False)
        for row in rows:
            row["file"] = name
        errors = [row for row in rows if row["kind"] == "error"]
        if errors:
            raise rejection(name, errors[0]["error"], errors[0]["note"], self.limits)
        result = {**self.header, "rows": rows}
        if explain:
            faces_at = [i for i, row in enumerate(rows) if row["kind"] == "face"]
            result["explain"] = [
                {"row": i, "label": made["label"], "png": "data:image/png;base64," + base64.b64encode(
                    (path.parent / "explain" / made["png"]).read_bytes()).decode("ascii")}
                for i, made in zip(faces_at, options.explain.rows)]
        return result

    def close(self) -> None:
        self._worker.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def rejection(name: str, reason: str, note: str, limits: Limits) -> Rejected:
    """predict's error row → the HTTP status and one line naming the file and the fix."""
    what = f"{name}: {reason}" + (f" ({note})" if note else "")
    if reason in ("not_image", "unsupported"):
        return Rejected(415, f"{what}; {FORMATS_HINT}")
    if reason == "too_large":
        return Rejected(413, f"{what}; the limit is {limits.pixels:,} pixels per image or frame: "
                             "scale it down")
    if reason == "wrong_size":  # a model that reads un-resized crops (inference.native_rule says which)
        return Rejected(422, what)
    if reason == "too_long":
        return Rejected(413, f"{what}; the limit is {limits.video_seconds:g} s: cut the video shorter")
    return Rejected(422, f"{what}; the file is damaged or cut short: upload it again or choose another")


def model_facts(scorer: inference.Scorer, threshold: float) -> dict:
    """What the page shows about the model: its kind, when its file was written, the threshold, the
    Validation and test AUC evaluate recorded beside it (only if chosen for this very file), the
    data it was trained on and the warning for the generated sample's models."""
    saved = inference.saved_evaluation(scorer)
    trained_on = scorer.meta.trained_on or {}
    written = datetime.datetime.fromtimestamp(scorer.path.stat().st_mtime, datetime.timezone.utc)
    return {"model": scorer.meta.model, "file": scorer.path.name, "sha256": scorer.sha256,
            "image_size": scorer.image_size, "trained": written.isoformat(timespec="seconds"),
            "threshold": threshold, "threshold_rule": saved.get("rule"),
            "validation_auc": (saved.get("validation") or {}).get("roc_auc"),
            "test_auc": (saved.get("test") or {}).get("roc_auc"),
            "epochs": (scorer.meta.train_metrics or {}).get("epochs"),
            "trained_on": trained_on.get("source"), "warning": inference.provenance_warning(scorer)}


def display_name(filename: str | None) -> str:
    """The client's file name, for showing only: its last part, tame characters, at most 100."""
    base = re.split(r"[\\/]", filename or "")[-1]
    return re.sub(r"[^\w .()-]+", "_", base).strip(" .")[:100] or "upload"


def stored_name(head: bytes) -> str:
    """The name the upload is saved under, chosen by the server from its first bytes."""
    for offset, magic, name in VIDEO_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    return "image"
