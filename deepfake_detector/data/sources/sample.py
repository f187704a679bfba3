"""The built-in sample dataset: generated, seeded, offline, and a real detection task.

``data.source: sample`` needs no account and no network. ``generate`` writes one zip in the layout
and form of the Kaggle dataset ``manjilkarki/deepfake-and-real-images`` (``Dataset/Train/Real/*.jpg``
and so on: 256x256 JPEG face crops), so every later stage runs exactly the code path real data
takes. The same params give a byte-identical zip on every run and whatever the worker count (a
test checks it); the pixel maths avoids CPU-dependent float paths so that other machines with the
same library versions should agree too (see sample_render; not verified across CPU families).

These are not real faces, and no real person is depicted: ``sample_render.py`` draws face-like
scenes procedurally (a head with a varied skin tone, eyes, brows, nose shading, mouth, hair, ears,
shoulders, a blurred textured background, a lighting gradient, a random pose and scale) and passes
them through a camera model (optical blur, sensor noise, JPEG at quality 70..95).

"Fake" images are drawn by the same renderer, then get ONE manipulation of the face region that
mimics a trace real deepfake detectors learn, before the same noise and JPEG steps:

* ``face_swap``: the inner face of another identity (same pose), synthesised at a lower resolution
  and colour-matched imperfectly, pasted through a feathered mask: a blend seam, a tone step and a
  face softer and cleaner than its surroundings (FaceSwap / DeepFakeLab style pipelines).
* ``gan_upsample``: the face re-synthesised from a 4x smaller version through two learned
  (transposed-convolution) upsampling layers with imperfect kernels and injected noise: periodic
  patterns with spectral peaks, the "checkerboard" of GAN generators. Period 4 px survives the
  2x area downscale the model sees (a period-2 pattern would average away).
* ``smooth_skin``: an edge-preserving smoothing of the face: no sensor noise or skin texture there,
  while the background keeps both (beautified / autoencoder-decoded faces).

The sensor noise of a fake is split: part before the manipulation, the rest after it (a re-capture
or re-encode), so the total noise, and with it the JPEG file size, matches a real image's, while the
face region carries less or differently correlated noise.

``difficulty`` (0 blatant .. 1 barely there) sets two things:

* how strong an ordinary fake's traces are: seam sharpness, tone mismatch, alignment error,
  resolution loss, kernel error, smoothing strength and area, and how much of the noise comes after
  the manipulation to mask it. The scale is calibrated, not linear (``subtlety = difficulty**3.5``);
* the share of "well-made" fakes (6 % x difficulty, exact per split) whose manipulation is blended
  in at 2..8 % opacity under all of the sensor noise. Like the best real deepfakes they are
  practically undetectable; they cap every detector's ROC-AUC near ``1 - share / 2`` (0.985 at
  0.5), so the sample cannot be solved perfectly and better models still rank above worse ones.

Calibration (the default: 1600/400/800 images at difficulty 0.5): the default model reaches a test
ROC-AUC close to that ceiling and the seed project's 4-block CNN stays under 0.995
(``benchmarks/train_models.py`` measures both); ``tests/test_sample.py`` keeps a logistic regression
on global statistics (mean colour, contrast, file size, JPEG quality) under 0.65, and checks that the
traces of difficulty 0 are far easier to find than those of difficulty 1.
"""

from __future__ import annotations

import collections
import ctypes
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

from deepfake_detector import CLASS_NAMES, SPLITS, spawn_pool, usable_cpus
from deepfake_detector.data.sources import canonical
from deepfake_detector.data.sources.sample_fakes import KINDS, well_made_fraction

REAL, FAKE, WELL_MADE = 0, 1, 2  # what plan() draws per image
CHUNKSIZE = 16  # images per task sent to a worker: large enough to amortise IPC, small for memory


class Row(NamedTuple):
    """One image to make: its zip member, split, label, whether it is a well-made fake, and the
    arguments of ``sample_fakes.make_image``."""

    name: str
    split: str
    label: int
    well_made: bool
    job: tuple


def plan(params: SimpleNamespace) -> list[Row]:
    """Every image to make, in zip-member order.

    Within a split the labels are a seeded shuffle (half Real, half Fake, Real gets an odd one) and
    ids run across the whole dataset, so a file name says nothing about its label. The number of
    well-made fakes is exact per split (not a coin flip per image): the AUC ceiling they set then
    does not wander with the seed.
    """
    rows = []
    next_id = 0
    for split_index, split in enumerate(SPLITS):
        count = getattr(params, split)
        fakes = count // 2
        well_made = round(well_made_fraction(params.difficulty) * fakes)
        classes = np.array([REAL] * (count - fakes) + [FAKE] * (fakes - well_made)
                           + [WELL_MADE] * well_made)
        np.random.default_rng([params.seed, split_index, 2**32 - 1]).shuffle(classes)
        for index, cls in enumerate(classes.tolist()):
            label = int(cls != REAL)
            name = canonical.member_name(split, label, f"s{next_id:07d}.jpg")
            job = (params.seed, split_index, index, bool(label), cls == WELL_MADE,
                   float(params.difficulty), params.image_size)
            rows.append(Row(name, split, label, cls == WELL_MADE, job))
            next_id += 1
    return rows


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would only contend
    # glibc hands freed heap memory back to the OS eagerly, and each image allocates and frees
    # ~1 MB arrays: ~1,400 page faults per image, a third of the run time. Keep it (tens of MB).
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 256 * 2**20)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _make(job: tuple) -> tuple[bytes, str | None]:
    from deepfake_detector.data.sources.sample_fakes import make_image

    return make_image(*job)


def _worker_count(workers: int, images: int) -> int:
    if workers <= 0:
        workers = usable_cpus()
    return max(1, min(workers, math.ceil(images / CHUNKSIZE)))


def _results(jobs: list[tuple], workers: int):
    """``_make`` over ``jobs`` in order, in ``workers`` processes (1: in this process)."""
    if workers == 1:
        import cv2

        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            yield from map(_make, jobs)
        finally:
            cv2.setNumThreads(threads)
        return
    with spawn_pool(workers, _init_worker) as pool:
        yield from pool.imap(_make, jobs, chunksize=CHUNKSIZE)


def generate(dest_zip: Path, params: SimpleNamespace, workers: int = 0, progress: bool = True) -> dict:
    """Write the sample dataset to ``dest_zip`` (atomically) and return a summary of it (only facts
    about the data, nothing run-dependent such as timings or the worker count).

    ``params`` is the validated ``data.sample`` section; ``workers`` processes render it (0 = one per
    CPU). The output depends on ``params`` only, never on ``workers``.
    """
    from tqdm import tqdm

    rows = plan(params)
    workers = _worker_count(workers, len(rows))
    counts = {split: {name: 0 for name in CLASS_NAMES} for split in SPLITS}
    kinds: collections.Counter = collections.Counter()
    bar = tqdm(total=len(rows), desc="sample", unit="img", disable=not progress, file=sys.stderr)
    with canonical.writer(dest_zip) as add, bar:
        for row, (data, kind) in zip(rows, _results([row.job for row in rows], workers)):
            add(row.name, data)
            counts[row.split][CLASS_NAMES[row.label]] += 1
            if kind:
                kinds[kind] += 1
            bar.update()
    return {
        "images": len(rows),
        "splits": counts,
        "seed": params.seed,
        "difficulty": params.difficulty,
        "image_size": params.image_size,
        "manipulations": {kind: kinds[kind] for kind in KINDS},
        "well_made_fakes": sum(row.well_made for row in rows),  # near-invisible: the hard tail
    }
