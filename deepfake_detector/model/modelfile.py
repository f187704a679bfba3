"""``models/model.keras`` with what scoring needs travelling inside it.

A ``.keras`` file is a zip (config, weights); Keras ignores members it doesn't know, so the label map,
input size and training facts ride along as one extra JSON member. ``read_meta`` needs no TensorFlow.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

from deepfake_detector import CLASS_NAMES
from deepfake_detector.core.entrypoint import load_tensorflow
from deepfake_detector.core.errors import UserError
from deepfake_detector.core.files import atomic_path

META_MEMBER = "deepfake_detector.json"


def save(model, path: str | Path, meta: dict) -> None:
    meta = {"class_names": list(CLASS_NAMES), "positive_class": CLASS_NAMES[1],
            "score": "P(fake)", **meta}
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as bundle:
            bundle.writestr(META_MEMBER, json.dumps(meta, indent=2))


def _unusable(path, why: str) -> UserError:
    why = " ".join(why.split())
    why = why if len(why) <= 160 else why[:157] + "..."
    return UserError(f"{path} is not a usable model ({why}); retrain it with `dvc repro train`")


def read_meta(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such model file; train one with `dvc repro train`")
    if not path.is_file():
        raise _unusable(path, "not a file")
    try:
        with zipfile.ZipFile(path) as bundle:
            meta = json.loads(bundle.read(META_MEMBER))
    except KeyError:
        raise _unusable(path, f"no {META_MEMBER} inside: not a deepfake-detector model") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
        # ValueError covers bad JSON and undecodable bytes; zlib/EOF a truncated member.
        raise _unusable(path, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(meta, dict):
        raise _unusable(path, f"{META_MEMBER} holds {type(meta).__name__}, not an object")
    if meta.get("class_names") != list(CLASS_NAMES):
        raise UserError(f"{path}: label map {meta.get('class_names')} is not {list(CLASS_NAMES)}; "
                        "retrain the model with this version")
    size = meta.get("image_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise _unusable(path, f"image_size {size!r} in {META_MEMBER} is not a positive integer")
    return meta


def load(path: str | Path):
    """(keras model, meta dict); a ``UserError`` with one line for any file that isn't a usable model."""
    meta = read_meta(path)
    load_tensorflow()  # after the cheap checks: a missing or broken file fails before TensorFlow loads
    import keras

    from deepfake_detector.model import jpegmodel, richmodel  # noqa: F401 (registers their custom layers for loading)

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise _unusable(path, f"Keras cannot load it: {type(exc).__name__}: {exc}") from None
    size = meta["image_size"]
    inputs, outputs = model.input_shape, model.output_shape
    if (not isinstance(inputs, tuple) or len(inputs) != 4 or inputs[3] != 3
            or any(side not in (None, size) for side in inputs[1:3])):
        raise _unusable(path, f"input shape {inputs} does not take {size}x{size} RGB images")
    if not isinstance(outputs, tuple) or outputs[-1] != 1:
        raise _unusable(path, f"output shape {outputs} is not one score per image")
    return model, meta
