"""The inference path's parts: training's pixels, the model's rule, refusals, face boxes and crops."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image, ImageOps

tf = pytest.importorskip("tensorflow")
import keras

from badimages import BAD_IMAGES, encode_jpeg, photo

from deepfake_detector.apps import faces
from deepfake_detector.model import inference
from deepfake_detector.model import modelfile
from deepfake_detector.data import pixels, records
from deepfake_detector.core.errors import UserError
from deepfake_detector.apps.predict import expand

FACE_IMAGE = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)  # a real portrait, 512x600


def test_predict_sees_exactly_the_pixels_training_sees(tmp_path):
    """The same file bytes through training's tf.data records and through predict's decode + fit."""
    payloads = [encode_jpeg(photo(1, 96, 96)), cv2.imencode(".png", photo(2, 96, 96))[1].tobytes()]
    writer = records.ShardWriter(tmp_path, "train", 8)
    for i, payload in enumerate(payloads):
        writer.write(payload, i % 2, i)
    writer.close()
    files = [str(tmp_path / shard["file"]) for shard in writer.shards]
    for size in (40, 96):
        trained = [image for image, _, _ in records.decoded_dataset(files, size).as_numpy_iterator()]
        for payload, expected in zip(payloads, trained):
            assert np.array_equal(inference.fit(inference.decode(payload), size), expected)


def test_the_area_resize_to_the_same_size_changes_nothing():
    image = photo(5, 64, 64)
    assert np.array_equal(pixels.resize_image(image, 64).numpy(), image)


def _linear_model(path, meta: dict) -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.GlobalAveragePooling2D()(inputs)))
    model.layers[-1].set_weights([np.full((3, 1), 0.01), np.array([-1.0])])
    modelfile.save(model, path, modelfile.ModelMeta(image_size=16, **meta))
    return model


def test_the_scorer_applies_the_models_rule_in_any_batch_size(tmp_path):
    model = _linear_model(tmp_path / "m.keras", {})
    scorer = inference.Scorer.load(tmp_path / "m.keras")
    images = np.random.default_rng(0).integers(0, 256, (37, 16, 16, 3), dtype=np.uint8)
    expected = model.predict_on_batch(images.astype(np.float32)).reshape(-1)  # float32 in [0, 255]
    for batch in (1, 8, 64):
        np.testing.assert_allclose(scorer.score(images, batch), expected, rtol=1e-6)
    assert scorer.score(images[:0]).shape == (0,)


def test_the_patch_grid_rule_scores_the_mean_logit_of_the_grid(tmp_path):
    from deepfake_detector.model import builders as models

    keras.utils.set_random_seed(3)
    model = models.build("texture_cnn", None)
    modelfile.save(model, tmp_path / "m.keras",
                   modelfile.ModelMeta(image_size=40, inference="patch_grid", patch_size=16))
    scorer = inference.Scorer.load(tmp_path / "m.keras")
    images = np.random.default_rng(1).integers(0, 256, (5, 40, 40, 3), dtype=np.uint8)
    # the 8-px remainder is left out
    tiles = [images[:, y:y + 16, x:x + 16] for y in (0, 16) for x in (0, 16)]
    p = np.stack([model.predict_on_batch(t.astype(np.float32)).reshape(-1) for t in tiles], axis=1)
    expected = 1 / (1 + np.exp(-np.log(p / (1 - p)).mean(axis=1)))
    np.testing.assert_allclose(scorer.score(images, 2), expected, rtol=1e-4)
    whole = model.predict_on_batch(images.astype(np.float32)).reshape(-1)
    assert not np.allclose(scorer.score(images), whole, rtol=1e-3)  # the rule, not the whole image


def test_a_patch_grid_model_without_a_patch_size_is_refused(tmp_path):
    _linear_model(tmp_path / "m.keras", {"inference": "patch_grid"})
    with pytest.raises(UserError, match="patch_size"):
        inference.Scorer.load(tmp_path / "m.keras")


def test_a_model_with_an_unknown_inference_rule_is_refused(tmp_path):
    _linear_model(tmp_path / "m.keras", {"inference": "pooled_crops"})
    with pytest.raises(UserError, match="newer version") as refused:
        inference.Scorer.load(tmp_path / "m.keras")
    assert "\n" not in str(refused.value) and "pooled_crops" in str(refused.value)


@pytest.mark.parametrize("name", [n for n, (_, status, _) in BAD_IMAGES.items() if status == "skipped"])
def test_unusable_images_are_refused_with_the_preprocess_reason(name):
    build, _, reason = BAD_IMAGES[name]
    with pytest.raises(inference.Unreadable) as refused:
        inference.decode(build())
    assert refused.value.reason == reason


def test_odd_but_valid_images_decode_to_rgb_and_tiff_is_unsupported(tmp_path):
    for name in ("png_with_alpha", "grayscale_jpeg", "png_16bit", "cmyk_jpeg", "palette_png",
                 "animated_gif", "webp_lossless"):
        rgb = inference.decode(BAD_IMAGES[name][0]())
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, name
    for mode in ("RGB", "P", "1"):  # TensorFlow alone gets palette BMPs wrong and refuses 1-bit ones
        image = Image.fromarray(photo(1, 32, 32)).convert(mode)
        image.save(tmp_path / "a.bmp")
        expected = np.asarray(image.convert("RGB"))
        assert np.array_equal(inference.decode((tmp_path / "a.bmp").read_bytes()), expected), mode
    Image.fromarray(photo(1, 32, 32)).save(tmp_path / "a.tiff")
    with pytest.raises(inference.Unreadable) as refused:
        inference.decode((tmp_path / "a.tiff").read_bytes())
    assert refused.value.reason == "unsupported"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_photos_are_turned_upright_by_their_exif_orientation(orientation):
    stored = Image.fromarray(photo(2, 40, 24))
    exif = stored.getexif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    stored.save(out, "PNG", exif=exif.tobytes())
    shown = ImageOps.exif_transpose(Image.open(io.BytesIO(out.getvalue())))
    assert np.array_equal(inference.decode(out.getvalue()), np.asarray(shown))


def test_the_finder_finds_a_real_face_and_none_in_clutter():
    portrait = cv2.cvtColor(cv2.imread(FACE_IMAGE), cv2.COLOR_BGR2RGB)
    finder = faces.FaceFinder()
    (x, y, w, h), = finder.boxes(portrait)
    assert x < 265 < x + w and y < 215 < y + h and 150 < w < 330  # her face, not the uniform
    (sx, sy, side, _), = finder.squares(portrait, 0.2)
    assert side == round(w * 1.4) and sy < y and sx < x
    assert finder.boxes(photo(3, 640, 360)) == []


def test_a_large_image_is_searched_at_a_bounded_size_in_its_own_pixels():
    portrait = cv2.cvtColor(cv2.imread(FACE_IMAGE), cv2.COLOR_BGR2RGB)
    small, = faces.FaceFinder().boxes(portrait)
    big, = faces.FaceFinder(max_side=300).boxes(cv2.resize(portrait, (1024, 1200)))  # found at 1/4
    assert all(abs(b - 2 * s) < 0.15 * 2 * small[2] for b, s in zip(big, small))


@pytest.mark.parametrize("box, margin, shape, expected", [
    ((100, 100, 50, 50), 0.2, (400, 600), (90, 87, 70, 70)),  # grown, and raised by 0.065 x 50
    ((0, 0, 50, 50), 0.5, (400, 600), (0, 0, 100, 100)),  # moved into the image
    ((560, 350, 40, 40), 0.5, (400, 600), (520, 320, 80, 80)),
    ((10, 10, 300, 300), 0.5, (320, 640), (0, 0, 320, 320)),  # shrunk to the image's height
])
def test_the_crop_square_lies_in_the_image(box, margin, shape, expected):
    assert faces.square(box, margin, *shape) == expected


def test_folders_are_expanded_recursively_in_order_without_hidden_files_or_repeats(tmp_path):
    for rel in ("b/2.jpg", "b/1.png", "a.jpg", ".hidden/x.jpg", "b/.DS_Store"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = expand([tmp_path / "a.jpg", tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.jpg", "b/1.png", "b/2.jpg"]
