"""Loading and validating ``params.yaml``, one section per stage.

Each stage calls ``load_section("train")`` before doing any work. A wrong value stops it with one
line that names the key, what was expected and what was found, e.g.::

    params.yaml: train.epochs must be an integer in [1, 10000], got -3

The schema below is the single list of every parameter; the README documents each one.

The file is read exactly as DVC reads it (``dvc exp run -S``, ``dvc params diff``, templating): with
ruamel.yaml's safe loader, YAML 1.2. So ``on``/``off``/``yes`` are strings and ``4e-3`` is a number,
as DVC means them; PyYAML (YAML 1.1) would read ``on`` as true and ``4e-3`` as a string.
Every number has an upper bound too: a huge count fails here, not as an ``OverflowError`` later.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from deepfake_detector.model import catalog
from deepfake_detector.core.errors import ParamError

PARAMS_FILE = "params.yaml"
SEED = (0, 2**32 - 1)  # NumPy's legacy seeding (keras.utils.set_random_seed) takes 32 bits


@dataclass(frozen=True)
class Spec:
    """How one key is checked: ``kind`` names the type, the rest narrows it."""

    kind: str  # int | float | bool | str | choice | path | float_range | int_range | path_map
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    optional: bool = False  # null allowed

    def describe(self) -> str:
        if self.kind == "weights":
            return "none, imagenet, or the path of a .keras or .weights.h5 file"
        if self.kind == "recipes":
            return "a mapping of recipe names to mappings of train keys"
        if self.kind == "choice":
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.kind in ("float_range", "int_range"):
            base = "a pair [low, high] of " + ("integers" if self.kind == "int_range" else "numbers")
        else:
            base = {"path_map": "a mapping of names (letters, digits, _ and -) to paths", "int": "an integer", "float": "a number", "bool": "true or false",
                    "str": "a string", "path": "a path"}[self.kind]
        if self.low is not None and self.high is not None:
            base += f" in [{self.low}, {self.high}]"
        elif self.low is not None:
            base += f" >= {self.low}"
        if self.optional:
            base += " (or null)"
        return base


def Int(low=None, high=None, optional=False):
    return Spec("int", low, high, optional=optional)


def Float(low=None, high=None, optional=False):
    return Spec("float", low, high, optional=optional)


def Choice(*choices):
    return Spec("choice", choices=choices)


BOOL = Spec("bool")
STR = Spec("str")
OPTIONAL_PATH = Spec("path", optional=True)

# The whole schema: section -> key -> Spec or nested dict.
SCHEMA: dict[str, dict] = {
    "data": {
        "source": Choice("sample", "kaggle", "local"),
        "local_path": OPTIONAL_PATH,
        "kaggle": {
            "dataset": STR,
            "version": Int(1, 10**6, optional=True),  # null = latest
        },
        # Splits carved out of Train when a local dataset has none (seeded, stratified,
        # exact duplicates kept together).
        "carve": {
            "validation_fraction": Float(0.0, 0.5),
            "test_fraction": Float(0.0, 0.5),
            "seed": Int(*SEED),
        },
        # Archive-bomb guards, checked before anything is extracted or read.
        "max_member_mb": Float(0.001, 2**20),  # up to 1 TiB
        "max_total_gb": Float(0.001, 2**20),  # up to 1 PiB
        "sample": {
            "seed": Int(*SEED),
            "difficulty": Float(0.0, 1.0),
            "image_size": Int(64, 1024),
            "train": Int(2, 10**6),
            "validation": Int(2, 10**6),
            "test": Int(2, 10**6),
        },
    },
    "preprocess": {
        "image_size": Int(16, 2048),
        "max_pixels": Int(1, 10**10),
        "workers": Int(0, 1024),  # 0 = one per CPU core
        "shard_images": Int(1, 10**6),
        "duplicates": {
            "cross_split": Choice("drop", "keep"),
            "within_split": Choice("keep", "drop"),
            "near_hamming": Int(0, 10),  # search cost grows ~4-5x per +2 bits
            "near_cross_split": Choice("report", "drop"),
        },
    },
    "train": {
        "model": Choice(*catalog.MODELS),
        "weights": Spec("weights"),  # none | imagenet | a .keras or .weights.h5 file
        "image_size": Int(32, 1024),
        "batch_size": Int(1, 4096),
        "epochs": Int(1, 10**4),
        "patience": Int(0, 10**4),
        "learning_rate": Float(1e-7, 1.0),
        "seed": Int(*SEED),
        "cache_ram_mb": Int(0, 2**22),  # up to 4 TiB
        "mixed_precision": Choice("auto", "on", "off"),
        "augment": {
            "flip": BOOL,
            "jpeg_probability": Float(0.0, 1.0),
            "jpeg_quality": Spec("int_range", 1, 100),
            "blur_probability": Float(0.0, 1.0),
            "blur_sigma": Spec("float_range", 0.01, 10.0),
            "colour_probability": Float(0.0, 1.0),
            "colour_strength": Float(0.0, 1.0),  # brightness ±255·s/4, contrast and saturation ×(1±s)
            "rescale_probability": Float(0.0, 1.0),
            "rescale_range": Spec("float_range", 0.1, 1.0),  # downscale factor, then back up
            "cutout_probability": Float(0.0, 1.0),
            "cutout_fraction": Float(0.01, 1.0),  # side of the blanked square / image side
        },
        "freeze_epochs": Int(0, 10**4),  # epochs with everything but the head frozen
        "fine_tune_learning_rate": Float(1e-9, 1.0),
        "patch_size": Int(0, 2048),  # 0 = train on whole images; else random square crops this big
        "patches_per_image": Int(1, 1024),  # crops of each image per epoch (patch_size > 0)
        "inference": Choice("whole_image", "patch_grid"),
        "recipe": STR,  # default | a name in train.recipes
        "recipes": Spec("recipes"),  # name -> train keys it sets
        "deterministic": BOOL,  # seeds + TensorFlow's deterministic kernels: identical reruns
        "distribute": Choice("auto", "none", "mirrored", "multi_worker"),
    },
    "numerics": {  # read by train and evaluate, before TensorFlow loads (entrypoint.portable_numerics)
        "portable": BOOL,
        "threads": Int(1, 1024),
    },
    "evaluate": {
        "batch_size": Int(1, 4096),
        "max_curve_points": Int(10, 10**6),
        "extra_sets": Spec("path_map"),  # name -> a labelled zip or folder, scored whole
        "gallery_size": Int(1, 64),  # images per class in the mistakes gallery and the sample grid
    },
}


def _check(key: str, value: Any, spec: Spec) -> Any:
    written = value  # as read, for the message (1e+30, not the int it converts to)

    def fail(detail: str = "") -> None:
        shown = "null" if written is None else _short(written)
        raise ParamError(f"{PARAMS_FILE}: {key} must be {spec.describe()}, got {shown}{detail}")

    if value is None:
        if spec.optional:
            return None
        fail()
    if spec.kind == "int":
        # YAML 1e3 is a float; accept whole floats, refuse 1.5 and booleans.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail()
        if isinstance(value, float) and not value.is_integer():
            fail()
        value = int(value)
    elif spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail()
        value = float(value)
    elif spec.kind == "bool":
        if not isinstance(value, bool):
            fail()
        return value
    elif spec.kind in ("str", "path"):
        if not isinstance(value, str) or not value.strip():
            fail()
        return value
    elif spec.kind == "choice":
        if value not in spec.choices:
            fail()
        return value
    elif spec.kind == "path_map":
        if not isinstance(value, dict):
            fail()
        for name, path in value.items():
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                fail(f" (name {_short(name)})")
            _check(f"{key}.{name}", path, Spec("path"))
        return dict(value)
    elif spec.kind == "weights":
        if not isinstance(value, str) or not (value in ("none", "imagenet")
                                               or value.endswith(catalog.WEIGHT_SUFFIXES)):
            fail()
        return value
    elif spec.kind == "recipes":
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            fail()
        return value
    elif spec.kind in ("float_range", "int_range"):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            fail()
        item = Spec("int" if spec.kind == "int_range" else "float", spec.low, spec.high)
        pair = [_check(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
        if pair[0] > pair[1]:
            fail(" (low > high)")
        return pair
    if spec.low is not None and value < spec.low:
        fail()
    if spec.high is not None and value > spec.high:
        fail()
    return value


def _validate(prefix: str, raw: Any, schema: dict) -> SimpleNamespace:
    if not isinstance(raw, dict):
        raise ParamError(f"{PARAMS_FILE}: {prefix} must be a mapping of keys, got {_short(raw)}")
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise ParamError(f"{PARAMS_FILE}: unknown key {prefix}.{unknown[0]} "
                         f"(known: {', '.join(schema)})")
    values = {}
    for key, spec in schema.items():
        name = f"{prefix}.{key}"
        if key not in raw:
            raise ParamError(f"{PARAMS_FILE}: missing key {name}")
        if isinstance(spec, dict):
            values[key] = _validate(name, raw[key], spec)
        else:
            values[key] = _check(name, raw[key], spec)
    return SimpleNamespace(**values)


def read_file(path: str | Path = PARAMS_FILE) -> dict:
    """The whole params file as DVC reads it (ruamel.yaml, safe, YAML 1.2); ``ParamError`` with one
    line (and the line and column of a syntax error) when it can't be read as a mapping."""
    from ruamel.yaml import YAML, YAMLError

    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ParamError(f"{path} not found: run from the project root") from None
    except IsADirectoryError:
        raise ParamError(f"{path} is a folder, not the params file; run from the project root") from None
    except UnicodeDecodeError as exc:
        raise ParamError(f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                         f"{exc.start}); save it as UTF-8") from None
    try:
        raw = YAML(typ="safe").load(text)  # what dvc.utils.serialize.parse_yaml does
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ParamError(f"{path} is not valid YAML: {where}{problem}; fix it there") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ParamError(f"{path} must be a mapping of sections ({', '.join(SCHEMA)}), "
                         f"got {type(raw).__name__} {_short(raw)}")
    return raw


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def load_section(section: str, path: str | Path = PARAMS_FILE,
                 extra_checks: Callable[[SimpleNamespace], None] | None = None) -> SimpleNamespace:
    """Read one section of ``params.yaml``, validated; raises ``ParamError`` naming the key."""
    if section not in SCHEMA:
        raise KeyError(section)
    raw = read_file(path)
    if section not in raw:
        raise ParamError(f"{PARAMS_FILE}: missing section '{section}'")
    raw_section = _with_recipe(raw[section]) if section == "train" else raw[section]
    params = _validate(section, raw_section, SCHEMA[section])
    if section == "train":
        _check_train(params)
    if extra_checks:
        extra_checks(params)
    return params


