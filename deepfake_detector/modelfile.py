"""``models/model.keras`` with what scoring needs travelling inside it.

A ``.keras`` file is a zip (config, weights); Keras ignores members it doesn't know, so the label map,
input size and training facts ride along as one extra JSON member. ``read_meta`` needs no TensorFlow.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from . import CLASS_NAMES
from .errors import UserError
from .files import atomic_path

META_MEMBER = "deepfake_detector.json"


def save(model, path: str | Path, meta: dict) -> None:
    meta = {"class_names": list(CLASS_NAMES), "positive_class": CLASS_NAMES[1],
            "score": "P(fake)", **meta}
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as bundle:
            bundle.writestr(META_MEMBER, json.dumps(meta, indent=2))


def read_meta(path: str | Path) -> dict:
    try:
        with zipfile.ZipFile(path) as bundle:
            meta = json.loads(bundle.read(META_MEMBER))
    except FileNotFoundError:
        raise UserError(f"{path}: no such model file; train one with `dvc repro train`") from None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError):
        raise UserError(f"{path} is not a deepfake-detector model (.keras with {META_MEMBER}); "
                        "train one with `dvc repro train`") from None
    if meta.get("class_names") != list(CLASS_NAMES):
        raise UserError(f"{path}: label map {meta.get('class_names')} is not {list(CLASS_NAMES)}; "
                        "retrain the model with this version")
    return meta


def load(path: str | Path):
    """(keras model, meta dict)."""
    import keras

    meta = read_meta(path)
    return keras.models.load_model(path, compile=False), meta
