"""Grad-CAM for ``predict --explain DIR``: where the model looked, as a heatmap over each scored crop.

The feature map is the output of the model's last convolution block (the last layer with a spatial
output at or after the last convolution, found from the model, inside a nested backbone too). The
gradient is taken of the score's logit (the sigmoid head's input), not of P(fake): a confident
sigmoid saturates and its gradient vanishes. Each heatmap shows the evidence for the label the
crop got: for Fake, where the logit rises; for Real, where it falls (the gradient of minus the
logit). Heatmaps of a whole batch come from one ``tf.function`` call, and the P(fake) it computes on
the way is the model's own.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import cv2
import numpy as np

from deepfake_detector import CLASS_NAMES
from deepfake_detector.core.errors import UserError
from deepfake_detector.core.files import atomic_open, atomic_path
from deepfake_detector.model.inference import Scorer

OVERLAY_ALPHA = 0.45  # heatmap weight over the crop
INDEX_FILE = "explain.csv"


def _is_conv(layer) -> bool:
    from keras import layers

    return isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D))


def _last_feature_layer(model):
    """The last layer with a [n, h, w, c] output at or after the last convolution of ``model``
    (not looking inside nested models), or None."""
    convs = [i for i, layer in enumerate(model.layers) if _is_conv(layer)]
    spatial = [i for i, layer in enumerate(model.layers)
               if convs and i >= convs[-1] and len(layer.output.shape) == 4]
    return model.layers[spatial[-1]] if spatial else None


def split_model(model):
    """(a Keras model: images → (feature map, the head's input), the head (the last layer), the
    feature map's layer name)."""
    import keras

    if any(type(layer).__name__ == "Cooccurrence" for layer in model.layers):  # residual_cooc
        raise UserError(f"{model.name}: its score counts quantised residuals, which no gradient passes, "
                        "so --explain (Grad-CAM) cannot show where it looked; run predict without --explain")
    head = model.layers[-1]
    features = _last_feature_layer(model)
    if features is not None:
        return keras.Model(model.inputs, [features.output, head.input]), head, features.name
    # a nested backbone (xception): rebuild the top-level chain with the backbone split inside it
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    inner = _last_feature_layer(nested[-1]) if nested else None
    if inner is None:
        raise UserError(f"{model.name}: no convolution layer found, so --explain (Grad-CAM) cannot "
                        "show where the model looked; run predict without --explain")
    backbone = keras.Model(nested[-1].inputs, [inner.output, nested[-1].output])
    x = inputs = keras.Input(model.input_shape[1:])
    for layer in model.layers[1:-1]:
        if layer is nested[-1]:
            feature_map, x = backbone(x)
        else:
            x = layer(x)
    split = keras.Model(inputs, [feature_map, x])
    probe = np.random.default_rng(0).uniform(0, 255, (1, *model.input_shape[1:])).astype("float32")
    if not np.allclose(head(split(probe)[1]), model(probe), atol=1e-5):  # the top level was no chain
        raise UserError(f"{model.name}: its layers around the nested backbone are not a simple chain, so "
                        "--explain (Grad-CAM) cannot split it; run predict without --explain")
    return split, head, f"{nested[-1].name}/{inner.name}"


class GradCam:
    """``heatmaps(images, fake)``: uint8 [n, s, s, 3] and bool [n] (the evidence for Fake, or for
    Real) → (float32 [n, s, s] in [0, 1], P(fake) [n])."""

    def __init__(self, scorer: Scorer):
        import keras
        import tensorflow as tf

        split, head, self.feature_layer = split_model(scorer.model)
        sigmoid_head = (isinstance(head, keras.layers.Dense) and head.units == 1
                        and head.activation is keras.activations.sigmoid)
        size = scorer.image_size

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8),
                                      tf.TensorSpec([None], tf.bool)])
        def heatmaps(images, fake):
            x = tf.cast(images, tf.float32)  # the model's input rule, as Scorer applies it
            with tf.GradientTape() as tape:
                tape.watch(x)
                feature_map, head_input = split(x, training=False)
                if sigmoid_head:
                    logit = tf.matmul(tf.cast(head_input, head.kernel.dtype), head.kernel) + head.bias
                else:  # any other head: its output is the score itself
                    logit = head(head_input, training=False)
                toward = tf.reshape(logit, [-1]) * tf.where(fake, 1.0, -1.0)
            weights = tf.reduce_mean(tape.gradient(toward, feature_map), axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1))[..., None]
            cam = cam / tf.maximum(tf.reduce_max(cam, axis=(1, 2, 3), keepdims=True), 1e-12)
            scores = tf.sigmoid(logit) if sigmoid_head else logit
            return tf.image.resize(cam, (size, size))[..., 0], tf.reshape(scores, [-1])

        self._heatmaps = heatmaps

    def heatmaps(self, images: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cams, scores = self._heatmaps(images, np.asarray(fake, bool))
        return np.clip(cams.numpy(), 0, 1), scores.numpy().astype(float)


def overlay(rgb: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The crop with the heatmap (JET colours: red = most weight) blended over it; BGR for OpenCV."""
    colours = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), 1 - OVERLAY_ALPHA, colours, OVERLAY_ALPHA, 0)


class Writer:
    """Collects predict's scored crops and writes one PNG per crop into ``folder`` (in batches, one
    Grad-CAM call each), named ``<file number>_<file stem>[_frame<n>]_<crop n>.png``, and
    ``explain.csv`` listing each PNG with its file, frame, box, P(fake) and label (at ``threshold``:
    the heatmap shows the evidence for that label)."""

    def __init__(self, scorer: Scorer, folder: Path, threshold: float, batch_size: int = 64,
                 cam: GradCam | None = None):
        self.folder, self.threshold, self.batch_size = Path(folder), threshold, batch_size
        self.folder.mkdir(parents=True, exist_ok=True)
        self._cam = cam or GradCam(scorer)  # serve passes its own: built once, traced once
        self._numbers: dict[str, int] = {}
        self._pending: list[tuple[str, dict, np.ndarray]] = []
        self.rows: list[dict] = []

    def add(self, file: Path, frame: int | None, crops, scores) -> None:
        number = self._numbers.setdefault(str(file), len(self._numbers) + 1)
        stem = re.sub(r"[^\w.-]+", "_", Path(file).stem)[:60]
        for k, (crop, score) in enumerate(zip(crops, scores), 1):
            name = f"{number:04d}_{stem}{'' if frame is None else f'_frame{frame}'}_{k}.png"
            row = {"png": name, "file": str(file), "frame": frame, "box": ",".join(map(str, crop.box)),
                   "face": crop.face, "p_fake": float(score),
                   "label": CLASS_NAMES[int(score >= self.threshold)]}
            self._pending.append((name, row, crop.pixels))
        if len(self._pending) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        cams, _ = self._cam.heatmaps(np.stack([pixels for _, _, pixels in self._pending]),
                                     [row["label"] == CLASS_NAMES[1] for _, row, _ in self._pending])
        for (name, row, pixels), heat in zip(self._pending, cams):
            with atomic_path(self.folder / name, suffix=".png") as tmp:
                if not cv2.imwrite(str(tmp), overlay(pixels, heat)):
                    raise UserError(f"{self.folder / name}: cannot write the PNG; check the folder")
            self.rows.append(row)
        self._pending.clear()

    def close(self) -> Path:
        self._flush()
        index = self.folder / INDEX_FILE
        with atomic_open(index, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle,
                                    fieldnames=["png", "file", "frame", "box", "face", "p_fake", "label"],
                                    lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows)
        return index
