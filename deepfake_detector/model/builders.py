"""The model builders: a name in ``train.model`` (listed, with its ImageNet file, in ``catalog``) → a
Keras model that maps RGB images in [0, 255] (float32, shape [size, size, 3]) to one sigmoid score,
P(fake).

Every model takes the same raw input and carries its own input scaling as layers, so nothing that
scores images with it (the evaluate stage) needs to know how it was normalised. The head (the layers
named ``head_*`` and ``p_fake``) is what stays trainable while ``train.freeze_epochs`` run.
"""

from __future__ import annotations

import keras
from keras import layers

from deepfake_detector.model import catalog
from deepfake_detector.core.errors import ParamError, UserError

HEAD_PREFIX = "head_"
# name → builder(inputs, weights) → the P(fake) output tensor; filled by @register_model below.
BUILDERS: dict = {}
MODELS = catalog.MODELS


def register_model(builder):
    """Register ``builder`` under its function name, as timm does; the name's facts (ImageNet file,
    input range, ...) are its ``catalog.MODELS`` entry, which params validation reads without
    TensorFlow. A builder without an entry fails here, at import, naming the file to add it to."""
    name = builder.__name__
    if name not in catalog.MODELS:
        raise RuntimeError(f"model {name} has a builder but no entry in {catalog.__file__}: add one")
    if name in BUILDERS:
        raise RuntimeError(f"model {name} is registered twice")
    BUILDERS[name] = builder
    return builder


def _head(features, dropout: float = 0.2):
    x = layers.Dropout(dropout, name=HEAD_PREFIX + "dropout")(features)
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


@register_model
def compact_cnn(inputs, weights):
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


@register_model
def mobilenet_v3_small(inputs, weights):
    backbone = keras.applications.MobileNetV3Small(
        input_tensor=inputs, include_top=False, weights=weights, pooling="avg",
        include_preprocessing=True)  # rescales [0, 255] → [-1, 1] inside the model
    _set_bn_momentum(backbone, 0.9)
    return _head(backbone.output)


@register_model
def efficientnet_b0(inputs, weights):
    backbone = keras.applications.EfficientNetB0(input_tensor=inputs, include_top=False,
                                                 weights=weights, pooling="avg")  # expects [0, 255]
    _set_bn_momentum(backbone, 0.9)
    return _head(backbone.output)


@register_model
def xception(inputs, weights):
    scaled = layers.Rescaling(1 / 127.5, offset=-1)(inputs)  # Xception expects [-1, 1]
    backbone = keras.applications.Xception(include_top=False, weights=weights, pooling="avg",
                                           input_shape=tuple(inputs.shape[1:]))
    _set_bn_momentum(backbone, 0.9)
    return _head(backbone(scaled), dropout=0.3)


@register_model
def seed_cnn(inputs, weights):
    """The seed project's baseline: 4 conv blocks, a wide dense layer (~4.6M parameters at 128 px)."""
    x = layers.Rescaling(1 / 255)(inputs)
    for filters in (32, 64, 128, 256):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    return _head(x, dropout=0.5)


@register_model
def texture_cnn(inputs, weights, width: int = 16):
    """A fully convolutional texture detector (0.15M parameters) for real faces, from scratch.

    It never averages pixels away before its first non-linearity: the stem is a 6x6 convolution
    with stride 2 (the same as a 3x3 convolution over a 2x2 space-to-depth rearrangement, which
    keeps every pixel as channels), so pixel-scale periodic traces of GAN upsampling stay visible at
    a quarter of the cost of a full-resolution layer. Then three stride-2 stages, a 1x1 convolution
    giving a logit per location, and the mean of that logit map. Being fully convolutional, it trains on
    random patches (``train.patch_size``) and scores any input size; ``train.inference`` says how a
    whole image is scored.
    """
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = layers.Conv2D(width, 6, strides=2, padding="same", use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
    for _ in range(3):
        x = _conv_bn_relu(x, width, strides=2)
        width *= 2
        x = _conv_bn_relu(x, width)
    logits = layers.Conv2D(1, 1, name=HEAD_PREFIX + "logit_map")(x)
    mean_logit = layers.GlobalAveragePooling2D(name=HEAD_PREFIX + "mean_logit")(logits)
    return layers.Activation("sigmoid", dtype="float32", name="p_fake")(mean_logit)


@register_model
def residual_cooc(inputs, weights):
    from deepfake_detector.model import richmodel

    return richmodel.build(inputs)


@register_model
def rich_dct(inputs, weights):
    from deepfake_detector.model import jpegmodel

    return jpegmodel.build(inputs)


@register_model
def rich_dct_vgg16(inputs, weights):
    from deepfake_detector.model import pretrained

    return pretrained.build(inputs)


def build(name: str, image_size: int | None, weights: str = "none") -> keras.Model:
    """Build ``name`` for square RGB inputs of ``image_size`` (None: any size, fully convolutional
    models only). ``weights``: "none", "imagenet", or a Keras file to start from: the same model's,
    or another's whose layers fit the backbone's (``startweights.load_start_weights``)."""
    if name not in BUILDERS:  # catalog entries without a builder are caught by test_model_registry
        raise ParamError(f"params.yaml: train.model must be one of {', '.join(MODELS)}, got {name!r}")
    catalog.check_weights(name, weights)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    try:
        outputs = BUILDERS[name](inputs, "imagenet" if weights == "imagenet" else None)
    except Exception as exc:  # keras raises a bare Exception("URL fetch failure ...") offline
        if weights == "imagenet" and ("fetch" in str(exc).lower() or "url" in str(exc).lower()):
            info = MODELS[name]
            raise UserError(f"could not download ImageNet weights for {name} ({str(exc).splitlines()[0]}): "
                            f"put {info.imagenet_file} (from {info.imagenet_url}) in "
                            f"{catalog.keras_models_dir()}, or set train.weights=none") from None
        raise
    model = keras.Model(inputs, outputs, name=name)
    if weights not in ("none", "imagenet"):
        from deepfake_detector.model.startweights import load_start_weights

        load_start_weights(model, weights)
    return model


def set_backbone_trainable(model: keras.Model, trainable: bool) -> None:
    """Freeze or unfreeze everything but the head (layers named ``fixed_*`` are never trained). A
    frozen BatchNormalization layer runs in inference mode in Keras 3 (its moving statistics stay
    those of the loaded weights)."""
    for layer in model.layers:
        if layer.name != "p_fake" and not layer.name.startswith((HEAD_PREFIX, "fixed_")) \
                and not isinstance(layer, keras.layers.InputLayer):
            layer.trainable = trainable
