"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from projectcopy import ROOT, TINY_PARAMS, dvc, make_project, project_env, run, set_params  # noqa: F401


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")
