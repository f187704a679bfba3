"""Image checks and fingerprints: decode, validate, convert losslessly, and hash.

``inspect(data, image_size, max_pixels)`` is the per-image work of the preprocess stage. It runs
in worker processes, so this module must never import TensorFlow. Its contract: every payload it
returns decodes with ``tf.io.decode_image(payload, channels=3, expand_animations=False)`` to an
``image_size x image_size x 3`` uint8 image, and input it cannot read comes back as ``"skipped"``
with a reason, never as an exception.

Forensic traces live in high frequencies, so nothing is ever re-encoded lossily:

* ``ok``: a baseline/progressive 8-bit RGB JPEG already ``image_size`` square passes through byte
  for byte. Only JPEG does: re-encoding any other input as PNG is lossless anyway, and this way
  every payload is either a JPEG we validated or a PNG we wrote ourselves.
* ``converted``: anything else that decodes is fixed (3 channels, 8 bits, square, sized) and stored
  as lossless PNG; ``reason`` lists what was fixed, in ``CONVERT_REASONS`` order.
* ``skipped``: ``reason`` is one of ``SKIP_REASONS``.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

# We enforce our own pixel cap (``max_pixels``) from the header, before any decoding; Pillow's
# built-in guard would otherwise warn or raise at its own, different limit.
Image.MAX_IMAGE_PIXELS = None
# Strict decoding: a truncated file is an error, not an image with a grey bottom.
ImageFile.LOAD_TRUNCATED_IMAGES = False

SKIP_REASONS = ("empty", "not_image", "truncated", "corrupt", "too_large", "unsupported")
CONVERT_REASONS = ("resized", "grayscale", "alpha", "16bit", "cmyk", "palette", "color_mode",
                   "non_jpeg", "jpeg_variant", "animated")

# The only formats we decode (JPEG first: Image.open tries them in this order; Pillow's JPEG opener
# also yields "MPO", multi-picture JPEGs). Other formats Pillow can identify are "unsupported" and
# never decoded: some plugins run external programs (EPS -> Ghostscript), and rarely used decoders
# are attack surface.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# Files that start like an image but cannot be opened are broken images, not "not_image".
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")
_PNG_END = b"IEND\xaeB`\x82"
# ISO-BMFF brands of still images (HEIC, HEIF, AVIF) and JPEG XL's two signatures
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis")
_JXL_SIGNATURES = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")

# A JPEG marker: 0xFF followed by a byte that is not a stuffed zero, a restart marker (both occur
# inside entropy-coded data) or another 0xFF (fill).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Start-of-frame codes TensorFlow's libjpeg certainly decodes: baseline, extended, progressive
# Huffman. Lossless, hierarchical and arithmetic-coded JPEGs are decoded by Pillow and converted.
_SOF_PASS = (0xC0, 0xC1, 0xC2)
_SOF_ALL = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # minus DHT, JPG, DAC


def phash64(gray: np.ndarray) -> int:
    """64-bit perceptual hash (the classic DCT pHash): 32x32 grey, DCT, low 8x8 block vs its median.

    Near duplicates (re-encoded, resized, lightly edited copies) land within a few bits of each other.
    """
    if gray.shape != (32, 32):
        gray = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(gray.astype(np.float32))[:8, :8].ravel()
    # np.median's own arithmetic (the mean of the middle two, in float32) at a fifth of its cost
    middle = np.partition(low, (31, 32))
    bits = low > (middle[31] + middle[32]) / np.float32(2)
    return int(np.packbits(bits).view(">u8")[0])


@dataclass(frozen=True)
class Inspection:
    status: str  # "ok" | "converted" | "skipped"
    reason: str  # "" for ok; ";"-joined CONVERT_REASONS; or one of SKIP_REASONS
    width: int | None  # original size from the header (None if unknown)
    height: int | None
    format: str | None  # Pillow's format name: "JPEG", "PNG", ...
    payload: bytes | None  # original bytes (ok), PNG bytes (converted), None (skipped)
    phash: int | None  # phash64 of the stored pixels' grey, None when skipped


def inspect(data: bytes, image_size: int, max_pixels: int) -> Inspection:
    """Check one image file's bytes and return what to store (see the module docstring)."""
    header = read_header(data, max_pixels)
    im, width, height, fmt = header.image, header.width, header.height, header.format
    if header.skip:
        return skipped(header.skip, width, height, fmt)

    reasons, broken = _file_reasons(im, data)
    if broken:
        return skipped(broken, width, height, fmt)
    size_ok = width == height == image_size
    try:
        if fmt == "JPEG" and im.mode == "RGB" and size_ok and not reasons:
            return _pass_through(im, data)
        im.load()  # strict: raises on truncated or broken data
    except Exception as exc:
        reason = "unsupported" if "jpeg_variant" in reasons else failure_reason(data, exc)
        return skipped(reason, width, height, fmt)
    try:
        rgb = _to_rgb(im, reasons)
    except Exception:  # a mode Pillow cannot convert to RGB
        return skipped("unsupported", width, height, fmt)
    if not size_ok:
        rgb = _square(rgb, image_size)
        reasons.add("resized")
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1])  # lossless; level 1 is fast
    if not ok:
        return skipped("unsupported", width, height, fmt)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    reason = ";".join(r for r in CONVERT_REASONS if r in reasons)
    return Inspection("converted", reason, width, height, fmt, png.tobytes(), phash64(gray))


