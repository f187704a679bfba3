"""dvc.yaml's code deps are complete and exact: each stage depends on every project file it runs, so
editing one makes `dvc status` flag exactly the stages that run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from projectcopy import ROOT, dvc, make_project, project_env, run
sys.path.insert(0, str(ROOT / "tools"))
from stagedeps import closure, covered, shortest_deps, write_dvc_yaml


def _stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _deps(stage: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]]


STAGES = _stages()


@pytest.mark.parametrize("name", list(STAGES))
def test_each_stage_depends_on_exactly_the_code_it_runs(name):
    script = ROOT / "stages" / f"{name}.py"
    assert STAGES[name]["cmd"] == f"python -m stages.{name}"
    needed = closure(ROOT, script)
    listed = covered(ROOT, _deps(STAGES[name]))
    assert not needed - listed, f"dvc.yaml {name}: deps miss {sorted(needed - listed)}: run `make deps`"
    assert not listed - needed, (f"dvc.yaml {name}: deps list {sorted(listed - needed)}, which the stage "
                                 "never imports (they would rerun it for nothing): run `make deps`")
    code = [dep for dep in _deps(STAGES[name]) if dep.startswith(("deepfake_detector/", "stages/"))]
    assert code == shortest_deps(ROOT, needed), "dvc.yaml: run `make deps` (whole folders by name)"


def test_make_deps_writes_exactly_the_committed_lists(tmp_path):
    """`make deps` regenerates the code deps and touches nothing else; on the committed dvc.yaml it
    changes nothing, and on one with a dep dropped it puts it back."""
    project = make_project(tmp_path / "project")
    assert not write_dvc_yaml(project)
    text = (project / "dvc.yaml").read_text()
    broken = text.replace("      - stages/train.py\n", "", 1)
    assert broken != text
    (project / "dvc.yaml").write_text(broken)
    assert write_dvc_yaml(project)
    assert (project / "dvc.yaml").read_text() == text


@pytest.mark.parametrize("name", list(STAGES))
def test_what_importing_a_stage_loads_is_in_its_deps(name):
    """The static closure is checked against Python itself: every project module the stage's import
    really loads must be one its deps list."""
    code = (f"import importlib, sys; importlib.import_module('stages.{name}'); "
            "print('\\n'.join(sorted(m.__file__ for n, m in sys.modules.items() "
            "if n.split('.')[0] in ('deepfake_detector', 'stages') and getattr(m, '__file__', None))))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            check=True, env=project_env()).stdout.split()
    loaded = {Path(f).resolve().relative_to(ROOT).as_posix() for f in loaded} - {"stages/__init__.py"}
    assert f"stages/{name}.py" in loaded and "deepfake_detector/__init__.py" in loaded
    assert loaded <= closure(ROOT, ROOT / "stages" / f"{name}.py")
    assert loaded <= covered(ROOT, _deps(STAGES[name]))


def _modified(status: dict, path: str) -> set[str]:
    """The stages whose `dvc status --json` entry reports ``path`` (or a folder dep holding it) as a
    modified dep."""
    flagged = set()
    for stage, changes in status.items():
        for change in changes:
            for dep, state in (change.get("changed deps", {}) if isinstance(change, dict) else {}).items():
                if state == "modified" and (path == dep or path.startswith(dep.rstrip("/") + "/")):
                    flagged.add(stage)
    return flagged


def committed_project(dest: Path) -> Path:
    """A copy of the project with its committed params and dvc.lock (no data: outputs are missing)."""
    project = make_project(dest)
    (project / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    run(["git", "commit", "-qam", "the committed params"], cwd=project)
    return project


@pytest.mark.slow
@pytest.mark.parametrize("rel", ["deepfake_detector/core/files.py", "deepfake_detector/__init__.py",
                                 "deepfake_detector/data/sources/archive.py",
                                 "deepfake_detector/model/modelfile.py"])
def test_editing_a_library_file_flags_the_stages_that_run_it(tmp_path, rel):
    """Against the committed dvc.lock, each stage that runs the file, and only those. Each of these
    files was once missing from some stage's deps: editing it left `dvc repro` saying nothing changed."""
    project = committed_project(tmp_path / "project")
    users = {name for name in STAGES if rel in closure(project, project / "stages" / f"{name}.py")}
    assert users
    before = _modified(json.loads(dvc("status", "--json", cwd=project).stdout), rel)
    assert not before, (
        f"the committed dvc.lock is stale for {rel} ({before}): run `dvc repro`, commit dvc.lock")
    path = project / rel
    path.write_text(path.read_text() + "\n# an edit\n")
    assert _modified(json.loads(dvc("status", "--json", cwd=project).stdout), rel) == users


@pytest.mark.slow
def test_a_real_run_is_rerun_after_a_library_edit(tmp_path):
    """The same on a run made here: download, up to date, is out of date once files.py changes."""
    project = make_project(tmp_path / "project")
    dvc("repro", "download", cwd=project)
    assert "download" not in json.loads(dvc("status", "--json", cwd=project).stdout)
    path = project / "deepfake_detector/core/files.py"
    path.write_text(path.read_text() + "\n# an edit\n")
    assert "download" in _modified(json.loads(dvc("status", "--json", cwd=project).stdout),
                                   "deepfake_detector/core/files.py")
    out = dvc("repro", "download", cwd=project).stdout
    assert "Running stage 'download'" in out
