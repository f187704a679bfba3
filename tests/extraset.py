"""A labelled set in another layout than the pipeline's: for evaluate.extra_sets tests."""

from __future__ import annotations

import zipfile
from pathlib import Path
from types import SimpleNamespace

from badimages import truncated_jpeg
from deepfake_detector.data.sources import sample

CLASS_FOLDERS = {"Real": "0_real", "Fake": "1_fake"}


def other_layout_zip(dest: Path, seed: int = 7, images: int = 24) -> tuple[Path, dict]:
    """A zip of generated faces as ``faces/{0_real,1_fake}/<name>.jpg`` (no splits, a wrapper
    folder) plus one truncated JPEG: (the zip, {"real": n, "fake": n, "broken": 1})."""
    canonical = dest.with_name(dest.stem + "-canonical.zip")
    sample.generate(canonical, SimpleNamespace(seed=seed, difficulty=0.5, image_size=128, train=images,
                                               validation=2, test=2), workers=1, progress=False)
    counts = {"real": 0, "fake": 0, "broken": 1}
    with zipfile.ZipFile(canonical) as source, zipfile.ZipFile(dest, "w") as out:
        for name in sorted(source.namelist()):
            if name.endswith("/"):
                continue
            _, split, label, file = name.split("/", 3)
            out.writestr(f"faces/{CLASS_FOLDERS[label]}/{split.lower()}_{file}", source.read(name))
            counts[label.lower()] += 1
        out.writestr("faces/1_fake/broken.jpg", truncated_jpeg())
    canonical.unlink()
    return dest, counts
