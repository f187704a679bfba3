"""params.yaml validation: every section of the shipped file loads; bad values name their key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from projectcopy import ROOT, set_params
from deepfake_detector.core.errors import ParamError
from deepfake_detector.core.params import SCHEMA, load_section


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


def test_one_flag_selects_the_real_faces_recipe(tmp_path):
    train = load_section("train", write(tmp_path, "train", recipe="real_faces"))
    shipped = load_section("train", ROOT / "params.yaml")
    bundle = shipped.recipes["real_faces"]
    assert train.model == bundle["model"] == "rich_dct_vgg16" and train.image_size == bundle["image_size"]
    assert train.augment.jpeg_probability == bundle["augment"]["jpeg_probability"] > 0
    assert train.feature_passes == bundle["feature_passes"] > 1
    assert "cutout_fraction" not in bundle["augment"]
    assert train.augment.cutout_fraction == shipped.augment.cutout_fraction  # left out: kept
    assert train.seed == shipped.seed


@pytest.mark.parametrize("changes, named", [
    ({"recipe": "fast"}, "train.recipe must be one of default, real_faces, pristine_faces"),
    ({"recipes__real_faces__epoch": 3, "recipe": "real_faces"}, "unknown key train.recipes.real_faces.epoch"),
    ({"recipes__real_faces__epochs": -1, "recipe": "real_faces"}, "train.epochs"),
    ({"weights": "start.pt"},
     "train.weights must be none, imagenet, or the path of a .keras, .weights.h5 or Keras 2 .h5 file"),
    ({"weights": "imagenet", "model": "compact_cnn"}, "compact_cnn has no ImageNet weights"),
    ({"patch_size": 64}, "needs a fully convolutional model (texture_cnn)"),
    ({"inference": "patch_grid"}, "train.inference=patch_grid needs train.patch_size > 0"),
    ({"freeze_epochs": 7, "epochs": 7}, "train.freeze_epochs (7) must be below train.epochs (7)"),
    ({"feature_passes": 2}, "train.feature_passes=2 needs a fixed-feature model (residual_cooc, rich_dct, "
                            "rich_dct_vgg16), not mobilenet_v3_small"),
])
def test_train_keys_that_depend_on_each_other_fail_in_one_line(tmp_path, changes, named):
    with pytest.raises(ParamError) as caught:
        load_section("train", write(tmp_path, "train", **changes))
    assert named in str(caught.value) and "\n" not in str(caught.value)
