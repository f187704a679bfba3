"""Reading zip members by reference (what preprocess's workers do): stored, deflated, damaged."""

from __future__ import annotations

import zipfile

import pytest

from deepfake_detector.errors import DataError
from deepfake_detector.sources import archive

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
