"""local.import_dataset: any accepted zip or folder -> one canonical, reproducible, safe archive."""

import hashlib
import os
import zipfile
from collections import Counter
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from deepfake_detector.core.errors import DataError
from deepfake_detector.data.sources import archive, canonical
from deepfake_detector.data.sources.canonical import member_name
from deepfake_detector.data.sources.layout import Member, detect
from deepfake_detector.data.sources.local import carve_pool, import_dataset

LIMITS = archive.Limits(max_member_bytes=2**20, max_total_bytes=2**30)
CARVE = SimpleNamespace(validation_fraction=0.1, test_fraction=0.2, seed=42)
SPLIT_DIRS = {"train": "Train", "validation": "Validation", "test": "Test"}


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", pixels)
    assert ok
    return encoded.tobytes()


def dataset(template: str, counts: dict, start: int = 0) -> dict[str, bytes]:
    """{name: jpeg} with counts[(split_folder, class_folder)] distinct images in each folder."""
    files, seed = {}, start
    for (split, cls), n in counts.items():
        for i in range(n):
            files[template.format(split=split, cls=cls) + f"/img_{i:03d}.jpg"] = jpeg(seed)
            seed += 1
    return files


def write_folder(root, files):
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_zip(path, files, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def canonical_content(path):
    """(split, label) -> Counter of sha256 of the images in a canonical archive."""
    with zipfile.ZipFile(path) as zf:
        layout = detect(zf.namelist(), str(path))
        assert layout.splits == ("train", "validation", "test") and layout.ignored == 0
        content = {}
        for m in layout.members:
            assert m.name == member_name(m.split, m.label, m.relative)
            info = zf.getinfo(m.name)  # written like the sample's archive: stored, fixed time, a Unix file
            assert (info.compress_type, info.date_time, info.create_system, info.external_attr >> 16) == (
                zipfile.ZIP_STORED, canonical.ZIP_DATE, 3, canonical.FILE_MODE)
            content.setdefault((m.split, m.label), Counter())[
                hashlib.sha256(zf.read(m.name)).hexdigest()] += 1
        return content


def digests(files, keep=lambda name: True):
    return Counter(hashlib.sha256(d).hexdigest() for n, d in files.items() if keep(n))


def run(src, tmp_path, carve=CARVE, limits=LIMITS, **kwargs):
    return import_dataset(src, tmp_path / "out" / "dataset.zip", carve, limits, progress=False, **kwargs)


THREE = {(s, c): 3 for s in ("Train", "Validation", "Test") for c in ("Real", "Fake")}


@pytest.mark.parametrize("kind", ["zip", "folder"])
@pytest.mark.parametrize("template, counts, expected, carved", [
    # canonical names plus junk, so it must be repacked rather than copied
    ("Dataset/{split}/{cls}", THREE, {s: {"real": 3, "fake": 3} for s in SPLIT_DIRS}, []),
    ("real_vs_fake/real-vs-fake/{split}/{cls}",
     {(s, c): 3 for s in ("train", "valid", "test") for c in ("real", "fake")},
     {s: {"real": 3, "fake": 3} for s in SPLIT_DIRS}, []),
    # no splits: 20 real -> 2 validation, 4 test; 10 fake -> 1 validation, 2 test
    ("archive/{cls}", {("", "REAL"): 20, ("", "fake"): 10},
     {"train": {"real": 14, "fake": 7}, "validation": {"real": 2, "fake": 1}, "test": {"real": 4, "fake": 2}},
     ["validation", "test"]),
    # Train + Test: only Validation is carved (0.1 x 10 = 1 per class)
    ("{split}/{cls}",
     {("train", "real"): 10, ("train", "fake"): 10, ("test", "real"): 3, ("test", "fake"): 2},
     {"train": {"real": 9, "fake": 9}, "validation": {"real": 1, "fake": 1}, "test": {"real": 3, "fake": 2}},
     ["validation"]),
])
def test_import_each_layout(tmp_path, kind, template, counts, expected, carved):
    files = dataset(template, counts)
    junk = {"__MACOSX/._x.jpg": b"junk", "notes.txt": b"hello"}
    src = (write_zip(tmp_path / "in.zip", {**files, **junk}) if kind == "zip"
           else write_folder(tmp_path / "in", {**files, **junk}))
    summary = run(src, tmp_path)
    assert summary["counts"] == expected
    assert summary["kind"] == kind and summary["repacked"]
    assert summary["ignored"] == (2 if kind == "zip" else 1)  # list_folder already drops the junk
    assert summary["carved"] == {split: split in carved for split in ("validation", "test")}
    content = canonical_content(tmp_path / "out" / "dataset.zip")
    got = {s: {"real": sum(content[(s, 0)].values()), "fake": sum(content[(s, 1)].values())}
           for s in SPLIT_DIRS}
    assert got == expected
    assert sum(content.values(), Counter()) == digests(files)  # nothing lost, nothing added
    for label, cls in ((0, ("real", "REAL", "Real")), (1, ("fake", "Fake"))):
        in_class = digests(files, lambda n: any(f"/{c}/" in f"/{n}" for c in cls))
        assert sum((content[(s, label)] for s in SPLIT_DIRS), Counter()) == in_class  # labels kept


def test_summary_fields(tmp_path):
    src = write_folder(tmp_path / "in", dataset("{split}/{cls}", THREE))
    summary = run(src, tmp_path)
    assert summary["layout"] == "{Train,Validation,Test}/{Real,Fake}"
    assert summary["carved"] == {"validation": False, "test": False}
    assert str(src) not in str(summary)  # where it lay is a param, not a fact about the data


def flat_with_duplicates(tmp_path):
    files = dataset("data/{cls}", {("", "real"): 40, ("", "fake"): 30}, start=1000)
    for i in range(6):  # duplicate pairs inside one class, under different names
        files[f"data/real/dup_{i}.jpg"] = files[f"data/real/img_{i:03d}.jpg"]
    for i in range(3):
        files[f"data/fake/sub/dup_{i}.jpg"] = files[f"data/fake/img_{i:03d}.jpg"]
    return write_folder(tmp_path / "in", files), files


def test_carving_stratified_duplicates_together(tmp_path):
    src, files = flat_with_duplicates(tmp_path)
    summary = run(src, tmp_path)
    # 46 real: round(4.6) = 5 validation, round(9.2) = 9 test; 33 fake: round(3.3) = 3, round(6.6) = 7
    assert summary["counts"] == {"train": {"real": 32, "fake": 23}, "validation": {"real": 5, "fake": 3},
                                 "test": {"real": 9, "fake": 7}}
    content = canonical_content(tmp_path / "out" / "dataset.zip")
    homes = {}
    for (split, _), found in content.items():
        for digest in found:
            homes.setdefault(digest, set()).add(split)
    assert all(len(splits) == 1 for splits in homes.values())  # every copy in the same split
    assert sum(content.values(), Counter()) == digests(files)


def pool_assignment(seed, n=30, pairs=5):
    pool, hashes = [], {}
    for label in (0, 1):
        for i in range(n):
            name = f"{label}/{i}"
            pool.append(Member(name, None, label, f"{i}.jpg"))
            hashes[name] = f"{label}-{i % (n - pairs) if i >= n - pairs else i}"
    return carve_pool(pool, hashes, {"validation": 0.2, "test": 0.2}, seed, "x"), hashes


def test_carving_seeded():
    first, hashes = pool_assignment(seed=1)
    assert pool_assignment(seed=1)[0] == first
    assert pool_assignment(seed=2)[0] != first
    for seed in range(20):
        assignment, _ = pool_assignment(seed)
        by_digest = {}
        for name, split in assignment.items():
            by_digest.setdefault(hashes[name], set()).add(split)
        assert all(len(s) == 1 for s in by_digest.values())
        for label in ("0", "1"):  # exact targets: 6 validation, 6 test of 30 per class
            got = Counter(split for name, split in assignment.items() if name.startswith(label))
            assert got == {"train": 18, "validation": 6, "test": 6}


def test_same_bytes_in_both_classes_stay_in_train():
    pool = [Member(f"{label}/{i}", None, label, f"{i}.jpg") for label in (0, 1) for i in range(10)]
    hashes = {m.name: m.name for m in pool} | {"0/0": "same", "1/0": "same"}
    assignment = carve_pool(pool, hashes, {"validation": 0.2, "test": 0.2}, 0, "x")
    assert assignment["0/0"] == assignment["1/0"] == "train"


def test_carving_seed_changes_output_and_same_seed_is_identical(tmp_path):
    src, _ = flat_with_duplicates(tmp_path)
    a, b, c = (tmp_path / n for n in ("a.zip", "b.zip", "c.zip"))
    import_dataset(src, a, CARVE, LIMITS, progress=False)
    import_dataset(src, b, CARVE, LIMITS, progress=False)
    import_dataset(src, c, SimpleNamespace(**{**vars(CARVE), "seed": 7}), LIMITS, progress=False)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_zero_fraction_for_a_missing_split(tmp_path):
    src = write_folder(tmp_path / "in", dataset("{split}/{cls}", {("train", "real"): 5, ("train", "fake"): 5,
                                                                   ("val", "real"): 2, ("val", "fake"): 2}))
    with pytest.raises(DataError, match=r"no Test split and data.carve.test_fraction is 0; "
                                        r"set data.carve.test_fraction"):
        run(src, tmp_path, carve=SimpleNamespace(validation_fraction=0.0, test_fraction=0.0, seed=1))
    assert not (tmp_path / "out").exists()
    summary = run(src, tmp_path, carve=SimpleNamespace(validation_fraction=0.0, test_fraction=0.2, seed=1))
    assert summary["carved"] == {"validation": False, "test": True}


def test_too_few_images_to_carve(tmp_path):
    src = write_folder(tmp_path / "in", dataset("{cls}", {("", "real"): 2, ("", "fake"): 9}))
    with pytest.raises(DataError, match="too few distinct Real images"):
        run(src, tmp_path)


def test_output_byte_identical_across_runs_and_inputs(tmp_path):
    files = dataset("Dataset/{split}/{cls}", THREE)
    folder = write_folder(tmp_path / "in", files)
    shuffled = dict(sorted(files.items(), reverse=True) + [("Dataset/readme.txt", b"x")])
    zipped = write_zip(tmp_path / "in.zip", shuffled)
    outputs = []
    for src in (folder, zipped, folder):
        os.utime(folder / next(iter(files)), (1e9, 1e9))  # mtimes must not leak into the archive
        import_dataset(src, tmp_path / f"{len(outputs)}.zip", CARVE, LIMITS, progress=False)
        outputs.append((tmp_path / f"{len(outputs)}.zip").read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    with zipfile.ZipFile(tmp_path / "0.zip") as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {(i.compress_type, i.date_time) for i in infos} == {(zipfile.ZIP_STORED, (1980, 1, 1, 0, 0, 0))}


def test_canonical_zip_is_copied_unchanged(tmp_path):
    src = write_zip(tmp_path / "in.zip", dict(reversed(dataset("Dataset/{split}/{cls}", THREE).items())))
    original = src.read_bytes()
    summary = run(src, tmp_path)
    assert not summary["repacked"] and summary["kind"] == "zip"
    assert (tmp_path / "out" / "dataset.zip").read_bytes() == original and src.exists()
    (tmp_path / "out" / "dataset.zip").unlink()
    assert not run(src, tmp_path, move=True)["repacked"]
    assert (tmp_path / "out" / "dataset.zip").read_bytes() == original and not src.exists()


def test_corrupt_members_refused(tmp_path):
    files = dataset("Dataset/{split}/{cls}", THREE)
    victim = next(iter(files))
    for name, extra in (("canonical.zip", {}), ("other.zip", {"extra/readme.txt": b"x"})):
        path = write_zip(tmp_path / name, {**files, **extra}, zipfile.ZIP_STORED)
        raw = bytearray(path.read_bytes())
        raw[raw.index(files[victim]) + 100] ^= 0xFF  # flip a byte inside the stored image: bad CRC
        path.write_bytes(bytes(raw))
        with pytest.raises(DataError, match="CRC|corrupt"):
            run(path, tmp_path)
        assert not (tmp_path / "out" / "dataset.zip").exists()


def evil_zip(path, case):
    files = dataset("{split}/{cls}", THREE)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        if case == "dotdot":
            zf.writestr("../evil.jpg", b"evil")
        elif case == "absolute":
            zf.writestr(zipfile.ZipInfo("/tmp/evil.jpg"), b"evil")
        elif case == "symlink":
            info = zipfile.ZipInfo("train/real/link.jpg")
            info.create_system, info.external_attr = 3, 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
        elif case == "bomb":
            zf.writestr("train/real/bomb.jpg", bytes(50 * 2**20))
    if case == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.mark.parametrize("case, match", [
    ("dotdot", "'../evil.jpg': a '..' path"),
    ("absolute", "'/tmp/evil.jpg': an absolute path"),
    ("symlink", "a symbolic link"),
    ("bomb", "over data.max_member_mb"),
    ("total", "over data.max_total_gb"),
    ("truncated", "not a readable zip"),
])
def test_unsafe_archives_refused(tmp_path, case, match):
    src = evil_zip(tmp_path / "in.zip", case)
    limits = archive.Limits(2**20, 2000 if case == "total" else 2**30)
    before = set(tmp_path.parent.iterdir())
    with pytest.raises(DataError, match=match) as caught:
        run(src, tmp_path, limits=limits)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()
    assert set(tmp_path.parent.iterdir()) == before and not (tmp_path.parent / "evil.jpg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zip"]


def test_folder_with_symlink_refused(tmp_path):
    src = write_folder(tmp_path / "in", dataset("{split}/{cls}", THREE))
    (tmp_path / "secret.jpg").write_bytes(jpeg(99))
    (src / "Train" / "Real" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    with pytest.raises(DataError, match="symbolic link"):
        run(src, tmp_path)


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "missing.zip", "data.local_path: .*missing.zip does not exist; set data.local_path"),
    (lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt", "neither a folder nor a .zip file"),
])
def test_bad_local_path(tmp_path, make, match):
    with pytest.raises(DataError, match=match):
        run(make(tmp_path), tmp_path)


def test_progress_goes_to_stderr(tmp_path, capsys):
    src = write_folder(tmp_path / "in", dataset("{cls}", {("", "real"): 10, ("", "fake"): 10}))
    import_dataset(src, tmp_path / "d.zip", CARVE, LIMITS, progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "writing d.zip" in captured.err
