"""``models/model.keras`` with what scoring needs travelling inside it.

A ``.keras`` file is a zip (config, weights); Keras ignores members it doesn't know, so the label map,
input size, scoring rule and training facts ride along as one extra JSON member. ``ModelMeta`` is
that member's one definition: ``save`` writes it, ``read_meta`` reads and checks it (no TensorFlow),
``load`` adds the Keras model checked against it.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from deepfake_detector import CLASS_NAMES, __version__
from deepfake_detector.core.entrypoint import load_tensorflow
from deepfake_detector.core.errors import UserError
from deepfake_detector.core.files import atomic_path

META_MEMBER = "deepfake_detector.json"
# How a whole image is scored. "whole_image": the model maps one RGB image, float32 in [0, 255] at
# image_size, to P(fake); that is the whole rule. "patch_grid": the image is cut into the grid of
# patch_size squares (the model was trained on such patches), each is scored, and the image's P(fake)
# is the sigmoid of the patches' mean logit (``inference.patch_grid_scores``).
RULES = ("whole_image", "patch_grid")
INPUT = "RGB, float32 in [0, 255], square"


@dataclass(frozen=True)
class ModelMeta:
    """The model file's metadata; the label map, positive class and score are fixed (Real = 0, Fake = 1,
    P(fake)) and written into every file, so that a reader can refuse any other."""

    image_size: int
    model: str | None = None  # the catalog name (``catalog.MODELS``); None for a hand-built model
    inference: str = "whole_image"  # one of RULES
    patch_size: int | None = None  # the patch_grid rule's square
    native_only: bool | None = None  # None: the catalog decides (``native_crops_only``)
    input: str = INPUT
    stored_image_size: int | None = None  # of the records it was trained on
    train_params: dict | None = None
    train_metrics: dict | None = None
    # The data it learned from: source ("sample", "kaggle", "local"), the archive's file, bytes and
    # sha256 (as download's source.json has them), and the images per split and class.
    trained_on: dict | None = None

    @classmethod
    def for_training(cls, params, catalog: dict, train_metrics: dict) -> "ModelMeta":
        """What the train stage writes: the validated ``train`` section, the final metrics and what
        the processed data (``catalog``, records.json) came from."""
        from deepfake_detector.core.params import as_dict

        patch_grid = params.inference == "patch_grid"
        images = {split: {"real": facts["real"], "fake": facts["fake"]}
                  for split, facts in catalog["splits"].items()}
        return cls(image_size=params.image_size, model=params.model, inference=params.inference,
                   patch_size=params.patch_size if patch_grid else None,
                   stored_image_size=catalog["image_size"], train_params=as_dict(params),
                   train_metrics=train_metrics,
                   trained_on={**catalog.get("source", {"source": None}), "images": images})

    def trained_on_sample(self) -> bool:
        """True for a model that learned from the built-in generated sample (data.source: sample)."""
        return (self.trained_on or {}).get("source") == "sample"

    def to_json(self) -> dict:
        fixed = {"class_names": list(CLASS_NAMES), "positive_class": CLASS_NAMES[1], "score": "P(fake)"}
        return {**fixed, **{key: value for key, value in asdict(self).items() if value is not None}}

    @classmethod
    def from_json(cls, raw, path: Path) -> "ModelMeta":
        """Checked: anything a scorer can't use is one line naming ``path`` and the fix."""
        if not isinstance(raw, dict):
            raise _unusable(path, f"{META_MEMBER} holds {type(raw).__name__}, not an object")
        if raw.get("class_names") != list(CLASS_NAMES):
            raise UserError(f"{path}: label map {raw.get('class_names')} is not {list(CLASS_NAMES)}; "
                            "retrain the model with this version")
        size = raw.get("image_size")
        if not _positive_int(size):
            raise _unusable(path, f"image_size {size!r} in {META_MEMBER} is not a positive integer")
        rule = raw.get("inference", "whole_image")
        if not isinstance(rule, str) or rule not in RULES:
            raise UserError(f"{path}: inference rule {rule!r} is unknown to deepfake-detector {__version__} "
                            "(the model was made by a newer version); update deepfake-detector")
        patch = raw.get("patch_size")
        if rule == "patch_grid" and not (_positive_int(patch) and patch <= size):
            raise UserError(f"{path}: inference rule patch_grid needs a patch_size in (0, image_size], "
                            f"got {patch!r}; retrain the model with `dvc repro train`")
        known = cls.__dataclass_fields__.keys()  # keys a newer version adds are ignored, as Keras does
        return cls(**{key: value for key, value in raw.items() if key in known})

    def native_crops_only(self) -> bool:
        """True when the model must see face crops at exactly its input size, never resized or cut
        from a larger picture: the fixed-feature models (``catalog.ModelInfo.fixed_features``), whose
        features are pixel noise and the JPEG grid. A model file may say so itself (``native_only``)."""
        from deepfake_detector.model import catalog

        if self.native_only is not None:
            return bool(self.native_only)
        info = catalog.MODELS.get(self.model)
        return info is not None and info.fixed_features is not None


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def save(model, path: str | Path, meta: ModelMeta) -> None:
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as bundle:
            bundle.writestr(META_MEMBER, json.dumps(meta.to_json(), indent=2))


def _unusable(path, why: str) -> UserError:
    why = " ".join(why.split())
    why = why if len(why) <= 160 else why[:157] + "..."
    return UserError(f"{path} is not a usable model ({why}); retrain it with `dvc repro train`")


def read_meta(path: str | Path) -> ModelMeta:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such model file; train one with `dvc repro train`")
    if not path.is_file():
        raise _unusable(path, "not a file")
    try:
        with zipfile.ZipFile(path) as bundle:
            raw = json.loads(bundle.read(META_MEMBER))
    except KeyError:
        raise _unusable(path, f"no {META_MEMBER} inside: not a deepfake-detector model") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
        # ValueError covers bad JSON and undecodable bytes; zlib/EOF a truncated member.
        raise _unusable(path, f"{type(exc).__name__}: {exc}") from None
    return ModelMeta.from_json(raw, path)


def load(path: str | Path):
    """(keras model, ``ModelMeta``); a ``UserError`` with one line for any file that isn't a usable model."""
    meta = read_meta(path)
    return load_keras(path, meta), meta


def load_keras(path: str | Path, meta: ModelMeta):
    """The Keras model in ``path``, checked against its already-read ``meta``."""
    load_tensorflow()  # after the cheap checks: a missing or broken file fails before TensorFlow loads
    import keras

    from deepfake_detector.model import jpegmodel, pretrained, richmodel  # noqa: F401 (registers their custom layers)

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise _unusable(path, f"Keras cannot load it: {type(exc).__name__}: {exc}") from None
    size = meta.image_size
    inputs, outputs = model.input_shape, model.output_shape
    if (not isinstance(inputs, tuple) or len(inputs) != 4 or inputs[3] != 3
            or any(side not in (None, size) for side in inputs[1:3])):
        raise _unusable(path, f"input shape {inputs} does not take {size}x{size} RGB images")
    if not isinstance(outputs, tuple) or outputs[-1] != 1:
        raise _unusable(path, f"output shape {outputs} is not one score per image")
    return model
