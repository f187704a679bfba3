"""The typed, frozen params of each ``params.yaml`` section: one dataclass per (sub)section, each
field carrying the ``Spec`` it is checked against. ``params.load_section`` returns these; what each
key means is written once, in ``params.yaml``'s comments.

Ranges have upper bounds too: a huge count fails at stage start, not as an ``OverflowError`` later.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from deepfake_detector.model import catalog

SEED = (0, 2**32 - 1)  # NumPy's legacy seeding (keras.utils.set_random_seed) takes 32 bits


@dataclass(frozen=True)
class Spec:
    """How one key is checked: ``kind`` names the type, the rest narrows it."""

    # int | float | bool | str | choice | path | float_range | int_range | path_map | weights | recipes
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    optional: bool = False  # null allowed

    def describe(self) -> str:
        if self.kind == "weights":
            return "none, imagenet, or the path of a .keras, .weights.h5 or Keras 2 .h5 file"
        if self.kind == "recipes":
            return "a mapping of recipe names to mappings of train keys"
        if self.kind == "choice":
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.kind in ("float_range", "int_range"):
            base = "a pair [low, high] of " + ("integers" if self.kind == "int_range" else "numbers")
        else:
            base = {"path_map": "a mapping of names (letters, digits, _ and -) to paths", "int": "an integer",
                    "float": "a number", "bool": "true or false", "str": "a string",
                    "path": "a path"}[self.kind]
        if self.low is not None and self.high is not None:
            base += f" in [{self.low}, {self.high}]"
        elif self.low is not None:
            base += f" >= {self.low}"
        if self.optional:
            base += " (or null)"
        return base


def key(spec: Spec | type):
    """A required field checked by ``spec`` (a ``Spec``, or the dataclass of a nested section)."""
    return field(metadata={"spec": spec})


def Int(low=None, high=None, optional=False):
    return key(Spec("int", low, high, optional=optional))


def Float(low=None, high=None, optional=False):
    return key(Spec("float", low, high, optional=optional))


def Choice(*choices):
    return key(Spec("choice", choices=choices))


def Bool():
    return key(Spec("bool"))


def Str():
    return key(Spec("str"))


def Pair(kind: str, low, high):
    return key(Spec(kind, low, high))


@dataclass(frozen=True)
class Kaggle:
    dataset: str = Str()
    version: int | None = Int(1, 10**6, optional=True)


@dataclass(frozen=True)
class Carve:
    validation_fraction: float = Float(0.0, 0.5)
    test_fraction: float = Float(0.0, 0.5)
    seed: int = Int(*SEED)


@dataclass(frozen=True)
class Sample:
    seed: int = Int(*SEED)
    difficulty: float = Float(0.0, 1.0)
    image_size: int = Int(64, 1024)
    train: int = Int(2, 10**6)
    validation: int = Int(2, 10**6)
    test: int = Int(2, 10**6)


@dataclass(frozen=True)
class Data:
    source: str = Choice("sample", "kaggle", "local")
    local_path: str | None = key(Spec("path", optional=True))
    kaggle: Kaggle = key(Kaggle)
    carve: Carve = key(Carve)
    max_member_mb: float = Float(0.001, 2**20)
    max_total_gb: float = Float(0.001, 2**20)
    sample: Sample = key(Sample)


@dataclass(frozen=True)
class Duplicates:
    cross_split: str = Choice("drop", "keep")
    within_split: str = Choice("keep", "drop")
    near_hamming: int = Int(0, 10)  # search cost grows ~4-5x per +2 bits
    near_cross_split: str = Choice("report", "drop")


@dataclass(frozen=True)
class Preprocess:
    image_size: int = Int(16, 2048)
    max_pixels: int = Int(1, 10**10)
    workers: int = Int(0, 1024)
    shard_images: int = Int(1, 10**6)
    duplicates: Duplicates = key(Duplicates)


@dataclass(frozen=True)
class Augment:
    flip: bool = Bool()
    jpeg_probability: float = Float(0.0, 1.0)
    jpeg_quality: list = Pair("int_range", 1, 100)
    blur_probability: float = Float(0.0, 1.0)
    blur_sigma: list = Pair("float_range", 0.01, 10.0)
    colour_probability: float = Float(0.0, 1.0)
    colour_strength: float = Float(0.0, 1.0)
    rescale_probability: float = Float(0.0, 1.0)
    rescale_range: list = Pair("float_range", 0.1, 1.0)
    noise_probability: float = Float(0.0, 1.0)
    noise_sigma: list = Pair("float_range", 0.0, 64.0)
    cutout_probability: float = Float(0.0, 1.0)
    cutout_fraction: float = Float(0.01, 1.0)


@dataclass(frozen=True)
class Train:
    model: str = Choice(*catalog.MODELS)
    weights: str = key(Spec("weights"))
    image_size: int = Int(32, 1024)
    batch_size: int = Int(1, 4096)
    epochs: int = Int(1, 10**4)
    patience: int = Int(0, 10**4)
    keep_weights: str = Choice("best", "last")
    learning_rate: float = Float(1e-7, 1.0)
    seed: int = Int(*SEED)
    cache_ram_mb: int = Int(0, 2**22)
    mixed_precision: str = Choice("auto", "on", "off")
    augment: Augment = key(Augment)
    freeze_epochs: int = Int(0, 10**4)
    fine_tune_learning_rate: float = Float(1e-9, 1.0)
    patch_size: int = Int(0, 2048)
    patches_per_image: int = Int(1, 1024)
    feature_passes: int = Int(1, 64)
    inference: str = Choice("whole_image", "patch_grid")
    recipe: str = Str()
    recipes: dict = key(Spec("recipes"))
    deterministic: bool = Bool()
    distribute: str = Choice("auto", "none", "mirrored", "multi_worker")


@dataclass(frozen=True)
class Numerics:  # read by train and evaluate, before TensorFlow loads (entrypoint.portable_numerics)
    portable: bool = Bool()
    threads: int = Int(1, 1024)


@dataclass(frozen=True)
class Evaluate:
    batch_size: int = Int(1, 4096)
    max_curve_points: int = Int(10, 10**6)
    extra_sets: dict = key(Spec("path_map"))
    gallery_size: int = Int(1, 64)


SECTIONS: dict[str, type] = {"data": Data, "preprocess": Preprocess, "train": Train, "numerics": Numerics,
                             "evaluate": Evaluate}


def schema(section: type) -> dict:
    """key → ``Spec``, or a nested dict for a subsection, in the dataclass's field order."""
    specs = {}
    for item in dataclasses.fields(section):
        spec = item.metadata["spec"]
        specs[item.name] = schema(spec) if isinstance(spec, type) else spec
    return specs
