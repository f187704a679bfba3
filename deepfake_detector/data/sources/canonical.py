"""The canonical archive, ``data/raw/dataset.zip``: the one layout every source produces.

Members are named as in the Kaggle dataset ``manjilkarki/deepfake-and-real-images``:
``Dataset/{Train,Validation,Test}/{Real,Fake}/<relative path>``. The sample and local sources write
it through ``writer``; layout detection (and with it preprocess) reads it back. Members are stored, not
compressed (JPEGs don't shrink, and preprocess reads them straight out of the file), with a fixed
timestamp and Unix regular-file attributes, so the same content always gives the same bytes.
"""

from __future__ import annotations

import contextlib
import os
import zipfile

from deepfake_detector import CLASS_NAMES
from deepfake_detector.core.files import atomic_path

ROOT = "Dataset"
SPLIT_FOLDERS = {"train": "Train", "validation": "Validation", "test": "Test"}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the zip epoch: no file times leak into the archive
FILE_MODE = 0o100644  # a regular file, rw-r--r--


def member_name(split: str, label: int, relative: str) -> str:
    """``Dataset/Train/Real/<relative>`` for split ``train``, label 0."""
    return f"{ROOT}/{SPLIT_FOLDERS[split]}/{CLASS_NAMES[label]}/{relative}"


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3  # "Unix" on every platform, so the central directory is identical
    info.external_attr = FILE_MODE << 16
    return info


@contextlib.contextmanager
def writer(dest_zip: str | os.PathLike):
    """Yield ``add(name, data)``; the archive appears at ``dest_zip`` only when the block succeeds.

    Members are written in the order they are added: callers add them in a fixed order.
    """
    # Context exits run in reverse: the zip is closed (central directory written) before the rename.
    with atomic_path(dest_zip) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        yield lambda name, data: archive.writestr(_zip_info(name), data)
