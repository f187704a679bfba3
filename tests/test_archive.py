"""Reading dataset files through the one reader: zip members by reference (what preprocess's
workers do) in every compression method zipfile reads, damaged members, bombs, names without the
UTF-8 flag, and special files in a folder."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import zipfile
from types import SimpleNamespace

import pytest

import badimages
from deepfake_detector.core.errors import DataError
from deepfake_detector.data.sources import archive
from projectcopy import ROOT

LIMITS = archive.Limits(max_member_bytes=2**20, max_total_bytes=2**30)


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_members_read_by_reference_equal_zipfile_reads(tmp_path, method):
    path = tmp_path / "a.zip"
    payloads = {f"Dataset/Train/Real/{i}.jpg": bytes([i]) * (1000 + i) for i in range(5)}
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, data in payloads.items():
            zf.writestr(name, data)
    with archive.open_zip(path, LIMITS) as zf:
        refs = [archive.MemberRef.of(info) for info in zf.infolist()]
    with open(path, "rb") as handle:
        assert {ref.name: archive.read(ref, LIMITS, handle) for ref in refs} == payloads


def test_a_damaged_member_fails_its_crc(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.jpg", b"A" * 5000)
    with archive.open_zip(path, LIMITS) as zf:
        ref = archive.MemberRef.of(zf.infolist()[0])
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # inside the stored member's bytes
    path.write_bytes(bytes(data))
    with open(path, "rb") as handle, pytest.raises(DataError, match="CRC"):
        archive.read(ref, LIMITS, handle)


# --- every compression method zipfile reads; the ones it can't, as one line --------------------------

METHODS = {"stored": zipfile.ZIP_STORED, "deflate": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2,
           "lzma": zipfile.ZIP_LZMA}


def canonical_zip(path, method, per_folder: int = 2):
    """A small dataset in the canonical layout, compressed with ``method``; returns {name: bytes}."""
    files, seed = {}, 0
    for split in ("Train", "Validation", "Test"):
        for label in ("Real", "Fake"):
            for i in range(per_folder):
                seed += 1
                files[f"Dataset/{split}/{label}/{i}.jpg"] = badimages.good_jpeg(seed=seed, size=64)
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return files


@pytest.mark.parametrize("method", METHODS.values(), ids=METHODS.keys())
def test_every_method_zipfile_reads_is_read_by_reference_and_verified(tmp_path, method):
    path = tmp_path / "a.zip"
    files = canonical_zip(path, method)
    with archive.open_zip(path, LIMITS) as zf:
        refs = archive.member_refs(zf)
    with open(path, "rb") as handle:
        assert {name: archive.read(ref, LIMITS, handle) for name, ref in refs.items()} == files
    assert archive.verify_zip(path, LIMITS) == len(files)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA], ids=["bzip2", "lzma"])
def test_a_bzip2_or_lzma_dataset_preprocesses_like_a_stored_one(tmp_path, method):
    """Download passes a canonical archive through as it is; preprocess must then read its members
    (it used to skip every one of them as corrupt)."""
    from deepfake_detector.core.params import load_section
    from deepfake_detector.data.preprocessing import preprocess
    from deepfake_detector.data.sources.local import import_dataset

    source = tmp_path / "mine.zip"
    files = canonical_zip(source, method, per_folder=3)
    carve = SimpleNamespace(validation_fraction=0.1, test_fraction=0.1, seed=42)
    summary = import_dataset(source, tmp_path / "raw" / "dataset.zip", carve, LIMITS, progress=False)
    assert not summary["repacked"]  # canonical already: copied, still compressed
    params = dataclasses.replace(load_section("preprocess", ROOT / "params.yaml"), image_size=64, workers=1)
    stats = preprocess(tmp_path / "raw" / "dataset.zip", tmp_path / "processed", params)
    assert stats["skipped"] == {} and stats["images_total"] == len(files)
    assert all(stats[split] == {"real": 3, "fake": 3} for split in ("train", "validation", "test"))


def _set_method(path, method: int) -> None:
    """Rewrite every member's compression method id in place (local headers and central directory)."""
    raw = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = raw.find(signature)
        while start != -1:
            raw[start + offset:start + offset + 2] = method.to_bytes(2, "little")
            start = raw.find(signature, start + 4)
    path.write_bytes(bytes(raw))


