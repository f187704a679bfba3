"""For a user with a GPU: does this machine train fast, and does the input pipeline keep up?

Prints one JSON object (and writes it to ``--out``, default ``gpu_check.json``):

* ``device``: what TensorFlow trains on, and whether mixed precision and XLA are on (as ``fit`` sets them);
* ``model_images_per_second``: training steps of ``train.model`` on ready batches held on the device
  (no input pipeline), steady state after a warm-up;
* ``feed``: ``feed.feed_rate`` on ``data/processed`` (the dataset ``fit`` reads, no model):
  first epoch and steady img/s, as ``benchmarks/feed_speed.py`` measures it;
* ``feed_keeps_up``: steady feed rate >= model rate (otherwise the accelerator waits on the CPU).

Run after `dvc repro preprocess`: ``.venv/bin/python benchmarks/gpu_check.py [--steps 30]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deepfake_detector.training import devices
from deepfake_detector.core.params import load_section
from deepfake_detector.core.paths import PROCESSED


def model_rate(params, steps: int) -> float:
    """Training img/s of the model alone: one random batch, repeated on the device."""
    import keras
    import numpy as np

    tf = devices.load_tensorflow()
    from deepfake_detector.model import builders as models

    model = models.build(params.model, params.image_size, "none")
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss="binary_crossentropy",
                  jit_compile=bool(devices.gpus()))
    rng = np.random.default_rng(0)
    images = rng.uniform(
        0, 255, (params.batch_size, params.image_size, params.image_size, 3)).astype("float32")
    labels = (rng.random(params.batch_size) < 0.5).astype("float32")
    batches = tf.data.Dataset.from_tensors((images, labels)).repeat()
    model.fit(batches, steps_per_epoch=3, epochs=1, verbose=0)  # trace, compile, warm up
    start = time.perf_counter()
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * params.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--feed-epochs", type=int, default=3, help="epochs of the feed (>= 2)")
    parser.add_argument("--out", default="gpu_check.json")
    args = parser.parse_args()
    params = load_section("train")
    devices.load_tensorflow()
    from deepfake_detector.data import records
    from deepfake_detector.training import feed

    mixed = devices.use_mixed_precision(params.mixed_precision)
    result = {"device": devices.device_name(), "mixed_precision": mixed, "xla": bool(devices.gpus()),
              "model": params.model, "image_size": params.image_size, "batch_size": params.batch_size,
              "machine": devices.machine_facts(params.deterministic)}
    result["model_images_per_second"] = round(model_rate(params, args.steps), 1)
    if (PROCESSED / "records.json").is_file():
        result["feed"] = feed.feed_rate(PROCESSED, records.load_catalog(PROCESSED), params, args.feed_epochs)
        result["feed_keeps_up"] = (result["feed"]["steady_images_per_second"]
                                   >= result["model_images_per_second"])
    else:
        result["feed"] = f"{PROCESSED} not found: run `dvc repro preprocess` first"
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
