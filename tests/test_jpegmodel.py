"""The JPEG-domain features of ``rich_dct``: the fixed block DCT is JPEG's, the statistics count
what they say, and the model survives its file."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

import keras

from deepfake_detector.model import jpegmodel
from deepfake_detector.model import modelfile
from deepfake_detector.model import builders as models
from deepfake_detector.model import richmodel


def _block_dct(images: np.ndarray) -> np.ndarray:
    import keras

    inputs = keras.Input(images.shape[1:])
    kernel, bias = jpegmodel.block_dct_kernel(75)
    conv = keras.layers.Conv2D(64, 8, strides=8)
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([kernel, bias])
    return model.predict_on_batch(images.astype(np.float32))


def test_the_block_dct_is_cv2_dct_of_the_level_shifted_luma_over_the_q75_table():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (1, 16, 24, 3)).astype(np.float32)
    coefficients = _block_dct(image)  # [1, 2, 3, 64]
    luma = image[0] @ jpegmodel.LUMA_WEIGHTS - 128
    table = jpegmodel.quantisation_table(75)
    assert table[0, :4].tolist() == [8, 6, 5, 8]  # libjpeg's q75 luminance table starts so
    for row, col in [(0, 0), (1, 2)]:
        expected = cv2.dct(np.ascontiguousarray(luma[8 * row:8 * row + 8, 8 * col:8 * col + 8])) / table
        np.testing.assert_allclose(coefficients[0, row, col].reshape(8, 8), expected, atol=2e-4)


def test_a_decoded_q75_jpeg_gives_back_near_integer_coefficients_and_off_grid_it_does_not():
    """On the grid, the decoded file's coefficients over the table are the stored integers up to
    decoding noise; shifted by 4 pixels the blocks straddle the grid and they are not."""
    rng = np.random.default_rng(1)
    smooth = cv2.GaussianBlur(rng.uniform(0, 255, (64, 64, 3)).astype(np.float32), (0, 0), 0.7)
    encoded = io.BytesIO()
    Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8)).save(encoded, "JPEG", quality=75)
    decoded = np.asarray(Image.open(encoded)).astype(np.float32)[None]
    on_grid, off_grid = _block_dct(decoded[:, :56, :56]), _block_dct(decoded[:, 4:60, 4:60])
    on_error = np.abs(on_grid - np.round(on_grid)).mean()
    assert on_error < 0.03 and np.abs(off_grid - np.round(off_grid)).mean() > 3 * on_error


def test_the_statistics_are_frequencies_that_count_what_they_say():
    coefficients = np.zeros((2, 2, 2, 64), np.float32)
    coefficients[0, :, :, 1] = 7.0  # image 0: frequency (0, 1) clipped to +5 in every block
    coefficients[1, 0, 0, 2] = -1.2  # image 1: one block's frequency (0, 2) rounds to -1
    layer = jpegmodel.CoefficientStatistics(threshold=5, pair_threshold=3)
    stats = layer(coefficients).numpy()
    assert stats.shape == (2, layer.compute_output_shape((2, 2, 2, 64))[1])
    histograms = stats[:, :63 * 11].reshape(2, 63, 11)
    np.testing.assert_allclose(histograms.sum(-1), 1.0)  # each frequency's histogram sums to 1
    assert histograms[0, 0, 10] == 1.0 and histograms[0, 1, 5] == 1.0  # mode (0,1): all +5; (0,2): all 0
    assert histograms[1, 1, 4] == 0.25 and histograms[1, 1, 5] == 0.75
    inter_rows = stats[:, 63 * 11:63 * 11 + 63 * 16].reshape(2, 63, 16)
    assert inter_rows[0, 0, 3 * 4 + 3] == 1.0  # |c| = 3 (capped) beside |c| = 3 in the next block


@pytest.mark.parametrize("size", [32, 40])
def test_rich_dct_saves_loads_and_scores_identically(tmp_path, size):
    model = models.build("rich_dct", size)
    assert all(not layer.trainable_weights for layer in model.layers if layer.name != "p_fake")
    images = np.random.default_rng(2).uniform(0, 255, (3, size, size, 3)).astype(np.float32)
    modelfile.save(model, tmp_path / "m.keras", modelfile.ModelMeta(image_size=size))
    loaded, _ = modelfile.load(tmp_path / "m.keras")  # its custom layers are registered on load
    np.testing.assert_allclose(loaded.predict_on_batch(images), model.predict_on_batch(images), rtol=1e-6)



def test_the_chroma_dct_is_cv2_dct_of_the_2x2_averaged_cb_cr_over_the_chroma_table():
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, jpegmodel.chroma_features(inputs))
    assert model.output_shape == (None, 2 * 4501)
    for index, name in enumerate(("cb", "cr")):
        coefficients = keras.Model(inputs, model.get_layer(f"fixed_block_dct_{name}").output)(image).numpy()
        chroma = image[0] @ jpegmodel.CHROMA_WEIGHTS[index]  # JFIF's Cb / Cr less their offset of 128
        half = chroma.reshape(16, 2, 16, 2).mean(axis=(1, 3))  # 4:2:0 stores chroma at half size
        expected = cv2.dct(np.ascontiguousarray(half[8:16, 0:8])) / jpegmodel.CHROMA_TABLE_Q75
        np.testing.assert_allclose(coefficients[0, 1, 0].reshape(8, 8), expected, atol=2e-4)


def test_the_square_root_normalises_frequencies_and_standardise_sees_it():
    frequencies = np.array([[0.0, 0.25, 1.0], [0.04, 0.0, 0.81]], np.float32)
    np.testing.assert_allclose(richmodel.SquareRoot()(frequencies).numpy(), np.sqrt(frequencies), rtol=1e-6)
    inputs = keras.Input((3,))
    head = keras.Model(inputs, richmodel.head(inputs, 0.01, power=True))
    richmodel.standardise(head, frequencies)
    norm = head.get_layer("head_standardise")
    np.testing.assert_allclose(norm.mean.numpy().ravel(), np.sqrt(frequencies).mean(0), rtol=1e-5)
