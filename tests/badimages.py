"""Builders for good, bad and odd image files, as bytes, for tests to drop into datasets.

``BAD_IMAGES`` maps a name to ``(builder, expected_status, expected_reason)``: what
``deepfake_detector.data.images.inspect`` returns for ``builder()`` with the default parameters
(``preprocess.image_size`` = ``IMAGE_SIZE``, ``preprocess.max_pixels`` = ``MAX_PIXELS``). The
expected reason is one token: the whole reason when skipped; for converted inputs the defining one
of the ";"-joined reasons (``FULL_REASONS`` has the whole strings).
Every builder is deterministic and cheap (the decompression bomb included: ~50 KB, built in
chunks, never allocating its 400 M pixels).
"""

from __future__ import annotations

import functools
import io
import struct
import zlib

import cv2
import numpy as np
from PIL import Image

IMAGE_SIZE = 256
MAX_PIXELS = 50_000_000


def photo(seed: int, width: int = IMAGE_SIZE, height: int = IMAGE_SIZE) -> np.ndarray:
    """A photo-like RGB array: smooth random colour blobs plus fine noise (JPEGs ~12 KB at 256)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    return np.clip(smooth + rng.normal(0, 3, smooth.shape), 0, 255).astype(np.uint8)


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def _pillow(im: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **options)
    return out.getvalue()


def _scan_start(jpeg: bytes) -> int:
    """Offset of the first entropy-coded byte (just after the SOS header)."""
    sos = jpeg.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], "big")


def good_jpeg(seed: int = 0, size: int = IMAGE_SIZE) -> bytes:
    """An RGB JPEG at the stored size: passes through byte for byte."""
    return encode_jpeg(photo(seed, size, size))


def corrupt_jpeg() -> bytes:
    """512 garbage bytes over the middle of the scan data (TensorFlow rejects it too)."""
    good = good_jpeg(1)
    middle = (_scan_start(good) + len(good)) // 2
    garbage = np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes()
    return good[:middle] + garbage + good[middle + 512:]


def jpeg_bad_marker() -> bytes:
    """A stray APP1 marker in the scan whose length runs past the end of the file.

    Pillow decodes it without complaint; TensorFlow fails with "Input file read error".
    """
    good = good_jpeg(2)
    middle = (_scan_start(good) + len(good)) // 2
    return good[:middle] + b"\xff\xe1\xff\xff" + good[middle:]


def truncated_jpeg() -> bytes:
    good = good_jpeg(3)
    return good[:len(good) * 6 // 10]


def jpeg_missing_eoi() -> bytes:
    """Complete scan data, only the final EOI marker missing."""
    return good_jpeg(4)[:-2]


def zero_byte() -> bytes:
    return b""


def text_as_jpg() -> bytes:
    return b"This is not a picture, whatever its .jpg name says.\n" * 20


def png_with_alpha() -> bytes:
    rgba = np.dstack([photo(5), np.linspace(0, 255, IMAGE_SIZE * IMAGE_SIZE, dtype=np.uint8)
                      .reshape(IMAGE_SIZE, IMAGE_SIZE)])
    return cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))[1].tobytes()


def grayscale_jpeg() -> bytes:
    return encode_jpeg(cv2.cvtColor(photo(6), cv2.COLOR_RGB2GRAY))


def png_16bit() -> bytes:
    """16-bit RGB PNG whose values span the whole range, 65535 included."""
    wide = photo(7).astype(np.uint16) * 257  # 255 -> 65535
    wide[0, 0] = 65535
    return cv2.imencode(".png", cv2.cvtColor(wide, cv2.COLOR_RGB2BGR))[1].tobytes()


def png_16bit_gray(values: np.ndarray | None = None) -> bytes:
    if values is None:
        values = cv2.cvtColor(photo(8), cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    return cv2.imencode(".png", values.astype(np.uint16))[1].tobytes()


def cmyk_jpeg() -> bytes:
    return _pillow(Image.fromarray(photo(9)).convert("CMYK"), "JPEG", quality=90)


def wrong_size_jpeg() -> bytes:
    return encode_jpeg(photo(10, width=300, height=200))


def _palette(seed: int) -> Image.Image:
    return Image.fromarray(photo(seed)).quantize(256, method=Image.Quantize.FASTOCTREE)


def palette_png() -> bytes:
    return _pillow(_palette(11), "PNG")


def animated_gif() -> bytes:
    return _pillow(_palette(12), "GIF", save_all=True, append_images=[_palette(13)], duration=100)


def webp_lossless() -> bytes:
    return _pillow(Image.fromarray(photo(14)), "WEBP", lossless=True)


def icon_file() -> bytes:
    """An image in a format Pillow knows but we do not decode (Windows icon)."""
    return _pillow(Image.fromarray(photo(15, 64, 64)), "ICO")


@functools.lru_cache(maxsize=None)  # ~0.15 s to build
def decompression_bomb(side: int = 20_000) -> bytes:
    """A ~50 KB PNG that claims side x side pixels (400 M at 20000), written by hand.

    1-bit greyscale, every row filter 0 and all zero: the zlib stream is built from one reused
    1 MiB chunk of zeros, so building it never holds more than that.
    """
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    raw_size = side * (1 + (side + 7) // 8)  # filter byte + packed bits per row
    zeros = bytes(1 << 20)
    packer = zlib.compressobj(9)
    parts = [packer.compress(zeros) for _ in range(raw_size >> 20)]
    parts += [packer.compress(zeros[:raw_size & ((1 << 20) - 1)]), packer.flush()]
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
            + chunk(b"IEND", b""))


BAD_IMAGES = {
    "corrupt_jpeg": (corrupt_jpeg, "skipped", "corrupt"),
    "jpeg_bad_marker": (jpeg_bad_marker, "skipped", "corrupt"),
    "truncated_jpeg": (truncated_jpeg, "skipped", "truncated"),
    "jpeg_missing_eoi": (jpeg_missing_eoi, "skipped", "truncated"),
    "zero_byte": (zero_byte, "skipped", "empty"),
    "text_as_jpg": (text_as_jpg, "skipped", "not_image"),
    "icon_file": (icon_file, "skipped", "unsupported"),
    "decompression_bomb": (decompression_bomb, "skipped", "too_large"),
    "png_with_alpha": (png_with_alpha, "converted", "alpha"),
    "grayscale_jpeg": (grayscale_jpeg, "converted", "grayscale"),
    "png_16bit": (png_16bit, "converted", "16bit"),
    "png_16bit_gray": (png_16bit_gray, "converted", "16bit"),
    "cmyk_jpeg": (cmyk_jpeg, "converted", "cmyk"),
    "wrong_size_jpeg": (wrong_size_jpeg, "converted", "resized"),
    "palette_png": (palette_png, "converted", "palette"),
    "animated_gif": (animated_gif, "converted", "animated"),
    "webp_lossless": (webp_lossless, "converted", "non_jpeg"),
}

# The exact ``reason`` strings of the converted inputs (CONVERT_REASONS order).
FULL_REASONS = {
    "png_with_alpha": "alpha;non_jpeg",
    "png_16bit": "16bit;non_jpeg",
    "png_16bit_gray": "grayscale;16bit;non_jpeg",
    "palette_png": "palette;non_jpeg",
    "animated_gif": "palette;non_jpeg;animated",
}
