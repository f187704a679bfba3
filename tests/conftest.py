"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaggle_server import kaggle_server  # noqa: F401  (the loopback Kaggle API fixture)
from projectcopy import make_project
from trained import media, native_model, trained  # noqa: F401  (a project with a trained tiny model; real media; a rich_dct model file)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")
