"""deepfake_detector.data.images.inspect: every verdict, and the contract that every payload it returns
decodes in TensorFlow exactly as training will decode it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).parent))
import badimages as bad
from deepfake_detector.data.images import CONVERT_REASONS, SKIP_REASONS, inspect, phash64

SIZE, MAX_PIXELS = bad.IMAGE_SIZE, bad.MAX_PIXELS
ROOT = Path(__file__).resolve().parents[1]


def tf_decode(payload: bytes) -> np.ndarray:
    """Exactly how training decodes a stored image."""
    return tf.io.decode_image(payload, channels=3, expand_animations=False).numpy()


def tf_accepts(data: bytes) -> bool:
    try:
        tf_decode(data)
        return True
    except tf.errors.InvalidArgumentError:
        return False


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def check_stored(result, size: int = SIZE) -> np.ndarray:
    """What every non-skipped verdict must satisfy; returns the decoded stored pixels."""
    assert result.status in ("ok", "converted")
    pixels = tf_decode(result.payload)
    assert pixels.shape == (size, size, 3) and pixels.dtype == np.uint8
    assert isinstance(result.phash, int) and 0 <= result.phash < 2**64
    return pixels


@pytest.mark.parametrize("name", sorted(bad.BAD_IMAGES))
def test_each_odd_input_gets_its_verdict(name):
    builder, status, reason = bad.BAD_IMAGES[name]
    reason = bad.FULL_REASONS.get(name, reason)
    result = inspect(builder(), SIZE, MAX_PIXELS)
    assert (result.status, result.reason) == (status, reason)
    if status == "skipped":
        assert reason in SKIP_REASONS
        assert result.payload is None and result.phash is None
    else:
        assert set(reason.split(";")) <= set(CONVERT_REASONS)
        assert result.payload.startswith(b"\x89PNG\r\n\x1a\n")  # converted means lossless PNG
        check_stored(result)


def _saved(im: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **options)
    return out.getvalue()


MORE_FORMATS = {  # name: (builder, expected reason)
    "bmp": (lambda rgb: _saved(rgb, "BMP"), "non_jpeg"),
    "png_rgb": (lambda rgb: _saved(rgb, "PNG"), "non_jpeg"),  # lossless anyway: never passes
    "png_la": (lambda rgb: _saved(rgb.convert("LA"), "PNG"), "grayscale;alpha;non_jpeg"),
    "png_1bit": (lambda rgb: _saved(rgb.convert("1"), "PNG"), "grayscale;non_jpeg"),
    "apng": (lambda rgb: _saved(rgb, "PNG", save_all=True, append_images=[rgb.rotate(90)]),
             "non_jpeg;animated"),
    "gif_transparent": (lambda rgb: _saved(rgb.quantize(64), "GIF", transparency=0),
                        "alpha;palette;non_jpeg"),
    "tiff_cmyk": (lambda rgb: _saved(rgb.convert("CMYK"), "TIFF"), "cmyk;non_jpeg"),
    "tiff_two_pages": (lambda rgb: _saved(rgb, "TIFF", save_all=True, append_images=[rgb]),
                       "non_jpeg;animated"),
    "jpeg_tiny": (lambda rgb: bad.encode_jpeg(np.asarray(rgb)[:10, :12]), "resized"),
}


@pytest.mark.parametrize("name", sorted(MORE_FORMATS))
def test_more_formats_are_converted(name):
    builder, reason = MORE_FORMATS[name]
    result = inspect(builder(Image.fromarray(bad.photo(30))), SIZE, MAX_PIXELS)
    assert (result.status, result.reason) == ("converted", reason)
    check_stored(result)


def test_skipped_jpegs_are_ones_tensorflow_rejects_too():
    # jpeg_bad_marker decodes in Pillow: only the marker walk catches it, and storing it would
    # break training.
    for name in ("corrupt_jpeg", "jpeg_bad_marker", "truncated_jpeg", "jpeg_missing_eoi"):
        assert not tf_accepts(bad.BAD_IMAGES[name][0]()), name


def test_jpeg_at_size_passes_through_byte_for_byte():
    data = bad.good_jpeg(0)
    result = inspect(data, SIZE, MAX_PIXELS)
    assert (result.status, result.reason, result.format) == ("ok", "", "JPEG")
    assert (result.width, result.height) == (SIZE, SIZE)
    assert result.payload == data
    pixels = check_stored(result)
    # The hash (of the luma libjpeg decodes) matches the grey of what TensorFlow decodes.
    assert hamming(result.phash, phash64(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY))) <= 2


@pytest.mark.parametrize("variant", ["progressive", "restart_markers", "embedded_thumbnail",
                                     "padded", "data_after_eoi"])
def test_harmless_jpeg_variants_pass_through(variant):
    rgb = bad.photo(20)
    if variant == "progressive":
        out = io.BytesIO()
        Image.fromarray(rgb).save(out, "JPEG", quality=90, progressive=True)
        data = out.getvalue()
    elif variant == "restart_markers":  # RSTn markers inside the scan data
        data = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_RST_INTERVAL, 4])[1].tobytes()
    elif variant == "embedded_thumbnail":  # an APP1 segment holding a whole JPEG, SOI to EOI
        thumb = bad.encode_jpeg(bad.photo(21, 32, 32))
        app1 = b"Exif\x00\x00" + thumb
        main = bad.encode_jpeg(rgb)
        data = main[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + main[2:]
    elif variant == "padded":
        data = bad.encode_jpeg(rgb) + bytes(64)
    else:  # libjpeg, and so TensorFlow, stops reading at EOI
        data = bad.encode_jpeg(rgb) + b"trailing bytes"
    result = inspect(data, SIZE, MAX_PIXELS)
    assert result.status == "ok" and result.payload == data
    check_stored(result)


def test_fuzzed_jpegs_never_yield_a_payload_tensorflow_rejects():
    """Seeded random damage to good JPEGs: whatever inspect keeps, TensorFlow must decode."""
    rng = np.random.default_rng(1234)
    originals = [bad.good_jpeg(seed) for seed in range(8)]
    verdicts = {"ok": 0, "converted": 0, "skipped": 0}
    for _ in range(300):
        data = bytearray(originals[rng.integers(len(originals))])
        start, end = 700, len(data) - 2  # roughly the scan data
        where = int(rng.integers(start, end))
        kind = rng.integers(4)
        if kind == 0:  # burst of garbage
            data[where:where + 32] = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
        elif kind == 1:  # inserted garbage
            count = int(rng.integers(1, 200))
            data[where:where] = rng.integers(0, 256, count, dtype=np.uint8).tobytes()
        elif kind == 2:  # flipped bit
            data[where] ^= 1 << int(rng.integers(8))
        else:  # cut short
            del data[where:]
        result = inspect(bytes(data), SIZE, MAX_PIXELS)
        verdicts[result.status] += 1
        if result.status != "skipped":
            check_stored(result)
    assert verdicts["ok"] and verdicts["skipped"]  # both kinds of verdict were exercised


def test_resized_jpeg_is_stored_losslessly():
    data = bad.wrong_size_jpeg()  # 300 x 200
    result = inspect(data, SIZE, MAX_PIXELS)
    assert (result.status, result.width, result.height) == ("converted", 300, 200)
    original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    crop = original[:, 50:250]  # centre square
    expected = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)  # enlarging
    np.testing.assert_array_equal(check_stored(result), expected)


def test_shrinking_uses_area_interpolation():
    rgb = bad.photo(21, width=512, height=640)
    result = inspect(bad.encode_jpeg(rgb), SIZE, MAX_PIXELS)
    assert result.reason == "resized"
    decoded = np.asarray(Image.open(io.BytesIO(bad.encode_jpeg(rgb))).convert("RGB"))
    expected = cv2.resize(decoded[64:576], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(check_stored(result), expected)


def test_image_size_is_a_parameter():
    result = inspect(bad.good_jpeg(0), 128, MAX_PIXELS)
    assert (result.status, result.reason) == ("converted", "resized")
    check_stored(result, size=128)


def test_grayscale_becomes_three_equal_channels():
    pixels = check_stored(inspect(bad.grayscale_jpeg(), SIZE, MAX_PIXELS))
    assert (pixels == pixels[..., :1]).all()


def test_alpha_is_dropped_not_composited():
    pixels = check_stored(inspect(bad.png_with_alpha(), SIZE, MAX_PIXELS))
    np.testing.assert_array_equal(pixels, bad.photo(5))  # colour kept where alpha is 0 too
    np.testing.assert_array_equal(pixels, tf_decode(bad.png_with_alpha()))  # as TF itself does


def test_16bit_is_scaled_not_clipped():
    values = np.zeros((SIZE, SIZE), np.uint16)
    values[0, :6] = [0, 255, 256, 32768, 65280, 65535]
    result = inspect(bad.png_16bit_gray(values), SIZE, MAX_PIXELS)
    assert result.reason == "grayscale;16bit;non_jpeg"
    assert check_stored(result)[0, :6, 0].tolist() == [0, 0, 1, 128, 255, 255]
    rgb = check_stored(inspect(bad.png_16bit(), SIZE, MAX_PIXELS))
    np.testing.assert_array_equal(rgb[1:], bad.photo(7)[1:])  # v * 257 -> v
    assert rgb[0, 0].tolist() == [255, 255, 255]


def test_cmyk_matches_tensorflows_own_decoding():
    data = bad.cmyk_jpeg()
    pixels = check_stored(inspect(data, SIZE, MAX_PIXELS))
    assert np.abs(pixels.astype(int) - tf_decode(data)).max() <= 2


def test_too_large_is_decided_from_the_header():
    result = inspect(bad.good_jpeg(0), SIZE, SIZE * SIZE - 1)
    assert (result.status, result.reason) == ("skipped", "too_large")
    assert (result.width, result.height) == (SIZE, SIZE)
    tracemalloc.start()
    result = inspect(bad.decompression_bomb(), SIZE, MAX_PIXELS)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (result.reason, result.width, result.height) == ("too_large", 20_000, 20_000)
    assert peak < 50 * 2**20


def test_bomb_costs_no_memory_and_images_py_imports_no_tensorflow():
    # tracemalloc cannot see Pillow's C allocations: measure the peak RSS of a fresh process.
    script = textwrap.dedent("""
        import resource, sys
        sys.path.insert(0, "tests")
        import badimages
        from deepfake_detector.data.images import inspect
        bomb = badimages.decompression_bomb()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = inspect(bomb, 256, 50_000_000)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(result.reason, grown, "tensorflow" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "too_large"
    assert int(out[1]) < 50 * 1024  # KiB
    assert out[2] == "False"


def test_phash_survives_reencoding_and_separates_unrelated_images():
    hashes = []
    for seed in range(8):
        result = inspect(bad.good_jpeg(seed), SIZE, MAX_PIXELS)
        again = inspect(bad.encode_jpeg(tf_decode(result.payload), quality=90), SIZE, MAX_PIXELS)
        assert hamming(result.phash, again.phash) <= 3
        as_png = inspect(cv2.imencode(".png", cv2.cvtColor(tf_decode(result.payload),
                                                           cv2.COLOR_RGB2BGR))[1].tobytes(),
                         SIZE, MAX_PIXELS)
        assert as_png.status == "converted" and hamming(result.phash, as_png.phash) <= 3
        hashes.append(result.phash)
    # Unrelated images: ~32 bits apart on average (measured: 1,600 real faces, 1.28 M pairs,
    # minimum 6, 1st percentile 18; these generated images, 1,770 pairs, minimum 16).
    apart = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:]]
    assert min(apart) > 12 and np.mean(apart) > 24


def test_never_raises_on_junk():
    rng = np.random.default_rng(7)
    junk = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a\x01", b"RIFF\0\0\0\0WEBPVP8 ",
            bad.good_jpeg(0)[:300], bad.palette_png()[:500], bad.animated_gif()[:-100]]
    junk += [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in rng.integers(1, 4000, 20)]
    for data in junk:
        result = inspect(data, SIZE, MAX_PIXELS)
        if result.status == "skipped":
            assert result.reason in SKIP_REASONS
        else:
            check_stored(result)
