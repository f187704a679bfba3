"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaggle_server import kaggle_server  # noqa: F401  (the loopback Kaggle API fixture)
from projectcopy import make_project
# the suite's one pipeline run and a copy of its trained project; real media; a rich_dct model file
from trained import media, native_model, pipeline_run, trained  # noqa: F401  (fixtures: used by name)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


# Under pytest-xdist (`make test`: --dist loadfile --no-loadscope-reorder) a file runs on one worker,
# and files are handed out in collection order. These run the pipeline or train several times (a
# minute or more each): handed out first, so that no worker is left alone with one at the end.
LONGEST_FILES = ("test_distribute.py", "test_resume.py", "test_pipeline.py", "test_transfer.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)
    items.sort(key=rank)  # stable: each file's tests keep their order
