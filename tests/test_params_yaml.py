"""params.yaml is read exactly as DVC reads it (ruamel.yaml, YAML 1.2), and every way a hand-edited
file can be wrong is one line naming the file, through the real stage scripts and the real `dvc`."""

from __future__ import annotations

import json
import sys
import zipfile

import pytest

from deepfake_detector.core import paths
from deepfake_detector.core.errors import ParamError
from deepfake_detector.core.params import SCHEMA, Spec, load_section, read_file
from projectcopy import ROOT, dvc, make_project, run
from trained import copy_project

SHIPPED = (ROOT / "params.yaml").read_text()


def edited(tmp_path, old: str, new: str):
    assert old in SHIPPED
    path = tmp_path / "params.yaml"
    path.write_text(SHIPPED.replace(old, new))
    return path


@pytest.mark.parametrize("old, new, section, key, expected", [
    ("mixed_precision: auto", "mixed_precision: on", "train", "mixed_precision", "on"),
    ("mixed_precision: auto", "mixed_precision: off", "train", "mixed_precision", "off"),
    ("learning_rate: 0.004", "learning_rate: 4e-3", "train", "learning_rate", 0.004),
    ("max_pixels: 50000000", "max_pixels: 5e7", "preprocess", "max_pixels", 50_000_000),
])
def test_values_mean_what_yaml_1_2_and_dvc_say(tmp_path, old, new, section, key, expected):
    path = edited(tmp_path, old, new)
    value = getattr(load_section(section, path), key)
    assert value == expected and type(value) is type(expected)


def test_the_whole_file_reads_as_dvc_reads_it(tmp_path):
    from dvc.utils.serialize import load_yaml  # DVC's own reader of params files

    text = SHIPPED.replace("mixed_precision: auto", "mixed_precision: off").replace(
        "learning_rate: 0.004", "learning_rate: 4e-3").replace("flip: true", "flip: yes")
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert read_file(path) == load_yaml(str(path))
    with pytest.raises(ParamError, match="train.augment.flip must be true or false, got 'yes'"):
        load_section("train", path)  # YAML 1.2: `yes` is a string, for DVC too


def test_every_number_param_has_an_upper_bound():
    def specs(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from specs(value, f"{prefix}.{key}")
            else:
                yield f"{prefix}.{key}", value

    numbers = [(name, spec) for section, node in SCHEMA.items() for name, spec in specs(node, section)
               if isinstance(spec, Spec) and spec.kind in ("int", "float", "int_range", "float_range")]
    assert len(numbers) > 20
    assert [name for name, spec in numbers if spec.high is None] == []


@pytest.mark.parametrize("stage, edit, expected", [
    ("download", b"data", "params.yaml must be a mapping of sections"),
    ("download", b"data:\n  source: [sample\n", "params.yaml is not valid YAML: line 3, column 1:"),
    ("train", b"train:\n  model: a: b\n", "params.yaml is not valid YAML: line 2, column 11:"),
    ("download", "data:\n  source: échantillon\n".encode("latin-1"), "params.yaml is not UTF-8 text"),
    # hand edits of one value, each of which DVC itself accepts
    ("train", ("mixed_precision: auto", "mixed_precision: maybe"),
     "train.mixed_precision must be one of auto, on, off, got 'maybe'"),
    ("download", ("  train: 160", "  train: 1000000000000000000000000000000"),
     "data.sample.train must be an integer in [2, 1000000], got 1000000000000000000000000000000"),
    ("train", ("epochs: 2", "epochs: 1e30"), "train.epochs must be an integer in [1, 10000], got 1e+30"),
    ("download", ("max_member_mb: 64", "max_member_mb: 1e308"),
     "data.max_member_mb must be a number in [0.001, 1048576], got 1e+308"),
])
def test_a_broken_params_file_is_one_line_from_a_direct_stage_run(tmp_path, stage, edit, expected):
    project = make_project(tmp_path / "project")
    path = project / "params.yaml"
    if isinstance(edit, bytes):
        path.write_bytes(edit)
    else:
        assert edit[0] in path.read_text()
        path.write_text(path.read_text().replace(*edit))
    result = run([sys.executable, "-m", f"stages.{stage}"], cwd=project, check=False)
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    assert message.startswith("error: params.yaml") and expected in message, message
    assert not (project / paths.RAW_DIR).exists()


@pytest.mark.slow
def test_dvc_exp_run_set_values_mean_the_same_in_the_stages(pipeline_run, tmp_path):
    """`dvc exp run -S train.mixed_precision=on` used to stop with "got True"; `4e-3` and `5e7` were
    refused as strings. Now each stage reads what DVC wrote and means the same value (that `off` is
    False is the reading test's, above)."""
    project = copy_project(pipeline_run / "project", tmp_path / "project", commit=True)
    dvc("exp", "run", "-S", "train.mixed_precision=on", "-S", "train.learning_rate=4e-3",
        "-S", "preprocess.max_pixels=5e7", "-S", "train.epochs=1", "train", cwd=project)
    shown = json.loads(dvc("params", "diff", "--all", "--json", cwd=project).stdout)["params.yaml"]
    assert shown["train.mixed_precision"]["new"] == "on"  # what DVC means...
    assert shown["train.learning_rate"]["new"] == 0.004 and shown["preprocess.max_pixels"]["new"] == 5e7
    train = json.loads((project / paths.TRAIN_METRICS).read_text())
    assert train["mixed_precision"] is True  # ...is what the train stage did
    with zipfile.ZipFile(project / paths.MODEL) as bundle:
        trained_with = json.loads(bundle.read("deepfake_detector.json"))["train_params"]
    assert trained_with["learning_rate"] == 0.004 and trained_with["mixed_precision"] == "on"