def test_deflate64_is_one_line_naming_the_method_and_the_fix(tmp_path):
    from deepfake_detector.data.sources.local import import_dataset

    path = tmp_path / "d64.zip"
    canonical_zip(path, zipfile.ZIP_DEFLATED)
    _set_method(path, 9)  # Deflate64, as Windows' "Send to compressed folder" writes large files
    carve = SimpleNamespace(validation_fraction=0.1, test_fraction=0.1, seed=42)
    with pytest.raises(DataError) as caught:
        import_dataset(path, tmp_path / "out.zip", carve, LIMITS, progress=False)
    message = str(caught.value)
    assert "Deflate64" in message and "re-zip" in message and "deflate" in message
    assert "\n" not in message and str(path) in message


def test_a_bzip2_bomb_stops_at_the_cap_even_with_a_lying_size_header(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as zf:
        zf.writestr("Dataset/Train/Real/bomb.jpg", bytes(32 * 2**20))  # ~40 bytes per MiB compressed
    raw = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size fields
        at = raw.find(signature) + offset
        raw[at:at + 4] = (1000).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    small = archive.Limits(max_member_bytes=2**16, max_total_bytes=2**30)
    with archive.open_zip(path, small) as zf:  # the declared size passes the cap...
        ref = archive.member_refs(zf)["Dataset/Train/Real/bomb.jpg"]
    with open(path, "rb") as handle, pytest.raises(DataError, match="expands past data.max_member_mb"):
        archive.read(ref, small, handle)  # ...the data does not, and reading stops there


# --- names without the UTF-8 flag ------------------------------------------------------------------

def _unflagged_zip(path, raw_name: bytes) -> None:
    """One member whose name is ``raw_name`` with the UTF-8 flag clear (as Info-ZIP writes them)."""
    placeholder = b"Dataset/Train/Real/" + b"x" * (len(raw_name) - len(b"Dataset/Train/Real/"))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(placeholder.decode(), b"image bytes")
    path.write_bytes(path.read_bytes().replace(placeholder, raw_name))


@pytest.mark.parametrize("raw_name, expected", [
    ("Dataset/Train/Real/café.jpg".encode("utf-8"), "Dataset/Train/Real/café.jpg"),  # UTF-8, no flag
    ("Dataset/Train/Real/café.jpg".encode("cp437"), "Dataset/Train/Real/café.jpg"),  # real cp437
], ids=["utf8", "cp437"])
def test_names_without_the_utf8_flag_are_tried_as_utf8_first(tmp_path, raw_name, expected):
    path = tmp_path / "names.zip"
    _unflagged_zip(path, raw_name)
    with archive.open_zip(path, LIMITS) as zf:
        assert not zf.infolist()[0].flag_bits & 0x800
        refs = archive.member_refs(zf)
    assert list(refs) == [expected]
    with open(path, "rb") as handle:
        assert archive.read(refs[expected], LIMITS, handle) == b"image bytes"


# --- special files in a dataset folder: refused without being opened --------------------------------

@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: SIGALRM interrupts a blocking open() of a FIFO."""
    def expired(*_):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _folder_with(tmp_path, kind: str):
    root = tmp_path / "in"
    for split in ("Train", "Validation", "Test"):
        for label in ("Real", "Fake"):
            (root / split / label).mkdir(parents=True)
            (root / split / label / "a.jpg").write_bytes(badimages.good_jpeg(seed=len(split + label)))
    special = root / "Train" / "Real" / "b.jpg"
    if kind == "fifo":
        os.mkfifo(special)
    else:
        held = socket.socket(socket.AF_UNIX)
        held.bind(str(special))
        held.close()
    return root, special


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_a_fifo_or_socket_in_a_dataset_folder_is_refused_unopened(tmp_path, kind):
    from deepfake_detector.data.sources.local import import_dataset, link_input

    root, special = _folder_with(tmp_path, kind)
    carve = SimpleNamespace(validation_fraction=0.1, test_fraction=0.1, seed=42)
    with deadline(20):
        for attempt in (lambda: import_dataset(root, tmp_path / "out.zip", carve, LIMITS, progress=False),
                        lambda: link_input(root, tmp_path / "local_input", LIMITS),
                        lambda: archive.read(special, LIMITS)):
            with pytest.raises(DataError) as caught:
                attempt()
            assert "Train/Real/b.jpg" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out.zip").exists() and not (tmp_path / "local_input").exists()


def test_a_fifo_as_the_local_path_is_refused_unopened(tmp_path):
    from deepfake_detector.data.sources.local import import_dataset

    os.mkfifo(tmp_path / "dataset.zip")
    carve = SimpleNamespace(validation_fraction=0.1, test_fraction=0.1, seed=42)
    with deadline(20), pytest.raises(DataError, match="neither a folder nor a .zip file"):
        import_dataset(tmp_path / "dataset.zip", tmp_path / "out.zip", carve, LIMITS, progress=False)
