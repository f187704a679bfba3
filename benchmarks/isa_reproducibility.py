"""Do two CPU kinds give byte-identical results? Train and evaluate one preprocessed project under
several machine settings and compare what they wrote.

An older CPU is emulated for real: ``qemu-x86_64 -cpu Haswell`` (Debian's ``qemu-user``) runs the
stage on an AVX2 CPU without AVX-512, so TensorFlow, oneDNN, NumPy and OpenCV all see that CPU and
pick their kernels for it, as they would on such a machine (slowly: minutes per stage). Every other
setting runs natively on this machine. A setting is an environment (``ONEDNN_MAX_CPU_ISA``,
``TF_ENABLE_ONEDNN_OPTS``, ...) and optionally ``taskset`` to one core (another core count).

Prints JSON: per setting the sha256 of ``metrics/eval.json``, of ``metrics/train.json`` without its
``machine`` facts, and of the model's weights; the test ROC-AUC and threshold; the train stage's wall
and CPU seconds; and which settings agree byte for byte.

``python benchmarks/isa_reproducibility.py [--settings native,portable,haswell,...] [--sample]``
(``--sample``: the shipped params on the sample data instead of the tiny test project).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from harness import dvc, emit, machine, make_project, project_env, set_params

from deepfake_detector.core import paths

QEMU = ["qemu-x86_64", "-cpu", "Haswell"]
ONE_CORE = ["taskset", "-c", "0"]
# A setting: (numerics.portable, environment, command prefix). Not portable, the stage leaves
# TensorFlow's choices alone; the environment then tries candidate settings by hand.
EIGEN_AVX2 = {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2", "TF_NUM_INTRAOP_THREADS": "2"}
ONEDNN_AVX2 = {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2", "TF_NUM_INTRAOP_THREADS": "2"}
SETTINGS = {
    "native": (False, {}, []),  # whatever this CPU picks
    "native_one_core": (False, {}, ONE_CORE),
    "native_onednn_avx2": (False, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, []),
    "native_onednn_off": (False, {"TF_ENABLE_ONEDNN_OPTS": "0"}, []),
    "native_onednn_off_one_core": (False, {"TF_ENABLE_ONEDNN_OPTS": "0"}, ONE_CORE),
    "haswell": (False, {}, QEMU),  # an AVX2 machine without AVX-512, as it runs by default
    "eigen_avx2": (False, EIGEN_AVX2, []),
    "eigen_avx2_one_core": (False, EIGEN_AVX2, ONE_CORE),
    "eigen_avx2_haswell": (False, EIGEN_AVX2, QEMU),
    "onednn_avx2": (False, ONEDNN_AVX2, []),
    "onednn_avx2_one_core": (False, ONEDNN_AVX2, ONE_CORE),
    "onednn_avx2_haswell": (False, ONEDNN_AVX2, QEMU),
    "portable": (True, {}, []),  # numerics.portable as shipped
    "portable_one_core": (True, {}, ONE_CORE),
    "portable_haswell": (True, {}, QEMU),
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def weights_sha(model: Path) -> str:
    import zipfile

    with zipfile.ZipFile(model) as bundle:
        return sha(bundle.read("model.weights.h5"))


def run_setting(project: Path, portable: bool, env: dict, wrapper: list[str]) -> dict:
    set_params(project, {"numerics.portable": portable})
    out = {}
    for stage in ("train", "evaluate"):
        started = time.perf_counter()
        log_file = tempfile.TemporaryFile()  # not a pipe: qemu warns once per thread, and a full pipe blocks
        proc = psutil.Popen([*wrapper, sys.executable, "-m", f"stages.{stage}"], cwd=project,
                            env=project_env(**env), stdout=log_file, stderr=subprocess.STDOUT)
        cpu = 0.0
        while proc.poll() is None:
            try:
                times = proc.cpu_times()
                cpu = times.user + times.system + times.children_user + times.children_system
            except psutil.NoSuchProcess:
                break
            time.sleep(0.5)
        log_file.seek(0)
        log = log_file.read().decode(errors="replace")
        if proc.returncode:
            raise SystemExit(f"{stage} failed under {env} {wrapper}:\n{log[-3000:]}")
        out[f"{stage}_seconds"] = round(time.perf_counter() - started, 1)
        out[f"{stage}_cpu_seconds"] = round(cpu, 1)
    train = json.loads((project / paths.TRAIN_METRICS).read_text())
    facts = train.pop("machine")
    evaluation = (project / paths.EVAL_METRICS).read_bytes()
    scores = json.loads(evaluation)
    return {**out, "eval_sha": sha(evaluation), "train_sha": sha(json.dumps(train, sort_keys=True).encode()),
            "weights_sha": weights_sha(project / paths.MODEL), "machine": facts,
            "test_roc_auc": scores["test"]["roc_auc"], "threshold": scores["threshold"]}


# NumPy's and OpenCV's own run-time SIMD choice held at AVX2, for preprocess's worker processes
# (qemu-user runs only the process it starts: the workers it spawns would run natively)
AVX2_DISPATCH = {"NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512VL AVX512BW AVX512DQ AVX512_SKX "
                                             "AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR",
                 "OPENCV_CPU_DISABLE": "AVX512_SKX,AVX512_COMMON,AVX512_CNL,AVX512_CLX,AVX512_ICL,AVX512F"}


def data_stages(project: Path) -> dict:
    """download (the sample rendered in one process: under qemu as a Haswell too) and preprocess
    (natively, and with NumPy and OpenCV dispatch held at AVX2): sha256 of what they wrote."""
    out = {}
    for name, env, wrapper in (("native", {}, []), ("haswell", {}, ["taskset", "-c", "0", *QEMU]),
                               ("avx2_dispatch", AVX2_DISPATCH, [])):
        for stage in ("download", "preprocess"):
            if stage == "download" and name == "avx2_dispatch":
                continue
            stage_wrapper = wrapper if stage == "download" else [w for w in wrapper if w not in QEMU]
            done = subprocess.run([*stage_wrapper, sys.executable, "-m", f"stages.{stage}"], cwd=project,
                                  env=project_env(**env), capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{stage} failed ({name}):\n{done.stderr[-3000:]}")
        out[name] = {"dataset_zip": sha((project / paths.ARCHIVE).read_bytes()),
                     "data_json": sha((project / paths.DATA_METRICS).read_bytes()),
                     "manifest": sha((project / paths.MANIFEST).read_bytes())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="native,haswell,portable,portable_one_core,portable_haswell")
    parser.add_argument("--sample", action="store_true", help="the shipped params on the sample data")
    parser.add_argument("--data", action="store_true", help="compare the data stages instead")
    args = parser.parse_args()
    if args.data:
        with tempfile.TemporaryDirectory() as tmp:
            project = make_project(Path(tmp) / "project", {} if not args.sample else None)
            if args.sample:
                shutil.copy2(Path(__file__).resolve().parents[1] / "params.yaml", project / "params.yaml")
            dvc("repro", "local_input", cwd=project)
            emit({"benchmark": "isa_reproducibility", "stages": "data", "results": data_stages(project),
                  "machine": machine()})
        return
    names = args.settings.split(",")
    if any(SETTINGS[n][2][:1] == QEMU[:1] for n in names) and not shutil.which(QEMU[0]):
        raise SystemExit("qemu-x86_64 not found: apt-get install qemu-user")
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project", {} if not args.sample else None)
        if args.sample:  # make_project shrinks the data for tests: put the shipped params back
            shutil.copy2(Path(__file__).resolve().parents[1] / "params.yaml", project / "params.yaml")
        dvc("repro", "preprocess", cwd=project)
        data = sha((project / paths.DATA_METRICS).read_bytes())
        results = {}
        for name in names:
            results[name] = run_setting(project, *SETTINGS[name])
            print(name, json.dumps(results[name]), file=sys.stderr, flush=True)  # progress: qemu is slow
    groups: dict[tuple, list[str]] = {}
    for name, result in results.items():
        groups.setdefault((result["eval_sha"], result["train_sha"], result["weights_sha"]), []).append(name)
    emit({"benchmark": "isa_reproducibility", "project": "sample" if args.sample else "tiny",
          "data_json_sha": data, "settings": results, "identical_groups": list(groups.values()),
          "machine": machine()})


if __name__ == "__main__":
    main()