@dataclass(frozen=True)
class Header:
    image: Image.Image | None  # opened, nothing decoded yet
    format: str | None
    width: int | None
    height: int | None
    skip: str  # "" when the header is fine, else one of SKIP_REASONS


def read_header(data: bytes, max_pixels: int, formats: tuple[str, ...] = FORMATS) -> Header:
    """The header checks every decode starts with: not empty, an image in ``formats``, and at most
    ``max_pixels`` (the decompression-bomb guard, decided before any pixel exists)."""
    if not data:
        return Header(None, None, None, None, "empty")
    try:  # reads the header only
        im = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        return Header(None, None, None, None, _unidentified(data))
    except Exception as exc:  # a plugin choked on a malformed header
        return Header(None, None, None, None, failure_reason(data, exc))
    width, height = im.size
    skip = ("unsupported" if im.format not in formats else
            "too_large" if width * height > max_pixels else "")
    return Header(im, im.format, width, height, skip)


def _file_reasons(im: Image.Image, data: bytes) -> tuple[set[str], str]:
    """(what about the file rules out pass-through, skip reason if it is broken else "")."""
    reasons: set[str] = set()
    if im.format in ("JPEG", "MPO"):
        # Pillow accepts a JPEG whose scans decode even if what follows them is broken (no EOI, a
        # stray marker whose length runs past the end ...); TensorFlow's libjpeg rejects those.
        sof, precision = _jpeg_structure(data)
        if sof is None:
            return reasons, failure_reason(data, None)
        if sof not in _SOF_PASS or precision != 8:
            reasons.add("jpeg_variant")
    else:
        reasons.add("non_jpeg")
    if getattr(im, "is_animated", False):  # GIF/WebP/APNG/MPO/multi-page TIFF: first frame
        reasons.add("animated")
    if ";16" in str(im.tile[0].args if im.tile else ""):  # 16-bit RGB(A) PNG/TIFF load as 8 bits
        reasons.add("16bit")
    return reasons, ""


def _pass_through(im: Image.Image, data: bytes) -> Inspection:
    # Decode luma only, and scaled down by libjpeg's DCT scaling to at least the hash's 32x32 (1/8
    # of a 256 px image): libjpeg still reads and entropy-decodes every coefficient of every scan,
    # so it fails exactly where a full RGB decode fails; what it skips (chroma, the full inverse
    # DCT, upsampling, colour conversion) cannot fail. At 1/8 each pixel is its 8x8 block's mean
    # (the DC coefficient), which is what phash64's area resize computes from full-size pixels:
    # the hash differs from the full decode's by 0.12 bit on average on 3,000 generated images and
    # 0.01 on 1,600 real faces (at most 4 bits, once), and the decode costs about half.
    width, height = im.size
    im.draft("L", (32, 32))
    im.load()
    gray = np.asarray(im)
    if gray.ndim == 3:  # draft declined (it never does for a single-tile RGB JPEG)
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    return Inspection("ok", "", width, height, im.format, data, phash64(gray))


def pillow_rgb(im: Image.Image) -> np.ndarray:
    """An opened image decoded strictly (raises on broken data) to 8-bit RGB, the way preprocess
    converts every file it does not pass through."""
    im.load()
    return _to_rgb(im, set())


