"""Stage `train`: data/processed/ → models/model.keras, metrics/train.json, training curves.

The model file carries the label map (Real = 0, Fake = 1), the input size and how it was trained, so
that evaluate needs nothing else. Per-epoch loss and AUC go to metrics/train_live/ through dvclive
(its dvc.yaml writing is off: dvc.yaml is written by hand).
"""

from __future__ import annotations

import logging

from deepfake_detector import check_both_classes, entrypoint
from deepfake_detector.files import write_json
from deepfake_detector.params import as_dict, load_section
from deepfake_detector.paths import MODEL, PROCESSED, TRAIN_LIVE, TRAIN_METRICS

log = logging.getLogger("train")


def main() -> None:
    params = load_section("train")
    from deepfake_detector import modelfile, records, training  # TensorFlow loads after the checks

    # Starting weights first: a missing file or an offline ImageNet download fails before any data.
    model = training.build_model(params)
    catalog = records.load_catalog(PROCESSED)
    check_both_classes({split: catalog["splits"][split] for split in ("train", "validation")},
                       str(PROCESSED), "rerun preprocess on a fuller dataset")
    model, metrics = training.fit(PROCESSED, catalog, params, str(TRAIN_LIVE), model)
    modelfile.save(model, MODEL, meta={
        "model": params.model,
        "image_size": params.image_size,
        **training.inference_rule(params),
        "input": "RGB, float32 in [0, 255], square",
        "stored_image_size": catalog["image_size"],
        "train_params": as_dict(params),
        "train_metrics": metrics,
    })
    write_json(TRAIN_METRICS, metrics)
    log.info("train: %s", metrics)


if __name__ == "__main__":
    entrypoint.run(main)
