"""``data.source: local``: a user's zip or extracted folder -> the canonical archive.

The canonical archive (``canonical.py``: ``Dataset/{Train,Validation,Test}/{Real,Fake}/<relative>``)
is written in sorted member order, so the same input always gives a byte-identical file. Members are
streamed one at a time: the real dataset (1.7 GB, 190k files) is never held in memory.

Missing splits are carved out of Train (or out of everything, when there are no splits):

* stratified: per class, Validation and Test get round-half-up(fraction x that class's Train
  images), at least 1 when the fraction is > 0, so both classes are in every split;
* exact duplicates stay together: images are grouped by the sha256 of their bytes and a group is
  placed whole, so a copy of a Test image can never be in Train (groups whose copies carry both
  labels stay in Train, where preprocess's duplicate check reports them);
* seeded: groups are ranked by sha256(f"{seed}:{digest}") and handed out in that order, which
  depends on no library's RNG and does not move other images when one is added.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

from tqdm import tqdm

from deepfake_detector import CLASS_NAMES, SPLITS
from deepfake_detector.core.errors import DataError, ParamError
from deepfake_detector.core.files import atomic_path
from deepfake_detector.data.sources import archive, canonical
from deepfake_detector.data.sources.canonical import SPLIT_FOLDERS
from deepfake_detector.data.sources.layout import Layout, Member, detect

PARAM = "data.local_path"
CARVED = ("validation", "test")


def check_params(data_params: SimpleNamespace) -> None:
    """With ``data.source: local``, ``data.local_path`` must name something that exists."""
    if data_params.source != "local":
        return
    if data_params.local_path is None:
        raise ParamError(f"params.yaml: {PARAM} must name a .zip or a folder when data.source=local")
    if not Path(data_params.local_path).expanduser().exists():
        raise ParamError(f"params.yaml: {PARAM}={data_params.local_path!r} does not exist; "
                         "point it at the dataset zip or its extracted folder")


def _kind(src: Path) -> str:
    """``"folder"`` or ``"zip"`` for a dataset path; ``DataError`` for anything else. Only a zip's
    own bytes are ever opened here: ``is_file`` stats, so a FIFO or device is refused unread."""
    fix = f"set {PARAM} in params.yaml to the dataset's .zip file or its extracted folder"
    if src.is_dir():
        return "folder"
    if not src.exists():
        raise DataError(f"{PARAM}: {src} does not exist; {fix}")
    if not src.is_file() or not (src.suffix.lower() == ".zip" or zipfile.is_zipfile(src)):
        raise DataError(f"{PARAM}: {src} is neither a folder nor a .zip file; {fix}")
    return "zip"


@contextlib.contextmanager
def _open_source(src: Path, limits: archive.Limits):
    """Yield (kind, file names, read(name) -> bytes) for a folder or a zip; refuse anything else."""
    if _kind(src) == "folder":
        names = archive.list_folder(src, limits)
        yield "folder", names, lambda name: archive.read(src / name, limits)
        return
    with archive.open_zip(src, limits) as zf:
        refs = archive.member_refs(zf)
    with open(src, "rb") as handle:
        yield "zip", list(refs), lambda name: archive.read(refs[name], limits, handle)


def read_labelled(src: Path, limits: archive.Limits):
    """Every image of a labelled zip or folder, in any layout ``detect`` knows, as (Member, bytes) in
    name order, one at a time: a set scored whole, whatever its splits (evaluate.extra_sets)."""
    with _open_source(Path(src), limits) as (_, names, read):
        layout = detect(names, str(src))
        for member in sorted(layout.members, key=lambda m: m.name):
            yield member, read(member.name)


PLACEHOLDER = "no local dataset: data.source is not local\n"


def link_input(src: Path | None, link: Path, limits: archive.Limits) -> None:
    """Make ``link`` stand for the local dataset ``src`` in ``dvc.yaml`` (the download stage
    depends on it), so DVC hashes the dataset itself and reruns download when it changes.

    With a dataset it is a symbolic link to ``src`` (absolute); without one (``src`` None: another
    source) a fixed placeholder file. dvc.yaml cannot name ``${data.local_path}`` as a dependency
    itself: DVC's templating fails on its null. A folder is checked first (no links, FIFOs,
    sockets or devices; the size caps): DVC would block forever hashing a FIFO.
    """
    link.parent.mkdir(parents=True, exist_ok=True)
    if src is None:
        with atomic_path(link) as tmp:
            tmp.write_text(PLACEHOLDER)
        return
    src = Path(os.path.abspath(src.expanduser()))
    if _kind(src) == "folder":
        archive.list_folder(src, limits)
    tmp = link.with_name(f".{link.name}.link.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(src, tmp)
    os.replace(tmp, link)  # replaces the old link or placeholder itself, never what it points to


def _target(fraction: float, total: int) -> int:
    """Images of one class to carve: round half up, at least one when asked for any."""
    return 0 if fraction <= 0 else max(1, math.floor(fraction * total + 0.5))


def _rank(seed: int, digest: str) -> bytes:
    return hashlib.sha256(f"{seed}:{digest}".encode()).digest()


def _carve_label(label: int, sizes: dict[str, int], fractions: dict[str, float], seed: int,
                 origin: str) -> dict[str, str]:
    """digest -> carved split for one class's duplicate groups (the rest stay in Train)."""
    total = sum(sizes.values())
    targets = {split: _target(fraction, total) for split, fraction in fractions.items()}
    order = sorted(sizes, key=lambda digest: _rank(seed, digest))
    counts = dict.fromkeys(targets, 0)
    placed: dict[str, str] = {}
    for digest in order:
        # A group that would overshoot is skipped, not split, so the next ones can still fit exactly.
        split = next((s for s, t in targets.items() if counts[s] + sizes[digest] <= t), None)
        if split:
            placed[digest] = split
            counts[split] += sizes[digest]
    for split in targets:
        rest = [d for d in order if d not in placed]
        if counts[split] == 0 and len(rest) > 1:
            # Every group left was larger than the target: overshoot rather than leave the class out.
            digest = min(rest, key=sizes.__getitem__)
            placed[digest] = split
            counts[split] += sizes[digest]
    if 0 in counts.values() or len(placed) == len(order):
        carved = " and ".join(SPLIT_FOLDERS[s] for s in targets)
        raise DataError(f"{origin}: too few distinct {CLASS_NAMES[label]} images ({len(order)}) to carve "
                        f"{carved} and keep some for Train; add images or provide the split folders")
    return placed


