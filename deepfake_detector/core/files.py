"""Atomic file output: a reader (or DVC) never sees a half-written file, and an interrupted run
leaves only a temp file that the next run overwrites.

Temp files get the mode a plain ``open()`` would give (0666 less the umask), not ``mkstemp``'s 0600:
they become the outputs, which other users on a shared machine must be able to read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
from pathlib import Path

from deepfake_detector.core.errors import UserError

log = logging.getLogger(__name__)


def _new_temp(folder: Path, prefix: str, suffix: str) -> Path:
    """Create an empty, uniquely named file in ``folder`` with the umask's mode; return its path."""
    for _ in range(100):
        path = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free temp file name in {folder}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temp path next to ``path``; rename it over ``path`` only if the block succeeds.

    ``suffix`` keeps an extension that a writer insists on (Keras wants ``.keras``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(path.parent, f".{path.name}.", suffix or ".tmp")
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def save_figure(fig, path: str | os.PathLike, **savefig_options) -> None:
    """Save a Matplotlib figure atomically and close it. PNGs get no "Software" stamp, so a rerun
    writes the same bytes whatever Matplotlib version made them."""
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix == ".png":
        savefig_options.setdefault("metadata", {"Software": None})
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, **savefig_options)
    plt.close(fig)


@contextlib.contextmanager
def scratch_path(folder: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a fresh temp path in ``folder`` (on the output's file system, so it can be renamed
    into place cheaply); whatever is left there at the end is deleted."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(Path(folder), ".scratch.", suffix)
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


def replace_dir(new: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Put the finished folder ``new`` at ``dest``, replacing the old one as a whole.

    The old folder is renamed aside first and deleted only once ``new`` is in place, so any failure
    leaves the old output whole (or, if there was none, no output): never old files next to new ones.
    A failed swap is a ``UserError``; an old folder that can't be fully deleted afterwards is left
    aside, named in a warning.
    """
    new, dest = Path(new), Path(dest)
    for leftover in dest.parent.glob(f".{dest.name}.old.*"):  # from a run killed mid-swap
        shutil.rmtree(leftover, ignore_errors=True)
    aside = dest.with_name(f".{dest.name}.old.{secrets.token_hex(4)}")
    had_old = dest.exists() or dest.is_symlink()
    try:
        if had_old:
            os.replace(dest, aside)
        try:
            os.replace(new, dest)
        except OSError:
            if had_old:
                os.replace(aside, dest)
            raise
    except OSError as exc:
        shutil.rmtree(new, ignore_errors=True)
        raise UserError(f"cannot replace {dest} ({exc.strerror or exc}); it was left as it was: check "
                        f"the permissions and attributes (lsattr) of {dest} and its folder, then "
                        "re-run") from None
    if had_old:
        failed: list[str] = []
        shutil.rmtree(aside, onerror=lambda _func, path, _exc: failed.append(path))
        if failed:
            log.warning("could not delete the previous %s, left at %s (%s); delete it by hand",
                        dest.name, aside, failed[0])


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
