"""Safe reading of dataset archives and folders.

Nothing here extracts to disk: members are read straight out of the zip. Still, an archive that
carries path tricks (``..``, absolute paths, symlinks) or bomb-sized members is refused as a whole,
before anything is read, because it is not the dataset it claims to be.
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import DataError

# Files that archivers and desktops add; never dataset content.
JUNK_PARTS = ("__MACOSX",)
JUNK_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")


@dataclass(frozen=True)
class Limits:
    max_member_bytes: int
    max_total_bytes: int

    @classmethod
    def from_params(cls, data_params) -> "Limits":
        return cls(int(data_params.max_member_mb * 2**20), int(data_params.max_total_gb * 2**30))


def is_junk(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p in JUNK_PARTS for p in parts) or parts[-1] in JUNK_NAMES or parts[-1].startswith("._")


def _unsafe_name(name: str) -> str | None:
    """Why a member name is unsafe, or None."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if "\\" in name:
        return "a backslash path"
    if ".." in PurePosixPath(name).parts:
        return "a '..' path"
    if "\x00" in name:
        return "a NUL byte in its name"
    return None


def open_zip(path: str | os.PathLike, limits: Limits) -> zipfile.ZipFile:
    """Open a zip after checking every member's name, type and size; raise ``DataError`` if unsafe.

    Sizes are the ones the central directory declares; ``read_member`` enforces them again while
    reading, so a lying header cannot inflate past the cap.
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path} is not a readable zip ({exc}): the file is truncated or corrupt; "
                        "download it again") from None
    total = 0
    for info in archive.infolist():
        reason = _unsafe_name(info.filename)
        mode = info.external_attr >> 16
        if reason is None and info.create_system == 3 and stat.S_ISLNK(mode):
            reason = "a symbolic link"
        if reason is None and info.flag_bits & 0x1:
            reason = "encrypted"
        if reason is None and info.file_size > limits.max_member_bytes:
            reason = (f"{info.file_size / 2**20:.1f} MiB uncompressed, over data.max_member_mb="
                      f"{limits.max_member_bytes / 2**20:g}")
        if reason:
            archive.close()
            raise DataError(f"{path}: refusing archive member {info.filename!r}: {reason}; "
                            "use an archive of the dataset without it")
        total += info.file_size
    if total > limits.max_total_bytes:
        archive.close()
        raise DataError(f"{path}: archive expands to {total / 2**30:.2f} GiB, over data.max_total_gb="
                        f"{limits.max_total_bytes / 2**30:g}; raise the cap if this is really the dataset")
    return archive


def read_member(archive: zipfile.ZipFile, name: str, limits: Limits) -> bytes:
    """A member's bytes, reading at most the cap (a forged size header cannot bomb us)."""
    with archive.open(name) as handle:
        data = handle.read(limits.max_member_bytes + 1)
    if len(data) > limits.max_member_bytes:
        raise DataError(f"{archive.filename}: member {name!r} expands past data.max_member_mb; "
                        "the archive is not what it claims to be")
    return data


@dataclass(frozen=True)
class MemberRef:
    """Where one member's bytes lie in a zip: enough to read it without the central directory,
    so worker processes need not each parse (and hold) an index of 190k members."""

    name: str
    offset: int
    compressed: int
    size: int
    method: int
    crc: int

    @classmethod
    def of(cls, info: zipfile.ZipInfo) -> "MemberRef":
        return cls(info.filename, info.header_offset, info.compress_size, info.file_size,
                   info.compress_type, info.CRC)


def read_ref(handle, ref: MemberRef, limits: Limits) -> bytes:
    """A member's bytes via its ``MemberRef`` from an open binary file; CRC-checked like zipfile."""
    handle.seek(ref.offset)
    header = handle.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise DataError(f"{getattr(handle, 'name', 'archive')}: member {ref.name!r} has no local header; "
                        "the archive is corrupt, download it again")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    handle.seek(ref.offset + 30 + name_length + extra_length)
    raw = handle.read(ref.compressed)
    if ref.method == zipfile.ZIP_STORED:
        data = raw
    elif ref.method == zipfile.ZIP_DEFLATED:
        data = zlib.decompressobj(-15).decompress(raw, limits.max_member_bytes + 1)
    else:
        raise DataError(f"{getattr(handle, 'name', 'archive')}: member {ref.name!r} uses compression "
                        f"method {ref.method}; repack the archive as a plain (stored or deflated) zip")
    if len(data) > limits.max_member_bytes:
        raise DataError(f"member {ref.name!r} expands past data.max_member_mb; the archive is not what "
                        "it claims to be")
    if zlib.crc32(data) != ref.crc:
        raise DataError(f"member {ref.name!r} fails its CRC check; the archive is corrupt, "
                        "download it again")
    return data


def verify_zip(path: str | os.PathLike, limits: Limits) -> int:
    """Full integrity check (every member's CRC); returns the member count. Raises ``DataError``."""
    with open_zip(path, limits) as archive:
        try:
            bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: archive is corrupt ({exc}); download it again") from None
        if bad is not None:
            raise DataError(f"{path}: archive member {bad!r} fails its CRC check; download it again")
        return len(archive.infolist())


def list_folder(root: str | os.PathLike, limits: Limits) -> list[str]:
    """Relative POSIX paths of the regular files under ``root``, junk left out, checked like a zip."""
    root = Path(root)
    names, total = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for entry in [*dirnames, *sorted(filenames)]:
            full = Path(dirpath) / entry
            if full.is_symlink():
                raise DataError(f"{root}: refusing symbolic link {full.relative_to(root)}; "
                                "copy the real files into the folder instead")
        for filename in sorted(filenames):
            full = Path(dirpath) / filename
            rel = full.relative_to(root).as_posix()
            if is_junk(rel):
                continue
            size = full.stat().st_size
            if size > limits.max_member_bytes:
                raise DataError(f"{full}: {size / 2**20:.1f} MiB, over data.max_member_mb="
                                f"{limits.max_member_bytes / 2**20:g}; remove it or raise the cap")
            total += size
            names.append(rel)
    if total > limits.max_total_bytes:
        raise DataError(f"{root}: {total / 2**30:.2f} GiB of files, over data.max_total_gb="
                        f"{limits.max_total_bytes / 2**30:g}; raise the cap if this is really the dataset")
    return names
