"""The tf.data input pipeline, the RAM-budgeted cache, augmentation and the model file."""

from __future__ import annotations

import types

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras

from deepfake_detector.training import augment
from deepfake_detector.model import modelfile
from deepfake_detector.model import builders as models
from deepfake_detector.core import paths
from deepfake_detector.data import records
from deepfake_detector.training import feed
from deepfake_detector.core.files import write_json

NO_AUGMENT = dict(flip=False, jpeg_probability=0.0, jpeg_quality=[60, 95], blur_probability=0.0,
                  blur_sigma=[0.3, 1.2], colour_probability=0.0, colour_strength=0.2, rescale_probability=0.0,
                  rescale_range=[0.5, 0.9], noise_probability=0.0, noise_sigma=[2.0, 8.0],
                  cutout_probability=0.0, cutout_fraction=0.25)


def augment_params(**changes) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{**NO_AUGMENT, **changes})


AUGMENT = augment_params(flip=True, jpeg_probability=0.5, blur_probability=0.5)


def write_records(folder, n: int = 40, shard_images: int = 8, size: int = 32, textured: bool = False) -> dict:
    """n images (label = index % 2, brightness encodes the index) in shards; returns the index.
    ``textured``: random pixels instead (flat images all give a texture model the same features)."""
    writer = records.ShardWriter(folder, "train", shard_images)
    rng = np.random.default_rng(5)
    for i in range(n):
        image = (rng.integers(0, 256, (size, size, 3), dtype=np.uint8) if textured
                 else np.full((size, size, 3), i * 5 % 256, np.uint8))
        writer.write(cv2.imencode(".png", image)[1].tobytes(), i % 2, i)
    writer.close()
    total = {"records": n, "real": (n + 1) // 2, "fake": n // 2, "shards": writer.shards}
    catalog = {"image_size": size, "splits": {"train": total, "validation": total, "test": total}}
    write_json(folder / paths.CATALOG_FILE, catalog)
    return catalog


def epoch_indices(folder, catalog, cache_images: int, augment_params=AUGMENT):
    data, cached = feed.train_dataset(folder, catalog, 32, 8, cache_images, augment_params, seed=1)
    # recover each image's index from its brightness (flip/blur/jpeg keep a flat image flat)
    seen = [int(round(float(tf.reduce_mean(tf.cast(img, tf.float32))) / 5))
            for images, _ in data for img in images]
    return sorted(seen), cached


@pytest.mark.parametrize("budget, expect_cached", [(1000, 40), (20, 16), (0, 0)])
def test_every_image_once_per_epoch_whatever_the_cache_budget(tmp_path, budget, expect_cached):
    catalog = write_records(tmp_path)
    no_aug = augment_params()
    seen, cached = epoch_indices(tmp_path, catalog, budget, no_aug)
    assert cached == expect_cached  # whole shards of 8 that fit
    assert seen == list(range(40))


def test_labels_and_indices_survive_the_records(tmp_path):
    catalog = write_records(tmp_path)
    data = feed.eval_dataset(tmp_path, catalog, "train", 32, 16)
    labels = np.concatenate([y.numpy() for _, y, _ in data])
    indices = np.concatenate([i.numpy() for _, _, i in data])
    assert (labels == indices % 2).all() and sorted(indices) == list(range(40))


def test_resize_to_the_model_size(tmp_path):
    catalog = write_records(tmp_path, size=32)
    images, _, _ = next(iter(feed.eval_dataset(tmp_path, catalog, "train", 16, 4)))
    assert images.shape == (4, 16, 16, 3) and images.dtype == tf.float32


def test_augmentation_is_seeded_and_changes_pixels():
    rng = np.random.default_rng(0)
    image = tf.constant(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    apply = augment.make_augment(augment_params(flip=True, jpeg_probability=1.0, jpeg_quality=[50, 60],
                                                blur_probability=1.0, blur_sigma=[1.0, 1.0]))
    first, again = apply(image, tf.constant([1, 2])), apply(image, tf.constant([1, 2]))
    assert first.dtype == tf.uint8 and first.shape == image.shape
    assert np.array_equal(first, again)
    assert not np.array_equal(first, image)
    assert (float(tf.math.reduce_std(tf.cast(first, tf.float32)))
            < float(tf.math.reduce_std(tf.cast(image, tf.float32))))


@pytest.mark.parametrize("kind", ["colour", "rescale", "noise", "cutout"])
def test_each_new_augmentation_is_seeded_and_does_what_it_says(kind):
    image = tf.constant(np.random.default_rng(0).integers(40, 216, (32, 32, 3), dtype=np.uint8))
    apply = augment.make_augment(augment_params(**{f"{kind}_probability": 1.0, "colour_strength": 0.5,
                                                   "rescale_range": [0.5, 0.5], "cutout_fraction": 0.25,
                                                   "noise_sigma": [5.0, 5.0]}))
    first, again = apply(image, tf.constant([3, 4])), apply(image, tf.constant([3, 4]))
    assert first.dtype == tf.uint8 and first.shape == image.shape and np.array_equal(first, again)
    changed = np.any(first.numpy() != image.numpy(), axis=-1)
    if kind == "cutout":  # one 8x8 mid-grey square, the rest untouched
        assert changed.sum() == 64 and (first.numpy()[changed] == 128).all()
    elif kind == "rescale":  # pixel-scale detail is what a downscale loses
        def detail(x):
            return float(np.abs(np.diff(np.asarray(x, np.float32), axis=0)).mean())
        assert detail(first) < 0.7 * detail(image)
    elif kind == "noise":  # sigma 5 grey levels, centred, rounded back to uint8
        difference = first.numpy().astype(np.float32) - image.numpy()
        assert abs(difference.mean()) < 0.5 and 4.5 < difference.std() < 5.5
    else:
        assert changed.mean() > 0.9


def test_batch_augmentation_decides_image_by_image_and_keeps_the_order():
    """Per-image draws over a batch: with flip at 0.5 some images are mirrored and the others are
    untouched, each in its own place; JPEG at 0.3 changes some and leaves the rest bit-exact."""
    images = tf.constant(np.random.default_rng(1).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8))
    flipped = augment.make_batch_augment(augment_params(flip=True))(images, tf.constant([5, 6])).numpy()
    mirrored = [np.array_equal(out, img[:, ::-1]) for out, img in zip(flipped, images.numpy())]
    kept = [np.array_equal(out, img) for out, img in zip(flipped, images.numpy())]
    assert all(m or k for m, k in zip(mirrored, kept)) and 10 < sum(mirrored) < 54
    jpeg = augment.make_batch_augment(augment_params(jpeg_probability=0.3))
    out = jpeg(images, tf.constant([7, 8])).numpy()
    assert np.array_equal(out, jpeg(images, tf.constant([7, 8])).numpy())
    changed = sum(not np.array_equal(o, i) for o, i in zip(out, images.numpy()))
    assert 5 < changed < 35


def test_cached_batches_are_untouched_without_augmentation(tmp_path):
    """With every augmentation off, the pixels are the stored ones (as float32 in [0, 255]) and each
    label stays with its image."""
    catalog = write_records(tmp_path)
    data, cached = feed.train_dataset(tmp_path, catalog, 32, 8, 1000, augment_params(), seed=1)
    assert cached == 40
    for images, labels in data:
        assert images.dtype == tf.float32 and images.shape[1:] == (32, 32, 3)
        index = np.round(images.numpy()[:, 0, 0, 0] / 5).astype(int)
        assert (images.numpy() == images.numpy()[:, :1, :1, :1]).all()  # flat, as written
        assert (labels.numpy() == index % 2).all()


def test_patch_training_gives_every_image_k_random_crops_per_epoch(tmp_path):
    catalog = write_records(tmp_path)
    data, _ = feed.train_dataset(tmp_path, catalog, 32, 8, 1000, augment_params(), seed=1,
                                     patch_size=16, patches_per_image=3)
    batches = list(data)
    assert all(images.shape[1:] == (16, 16, 3) for images, _ in batches)
    seen = [int(round(float(tf.reduce_mean(tf.cast(img, tf.float32))) / 5))
            for images, _ in batches for img in images]
    assert sorted(seen) == sorted(list(range(40)) * 3)


BIG_BACKBONES = ("efficientnet_b0", "xception")  # several seconds each on 2 cores


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in BIG_BACKBONES
                                  else name for name in sorted(models.MODELS)])