def _with_recipe(train: Any) -> Any:
    """``train`` with the keys of the recipe ``train.recipe`` names (from ``train.recipes``) set.
    A recipe's own keys win over the plain ones: a recipe is a tested bundle, changed in one place."""
    if not isinstance(train, dict) or "recipe" not in train:
        return train
    name, recipes = train["recipe"], train.get("recipes")
    if name == "default":
        return train
    if not isinstance(recipes, dict) or not isinstance(recipes.get(name), dict):
        known = ", ".join(["default", *recipes]) if isinstance(recipes, dict) else "default"
        raise ParamError(f"{PARAMS_FILE}: train.recipe must be one of {known}, got {_short(name)}")
    merged = dict(train)
    for key, value in recipes[name].items():
        spec = SCHEMA["train"].get(key)
        if spec is None or key in ("recipe", "recipes"):
            raise ParamError(f"{PARAMS_FILE}: unknown key train.recipes.{name}.{key} "
                             "(a recipe sets train keys, e.g. model, epochs, augment)")
        if isinstance(spec, dict):
            if not isinstance(value, dict):
                raise ParamError(f"{PARAMS_FILE}: train.recipes.{name}.{key} must be a mapping of keys")
            value = {**train.get(key, {}), **value}
        merged[key] = value
    return merged


