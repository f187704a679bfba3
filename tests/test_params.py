"""params.yaml validation: every section of the shipped file loads; bad values name their key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from projectcopy import ROOT, set_params
from deepfake_detector.errors import ParamError
from deepfake_detector.params import SCHEMA, load_section


@pytest.mark.parametrize("section", list(SCHEMA))
def test_shipped_params_are_valid(section):
    load_section(section, ROOT / "params.yaml")


def write(tmp_path, section: str, **changes) -> Path:
    """A copy of the shipped params.yaml with ``changes`` (``augment__flip`` for train.augment.flip)."""
    shutil.copyfile(ROOT / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path, {f"{section}.{key.replace('__', '.')}": value for key, value in changes.items()})
    return tmp_path / "params.yaml"


@pytest.mark.parametrize("section, key, value, named", [
    ("train", "epochs", 0, "train.epochs"),
    ("train", "epochs", 2.5, "train.epochs"),
    ("train", "epochs", True, "train.epochs"),
    ("train", "model", "resnet", "train.model"),
    ("train", "learning_rate", "fast", "train.learning_rate"),
    ("train", "augment__jpeg_quality", [90], "train.augment.jpeg_quality"),
    ("train", "augment__jpeg_quality", [0, 90], "train.augment.jpeg_quality[0]"),
    ("preprocess", "image_size", "256", "preprocess.image_size"),
    ("preprocess", "duplicates__cross_split", "maybe", "preprocess.duplicates.cross_split"),
    ("data", "source", "s3", "data.source"),
    ("data", "sample__difficulty", 1.5, "data.sample.difficulty"),
    ("data", "local_path", "", "data.local_path"),
])
def test_bad_values_raise_one_line_naming_the_key(tmp_path, section, key, value, named):
    path = write(tmp_path, section, **{key: value})
    with pytest.raises(ParamError) as caught:
        load_section(section, path)
    message = str(caught.value)
    assert named in message and "\n" not in message


def test_whole_floats_are_accepted_as_integers(tmp_path):
    assert load_section("train", write(tmp_path, "train", epochs=3.0)).epochs == 3


def test_unknown_key_is_named(tmp_path):
    path = write(tmp_path, "train", epoch=3)
    with pytest.raises(ParamError, match="unknown key train.epoch"):
        load_section("train", path)


def test_missing_section_and_file(tmp_path):
    (tmp_path / "params.yaml").write_text("data: {}\n")
    with pytest.raises(ParamError, match="missing section 'train'"):
        load_section("train", tmp_path / "params.yaml")
    with pytest.raises(ParamError, match="not found"):
        load_section("train", tmp_path / "nope.yaml")