def test_every_registered_model_learns_from_raw_pixels(name):
    """One score per image, and three training steps on one batch (fakes darker) lower the loss: the
    model's input scaling, layers and sigmoid head are wired so that gradients reach the pixels' labels."""
    keras.utils.set_random_seed(0)
    model = models.build(name, 32 if name != "xception" else 71)
    size = model.input_shape[1]
    labels = np.array([0, 1] * 4, np.float32)
    images = np.random.default_rng(0).uniform(0, 255, (8, size, size, 3)).astype(np.float32)
    images[labels == 1] *= 0.5
    fixed = models.MODELS[name].fixed_features
    if fixed:  # as training does: the head standardised on its features (VGG16's run in the hundreds)
        from deepfake_detector.model import richmodel

        extractor = keras.Model(model.inputs, model.get_layer(fixed).output)
        richmodel.standardise(model, extractor.predict_on_batch(images))
    assert model.predict_on_batch(images).shape == (8, 1)
    # eager: tracing the training step of the bigger models would cost more than the steps themselves
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", run_eagerly=True)
    losses = [float(model.train_on_batch(images, labels)) for _ in range(3)]
    assert losses[-1] < losses[0], losses


def test_seed_cnn_is_the_4_6m_parameter_baseline():
    assert 4.5e6 < models.build("seed_cnn", 128).count_params() < 4.7e6


def test_imagenet_weights_offline_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # empty weight cache → must download
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens: fails fast, offline
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    from deepfake_detector.core.errors import UserError

    with pytest.raises(UserError, match="train.weights=none"):
        models.build("mobilenet_v3_small", 96, weights="imagenet")


def test_model_file_carries_the_label_map_and_input_size(tmp_path):
    model = models.build("seed_cnn", 32)
    modelfile.save(model, tmp_path / "model.keras", modelfile.ModelMeta(image_size=32))
    meta = modelfile.read_meta(tmp_path / "model.keras")
    assert meta.to_json()["class_names"] == ["Real", "Fake"] and meta.image_size == 32
    loaded, meta = modelfile.load(tmp_path / "model.keras")
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-5)
    assert not list(tmp_path.glob(".*"))  # no temp files left behind
