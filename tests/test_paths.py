"""deepfake_detector.core.paths is the one list of the pipeline's files: dvc.yaml declares the same ones, and
no stage script spells a path out for itself."""

from __future__ import annotations

import ast
from pathlib import PurePosixPath

import yaml

from deepfake_detector.core import paths
from projectcopy import ROOT

KNOWN = {str(value) for value in vars(paths).values() if isinstance(value, PurePosixPath)}


def _names(entries: list) -> set[str]:
    """dvc.yaml lists a path as a string, or as a one-key mapping to its options."""
    return {entry if isinstance(entry, str) else next(iter(entry)) for entry in entries}


def _stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_declared_output_is_a_known_path():
    for name, stage in _stages().items():
        for kind in ("outs", "metrics", "plots"):
            for path in _names(stage.get(kind, [])):
                # dvclive writes inside TRAIN_LIVE; DVC tracks two of its files
                inside_live = PurePosixPath(path).is_relative_to(paths.TRAIN_LIVE)
                assert path in KNOWN or inside_live, f"dvc.yaml {name}.{kind}: {path} is not in paths.py"


def test_each_stage_writes_and_reads_what_paths_says():
    stages = _stages()

    def outs(name):
        return set().union(*(_names(stages[name].get(kind, [])) for kind in ("outs", "metrics", "plots")))

    def deps(name):
        return _names(stages[name]["deps"])

    assert str(paths.RAW_DIR) in outs("download")
    assert str(paths.RAW_DIR) in deps("preprocess")
    assert {str(paths.PROCESSED), str(paths.DATA_METRICS)} <= outs("preprocess")
    assert str(paths.PROCESSED) in deps("train")
    assert {str(paths.MODEL), str(paths.TRAIN_METRICS)} <= outs("train")
    assert {str(paths.MODEL), str(paths.PROCESSED)} <= deps("evaluate")
    assert {str(paths.EVAL_METRICS), str(paths.PLOTS), str(paths.PREDICTIONS)} <= outs("evaluate")
    artifacts = yaml.safe_load((ROOT / "dvc.yaml").read_text())["artifacts"]
    assert {a["path"] for a in artifacts.values()} == {str(paths.MODEL)}


def test_stage_scripts_take_their_paths_from_the_paths_module():
    for script in sorted((ROOT / "stages").glob("*.py")):
        tree = ast.parse(script.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                      and isinstance(node.body[0], ast.Expr)}
        spelled = [node.value for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)
                   and id(node) not in docstrings and node.value.startswith(("data/", "models/", "metrics/"))]
        assert not spelled, f"{script.name} spells out {spelled}: use deepfake_detector.core.paths"
