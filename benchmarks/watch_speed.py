"""How many frames per second `deepfake-detector watch` scores at 640x360 with face detection.

    python benchmarks/watch_speed.py [--model M] [--seconds 20] [--fps 30]

Writes a 640x360 video at ``--fps`` of two faces moving over a cluttered background (real faces
from /work/shared/data/faces140k-sample.zip when it exists, else matplotlib's portrait) and runs
``watch.watch`` on it, read at its real frame rate as a camera would deliver it. Goal: >= 15 scored
frames/s. The model is ``--model``, else the model of params.yaml built untrained (speed does not
depend on the weights). Measured in one process, so every figure has its reference from the same run:

* ``bare_predict_on_batch_frames_per_second``: ``model.predict_on_batch`` on ready float32 batches of
  two crops (one frame's faces): the model's own rate, the reference of issue 14;
* ``runs``: watch as the command runs it (whole-frame face searches on a second thread at most
  every 5 frames, the faces known followed on every frame), the same with ``--record``, and, for
  comparison, with the whole-frame search in the scoring loop every 5 frames and on every frame:
  scored frames/s, dropped frames, and the ratio to the bare rate measured just before each run;
  and watch's capacity, its defaults on the same frames delivered at 120 fps (faster than it
  scores), where a 30 fps source caps the others;
* ``stage_ms``: median wall ms of each step on one frame (whole-frame search, following known
  faces, cropping, scoring two crops), and the CPU ms of the whole-frame search.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import emit, machine, median_seconds, ratio_to, untrained_model

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
REAL_FACES = Path("/work/shared/data/faces140k-sample.zip")
FAST_FPS = 120  # a source faster than watch can score: its scored frames/s is watch's capacity


def face_pictures() -> tuple[list[np.ndarray], str]:
    """Two RGB face crops (real FFHQ faces when the shared sample exists)."""
    if REAL_FACES.exists():
        from benchmarks.face_detectors import load_faces

        return load_faces(2, 3), "faces140k-sample"
    from matplotlib import cbook

    portrait = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return [cv2.cvtColor(portrait, cv2.COLOR_BGR2RGB)] * 2, "grace_hopper.jpg"


def write_video(path: Path, pictures, seconds: float, fps: float) -> None:
    """Two faces (160 and 110 px) on a cluttered 640x360 background, the larger one moving."""
    from benchmarks.face_detectors import background

    canvas = cv2.cvtColor(background(np.random.default_rng(0), 640, 360), cv2.COLOR_RGB2BGR)
    big, small = (cv2.cvtColor(cv2.resize(p, (s, s), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
                  for p, s in zip(pictures, (160, 110)))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 360))
    for i in range(int(seconds * fps)):
        frame = canvas.copy()
        x = int(240 + 180 * np.sin(i / fps))
        frame[100:260, x:x + 160] = big
        frame[40:150, 30:140] = small
        writer.write(frame)
    writer.release()


def median_ms(fn, repeats: int = 30) -> float:
    return round(median_seconds(fn, repeats) * 1e3, 2)


def main() -> None:
    train = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path,
                        help="a trained model file (default: params.yaml's model, untrained)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()

    from deepfake_detector.apps import faces
    from deepfake_detector.model import inference
    from deepfake_detector.apps import watch

    work = Path(tempfile.mkdtemp(prefix="watch_speed."))
    model_path = args.model
    if model_path is None:
        model_path = untrained_model(work, train["model"], train["image_size"])
    scorer = inference.Scorer.load(model_path)
    size = scorer.image_size
    pictures, source = face_pictures()
    video, fast = work / "scene.mp4", work / "scene_fast.mp4"
    write_video(video, pictures, args.seconds, args.fps)
    write_video(fast, pictures, args.seconds * args.fps / FAST_FPS, FAST_FPS)  # as many frames, faster
    load_before = os.getloadavg()[0]

    two = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    floats = two.astype(np.float32)
    scorer.model.predict_on_batch(floats)
    bare_ms = median_ms(lambda: scorer.model.predict_on_batch(floats), 50)

    capture = cv2.VideoCapture(str(video))
    frame = cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB)
    capture.release()
    finder, tracker = faces.FaceFinder(), faces.FaceTracker(every=10**9)
    tracker.boxes(frame)  # the first call searches the whole frame; the rest follow
    cpu = []
    for _ in range(15):
        started = time.process_time()
        finder.boxes(frame)
        cpu.append(time.process_time() - started)
    found = inference.crops(frame, finder, faces.DEFAULT_MARGIN, size)
    stage_ms = {
        "whole_frame_face_search": median_ms(lambda: finder.boxes(frame), 15),
        "whole_frame_face_search_cpu": round(statistics.median(cpu) * 1e3, 2),
        "follow_known_faces": median_ms(lambda: tracker.boxes(frame)),
        "crop_and_resize_faces": median_ms(
            lambda: [inference.fit(frame[y:y + h, x:x + w], size) for x, y, w, h in [c.box for c in found]]),
        "score_two_crops": median_ms(lambda: scorer.score(np.stack([c.pixels for c in found]))),
        "bare_predict_on_batch_two_crops": bare_ms,
    }

    def bare_rate() -> dict:  # the reference, measured again just before each run (A, B, A, B ...)
        return {"items_per_second": 1e3 / median_ms(lambda: scorer.model.predict_on_batch(floats), 50)}

    runs = {}
    for name, every, background, record, frames in (
            ("default", 5, True, False, video), ("default_with_record", 5, True, True, video),
            ("search_in_the_loop_every_5", 5, False, False, video),
            ("search_in_the_loop_every_frame", 1, False, False, video),
            (f"default_source_at_{FAST_FPS}_fps", 5, True, False, fast)):
        reference = bare_rate()
        tracker = faces.FaceTracker(every=every, background=background)
        options = watch.Options(threshold=0.5, finder=tracker, margin=faces.DEFAULT_MARGIN,
                                record=work / f"{name}.mp4" if record else None, format="json")
        summary = watch.watch(str(frames), scorer, options, io.StringIO())
        tracker.close()
        runs[name] = {"scored_frames_per_second": summary["scored_per_second"], "read": summary["read"],
                      "scored": summary["scored"], "dropped": summary["dropped"],
                      **ratio_to([reference], [{"items_per_second": summary["scored_per_second"]}],
                                 "the model's bare predict_on_batch on two crops, just before",
                                 reference_key="items_per_second")}
        print(f"{name}: {runs[name]}", file=sys.stderr)

    emit({
        "model": scorer.meta.model, "image_size": size, "trained_model": args.model is not None,
        "video": {"width": 640, "height": 360, "fps": args.fps, "seconds": args.seconds, "faces": 2,
                  "face_source": source},
        "machine": machine(),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "goal_scored_frames_per_second": 15,
        "bare_predict_on_batch_frames_per_second": round(1e3 / bare_ms, 1),
        "runs": runs,
        "stage_ms": stage_ms,
    })


if __name__ == "__main__":
    main()
