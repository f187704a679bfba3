"""A throwaway copy of the project that the real `dvc` CLI runs in (used by tests and benchmarks)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# Small enough for seconds per stage, big enough that every stage does real work.
TINY_PARAMS = {
    "data.sample.train": 160,
    "data.sample.validation": 64,
    "data.sample.test": 64,
    "data.sample.image_size": 128,
    "preprocess.image_size": 128,
    "preprocess.shard_images": 64,
    # The quickest model to build and fit: these copies test the pipeline (test_training fits every model).
    "train.model": "compact_cnn",
    "train.image_size": 64,
    "train.batch_size": 32,
    "train.epochs": 2,
    "train.patience": 2,
    "train.cache_ram_mb": 64,
}


def project_env(**extra: str) -> dict:
    """Environment for child processes: this venv first on PATH, a fixed git identity, no network."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "DVC_NO_ANALYTICS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
        "KAGGLE_CONFIG_DIR": "/nonexistent-kaggle-config",  # never read a developer's real token
    })
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, check: bool = True, env: dict | None = None, timeout: int = 600):
    result = subprocess.run(args, cwd=cwd, env=env or project_env(), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def dvc(*args: str, cwd: Path, check: bool = True, env: dict | None = None):
    return run([str(Path(sys.executable).parent / "dvc"), *args], cwd=cwd, check=check, env=env)


def set_params(project: Path, changes: dict) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def make_project(dest: Path, params: dict | None = None) -> Path:
    """Copy the project's tracked and unignored files (not data, models, .venv) into a new git repo."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        source = ROOT / rel
        if source.is_file() and not rel.startswith(("data/", "models/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    set_params(dest, {**TINY_PARAMS, **(params or {})})
    run(["git", "init", "-q", "-b", "main"], cwd=dest)
    run(["git", "add", "-A"], cwd=dest)
    run(["git", "commit", "-qm", "project copy"], cwd=dest)
    return dest
