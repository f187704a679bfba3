"""JPEG-domain features (``train.model: rich_dct``): the decoded image's 8x8 block DCT on the JPEG grid,
divided by the quality-75 quantisation table, so each value is close to the quantised coefficient the
file stored; then statistics of those coefficients, and the same of the chroma (Cb, Cr), appended
to ``residual_cooc``'s co-occurrences.

Why: every image of the shared real-face set was JPEG-compressed at quality 75 after it was made, so
the stored coefficients are what the generator's output became; GAN images differ in the DCT domain
(Frank et al., 2020), and the JPEG rich model's coefficient histograms and co-occurrences are the
steganalysis features for that domain (Kodovský & Fridrich, 2012). Measured on the shared set, they
add about 0.02 of ROC-AUC to the residual co-occurrences in 5-fold cross-validation on Train (see
docs/results.md, "The `real_faces` recipe"; the README keeps a short version).

The transform is one fixed strided convolution: the luma weights, the 64 DCT basis images and the
division by the table are folded into its kernel, and its bias removes JPEG's level shift of 128. An
image whose top-left corner is not the JPEG grid's (a crop) gets blocks that straddle the grid.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from deepfake_detector.model import richmodel

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # JFIF's Y from R, G, B
LUMA_TABLE = np.array([  # JPEG Annex K luminance table (quality 50)
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], np.float32)


def quantisation_table(quality: int = 75) -> np.ndarray:
    """libjpeg's luminance table at ``quality`` (``jpeg_quality_scaling``)."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((LUMA_TABLE * scale + 50) / 100), 1, 255)


def dct_matrix() -> np.ndarray:
    """The orthonormal 8-point DCT-II matrix C (``C @ block @ C.T`` is JPEG's and ``cv2.dct``'s 2-D DCT)."""
    k = np.arange(8)
    matrix = np.sqrt(2 / 8) * np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16)
    matrix[0] /= np.sqrt(2)
    return matrix


def _quantised_basis(table: np.ndarray) -> np.ndarray:
    """[8, 8, 8, 8]: pixel (i, j) → coefficient (u, v) of the 8x8 block DCT, divided by ``table``."""
    return np.einsum("ui,vj->ijuv", dct_matrix(), dct_matrix()) / table


def block_dct_kernel(quality: int = 75) -> tuple[np.ndarray, np.ndarray]:
    """(kernel [8, 8, 3, 64], bias [64]) of the convolution RGB in [0, 255] → luma DCT coefficients
    divided by the quantisation table; output channel u·8 + v is frequency (row u, column v)."""
    table = quantisation_table(quality)
    basis = _quantised_basis(table)
    kernel = basis.reshape(8, 8, 1, 64) * LUMA_WEIGHTS[None, None, :, None]
    bias = np.zeros(64, np.float32)
    bias[0] = -128 * 8 / table[0, 0]  # the level shift only moves DC (8 x mean)
    return kernel.astype(np.float32), bias


