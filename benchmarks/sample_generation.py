"""Benchmark: generate the default-size sample dataset (params.yaml ``data.sample``) into a temp
folder, against a plain multi-process ``cv2.imdecode`` of the images it wrote (same worker count),
the two interleaved round by round (``harness.alternate``).

Prints ``images``, ``workers``, ``cpu_ms_per_image`` (this process and its workers: it barely moves
when other work shares the CPU, which wall time does) and ``ratio``, generation's images/s over the
decode rate: the figure to compare across machines.

    python benchmarks/sample_generation.py [--workers N] [--rounds 3] [--params params.yaml]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

from benchmarks.harness import DecodeReference, alternate, emit, machine, ratio_to, zip_images
from deepfake_detector.core.params import load_section
from deepfake_detector.data.sources import sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = one per CPU)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    args = parser.parse_args()

    params = load_section("data", args.params).sample
    with tempfile.TemporaryDirectory() as folder:
        dest = Path(folder) / "sample.zip"

        def generate() -> int:
            return sample.generate(dest, params, workers=args.workers, progress=False)["images"]

        images = generate()
        workers = sample._worker_count(args.workers, images)
        with DecodeReference(zip_images(dest), workers) as decode:
            runs = alternate({"generate": generate, "decode": decode}, args.rounds)
    cpu = statistics.median(r["cpu_seconds"] for r in runs["generate"])
    emit({"images": images, "workers": workers, "machine": machine(),
          "seconds": statistics.median(r["wall_seconds"] for r in runs["generate"]),
          "cpu_ms_per_image": round(cpu / images * 1e3, 2),
          **ratio_to(runs["decode"], runs["generate"], "cv2.imdecode of the generated files, same workers")})


if __name__ == "__main__":  # the guard matters: the worker processes are spawned, not forked
    main()
