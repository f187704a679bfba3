"""``deepfake-detector predict``: images, folders and videos → one row per scored face, one verdict
per file, one error row per file that cannot be scored.

Files are prepared (read, decoded, faces found and cropped) on a small thread pool a bounded number
of files ahead, and their crops are scored in batches across files; rows come out in input order.

Every row has the same keys (``ROW_FIELDS``, null where they don't apply); the web API returns the
same rows. ``kind`` is ``face`` (one scored crop), ``file`` (the file's verdict) or ``error``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from deepfake_detector import CLASS_NAMES, usable_cpus
from deepfake_detector.core.errors import UserError
from deepfake_detector.model.inference import (BATCH_SIZE, MAX_PIXELS, Crop, Scorer, Unreadable, crops,
                                              decode, native_rule)

ROW_FIELDS = ("file", "kind", "frame", "time", "box", "face", "p_fake", "label", "top_k_mean",
              "faces", "frames", "error", "note")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".webm", ".mkv", ".m4v")
FPS = 1.0  # video frames sampled per second
TOP_K = 5  # a video's verdict also gives the mean of its K most suspicious frames
HELD_BYTES = 256 * 2**20  # decoded video frames waiting for a worker (~40 at 1080p)


@dataclass
class Options:
    threshold: float
    finder: object | None  # faces.FaceFinder, or None for --no-detect
    margin: float
    fps: float = FPS
    top_k: int = TOP_K
    max_pixels: int = MAX_PIXELS
    batch_size: int = BATCH_SIZE
    explain: object | None = None  # explain.Writer: a Grad-CAM PNG per scored crop (--explain)
    max_seconds: float | None = None  # longer videos are refused (serve's cap), None: no cap

    def __post_init__(self):  # the CLI checks its options; a library caller gets the same words
        for name, low in (("threshold", 0.0), ("margin", 0.0), ("fps", None), ("max_seconds", None)):
            value = getattr(self, name)
            if value is None:
                continue
            if not math.isfinite(value) or (value < low if low is not None else value <= 0):
                raise UserError(f"predict: {name} must be a finite number "
                                f"{'>= 0' if low is not None else '> 0'}, got {value!r}")


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files in the order given; folders recursively (sorted, hidden files skipped); no repeats.
    Symbolic links inside a folder are listed, not followed, so that a broken one or one to a folder
    gets its own error row instead of vanishing."""
    seen, out = set(), []
    for given in map(Path, paths):
        found = ([p for p in sorted(given.rglob("*")) if (p.is_file() or p.is_symlink())
                  and not any(part.startswith(".") for part in p.relative_to(given).parts)]
                 if given.is_dir() else [given])
        for path in found:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                out.append(path)
    return out


