"""The preprocess stage's work: every image in the canonical archive → checked, deduplicated records.

One streaming pass, in split order (Train, then Validation, then Test) so that a duplicate is always
met after its earlier-split original and can be dropped on the spot. Worker processes read, hash and
inspect images straight out of the zip; the main process decides duplicates and writes TFRecord
shards and the manifest. Memory stays flat: at most a bounded window of images is in flight.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from deepfake_detector import CLASS_NAMES, SPLITS, spawn_pool, usable_cpus
from deepfake_detector.data import images
from deepfake_detector.data import neardup
from deepfake_detector.data import records
from deepfake_detector.core.errors import DataError
from deepfake_detector.core.files import replace_dir, write_json
from deepfake_detector.core.paths import CATALOG_FILE, MANIFEST_FILE, NEAR_FILE
from deepfake_detector.data.sources import archive, layout

MANIFEST_COLUMNS = ["index", "path", "split", "label", "sha256", "phash", "width", "height",
                    "format", "status", "reason"]
IN_FLIGHT = 2048  # images read but not yet written: the bound that keeps memory flat
# The archive's member caps were enforced by the download stage; this only guards reads.
_READ_LIMITS = archive.Limits(max_member_bytes=2**31, max_total_bytes=2**62)


_worker_file = None  # each worker's own handle on the archive
_worker_args: tuple[int, int] = (0, 0)


def _init_worker(zip_path: str, image_size: int, max_pixels: int) -> None:
    global _worker_file, _worker_args
    import cv2

    cv2.setNumThreads(1)  # parallelism comes from the worker processes; nested threads only contend
    _worker_file = open(zip_path, "rb")
    _worker_args = (image_size, max_pixels)


def _inspect_member(task: tuple[int, archive.MemberRef]):
    index, ref = task
    try:
        data = archive.read(ref, _READ_LIMITS, _worker_file)
    except DataError:  # a damaged member costs that image, not the run
        return index, "", images.skipped("corrupt")
    result = images.inspect(data, *_worker_args)
    if result.status == "ok":
        # A pass-through payload is the member itself: the main process reads it from the zip (CRC
        # checked) rather than receive it. With every image sent back through the pool's pipe, the
        # pool's threads took 1.8 of the main process's 2.8 CPU s at 20k images.
        result = dataclasses.replace(result, payload=None)
    return index, hashlib.sha256(data).hexdigest(), result


def _bounded(tasks, slots: threading.Semaphore):
    """Feed the pool only while fewer than IN_FLIGHT results wait to be written (backpressure)."""
    for task in tasks:
        slots.acquire()
        yield task


def _mixed_rank(name: str) -> bytes:
    """A fixed pseudo-random order within a split. Archives list a class at a time (all Fake, then
    all Real); records written in that order would let training's cache take one class and stream
    the other, and a streaming shuffle buffer would feed one-class batches for thousands of steps."""
    return hashlib.blake2b(name.encode(), digest_size=8).digest()


def preprocess(zip_path: Path, out_dir: Path, params, source: dict | None = None) -> dict:
    """Write ``out_dir`` (shards, records.json, manifest.csv) as a whole or not at all; returns the
    ``metrics/data.json`` content. ``params`` is the preprocess section; ``source``, where the archive
    came from (``source_facts``), is kept in records.json, so the model trained on it can say."""
    started = time.perf_counter()
    with archive.open_zip(zip_path, _READ_LIMITS) as zf:
        refs = archive.member_refs(zf)
    found = layout.detect(list(refs), origin=str(zip_path))
    missing = [s for s in SPLITS if s not in found.splits]
    if missing or any(m.split is None for m in found.members):
        raise DataError(f"{zip_path} lacks the {', '.join(missing) or 'split'} split(s) "
                        f"(found {found.description}): re-run the download stage (`dvc repro download`)")
    order = {s: i for i, s in enumerate(SPLITS)}
    members = sorted(found.members, key=lambda m: (order[m.split], _mixed_rank(m.name)))

    tmp_dir = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    manifest_path = tmp_dir / MANIFEST_FILE
    ledger = _DuplicateLedger(params, len(members))
    workers = params.workers or usable_cpus()
    slots = threading.Semaphore(IN_FLIGHT)
    member_refs = [refs.pop(m.name) for m in members]  # by manifest index
    tasks = enumerate(member_refs)
    with open(manifest_path, "w", newline="") as handle, open(zip_path, "rb") as zip_file, \
            spawn_pool(workers, _init_worker, (str(zip_path), params.image_size, params.max_pixels)) as pool:
        writers = {s: records.ShardWriter(tmp_dir, s, params.shard_images) for s in SPLITS}
        manifest = csv.writer(handle)
        manifest.writerow(MANIFEST_COLUMNS)
        results = pool.imap(_inspect_member, _bounded(tasks, slots), chunksize=32)
        for index, sha, result in tqdm(results, total=len(members), desc="preprocess", unit="img"):
            slots.release()
            member = members[index]
            status, reason = ledger.decide(index, member, sha, result)
            if status in ("ok", "converted"):
                payload = result.payload or archive.read(member_refs[index], _READ_LIMITS, zip_file)
                writers[member.split].write(payload, member.label, index)
            manifest.writerow([index, member.name, member.split, member.label, sha,
                               "" if result.phash is None else f"{result.phash:016x}",
                               result.width or "", result.height or "", result.format or "",
                               status, reason])
        for writer in writers.values():
            writer.close()
    near = ledger.near_audit(params.duplicates)
    _write_near_examples(tmp_dir / NEAR_FILE, near["examples"], members)
    if params.duplicates.near_cross_split == "drop" and near["drop"]:
        _drop_near(writers, near["drop"], members, manifest_path)
    shards = {s: writers[s].shards for s in SPLITS}
    _write_catalog(tmp_dir, shards, params.image_size, source)
    replace_dir(tmp_dir, out_dir)
    return ledger.report(shards, near, time.perf_counter() - started)


class _DuplicateLedger:
    """One run's duplicate bookkeeping: the first copy of every sha256 (exact duplicates are decided on
    the spot), each kept image's pHash, split and exact-duplicate group (for the near-duplicate audit at
    the end), and the skipped/converted/duplicate counters that go into metrics/data.json."""

    def __init__(self, params, total: int):
        self.dup = params.duplicates
        self.first_seen: dict[str, tuple[str, int]] = {}  # sha256 → (split, label) of its first copy
        self.skipped, self.converted, self.dups = Counter(), Counter(), Counter()
        self.phash = np.zeros(total, dtype=np.uint64)
        self.kept = np.zeros(total, dtype=bool)
        self.split_id = np.zeros(total, dtype=np.int8)
        self.group = np.zeros(total, dtype=np.int64)  # exact-duplicate group: near-dup audit skips those
        self.group_of: dict[str, int] = {}

    def decide(self, index: int, member, sha: str, result) -> tuple[str, str]:
        if result.status == "skipped":
            self.skipped[result.reason] += 1
            return "skipped", result.reason
        earlier = self.first_seen.get(sha)
        if earlier is None:
            self.first_seen[sha] = (member.split, member.label)
        else:
            if earlier[1] != member.label:
                self.dups["label_conflicts"] += 1
            if earlier[0] == member.split:
                self.dups["within_split"] += 1
                if self.dup.within_split == "drop":
                    self.dups["dropped"] += 1
                    return "dropped", f"duplicate_within_{member.split}"
            else:
                self.dups["cross_split"] += 1
                if self.dup.cross_split == "drop":
                    self.dups["dropped"] += 1
                    return "dropped", f"duplicate_of_{earlier[0]}"
        if result.status == "converted":
            for why in result.reason.split(";"):
                self.converted[why] += 1
        self.kept[index] = True
        self.phash[index] = result.phash
        self.split_id[index] = SPLITS.index(member.split)
        self.group[index] = self.group_of.setdefault(sha, len(self.group_of))
        return result.status, result.reason

    def near_audit(self, dup) -> dict:
        started = time.perf_counter()
        kept = np.flatnonzero(self.kept)
        report = neardup.audit(self.phash[kept], self.split_id[kept], dup.near_hamming,
                               groups=self.group[kept])
        drop = set(kept[report.later_matched].tolist()) if dup.near_cross_split == "drop" else set()
        examples = [(int(kept[i]), int(kept[j]), d) for i, j, d in report.examples]
        return {"within_split": report.within_split, "cross_split": report.cross_split,
                "later_matched": int(report.later_matched.sum()), "drop": drop, "examples": examples,
                "seconds": time.perf_counter() - started}

    def report(self, shards: dict, near: dict, seconds: float) -> dict:
        counts = {s: {"real": sum(x["real"] for x in shards[s]), "fake": sum(x["fake"] for x in shards[s])}
                  for s in SPLITS}
        total = len(self.kept)
        return {
            **counts,
            "images_total": total,
            "skipped": dict(sorted(self.skipped.items())),
            "converted": dict(sorted(self.converted.items())),
            "duplicates": {
                "within_split": self.dups["within_split"],
                "cross_split": self.dups["cross_split"],
                "dropped": self.dups["dropped"],
                "label_conflicts": self.dups["label_conflicts"],
                "near_within_split": near["within_split"],
                "near_cross_split": near["cross_split"],
                "near_later_matched": near["later_matched"],
                "near_dropped": len(near["drop"]),
                "near_seconds": round(near["seconds"], 3),
            },
            "images_per_second": round(total / seconds, 1) if seconds else None,
        }


def _drop_near(writers: dict, drop: set[int], members, manifest_path: Path) -> None:
    """Policy near_cross_split=drop: remove the later-split copies from the shards and the manifest."""
    import pandas as pd

    labels = [m.label for m in members]
    for writer in writers.values():
        writer.drop(drop, labels)
    manifest = pd.read_csv(manifest_path, keep_default_na=False, dtype={"phash": str, "sha256": str})
    hit = manifest["index"].isin(drop)
    manifest.loc[hit, "status"] = "dropped"
    manifest.loc[hit, "reason"] = "near_duplicate_of_earlier_split"
    manifest.to_csv(manifest_path, index=False)


def _write_near_examples(path: Path, examples: list, members) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["earlier", "later", "distance"])
        writer.writerows([members[i].name, members[j].name, d] for i, j, d in examples)


def _write_catalog(folder: Path, shards: dict, image_size: int, source: dict | None) -> None:
    splits = {}
    for split in SPLITS:
        kept = [s for s in shards[split] if s["records"]]
        splits[split] = {"records": sum(s["records"] for s in kept),
                         "real": sum(s["real"] for s in kept),
                         "fake": sum(s["fake"] for s in kept), "shards": kept}
    write_json(folder / CATALOG_FILE, {"image_size": image_size, "class_names": list(CLASS_NAMES),
                                       "splits": splits, **({"source": source} if source else {})})


def source_facts(source_info: dict) -> dict:
    """Of the download stage's ``source.json``: the source (sample, kaggle, local) and the archive's
    file, size and sha256 (and the Kaggle dataset's version, where it came from Kaggle)."""
    return {"source": source_info.get("source"), **source_info.get("archive", {}),
            **({"kaggle": source_info["kaggle"]} if "kaggle" in source_info else {})}