@keras.saving.register_keras_serializable(package="deepfake_detector")
class CoefficientStatistics(layers.Layer):
    """[n, h/8, w/8, 64] coefficients → per-frequency histograms of the rounded AC coefficients in
    {-T..T} (63·(2T+1)), and co-occurrences of their magnitudes min(|c|, P) between neighbouring
    blocks (same frequency, along rows and columns: 2·63·(P+1)²) and between neighbouring
    frequencies of a block (along u and v: 2·56·(P+1)²), as frequencies."""

    def __init__(self, threshold: int = 5, pair_threshold: int = 3, **kwargs):
        kwargs.setdefault("trainable", False)  # nothing to learn: fixed counting
        super().__init__(**kwargs)
        self.threshold, self.pair_threshold = int(threshold), int(pair_threshold)

    def call(self, coefficients):
        rounded = tf.cast(tf.round(coefficients), tf.int32)
        ac = rounded[..., 1:]
        parts = [richmodel.frequencies(tf.clip_by_value(ac, -self.threshold, self.threshold) + self.threshold,
                                       2 * self.threshold + 1)]
        levels = self.pair_threshold + 1
        magnitude = tf.minimum(tf.abs(ac), self.pair_threshold)
        parts.append(richmodel.frequencies(magnitude[:, :, :-1] * levels + magnitude[:, :, 1:], levels ** 2))
        parts.append(richmodel.frequencies(magnitude[:, :-1] * levels + magnitude[:, 1:], levels ** 2))
        blocks = tf.minimum(tf.abs(rounded), self.pair_threshold)
        blocks = tf.reshape(blocks, tf.concat([tf.shape(blocks)[:3], [8, 8]], 0))
        along_v = blocks[..., :, :-1] * levels + blocks[..., :, 1:]  # [n, bh, bw, 8, 7]
        along_u = blocks[..., :-1, :] * levels + blocks[..., 1:, :]  # [n, bh, bw, 7, 8]
        for pairs in (along_v, along_u):
            parts.append(richmodel.frequencies(tf.reshape(pairs, tf.concat([tf.shape(pairs)[:3], [56]], 0)),
                                               levels ** 2))
        return tf.concat(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        levels = self.pair_threshold + 1
        return (input_shape[0], 63 * (2 * self.threshold + 1) + (2 * 63 + 2 * 56) * levels ** 2)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold, "pair_threshold": self.pair_threshold}


# the chroma table every image of the shared real-face set carries (read from its files; their encoder
# scaled Annex K's chroma table for quality 75 with its own rounding), and JFIF's Cb, Cr from R, G, B
CHROMA_TABLE_Q75 = np.array([[8, 9, 12, 24] + [50] * 4, [9, 11, 13, 33] + [50] * 4, [12, 13, 28] + [50] * 5,
                             [24, 33] + [50] * 6] + [[50] * 8] * 4, np.float32)
CHROMA_WEIGHTS = np.array([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)


def chroma_features(inputs):
    """[0, 255] RGB → [n, 2·4,501] statistics of the estimated quantised Cb and Cr coefficients: 4:2:0
    stores chroma at half size, so each chroma map is averaged over 2x2 pixels (undoing the decoder's
    upsampling up to its smoothing), then the 8x8 block DCT over the chroma table."""
    basis = _quantised_basis(CHROMA_TABLE_Q75)
    kernel = np.einsum("ijk,cr->ijrck", basis.reshape(8, 8, 64), CHROMA_WEIGHTS)  # [8, 8, 3, 2, 64]
    # the 2x2 average folded in: a stride-16 16x16 kernel over RGB (Cb, Cr have no level shift to undo)
    kernel = np.repeat(np.repeat(kernel, 2, axis=0), 2, axis=1) / 4
    parts = []
    for index, name in enumerate(("cb", "cr")):
        conv = layers.Conv2D(64, 16, strides=16, padding="valid", use_bias=False, trainable=False,
                             name=f"fixed_block_dct_{name}")
        coefficients = conv(inputs)
        conv.set_weights([kernel[..., index, :].astype(np.float32)])
        parts.append(CoefficientStatistics(name=f"jpeg_statistics_{name}")(coefficients))
    return layers.Concatenate(name="chroma_statistics")(parts)


def features(inputs, quality: int = 75):
    """[0, 255] RGB → [n, 4,501] statistics of the estimated quantised luma coefficients."""
    kernel, bias = block_dct_kernel(quality)
    conv = layers.Conv2D(64, 8, strides=8, padding="valid", trainable=False, name="fixed_block_dct")
    coefficients = conv(inputs)
    conv.set_weights([kernel, bias])
    return CoefficientStatistics(name="jpeg_statistics")(coefficients)


def fixed_features(inputs, name: str = "fixed_features"):
    """[0, 255] RGB → [n, 17,253]: residual co-occurrences, luma and chroma JPEG coefficient statistics
    side by side (layer ``name``)."""
    parts = [richmodel.features(inputs), features(inputs), chroma_features(inputs)]
    return layers.Concatenate(name=name)(parts)


def build(inputs, l2: float = 0.015):
    """[0, 255] RGB → P(fake): ``fixed_features``, square-rooted, standardised, then a logistic
    regression."""
    return richmodel.head(fixed_features(inputs), l2, power=True)
