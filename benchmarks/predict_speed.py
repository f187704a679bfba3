"""How fast `deepfake-detector predict` scores: latency, throughput, and the 1,000-crop goal.

    python benchmarks/predict_speed.py [--model-name mobilenet_v3_small] [--image-size 128] [--crops 1000]

Builds the model of params.yaml (untrained: speed does not depend on the weights) into a temp model
file, then measures in one process, so every figure has its reference from the same run:

* ``bare_predict_on_batch_images_per_second``: ``model.predict_on_batch`` on ready float32 batches
  of 64, the model's own rate (the reference of issue 14);
* ``scorer``: ``inference.Scorer.score`` on the same images (uint8 in, one tf.function): its ratio to
  the bare rate (the two interleaved, ``harness.alternate``), and both rates;
* ``throughput_by_batch``: images/s of ``Scorer.score`` per batch size;
* ``latency_ms``: one image, model only (``Scorer.score``), and end to end (``predict.predict`` on one
  640x360 JPEG: read, decode, detect faces, crop, resize, score, rows), medians;
* ``no_detect_1000_crops``: ``predict.predict(folder, --no-detect)`` on a folder of ``--crops`` JPEG face
  crops at 224 px (the shared real faces when /work/shared/data/faces140k-sample.zip exists, else
  photo-like images), seconds after the model is loaded (goal: <= 5 s), and its ratio to the bare
  model's rate on as many images (interleaved); plus the whole CLI run in a subprocess (start, imports, load
  included) for reference.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import alternate, check, emit, machine, median_seconds, model_arguments, \
    project_env, ratio_to, untrained_model

import cv2
import numpy as np

REFERENCE = "the model's bare predict_on_batch on float32 batches of 64, same run"
REAL_FACES = Path("/work/shared/data/faces140k-sample.zip")


def crop_files(folder: Path, count: int, side: int = 224) -> str:
    """``count`` JPEG face crops at ``side`` px in ``folder``; returns where they came from."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    if REAL_FACES.exists():
        with zipfile.ZipFile(REAL_FACES) as bundle:
            names = sorted(n for n in bundle.namelist() if n.lower().endswith(".jpg"))[:count]
            sources = [cv2.imdecode(np.frombuffer(bundle.read(n), np.uint8), cv2.IMREAD_COLOR) for n in names]
    rng = np.random.default_rng(0)
    for i in range(count):
        if i < len(sources):
            image = cv2.resize(sources[i], (side, side), interpolation=cv2.INTER_AREA)
        else:
            coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
            image = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return "faces140k-sample" if sources else "generated photo-like images"


def scene(path: Path) -> None:
    """A 640x360 JPEG with one real face (Grace Hopper, shipped with matplotlib) on clutter."""
    from matplotlib import cbook

    portrait = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    canvas = np.full((360, 640, 3), 90, np.uint8)
    canvas[20:340, 200:473] = cv2.resize(portrait, (273, 320), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])


def main() -> None:
    parser = model_arguments(__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=1000)
    args = parser.parse_args()

    from deepfake_detector.apps import faces
    from deepfake_detector.model import inference
    from deepfake_detector.apps import predict

    work = Path(tempfile.mkdtemp(prefix="predict_speed."))
    model_path = untrained_model(work, args.model_name, args.image_size)
    started = time.perf_counter()
    scorer = inference.Scorer.load(model_path)
    load_seconds = time.perf_counter() - started
    size = args.image_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (512, size, size, 3), dtype=np.uint8)
    floats = images.astype(np.float32)
    batches = [floats[i:i + 64] for i in range(0, len(floats), 64)]

    scorer.model.predict_on_batch(batches[0])  # warm-up: both paths trace once
    scorer.score(images[:64])
    def bare_model(count: int = len(images)) -> int:
        for start in range(0, count, 64):
            scorer.model.predict_on_batch(floats[start:min(start + 64, count)])
        return count

    runs = alternate({"bare": bare_model, "scorer": lambda: len(scorer.score(images, 64))}, 7)
    scorer_speed = ratio_to(runs["bare"], runs["scorer"], REFERENCE)
    throughput = {}
    for batch in (1, 8, 32, 64, 128):
        count = min(len(images), max(batch * 4, 64))
        throughput[batch] = round(count / median_seconds(lambda: scorer.score(images[:count], batch), 3), 1)

    options = predict.Options(threshold=0.5, finder=faces.FaceFinder(), margin=faces.DEFAULT_MARGIN)
    scene(work / "scene.jpg")
    predict.predict([work / "scene.jpg"], scorer, options, progress=False)  # warm-up
    frame = cv2.cvtColor(cv2.imread(str(work / "scene.jpg")), cv2.COLOR_BGR2RGB)
    latency = {
        "model_only_one_image": round(median_seconds(lambda: scorer.score(images[:1]), 30) * 1e3, 2),
        "bare_predict_on_batch_one_image": round(
            median_seconds(lambda: scorer.model.predict_on_batch(floats[:1]), 30) * 1e3, 2),
        "end_to_end_640x360_with_detection": round(median_seconds(
            lambda: predict.predict([work / "scene.jpg"], scorer, options, progress=False), 15) * 1e3, 2),
        "face_detection_640x360": round(median_seconds(
            lambda: options.finder.boxes(frame), 15) * 1e3, 2),
    }

    source = crop_files(work / "crops", args.crops)
    no_detect = predict.Options(threshold=0.5, finder=None, margin=0.0)
    crops_total = min(args.crops, len(images))  # the bare model scores as many from memory

    def crops_predicted() -> int:
        rows = predict.predict([work / "crops"], scorer, no_detect, progress=False)
        check("predict --no-detect", {"files": sum(r["kind"] == "file" for r in rows)}, {"files": args.crops})
        return args.crops

    crop_runs = alternate({"bare": lambda: sum(bare_model(min(crops_total, args.crops - done))
                                               for done in range(0, args.crops, crops_total)),
                           "predict": crops_predicted}, 3)
    crops = ratio_to(crop_runs["bare"], crop_runs["predict"], REFERENCE)
    crops_seconds = statistics.median(r["wall_seconds"] for r in crop_runs["predict"])
    crops_cpu = statistics.median(r["cpu_seconds"] for r in crop_runs["predict"])
    command = [str(Path(sys.executable).parent / "deepfake-detector"), "predict", str(work / "crops"),
               "--no-detect", "--threshold", "0.5", "--model", str(model_path),
               "--output", str(work / "out.csv")]
    started = time.perf_counter()
    cli = subprocess.run(command, env=project_env(), capture_output=True, text=True)
    cli_seconds = time.perf_counter() - started
    if cli.returncode:
        sys.exit(cli.stderr)

    emit({
        "model": args.model_name, "image_size": size, "parameters": int(scorer.model.count_params()),
        "machine": machine(), "load_seconds": round(load_seconds, 2),
        "scorer": scorer_speed,
        "throughput_by_batch": throughput,
        "latency_ms": latency,
        "no_detect_1000_crops": {
            "crops": args.crops, "side": 224, "source": source,
            "seconds_after_model_load": round(crops_seconds, 2),
            "cpu_seconds_all_threads": round(crops_cpu, 2),
            "goal_seconds": 5.0,
            "ratio": crops,
            "cli_wall_seconds_including_start_and_load": round(cli_seconds, 2),
        },
    })


if __name__ == "__main__":
    main()
