"""What ``train.deterministic`` costs: training img/s with it on and off, interleaved (on, off, on,
off...) in one project copy on the sample data, each run a fresh `python -m stages.train` process
(determinism can't be switched off inside a process once on).

Prints JSON: per setting the steady training img/s of each run (``metrics/timing/train.json``), the
wall and CPU seconds of each whole run, and two costs: ``cost`` = 1 - median img/s on / off, and
``cpu_cost`` = median CPU seconds on / off - 1. On a machine loaded by others the wall-clock rates
swing with their load; CPU seconds don't, so ``cpu_cost`` is the figure to trust there.

``--compare onednn`` measures oneDNN instead: TF_ENABLE_ONEDNN_OPTS unset (on) against 0 (off), both
deterministic ("deterministic" in the JSON then means oneDNN on, "not_deterministic" off).

``python benchmarks/determinism_cost.py [--rounds 2] [--epochs 3] [--model mobilenet_v3_small]
[--compare deterministic|onednn]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import psutil

from harness import dvc, emit, make_project, project_env, set_params

from deepfake_detector.core import paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--train-images", type=int, default=800)
    parser.add_argument("--compare", choices=("deterministic", "onednn"), default="deterministic")
    args = parser.parse_args()
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project", {
            "data.sample.train": args.train_images, "data.sample.image_size": 256,
            "preprocess.image_size": 256,
            "train.model": args.model, "train.image_size": 128, "train.batch_size": 64,
            "train.epochs": args.epochs, "train.patience": args.epochs, "train.cache_ram_mb": 2048})
        dvc("repro", "preprocess", cwd=project)
        runs = {True: [], False: []}
        for round_ in range(args.rounds):
            for deterministic in (True, False):
                onednn = args.compare == "onednn"
                set_params(project, {"train.deterministic": deterministic or onednn})
                env = project_env(**({"TF_ENABLE_ONEDNN_OPTS": "0"} if onednn and not deterministic else {}))
                started = time.perf_counter()
                proc = psutil.Popen([sys.executable, "-m", "stages.train"], cwd=project, env=env)
                cpu = 0.0
                while proc.poll() is None:  # CPU seconds of the process tree, sampled to the end
                    try:
                        times = proc.cpu_times()
                        cpu = max(cpu, times.user + times.system)
                    except psutil.Error:
                        pass
                    time.sleep(0.5)
                if proc.returncode:
                    raise SystemExit(f"train failed (deterministic={deterministic})")
                timing = json.loads((project / paths.TRAIN_TIMING).read_text())
                runs[deterministic].append({"images_per_second": timing["train_images_per_second"],
                                            "wall_seconds": round(time.perf_counter() - started, 1),
                                            "cpu_seconds": round(cpu, 1)})
                print(f"round {round_ + 1} deterministic={deterministic}: {runs[deterministic][-1]}",
                      file=sys.stderr)
    median = {k: statistics.median(r["images_per_second"] for r in v) for k, v in runs.items()}
    emit({"compare": args.compare, "model": args.model, "train_images": args.train_images,
          "epochs": args.epochs,
          "deterministic": {"runs": runs[True], "median_images_per_second": median[True]},
          "not_deterministic": {"runs": runs[False], "median_images_per_second": median[False]},
          "cost": round(1 - median[True] / median[False], 3),
          "cpu_cost": round(statistics.median(r["cpu_seconds"] for r in runs[True])
                            / statistics.median(r["cpu_seconds"] for r in runs[False]) - 1, 3)})


if __name__ == "__main__":
    main()
