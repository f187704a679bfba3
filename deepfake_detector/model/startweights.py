"""Starting weights from a file (``train.weights: PATH``): the same model's file, or another model's
trunk, matched layer by layer.

A file of the same architecture loads whole (Keras checks every weight). Any other file is matched
per layer, so that a backbone can start from ImageNet weights or from a pretrained trunk that ships
inside a package:

* by name where the file keeps layer names: Keras 2 HDF5 files, which is what the ImageNet files of
  ``keras.applications`` are (``layer_names`` and ``weight_names`` in their attributes);
* by kind, order and shape where it does not: Keras 3 (a ``.weights.h5``, or the one inside a
  ``.keras``) addresses a layer by its class and a counter (``conv2d``, ``conv2d_1``, ...), never by
  its name, so the file's layers of each kind are taken in order and each goes to the next model
  layer of that kind (Conv2D, BatchNormalization, ...) whose weights have the same shapes.

One log line says how many layers were loaded, which, and which were not; a file of which nothing
fits is one line naming it and the fix.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np

from deepfake_detector.core.errors import UserError

log = logging.getLogger("train")


def load_start_weights(model, path: str | Path) -> None:
    """Start ``model`` from the weights in ``path`` (see the module's docstring)."""
    path = Path(path)
    fix = (f"train.weights must name a {model.name} model's file, or a Keras weights file whose layers "
           "match its backbone's (or be none / imagenet)")
    if not path.is_file():
        raise UserError(f"{path}: no such weights file; {fix}")
    before = model.get_weights()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Keras skips what doesn't fit with a warning: a mismatch here
            model.load_weights(path)
        log.info("train: started from every layer of %s (the same model)", path)
        return
    except Exception as exc:  # another architecture: back to where it was, then layer by layer
        model.set_weights(before)
        whole = " ".join(str(exc).split())[:120]
    try:
        by_name, stored = stored_layers(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a Keras weights file ({type(exc).__name__}: {exc}); {fix}") from None
    layers = [layer for layer in flat_layers(model) if layer.weights]
    matched = match_by_name(layers, stored) if by_name else match_in_order(layers, stored)
    if not matched:
        how = "by name" if by_name else "by kind, in order, with the same shapes"
        raise UserError(f"{path}: no layer of it fits a layer of {model.name} {how} (as a whole: {whole}); "
                        f"{fix}")
    for index, arrays in matched.items():
        layers[index].set_weights(arrays)
    loaded = [layer.name for index, layer in enumerate(layers) if index in matched]
    left = [layer.name for index, layer in enumerate(layers) if index not in matched]
    log.info("train: started %d of %d layers of %s from %s %s (%s); not loaded: %s", len(loaded),
             len(layers), model.name, path, "by name" if by_name else "by kind, order and shape",
             _names(loaded), _names(left) or "none")


def flat_layers(model) -> list:
    """``model``'s layers in order, a nested model (a backbone) opened into its own."""
    out = []
    for layer in model.layers:
        out.extend(flat_layers(layer) if hasattr(layer, "layers") and layer.layers else [layer])
    return out


def stored_layers(path: Path) -> tuple[bool, list[tuple[str, list[np.ndarray]]]]:
    """(whether the names are layer names, [(name, arrays)] of every layer with weights, in order)."""
    import h5py

    if zipfile.is_zipfile(path):  # a .keras file: its weights file inside
        with zipfile.ZipFile(path) as bundle:
            data = io.BytesIO(bundle.read("model.weights.h5"))
        with h5py.File(data, "r") as store:
            return False, _keras3_layers(store)
    with h5py.File(path, "r") as store:
        root = store["model_weights"] if "model_weights" in store else store
        if "layer_names" in root.attrs:  # Keras 2: the layer names, and each layer's weight names
            out = []
            for name in _text(root.attrs["layer_names"]):
                group = root[name]
                arrays = [np.asarray(group[weight]) for weight in _text(group.attrs.get("weight_names", []))]
                if arrays:
                    out.append((name, arrays))
            return True, out
        return False, _keras3_layers(store)


def _keras3_layers(group, prefix: str = "") -> list[tuple[str, list[np.ndarray]]]:
    """Every group with ``vars`` under ``group``, depth first; siblings in the order Keras wrote them
    (its counters: conv2d, conv2d_1, ..., conv2d_10; HDF5 itself lists names alphabetically)."""
    out = []
    variables = group.get("vars")
    if variables is not None and len(variables):
        arrays = [np.asarray(variables[str(i)]) for i in range(len(variables))]
        out.append((prefix.rstrip("/") or "/", arrays))
    for name in sorted((k for k in group if k != "vars"), key=_natural):
        child = group[name]
        if hasattr(child, "keys"):
            out.extend(_keras3_layers(child, f"{prefix}{name}/"))
    return out


def match_by_name(layers: list, stored: list) -> dict[int, list]:
    """{index in ``layers``: the stored arrays of the layer of its name}, where the shapes fit."""
    arrays_of = dict(stored)
    return {index: arrays_of[layer.name] for index, layer in enumerate(layers)
            if layer.name in arrays_of and _fits(layer, arrays_of[layer.name])}


def match_in_order(layers: list, stored: list) -> dict[int, list]:
    """Each stored layer, in order, to the next model layer of its kind with the same weight shapes
    (Keras 3 names a stored layer after its class: ``conv2d_3`` is a Conv2D)."""
    from keras.src.utils.naming import to_snake_case  # how Keras 3 names what it stores

    kinds: dict[str, list] = {}
    for name, arrays in stored:
        kinds.setdefault(re.sub(r"_\d+$", "", name.rsplit("/", 1)[-1]), []).append(arrays)
    matched = {}
    for kind, entries in kinds.items():
        candidates = [i for i, layer in enumerate(layers) if to_snake_case(type(layer).__name__) == kind]
        position = 0
        for arrays in entries:
            for place in range(position, len(candidates)):
                if _fits(layers[candidates[place]], arrays):
                    matched[candidates[place]] = arrays
                    position = place + 1
                    break
    return matched


def _fits(layer, arrays: list[np.ndarray]) -> bool:
    shapes = [tuple(weight.shape) for weight in layer.weights]
    return shapes == [array.shape for array in arrays]


def _natural(name: str) -> tuple:
    """conv2d < conv2d_1 < conv2d_2 < conv2d_10; block2 < block10."""
    return tuple(int(part) if index % 2 else part for index, part in enumerate(re.split(r"(\d+)", name)))


def _text(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _names(names: list[str], shown: int = 6) -> str:
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown // 2])}, ... {', '.join(names[-(shown // 2):])}"
