"""Preprocess speed as a ratio to the decode limit, and peak memory (with workers), at two sizes.

    python benchmarks/preprocess_speed.py [--sizes 2000 20000] [--archives faces.zip ...] [--rounds 3]
                                          [--baseline GIT_REF]

Each size runs in a throwaway project copy whose params set everything the run depends on (source,
counts, sizes), so the working tree's params.yaml never leaks in. Per round, interleaved:

* ``preprocess``: the whole stage, ``python -m stages.preprocess`` in a subprocess (start-up, imports,
  worker pool, zip listing, near-duplicate audit included), images / wall seconds;
* ``decode``: the reference, plain ``cv2.imdecode`` of the same files from memory in a pool with the
  stage's worker count: the physical limit of a stage that must decode every image.

``ratio`` (median of the per-round ratios) is the figure to compare across machines; goal ≥ 0.6 at
20k images. ``stage_ratio`` uses the stage's own rate from metrics/data.json (timed inside the stage,
from the zip listing to the last record, without interpreter start-up); ``cpu_ratio`` compares CPU
seconds per image, which the other load on a shared machine does not inflate. ``--baseline REF`` adds
the stage as it was at a commit, in the same rounds on the same data (``speedup_over_baseline``).
Every run is checked:
the stage must report the requested image count and source, or the benchmark stops.
Memory: peak RSS of the largest size over the smallest (goal ≤ 1.2: flat in dataset size).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT, DecodeReference, PeakRSS, alternate, check, emit, machine, make_project, \
    project_env, ratio_to, run, set_params, zip_images

from deepfake_detector import usable_cpus
from deepfake_detector.core import paths

REFERENCE = "cv2.imdecode of the same files from memory, same worker count"
WORKERS = usable_cpus()  # the stage's default (preprocess.workers: 0); the reference uses as many


def stage_run(project: Path, expected: dict) -> dict:
    """One whole preprocess stage in a subprocess: its rate, CPU and peak memory, checked."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen([sys.executable, "-m", "stages.preprocess"], cwd=project, env=project_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakRSS(proc.pid) as memory:
        _, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"preprocess failed in {project}:\n{err[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    data = json.loads((project / paths.DATA_METRICS).read_text())
    timing = json.loads((project / paths.PREPROCESS_TIMING).read_text())
    check(f"preprocess in {project}", {"images": data["images_total"], "source": data["source"]["source"]},
          expected)
    return {"items": data["images_total"], "stage_images_per_second": timing["images_per_second"],
            "peak_rss_mib": round(memory.peak / 2**20, 1),
            # the stage and its workers only, not this process's memory sampling
            "cpu_seconds": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3)}


def baseline_copy(ref: str, project: Path, dest: Path) -> Path:
    """The project at git ``ref`` (tracked files), with ``project``'s params and downloaded data."""
    dest.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    (dest / "params.yaml").write_bytes((project / "params.yaml").read_bytes())
    (dest / paths.RAW_DIR).mkdir(parents=True)
    for file in (project / paths.RAW_DIR).iterdir():
        os.link(file, dest / paths.RAW_DIR / file.name)
    return dest


def measure(project: Path, params: dict, expected: dict, rounds: int, baseline: str | None) -> dict:
    set_params(project, params)
    run([str(Path(sys.executable).parent / "dvc"), "repro", "download"], cwd=project, timeout=4 * 3600)
    source = json.loads((project / paths.SOURCE_INFO).read_text())["source"]
    files = zip_images(project / paths.ARCHIVE)
    check(f"download in {project}", {"source": source, "images": len(files)}, expected)
    stages = {"preprocess": lambda: stage_run(project, expected)}
    if baseline:
        old = baseline_copy(baseline, project, project.with_name(project.name + "_baseline"))
        stages["baseline"] = lambda: stage_run(old, expected)
    with DecodeReference(files, WORKERS) as decode:
        runs = alternate({**stages, "decode": decode}, rounds)
    reference = runs["decode"]
    result = {"images": expected["images"], "workers": WORKERS}
    for name in stages:
        stage = runs[name]
        result[name] = {
            **ratio_to(reference, stage, REFERENCE),
            "stage_ratio": ratio_to(reference, stage, REFERENCE, key="stage_images_per_second")["ratio"],
            "wall_seconds": statistics.median(r["wall_seconds"] for r in stage),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in stage),
            "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in stage)}
    result["reference_cpu_seconds"] = statistics.median(r["cpu_seconds"] for r in reference)
    if baseline:
        result["baseline"]["git_ref"] = baseline
        result["speedup_over_baseline"] = ratio_to(runs["baseline"], runs["preprocess"],
                                                   f"the stage at {baseline}")["ratio"]
    print(json.dumps({k: v for k, v in result.items()}), file=sys.stderr)
    return {**result, "rounds": runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[2000, 20000],
                        help="generated sample datasets of these many images (256 px JPEGs)")
    parser.add_argument("--archives", type=Path, nargs="*", default=[],
                        help="also these dataset zips in the Kaggle layout (data.source=local), e.g. "
                             "/work/shared/data/faces140k-sample.zip")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", metavar="GIT_REF",
                        help="also time the stage as it was at this commit, interleaved, on the same data")
    args = parser.parse_args()
    results, started = {}, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            split = {"train": size * 7 // 10, "validation": size * 2 // 10}
            split["test"] = size - split["train"] - split["validation"]
            print(f"sample of {size} images...", file=sys.stderr)
            # A project per size: nothing of one size's data can stand in for the other's.
            project = make_project(Path(tmp) / f"sample_{size}")
            results[f"sample_{size}"] = measure(project, {
                "data.source": "sample", "data.local_path": None, "preprocess.workers": 0,
                "data.sample.image_size": 256, "preprocess.image_size": 256, "preprocess.shard_images": 4096,
                **{f"data.sample.{k}": v for k, v in split.items()}},
                {"images": size, "source": "sample"}, args.rounds, args.baseline)
        for zip_path in map(Path.resolve, args.archives):
            print(f"{zip_path}...", file=sys.stderr)
            results[zip_path.stem] = measure(make_project(Path(tmp) / zip_path.stem), {
                "data.source": "local", "data.local_path": str(zip_path), "preprocess.workers": 0,
                "preprocess.image_size": 256, "preprocess.shard_images": 4096},
                {"images": len(zip_images(zip_path)), "source": "local"}, args.rounds, args.baseline)
    by_size = sorted(results.values(), key=lambda r: r["images"])
    emit({"ratio_goal": 0.6, "target_images_per_second": 2500, "machine": machine(),
          "memory_ratio_largest_to_smallest": round(by_size[-1]["preprocess"]["peak_rss_mib"]
                                                    / by_size[0]["preprocess"]["peak_rss_mib"], 3),
          "target_memory_ratio": 1.2, "seconds": round(time.perf_counter() - started, 1),
          "results": results})


if __name__ == "__main__":
    main()
