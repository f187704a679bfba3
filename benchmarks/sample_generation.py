"""Benchmark: generate the default-size sample dataset (params.yaml ``data.sample``) into a temp
folder and print ``{"images": n, "seconds": s, "images_per_second": x, "workers": w,
"cpu_ms_per_image": c}``. ``cpu_ms_per_image`` (this process and its workers) barely moves when other
work shares the CPU, which wall time does.

    python benchmarks/sample_generation.py [--workers N] [--params params.yaml]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

from deepfake_detector.params import load_section  # noqa: E402
from deepfake_detector.sources import sample  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = one per CPU)")
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    args = parser.parse_args()

    params = load_section("data", args.params).sample
    def cpu_seconds() -> float:
        return sum(r.ru_utime + r.ru_stime for r in map(resource.getrusage, (resource.RUSAGE_SELF,
                                                                          resource.RUSAGE_CHILDREN)))

    with tempfile.TemporaryDirectory() as folder:
        started, cpu = time.perf_counter(), cpu_seconds()
        summary = sample.generate(Path(folder) / "sample.zip", params, workers=args.workers, progress=False)
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    print(json.dumps({
        "images": summary["images"],
        "seconds": round(seconds, 2),
        "images_per_second": round(summary["images"] / seconds, 1),
        "workers": sample._worker_count(args.workers, summary["images"]),
        "cpu_ms_per_image": round(cpu / summary["images"] * 1e3, 2),
    }))


if __name__ == "__main__":  # the guard matters: the worker processes are spawned, not forked
    main()