def _check_train(train: SimpleNamespace) -> None:
    """What one key alone can't say: weights the model has, patches the model can take."""
    info = catalog.MODELS[train.model]
    if train.weights == "imagenet" and info.imagenet_file is None:
        raise ParamError(f"{PARAMS_FILE}: train.weights=imagenet, but {train.model} has no ImageNet "
                         "weights; set train.weights=none or a file to start from")
    if train.patch_size and not info.fully_convolutional:
        raise ParamError(f"{PARAMS_FILE}: train.patch_size={train.patch_size} needs a fully convolutional "
                         f"model ({', '.join(n for n, i in catalog.MODELS.items() if i.fully_convolutional)}),"
                         f" not {train.model}; set train.patch_size=0")
    if train.patch_size > train.image_size:
        raise ParamError(f"{PARAMS_FILE}: train.patch_size {train.patch_size} is larger than "
                         f"train.image_size {train.image_size}")
    if train.inference == "patch_grid" and not train.patch_size:
        raise ParamError(f"{PARAMS_FILE}: train.inference=patch_grid needs train.patch_size > 0")
    if train.freeze_epochs >= train.epochs and train.freeze_epochs:
        raise ParamError(f"{PARAMS_FILE}: train.freeze_epochs ({train.freeze_epochs}) must be below "
                         f"train.epochs ({train.epochs}), or the backbone is never fine-tuned")


def as_dict(params: SimpleNamespace) -> dict:
    """The validated section back as plain dicts (for logging and metadata)."""
    return {k: as_dict(v) if isinstance(v, SimpleNamespace) else v for k, v in vars(params).items()}
