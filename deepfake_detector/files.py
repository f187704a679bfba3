"""Atomic file output: a reader (or DVC) never sees a half-written file, and an interrupted run
leaves only a temp file that the next run overwrites."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temp path next to ``path``; rename it over ``path`` only if the block succeeds.

    ``suffix`` keeps an extension that a writer insists on (Keras wants ``.keras``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def scratch_path(folder: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a fresh temp path in ``folder`` (on the output's file system, so it can be renamed
    into place cheaply); whatever is left there at the end is deleted."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".scratch.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs):
    """``open()`` for writing, atomically."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, sort_keys=False)
        handle.write("\n")


def read_json(path: str | os.PathLike):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def remove_stale_temps(folder: str | os.PathLike) -> None:
    """Delete temp files a killed run left behind (``.name.XXXX.tmp``)."""
    folder = Path(folder)
    if folder.is_dir():
        for leftover in folder.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (archives are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
