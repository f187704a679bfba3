"""Safe reading of dataset archives and folders.

Nothing here extracts to disk: members are read straight out of the zip. Still, an archive that
carries path tricks (``..``, absolute paths, symlinks) or bomb-sized members is refused as a whole,
before anything is read, because it is not the dataset it claims to be.
"""

from __future__ import annotations

import bz2
import lzma
import os
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deepfake_detector.core.errors import DataError

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


# The compression methods Python's zipfile reads, which ``read`` decompresses (bounded) itself.
READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                    zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_OTHER_METHODS = {1: "Shrink", 6: "Implode", 9: "Deflate64", 93: "Zstandard", 95: "XZ", 97: "WavPack",
                  98: "PPMd", 99: "AES encryption"}
_UTF8_FLAG = 0x800
_CHUNK = 1 << 20


def _utf8_first(info: zipfile.ZipInfo) -> None:
    """Names without the UTF-8 flag (Info-ZIP, older tools) are UTF-8 more often than the cp437 the
    zip spec and ``zipfile`` assume: try UTF-8 first. cp437 maps every byte, so the raw name comes
    back by re-encoding; ``orig_filename`` stays as zipfile read it (its header check uses it)."""
    if info.flag_bits & _UTF8_FLAG:
        return
    try:
        info.filename = info.filename.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass  # not UTF-8: cp437 it is


def _unreadable_method(where: str, method: int) -> DataError:
    name = READABLE_METHODS.get(method) or _OTHER_METHODS.get(method, "an unknown method")
    return DataError(f"{where} is compressed with {name} (zip method {method}), which Python's zipfile "
                     "cannot read; re-zip the dataset with deflate (e.g. `zip -r -Z deflate dataset.zip "
                     "Dataset/`)")


def open_zip(path: str | os.PathLike, limits: Limits) -> zipfile.ZipFile:
    """Open a zip after checking every member's name, type, compression method and size; raise
    ``DataError`` if unsafe or unreadable. Member names are decoded UTF-8 first, then cp437.

    Sizes are the ones the central directory declares; ``read`` enforces them again while
    reading, so a lying header cannot inflate past the cap.
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path} is not a readable zip ({exc}): the file is truncated or corrupt; "
                        "download it again") from None
    total, seen = 0, set()
    for info in archive.infolist():
        _utf8_first(info)
        reason = _unsafe_name(info.filename)
        if reason is None and info.filename in seen:
            reason = "a second entry under the same name"
        seen.add(info.filename)
        mode = info.external_attr >> 16
        if reason is None and info.create_system == 3 and stat.S_ISLNK(mode):
            reason = "a symbolic link"
        if reason is None and info.flag_bits & 0x1:
            reason = "encrypted"
        if reason is None and info.file_size > limits.max_member_bytes:
            reason = (f"{info.file_size / 2**20:.1f} MiB uncompressed, over data.max_member_mb="
                      f"{limits.max_member_bytes / 2**20:g}")
        if reason is None and info.compress_type not in READABLE_METHODS:
            archive.close()
            raise _unreadable_method(f"{path}: member {info.filename!r}", info.compress_type)
        if reason:
            archive.close()
            raise DataError(f"{path}: refusing archive member {info.filename!r}: {reason}; "
                            "use an archive of the dataset without it")
        total += info.file_size
    archive.NameToInfo = {info.filename: info for info in archive.infolist()}
    if total > limits.max_total_bytes:
        archive.close()
        raise DataError(f"{path}: archive expands to {total / 2**30:.2f} GiB, over data.max_total_gb="
                        f"{limits.max_total_bytes / 2**30:g}; raise the cap if this is really the dataset")
    return archive


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


def member_refs(archive: zipfile.ZipFile) -> dict[str, MemberRef]:
    """name -> ``MemberRef`` of every file (not folder) in an archive from ``open_zip``."""
    return {info.filename: MemberRef.of(info) for info in archive.infolist() if not info.is_dir()}


class _Stored:
    needs_input, eof = True, False

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return data


class _Deflate:
    """zlib with the ``needs_input``/``eof`` interface of the bz2 and lzma decompressors."""

    def __init__(self):
        self._zlib, self._tail = zlib.decompressobj(-15), b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        out = self._zlib.decompress(self._tail + data, max_length)
        self._tail = self._zlib.unconsumed_tail
        return out

    @property
    def needs_input(self) -> bool:
        return not self._tail

    @property
    def eof(self) -> bool:
        return self._zlib.eof


def _zip_lzma(header: bytes) -> lzma.LZMADecompressor:
    """A zip LZMA member starts with a 4-byte header (version, properties size) and the 5 LZMA1
    properties: lc/lp/pb packed in one byte, then the dictionary size."""
    if len(header) < 9 or struct.unpack("<H", header[2:4])[0] != 5:
        raise lzma.LZMAError("bad LZMA header")
    packed, dict_size = header[4], struct.unpack("<I", header[5:9])[0]
    lc, lp, pb = packed % 9, packed // 9 % 5, packed // 45
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[
        {"id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": lc, "lp": lp, "pb": pb}])


def _unpack(handle, ref: MemberRef, cap: int) -> bytes:
    """Up to ``cap + 1`` bytes of one member, decompressed in bounded steps (a bomb stops at the cap)."""
    handle.seek(ref.offset)
    header = handle.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile("no local file header")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    handle.seek(ref.offset + 30 + name_length + extra_length)
    left = ref.compressed
    if ref.method == zipfile.ZIP_LZMA:
        lzma_header = handle.read(9)
        left -= len(lzma_header)
        decompressor = _zip_lzma(lzma_header)
    else:
        decompressor = {zipfile.ZIP_STORED: _Stored, zipfile.ZIP_DEFLATED: _Deflate,
                        zipfile.ZIP_BZIP2: bz2.BZ2Decompressor}[ref.method]()
    out = bytearray()
    while left > 0 and len(out) <= cap and not decompressor.eof:
        block = handle.read(min(left, _CHUNK))
        if not block:
            raise EOFError("the member's data is cut short")
        left -= len(block)
        out += decompressor.decompress(block, cap + 1 - len(out))
        while not decompressor.needs_input and not decompressor.eof and len(out) <= cap:
            out += decompressor.decompress(b"", cap + 1 - len(out))
    return bytes(out)


def _regular_file(path: Path, cap: int) -> bytes:
    """Up to ``cap + 1`` bytes of a regular file. Opened without blocking and without following a
    link, and checked on the open descriptor, so a FIFO or device put there is never read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DataError(f"{path} is not a regular file; remove it from the dataset folder")
        out = bytearray()
        while len(out) <= cap and (block := handle.read(min(_CHUNK, cap + 1 - len(out)))):
            out += block
        return bytes(out)


