"""layout.detect: every accepted layout maps to the right split and label; anything else is one
clear error."""

import pytest

from deepfake_detector import check_both_classes
from deepfake_detector.core.errors import DataError
from deepfake_detector.data.sources.canonical import member_name
from deepfake_detector.data.sources.layout import EXPECTED, detect


def names_for(template: str, splits=("Train", "Validation", "Test"), classes=("Real", "Fake"), n=2):
    """File names for a layout template with {split} and {cls} placeholders."""
    return [template.format(split=s, cls=c) + f"/img_{i}.jpg"
            for s in splits for c in classes for i in range(n)]


def mapping(layout):
    return sorted((m.split, m.label, m.relative) for m in layout.members)


FULL = sorted((s, label, f"img_{i}.jpg") for s in ("train", "validation", "test") for label in (0, 1)
              for i in range(2))


@pytest.mark.parametrize("template, splits, classes", [
    ("Dataset/{split}/{cls}", ("Train", "Validation", "Test"), ("Real", "Fake")),  # canonical (Kaggle)
    ("{split}/{cls}", ("train", "validation", "test"), ("real", "fake")),  # lower case, no wrapper
    ("{split}/{cls}", ("TRAIN", "Valid", "TeSt"), ("REAL", "Fake")),  # mixed case
    ("{split}/{cls}", ("training", "val", "testing"), ("real", "fake")),
    ("{split}/{cls}", ("train", "dev", "test"), ("0_real", "1_fake")),
    ("archive/Dataset/{split}/{cls}", ("Train", "Validation", "Test"), ("Real", "Fake")),  # extra top folders
    ("real_vs_fake/real-vs-fake/{split}/{cls}", ("train", "valid", "test"), ("real", "fake")),
    ("data/{cls}/{split}", ("train", "val", "test"), ("real", "fake")),  # class above split
])
def test_split_layouts(template, splits, classes):
    layout = detect(names_for(template, splits, classes), "src.zip")
    assert layout.splits == ("train", "validation", "test")
    assert mapping(layout) == FULL
    assert layout.ignored == 0


def test_descriptions():
    assert (detect(names_for("Dataset/{split}/{cls}"), "x").description
            == "Dataset/{Train,Validation,Test}/{Real,Fake}")
    flat = detect(["real/a.jpg", "fake/b.jpg"], "x")
    assert flat.description == "{real,fake} (no splits)"
    assert (detect(names_for("data/{cls}/{split}", ("train", "test")), "x").description
            == "data/{Real,Fake}/{train,test}")


def test_canonical_names_map_trivially():
    names = [member_name(s, label, f"sub/{i}.jpg") for s in ("train", "validation", "test")
             for label in (0, 1) for i in range(2)]
    layout = detect(names, "data/raw/dataset.zip")
    assert all(member_name(m.split, m.label, m.relative) == m.name for m in layout.members)
    assert {m.relative for m in layout.members} == {"sub/0.jpg", "sub/1.jpg"}


def test_flat_no_splits_with_wrapper():
    layout = detect(["my data/Real/a.jpg", "my data/Fake/b.jpg", "my data/Fake/deep/c.jpg"], "x")
    assert layout.splits == ()
    assert mapping(layout) == [(None, 0, "a.jpg"), (None, 1, "b.jpg"), (None, 1, "deep/c.jpg")]
    assert layout.description == "my data/{Real,Fake} (no splits)"


def test_label_comes_from_folder_never_file_name():
    layout = detect(["train/Real/fake_1.jpg", "train/Fake/real_1.jpg", "train/Fake/0_real.jpg"], "x")
    assert {m.name: m.label for m in layout.members} == {
        "train/Real/fake_1.jpg": 0, "train/Fake/real_1.jpg": 1, "train/Fake/0_real.jpg": 1}


