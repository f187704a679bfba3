"""Preprocess throughput and peak memory (main process + workers) at two dataset sizes.

Targets: ≥ 2,500 images/s on 2 cores for 256x256 JPEGs already at size; peak memory flat in dataset
size (≤ 1.2x from 2k to 20k images). With --faces ZIP it also runs on a real-face archive.
Usage: python benchmarks/preprocess_speed.py [--sizes 2000 20000] [--faces ../shared/data/faces140k-sample.zip]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from harness import dvc, emit, make_project, set_params, timed

from deepfake_detector import paths


def measure(project: Path, params: dict) -> dict:
    set_params(project, params)
    dvc("repro", "--single-item", "download", cwd=project)
    result = timed([sys.executable, "-m", "stages.preprocess"], cwd=project)
    data = json.loads((project / paths.DATA_METRICS).read_text())
    return {"images": data["images_total"], "wall_seconds": result["seconds"],
            "images_per_second": data["images_per_second"], "peak_rss_mib": result["peak_rss_mib"],
            "near_duplicate_seconds": data["duplicates"]["near_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--faces", type=Path, default=None)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project")
        for size in args.sizes:
            split = {"train": size * 7 // 10, "validation": size * 2 // 10}
            split["test"] = size - split["train"] - split["validation"]
            print(f"sample of {size} images...", file=sys.stderr)
            results[f"sample_{size}"] = measure(project, {
                "data.sample.image_size": 256, "preprocess.image_size": 256, "preprocess.shard_images": 4096,
                **{f"data.sample.{k}": v for k, v in split.items()}})
        if args.faces:
            results["faces"] = measure(project, {"data.source": "local",
                                                 "data.local_path": str(args.faces.resolve())})
    sizes = [results[f"sample_{s}"] for s in args.sizes]
    emit({"results": results, "target_images_per_second": 2500,
          "memory_ratio_largest_to_smallest": round(sizes[-1]["peak_rss_mib"] / sizes[0]["peak_rss_mib"], 3),
          "target_memory_ratio": 1.2})


if __name__ == "__main__":
    main()
