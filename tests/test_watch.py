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

from deepfake_detector.apps import faces
from deepfake_detector.model import inference
from deepfake_detector.apps import watch
from deepfake_detector.apps.faces import _overlap


def run_watch(project: Path, *args: str) -> tuple[int, list[dict], str, float]:
    """(exit status, JSON lines, stderr, wall seconds) of `deepfake-detector watch ... --format json`."""
    started = time.perf_counter()
    code, out, err = run_cli(project, "watch", *args, "--format", "json")
    return code, [json.loads(line) for line in out.splitlines()], err, time.perf_counter() - started


def errors_of(err: str) -> list[str]:
    """stderr's lines but the one warning that the trained project's model learned from the generated
    sample (tests/test_predict.py checks that warning)."""
    lines = err.strip().splitlines()
    assert sum("generated sample" in line for line in lines) <= 1, err
    return [line for line in lines if "generated sample" not in line]


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
    assert summary["scored"] + summary["no_face"] + summary["dropped"] == 30 and summary["scored"] >= 1
    # the last frame arrives 2.9 s after the first: real time, not as fast as it decodes
    assert seconds >= 2.9
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
        window = [v["frame_p_fake"] for v in verdicts
                  if verdict["time"] - 0.25 < v["time"] <= verdict["time"]]
        assert (verdict["frames"] == len(window)
                and verdict["p_fake"] == pytest.approx(np.mean(window), abs=1e-4))


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
    assert summary["read"] == 400 and summary["scored"] + summary["no_face"] + summary["dropped"] == 400
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
    assert code == 2 and len(errors_of(err)) == 1 and "cannot write a video" in err


def _stalling_stream(video: Path, send: float):
    """A loopback HTTP server that sends the first ``send`` fraction of ``video`` and then stalls,
    as a camera or stream that stops delivering does; yields its URL."""
    import contextlib
    import http.server
    import threading

    data, release = video.read_bytes(), threading.Event()

    class Stalling(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:int(len(data) * send)])
            self.wfile.flush()
            release.wait(60)  # the rest never comes while the test runs

        def log_message(self, *args):
            pass

    @contextlib.contextmanager
    def serving():
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}/clip.avi"
        finally:
            release.set()
            server.shutdown()
    return serving()


@pytest.mark.slow
def test_a_stalled_stream_is_said_and_not_taken_for_its_end(trained, tmp_path):
    """A stream that stops sending used to print nothing for 30 s and exit 0 as if it had ended.
    Now: after --stall seconds without a frame, the summary of what arrived, then one error line
    and exit status 2; the counts add up (read = scored + without a face + dropped)."""
    video = write_video(tmp_path / "clip.avi", 60, 10)
    with _stalling_stream(video, 0.5) as url:
        started = time.perf_counter()
        code, lines, err, _ = run_watch(trained, url, "--stall", "2")
        waited = time.perf_counter() - started
    summary = lines[-1]
    assert code == 2 and len(errors_of(err)) == 1 and "stalled" in err and url in err, err
    assert summary["summary"] and summary["stalled"] and summary["scored"] >= 1
    assert summary["read"] == summary["scored"] + summary["no_face"] + summary["dropped"]
    assert waited < 20  # the stall is said after 2 s (plus start-up), not after FFmpeg's 30 s


@pytest.mark.slow
def test_a_bad_source_is_said_before_the_model_loads(trained, tmp_path):
    """A missing file took 5-6 s to report because the model loaded first: the source is opened first
    now, so even an unloadable model file is not looked at."""
    broken = tmp_path / "broken.keras"
    broken.write_text("not a model")
    code, out, err = run_cli(trained, "watch", str(tmp_path / "missing.mp4"), "--model", str(broken))
    assert code == 2 and out == "" and "no such video file" in err and "broken.keras" not in err


@pytest.mark.slow
def test_frames_without_a_face_give_no_verdict_and_the_counts_add_up(trained, media, tmp_path):
    """A scene with no face was scored whole and labelled Fake 0.975; now a frame without a face is
    left out of the verdict, and a stream without any face ends with no verdict."""
    background = cv2.imread(str(media["no_face"]))
    video = tmp_path / "empty_room.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, background.shape[1::-1])
    for _ in range(15):
        writer.write(background)
    writer.release()
    code, lines, err, _ = run_watch(trained, str(video))
    *verdicts, summary = lines
    assert code == 0, err
    assert summary["scored"] == 0 and summary["no_face"] >= 1 and summary["p_fake"] is None
    assert summary["label"] is None and summary["read"] == summary["no_face"] + summary["dropped"] == 15
    assert verdicts and all(v["label"] is None and v["frame_p_fake"] is None for v in verdicts)
    code, out, _ = run_cli(trained, "watch", str(video))
    assert code == 0 and "no face: no verdict" in out and "no face in any frame: no verdict" in out
