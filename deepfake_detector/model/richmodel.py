"""A rich-model detector (``train.model: residual_cooc``): fixed noise-residual filters, co-occurrence
histograms of their quantised values, and a logistic regression on those histograms.

Why: on real faces (FFHQ against StyleGAN, both JPEG q75 at 256 px) a from-scratch CNN learns too
slowly on 1,120 images and a 2-core CPU, while steganalysis-style features (Fridrich & Kodovský,
2012, "Rich models for steganalysis"; on colour residuals, Li et al., 2018) separate the classes with
a linear classifier. Every weight but the classifier's is fixed, so training is a convex problem
that converges in a few epochs.

The filters are one non-trainable convolution (so the input-scaling test sees what it receives:
raw [0, 255], the scale the quantisation steps assume): for each of five colour maps (R, G, B, R-G,
B-G) the 1st-, 2nd- and 3rd-order differences along rows and along columns. ``Cooccurrence``
quantises each residual to {-T..T} with its step and counts triples of neighbours along the
residual's direction: (2T+1)^3 bins per residual map, normalised to frequencies.
"""

from __future__ import annotations

import contextlib
import threading

import keras
import numpy as np
import tensorflow as tf
from keras import layers

COLOURS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, -1, 0], [0, -1, 1]], np.float32)  # R G B R-G B-G
ORDERS = {1: [0, 0, -1, 1], 2: [0, 1, -2, 1], 3: [-1, 3, -3, 1]}  # difference taps, 4 long
STEPS = {1: 1.0, 2: 2.0, 3: 3.0}  # quantisation step per order (grey levels)


def residual_kernel() -> tuple[np.ndarray, list[float], list[int]]:
    """A [4, 4, 3, n] kernel: each colour map's differences of each order along rows, then along
    columns; with each output's quantisation step and direction (1 = along width, 0 = along height)."""
    kernels, steps, axes = [], [], []
    for axis in (1, 0):
        for colour in COLOURS:
            for order, taps in ORDERS.items():
                kernel = np.zeros((4, 4, 3), np.float32)
                line = np.array(taps, np.float32)[:, None] * colour[None, :]  # [4, 3]
                if axis == 1:
                    kernel[1, :, :] = line
                else:
                    kernel[:, 1, :] = line
                kernels.append(kernel)
                steps.append(STEPS[order])
                axes.append(axis)
    return np.stack(kernels, axis=-1), steps, axes


_EXPORTABLE = threading.local()


@contextlib.contextmanager
def exportable():
    """Trace ``frequencies`` with ops every export runtime has (for ``export``): TFLite's builtins and
    ONNX have no Bincount, but both have an unsorted segment sum. The counts are the same small
    integers in float32, so the scores are identical; the segment sum is ~3x slower on a CPU, so
    training and evaluate keep the bincount."""
    _EXPORTABLE.on = True
    try:
        yield
    finally:
        _EXPORTABLE.on = False


def frequencies(codes, bins: int):
    """[n, ..., k] integer codes in [0, bins) → [n, k·bins]: each of the k maps' code frequencies per
    image (map-major). One bincount for the whole batch: every (image, map) pair is offset into its
    own bins."""
    batch, k = tf.shape(codes)[0], codes.shape[-1]
    codes = tf.reshape(codes, [batch, -1, k])
    offsets = (tf.range(batch)[:, None, None] * k + tf.range(k)[None, None, :]) * bins
    flat = tf.reshape(codes + offsets, [-1])
    if getattr(_EXPORTABLE, "on", False):
        counts = tf.math.unsorted_segment_sum(tf.ones_like(flat, tf.float32), flat, batch * k * bins)
    else:
        counts = tf.math.bincount(flat, minlength=batch * k * bins, maxlength=batch * k * bins,
                                  dtype=tf.float32)
    return tf.reshape(counts, [batch, k * bins]) / tf.cast(tf.shape(codes)[1], tf.float32)


@keras.saving.register_keras_serializable(package="deepfake_detector")
class Cooccurrence(layers.Layer):
    """[n, h, w, c] residuals → [n, c·(2T+1)^3] frequencies of quantised neighbour triples."""

    def __init__(self, steps, axes, threshold: int = 2, **kwargs):
        kwargs.setdefault("trainable", False)  # nothing to learn: fixed counting
        super().__init__(**kwargs)
        self.steps, self.axes, self.threshold = list(steps), list(axes), int(threshold)

    def call(self, residuals):
        levels = 2 * self.threshold + 1
        bins = levels ** 3
        quantised = tf.clip_by_value(tf.round(residuals / tf.constant(self.steps, residuals.dtype)),
                                     -self.threshold, self.threshold)
        quantised = tf.cast(quantised, tf.int32) + self.threshold
        histograms = []
        for axis in (1, 0):
            picked = [i for i, a in enumerate(self.axes) if a == axis]
            q = tf.gather(quantised, picked, axis=-1)  # [n, h, w, k]
            if axis == 1:
                codes = q[:, :, :-2] * levels * levels + q[:, :, 1:-1] * levels + q[:, :, 2:]
            else:
                codes = q[:, :-2] * levels * levels + q[:, 1:-1] * levels + q[:, 2:]
            histograms.append(frequencies(codes, bins))
        return tf.concat(histograms, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.steps) * (2 * self.threshold + 1) ** 3)

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "axes": self.axes, "threshold": self.threshold}


def features(inputs):
    """[0, 255] RGB → [n, 3750] co-occurrence frequencies of the fixed residuals."""
    kernel, steps, axes = residual_kernel()
    conv = layers.Conv2D(kernel.shape[-1], 4, padding="valid", use_bias=False, trainable=False,
                         name="fixed_residual_filters")
    residuals = conv(inputs)
    conv.set_weights([kernel])
    return Cooccurrence(steps, axes, name="cooccurrence")(residuals)


@keras.saving.register_keras_serializable(package="deepfake_detector")
class SquareRoot(layers.Layer):
    """Power normalisation of frequencies: the square root of each (negatives, which counts never are,
    give 0). It spreads the many small bins that carry a rich model's evidence against a few large
    ones before standardisation."""

    def call(self, frequencies):
        return tf.sqrt(tf.maximum(frequencies, 0.0))


def head(features, l2: float, power: bool = False):
    """(``power``: the square root of each frequency,) standardisation, then a logistic regression
    with L2 ``l2`` on the mean loss."""
    if power:
        features = SquareRoot(name="head_square_root")(features)
    # standardised with the training features' statistics (``standardise``), as for any logistic
    # regression on counts; batch statistics were too noisy on 3,750 sparse bins (Validation 0.71)
    x = layers.Normalization(name="head_standardise")(features)
    return layers.Dense(1, activation="sigmoid", dtype="float32", name="p_fake",
                        kernel_regularizer=keras.regularizers.l2(l2))(x)


def build(inputs, l2: float = 0.04):
    """[0, 255] RGB → P(fake): fixed residuals, co-occurrences, standardisation, logistic regression."""
    return head(features(inputs), l2)


def standardise(head: keras.Model, features: np.ndarray) -> None:
    """Set the head's standardisation to the mean and variance of ``features`` (the training set's);
    a bin that never varies in training gets a small floor, not a division by zero. A ``SquareRoot``
    before it is applied first: the statistics are of what the standardisation receives."""
    for layer in head.layers:
        if isinstance(layer, SquareRoot):
            features = keras.ops.convert_to_numpy(layer(features))
        if isinstance(layer, layers.Normalization):
            layer.adapt_mean.assign(features.mean(axis=0))
            layer.adapt_variance.assign(np.maximum(features.var(axis=0), 1e-8))
            layer.finalize_state()
