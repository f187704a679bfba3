"""Stage `preprocess`: data/raw/dataset.zip → checked, deduplicated TFRecords per split.

Outputs: data/processed/ (TFRecord shards, records.json, and manifest.csv with one row per source
image: path, split, label, sha256, phash, size, status, reason), written as a whole or not at all,
and metrics/data.json (counts, skipped, converted, duplicates, speed, source).
"""

from __future__ import annotations

import logging

from deepfake_detector import SPLITS, check_both_classes
from deepfake_detector.core import entrypoint
from deepfake_detector.core.errors import DataError
from deepfake_detector.core.files import read_json, write_json
from deepfake_detector.core.params import load_section
from deepfake_detector.core.paths import (ARCHIVE, DATA_METRICS, MANIFEST, PREPROCESS_TIMING, PROCESSED,
                                          SOURCE_INFO)
from deepfake_detector.data.preprocessing import preprocess, source_facts

log = logging.getLogger("preprocess")


def main() -> None:
    params = load_section("preprocess")
    if not ARCHIVE.exists():
        raise DataError(f"{ARCHIVE} not found: run the download stage first (`dvc repro download`)")
    source = source_facts(read_json(SOURCE_INFO) if SOURCE_INFO.exists() else {})
    stats = preprocess(ARCHIVE, PROCESSED, params, source)
    stats["source"] = source
    # speed figures differ on every run: apart, so `dvc metrics diff` on data.json shows only real changes
    timing = {"images_per_second": stats.pop("images_per_second"),
              "near_seconds": stats["duplicates"].pop("near_seconds")}
    write_json(DATA_METRICS, stats)
    write_json(PREPROCESS_TIMING, timing)
    check_both_classes({split: stats[split] for split in SPLITS}, f"{ARCHIVE} after checks and "
                       f"deduplication", f"see {MANIFEST} for what was skipped or dropped; add images or "
                       "relax preprocess.duplicates")
    log.info("preprocess: %s", {s: stats[s] for s in SPLITS})


if __name__ == "__main__":
    entrypoint.run(main)
