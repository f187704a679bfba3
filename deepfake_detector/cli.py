"""The ``deepfake-detector`` command: ``deepfake-detector predict PATH...`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__, entrypoint, paths
from .files import atomic_open

FORMATS = ("table", "json", "csv")


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _margin(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 2.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 2], got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    from .faces import DEFAULT_MARGIN
    from .inference import MAX_PIXELS

    top = argparse.ArgumentParser(prog="deepfake-detector",
                                  description="Score images and videos with a trained real-vs-fake face "
                                              "detector (scores are P(fake); Real = 0, Fake = 1).")
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = commands.add_parser(
        "predict", help="score image files, folders (recursively) and videos",
        description="Score images (JPEG, PNG, WebP, BMP), folders (recursively) and videos (mp4, mov, avi, "
                    "webm). One row per scored face, one verdict row per file, one error row per file "
                    "that cannot be scored. Exit status 0 if any file was scored, 2 if none was.")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image, video or folder")
    predict.add_argument("--model", default=paths.MODEL, type=Path,
                         help="trained model file (default: %(default)s)")
    predict.add_argument("--format", choices=FORMATS,
                         help="output format (default: from --output's suffix, else table)")
    predict.add_argument("--output", type=Path, metavar="FILE",
                         help="write the result here (atomically) instead of standard output")
    predict.add_argument("--no-detect", action="store_true",
                         help="the inputs are already face crops (like the training data): score each "
                              "whole image, no face detection")
    predict.add_argument("--margin", type=_margin, default=DEFAULT_MARGIN,
                         help="face box side added on each side of a detected face, so the crop looks "
                              "like the training crops (default: %(default)s)")
    predict.add_argument("--fps", type=_positive(float), default=1.0,
                         help="video frames sampled per second (default: %(default)s)")
    predict.add_argument("--top-k", type=_positive(int), default=5,
                         help="a video's verdict also reports the mean of its K most suspicious frames "
                              "(default: %(default)s)")
    predict.add_argument("--threshold", type=_probability,
                         help="decision threshold on P(fake); default: the one evaluate chose on "
                              "Validation for this very model file")
    predict.add_argument("--batch-size", type=_positive(int), default=64,
                         help="images per model call (default: %(default)s)")
    predict.add_argument("--max-pixels", type=_positive(int), default=MAX_PIXELS,
                         help="larger images and video frames are refused unread (default: %(default)s)")
    predict.set_defaults(run=run_predict)
    return top


def run_predict(args: argparse.Namespace) -> int:
    from . import faces, inference, predict

    suffix = args.output.suffix.lstrip(".").lower() if args.output else ""
    fmt = args.format or (suffix if suffix in FORMATS else "table")
    scorer = inference.Scorer.load(args.model)
    threshold = args.threshold if args.threshold is not None else inference.read_threshold(scorer)
    options = predict.Options(threshold=threshold, finder=None if args.no_detect else faces.FaceFinder(),
                              margin=args.margin, fps=args.fps, top_k=args.top_k,
                              max_pixels=args.max_pixels, batch_size=args.batch_size)
    rows = predict.predict(args.paths, scorer, options)
    header = {"model": str(args.model), "model_sha256": scorer.sha256, "threshold": threshold,
              "threshold_from": "--threshold" if args.threshold is not None else str(
                  inference.threshold_path(args.model))}
    text = predict.render(rows, fmt, header)
    if args.output:
        with atomic_open(args.output, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    files = {row["file"] for row in rows}
    scored = sum(row["kind"] == "file" for row in rows)
    print(f"{scored} of {len(files)} files scored, {len(files) - scored} with errors", file=sys.stderr)
    return 0 if scored else 2


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    entrypoint.run(lambda: sys.exit(args.run(args)))


if __name__ == "__main__":
    main()
