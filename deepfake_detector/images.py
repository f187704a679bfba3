"""Image checks and fingerprints: decode, validate, convert losslessly, and hash.

(Being written: ``inspect`` and friends. ``phash64`` is final.)
"""

from __future__ import annotations

import cv2
import numpy as np


def phash64(gray: np.ndarray) -> int:
    """64-bit perceptual hash (the classic DCT pHash): 32x32 grey, DCT, low 8x8 block vs its median.

    Near duplicates (re-encoded, resized, lightly edited copies) land within a few bits of each other.
    """
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = low > np.median(low)
    return int(np.packbits(bits).view(">u8")[0])
