"""Stage `train`: data/processed/ → models/model.keras, metrics/train.json, training curves.

The model file carries the label map (Real = 0, Fake = 1), the input size and how it was trained, so
that evaluate needs nothing else. Per-epoch loss and AUC go to metrics/train_live/ through dvclive
(its dvc.yaml writing is off: dvc.yaml is written by hand).
"""

from __future__ import annotations

import logging

from deepfake_detector import check_both_classes
from deepfake_detector.core import entrypoint
from deepfake_detector.core.files import write_json
from deepfake_detector.core.params import as_dict, load_section
from deepfake_detector.core.paths import (MODEL, PROCESSED, TRAIN_CHECKPOINT, TRAIN_LIVE, TRAIN_METRICS,
                                          TRAIN_TIMING)

log = logging.getLogger("train")


def main() -> None:
    params = load_section("train")
    numerics = load_section("numerics")
    entrypoint.portable_numerics(numerics.portable, numerics.threads)  # before TensorFlow loads
    from deepfake_detector.training import devices

    devices.load_tensorflow()  # after the checks, and quietly (no CUDA-missing lines on a CPU)
    from deepfake_detector.training import checkpoints, distribute
    from deepfake_detector.model import modelfile
    from deepfake_detector.data import records
    from deepfake_detector.training import fit as training

    # Starting weights first: a missing file or an offline ImageNet download fails before any data.
    strategy = distribute.strategy(params.distribute)  # before other TF work (multi-worker needs that)
    model = training.build_model(params, strategy)
    catalog = records.load_catalog(PROCESSED)
    check_both_classes({split: catalog["splits"][split] for split in ("train", "validation")},
                       str(PROCESSED), "rerun preprocess on a fuller dataset")
    chief = distribute.is_chief()  # multi-worker: only the chief writes outputs and metrics
    checkpoint = TRAIN_CHECKPOINT
    if distribute.is_multi_worker(strategy):
        # Every worker would have to resume from the same epoch, and only the chief writes files.
        log.info("train: multi_worker runs don't resume after a kill (no epoch checkpoints)")
        checkpoint = None
    key = checkpoints.run_key(as_dict(params), PROCESSED) if checkpoint else ""  # hashes the data
    model, metrics = training.fit(PROCESSED, catalog, params, str(TRAIN_LIVE) if chief else None,
                                  model, strategy, checkpoint, key)
    timing = {name: metrics.pop(name) for name in training.TIMING_KEYS}
    if not chief:
        log.info("train: worker %d done (the chief writes the outputs)", distribute.worker_index())
        return
    modelfile.save(model, MODEL, modelfile.ModelMeta.for_training(params, catalog, metrics))
    write_json(TRAIN_METRICS, metrics)
    write_json(TRAIN_TIMING, timing)
    checkpoints.clear(TRAIN_CHECKPOINT)  # only now: a kill before the model file was written resumes
    log.info("train: %s", {**metrics, **timing})


if __name__ == "__main__":
    entrypoint.run(main)
