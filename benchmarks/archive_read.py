"""How fast the one dataset reader (``sources.archive.read``: bounded decompression, cap, CRC) reads
zip members, against zipfile's own ``ZipFile.read`` in the same run, per compression method.

    python benchmarks/archive_read.py [--images 2000] [--rounds 5]

Prints one JSON object: per method, members per second for both and their ratio (reader / zipfile;
above 1 = faster), on generated ~12 KB JPEGs (like the real dataset's), plus the stored archive of
``/work/shared/data/faces140k-sample.zip`` under ``"real_faces"`` when it exists (optional).
Both read from the page cache (warmed first), interleaved round by round (``harness.alternate``); the
ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import alternate, emit, machine, ratio_to
from deepfake_detector.data.sources import archive
from inspect_speed import REAL_FACES, generated_jpegs

LIMITS = archive.Limits(max_member_bytes=64 * 2**20, max_total_bytes=2**40)
METHODS = {"stored": zipfile.ZIP_STORED, "deflate": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2,
           "lzma": zipfile.ZIP_LZMA}


def compare(path: Path, rounds: int) -> dict:
    with archive.open_zip(path, LIMITS) as zf:
        refs = list(archive.member_refs(zf).values())

    def reader():
        with open(path, "rb") as handle:
            for ref in refs:
                archive.read(ref, LIMITS, handle)
        return len(refs)

    def reference():
        with zipfile.ZipFile(path) as zf:
            for ref in refs:
                zf.read(ref.name)
        return len(refs)

    reader(), reference()  # warm the page cache
    runs = alternate({"zipfile": reference, "reader": reader}, rounds)
    return {"members": len(refs),
            **ratio_to(runs["zipfile"], runs["reader"], "zipfile.ZipFile.read, same members")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    jpegs = generated_jpegs(args.images)
    result = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, method in METHODS.items():
            path = Path(folder) / f"{name}.zip"
            with zipfile.ZipFile(path, "w", compression=method) as zf:
                for i, data in enumerate(jpegs):
                    zf.writestr(f"Dataset/Train/{'Real' if i % 2 else 'Fake'}/{i:06d}.jpg", data)
            result[name] = compare(path, args.rounds)
            print(f"{name}: {result[name]}", file=sys.stderr)
    if REAL_FACES.exists():
        result["real_faces"] = compare(REAL_FACES, args.rounds)
    emit({"machine": machine(), **result})


if __name__ == "__main__":
    main()
