"""`predict --explain DIR`: a Grad-CAM PNG per scored crop, the size of the crop the model saw, from
the last convolution block found in the model; not constant for a trained model."""

from __future__ import annotations

import csv
import json

import cv2
import keras
import numpy as np
import pytest

from trained import run_cli

from deepfake_detector.apps import explain
from deepfake_detector.model import inference
from deepfake_detector.model import builders as models
from deepfake_detector.model import modelfile
from deepfake_detector.core.errors import UserError


def _saved(model, path, size):
    modelfile.save(model, path, modelfile.ModelMeta(image_size=size))
    return inference.Scorer.load(path)


def test_the_feature_map_is_the_last_convolution_blocks_output_found_from_the_model(tmp_path):
    keras.backend.clear_session()  # layer names are numbered across the session: start the count afresh
    _, _, name = explain.split_model(models.build("compact_cnn", 64))
    assert name == "re_lu_6"  # the activation after the last convolution (conv2d_6), before the pooling

    # a nested backbone (as xception is built): looked for inside it, the chain around it rebuilt
    inner_in = keras.Input((16, 16, 3))
    inner = keras.Model(inner_in, keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(4, 3, activation="relu", name="last_conv")(inner_in)), name="backbone")
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dropout(0.2)(
        inner(keras.layers.Rescaling(1 / 255)(inputs))))
    scorer = _saved(keras.Model(inputs, outputs), tmp_path / "nested.keras", 16)
    assert explain.split_model(scorer.model)[2] == "backbone/last_conv"
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    cams, scores = explain.GradCam(scorer).heatmaps(images, [True] * 5)
    assert cams.shape == (5, 16, 16) and cams.min() >= 0 and cams.max() <= 1
    np.testing.assert_allclose(scores, scorer.score(images), atol=1e-6)  # the same model, split

    flat = keras.Input((16, 16, 3))  # no convolution at all: one line saying so
    plain = keras.Model(flat, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(flat)))
    with pytest.raises(UserError, match="no convolution layer") as refused:
        explain.GradCam(_saved(plain, tmp_path / "plain.keras", 16))
    assert "\n" not in str(refused.value)


@pytest.mark.slow
def test_predict_explain_writes_a_heatmap_png_per_scored_crop(trained, media, tmp_path):
    folder = tmp_path / "heatmaps"
    code, out, err = run_cli(trained, "predict", str(media["face"]), str(media["no_face"]),
                             str(media["video"]), "--fps", "2", "--format", "json", "--explain", str(folder))
    assert code == 0, err
    crops = [r for r in json.loads(out)["rows"] if r["kind"] == "face"]
    listed = list(csv.DictReader((folder / "explain.csv").open()))
    # the portrait and up to 6 video frames; the faceless picture has no crop, so no heatmap
    assert len(listed) == len(crops) == len(list(folder.glob("*.png"))) >= 6
    size = inference.Scorer.load(trained / "models/model.keras").image_size
    for row, crop in zip(listed, crops):
        assert row["file"] == crop["file"] and row["frame"] == (
            "" if crop["frame"] is None else str(crop["frame"]))
        assert row["box"] == ",".join(map(str, crop["box"])) and float(row["p_fake"]) == crop["p_fake"]
        assert row["label"] == crop["label"]
        png = cv2.imread(str(folder / row["png"]))
        assert png.shape == (size, size, 3)  # the crop as the model saw it
    assert f"{len(crops)} heatmaps in {folder}" in err


@pytest.mark.slow
def test_the_heatmap_of_a_trained_model_is_not_constant(trained, media):
    scorer = inference.Scorer.load(trained / "models/model.keras")
    rgb = cv2.cvtColor(cv2.imread(str(media["face"])), cv2.COLOR_BGR2RGB)
    crop = inference.crops(rgb, None, 0.0, scorer.image_size)[0].pixels
    rng = np.random.default_rng(1)
    images = np.stack([crop, *(np.clip(crop.astype(int) + rng.integers(-40, 40, crop.shape), 0, 255)
                               .astype(np.uint8) for _ in range(3))])
    fake = scorer.score(images) >= 0.5
    cams, scores = explain.GradCam(scorer).heatmaps(images, fake)
    # it explains the scores predict gives
    np.testing.assert_allclose(scores, scorer.score(images), atol=1e-5)
    for cam in cams:
        assert cam.max() == pytest.approx(1.0) and cam.std() > 0.05  # a map with a peak, not a flat field
    png = explain.overlay(crop, cams[0])
    plain = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    assert png.shape == plain.shape and np.abs(png.astype(int) - plain).std() > 5  # the heat shows
