"""How long ``images.inspect`` takes per image on one core, for 256x256 JPEGs already at size.

    python benchmarks/inspect_speed.py [--images 2000] [--rounds 5]

Prints one JSON object: ``per_image_ms`` and ``ratio``, inspect's rate over a plain ``cv2.imdecode``
of the same files on the same core, the two interleaved round by round (``harness.alternate``), on
generated photo-like JPEGs (~12 KB, like the real dataset's), plus the same under ``"real_faces"``
when ``/work/shared/data/faces140k-sample.zip`` exists (real FFHQ/StyleGAN faces; optional). Each
time is of the whole list, so it excludes nothing but file reading.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import zipfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import alternate, emit, machine, ratio_to
from deepfake_detector.data.images import inspect

SIZE = 256
MAX_PIXELS = 50_000_000
REAL_FACES = Path("/work/shared/data/faces140k-sample.zip")


def generated_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """Smooth random colour blobs plus fine noise, quality 90: ~12 KB, like the real faces."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        smooth = cv2.resize(coarse, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        pixels = np.clip(smooth + rng.normal(0, 3, smooth.shape), 0, 255).astype(np.uint8)
        out.append(cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out


def measure(files: list[bytes], rounds: int) -> dict:
    for data in files[:50]:  # warm-up: first-call costs (plugin registry, caches)
        inspect(data, SIZE, MAX_PIXELS)

    def inspect_all() -> int:
        for data in files:
            inspect(data, SIZE, MAX_PIXELS)
        return len(files)

    def decode_all() -> int:  # the reference: a plain full decode of the same files
        for data in files:
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return len(files)

    runs = alternate({"decode": decode_all, "inspect": inspect_all}, rounds)
    verdicts = Counter(inspect(data, SIZE, MAX_PIXELS).status for data in files)
    per_image = statistics.median(r["wall_seconds"] for r in runs["inspect"]) / len(files)
    return {"images": len(files), "per_image_ms": round(per_image * 1e3, 4),
            **ratio_to(runs["decode"], runs["inspect"], "cv2.imdecode (colour) of the same files, one core"),
            "verdicts": dict(verdicts), "mean_kb": round(sum(map(len, files)) / len(files) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core, as in each preprocess worker
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    report = measure(generated_jpegs(args.images), args.rounds)
    if REAL_FACES.exists():
        with zipfile.ZipFile(REAL_FACES) as archive:
            faces = [archive.read(name) for name in archive.namelist() if name.endswith(".jpg")]
        report["real_faces"] = measure(faces[:args.images], args.rounds)
    emit({"machine": machine(), **report})


if __name__ == "__main__":
    main()
