"""The one way an image becomes a score: decode, optional face crop, resize, the model's rule, batches.

The evaluate stage, predict (and watch and serve after it) all score through this module, and every
path ends in ``pixels.decode_image`` and ``pixels.resize_image``, the functions training's tf.data
pipeline uses: the model sees at inference exactly the pixels it was trained on.

* ``Scorer.load(path)``: the model file, its metadata and the rule it needs (``Scorer.model`` is the
  Keras model, for Grad-CAM and export).
* ``decode(data)``: file bytes → RGB uint8, or ``Unreadable`` with a reason, checked from the header
  before any pixel exists (the pixel cap).
* ``crops(rgb, finder, margin, size)``: the face crops a finder (``faces.FaceFinder``) sees (none
  when it sees no face), or the whole image when there is no finder, each resized to the model's input.
* ``Scorer.score(images)``: P(fake) of a stack of model-sized images, in batches through one
  ``tf.function`` (never ``model(x)`` per image); ``Scorer.score_records`` for the stored records.
* The decision threshold travels beside the model (``<model>.threshold.json``, written by evaluate)
  with the sha256 of the model file it was chosen for; ``read_threshold`` refuses a mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake_detector.data import images
from deepfake_detector.model import modelfile
from deepfake_detector.core import paths
from deepfake_detector.data import pixels, records
from deepfake_detector.core.errors import UserError
from deepfake_detector.core.files import read_json, sha256_file, write_json

MAX_PIXELS = 50_000_000  # the preprocess default: larger images are refused from their header
BATCH_SIZE = 64  # images per model call, unless a caller says otherwise


class Unreadable(Exception):
    """A file that cannot be scored; ``reason`` is one token (images.SKIP_REASONS, or a video's)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason


def decode(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Image file bytes → RGB uint8 [h, w, 3] through training's decoder; raises ``Unreadable``.

    BMP, and any non-JPEG TensorFlow refuses, is decoded by Pillow instead, as preprocess decodes
    every file it converts: TensorFlow reads 8-bit palette BMPs as grey levels and refuses 1-bit ones.
    """
    import tensorflow as tf

    header = images.read_header(data, max_pixels, pixels.SCORED_FORMATS)
    if header.skip:
        raise Unreadable(header.skip, f"{header.format or 'file'} {header.width}x{header.height}"
                         if header.skip == "too_large" else "")
    error: Exception | None = None
    rgb = None
    if header.format != "BMP":
        try:
            rgb = pixels.decode_image(data).numpy()
        except tf.errors.InvalidArgumentError as exc:
            error = exc
    if rgb is None and header.format not in ("JPEG", "MPO"):
        try:
            rgb = images.pillow_rgb(header.image)
        except Exception as exc:
            error = exc
    if rgb is None:
        raise Unreadable(images.failure_reason(data, error))
    return upright(rgb, header.image.getexif().get(0x0112, 1))


# EXIF orientation → the pixel reordering that shows the photo upright (Pillow's exif_transpose)
_UPRIGHT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
            5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
            7: lambda a: np.rot90(a, 2).transpose(1, 0, 2), 8: lambda a: np.rot90(a, 1)}


def upright(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """A phone photo as it is shown (faces upright for the detector): lossless, pixels only move."""
    turn = _UPRIGHT.get(orientation)
    return np.ascontiguousarray(turn(rgb)) if turn else rgb


def fit(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [h, w, 3] → uint8 [size, size, 3] through training's resize (untouched if already so)."""
    if image.shape[:2] == (size, size):
        return image
    return pixels.resize_image(image, size).numpy()


@dataclass
class Crop:
    box: tuple[int, int, int, int]  # (x, y, w, h) in the source image's pixels
    face: bool  # a detected face (False: the whole image, centre square)
    pixels: np.ndarray  # uint8 [size, size, 3], what the model scores


def crops(rgb: np.ndarray, finder, margin: float, size: int) -> list[Crop]:
    """Each face ``finder`` finds, as a square grown by ``margin`` (``finder.squares``); with no
    finder, the whole image's centre square (the input is a face crop). A finder that finds no face
    gives no crop: a picture without a face gets no verdict, never a guess from the whole scene."""
    if finder is None:
        squares, found = [images.centre_square(*rgb.shape[:2])], False  # as preprocess squares photos
    else:
        squares, found = finder.squares(rgb, margin), True
    return [Crop((x, y, w, h), found, fit(rgb[y:y + h, x:x + w], size)) for x, y, w, h in squares]


class Scorer:
    """A loaded detector: ``score`` maps model-sized uint8 images to P(fake)."""

    def __init__(self, path: Path, model, meta: modelfile.ModelMeta, sha256: str):
        import tensorflow as tf

        self.path, self.model, self.meta, self.sha256 = Path(path), model, meta, sha256
        self.image_size = meta.image_size
        self.native_only = meta.native_crops_only()
        spec = tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.uint8)
        # One trace for every batch size; the uint8 → float32 [0, 255] cast is the model's input rule
        # (modelfile.RULES says what each rule means).
        if meta.inference == "patch_grid":
            self._predict = tf.function(lambda x: patch_grid_scores(model, tf.cast(x, tf.float32),
                                                                    meta.patch_size),
                                        input_signature=[spec])
        else:
            self._predict = tf.function(lambda x: model(tf.cast(x, tf.float32), training=False),
                                        input_signature=[spec])

    @classmethod
    def load(cls, path: str | Path) -> "Scorer":
        path = Path(path)
        meta = modelfile.read_meta(path)  # every metadata check, before TensorFlow loads the weights
        sha256 = sha256_file(path)  # of the bytes loaded next, to match the threshold's model
        model = modelfile.load_keras(path, meta)
        return cls(path, model, meta, sha256)

    def score(self, images: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """uint8 [n, size, size, 3] → float64 [n] of P(fake)."""
        if len(images) == 0:
            return np.zeros(0)
        parts = [self._predict(images[start:start + batch_size]).numpy().reshape(-1)
                 for start in range(0, len(images), batch_size)]
        return np.concatenate(parts).astype(float)

    def score_records(self, files: list[str], stored_size: int, batch_size: int):
        """The records in ``files`` → DataFrame(index, label, score), in record order."""
        import pandas as pd
        import tensorflow as tf

        resize_to = self.image_size if self.image_size != stored_size else None
        data = records.decoded_dataset(files, resize_to).batch(batch_size).prefetch(tf.data.AUTOTUNE)
        frames = [pd.DataFrame({"index": indices.numpy(), "label": labels.numpy().astype(int),
                                "score": self._predict(batch).numpy().reshape(-1).astype(float)})
                  for batch, labels, indices in data]
        return pd.concat(frames, ignore_index=True)


def native_rule(scorer: Scorer) -> str | None:
    """For a model that scores only un-resized crops of its input size (``Scorer.native_only``), the
    rule in words, as predict's error rows, watch's refusal and the CLI's note give it; else None."""
    if not scorer.native_only:
        return None
    size = scorer.image_size
    return (f"{scorer.path} ({scorer.meta.model}) reads pixel-level traces of un-resized {size}x{size} "
            f"face crops, as it was trained; give {size}x{size} face crops (no face detection or resizing "
            "is done for it), or use a model trained with the default recipe")


def patch_grid_scores(model, images, patch_size: int):
    """float32 [n, size, size, 3] → [n, 1] P(fake): the sigmoid of the mean logit of the grid of
    ``patch_size`` squares (a remainder strip at the right and bottom edges is left out)."""
    import tensorflow as tf

    side = [1, patch_size, patch_size, 1]
    tiles = tf.image.extract_patches(images, side, side, [1, 1, 1, 1], "VALID")
    grid = tf.shape(tiles)[1] * tf.shape(tiles)[2]
    scores = model(tf.reshape(tiles, [-1, patch_size, patch_size, 3]), training=False)
    scores = tf.clip_by_value(tf.cast(scores, tf.float32), 1e-7, 1 - 1e-7)
    logits = tf.reshape(tf.math.log(scores) - tf.math.log1p(-scores), [-1, grid])
    return tf.sigmoid(tf.reduce_mean(logits, axis=1, keepdims=True))


def threshold_path(model_path: str | Path) -> Path:
    return Path(f"{model_path}{paths.THRESHOLD_SUFFIX}")


def write_threshold(scorer: Scorer, threshold: float, details: dict) -> Path:
    """Beside the model: the threshold and the sha256 of the model file it was chosen for."""
    path = threshold_path(scorer.path)
    write_json(path, {"threshold": threshold, "model_sha256": scorer.sha256, **details})
    return path


def saved_evaluation(scorer: Scorer) -> dict:
    """What evaluate wrote beside the model (threshold, rule, the Validation and Test figures), when
    it was written for this very file; else {}."""
    try:
        saved = read_json(threshold_path(scorer.path))
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) and saved.get("model_sha256") == scorer.sha256 else {}


def provenance_warning(scorer: Scorer) -> str | None:
    """One line for a model trained on the built-in generated sample, whose scores say nothing about
    real photos (0.51-0.58 ROC-AUC on real faces, measured); else None."""
    if not scorer.meta.trained_on_sample():
        return None
    return (f"warning: {scorer.path} was trained on the built-in generated sample (data.source: sample): "
            "its scores on real photos mean nothing; train it on real faces first (README, \"Real data\")")


def load_scorer(model: str | Path, threshold: float | None = None) -> tuple[Scorer, float]:
    """(the scorer of ``model``, the decision threshold: ``threshold`` when given, else the one
    evaluate chose on Validation for this very file): what predict, watch and serve start from."""
    scorer = Scorer.load(model)
    return scorer, threshold if threshold is not None else read_threshold(scorer)


def read_threshold(scorer: Scorer) -> float:
    """The threshold evaluate chose for exactly this model file; one-line refusal otherwise."""
    path = threshold_path(scorer.path)
    fix = "run `dvc repro evaluate` to choose it on Validation, or pass --threshold"
    try:
        saved = read_json(path)
    except FileNotFoundError:
        raise UserError(f"{scorer.path}: no decision threshold ({path} not found); {fix}") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({exc}); {fix}") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("threshold"), (int, float)):
        raise UserError(f"{path}: no threshold in it; {fix}")
    value = saved["threshold"]
    if isinstance(value, bool) or not 0.0 <= value <= 1.0:  # also nan: a P(fake) cut-off is in [0, 1]
        raise UserError(f"{path}: threshold {value!r} is not a probability in [0, 1]; {fix}")
    if saved.get("model_sha256") != scorer.sha256:
        raise UserError(f"{path} was chosen for another model file than {scorer.path} (sha256 "
                        f"{str(saved.get('model_sha256'))[:12]}, this one {scorer.sha256[:12]}); {fix}")
    return float(saved["threshold"])
