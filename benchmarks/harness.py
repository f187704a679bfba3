"""What the benchmarks share: a fresh project copy to run `dvc` in, and peak memory of a process tree.

Every benchmark prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from projectcopy import ROOT, dvc, make_project, project_env, run, set_params  # noqa: E402,F401


class PeakRSS:
    """Samples the summed RSS of a process and all its children (worker pools included)."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def timed(args: list[str], cwd: Path, env: dict | None = None) -> dict:
    """Run a command; wall seconds and peak tree memory (MiB). Raises on failure."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, env=env or project_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    with PeakRSS(proc.pid) as memory:
        out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{out[-2000:]}\n{err[-4000:]}")
    return {"seconds": round(time.perf_counter() - started, 2), "peak_rss_mib": round(memory.peak / 2**20, 1),
            "stdout": out, "stderr": err}


def emit(result: dict) -> None:
    print(json.dumps(result, indent=2))


def model_arguments(description: str):
    """An argument parser with ``--model-name`` and ``--image-size``, defaulting to params.yaml's train."""
    import argparse

    import yaml

    train = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model-name", default=train["model"])
    parser.add_argument("--image-size", type=int, default=train["image_size"])
    return parser


def untrained_model(folder: Path, name: str, image_size: int) -> Path:
    """``folder/model.keras``: the named model, untrained (speed does not depend on the weights)."""
    from deepfake_detector import modelfile, models

    path = folder / "model.keras"
    modelfile.save(models.build(name, image_size), path, {"model": name, "image_size": image_size})
    return path
