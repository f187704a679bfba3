"""`deepfake-detector predict` with a real tiny model trained by `dvc repro` in a throwaway project:
real images with and without a face, a video written by OpenCV, every kind of bad input, each output
format parsed back, the threshold that travels with the model, and predict == evaluate."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from badimages import BAD_IMAGES
from projectcopy import dvc, project_env
from trained import FACE_CENTRE, FACE_IMAGE, run_cli

from deepfake_detector.model import inference
from deepfake_detector.core import paths
from deepfake_detector.core.files import read_json, sha256_file
from deepfake_detector.apps.predict import ROW_FIELDS

pytestmark = pytest.mark.slow
COMMAND = str(Path(sys.executable).parent / "deepfake-detector")  # the installed console script


def predict(project: Path, *args: str) -> tuple[int, str, str]:
    """`deepfake-detector predict ...` run in ``project`` in-process: (exit status, stdout, stderr)."""
    return run_cli(project, "predict", *args)


def rows_of(output: str) -> list[dict]:
    return json.loads(output)["rows"]


def test_evaluate_leaves_the_threshold_beside_the_model_with_its_hash(trained):
    saved = read_json(trained / paths.THRESHOLD)
    assert saved["model_sha256"] == sha256_file(trained / paths.MODEL)
    assert saved["threshold"] == read_json(trained / "metrics/eval.json")["threshold"]
    assert "evaluate" not in dvc("status", cwd=trained).stdout  # a declared output, up to date


def test_predict_scores_equal_evaluate_on_the_validation_crops(trained, tmp_path):
    with zipfile.ZipFile(trained / "data/raw/dataset.zip") as archive:
        members = [n for n in archive.namelist() if "/Validation/" in n and not n.endswith("/")]
        archive.extractall(tmp_path, members)
    code, _, _ = predict(trained, str(tmp_path / "Dataset"), "--no-detect",
                         "--output", str(tmp_path / "out.csv"),
                         "--batch-size", "16")  # many batches, and more files than the prepare-ahead window
    assert code == 0
    ours = pd.read_csv(tmp_path / "out.csv")
    ours = ours[ours["kind"] == "file"].assign(path=lambda f: f["file"].map(
        lambda p: Path(p).relative_to(tmp_path).as_posix()))[["path", "p_fake", "label"]]
    ours = ours.rename(columns={"label": "verdict"})
    theirs = pd.read_csv(trained / "data/eval/predictions.csv").query("split == 'validation'")
    both = theirs.merge(ours, on="path", validate="one_to_one")
    assert len(both) == len(theirs) == len(members) == 64
    assert both["score"].nunique() > 48  # the model tells images apart: equal scores prove something
    np.testing.assert_allclose(both["p_fake"], both["score"], rtol=0, atol=1e-5)
    # labels agree wherever the score is not within rounding of the threshold
    threshold = read_json(trained / "metrics/eval.json")["threshold"]
    clear = (both["score"] - threshold).abs() > 1e-5
    assert (both.loc[clear, "verdict"] == both.loc[clear, "predicted"]).all()


def test_a_face_is_found_and_scored_and_a_faceless_image_gets_no_verdict(trained, media):
    code, out, _ = predict(trained, str(media["face"]), str(media["no_face"]), "--format", "json")
    assert code == 0
    rows = rows_of(out)
    face = [r for r in rows if r["file"] == str(media["face"]) and r["kind"] == "face"]
    assert len(face) == 1 and face[0]["face"] is True
    x, y, w, h = face[0]["box"]
    assert x < FACE_CENTRE[0] < x + w and y < FACE_CENTRE[1] < y + h and w == h and 200 < w < 420
    # no face: no crop is scored and the file gets no score or label, never a guess from the scene
    faceless = [r for r in rows if r["file"] == str(media["no_face"])]
    assert [r["kind"] for r in faceless] == ["file"]
    assert faceless[0]["p_fake"] is None and faceless[0]["label"] is None and faceless[0]["faces"] == 0
    assert "no face found" in faceless[0]["note"] and "--no-detect" in faceless[0]["note"]
    code, out, _ = predict(trained, str(media["no_face"]), "--no-detect", "--format", "json")
    whole = rows_of(out)
    assert code == 0 and [r["kind"] for r in whole] == ["face", "file"]
    assert whole[0]["face"] is False and whole[0]["box"] == [60, 0, 200, 200]  # the centre square
    for verdict in (r for r in rows + whole if r["kind"] == "file" and r["p_fake"] is not None):
        crops = [r["p_fake"] for r in rows + whole if r["file"] == verdict["file"] and r["kind"] == "face"]
        assert verdict["p_fake"] == max(crops) and 0 <= verdict["p_fake"] <= 1


def test_a_video_is_sampled_at_fps_and_reports_mean_and_top_k(trained, media):
    code, out, _ = predict(trained, str(media["video"]), "--fps", "2", "--top-k", "3", "--format", "json",
                           "--threshold", "0.5")
    assert code == 0
    rows = rows_of(out)
    faces = [r for r in rows if r["kind"] == "face"]
    assert sorted({r["frame"] for r in faces}) == [0, 5, 10, 15, 20, 25]  # 10 fps sampled at 2/s
    assert {r["time"] for r in faces} == {0.0, 0.5, 1.0, 1.5, 2.0, 2.5}
    assert sum(r["face"] for r in faces) >= 5  # the portrait is found in (nearly) every frame
    per_frame = [max(r["p_fake"] for r in faces if r["frame"] == f)
                 for f in sorted({r["frame"] for r in faces})]
    verdict = rows[-1]  # frames without a face (if any) are left out of the mean
    assert verdict["kind"] == "file" and verdict["frames"] == 6
    assert verdict["p_fake"] == pytest.approx(np.mean(per_frame))
    assert verdict["top_k_mean"] == pytest.approx(np.mean(sorted(per_frame)[-3:]))
    assert verdict["label"] == ("Fake" if verdict["p_fake"] >= 0.5 else "Real")

    code, out, _ = predict(trained, str(media["video"]), "--max-pixels", "200000", "--format", "json")
    assert code == 2 and [(r["kind"], r["error"]) for r in rows_of(out)] == [("error", "too_large")]


def _bad_inputs(folder: Path) -> dict[str, str]:
    """file name → the error reason predict must give it."""
    expected = {}
    for name in ("corrupt_jpeg", "truncated_jpeg", "zero_byte", "text_as_jpg", "icon_file",
                 "decompression_bomb"):
        build, _, reason = BAD_IMAGES[name]
        (folder / f"{name}.jpg").write_bytes(build())
        expected[f"{name}.jpg"] = reason
    (folder / "notes.mp4").write_text("not a video")
    expected["notes.mp4"] = "unreadable"
    (folder / "zero.mp4").write_bytes(b"")
    expected["zero.mp4"] = "empty"
    cv2.VideoWriter(str(folder / "no_frames.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64)).release()
    expected["no_frames.avi"] = "empty_video"
    return expected


def test_every_bad_input_gets_an_error_row_and_the_rest_go_on(trained, media, tmp_path):
    expected = _bad_inputs(tmp_path)
    missing = str(tmp_path / "missing.jpg")
    code, out, err = predict(trained, str(tmp_path), str(media["face"]), missing, "--format", "json")
    assert code == 0, err
    rows = rows_of(out)
    errors = {Path(r["file"]).name: r["error"] for r in rows if r["kind"] == "error"}
    assert errors == {**expected, "missing.jpg": "not_found"}
    assert [r["file"] for r in rows if r["kind"] == "file"] == [str(media["face"])]
    assert "1 of 11 files scored" in err

    code, out, _ = predict(trained, str(tmp_path), "--format", "json")  # nothing scorable: exit 2
    assert code == 2 and all(r["kind"] == "error" for r in rows_of(out))


def test_each_output_format_parses_back_to_the_same_rows(trained, media, tmp_path):
    args = (str(media["face"]), str(media["no_face"]))
    rows = rows_of(predict(trained, *args, "--format", "json")[1])
    assert all(list(r) == list(ROW_FIELDS) for r in rows)

    code, _, _ = predict(trained, *args, "--output", str(tmp_path / "out.csv"))  # format from the suffix
    parsed = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert code == 0 and [list(r) for r in parsed] == [list(ROW_FIELDS)] * len(rows)
    for mine, back in zip(rows, parsed):
        assert (float(back["p_fake"]) if back["p_fake"] else None) == mine["p_fake"]  # None: no face
        assert (back["label"] or None) == mine["label"]
        assert back["box"] == (",".join(map(str, mine["box"])) if mine["box"] else "")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # written atomically

    table = predict(trained, *args)[1].splitlines()
    assert table[0].split() == ["file", "kind", "frame", "box", "P(fake)", "label", "note"]
    assert len(table) == 1 + len(rows)
    for line, row in zip(table[1:], rows):
        assert line.startswith(row["file"]) and row["label"] is None or (
            f"{row['p_fake']:.4f}" in line and row["label"] in line)


def test_the_threshold_must_come_from_this_model(trained, tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes((trained / paths.MODEL).read_bytes())
    sidecar = inference.threshold_path(model)
    saved = read_json(trained / paths.THRESHOLD)

    code, _, err = predict(trained, str(FACE_IMAGE), "--model", str(model))
    assert code == 2 and err.strip().count("\n") == 0 and "dvc repro evaluate" in err  # none beside it

    sidecar.write_text(json.dumps({**saved, "model_sha256": "0" * 64}))  # another run's threshold
    code, _, err = predict(trained, str(FACE_IMAGE), "--model", str(model))
    assert code == 2 and err.strip().count("\n") == 0
    assert "another model" in err and "dvc repro evaluate" in err and "--threshold" in err

    code, out, _ = predict(trained, str(FACE_IMAGE), "--model", str(model), "--threshold", "0.25",
                           "--format", "json")
    assert code == 0 and json.loads(out)["threshold"] == 0.25

    sidecar.write_text(json.dumps(saved))  # the right one
    code, out, _ = predict(trained, str(FACE_IMAGE), "--model", str(model), "--format", "json")
    assert code == 0 and json.loads(out)["threshold"] == saved["threshold"]


def test_the_installed_command_has_help_everywhere_and_runs(trained, media):
    for args in ([], ["predict"]):
        shown = subprocess.run([COMMAND, *args, "--help"], capture_output=True, text=True)
        assert shown.returncode == 0 and "usage: deepfake-detector" in shown.stdout
    done = subprocess.run([COMMAND, "predict", str(media["face"]), "--format", "csv"], cwd=trained,
                          capture_output=True, text=True, env=project_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert next(csv.DictReader(io.StringIO(done.stdout)))["kind"] == "face"


def test_a_video_over_the_length_cap_is_refused_from_its_header_before_any_frame(tmp_path):
    from deepfake_detector.apps.predict import Unreadable, video_frames

    path = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(40):  # 4 s at 10 fps
        writer.write(np.full((64, 64, 3), i * 6, np.uint8))
    writer.release()
    frames = video_frames(path, fps=10, max_pixels=10**6, max_seconds=1.5)
    with pytest.raises(Unreadable) as refused:
        next(frames)  # not one frame is decoded and scored first
    assert refused.value.reason == "too_long" and "4.0 s" in str(refused.value)
    assert len(list(video_frames(path, fps=10, max_pixels=10**6, max_seconds=5))) == 40


def test_links_and_formats_it_cannot_read_get_a_row_each(trained, media, tmp_path):
    """A broken link, a link to a folder and a phone's HEIC photo each get their own error row
    (they used to vanish, or be called not_image)."""
    folder = tmp_path / "in"
    (folder / "elsewhere").mkdir(parents=True)
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    (folder / "album").symlink_to(folder / "elsewhere", target_is_directory=True)
    (folder / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    code, out, _ = predict(trained, str(folder), str(media["face"]), "--format", "json")
    errors = {Path(r["file"]).name: (r["error"], r["note"]) for r in rows_of(out) if r["kind"] == "error"}
    assert code == 0 and set(errors) == {"gone.jpg", "album", "phone.heic"}, errors
    assert errors["gone.jpg"] == ("not_found", "a broken symbolic link")
    assert errors["album"][0] == "unreadable" and "link to a folder" in errors["album"][1]
    assert errors["phone.heic"][0] == "unsupported"


@pytest.mark.parametrize("saved", [7, -0.1, float("nan"), True])
def test_a_threshold_file_outside_0_1_is_refused_in_one_line(trained, tmp_path, saved):
    model = tmp_path / "model.keras"
    model.write_bytes((trained / paths.MODEL).read_bytes())
    good = read_json(trained / paths.THRESHOLD)
    inference.threshold_path(model).write_text(json.dumps({**good, "threshold": saved}))
    code, out, err = predict(trained, str(FACE_IMAGE), "--model", str(model))
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "not a probability in [0, 1]" in err and "dvc repro evaluate" in err


def _number_options():
    """(command, option) of every option whose value is a number, from the parser itself."""
    import argparse

    from deepfake_detector.apps import cli

    commands = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if action.option_strings and getattr(action.type, "__qualname__", "").startswith(
                    ("_positive", "_probability", "_margin")):
                yield name, action.option_strings[0]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_number_option_of_every_command_refuses_non_finite_values(value, capsys):
    from deepfake_detector.apps import cli

    options = list(_number_options())
    assert {("predict", "--fps"), ("watch", "--window"), ("watch", "--interval"), ("watch", "--seconds"),
            ("serve", "--fps"), ("predict", "--threshold")} <= set(options)
    needs = {"predict": ["x.jpg"], "watch": ["0"], "export": ["--format", "onnx"], "serve": []}
    for command, option in options:
        with pytest.raises(SystemExit) as stopped:
            cli.parser().parse_args([command, *needs[command], f"{option}={value}"])
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and f"argument {option}" in err, (option, err)
        assert "must be a finite number" in err or "must be an integer" in err, (option, err)
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["predict", "x.jpg", "--threshold", "abc"])
    assert "--threshold: must be a number, got 'abc'" in capsys.readouterr().err


def test_a_model_trained_on_the_generated_sample_says_so_once_with_its_validation_figures(
        trained, media, native_model, tmp_path):
    """#19: the model `make repro` ships learned from generated faces and scores real photos at chance.
    predict and watch say so once; the JSON header says what it learned from and how it did on its
    own Validation split."""
    from deepfake_detector.model import modelfile

    code, out, err = predict(trained, str(media["face"]), "--format", "json")
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(warnings) == 1, err
    assert "generated sample" in warnings[0] and "real photos mean nothing" in warnings[0]
    header = json.loads(out)
    assert header["warning"] == warnings[0]
    assert header["trained_on"] == modelfile.read_meta(trained / paths.MODEL).trained_on
    assert header["trained_on"]["source"] == "sample"
    assert header["validation"] == read_json(trained / paths.THRESHOLD)["validation"]
    assert header["validation"]["roc_auc"] == read_json(trained / paths.EVAL_METRICS)["validation"]["roc_auc"]
    # and for whoever reads the table
    assert f"on its own Validation split: ROC-AUC {header['validation']['roc_auc']:.4f}" in err
    code, _, err = run_cli(trained, "watch", str(media["video"]), "--seconds", "1", "--no-detect")
    assert code == 0 and err.count("generated sample") == 1, err
    # a file that doesn't say what it learned from: no warning, and no figures evaluate didn't record
    crop = tmp_path / "crop.png"
    cv2.imwrite(str(crop), np.full((64, 64, 3), 128, np.uint8))
    code, out, err = predict(trained, str(crop), "--model", str(native_model), "--format", "json")
    header = json.loads(out)
    assert code == 0 and "warning" not in err and "Validation split" not in err, err
    assert header["warning"] is None and header["trained_on"] is None and header["validation"] is None


def test_a_model_that_reads_unresized_crops_is_never_given_detected_faces(trained, media, native_model,
                                                                          tmp_path):
    """F2: a rich_dct model (the pristine_faces recipe's) run the default way (detection on) scored
    resized detected faces, and lost half its catch rate without a word. Now: crops of its size are
    scored whole, any other size is an error row that says why, a video too, and stderr says so once."""
    crop = tmp_path / "crop.png"
    rgb = cv2.resize(cv2.imread(str(media["face"])), (64, 64), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(crop), rgb)
    code, out, err = predict(trained, str(crop), str(media["face"]), str(media["video"]),
                             "--model", str(native_model), "--format", "json")
    rows = rows_of(out)
    assert code == 0 and err.count("un-resized 64x64") == 1, err
    scored = [r for r in rows if r["file"] == str(crop)]
    assert [r["kind"] for r in scored] == ["face", "file"] and scored[0]["face"] is False
    assert scored[0]["box"] == [0, 0, 64, 64] and "un-resized" in scored[1]["note"]
    refused = {r["file"]: r for r in rows if r["kind"] == "error"}
    assert set(refused) == {str(media["face"]), str(media["video"])}
    assert {r["error"] for r in refused.values()} == {"wrong_size"}
    assert "512x600" in refused[str(media["face"])]["note"] and "64x64" in refused[str(media["face"])]["note"]
    code, lines, err = run_cli(trained, "watch", str(media["video"]), "--model", str(native_model))
    assert code == 2 and err.count("\n") == 1 and "un-resized 64x64" in err
