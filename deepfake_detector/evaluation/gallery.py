"""Pictures to look at: the most confident mistakes of each class, and sample images per split and
class (the original project's visualize step). Small JPEG grids in metrics/plots/ (dvc plots show
renders them); thumbnails, since a grid of full-size images would bloat the committed plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deepfake_detector import CLASS_NAMES
from deepfake_detector.data import records

THUMB = 96  # thumbnail side, pixels
JPEG_QUALITY = 80


def read_images(files: list[str], keep) -> dict[int, np.ndarray]:
    """Decoded records (uint8 RGB at THUMB) for which ``keep(index, label)`` says yes, by index;
    ``keep`` returns None once it wants no more, which stops the read."""
    found = {}
    for image, label, index in records.decoded_dataset(files, THUMB):
        wanted = keep(int(index), int(label))
        if wanted is None:
            break
        if wanted:
            found[int(index)] = image.numpy()
    return found


def confident_mistakes(frame: pd.DataFrame, threshold: float, per_class: int) -> dict[str, pd.DataFrame]:
    """Per true class, its wrongly labelled images, most confidently wrong first: real faces with the
    highest P(fake) at or above the threshold, fakes with the lowest P(fake) below it."""
    real = frame[(frame["label"] == 0) & (frame["score"] >= threshold)].nlargest(per_class, "score")
    fake = frame[(frame["label"] == 1) & (frame["score"] < threshold)].nsmallest(per_class, "score")
    return {CLASS_NAMES[0]: real, CLASS_NAMES[1]: fake}


def first_per_class(files: list[str], per_class: int) -> dict[int, list[np.ndarray]]:
    """The first ``per_class`` images of each label in record order."""
    taken: dict[int, list[int]] = {0: [], 1: []}

    def keep(index, label):
        if all(len(v) >= per_class for v in taken.values()):
            return None
        if len(taken[label]) < per_class:
            taken[label].append(index)
            return True
        return False

    images = read_images(files, keep)
    return {label: [images[i] for i in indices] for label, indices in taken.items()}


def save_grid(rows: list[tuple[str, list[tuple[np.ndarray, str]]]], columns: int, title: str,
              path: Path) -> None:
    """``rows``: (row title, [(thumbnail, caption)]) → one JPEG grid, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepfake_detector.core.files import save_figure

    fig, axes = plt.subplots(len(rows), columns, figsize=(columns * 1.15 + 0.9, len(rows) * 1.3 + 0.4),
                             dpi=100, squeeze=False)
    for r, (row_title, cells) in enumerate(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(cells):
                image, caption = cells[c]
                ax.imshow(image)
                ax.set_xlabel(caption, fontsize=7)
            else:
                ax.set_frame_on(False)  # an empty cell, but the row keeps its title
        axes[r][0].set_ylabel(row_title, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, format="jpg", pil_kwargs={"quality": JPEG_QUALITY, "optimize": True})


def save_mistakes(files: list[str], frame: pd.DataFrame, threshold: float, per_class: int,
                  path: Path) -> None:
    """The most confident mistakes of each class in ``frame`` (index, label, score) of ``files``."""
    mistakes = confident_mistakes(frame, threshold, per_class)
    wrong = (frame["score"] >= threshold).astype(int) != frame["label"]
    totals = {name: int((wrong & (frame["label"] == label)).sum()) for label, name in enumerate(CLASS_NAMES)}
    left = set().union(*(set(int(i) for i in m["index"]) for m in mistakes.values()))

    def keep(index, label):  # None once every mistake is found: the rest of the split isn't read
        if not left:
            return None
        if index in left:
            left.discard(index)
            return True
        return False

    images = read_images(files, keep) if left else {}
    called = dict(zip(CLASS_NAMES, reversed(CLASS_NAMES)))
    rows = [(f"{name} called {called[name]}\n({totals[name]} in all)",
             [(images[int(i)], f"P(fake) {s:.3f}") for i, s in zip(m["index"], m["score"])])
            for name, m in mistakes.items()]
    save_grid(rows, per_class, f"Most confident mistakes per true class (threshold {threshold:.3f})", path)


def save_samples(split_files: dict[str, list[str]], per_class: int, path: Path) -> None:
    """``per_class`` images of each class in each split, one row per (split, class)."""
    rows = []
    for split, files in split_files.items():
        for label, images in first_per_class(files, per_class).items():
            rows.append((f"{split}\n{CLASS_NAMES[label]}", [(image, "") for image in images]))
    save_grid(rows, per_class, "Sample images per split and class", path)
