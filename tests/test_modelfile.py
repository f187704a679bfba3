"""A models/model.keras that isn't a usable model (truncated, garbage, bad metadata, broken weights,
a folder) is one line saying so and to retrain, never a traceback from zipfile, h5py or Keras."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest

from deepfake_detector.model import modelfile
from deepfake_detector.core import paths
from deepfake_detector.core.errors import UserError
from projectcopy import ROOT, make_project, run

META = modelfile.META_MEMBER


@pytest.fixture(scope="module")
def good_model(tmp_path_factory) -> Path:
    import keras

    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.GlobalAveragePooling2D()(inputs)))
    path = tmp_path_factory.mktemp("model") / "model.keras"
    modelfile.save(model, path, modelfile.ModelMeta(image_size=16))
    return path


def rewritten(source: Path, dest: Path, replace: dict[str, bytes]) -> Path:
    """A copy of the model zip with some members' bytes replaced."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(dest, "w") as new:
        for name in old.namelist():
            new.writestr(name, replace.get(name, old.read(name)))
    return dest


def meta_of(path: Path) -> dict:
    with zipfile.ZipFile(path) as bundle:
        return json.loads(bundle.read(META))


CORRUPTIONS = {
    "truncated": lambda good, dest: dest.write_bytes(good.read_bytes()[: good.stat().st_size // 2]),
    "garbage": lambda good, dest: dest.write_bytes(b"\x00garbage" * 1000),
    "empty": lambda good, dest: dest.write_bytes(b""),
    "folder": lambda good, dest: dest.mkdir(),
    "meta_not_json": lambda good, dest: rewritten(good, dest, {META: b"{not json"}),
    "meta_a_list": lambda good, dest: rewritten(good, dest, {META: b"[1, 2]"}),
    "meta_no_image_size": lambda good, dest: rewritten(good, dest, {META: json.dumps(
        {k: v for k, v in meta_of(good).items() if k != "image_size"}).encode()}),
    "meta_image_size_text": lambda good, dest: rewritten(good, dest, {META: json.dumps(
        {**meta_of(good), "image_size": "16"}).encode()}),
    "weights_garbage": lambda good, dest: rewritten(good, dest, {"model.weights.h5": b"not hdf5"}),
    "config_garbage": lambda good, dest: rewritten(good, dest, {"config.json": b"{\"class_name\": 3}"}),
    "wrong_input_size": lambda good, dest: rewritten(good, dest, {META: json.dumps(
        {**meta_of(good), "image_size": 64}).encode()}),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_an_unusable_model_file_is_one_line_naming_it_and_the_fix(good_model, tmp_path, corruption):
    path = tmp_path / "model.keras"
    CORRUPTIONS[corruption](good_model, path)
    with pytest.raises(UserError) as caught:
        modelfile.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path} is not a usable model (") and message.endswith(
        "retrain it with `dvc repro train`"), message
    assert "\n" not in message


def test_the_good_model_loads_and_a_missing_one_says_to_train(good_model, tmp_path):
    model, meta = modelfile.load(good_model)
    assert meta.image_size == 16 and model.output_shape == (None, 1)
    with pytest.raises(UserError, match="no such model file; train one"):
        modelfile.load(tmp_path / "model.keras")


@pytest.mark.parametrize("corruption", ["folder", "weights_garbage"])
def test_the_evaluate_stage_reports_it_in_one_line(good_model, tmp_path, corruption):
    project = make_project(tmp_path / "project")
    (project / "models").mkdir(exist_ok=True)
    CORRUPTIONS[corruption](good_model, project / paths.MODEL)
    result = run([sys.executable, "-m", "stages.evaluate"], cwd=project, check=False)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: models/model.keras is not a usable model"), result.stderr
    assert "Traceback" not in result.stderr


def test_the_metadata_reads_back_as_written_and_a_newer_files_extra_keys_are_ignored(good_model, tmp_path):
    written = modelfile.ModelMeta(image_size=16, model="seed_cnn", inference="patch_grid", patch_size=8,
                                  train_params={"epochs": 2}, train_metrics={"epochs": 2})
    assert modelfile.ModelMeta.from_json(written.to_json(), Path("m.keras")) == written
    raw = {**written.to_json(), "made_by_a_newer_version": [1, 2]}
    assert modelfile.read_meta(
        rewritten(good_model, tmp_path / "m.keras", {META: json.dumps(raw).encode()})) == written
    assert written.to_json()["score"] == "P(fake)" and written.to_json()["positive_class"] == "Fake"


def test_the_training_metadata_says_what_data_the_model_learned_from():
    from deepfake_detector.core.params import load_section

    params = load_section("train", ROOT / "params.yaml")
    splits = {s: {"records": 3, "real": 1, "fake": 2, "shards": []} for s in ("train", "validation", "test")}
    source = {"source": "local", "file": "dataset.zip", "bytes": 10, "sha256": "ab" * 32}
    meta = modelfile.ModelMeta.for_training(params, {"image_size": 128, "splits": splits, "source": source},
                                            {"epochs": 2})
    assert meta.trained_on == {**source, "images": {s: {"real": 1, "fake": 2} for s in splits}}
    assert meta.stored_image_size == 128 and not meta.trained_on_sample()
    assert modelfile.ModelMeta.from_json(meta.to_json(), Path("m.keras")) == meta
    sample = modelfile.ModelMeta.for_training(
        params, {"image_size": 128, "splits": splits, "source": {**source, "source": "sample"}}, {})
    assert sample.trained_on_sample()
    # records.json from before this version: the source is unknown, never taken for the sample
    unknown = modelfile.ModelMeta.for_training(params, {"image_size": 128, "splits": splits}, {})
    assert unknown.trained_on["source"] is None and not unknown.trained_on_sample()
    assert not modelfile.ModelMeta(image_size=16).trained_on_sample()  # a file that doesn't say


@pytest.mark.parametrize(("raw", "message"), [
    ({"class_names": ["Fake", "Real"], "image_size": 16}, "label map"),
    ({"image_size": 16, "inference": "pooled_crops"}, "newer version"),
    ({"image_size": 16, "inference": "patch_grid", "patch_size": 32}, "patch_size in \\(0, image_size\\]"),
    ({"image_size": True}, "not a positive integer"),
])
def test_metadata_a_scorer_cannot_use_is_refused_in_one_line(raw, message):
    raw = {"class_names": ["Real", "Fake"], **raw}
    with pytest.raises(UserError, match=message) as refused:
        modelfile.ModelMeta.from_json(raw, Path("m.keras"))
    assert "\n" not in str(refused.value) and str(refused.value).startswith("m.keras")
