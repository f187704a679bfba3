"""Stage `download`: the raw dataset → data/raw/dataset.zip in the Kaggle layout.

`data.source` picks where it comes from: the built-in generated `sample`, the `kaggle` API, or a
`local` zip or folder. Whatever the source, the output is one archive whose members are
`Dataset/{Train,Validation,Test}/{Real,Fake}/...` (splits carved from Train where a local dataset
has none), plus data/raw/source.json recording where it came from (dataset, version, sha256).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from deepfake_detector.core import entrypoint
from deepfake_detector.core.files import remove_stale_temps, scratch_path, sha256_file, write_json
from deepfake_detector.core.params import as_dict, load_section
from deepfake_detector.core.paths import ARCHIVE, RAW_DIR, SOURCE_INFO
from deepfake_detector.data.sources import archive

log = logging.getLogger("download")


def check(params) -> None:
    """Cross-key checks that must fail before any work (credentials included)."""
    from deepfake_detector.data.sources import local

    local.check_params(params)
    if params.source == "kaggle":
        from deepfake_detector.data.sources import kaggle

        log.info("kaggle credentials: %s", kaggle.check_credentials())


def fetch(params, limits: archive.Limits) -> dict:
    if params.source == "sample":
        from deepfake_detector.data.sources import sample

        return {"summary": sample.generate(ARCHIVE, params.sample), "params": as_dict(params.sample)}
    from deepfake_detector.data.sources import local

    if params.source == "kaggle":
        from deepfake_detector.data.sources import kaggle

        with scratch_path(RAW_DIR, suffix=".zip.tmp") as download:
            info = kaggle.download(params.kaggle.dataset, params.kaggle.version, download, limits)
            summary = local.import_dataset(download, ARCHIVE, params.carve, limits, move=True)
        return {"kaggle": info, "summary": summary}
    source = Path(params.local_path).expanduser()
    return {"summary": local.import_dataset(source, ARCHIVE, params.carve, limits)}


def main() -> None:
    params = load_section("data", extra_checks=check)
    limits = archive.Limits.from_params(params)
    RAW_DIR.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(RAW_DIR)
    started = time.perf_counter()
    info = fetch(params, limits)
    # Only facts about the data (no timings, paths or worker counts): the same dataset gives a
    # byte-identical data/raw, so re-downloading it doesn't rerun preprocess.
    write_json(SOURCE_INFO, {"source": params.source, **info,
                             "archive": {"file": ARCHIVE.name, "bytes": ARCHIVE.stat().st_size,
                                         "sha256": sha256_file(ARCHIVE)}})
    log.info("download: %s ready (%.1f MB, %.1f s)", ARCHIVE, ARCHIVE.stat().st_size / 1e6,
             time.perf_counter() - started)


if __name__ == "__main__":
    entrypoint.run(main)
