"""The sample's fakes: three manipulations of a rendered face that mimic real deepfake traces,
how ``data.sample.difficulty`` sets their strength, and ``make_image``, which puts one image
(real or fake) together from its own seeded stream. Same determinism rules as ``sample_render.py``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np

from deepfake_detector.data.sources.sample_render import BLUR_SIGMA, JPEG_QUALITY, NOISE_SIGMA, Scene, channels, draw_scene, encode_jpeg, gaussian, head_coords, new_identity, optics, render, scale_channels, sensor_noise, shrink, to_uint8

def _lerp(blatant: float, faint: float, subtle: float) -> float:
    """A trace parameter at ``subtle`` (0..1) between its blatant and its faint setting."""
    return blatant + (faint - blatant) * subtle


def face_mask(scene: Scene, feather: float, centre_v: float = 0.1, radius_u: float = 0.8,
              radius_v: float = 0.75) -> np.ndarray:
    """Soft (H, W, 1) mask of the inner face: 1 inside, 0 outside, a smoothstep edge about
    ``feather`` (in units of the mask radius) wide, like the landmark-hull masks of swap pipelines."""
    u, v = head_coords(scene)
    u *= np.float32(1 / radius_u)
    v -= np.float32(centre_v)
    v *= np.float32(1 / radius_v)
    u *= u
    v *= v
    u += v  # rho^2; the edge is placed on rho^2 (~2 rho - 1 near the rim), which avoids a sqrt
    t = np.float32(1) - u
    t *= np.float32(1 / (2 * max(feather, 1e-3)))
    t += np.float32(0.5)
    np.maximum(t, np.float32(0), out=t)
    np.minimum(t, np.float32(1), out=t)
    return (t * t * (np.float32(3) - np.float32(2) * t))[..., None]


def _blend(base: np.ndarray, patch: np.ndarray, mask) -> np.ndarray:
    """``base + (patch - base) * mask`` for a scalar or an (H, W, 1) ``mask``."""
    blended = patch - base
    if np.ndim(mask):
        cv2.multiply(blended, channels(mask), dst=blended)
    else:
        blended *= mask
    blended += base
    return blended


def swap_face(rng, scene: Scene, image: np.ndarray, subtle: float) -> np.ndarray:
    """Face swap: another identity's inner face, aligned imperfectly, colour-matched imperfectly,
    pasted through a feathered mask. Traces: a blend seam, a tone step, features slightly off the
    head's geometry, and a face cleaner (no sensor noise) and softer (synthesised at a lower
    resolution) than its surroundings."""
    donor_scene = new_identity(rng, scene)
    shift = _lerp(0.05, 0.0, subtle)  # landmark alignment error, in head radii
    jitter = shift * rng.uniform(-1, 1, 4)
    donor_scene = replace(donor_scene, cx=scene.cx + scene.rx * jitter[0],
                          cy=scene.cy + scene.ry * jitter[1], rx=scene.rx * (1 + jitter[2]),
                          ry=scene.ry * (1 + jitter[3]))
    donor = render(donor_scene, rng, background=np.zeros((scene.size, scene.size, 3), np.uint8))
    size = scene.size
    donor = shrink(to_uint8(donor), _lerp(3.5, 1.4, subtle))
    donor = cv2.resize(donor, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    # Tone mismatch: a brightness step of at least 60% of the level, plus a colour cast.
    mismatch = _lerp(0.14, 0.02, subtle)
    brightness = rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.0) * mismatch
    gain = (1 + brightness + rng.uniform(-0.5, 0.5, 3) * mismatch).astype(np.float32)
    mask = face_mask(scene, _lerp(0.08, 0.4, subtle))
    return _blend(image, scale_channels(donor, gain), mask)


def _transposed_conv2x(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Stride-2 transposed convolution with a 3x3 kernel (zero insertion, then correlation).

    With the ideal bilinear kernel every output phase gets total weight 1; any other kernel
    weighs the four phases unequally, which is the checkerboard of learned upsampling layers.
    """
    h, w, c = x.shape
    p = np.pad(x, ((0, 1), (0, 1), (0, 0)), mode="edge")
    a, r, d, rd = p[:-1, :-1], p[:-1, 1:], p[1:, :-1], p[1:, 1:]
    out = np.empty((2 * h, 2 * w, c), np.float32)
    out[0::2, 0::2] = k[1, 1] * a
    out[0::2, 1::2] = k[1, 0] * a + k[1, 2] * r
    out[1::2, 0::2] = k[0, 1] * a + k[2, 1] * d
    out[1::2, 1::2] = k[0, 0] * a + k[0, 2] * r + k[2, 0] * d + k[2, 2] * rd
    return out


BILINEAR = np.outer([0.5, 1.0, 0.5], [0.5, 1.0, 0.5]).astype(np.float32)


