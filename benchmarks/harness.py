"""What the benchmarks share: a fresh project copy to run `dvc` in, peak memory of a process tree, and
same-run ratios: interleaved timing, a reference, and checks that a run measured what it claims.

Every benchmark prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Callable

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from projectcopy import ROOT, dvc, make_project, project_env, run, set_params  # noqa: F401 (the benchmarks import these from here)


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
    print(json.dumps(result, indent=2), flush=True)  # before any teardown crash of a library


# --- Same-run ratios (issue 14) ---------------------------------------------------------------
# Machines of one kind differ by ~2.4x and the load of a shared machine drifts by tens of per cent
# within minutes, so absolute rates don't carry. Every benchmark also measures a reference in the
# same run, interleaved with what it measures (A, B, A, B ...), and reports the ratio of the two:
# that is the figure to compare across machines.


def median_seconds(fn, repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn`` (latencies; rates go through ``alternate``)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and every child it has had, live or finished."""
    own = time.process_time()
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    live = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
            live += times.user + times.system
        except psutil.Error:
            pass
    return own + done.ru_utime + done.ru_stime + live


def alternate(fns: dict[str, Callable[[], int | dict]], rounds: int) -> dict[str, list[dict]]:
    """Run each of ``fns`` once per round, in turn (A, B, A, B ...), so drifting load hits all alike.

    Each fn does its whole measured work and returns how many items it handled (or a dict with
    ``items`` and anything else to keep). Returns, per name, one dict per round: items, wall and CPU
    seconds, items_per_second, plus whatever the fn returned.
    """
    runs: dict[str, list[dict]] = {name: [] for name in fns}
    for round_ in range(rounds):
        for name, fn in fns.items():
            cpu, started = cpu_seconds(), time.perf_counter()
            out = fn()
            wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
            out = out if isinstance(out, dict) else {"items": out}
            # a fn may give its own CPU seconds (e.g. of its subprocess only)
            runs[name].append({"wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), **out,
                               "items_per_second": round(out["items"] / wall, 1)})
            print(f"round {round_ + 1}/{rounds} {name}: {runs[name][-1]['items_per_second']} items/s",
                  file=sys.stderr)
    return runs


def ratio_to(reference: list[dict], measured: list[dict], name: str, key: str = "items_per_second",
             reference_key: str = "items_per_second") -> dict:
    """The one way a benchmark reports speed: ``measured / reference`` per round (the two were timed
    back to back, see ``alternate``), the median of those, and both median rates. ``key`` and
    ``reference_key`` pick the rates (higher = faster) from each round's dict. ``cpu_ratio`` compares
    CPU seconds per item where both rounds give them: the other load on a shared machine steals wall
    time from both, but not CPU time."""
    per_round = [m[key] / r[reference_key] for m, r in zip(measured, reference)]
    result = {"ratio": round(statistics.median(per_round), 3), "reference": name,
              "ratio_per_round": [round(x, 3) for x in per_round],
              key: round(statistics.median(m[key] for m in measured), 1),
              f"reference_{reference_key}": round(statistics.median(r[reference_key] for r in reference), 1)}
    if all(x.get("cpu_seconds") and x.get("items") for x in (*measured, *reference)):
        cpu = [(r["cpu_seconds"] / r["items"]) / (m["cpu_seconds"] / m["items"])
               for m, r in zip(measured, reference)]
        result["cpu_ratio"] = round(statistics.median(cpu), 3)
    return result


def check(what: str, measured: dict, expected: dict) -> None:
    """Stop the benchmark (a one-line error) unless it measured what it claims: every key of
    ``expected`` (image count, source, params ...) must equal ``measured``'s."""
    wrong = {k: (measured.get(k), v) for k, v in expected.items() if measured.get(k) != v}
    if wrong:
        detail = "; ".join(f"{k} is {got!r}, expected {want!r}" for k, (got, want) in wrong.items())
        raise SystemExit(f"{what}: measured something else than claimed ({detail}); the figures "
                         "would be mislabelled, so none are reported")


def _decode_chunk(chunk: list[bytes]) -> int:
    import cv2
    import numpy as np

    return sum(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None for data in chunk)


def _decode_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # as preprocess's workers: processes give the parallelism


class DecodeReference:
    """Plain ``cv2.imdecode`` of the same files from memory in a pool of ``workers`` processes: the
    physical limit of a stage that must decode every image. Use as a context manager (the pool is
    started and warmed outside the timing); calling it decodes every file once and returns the count."""

    def __init__(self, files: list[bytes], workers: int, chunk: int = 32):
        self.chunks = [files[i:i + chunk] for i in range(0, len(files), chunk)]
        self.workers, self.pool = workers, None

    def __enter__(self):
        from deepfake_detector import spawn_pool

        self.pool = spawn_pool(self.workers, _decode_worker)
        self.pool.map(_decode_chunk, self.chunks[:self.workers * 2])  # workers started and warm
        return self

    def __exit__(self, *exc):
        self.pool.terminate()
        self.pool.join()

    def __call__(self) -> int:
        decoded = sum(self.pool.imap(_decode_chunk, self.chunks))
        if decoded != sum(map(len, self.chunks)):
            raise SystemExit(f"decode reference: only {decoded} of {sum(map(len, self.chunks))} files "
                             "decoded; the reference needs images cv2 can read")
        return decoded


def zip_images(path: Path) -> list[bytes]:
    """The bytes of every image member of a zip, in archive order (the files a stage reads)."""
    with zipfile.ZipFile(path) as bundle:
        return [bundle.read(info) for info in bundle.infolist()
                if not info.is_dir() and info.filename.lower().endswith((".jpg", ".jpeg", ".png"))]


def machine() -> dict:
    """Where the absolute figures came from: CPUs, processor, and how loaded the machine was."""
    import os
    import platform

    from deepfake_detector import usable_cpus

    return {"cpus": usable_cpus(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "load_average_1min": round(os.getloadavg()[0], 2)}



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
    from deepfake_detector.model import modelfile
    from deepfake_detector.model import builders as models

    path = folder / "model.keras"
    modelfile.save(models.build(name, image_size), path, modelfile.ModelMeta(image_size, model=name))
    return path
