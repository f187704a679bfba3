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
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import emit  # noqa: E402
from benchmarks.predict_speed import median_seconds  # noqa: E402

import numpy as np  # noqa: E402


def speed(run, images: np.ndarray) -> dict:
    one, batch = images[:1], images[:64]
    run(one), run(batch)  # warm-up (and, for TFLite, the allocation for each shape)
    return {"one_image_ms": round(median_seconds(lambda: run(one), 30) * 1e3, 2),
            "batch_64_images_per_second": round(len(batch) / median_seconds(lambda: run(batch), 7), 1)}


def main() -> None:
    from deepfake_detector import export, inference, paths

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=paths.MODEL)
    parser.add_argument("--check-images", type=Path, nargs="+")
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()

    scorer = inference.Scorer.load(args.model)
    images, source = export.check_images(scorer, args.check_images, args.count, paths.PROCESSED)
    floats = images.astype(np.float32)
    work = Path(tempfile.mkdtemp(prefix="export_check."))
    result = {"model": scorer.meta.get("model"), "image_size": scorer.image_size, "images": source,
              "cpus": len(os.sched_getaffinity(0)), "load_average_before": round(os.getloadavg()[0], 2),
              "keras_predict_on_batch": speed(lambda x: scorer.model.predict_on_batch(x).reshape(-1), floats)}
    for fmt in export.FORMATS:
        output = work / f"model{export.SUFFIXES[fmt]}"
        started = time.perf_counter()
        report = export.export(scorer, fmt, output, images)
        result[fmt] = {"export_seconds": round(time.perf_counter() - started, 1),
                       "size_mib": round(report["size_bytes"] / 2**20, 2), **report["check"],
                       **speed(export.runtime(fmt, output), floats)}
        print(f"{fmt}: {result[fmt]}", file=sys.stderr)
    result["keras_file_size_mib"] = round(args.model.stat().st_size / 2**20, 2)
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    emit(result)


if __name__ == "__main__":
    from deepfake_detector import entrypoint

    entrypoint.run(main)  # no trained model here: one line saying what to run
