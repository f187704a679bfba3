"""The model registry: a name in ``train.model`` → a Keras model that maps RGB images in [0, 255]
(float32, shape [size, size, 3]) to one sigmoid score, P(fake).

Every model takes the same raw input and carries its own input scaling as layers, so nothing that
scores images with it (the evaluate stage) needs to know how it was normalised.
"""

from __future__ import annotations

import keras
from keras import layers

from .errors import ParamError, UserError


def _head(features, dropout: float = 0.2):
    x = layers.Dropout(dropout)(features)
    # float32 output even under mixed precision: a float16 sigmoid saturates and its loss is lossy.
    return layers.Dense(1, activation="sigmoid", dtype="float32", name="p_fake")(x)


def _set_bn_momentum(model: keras.Model, momentum: float) -> None:
    """Keras' MobileNetV3 uses BN momentum 0.999: trained from scratch for a few hundred steps, the
    moving statistics never converge and every prediction came out 0.5. 0.9 converges in time."""
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = momentum


def _conv_bn_relu(x, filters: int, strides: int = 1):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.ReLU()(x)


def _compact_cnn(inputs, weights):
    """A small plain CNN (0.35M parameters); ``benchmarks/train_models.py`` compares its speed and
    test ROC-AUC with the other models'.

    Its first two convolutions run at full input resolution: manipulation traces (blend seams,
    upsampling grids, missing sensor noise) are pixel-scale, and a stride-2 stem would average them
    away before the first non-linearity. Strided convolutions then halve the map while widening, and
    global average pooling keeps the head small.
    """
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = _conv_bn_relu(x, 16)
    x = layers.MaxPooling2D()(_conv_bn_relu(x, 24))
    for filters in (32, 48, 64, 128):
        x = _conv_bn_relu(x, filters, strides=2)
    x = _conv_bn_relu(x, 192)
    return _head(layers.GlobalAveragePooling2D()(x), dropout=0.3)


def _mobilenet_v3_small(inputs, weights):
    backbone = keras.applications.MobileNetV3Small(
        input_tensor=inputs, include_top=False, weights=weights, pooling="avg",
        include_preprocessing=True)  # rescales [0, 255] → [-1, 1] inside the model
    _set_bn_momentum(backbone, 0.9)
    return _head(backbone.output)


def _efficientnet_b0(inputs, weights):
    backbone = keras.applications.EfficientNetB0(input_tensor=inputs, include_top=False,
                                                 weights=weights, pooling="avg")  # expects [0, 255]
    _set_bn_momentum(backbone, 0.9)
    return _head(backbone.output)


def _xception(inputs, weights):
    scaled = layers.Rescaling(1 / 127.5, offset=-1)(inputs)  # Xception expects [-1, 1]
    backbone = keras.applications.Xception(include_top=False, weights=weights, pooling="avg",
                                           input_shape=tuple(inputs.shape[1:]))
    _set_bn_momentum(backbone, 0.9)
    return _head(backbone(scaled), dropout=0.3)


def _seed_cnn(inputs, weights):
    """The seed project's baseline: 4 conv blocks, a wide dense layer (~4.6M parameters at 128 px)."""
    x = layers.Rescaling(1 / 255)(inputs)
    for filters in (32, 64, 128, 256):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    return _head(x, dropout=0.5)


# name → (builder, has ImageNet weights)
MODELS = {
    "compact_cnn": (_compact_cnn, False),
    "mobilenet_v3_small": (_mobilenet_v3_small, True),
    "efficientnet_b0": (_efficientnet_b0, True),
    "xception": (_xception, True),
    "seed_cnn": (_seed_cnn, False),
}


def build(name: str, image_size: int, weights: str = "none") -> keras.Model:
    """Build ``name`` for square RGB inputs of ``image_size``; ``weights`` is "none" or "imagenet"."""
    if name not in MODELS:
        raise ParamError(f"params.yaml: train.model must be one of {', '.join(MODELS)}, got {name!r}")
    builder, has_imagenet = MODELS[name]
    if weights == "imagenet" and not has_imagenet:
        raise ParamError(f"params.yaml: train.weights=imagenet, but {name} has no ImageNet weights; "
                         "set train.weights=none")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    try:
        outputs = builder(inputs, "imagenet" if weights == "imagenet" else None)
    except Exception as exc:  # keras raises a bare Exception("URL fetch failure ...") offline
        if weights == "imagenet" and ("fetch" in str(exc).lower() or "url" in str(exc).lower()):
            raise UserError(f"could not download ImageNet weights for {name} ({str(exc).splitlines()[0]}): "
                            "connect to the internet once (they are cached in ~/.keras/models), "
                            "or set train.weights=none") from None
        raise
    return keras.Model(inputs, outputs, name=name)