def read(source: Path | MemberRef, limits: Limits, zip_file=None) -> bytes:
    """The bytes of one dataset file: a folder file (a ``Path``) or a zip member (a ``MemberRef``
    read from ``zip_file``, the archive open in binary mode). The one place that enforces the
    member-size cap while reading, checks a member's CRC and size, and decompresses every method
    zipfile reads; anything wrong is a ``DataError`` naming the file."""
    cap = limits.max_member_bytes
    if isinstance(source, MemberRef):
        where = f"{getattr(zip_file, 'name', 'archive')}: member {source.name!r}"
        if source.method not in READABLE_METHODS:
            raise _unreadable_method(where, source.method)
        try:
            data = _unpack(zip_file, source, cap)
        except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError) as exc:
            raise DataError(f"{where} is corrupt ({exc}); the archive is damaged, download or "
                            "re-create it") from None
    else:
        where = str(source)
        try:
            data = _regular_file(Path(source), cap)
        except OSError as exc:
            raise DataError(f"{where} cannot be read ({exc.strerror or exc}); check the dataset "
                            "folder") from None
    if len(data) > cap and isinstance(source, MemberRef):
        raise DataError(f"{where} expands past data.max_member_mb={cap / 2**20:g}: the archive is not "
                        "what it claims to be")
    if len(data) > cap:  # it grew since the folder was listed
        raise DataError(f"{where} is over data.max_member_mb={cap / 2**20:g}; remove it or raise the cap")
    if isinstance(source, MemberRef):
        if len(data) != source.size:
            raise DataError(f"{where} is {len(data)} bytes, its header says {source.size}; the archive "
                            "is damaged, download or re-create it")
        if zlib.crc32(data) != source.crc:
            raise DataError(f"{where} fails its CRC check; the archive is corrupt, download or re-create it")
    return data


def verify_zip(path: str | os.PathLike, limits: Limits) -> int:
    """Full integrity check (every member read: CRC, size, caps); returns the member count.
    Raises ``DataError``."""
    with open_zip(path, limits) as archive:
        refs = member_refs(archive)
        count = len(archive.infolist())
    with open(path, "rb") as handle:
        for ref in refs.values():
            read(ref, limits, handle)
    return count


_SPECIAL_FILES = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _plain_entry(root: Path, path: Path) -> os.stat_result:
    """``lstat`` of a folder entry; a symbolic link, FIFO, socket or device is refused unopened."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise DataError(f"{root}: refusing symbolic link {path.relative_to(root)}; "
                        "copy the real files into the folder instead")
    kind = next((kind for test, kind in _SPECIAL_FILES if test(info.st_mode)), None)
    if kind:
        raise DataError(f"{root}: refusing {path.relative_to(root)}: it is {kind}, not a regular file, "
                        "and reading it could block forever; move it out of the folder")
    return info


def list_folder(root: str | os.PathLike, limits: Limits) -> list[str]:
    """Relative POSIX paths of the regular files under ``root``, junk left out, checked like a zip.

    Only ``lstat`` is used: a symbolic link, FIFO, socket or device is refused before anything is
    opened (opening a FIFO blocks forever, and DVC, which hashes the folder, would block on it too).
    """
    root = Path(root)
    names, total = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for dirname in dirnames:
            _plain_entry(root, Path(dirpath) / dirname)
        for filename in sorted(filenames):
            full = Path(dirpath) / filename
            size = _plain_entry(root, full).st_size
            rel = full.relative_to(root).as_posix()
            if is_junk(rel):
                continue
            if size > limits.max_member_bytes:
                raise DataError(f"{full}: {size / 2**20:.1f} MiB, over data.max_member_mb="
                                f"{limits.max_member_bytes / 2**20:g}; remove it or raise the cap")
            total += size
            names.append(rel)
    if total > limits.max_total_bytes:
        raise DataError(f"{root}: {total / 2**30:.2f} GiB of files, over data.max_total_gb="
                        f"{limits.max_total_bytes / 2**30:g}; raise the cap if this is really the dataset")
    return names