def video_frames(path: Path, fps: float, max_pixels: int,
                 max_seconds: float | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame index, seconds, RGB) of the frames sampled at ``fps`` (every frame if the video has
    fewer); skipped frames are grabbed, not decoded. Raises ``Unreadable`` before the first frame
    (``too_long`` too when the header's frame count says so), or ``too_long`` at the first frame
    past ``max_seconds`` (headers can be wrong or missing)."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise Unreadable("unreadable", "OpenCV cannot open it as a video")
        width, height = capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
        if width * height > max_pixels:
            raise Unreadable("too_large", f"video frames {int(width)}x{int(height)}")
        native = capture.get(cv2.CAP_PROP_FPS)
        native = native if 0 < native < 1000 else 25.0  # some containers don't say
        step = max(1, round(native / fps))
        frames = capture.get(cv2.CAP_PROP_FRAME_COUNT)  # the header's count: refuse before any decoding
        if max_seconds is not None and frames > 0 and (frames - 1) / native > max_seconds:
            raise Unreadable("too_long", f"longer than {max_seconds:g} s ({frames / native:.1f} s)")
        index = sampled = 0
        while True:
            if max_seconds is not None and index / native > max_seconds:
                raise Unreadable("too_long", f"longer than {max_seconds:g} s")
            if index % step:
                if not capture.grab():
                    break
            else:
                ok, bgr = capture.read()
                if not ok:
                    break
                sampled += 1
                yield index, round(index / native, 3), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
        if not sampled:
            raise Unreadable("empty_video", "no frame could be read")
    finally:
        capture.release()


@dataclass
class Unit:
    """One image or one sampled video frame; ``load`` gives its RGB pixels."""

    file: Path
    frame: int | None = None
    time: float | None = None
    load: Callable[[], np.ndarray] | None = None
    held: int = 0  # bytes of pixels it holds until prepared (a decoded video frame)
    error: Unreadable | None = None
    crops: list[Crop] = field(default_factory=list)
    scores: np.ndarray | None = None


def _units(files: list[Path], options: Options, native: str | None) -> Iterator[Unit]:
    for path in files:
        if not path.exists():
            yield Unit(path, error=Unreadable("not_found", "a broken symbolic link" if path.is_symlink()
                                              else "no such file or folder"))
        elif path.is_dir():  # only a link inside a folder gets here (given folders were expanded)
            yield Unit(path, error=Unreadable("unreadable", "a symbolic link to a folder, not followed: "
                                              "give that folder itself"))
        elif path.suffix.lower() in VIDEO_SUFFIXES and not path.stat().st_size:
            yield Unit(path, error=Unreadable("empty"))
        elif path.suffix.lower() in VIDEO_SUFFIXES and native:
            yield Unit(path, error=Unreadable("wrong_size",
                                              f"videos can't be scored by this model: {native}"))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            try:
                for index, seconds, rgb in video_frames(path, options.fps, options.max_pixels,
                                                         options.max_seconds):
                    yield Unit(path, index, seconds, load=lambda rgb=rgb: rgb, held=rgb.nbytes)
            except Unreadable as exc:
                yield Unit(path, error=exc)
        else:  # the content decides what an image is, never the file name
            yield Unit(path, load=lambda path=path: decode(path.read_bytes(), options.max_pixels))


def _prepared(units: Iterator[Unit], options: Options, size: int, native: str | None) -> Iterator[Unit]:
    """Units with their crops, prepared on a thread pool while the previous batch is scored, in
    order. At most a batch and a bit ahead, holding at most ``HELD_BYTES`` of video frames: memory
    stays bounded however many files or frames there are. With ``native`` (a model that reads
    un-resized crops, ``Scorer.native_only``) an image of another size is refused, never resized."""
    def prepare(unit: Unit) -> Unit:
        if unit.error is None:
            try:
                rgb = unit.load()
                if native and rgb.shape[:2] != (size, size):
                    raise Unreadable("wrong_size", f"{rgb.shape[1]}x{rgb.shape[0]}: {native}")
                unit.crops = crops(rgb, options.finder, options.margin, size)
            except Unreadable as exc:
                unit.error = exc
            except OSError as exc:  # unreadable file (permissions, a vanished file ...)
                unit.error = Unreadable("unreadable", exc.strerror or str(exc))
        unit.load = None  # let the decoded image go
        return unit

    workers = usable_cpus()
    ahead = options.batch_size + 2 * workers
    with ThreadPoolExecutor(max_workers=workers) as pool:
        queue: deque = deque()
        held = 0
        for unit in units:
            queue.append(pool.submit(prepare, unit))
            held += unit.held
            while queue and (len(queue) >= ahead or held > HELD_BYTES):
                done = queue.popleft().result()
                held -= done.held
                yield done
        for future in queue:
            yield future.result()


def _scored(units: Iterator[Unit], scorer: Scorer, batch_size: int) -> Iterator[Unit]:
    """Units with ``scores``, scored in batches of crops across units."""
    pending: list[Unit] = []

    def flush():
        stack = [c.pixels for u in pending for c in u.crops]
        scores = scorer.score(np.stack(stack), batch_size) if stack else np.zeros(0)
        start = 0
        for unit in pending:
            unit.scores = scores[start:start + len(unit.crops)]
            start += len(unit.crops)
        yield from pending
        pending.clear()

    for unit in units:
        pending.append(unit)
        if sum(len(u.crops) for u in pending) >= batch_size:
            yield from flush()
    yield from flush()


def _row(**values) -> dict:
    values.setdefault("note", "")
    return {key: values.get(key) for key in ROW_FIELDS}


def _label(score: float, threshold: float) -> str:
    return CLASS_NAMES[int(score >= threshold)]


def _verdict(path: Path, units: list[Unit], options: Options, native: str | None) -> dict:
    """The file's row: an image's most suspicious crop; a video's mean (and top-k mean) over its
    sampled frames with a face of each frame's most suspicious crop. No face anywhere: no score."""
    per_unit = [float(u.scores.max()) for u in units if len(u.crops)]
    faces = sum(c.face for u in units for c in u.crops)
    video = units[0].frame is not None
    if not per_unit:
        where = f"in {len(units)} sampled frames" if video else "in the image"
        return _row(file=str(path), kind="file", faces=0, frames=len(units) if video else None,
                    note=f"no face found {where}: not scored; if it is a face crop already, pass --no-detect")
    if not video:
        score = per_unit[0]
        note = (f"most suspicious of {faces} faces" if faces > 1 else "one face" if faces else
                "whole image scored: this model reads un-resized crops (no face detection)" if native else
                "whole image scored (--no-detect)")
        return _row(file=str(path), kind="file", p_fake=score, label=_label(score, options.threshold),
                    faces=faces, note=note)
    score = float(np.mean(per_unit))
    top = float(np.mean(sorted(per_unit, reverse=True)[:options.top_k]))
    without = len(units) - len(per_unit)
    return _row(file=str(path), kind="file", p_fake=score, label=_label(score, options.threshold),
                top_k_mean=top, faces=faces, frames=len(units),
                note=f"mean of {len(per_unit)} frames at {options.fps:g}/s; "
                     f"top-{options.top_k} mean {top:.4f}"
                     + (f"; {without} frames without a face left out" if without else ""))


def predict(paths: Iterable[str | Path], scorer: Scorer, options: Options,
            progress: bool = True) -> list[dict]:
    """All rows for ``paths`` (see ``ROW_FIELDS``), in input order."""
    from tqdm import tqdm

    paths = list(paths)
    files = expand(paths)
    if not files:
        raise UserError(f"no files in {', '.join(map(str, paths))}: "
                        "give image or video files, or folders holding them")
    native = native_rule(scorer)
    if native:  # never a face cut from a larger picture and resized: that erases what it reads
        options = replace(options, finder=None)
    units = _scored(_prepared(_units(files, options, native), options, scorer.image_size, native),
                    scorer, options.batch_size)
    rows: list[dict] = []
    bar = tqdm(total=len(files), unit="file", file=sys.stderr,  # shown on a terminal only
               disable=None if progress and len(files) > 1 else True)
    current: list[Unit] = []

    def close_file():
        if current:
            rows.append(_verdict(current[0].file, current, options, native))
            current.clear()
            bar.update()

    for unit in units:
        if current and unit.file != current[0].file:
            close_file()
        if unit.error is not None:
            close_file()
            rows.append(_row(file=str(unit.file), kind="error", error=unit.error.reason,
                             note=str(unit.error) if str(unit.error) != unit.error.reason else ""))
            bar.update()
            continue
        for crop, score in zip(unit.crops, unit.scores):
            rows.append(_row(file=str(unit.file), kind="face", frame=unit.frame, time=unit.time,
                             box=list(crop.box), face=crop.face, p_fake=float(score),
                             label=_label(float(score), options.threshold),
                             note="" if crop.face else "whole image (centre square)"))
        if options.explain is not None and unit.crops:
            options.explain.add(unit.file, unit.frame, unit.crops, unit.scores)
        for crop in unit.crops:  # scored: only the box is kept (a long video's frames would add up)
            crop.pixels = None
        current.append(unit)
    close_file()
    if options.explain is not None:
        options.explain.close()
    bar.close()
    return rows


def json_header(scorer: Scorer, threshold: float, given: bool) -> dict:
    """What ``--format json`` (and ``serve``) puts before the rows: the model, the threshold's source
    (``given``: --threshold, else the file evaluate wrote beside the model), the model's own figures
    on Validation (None where evaluate recorded none for this file), what it was trained on (None for
    a file that doesn't say) and the warning for a model trained on the generated sample (or None)."""
    from deepfake_detector.model.inference import provenance_warning, saved_evaluation, threshold_path

    return {"model": str(scorer.path), "model_sha256": scorer.sha256, "threshold": threshold,
            "threshold_from": "--threshold" if given else str(threshold_path(scorer.path)),
            "validation": saved_evaluation(scorer).get("validation"), "trained_on": scorer.meta.trained_on,
            "warning": provenance_warning(scorer)}


def render(rows: list[dict], fmt: str, header: dict) -> str:
    """``json``: {**header, "rows": rows}; ``csv``: ROW_FIELDS columns, box as "x,y,w,h";
    ``table``: the columns a person reads, aligned."""
    if fmt == "json":
        return json.dumps({**header, "rows": rows}, indent=2) + "\n"
    flat = [{**row, "box": ",".join(map(str, row["box"])) if row["box"] else None} for row in rows]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=ROW_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
        return out.getvalue()
    columns = ("file", "kind", "frame", "box", "P(fake)", "label", "note")
    lines = [columns, *([_cell(row[key]) for key in ("file", "kind", "frame", "box", "p_fake", "label")]
                        + [_table_note(row)] for row in flat)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() + "\n" for line in lines)


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _table_note(row: dict) -> str:
    if row["error"]:
        return f"{row['error']}: {row['note']}" if row["note"] else row["error"]
    return row["note"]
