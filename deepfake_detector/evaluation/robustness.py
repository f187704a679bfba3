"""Test scored again under common degradations: how much of the detector's skill survives what
images go through on their way to a user (re-compression, blur, resizing, sensor noise).

Each corruption is applied to the stored Test image (its full stored resolution, as a file would be
degraded), and the result is scored exactly as predict scores an image: JPEG bytes through
``inference.decode``, then ``inference.fit`` to the model's input and ``Scorer.score``.
"""

from __future__ import annotations

import cv2
import numpy as np

from deepfake_detector.model import inference

JPEG_QUALITY = 50
BLUR_SIGMA = 1.0
DOWNSCALE = 0.5
NOISE_SIGMA = 5.0


def jpeg(rgb: np.ndarray, index: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    return inference.decode(encoded.tobytes())  # as predict reads a JPEG file


def blur(rgb: np.ndarray, index: int) -> np.ndarray:
    return cv2.GaussianBlur(rgb, (0, 0), BLUR_SIGMA)


def downscale(rgb: np.ndarray, index: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    small = cv2.resize(rgb, (max(1, round(width * DOWNSCALE)), max(1, round(height * DOWNSCALE))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def noise(rgb: np.ndarray, index: int) -> np.ndarray:
    rng = np.random.default_rng(index)  # seeded by the image: the same noise on every run
    noisy = rgb.astype(np.float32) + rng.normal(0.0, NOISE_SIGMA, rgb.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


# name (the metrics key: robustness.<name>) -> uint8 RGB [h, w, 3], image index -> uint8 RGB
CORRUPTIONS = {
    f"jpeg_q{JPEG_QUALITY}": jpeg,
    f"blur_sigma{BLUR_SIGMA:g}": blur,
    f"downscale_x{DOWNSCALE:g}": downscale,
    f"noise_sigma{NOISE_SIGMA:g}": noise,
}


def score_corrupted(scorer: inference.Scorer, files: list[str], batch_size: int,
                    corruptions: dict = CORRUPTIONS):
    """The records in ``files`` scored under each corruption: name -> DataFrame(index, label, score)
    in record order. Images are decoded once (preprocess stored them all at one size) and degraded
    one batch at a time."""
    import pandas as pd

    from deepfake_detector.data import records

    parts = {name: [] for name in corruptions}
    for batch, labels, indices in records.decoded_dataset(files).batch(batch_size):
        images, labels, indices = batch.numpy(), labels.numpy().astype(int), indices.numpy()
        for name, corrupt in corruptions.items():
            stack = np.stack([inference.fit(corrupt(image, int(i)), scorer.image_size)
                              for image, i in zip(images, indices)])
            parts[name].append(pd.DataFrame({"index": indices, "label": labels,
                                             "score": scorer.score(stack, batch_size)}))
    return {name: pd.concat(frames, ignore_index=True) for name, frames in parts.items()}
