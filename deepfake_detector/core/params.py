"""Loading and validating ``params.yaml``, one section per stage.

Each stage calls ``load_section("train")`` before doing any work. A wrong value stops it with one
line that names the key, what was expected and what was found, e.g.::

    params.yaml: train.epochs must be an integer in [1, 10000], got -3

``core/sections.py`` types every parameter (one frozen dataclass per section, each field with its
check); ``params.yaml``'s comments say what each one means.

The file is read exactly as DVC reads it (``dvc exp run -S``, ``dvc params diff``, templating): with
ruamel.yaml's safe loader, YAML 1.2. So ``on``/``off``/``yes`` are strings and ``4e-3`` is a number,
as DVC means them; PyYAML (YAML 1.1) would read ``on`` as true and ``4e-3`` as a string.
Every number has an upper bound too: a huge count fails here, not as an ``OverflowError`` later.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, Callable

from deepfake_detector.core.errors import ParamError
from deepfake_detector.core.sections import SECTIONS, Spec, schema
from deepfake_detector.model import catalog

PARAMS_FILE = "params.yaml"
# section -> key -> Spec or a nested dict: the typed sections (core/sections.py) as plain data.
SCHEMA: dict[str, dict] = {name: schema(section) for name, section in SECTIONS.items()}


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


def _validate(prefix: str, raw: Any, section: type):
    """``raw`` checked against ``section``'s fields → a frozen ``section`` instance."""
    if not isinstance(raw, dict):
        raise ParamError(f"{PARAMS_FILE}: {prefix} must be a mapping of keys, got {_short(raw)}")
    fields = {item.name: item.metadata["spec"] for item in dataclasses.fields(section)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamError(f"{PARAMS_FILE}: unknown key {prefix}.{unknown[0]} "
                         f"(known: {', '.join(fields)})")
    values = {}
    for key, spec in fields.items():
        name = f"{prefix}.{key}"
        if key not in raw:
            raise ParamError(f"{PARAMS_FILE}: missing key {name}")
        if isinstance(spec, type):
            values[key] = _validate(name, raw[key], spec)
        else:
            values[key] = _check(name, raw[key], spec)
    return section(**values)


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
                 extra_checks: Callable[[Any], None] | None = None):
    """Read one section of ``params.yaml``, validated; raises ``ParamError`` naming the key."""
    if section not in SCHEMA:
        raise KeyError(section)
    raw = read_file(path)
    if section not in raw:
        raise ParamError(f"{PARAMS_FILE}: missing section '{section}'")
    raw_section = _with_recipe(raw[section]) if section == "train" else raw[section]
    params = _validate(section, raw_section, SECTIONS[section])
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


def _check_train(train) -> None:
    """What one key alone can't say: weights the model has, patches the model can take."""
    catalog.check_weights(train.model, train.weights)
    info = catalog.MODELS[train.model]
    if train.patch_size and not info.fully_convolutional:
        raise ParamError(f"{PARAMS_FILE}: train.patch_size={train.patch_size} needs a fully "
                         "convolutional model ("
                         f"{', '.join(n for n, i in catalog.MODELS.items() if i.fully_convolutional)}),"
                         f" not {train.model}; set train.patch_size=0")
    if train.patch_size > train.image_size:
        raise ParamError(f"{PARAMS_FILE}: train.patch_size {train.patch_size} is larger than "
                         f"train.image_size {train.image_size}")
    if train.inference == "patch_grid" and not train.patch_size:
        raise ParamError(f"{PARAMS_FILE}: train.inference=patch_grid needs train.patch_size > 0")
    if train.freeze_epochs >= train.epochs and train.freeze_epochs:
        raise ParamError(f"{PARAMS_FILE}: train.freeze_epochs ({train.freeze_epochs}) must be below "
                         f"train.epochs ({train.epochs}), or the backbone is never fine-tuned")
    if train.feature_passes > 1 and info.fixed_features is None:
        raise ParamError(f"{PARAMS_FILE}: train.feature_passes={train.feature_passes} needs a fixed-feature "
                         f"model ({', '.join(n for n, i in catalog.MODELS.items() if i.fixed_features)}), "
                         f"not {train.model}; set train.feature_passes=1")


def as_dict(params) -> dict:
    """A validated section back as plain dicts (for logging and metadata)."""
    return dataclasses.asdict(params)
