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
from typing import NamedTuple, TextIO

import cv2
import numpy as np

from deepfake_detector import CLASS_NAMES
from deepfake_detector.core.errors import UserError
from deepfake_detector.core.files import atomic_path
from deepfake_detector.model.inference import Scorer, crops, native_rule

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
    stall: float = 10.0  # a live source that sends no frame for this long has stalled: stop and say so


class Source(NamedTuple):
    capture: cv2.VideoCapture
    is_file: bool
    name: str  # SOURCE as given


def open_source(source: str) -> Source:
    """The opened camera index, video file or stream URL; one-line refusal. Opened before the model
    loads, so that a wrong SOURCE is said at once."""
    is_file = not source.isdigit() and "://" not in source
    if is_file and not Path(source).is_file():
        raise UserError(f"{source}: no such video file (SOURCE is a file, a camera index like 0, or a "
                        "URL like rtsp://host/stream)")
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        capture.release()
        raise UserError(f"{source}: OpenCV cannot open it as a {'video' if is_file else 'camera or stream'}; "
                        "check the path, camera index or URL")
    return Source(capture, is_file, source)


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
        self.ended = self.stalled = False
        self._thread = threading.Thread(target=self._run, name="watch-reader", daemon=True)

    def __enter__(self) -> "LatestFrame":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        # a live camera's read() returns within a frame; a stalled stream's may not return for long
        self._thread.join(timeout=0.5 if self.stalled else 5)

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

    def get(self, timeout: float | None = None) -> tuple[int, float, np.ndarray] | None:
        """(frame index, seconds from the start, BGR pixels) of the newest frame, or None at the end,
        or after ``timeout`` seconds without a new frame (``stalled`` is then set)."""
        with self._ready:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self.ended and (self._frame is None or self._frame[0] == self._taken):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    self.stalled = True
                    return None
                self._ready.wait(left)
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
        self.age(seconds)
        self.frames += 1
        self.total += score

    def age(self, seconds: float) -> None:
        """Frames older than the window leave it, also when the newest frame had no face."""
        while self.recent and self.recent[0][0] <= seconds - self.window:
            self.recent.popleft()

    @property
    def p_fake(self) -> float | None:
        """The window's mean P(fake); None when no frame in it had a face."""
        return float(np.mean([score for _, score in self.recent])) if self.recent else None

    def label(self, score: float | None) -> str | None:
        return None if score is None else CLASS_NAMES[int(score >= self.threshold)]


