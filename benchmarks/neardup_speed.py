"""Speed of the near-duplicate audit at Kaggle-dataset scale, and the pHash distances of real faces.

    python -m benchmarks.neardup_speed [--n 190000] [--distances 4] [--faces-zip PATH]   # from the repo root

Prints one JSON object. Each case's audit time is interleaved with a reference, ``np.unique`` (a sort)
of the same hashes, and reported as a ratio to it (``harness.ratio_to``). Cases, all with Kaggle-like
split sizes (74% / 21% / 6%):
- ``uniform``: random 64-bit hashes (the easy case: small buckets, no near pairs);
- ``clumpy``: 3,000 centres, each copy up to 3 random bit flips away (dense buckets, millions of pairs);
- ``identical_clump``: ~90% one hash (blank images), 0.5% one bit from it, the rest random: billions of
  pairs that must be counted, never listed (tests/test_neardup.py checks the counts of this case);
- ``faces_model`` (with the faces zip): hashes thresholded from a Gaussian fitted to the real faces' low
  DCT coefficients, so the bit biases and correlations of aligned faces shape the buckets;
- ``real_faces`` (with the zip): the 1,600 real pHashes — nearest-neighbour and all-pairs distances, the
  closest pairs by file name. The zip is optional (``/work/shared/data/faces140k-sample.zip`` by default);
  it is read in place, never copied.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import alternate, machine, ratio_to
from deepfake_detector.data.neardup import audit

SPLIT_P = [140_002 / 190_335, 39_428 / 190_335, 10_905 / 190_335]
DEFAULT_ZIP = Path("/work/shared/data/faces140k-sample.zip")


def _timed(name, hashes, splits, d, rounds=3):
    report = []

    def audited():
        report[:] = [audit(hashes, splits, d)]
        return len(hashes)

    def sorted_ten_times():  # the reference: sorting the same hashes, the floor of grouping them at all
        for _ in range(10):  # ten sorts: one is too short to time steadily
            np.unique(hashes)
        return 10 * len(hashes)

    runs = alternate({"sort": sorted_ten_times, "audit": audited}, rounds)
    r = report[0]
    seconds = statistics.median(x["wall_seconds"] for x in runs["audit"])
    return {"case": name, "n": len(hashes), "distance": d, "seconds": round(seconds, 3),
            **ratio_to(runs["sort"], runs["audit"], "np.unique (a sort) of the same hashes"),
            "pairs": r.within_split + r.cross_split, "within_split": r.within_split,
            "cross_split": r.cross_split, "later_matched": int(r.later_matched.sum())}


def _clumpy(n, rng, centres=3000, flips=3):
    h = rng.integers(0, 2**64 - 1, centres, dtype=np.uint64, endpoint=True)[rng.integers(0, centres, n)]
    for _ in range(flips):  # each round flips one random bit of 70% of the copies
        hit = rng.random(n) < 0.7
        h[hit] ^= np.uint64(1) << rng.integers(0, 64, hit.sum()).astype(np.uint64)
    return h


def _identical_clump(n, rng):
    blank = np.uint64(0x8000_0000_FFFF_0000)
    neighbours = np.full(n // 200, blank) ^ (np.uint64(1) << rng.integers(0, 64, n // 200).astype(np.uint64))
    rest = rng.integers(0, 2**64 - 1, n // 10, dtype=np.uint64, endpoint=True)
    return np.r_[np.full(n - len(neighbours) - len(rest), blank), neighbours, rest]


def _faces(zip_path):
    import cv2

    from deepfake_detector.data.images import phash64

    names, hashes, coeffs = [], [], []
    with zipfile.ZipFile(zip_path) as z:
        for name in sorted(n for n in z.namelist() if n.lower().endswith((".jpg", ".jpeg", ".png"))):
            gray = cv2.imdecode(np.frombuffer(z.read(name), np.uint8), cv2.IMREAD_GRAYSCALE)
            names.append(name)
            hashes.append(phash64(gray))
            small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
            coeffs.append(cv2.dct(small)[:8, :8].ravel())  # what phash64 thresholds
    return names, np.array(hashes, np.uint64), np.array(coeffs, np.float64)


def _real_stats(names, h):
    D = np.bitwise_count(h[:, None] ^ h[None, :]).astype(np.int64)
    iu = np.triu_indices(len(h), 1)
    np.fill_diagonal(D, 99)
    nn = D.min(1)
    closest = np.argsort(D[iu], kind="stable")[:6]
    return {
        "case": "real_faces", "n": len(h), "distinct_hashes": len(np.unique(h)),
        "nearest_neighbour_distance_histogram": {int(k): int(v) for k, v in enumerate(np.bincount(nn)) if v},
        "nearest_neighbour_quantiles_0_1_5_50": np.percentile(nn, [0, 1, 5, 50]).tolist(),
        "all_pairs_at_or_below": {d: int((D[iu] <= d).sum()) for d in (2, 4, 6, 8, 10)},
        "all_pairs": len(iu[0]),
        "closest_pairs": [[names[iu[0][k]], names[iu[1][k]], int(D[iu][k])] for k in closest],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=190_000)
    ap.add_argument("--distances", type=int, nargs="+", default=[4])
    ap.add_argument("--faces-zip", type=Path, default=DEFAULT_ZIP)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    splits = rng.choice(3, args.n, p=SPLIT_P)
    cases = {"uniform": rng.integers(0, 2**64 - 1, args.n, dtype=np.uint64, endpoint=True),
             "clumpy": _clumpy(args.n, rng), "identical_clump": _identical_clump(args.n, rng)}
    out = []
    if args.faces_zip.is_file():
        names, real, X = _faces(args.faces_zip)
        out.append(_real_stats(names, real))
        sample = rng.multivariate_normal(X.mean(0), np.cov(X.T), args.n)
        bits = sample > np.median(sample, 1, keepdims=True)  # phash64's threshold
        cases["faces_model"] = np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)
    for d in args.distances:
        out += [_timed(name, h, splits, d) for name, h in cases.items()]
    print(json.dumps({"machine": machine(), "cases": out}, indent=1))


if __name__ == "__main__":
    main()
