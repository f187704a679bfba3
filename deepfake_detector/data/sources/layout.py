"""Finding the dataset in a list of file names (a zip's members or a folder's files).

The label always comes from a *class folder*, never from a file name (``Real/fake_1.jpg`` is Real).
Accepted, case-insensitively, below any number of wrapper folders (``archive/``, ``real_vs_fake/
real-vs-fake/``), with sub-folders below the class folder kept in ``relative``:

* ``<split>/<class>/...``  e.g. ``Dataset/Train/Real/x.jpg``, ``train/fake/x.jpg`` (the canonical form)
* ``<class>/<split>/...``  e.g. ``real/train/x.jpg``
* ``<class>/...``          e.g. ``real/x.jpg`` (no splits: split is None)

Class folders: ``real`` or ``0_real`` -> 0, ``fake`` or ``1_fake`` -> 1 (the digit prefix is accepted
only where it agrees with the label, so ``1_real`` is not a class folder). Split folders: ``train``,
``training``; ``validation``, ``valid``, ``val``, ``dev``; ``test``, ``testing``.

Anything that could be read two ways is refused with one ``DataError`` line instead of guessed:
class folders nested in class folders, class folders under several different wrapper folders,
splits for some files but not others, two folders for one split and class (``val/`` and ``valid/``),
a split with only one class, splits without a Train split. Junk (``__MACOSX``, ``.DS_Store``,
any dotfile or dot-folder) and files outside the class folders are counted in ``ignored``.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepfake_detector import CLASS_NAMES, SPLITS, check_both_classes
from deepfake_detector.core.errors import DataError
from deepfake_detector.data.sources.archive import is_junk
from deepfake_detector.data.sources.canonical import SPLIT_FOLDERS

EXPECTED = ("expected class folders Real/ and Fake/, optionally under Train/ Validation/ Test/ "
            "split folders (e.g. Dataset/Train/Real/img.jpg)")

_SPLIT_ALIASES = {"train": "train", "training": "train",
                  "validation": "validation", "valid": "validation", "val": "validation",
                  "dev": "validation", "test": "test", "testing": "test"}
_CLASS_ALIASES = {"real": 0, "0_real": 0, "fake": 1, "1_fake": 1}


@dataclass(frozen=True)
class Member:
    name: str            # path inside the zip / relative path inside the folder (POSIX)
    split: str | None    # "train" | "validation" | "test", or None when the layout has no splits
    label: int           # 0 = Real, 1 = Fake
    relative: str        # the path below the class folder (keeps sub-folders so names can't collide)


@dataclass(frozen=True)
class Layout:
    members: list[Member]
    description: str     # what was found, e.g. "Dataset/{Train,Validation,Test}/{Real,Fake}"
    splits: tuple[str, ...]  # splits present, in SPLITS order; () when there are none
    ignored: int         # junk and files outside any class folder


def _fail(origin: str, found: str, fix: str = EXPECTED):
    raise DataError(f"{origin}: {found}; {fix}")


def _parts(name: str) -> tuple[str, ...]:
    """PurePosixPath(name).parts for the relative names we get, at a fraction of its cost."""
    return tuple(part for part in name.split("/") if part not in ("", "."))


def _is_ignored(parts: tuple[str, ...], name: str) -> bool:
    return is_junk(name) or any(part.startswith(".") for part in parts)


@dataclass(frozen=True)
class _Placed:
    """One file inside a class folder, before the layout as a whole is checked."""
    member: Member
    root: str            # the wrapper folders above the split/class folders ("" when none)
    shape: str           # "split/class" | "class/split" | "class"
    folder: str          # the split+class folders as written, e.g. "Dataset/Train/Real"
    split_folder: str | None
    class_folder: str


def _place(name: str, parts: tuple[str, ...], origin: str) -> _Placed | None:
    """Where one file sits, or None when it is in no class folder."""
    folders = parts[:-1]
    hits = [i for i, part in enumerate(folders) if part.lower() in _CLASS_ALIASES]
    if not hits:
        return None
    if len(hits) > 1:
        _fail(origin, f"class folder inside another class folder ({'/'.join(folders[:hits[1] + 1])}/)")
    i = hits[0]
    above = _SPLIT_ALIASES.get(folders[i - 1].lower()) if i > 0 else None
    below = _SPLIT_ALIASES.get(folders[i + 1].lower()) if i + 1 < len(folders) else None
    if above and below:
        _fail(origin, f"split folders both above and below a class folder ({'/'.join(folders[:i + 2])}/)")
    if above:
        start, end, shape, split_folder = i - 1, i + 1, "split/class", folders[i - 1]
    elif below:
        start, end, shape, split_folder = i, i + 2, "class/split", folders[i + 1]
    else:
        start, end, shape, split_folder = i, i + 1, "class", None
    member = Member(name, above or below, _CLASS_ALIASES[folders[i].lower()], "/".join(parts[end:]))
    return _Placed(member, "/".join(parts[:start]), shape, "/".join(parts[:end]), split_folder, folders[i])


def _folders_found(names: list[str]) -> str:
    """A short account of what is there, for the error when no class folder was found."""
    dirs = sorted({"/".join(_parts(n)[:-1][:3]) for n in names} - {""})
    if not dirs:
        return f"only loose files ({len(names)}, e.g. {sorted(names)[0]})" if names else "no files"
    more = f" and {len(dirs) - 5} more" if len(dirs) > 5 else ""
    return f"found folders {', '.join(d + '/' for d in dirs[:5])}{more} ({len(names)} files)"


def _check_uniform(placed: list[_Placed], origin: str) -> None:
    """One wrapper root, one shape, one folder per (split, class), both classes in every split."""
    roots = sorted({p.root for p in placed})
    if len(roots) > 1:
        shown = ", ".join(f"{r}/" if r else "(top level)" for r in roots[:4])
        _fail(origin, f"class folders under several different folders ({shown}), e.g. two copies of the dataset")
    by_shape = {p.shape: p.folder for p in placed}
    if len(by_shape) > 1:
        shown = " and ".join(f"{folder}/" for folder in sorted(by_shape.values()))
        _fail(origin, f"split folders for some class folders but not others ({shown})")
    by_key: dict[tuple, set[str]] = {}
    for p in placed:
        by_key.setdefault((p.member.split, p.member.label), set()).add(p.folder)
    for (split, label), folders in sorted(by_key.items(), key=str):
        if len(folders) > 1:
            where = f"{SPLIT_FOLDERS[split]}/" if split else ""
            _fail(origin, f"{' and '.join(f + '/' for f in sorted(folders))} both map to {where}{CLASS_NAMES[label]}")
    counts: dict[str | None, dict[str, int]] = {}
    for p in placed:
        count = counts.setdefault(p.member.split, dict.fromkeys(("real", "fake"), 0))
        count[CLASS_NAMES[p.member.label].lower()] += 1
    check_both_classes(counts, origin, EXPECTED)
    splits = [s for s in SPLITS if any(split == s for split, _ in by_key)]
    if splits and "train" not in splits:
        _fail(origin, f"split folders {', '.join(SPLIT_FOLDERS[s] + '/' for s in splits)} but no Train/")


def _describe(placed: list[_Placed]) -> str:
    def alternatives(values) -> str:
        found = list(dict.fromkeys(values))
        return found[0] if len(found) == 1 else "{" + ",".join(found) + "}"

    ordered = sorted(placed, key=lambda p: (SPLITS.index(p.member.split) if p.member.split else 0,
                                            p.member.label))
    classes = alternatives(p.class_folder for p in ordered)
    splits = alternatives(p.split_folder for p in ordered if p.split_folder)
    root = f"{placed[0].root}/" if placed[0].root else ""
    shape = placed[0].shape
    if shape == "split/class":
        return f"{root}{splits}/{classes}"
    if shape == "class/split":
        return f"{root}{classes}/{splits}"
    return f"{root}{classes} (no splits)"


def detect(names: list[str], origin: str) -> Layout:
    """Map file names to (split, label, relative); raise one ``DataError`` line from ``origin``
    when the layout is unknown or ambiguous."""
    placed: list[_Placed] = []
    kept: list[str] = []
    ignored = 0
    for name in names:
        if name.endswith("/"):
            continue  # a directory entry, not a file
        parts = _parts(name)
        if _is_ignored(parts, name):
            ignored += 1
            continue
        kept.append(name)
        where = _place(name, parts, origin)
        if where is None:
            ignored += 1
        else:
            placed.append(where)
    if not placed:
        _fail(origin, f"no Real/ or Fake/ class folders: {_folders_found(kept)}")
    _check_uniform(placed, origin)
    seen: set[tuple] = set()
    for p in placed:
        key = (p.member.split, p.member.label, p.member.relative)
        if key in seen:
            _fail(origin, f"{p.member.name} appears twice", "remove the duplicate entry")
        seen.add(key)
    splits = tuple(s for s in SPLITS if any(p.member.split == s for p in placed))
    return Layout([p.member for p in placed], _describe(placed), splits, ignored)