def annotate(bgr: np.ndarray, found, scores: np.ndarray, verdict: Verdict, fps: float) -> None:
    """Each scored square with its P(fake), and the rolling verdict on top (in place)."""
    for crop, score in zip(found, scores):
        if crop.face:
            x, y, w, h = crop.box
            colour = COLOURS[verdict.label(float(score))]
            cv2.rectangle(bgr, (x, y), (x + w, y + h), colour, 2)
            below = y < 40  # under the box when the verdict bar would hide it
            cv2.putText(bgr, f"{score:.2f}", (x + 3, y + h + 16 if below else y - 6),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    label = verdict.label(verdict.p_fake)
    faces = sum(c.face for c in found)
    said = f"{label} P(fake) {verdict.p_fake:.2f}" if label else "no face: no verdict"
    text = f"{said}  {faces or 'no'} face{'s' * (faces != 1)}  {fps:.1f} fps"
    cv2.rectangle(bgr, (0, 0), (bgr.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(bgr, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, COLOURS.get(label, (200, 200, 200)), 1,
                cv2.LINE_AA)


def watch(source, scorer: Scorer, options: Options, out: TextIO) -> dict:
    """Score ``source`` (a SOURCE string, or ``open_source``'s result) until it ends (or
    ``options.seconds``, or Ctrl-C, or a stall); print the rolling verdict every ``options.interval``
    seconds of stream and a summary. Returns the summary; a stalled stream raises ``UserError``
    after the summary is printed."""
    capture, is_file, name = open_source(source) if isinstance(source, str) else source
    if scorer.native_only:
        capture.release()
        raise UserError(f"{native_rule(scorer)}: a stream's frames are not such crops")
    scorer.score(np.zeros((1, scorer.image_size, scorer.image_size, 3), np.uint8))  # trace before frames come
    fps = native_fps(capture)
    verdict = Verdict(options.window, options.threshold)
    printed_at, rate, ticks = -options.interval, 0.0, deque()  # ticks: wall times of recent scored frames
    taken = no_face = 0
    last = -1  # index of the last frame taken: the stream watched is frames 0..last
    started = time.perf_counter()
    interrupted = False
    with recording(options.record, fps) as recorder, LatestFrame(capture, fps, pace=is_file) as reader:
        try:
            while (frame := reader.get(None if is_file else options.stall)) is not None:
                index, seconds, bgr = frame
                if options.seconds is not None and seconds >= options.seconds:
                    break
                taken, last = taken + 1, index
                found = crops(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), options.finder, options.margin,
                              scorer.image_size)
                scores = scorer.score(np.stack([c.pixels for c in found])) if found else np.zeros(0)
                if found:
                    verdict.add(seconds, float(scores.max()))
                else:  # a frame without a face says nothing about the faces: left out of the verdict
                    no_face += 1
                    verdict.age(seconds)
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
                    p_fake = verdict.p_fake
                    _emit(out, options, {"time": round(seconds, 2), "frame": index,
                                         "frame_p_fake": float(scores.max()) if found else None,
                                         "p_fake": None if p_fake is None else round(p_fake, 4),
                                         "label": verdict.label(p_fake), "frames": len(verdict.recent),
                                         "faces": sum(c.face for c in found), "fps": round(rate, 1),
                                         "read": index + 1, "scored": verdict.frames, "no_face": no_face,
                                         "dropped": index + 1 - taken})
        except KeyboardInterrupt:  # the usual way to stop a camera: finish the recording, summarise
            interrupted = True
        if not taken:  # inside the block: an empty recording is not kept
            raise UserError(f"{name}: no frame arrived within {options.stall:g} s; check the camera or URL"
                            if reader.stalled else f"{name}: no frame could be read")
    wall = time.perf_counter() - started
    mean = verdict.total / verdict.frames if verdict.frames else None
    # counts over the stream watched (frames 0..last): read = scored + without a face + dropped
    summary = {"summary": True, "source": name, "seconds": round(wall, 2), "read": last + 1,
               "scored": verdict.frames, "no_face": no_face, "dropped": last + 1 - taken,
               "scored_per_second": round(verdict.frames / wall, 2),
               "p_fake": None if mean is None else round(mean, 4), "label": verdict.label(mean),
               "threshold": options.threshold, "interrupted": interrupted, "stalled": reader.stalled,
               "recorded_frames": recorder.written if recorder is not None else None}
    _emit(out, options, summary)
    if reader.stalled:
        raise UserError(f"{name}: the stream stalled (no frame for {options.stall:g} s); the summary above "
                        "covers what arrived: check the source and watch again")
    return summary


def _emit(out: TextIO, options: Options, row: dict) -> None:
    if options.format == "json":
        out.write(json.dumps(row) + "\n")
    elif row.get("summary"):
        verdict = (f"P(fake) {row['p_fake']:.3f} {row['label']}" if row["label"] else
                   "no face in any frame: no verdict")
        out.write(f"{row['scored']} of {row['read']} frames scored in {row['seconds']:.1f} s "
                  f"({row['scored_per_second']:.1f}/s, {row['dropped']} dropped, "
                  f"{row['no_face']} without a face"
                  f"{', interrupted' if row['interrupted'] else ''}{', stalled' if row['stalled'] else ''}); "
                  f"all scored frames: {verdict}\n")
    else:
        faces = f"{row['faces']} face{'s' * (row['faces'] != 1)}" if row["faces"] else "no face"
        fps = f"  {row['fps']:.1f} scored frames/s, {row['dropped']} dropped" if options.show_fps else ""
        said = f"P(fake) {row['p_fake']:.3f}  {row['label']:<4}" if row["label"] else "no face: no verdict"
        out.write(f"{row['time']:8.1f}s  {said}  {row['frames']} "
                  f"frame{'s' * (row['frames'] != 1)} in {options.window:g} s, {faces}{fps}\n")
    out.flush()
