"""How fast the one dataset reader (``sources.archive.read``: bounded decompression, cap, CRC) reads
zip members, against zipfile's own ``ZipFile.read`` in the same run, per compression method.

    python benchmarks/archive_read.py [--images 2000] [--rounds 5]

Prints one JSON object: per method, members per second for both and their ratio (reader / zipfile;
above 1 = faster), on generated ~12 KB JPEGs (like the real dataset's), plus the stored archive of
``/work/shared/data/faces140k-sample.zip`` under ``"real_faces"`` when it exists (optional).
Both read from the page cache: the first round warms it and every time is the median of the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deepfake_detector.sources import archive  # noqa: E402
from inspect_speed import REAL_FACES, generated_jpegs  # noqa: E402

LIMITS = archive.Limits(max_member_bytes=64 * 2**20, max_total_bytes=2**40)
METHODS = {"stored": zipfile.ZIP_STORED, "deflate": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2,
           "lzma": zipfile.ZIP_LZMA}


def median_seconds(read_all, rounds: int) -> float:
    read_all()  # warm the page cache
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        read_all()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def compare(path: Path, rounds: int) -> dict:
    with archive.open_zip(path, LIMITS) as zf:
        refs = list(archive.member_refs(zf).values())

    def reader():
        with open(path, "rb") as handle:
            for ref in refs:
                archive.read(ref, LIMITS, handle)

    def reference():
        with zipfile.ZipFile(path) as zf:
            for ref in refs:
                zf.read(ref.name)

    ours, theirs = median_seconds(reader, rounds), median_seconds(reference, rounds)
    return {"members": len(refs), "reader_per_second": round(len(refs) / ours),
            "zipfile_per_second": round(len(refs) / theirs), "ratio": round(theirs / ours, 2)}


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
    print(json.dumps(result))


if __name__ == "__main__":
    main()
