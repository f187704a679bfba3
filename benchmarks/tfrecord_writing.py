"""What writing TFRecords with TensorFlow would cost the preprocess stage, against records.py's own encoder.

Measures, in fresh processes: importing TensorFlow (what preprocess would pay once, in its main
process, to use ``tf.io.TFRecordWriter``) against importing ``deepfake_detector.data.records``; per record:
``records.frame(records.encode(...))`` against ``tf.train.Example(...).SerializeToString()`` +
``TFRecordWriter.write`` on the sample's JPEGs; and the preprocess stage itself on the sample at the
given sizes (``benchmarks/preprocess_speed.py``'s measurement). The 190k-image figure (the Kaggle
dataset) is extrapolated from the largest size's images/s: say so when quoting it.
Usage: python benchmarks/tfrecord_writing.py [--sizes 2000] [--records 20000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import emit, make_project
from preprocess_speed import measure

from deepfake_detector.data import records
from deepfake_detector.data.sources.sample_fakes import make_image

KAGGLE_IMAGES = 190_335
IMPORT = ("import resource, sys, time; t = time.perf_counter(); import {module}; "
          "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")


def import_cost(module: str, runs: int) -> dict:
    """Median wall seconds of ``import module`` in a fresh interpreter, and the process's peak RSS."""
    seconds, rss = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", IMPORT.format(module=module)], capture_output=True,
                             text=True, check=True, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": ""}).stdout
        took, peak = map(float, out.split())
        seconds.append(took)
        rss.append(peak)
    return {"seconds": round(statistics.median(seconds), 2), "peak_rss_mib": round(statistics.median(rss), 1)}


def write_cost(count: int, folder: Path) -> dict:
    """Microseconds per record for both writers, on real sample JPEGs (cycled)."""
    import tensorflow as tf

    images = [make_image(7, 0, i, bool(i % 2), False, 0.5, 256)[0] for i in range(64)]
    payload = [images[i % len(images)] for i in range(count)]
    started = time.perf_counter()
    with open(folder / "own.tfrecord", "wb") as handle:
        for i, image in enumerate(payload):
            handle.write(records.frame(records.encode(image, i % 2, i)))
    own = time.perf_counter() - started
    started = time.perf_counter()
    with tf.io.TFRecordWriter(str(folder / "tf.tfrecord")) as writer:
        for i, image in enumerate(payload):
            example = tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2])),
                "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}))
            writer.write(example.SerializeToString())
    with_tf = time.perf_counter() - started
    sizes = [(folder / name).stat().st_size for name in ("own.tfrecord", "tf.tfrecord")]
    return {"records": count, "mean_image_bytes": round(statistics.mean(map(len, images))),
            "own_us_per_record": round(own / count * 1e6, 1),
            "tf_us_per_record": round(with_tf / count * 1e6, 1),
            "file_bytes_own_vs_tf": sizes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    imports = {"tensorflow": import_cost("tensorflow", args.runs),
               "deepfake_detector.data.records": import_cost("deepfake_detector.data.records", args.runs)}
    print(f"imports: {imports}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        writing = write_cost(args.records, Path(tmp))
        print(f"writing: {writing}", file=sys.stderr)
        project = make_project(Path(tmp) / "project")
        stage = {}
        for size in args.sizes:
            split = {"train": size * 7 // 10, "validation": size * 2 // 10}
            split["test"] = size - split["train"] - split["validation"]
            stage[size] = measure(project, {
                "data.sample.image_size": 256, "preprocess.image_size": 256,
                **{f"data.sample.{k}": v for k, v in split.items()}},
                {"source": "sample", "images": size}, rounds=1, baseline=None)["preprocess"]
            print(f"preprocess at {size}: {stage[size]}", file=sys.stderr)
    tf_import = imports["tensorflow"]["seconds"] - imports["deepfake_detector.data.records"]["seconds"]
    per_record = (writing["tf_us_per_record"] - writing["own_us_per_record"]) * 1e-6
    largest = stage[max(stage)]
    kaggle_seconds = KAGGLE_IMAGES / largest["items_per_second"]
    emit({
        "imports": imports,
        "writing": writing,
        "preprocess_stage": {str(size): result for size, result in stage.items()},
        "tensorflow_extra": {
            **{f"share_of_stage_at_{size}": round((tf_import + per_record * size) / result["wall_seconds"], 3)
               for size, result in stage.items()},
            "kaggle_190k_stage_seconds_extrapolated": round(kaggle_seconds),
            "share_of_stage_at_190k_extrapolated": round(
                (tf_import + per_record * KAGGLE_IMAGES) / kaggle_seconds, 4),
            "extra_main_process_rss_mib": round(
                imports["tensorflow"]["peak_rss_mib"]
                - imports["deepfake_detector.data.records"]["peak_rss_mib"], 1),
        },
    })


if __name__ == "__main__":
    main()