def gan_upsample(rng, scene: Scene, image: np.ndarray, subtle: float) -> np.ndarray:
    """Generator synthesis: the face re-made from a 4x smaller version through two learned
    upsampling layers, each with an imperfect kernel and injected noise. Traces: a periodic
    (period 4 and 2 px) pattern that shows as peaks in the spectrum, and correlated noise."""
    size = scene.size
    small = shrink(to_uint8(image), 4).astype(np.float32)
    error = _lerp(0.4, 0.05, subtle)
    out = small
    for _ in range(2):
        kernel = BILINEAR * (np.float32(1) + np.float32(error) * gaussian(rng, (3, 3)))
        out = _transposed_conv2x(out, kernel)
        # StyleGAN-like noise inputs: synthesised detail in place of the lost texture.
        detail = np.float32(_lerp(2.0, 3.0, subtle)) * gaussian(rng, out.shape[:2] + (1,))
        cv2.add(out, channels(detail), dst=out)
    if out.shape != image.shape:  # a size that is not a multiple of 4: trim or extend the edge
        out = out[:size, :size]
        out = np.pad(out, ((0, size - out.shape[0]), (0, size - out.shape[1]), (0, 0)), mode="edge")
    mask = face_mask(scene, 0.3) * np.float32(_lerp(1.0, 0.5, subtle))  # how much is re-synthesised
    return _blend(image, out, mask)


def smooth_skin(rng, scene: Scene, image: np.ndarray, subtle: float) -> np.ndarray:
    """Over-smoothed face: an edge-preserving (median) filter over the face, as beautifying and
    generator outputs do. Traces: no sensor noise and no pore texture on the face while the
    background keeps both."""
    size = scene.size
    ksize = 5 if subtle < 0.5 else 3
    smooth = cv2.medianBlur(to_uint8(image), ksize)
    smooth = cv2.GaussianBlur(smooth, (0, 0), _lerp(1.2, 0.6, subtle) * size / 256).astype(np.float32)
    mask = face_mask(scene, 0.3, radius_u=_lerp(0.95, 0.7, subtle), radius_v=_lerp(0.9, 0.7, subtle))
    return _blend(image, smooth, mask * np.float32(_lerp(1.0, 0.7, subtle)))


MANIPULATIONS = {"face_swap": swap_face, "gan_upsample": gan_upsample, "smooth_skin": smooth_skin}
KINDS = tuple(MANIPULATIONS)


# How ``difficulty`` maps onto the traces; calibrated on the default sample (see sample.py's docstring).
SUBTLETY_CURVE = 3.5  # subtlety = difficulty ** 3.5: 0.25 -> 0.01, 0.5 -> 0.09, 0.75 -> 0.37, 1 -> 1
WELL_MADE_SHARE = 0.06  # share of well-made fakes = 0.06 * difficulty: 3 % at 0.5
WELL_MADE_OPACITY = (0.02, 0.08)  # their manipulation is blended in this faintly


def subtlety(difficulty: float) -> float:
    """Trace subtlety of an ordinary fake: 0 blatant .. 1 faint (every manipulation's parameters
    are interpolated on it)."""
    return difficulty ** SUBTLETY_CURVE


def well_made_fraction(difficulty: float) -> float:
    """Share of fakes that are "well made": the manipulation is blended in at a few per cent
    opacity and all the sensor noise is added after it, so its trace is under the noise floor.
    Like the best real deepfakes they cap any detector's ROC-AUC (at about 1 - share / 2), which
    keeps the sample from saturating: a strong model can't score a perfect 1.0."""
    return WELL_MADE_SHARE * difficulty


def post_noise_share(subtle: float) -> float:
    """Share of the sensor-noise variance added after the manipulation (re-capture, re-encoding).
    More of it hides the noise inconsistency; the total noise matches a real image's either way."""
    return _lerp(0.1, 0.75, subtle)


def make_image(seed: int, split_index: int, index: int, fake: bool, well_made: bool,
               difficulty: float, size: int) -> tuple[bytes, str | None]:
    """One JPEG and its manipulation kind (None for a real image), from the image's own seeded
    stream. A ``well_made`` fake gets its manipulation at a low opacity, all noise after it."""
    rng = np.random.default_rng([seed, split_index, index])
    scene = draw_scene(rng, size)
    image = render(scene, rng)
    image = optics(image, rng.uniform(*BLUR_SIGMA) * size / 256)
    sigma = float(rng.uniform(*NOISE_SIGMA))
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    if not fake:
        image += sensor_noise(rng, image.shape, sigma)
        return encode_jpeg(image, quality), None
    kind = KINDS[int(rng.integers(len(KINDS)))]
    subtle = subtlety(difficulty)
    if well_made:
        opacity, share = float(rng.uniform(*WELL_MADE_OPACITY)), 1.0
    else:
        opacity, share = 1.0, post_noise_share(subtle)
    image += sensor_noise(rng, image.shape, sigma * math.sqrt(1 - share))
    image = _blend(image, MANIPULATIONS[kind](rng, scene, image, subtle), np.float32(opacity))
    image += sensor_noise(rng, image.shape, sigma * math.sqrt(share))
    return encode_jpeg(image, quality), kind
