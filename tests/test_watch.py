"""`deepfake-detector watch`: a video file read at its real frame rate, scored by the real tiny
model; frames dropped when scoring can't keep up, never queued; the rolling verdict; --record.
And the face tracker that lets watch keep up."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from trained import FACE_CENTRE, FACE_IMAGE, run_cli, write_video

from deepfake_detector import faces, inference, watch
from deepfake_detector.faces import _overlap


def run_watch(project: Path, *args: str) -> tuple[int, list[dict], str, float]:
    """(exit status, JSON lines, stderr, wall seconds) of `deepfake-detector watch ... --format json`."""
    started = time.perf_counter()
    code, out, err = run_cli(project, "watch", *args, "--format", "json")
    return code, [json.loads(line) for line in out.splitlines()], err, time.perf_counter() - started


def _rgb_frames(path: Path) -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(str(path)), []
    while (frame := capture.read())[0]:
        frames.append(cv2.cvtColor(frame[1], cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def test_the_tracker_follows_faces_between_whole_frame_searches(tmp_path):
    frames = _rgb_frames(write_video(tmp_path / "clip.avi", 12, 10))
    blank = np.full_like(frames[0], 90)
    # the portrait in frames 0-3, gone in 4-5, back in 6-11: found again at the next whole search (10)
    stream = frames[:4] + [blank, blank] + frames[6:]
    tracker, finder = faces.FaceTracker(every=5), faces.FaceFinder()
    found = [tracker.boxes(frame) for frame in stream]
    for i in (1, 2, 3):  # followed, not searched for: where the whole-frame search finds it
        assert len(found[i]) == 1 and _overlap(found[i][0], finder.boxes(stream[i])[0]) > 0.7
    assert found[4] == found[5] == []  # lost when it left
    assert found[6] == found[9] == []  # not searched for until the next whole-frame search...
    assert len(found[10]) == 1 and len(found[11]) == 1  # ...which finds it, and it is followed again


def test_in_the_background_whole_frame_searches_never_hold_up_a_frame(tmp_path):
    frames = _rgb_frames(write_video(tmp_path / "clip.avi", 6, 10))
    blank = np.full_like(frames[0], 90)
    tracker = faces.FaceTracker(every=2, background=True)
    try:
        assert len(tracker.boxes(frames[0])) == 1  # the first frame waits for its search
        assert tracker.boxes(blank) == []  # the face left: not followed
        found = []
        for i in range(1, 6):  # it comes back: a background search finds it, the frames don't wait
            found.append(tracker.boxes(frames[i]))
            time.sleep(0.3)  # time for a search to finish
        assert found[0] == [] and all(len(boxes) == 1 for boxes in found[2:])
    finally:
        tracker.close()


def test_the_tracker_with_every_1_is_the_finder(media):
    frame = cv2.cvtColor(cv2.imread(str(FACE_IMAGE)), cv2.COLOR_BGR2RGB)
    box = faces.FaceTracker(every=1).boxes(frame)
    assert box == faces.FaceFinder().boxes(frame)
    x, y, w, h = box[0]
    assert x < FACE_CENTRE[0] < x + w and y < FACE_CENTRE[1] < y + h


@pytest.mark.slow
def test_a_video_file_is_watched_at_its_real_rate_and_recorded(trained, media, tmp_path):
    record = tmp_path / "out" / "annotated.mp4"
    code, lines, err, seconds = run_watch(trained, str(media["video"]), "--record", str(record), "--show-fps")
    assert code == 0, err
    *verdicts, summary = lines
    assert summary["summary"] and summary["read"] == 30  # 3 s at 10 fps
    assert summary["scored"] + summary["dropped"] == 30 and summary["scored"] >= 1
    assert seconds >= 2.9  # the last frame arrives 2.9 s after the first: real time, not as fast as it decodes
    assert [v["time"] for v in verdicts][:3] == [0.0, 1.0, 2.0]  # one verdict a second of stream
    for verdict in verdicts:
        assert 0 <= verdict["p_fake"] <= 1 and verdict["frames"] >= 1
        assert verdict["label"] == ("Fake" if verdict["p_fake"] >= summary["threshold"] else "Real")
    assert sum(v["faces"] == 1 for v in verdicts) >= 2  # the portrait is found

    capture = cv2.VideoCapture(str(record))  # every source frame is in it, held while not scored
    assert capture.get(cv2.CAP_PROP_FPS) == 10 and summary["recorded_frames"] == 30
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 360)
    assert len(_rgb_frames(record)) == 30
    capture.release()
    assert [p.name for p in record.parent.iterdir()] == ["annotated.mp4"]  # written atomically


@pytest.mark.slow
def test_watch_scores_frames_as_predict_does(trained, media):
    """Whole frames (--no-detect) of a 10 fps video, a verdict line per scored frame: each frame's
    score is the one predict gives that frame, and the rolling verdict is their mean."""
    code, lines, err, _ = run_watch(trained, str(media["video"]), "--no-detect", "--interval", "0.05",
                                    "--window", "0.25")
    *verdicts, summary = lines
    assert code == 0 and len(verdicts) == summary["scored"] >= 20, err  # scoring a 64 px crop takes ms
    code, out, _ = run_cli(trained, "predict", str(media["video"]), "--no-detect", "--fps", "10",
                           "--format", "json")
    predicted = {row["frame"]: row["p_fake"] for row in json.loads(out)["rows"] if row["kind"] == "face"}
    assert len(predicted) == 30
    for verdict in verdicts:
        assert verdict["frame_p_fake"] == pytest.approx(predicted[verdict["frame"]], abs=1e-5)
        window = [v["frame_p_fake"] for v in verdicts if verdict["time"] - 0.25 < v["time"] <= verdict["time"]]
        assert verdict["frames"] == len(window) and verdict["p_fake"] == pytest.approx(np.mean(window), abs=1e-4)


@pytest.mark.slow
def test_frames_are_dropped_when_scoring_cannot_keep_up_never_queued(trained, tmp_path):
    """400 frames at 200 fps (2 s), and a whole-frame face search in the scoring loop on every frame
    (tens of ms each): most frames are dropped, and watch ends with the stream instead of working
    through a backlog (a queue would take 400 x the per-frame time, over 10 s)."""
    video = write_video(tmp_path / "fast.avi", 400, 200)
    scorer = inference.Scorer.load(trained / "models/model.keras")
    options = watch.Options(threshold=0.5, finder=faces.FaceTracker(every=1), margin=faces.DEFAULT_MARGIN,
                            interval=0.5, format="json")
    out, started = io.StringIO(), time.perf_counter()
    summary = watch.watch(str(video), scorer, options, out)
    seconds = time.perf_counter() - started
    assert summary["read"] == 400 and summary["scored"] + summary["dropped"] == 400
    assert summary["dropped"] > 200 and summary["scored"] >= 2
    assert seconds < 10
    assert json.loads(out.getvalue().splitlines()[-2])["time"] >= 1.0  # verdicts came from the newest frames


@pytest.mark.slow
def test_seconds_stops_and_bad_sources_get_one_line(trained, media, tmp_path):
    code, lines, _, _ = run_watch(trained, str(media["video"]), "--seconds", "1", "--no-detect")
    assert code == 0 and lines[-1]["scored"] <= 11 and lines[-1]["read"] >= lines[-1]["scored"]

    for source, words in ((tmp_path / "missing.mp4", "no such video file"),
                          (tmp_path / "notes.mp4", "OpenCV cannot open it")):
        if source.name == "notes.mp4":
            source.write_text("not a video")
        code, out, err = run_cli(trained, "watch", str(source))
        assert code == 2 and out == "" and err.count("\n") == 1 and str(source) in err and words in err

    code, _, err = run_cli(trained, "watch", str(media["video"]), "--record", str(tmp_path / "a" / "b.xyz"))
    assert code == 2 and err.count("\n") == 1 and "cannot write a video" in err
