"""``deepfake-detector watch SOURCE``: faces in a live stream scored as frames arrive.

A reader thread (``LatestFrame``) keeps only the newest frame; the scoring loop takes whichever is
newest when it is ready for one, so a slow loop drops frames instead of falling behind: it never
queues them. A video file is read at its own frame rate, as a camera would deliver it. Each frame
goes through ``inference.crops`` and ``Scorer.score``, the path predict takes; faces are tracked
between whole-frame searches (``faces.FaceTracker``) to keep up.

The rolling verdict is predict's video verdict over the last ``window`` seconds: the mean, over the
scored frames, of each frame's most suspicious crop.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from . import CLASS_NAMES
from .errors import UserError
from .files import atomic_path
from .inference import Scorer, crops

COLOURS = {"Real": (80, 200, 80), "Fake": (60, 60, 230)}  # BGR


@dataclass
class Options:
    threshold: float
    finder: object | None  # faces.FaceTracker, or None for --no-detect
    margin: float
    window: float = 2.0  # seconds of stream the rolling verdict covers
    interval: float = 1.0  # seconds of stream between printed verdicts
    seconds: float | None = None  # stop after this much of the stream
    record: Path | None = None
    show_fps: bool = False
    format: str = "text"  # text | json (one object per line)


def open_source(source: str) -> tuple[cv2.VideoCapture, bool]:
    """(capture, is_file) for a camera index, a video file or a stream URL; one-line refusal."""
    is_file = not source.isdigit() and "://" not in source
    if is_file and not Path(source).is_file():
        raise UserError(f"{source}: no such video file (SOURCE is a file, a camera index like 0, or a "
                        "URL like rtsp://host/stream)")
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        capture.release()
        raise UserError(f"{source}: OpenCV cannot open it as a {'video' if is_file else 'camera or stream'}; "
                        "check the path, camera index or URL")
    return capture, is_file


def native_fps(capture: cv2.VideoCapture) -> float:
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if 0 < fps < 1000 else 25.0  # some containers and cameras don't say


class LatestFrame:
    """Reads a capture on its own thread and holds only the newest frame.

    ``get`` returns the newest frame not yet taken (waiting for one), or None once the source has
    ended and everything was taken. Frames replaced before anyone took them count in ``dropped``.
    With ``pace`` (a file), frame i is published at i / fps seconds after the start, as a camera
    would deliver it; a live source paces itself.
    """

    def __init__(self, capture: cv2.VideoCapture, fps: float, pace: bool):
        self._capture, self.fps, self._pace = capture, fps, pace
        self._ready = threading.Condition()
        self._frame: tuple[int, float, np.ndarray] | None = None
        self._taken = -1
        self._stop = threading.Event()
        self.read = self.dropped = 0
        self.ended = False
        self._thread = threading.Thread(target=self._run, name="watch-reader", daemon=True)

    def __enter__(self) -> "LatestFrame":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)  # a live camera's read() returns within a frame

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            while not self._stop.is_set():
                ok, bgr = self._capture.read()
                if not ok:
                    break
                seconds = self.read / self.fps if self._pace else time.perf_counter() - started
                if self._pace:
                    self._stop.wait(max(0.0, started + seconds - time.perf_counter()))
                with self._ready:
                    if self._frame is not None and self._frame[0] != self._taken:
                        self.dropped += 1
                    self._frame = (self.read, seconds, bgr)
                    self.read += 1
                    self._ready.notify()
        finally:
            self._capture.release()
            with self._ready:
                self.ended = True
                self._ready.notify()

    def get(self) -> tuple[int, float, np.ndarray] | None:
        """(frame index, seconds from the start, BGR pixels) of the newest frame, or None at the end."""
        with self._ready:
            while not self.ended and (self._frame is None or self._frame[0] == self._taken):
                self._ready.wait()
            if self._frame is None or self._frame[0] == self._taken:
                return None
            self._taken = self._frame[0]
            return self._frame


class Recorder:
    """The annotated stream as a video at the source's rate: each scored frame is held for as many
    source frames as went by until the next one (the dropped ones), so it plays in real time. The
    video is opened at the first frame, with its size (a stream may not say it before)."""

    def __init__(self, path: Path, tmp: Path, fps: float):
        self._path, self._tmp, self._fps = path, tmp, fps
        self._writer: cv2.VideoWriter | None = None
        self._last, self.written = -1, 0

    def write(self, bgr: np.ndarray, index: int) -> None:
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self._fps,
                                           (bgr.shape[1], bgr.shape[0]))
            if not self._writer.isOpened():
                raise UserError(f"{self._path}: OpenCV cannot write a video there; give a path ending in "
                                ".mp4 in a writable folder")
        for _ in range(max(1, index - self._last)):
            self._writer.write(bgr)
            self.written += 1
        self._last = index

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


@contextmanager
def recording(path: Path | None, fps: float):
    """A ``Recorder`` writing ``path`` atomically (mp4v), or None without a path."""
    if path is None:
        yield None
        return
    with atomic_path(path, suffix=path.suffix or ".mp4") as tmp:
        recorder = Recorder(path, tmp, fps)
        try:
            yield recorder
        finally:
            recorder.close()


class Verdict:
    """The rolling verdict: the mean P(fake) of the scored frames in the last ``window`` seconds."""

    def __init__(self, window: float, threshold: float):
        self.window, self.threshold = window, threshold
        self.recent: deque[tuple[float, float]] = deque()
        self.frames = 0
        self.total = 0.0

    def add(self, seconds: float, score: float) -> None:
        self.recent.append((seconds, score))
        while self.recent[0][0] <= seconds - self.window:
            self.recent.popleft()
        self.frames += 1
        self.total += score

    @property
    def p_fake(self) -> float:
        return float(np.mean([score for _, score in self.recent]))

    def label(self, score: float) -> str:
        return CLASS_NAMES[int(score >= self.threshold)]


def annotate(bgr: np.ndarray, found, scores: np.ndarray, verdict: Verdict, fps: float) -> None:
    """Each scored square with its P(fake), and the rolling verdict on top (in place)."""
    for crop, score in zip(found, scores):
        if crop.face:
            x, y, w, h = crop.box
            colour = COLOURS[verdict.label(float(score))]
            cv2.rectangle(bgr, (x, y), (x + w, y + h), colour, 2)
            below = y < 40  # under the box when the verdict bar would hide it
            cv2.putText(bgr, f"{score:.2f}", (x + 3, y + h + 16 if below else y - 6), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5, colour, 1, cv2.LINE_AA)
    label = verdict.label(verdict.p_fake)
    faces = sum(c.face for c in found)
    text = f"{label} P(fake) {verdict.p_fake:.2f}  {faces or 'no'} face{'s' * (faces != 1)}  {fps:.1f} fps"
    cv2.rectangle(bgr, (0, 0), (bgr.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(bgr, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, COLOURS[label], 1, cv2.LINE_AA)


def watch(source: str, scorer: Scorer, options: Options, out: TextIO) -> dict:
    """Score ``source`` until it ends (or ``options.seconds``, or Ctrl-C); print the rolling verdict
    every ``options.interval`` seconds of stream and a summary. Returns the summary."""
    capture, is_file = open_source(source)
    scorer.score(np.zeros((1, scorer.image_size, scorer.image_size, 3), np.uint8))  # trace before frames come
    fps = native_fps(capture)
    verdict = Verdict(options.window, options.threshold)
    printed_at, rate, ticks = -options.interval, 0.0, deque()  # ticks: wall times of recent scored frames
    started = time.perf_counter()
    interrupted = False
    with recording(options.record, fps) as recorder, LatestFrame(capture, fps, pace=is_file) as reader:
        try:
            while (frame := reader.get()) is not None:
                index, seconds, bgr = frame
                if options.seconds is not None and seconds >= options.seconds:
                    break
                found = crops(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), options.finder, options.margin,
                              scorer.image_size)
                scores = scorer.score(np.stack([c.pixels for c in found]))
                verdict.add(seconds, float(scores.max()))
                now = time.perf_counter()
                ticks.append(now)
                while ticks[0] < now - 1.0:
                    ticks.popleft()
                rate = (len(ticks) - 1) / (ticks[-1] - ticks[0]) if len(ticks) > 1 else 0.0
                if recorder is not None:
                    annotate(bgr, found, scores, verdict, rate)
                    recorder.write(bgr, index)
                if seconds - printed_at >= options.interval:
                    printed_at = seconds
                    _emit(out, options, {"time": round(seconds, 2), "frame": index,
                                         "frame_p_fake": float(scores.max()), "p_fake": round(verdict.p_fake, 4),
                                         "label": verdict.label(verdict.p_fake), "frames": len(verdict.recent),
                                         "faces": sum(c.face for c in found), "fps": round(rate, 1),
                                         "read": reader.read, "scored": verdict.frames,
                                         "dropped": reader.dropped})
        except KeyboardInterrupt:  # the usual way to stop a camera: finish the recording, summarise
            interrupted = True
        if not verdict.frames:  # inside the block: an empty recording is not kept
            raise UserError(f"{source}: no frame could be read")
    wall = time.perf_counter() - started
    mean = verdict.total / verdict.frames
    summary = {"summary": True, "source": source, "seconds": round(wall, 2), "read": reader.read,
               "scored": verdict.frames, "dropped": reader.dropped,
               "scored_per_second": round(verdict.frames / wall, 2), "p_fake": round(mean, 4),
               "label": verdict.label(mean), "threshold": options.threshold, "interrupted": interrupted,
               "recorded_frames": recorder.written if recorder is not None else None}
    _emit(out, options, summary)
    return summary


def _emit(out: TextIO, options: Options, row: dict) -> None:
    if options.format == "json":
        out.write(json.dumps(row) + "\n")
    elif row.get("summary"):
        out.write(f"{row['scored']} of {row['read']} frames scored in {row['seconds']:.1f} s "
                  f"({row['scored_per_second']:.1f}/s, {row['dropped']} dropped"
                  f"{', interrupted' if row['interrupted'] else ''}); all scored frames: "
                  f"P(fake) {row['p_fake']:.3f} {row['label']}\n")
    else:
        faces = f"{row['faces']} face{'s' * (row['faces'] != 1)}" if row["faces"] else "no face (whole frame)"
        fps = f"  {row['fps']:.1f} scored frames/s, {row['dropped']} dropped" if options.show_fps else ""
        out.write(f"{row['time']:8.1f}s  P(fake) {row['p_fake']:.3f}  {row['label']:<4}  {row['frames']} "
                  f"frame{'s' * (row['frames'] != 1)} in {options.window:g} s, {faces}{fps}\n")
    out.flush()
