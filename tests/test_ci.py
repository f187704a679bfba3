"""Both CI entry points: .ci/run (this project's CI) and .github/workflows/ci.yml (GitHub users'),
the workflow checked by actionlint. The stale-lock check itself runs in test_pipeline.py, on a real run."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

from projectcopy import ROOT, run

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _steps() -> list[dict]:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    assert len(jobs) == 1
    return next(iter(jobs.values()))["steps"]


def _runs() -> list[str]:
    return [step["run"].strip() for step in _steps() if "run" in step]


def test_actionlint_accepts_the_workflow():
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent))
    assert actionlint, "actionlint is not installed: `make install` installs it (requirements.txt)"
    result = run([actionlint, "-no-color", str(WORKFLOW)], cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path):
    """The check can fail: an unknown key and an undefined expression context are reported."""
    broken = tmp_path / ".github" / "workflows" / "ci.yml"
    broken.parent.mkdir(parents=True)
    text = WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest")
    broken.write_text(text.replace("${{ runner.os }}", "${{ runnr.os }}"))
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent))
    result = run([actionlint, "-no-color", str(broken)], cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert "runs_on" in result.stdout and "runnr" in result.stdout


def test_the_workflow_installs_tests_checks_the_lock_runs_and_reports():
    steps = _steps()
    checkout = next(step for step in steps if step.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0  # shallow history breaks `dvc metrics diff main`
    assert any("git fetch" in r and "refs/heads/main" in r for r in _runs())
    python = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["cache"] == "pip"
    runs = _runs()
    order = ["make install", "make check-pipeline", "make test", "make repro", "make report REPORT_BASE=main"]
    assert [r for r in runs if r in order] == order
    assert any("GITHUB_STEP_SUMMARY" in r and "report.md" in r for r in runs)


def test_ci_run_installs_checks_the_lock_and_runs_the_tests():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines[:2] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."']
    assert lines[2:] == ["make install", "make check-pipeline", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert "check-pipeline: install\n\tbash .ci/check-pipeline" in makefile
    check = (ROOT / ".ci" / "check-pipeline").read_text()
    assert "dvc repro --dry --allow-missing" in check and "\ndvc dag" in check