def carve_pool(pool: list[Member], digests: dict[str, str], fractions: dict[str, float], seed: int,
          origin: str) -> dict[str, str]:
    """name -> split for the images carving draws from (Train, or all of them without splits)."""
    groups: dict[str, list[Member]] = {}
    for member in pool:
        groups.setdefault(digests[member.name], []).append(member)
    split_of: dict[str, str] = {}
    for label in (0, 1):
        sizes = {d: len(ms) for d, ms in groups.items() if {m.label for m in ms} == {label}}
        split_of.update(_carve_label(label, sizes, fractions, seed, origin))
    return {m.name: split_of.get(digests[m.name], "train") for m in pool}


def _assign(layout: Layout, read, carve_params: SimpleNamespace, origin: str,
            progress: bool) -> tuple[dict[str, str], list[str]]:
    """(name -> split for every member, the splits that were carved)."""
    missing = [s for s in CARVED if s not in layout.splits]
    split_of = {m.name: m.split for m in layout.members if m.split not in (None, "train")}
    pool = [m for m in layout.members if m.split in (None, "train")]
    if not missing:
        split_of.update((m.name, "train") for m in pool)
        return split_of, []
    fractions = {}
    for split in missing:
        fractions[split] = getattr(carve_params, f"{split}_fraction")
        if fractions[split] <= 0:
            raise DataError(f"{origin} has no {SPLIT_FOLDERS[split]} split and data.carve.{split}_fraction "
                            f"is 0; set data.carve.{split}_fraction in params.yaml (e.g. 0.1) or add "
                            f"{SPLIT_FOLDERS[split]}/ folders")
    digests = {m.name: hashlib.sha256(read(m.name)).hexdigest()
               for m in tqdm(pool, desc="hashing for carving", unit="file", disable=not progress)}
    split_of.update(carve_pool(pool, digests, fractions, carve_params.seed, origin))
    return split_of, missing


def _write(entries: list[tuple[str, str]], read, dest_zip: Path, progress: bool) -> None:
    """Write (canonical name, source name) pairs, already sorted, atomically and reproducibly."""
    with canonical.writer(dest_zip) as add:
        for member, name in tqdm(entries, desc=f"writing {dest_zip.name}", unit="file", disable=not progress):
            add(member, read(name))


def _is_canonical(layout: Layout) -> bool:
    return (layout.ignored == 0 and layout.splits == SPLITS
            and all(m.name == canonical.member_name(m.split, m.label, m.relative) for m in layout.members))


def _copy(src: Path, dest_zip: Path, move: bool) -> None:
    if dest_zip.exists() and os.path.samefile(src, dest_zip):
        return
    if move:
        dest_zip.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # e.g. another filesystem: copy below instead
            os.replace(src, dest_zip)
            return
    with atomic_path(dest_zip) as tmp:
        shutil.copyfile(src, tmp)
    if move:
        src.unlink()


def import_dataset(src: Path, dest_zip: Path, carve: SimpleNamespace, limits: archive.Limits, *,
                   move: bool = False, progress: bool = True) -> dict:
    """Turn a dataset zip or folder into the canonical archive ``dest_zip``; return a summary.

    An archive already in canonical form (all three splits, nothing else in it) is CRC-checked and
    copied instead of repacked, keeping the downloaded bytes; ``move=True`` (for a temp download the
    caller no longer needs) renames it instead. When it has to be repacked, ``src`` is left alone
    either way: deleting it is the caller's business.
    """
    src, dest_zip, origin = Path(src), Path(dest_zip), str(src)
    with _open_source(src, limits) as (kind, names, read):
        layout = detect(names, origin)
        shortcut = kind == "zip" and _is_canonical(layout)
        if shortcut:
            split_of, carved = {m.name: m.split for m in layout.members}, []
        else:
            split_of, carved = _assign(layout, read, carve, origin, progress)
            entries = sorted((canonical.member_name(split_of[m.name], m.label, m.relative), m.name)
                             for m in layout.members)
            _write(entries, read, dest_zip, progress)
    if shortcut:
        archive.verify_zip(src, limits)  # every CRC, as repacking would have checked them
        _copy(src, dest_zip, move)
    counts = {split: {name.lower(): 0 for name in CLASS_NAMES} for split in SPLITS}
    for member in layout.members:
        counts[split_of[member.name]][CLASS_NAMES[member.label].lower()] += 1
    return {"layout": layout.description, "kind": kind, "repacked": not shortcut,
            "carved": {split: split in carved for split in CARVED}, "counts": counts,
            "ignored": layout.ignored}