def _to_rgb(im: Image.Image, reasons: set[str]) -> np.ndarray:
    """A loaded image as an 8-bit RGB array, noting in ``reasons`` what had to change."""
    mode = im.mode
    # Alpha is dropped, not composited: the colour samples stay exactly as stored (compositing
    # would rewrite every semi-transparent pixel), and it is what tf.io.decode_image(channels=3)
    # does with an RGBA/LA PNG, so a file fed straight to TensorFlow gives the same pixels.
    if mode in ("RGBA", "RGBa", "LA", "PA") or "transparency" in im.info:
        reasons.add("alpha")
    if mode in ("P", "PA"):
        reasons.add("palette")
    if mode == "CMYK":
        reasons.add("cmyk")
    if mode in ("1", "L", "LA", "I") or mode.startswith("I;16"):
        reasons.add("grayscale")
        gray = _gray8(im)
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    if mode not in ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK"):
        reasons.add("color_mode")  # YCbCr, LAB, HSV, F ...: Pillow's conversion
    return np.asarray(im if mode == "RGB" else im.convert("RGB"))


def _gray8(im: Image.Image) -> np.ndarray:
    if im.mode == "I" or im.mode.startswith("I;16"):
        values = np.asarray(im).astype(np.int64).clip(0, 65535)
        # 16 -> 8 bits by the high byte (65535 -> 255, linear, within 1 of exact rounding): what
        # Pillow does for 16-bit RGB and TensorFlow for 16-bit PNG, so every 16-bit path agrees.
        return (values >> 8).astype(np.uint8)
    return np.asarray(im if im.mode == "L" else im.convert("L"))


def centre_square(height: int, width: int) -> tuple[int, int, int, int]:
    """(x, y, side, side): the largest centred square, the part of a photo that is kept."""
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side, side


def _square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to a square, then resize to ``size`` (area to shrink, cubic to enlarge)."""
    left, top, side, _ = centre_square(*rgb.shape[:2])
    crop = rgb[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(crop)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def _jpeg_structure(data: bytes) -> tuple[int | None, int]:
    """Walk the JPEG's markers the way libjpeg reads them, up to EOI.

    Returns (start-of-frame code, sample precision), or (None, 0) when the walk runs off the end
    (no EOI, or a segment longer than the file). Bytes after EOI are ignored, as libjpeg does.
    """
    pos, end, sof, precision = 2, len(data), None, 0
    while True:
        found = _JPEG_MARKER.search(data, pos)  # also skips entropy-coded data after SOS
        if found is None:
            return None, 0
        code, pos = data[found.start() + 1], found.end()
        if code == 0xD9:  # EOI
            return (sof, precision) if sof is not None else (None, 0)
        if code == 0x01:  # TEM: no length
            continue
        if code == 0xD8 or pos + 2 > end:  # a second SOI is fatal to libjpeg
            return None, 0
        if code in _SOF_ALL:
            if sof is not None or pos + 2 >= end:  # a second frame header is fatal to libjpeg too
                return None, 0
            sof, precision = code, data[pos + 2]
        length = int.from_bytes(data[pos:pos + 2], "big")
        pos += length
        if length < 2 or pos > end:
            return None, 0


def failure_reason(data: bytes, exc: Exception | None) -> str:
    """Why a file that looks like an image did not decode: "truncated" or "corrupt"."""
    tail = data.rstrip(b"\x00")  # some writers pad files with zeros
    if data.startswith(b"\xff\xd8"):  # JPEG and PNG say where they end: trust that over messages
        return "corrupt" if tail.endswith(b"\xff\xd9") else "truncated"
    if data.startswith(b"\x89PNG"):
        return "corrupt" if tail.endswith(_PNG_END) else "truncated"
    return "truncated" if exc is not None and "truncated" in str(exc).lower() else "corrupt"


def _unidentified(data: bytes) -> str:
    if data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return failure_reason(data, None)
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS or data.startswith(_JXL_SIGNATURES):
        return "unsupported"  # a phone's HEIC/AVIF or a JPEG XL: an image, in a format Pillow can't read
    try:  # an image, but in a format we do not decode (PSD, EPS, ICO ...)?  Header only.
        Image.open(io.BytesIO(data))
        return "unsupported"
    except Exception:
        return "not_image"


def skipped(reason: str, width: int | None = None, height: int | None = None,
          fmt: str | None = None) -> Inspection:
    return Inspection("skipped", reason, width, height, fmt, None, None)