def test_only_some_splits_and_subfolders_kept():
    layout = detect(["Train/Real/a/1.jpg", "Train/Real/b/1.jpg", "Train/Fake/1.jpg",
                     "Test/Real/1.jpg", "Test/Fake/1.jpg"], "x")
    assert layout.splits == ("train", "test")
    assert {m.relative for m in layout.members if m.split == "train"} == {"a/1.jpg", "b/1.jpg", "1.jpg"}


def test_junk_dirs_and_loose_files_ignored():
    names = ["Dataset/", "Dataset/Train/", "Dataset/Train/Real/a.jpg", "Dataset/Train/Fake/b.jpg",
             "__MACOSX/Dataset/Train/Real/._a.jpg", "Dataset/Train/Real/.DS_Store",
             "Dataset/Train/Fake/._b.jpg", "Dataset/.ipynb_checkpoints/x.jpg", "README.md",
             "Dataset/train.csv", "Dataset/Train/other/c.jpg", "Dataset/Train/Real/Thumbs.db"]
    layout = detect(names, "x")
    assert sorted(m.name for m in layout.members) == ["Dataset/Train/Fake/b.jpg", "Dataset/Train/Real/a.jpg"]
    assert layout.ignored == 8  # the two directory entries are not files, so not counted
    assert layout.description == "Dataset/Train/{Real,Fake}"


@pytest.mark.parametrize("names, found", [
    ([], "no files"),
    (["images/a.jpg", "images/b/c.jpg", "labels.csv"], "found folders images/, images/b/"),
    (["a.jpg", "b.jpg"], "only loose files"),
    (["train/real/a.jpg", "train/real/b.jpg"], "the train split has only Real images"),
    (["fake/a.jpg"], "the dataset has only Fake images"),
    (["train/real/a.jpg", "train/fake/a.jpg", "test/real/a.jpg"], "the test split has only Real images"),
    (["real/fake/a.jpg", "real/b.jpg", "fake/c.jpg"],
     "class folder inside another class folder (real/fake/)"),
    (["train/real/a.jpg", "train/fake/a.jpg", "real/b.jpg", "fake/b.jpg"],
     "split folders for some class folders but not others"),
    (["a/real/x.jpg", "a/fake/x.jpg", "b/real/x.jpg", "b/fake/x.jpg"],
     "under several different folders (a/, b/)"),
    (["val/real/x.jpg", "valid/real/y.jpg", "val/fake/x.jpg", "train/real/x.jpg", "train/fake/x.jpg"],
     "val/real/ and valid/real/ both map to Validation/Real"),
    (["train/Real/x.jpg", "train/real/y.jpg", "train/fake/x.jpg"], "both map to Train/Real"),
    (["test/real/x.jpg", "test/fake/x.jpg"], "but no Train/"),
    (["train/real/test/x.jpg", "train/fake/x.jpg"], "split folders both above and below"),
])
def test_unknown_layouts_fail_in_one_line(names, found):
    with pytest.raises(DataError) as caught:
        detect(names, "my.zip")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("my.zip: ")
    assert found in message
    assert EXPECTED in message


def test_ambiguous_class_prefix_not_a_class_folder():
    # "1_real" contradicts itself, so it is not taken as a class folder.
    with pytest.raises(DataError, match="no Real/ or Fake/ class folders"):
        detect(["1_real/a.jpg", "0_fake/b.jpg"], "x")


def test_duplicate_entry_refused():
    with pytest.raises(DataError, match="appears twice"):
        detect(["real/a.jpg", "real/a.jpg", "fake/b.jpg"], "x")


def test_both_classes_check_names_the_split_and_the_fix():
    """The one check that preprocess, train and layout detection share."""
    check_both_classes({"train": {"real": 3, "fake": 1}, None: {"real": 1, "fake": 2}}, "x", "fix it")
    with pytest.raises(DataError) as caught:
        check_both_classes({"train": {"real": 3, "fake": 1}, "validation": {"real": 0, "fake": 0}},
                           "data/processed", "rerun preprocess")
    assert str(caught.value) == ("data/processed: the validation split has no images (a detector needs Real "
                                 "and Fake images in every split); rerun preprocess")
