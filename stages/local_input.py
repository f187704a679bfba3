"""Stage `local_input`: data/local_input, through which DVC watches a local dataset.

With data.source=local it is a symbolic link to data.local_path (a zip or a folder). The download
stage depends on it, so DVC hashes the dataset's content: overwrite the zip or change the folder,
and `dvc status` shows it and `dvc repro` reruns download; leave it alone, and nothing reruns.
With any other source it is a fixed placeholder file.
"""

from __future__ import annotations

from pathlib import Path

from deepfake_detector.core import entrypoint
from deepfake_detector.core.params import load_section
from deepfake_detector.core.paths import LOCAL_INPUT
from deepfake_detector.data.sources import archive, local


def main() -> None:
    params = load_section("data", extra_checks=local.check_params)
    source = Path(params.local_path) if params.source == "local" else None
    local.link_input(source, LOCAL_INPUT, archive.Limits.from_params(params))


if __name__ == "__main__":
    entrypoint.run(main)
