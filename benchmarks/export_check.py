"""Each `deepfake-detector export` format against the Keras model: agreement on 100 images, size,
and speed in its own runtime.

    python benchmarks/export_check.py [--model models/model.keras] [--check-images DIR] [--count 100]

Run in a project where the model was trained and evaluated (`make repro`): the check images are the
first ``--count`` Validation records (or ``--check-images``), as `export` itself uses. For each of
savedmodel, tflite and onnx: ``export.export`` writes it (refusing it over ``export.TOLERANCE``),
then the report gives the largest |P(fake) difference| from the Keras model, the share of labels
that agree at the model's threshold, the size, and in the same run, for the export's runtime and for
the Keras model's bare ``predict_on_batch`` (the reference): median ms for one image and images/s
in batches of 64.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import alternate, emit, machine, median_seconds, ratio_to

import numpy as np

REFERENCE = "the Keras model's bare predict_on_batch, same images, same run"


def speed(run, keras_run, images: np.ndarray) -> dict:
    """One-image latency and batch-64 rate of ``run``, each as a ratio to ``keras_run`` (interleaved)."""
    one, batch = images[:1], images[:64]
    for fn in (run, keras_run):
        fn(one), fn(batch)  # warm-up (and, for TFLite, the allocation for each shape)

    def single(fn):  # the median call: a shared machine's stalls would swamp a mean of 1 ms calls
        def timed():
            ms = median_seconds(lambda: fn(one), 30) * 1e3
            return {"items": 30, "ms": ms, "median_calls_per_second": 1e3 / ms}
        return timed

    ones = alternate({"keras": single(keras_run), "format": single(run)}, 3)
    batches = alternate({"keras": lambda: [keras_run(batch) for _ in range(7)] and 7 * len(batch),
                         "format": lambda: [run(batch) for _ in range(7)] and 7 * len(batch)}, 3)
    return {"one_image_ms": round(statistics.median(r["ms"] for r in ones["format"]), 2),
            "keras_one_image_ms": round(statistics.median(r["ms"] for r in ones["keras"]), 2),
            "one_image": ratio_to(ones["keras"], ones["format"], REFERENCE, key="median_calls_per_second",
                                  reference_key="median_calls_per_second"),
            "batch_64": ratio_to(batches["keras"], batches["format"], REFERENCE)}


def main() -> None:
    from deepfake_detector.apps import export
    from deepfake_detector.model import inference
    from deepfake_detector.core import paths

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=paths.MODEL)
    parser.add_argument("--check-images", type=Path, nargs="+")
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()

    scorer = inference.Scorer.load(args.model)
    images, source = export.check_images(scorer, args.check_images, args.count, paths.PROCESSED)
    floats = images.astype(np.float32)
    work = Path(tempfile.mkdtemp(prefix="export_check."))
    result = {"model": scorer.meta.model, "image_size": scorer.image_size, "images": source,
              "machine": machine()}

    def keras_run(x):
        return scorer.model.predict_on_batch(x).reshape(-1)

    for fmt in export.FORMATS:
        output = work / f"model{export.SUFFIXES[fmt]}"
        started = time.perf_counter()
        report = export.export(scorer, fmt, output, images)
        result[fmt] = {"export_seconds": round(time.perf_counter() - started, 1),
                       "size_mib": round(report["size_bytes"] / 2**20, 2), **report["check"],
                       **speed(export.runtime(fmt, output), keras_run, floats)}
        print(f"{fmt}: {result[fmt]}", file=sys.stderr)
    result["keras_file_size_mib"] = round(args.model.stat().st_size / 2**20, 2)
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    emit(result)


if __name__ == "__main__":
    from deepfake_detector.core import entrypoint

    entrypoint.run(main)  # no trained model here: one line saying what to run
