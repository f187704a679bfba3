"""The ``deepfake-detector`` command: ``predict PATH...``, ``watch SOURCE``, ``export --format F``,
``serve`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from deepfake_detector import __version__
from deepfake_detector.core import entrypoint
from deepfake_detector.core import paths
from deepfake_detector.core.files import atomic_open

FORMATS = ("table", "json", "csv")


def _number(kind, text: str):
    """``text`` as a finite ``kind``; argparse shows the ArgumentTypeError's words as they are."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if not math.isfinite(value):  # nan compares False with everything: `nan <= 0` lets it through
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _positive(kind):
    def parse(text: str):
        value = _number(kind, text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def _probability(text: str) -> float:
    value = _number(float, text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _margin(text: str) -> float:
    value = _number(float, text)
    if not 0.0 <= value <= 2.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 2], got {text}")
    return value


def _options(*names: str) -> argparse.ArgumentParser:
    """A parent parser of the options several commands share, each written once: ``model``,
    ``threshold``, ``crops`` (--no-detect, --margin), ``video`` (--fps). (serve's --max-pixels default is
    its own, lower one: a server holds other people's uploads.)"""
    from deepfake_detector.apps.faces import DEFAULT_MARGIN
    from deepfake_detector.apps.predict import FPS

    shared = argparse.ArgumentParser(add_help=False)
    for name in names:
        if name == "model":
            shared.add_argument("--model", default=paths.MODEL, type=Path,
                                help="trained model file (default: %(default)s)")
        elif name == "threshold":
            shared.add_argument("--threshold", type=_probability,
                                help="decision threshold on P(fake); default: the one evaluate chose on "
                                     "Validation for this very model file")
        elif name == "crops":
            shared.add_argument("--no-detect", action="store_true",
                                help="the inputs are already face crops (like the training data): score "
                                     "each whole image or frame, no face detection")
            shared.add_argument("--margin", type=_margin, default=DEFAULT_MARGIN,
                                help="face box side added on each side of a detected face, so the crop "
                                     "looks like the training crops (default: %(default)s)")
        elif name == "video":
            shared.add_argument("--fps", type=_positive(float), default=FPS,
                                help="video frames sampled per second (default: %(default)s)")
        else:
            raise KeyError(name)
    return shared


def parser() -> argparse.ArgumentParser:
    from deepfake_detector.apps.predict import TOP_K
    from deepfake_detector.model.inference import BATCH_SIZE, MAX_PIXELS

    top = argparse.ArgumentParser(prog="deepfake-detector",
                                  description="Score images and videos with a trained real-vs-fake face "
                                              "detector (scores are P(fake); Real = 0, Fake = 1).")
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = commands.add_parser(
        "predict", parents=[_options("model", "threshold", "crops", "video")],
        help="score image files, folders (recursively) and videos",
        description="Score images (JPEG, PNG, WebP, BMP, GIF's first frame; not TIFF, HEIC or AVIF: convert "
                    "those to PNG), folders (recursively) and videos (mp4, mov, avi, webm, mkv, m4v). "
                    "One row per scored face, one verdict row per file (no score when no face is found), "
                    "one error row per file that cannot be scored. A model that reads un-resized face "
                    "crops (the real_faces recipe) is never given detected faces: it scores each image "
                    "whole and refuses other sizes. Exit status 0 if any file was scored, 2 if none was.")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image, video or folder")
    predict.add_argument("--format", choices=FORMATS,
                         help="output format (default: from --output's suffix, else table)")
    predict.add_argument("--output", type=Path, metavar="FILE",
                         help="write the result here (atomically) instead of standard output")
    predict.add_argument("--top-k", type=_positive(int), default=TOP_K,
                         help="a video's verdict also reports the mean of its K most suspicious frames "
                              "(default: %(default)s)")
    predict.add_argument("--max-video-seconds", type=_positive(float),
                         help="refuse videos longer than this (default: no limit; memory stays bounded "
                              "either way)")
    predict.add_argument("--batch-size", type=_positive(int), default=BATCH_SIZE,
                         help="images per model call (default: %(default)s)")
    predict.add_argument("--max-pixels", type=_positive(int), default=MAX_PIXELS,
                         help="larger images and video frames are refused unread (default: %(default)s)")
    predict.add_argument("--explain", type=Path, metavar="DIR",
                         help="also write a Grad-CAM heatmap over each scored crop to DIR as a PNG "
                              "(where the model found evidence for the crop's label), listed in "
                              "DIR/explain.csv")
    predict.set_defaults(run=run_predict)
    _watch_parser(commands)
    _export_parser(commands)
    _serve_parser(commands)
    return top


def _watch_parser(commands) -> None:
    watch = commands.add_parser(
        "watch", parents=[_options("model", "threshold", "crops")],
        help="score the faces in a live video stream as frames arrive",
        description="Score the faces of a camera, video file or stream as its frames arrive, and print "
                    "a rolling verdict. Frames that arrive while one is being scored are dropped, never "
                    "queued; a video file is read at its own frame rate, as a camera delivers frames. "
                    "Ctrl-C stops (the recording is kept).")
    watch.add_argument("source", metavar="SOURCE",
                       help="camera index (0), video file, or stream URL (rtsp://..., http://...)")
    watch.add_argument("--window", type=_positive(float), default=2.0,
                       help="seconds of stream the rolling verdict averages over (default: %(default)s)")
    watch.add_argument("--interval", type=_positive(float), default=1.0,
                       help="seconds of stream between printed verdicts (default: %(default)s)")
    watch.add_argument("--seconds", type=_positive(float), help="stop after this many seconds of stream")
    watch.add_argument("--stall", type=_positive(float), default=10.0,
                       help="a camera or stream that sends no frame for this many seconds has stalled: watch "
                            "prints its summary and ends with exit status 2 (default: %(default)s)")
    watch.add_argument("--show-fps", action="store_true", help="print the scored frames per second achieved")
    watch.add_argument("--record", type=Path, metavar="OUT.mp4",
                       help="write the annotated stream here (mp4, at the source's frame rate; atomically)")
    watch.add_argument("--format", choices=("text", "json"), default="text",
                       help="verdict lines as text, or as JSON objects, one per line (default: %(default)s)")
    watch.add_argument("--detect-every", type=_positive(int), default=5,
                       help="search the whole frame for faces (on a second thread) at most every N frames; "
                            "on every frame, the faces known are followed (default: %(default)s)")
    watch.set_defaults(run=run_watch)


def _export_parser(commands) -> None:
    from deepfake_detector.apps.export import FORMATS

    export = commands.add_parser(
        "export", parents=[_options("model")],
        help="write the model as a SavedModel (TF Serving), TFLite (float16) or ONNX file",
        description="Export the trained model for another runtime, load it back with that runtime and "
                    "check its scores against the Keras model's on --check-count images (the first "
                    "Validation records, or --check-images): the export is written only if they match "
                    "within the format's tolerance. Input 'image': float32 [n, size, size, 3], RGB in "
                    "[0, 255]; output 'p_fake': float32 [n].")
    export.add_argument("--format", choices=FORMATS, required=True, help="what to write")
    export.add_argument("--output", type=Path, metavar="PATH",
                        help="where to write (default: the model's path with .savedmodel, .tflite or .onnx)")
    export.add_argument("--check-images", type=Path, nargs="+", metavar="PATH",
                        help="images or folders to check the export on (default: the first Validation "
                             f"records in {paths.PROCESSED})")
    export.add_argument("--check-count", type=_positive(int), default=100,
                        help="images the check scores (default: %(default)s)")
    export.set_defaults(run=run_export)


def _serve_parser(commands) -> None:
    from deepfake_detector.apps.serve import Limits

    serve = commands.add_parser(
        "serve", parents=[_options("model", "threshold", "video")],
        help="a web page and HTTP API that score uploaded images and videos",
        description="Serve a web page (/) where a person drops an image or a video and sees each face's "
                    "P(fake) and the verdict, and an HTTP API (POST /api/predict returns the rows of "
                    "`predict --format json`; GET /api/health; schema at /openapi.json). One inference "
                    "worker; requests past --queue get 503; an upload that stalls or is too slow gets "
                    "408. Ctrl-C or SIGTERM stops.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: %(default)s, this machine only; see the README "
                            "before using another)")
    serve.add_argument("--port", type=_positive(int), default=8000, help="TCP port (default: %(default)s)")
    serve.add_argument("--max-upload-mb", type=_positive(float), default=Limits.upload_bytes / 2**20,
                       help="largest upload accepted, MiB (default: %(default)g)")
    serve.add_argument("--max-pixels", type=_positive(int), default=Limits.pixels,
                       help="larger images and video frames are refused unread (default: %(default)s)")
    serve.add_argument("--max-video-seconds", type=_positive(float), default=Limits.video_seconds,
                       help="longer videos are refused (default: %(default)g)")
    serve.add_argument("--queue", type=_positive(int), default=Limits.queue,
                       help="requests accepted at once (uploading, waiting or being scored); more get "
                            "503 (default: %(default)s)")
    serve.add_argument("--read-timeout", type=_positive(float), default=Limits.read_seconds,
                       metavar="SECONDS",
                       help="an upload that sends nothing for this long is cut with 408, freeing its "
                            "--queue slot (default: %(default)g)")
    serve.add_argument("--upload-timeout", type=_positive(float), default=Limits.upload_seconds,
                       metavar="SECONDS",
                       help="a whole upload must arrive within this long, else 408 (default: %(default)g, "
                            "50 MiB at ~3.5 Mbit/s)")
    serve.set_defaults(run=run_serve)


def _warn_about(scorer) -> None:
    """predict, watch and serve say it once, on stderr, when the model's scores mean nothing on real
    photos (it learned from the generated sample)."""
    from deepfake_detector.model import inference

    warning = inference.provenance_warning(scorer)
    if warning:
        print(warning, file=sys.stderr)


def run_predict(args: argparse.Namespace) -> int:
    from deepfake_detector.apps import faces
    from deepfake_detector.model import inference
    from deepfake_detector.apps import predict

    suffix = args.output.suffix.lstrip(".").lower() if args.output else ""
    fmt = args.format or (suffix if suffix in FORMATS else "table")
    scorer, threshold = inference.load_scorer(args.model, args.threshold)
    _warn_about(scorer)
    if scorer.native_only and not args.no_detect:
        print(f"note: {inference.native_rule(scorer)}", file=sys.stderr)
    options = predict.Options(threshold=threshold, finder=None if args.no_detect else faces.FaceFinder(),
                              margin=args.margin, fps=args.fps, top_k=args.top_k,
                              max_pixels=args.max_pixels, batch_size=args.batch_size,
                              max_seconds=args.max_video_seconds)
    if args.explain:
        from deepfake_detector.apps.explain import Writer

        options.explain = Writer(scorer, args.explain, threshold, args.batch_size)
    rows = predict.predict(args.paths, scorer, options)
    header = predict.json_header(scorer, threshold, args.threshold is not None)
    text = predict.render(rows, fmt, header)
    if args.output:
        with atomic_open(args.output, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    files = {row["file"] for row in rows}
    scored = sum(row["kind"] == "file" for row in rows)
    print(f"{scored} of {len(files)} files scored, {len(files) - scored} with errors", file=sys.stderr)
    validation = header["validation"]
    if validation:  # what the verdicts above are worth, for whoever reads the table
        print(f"{scorer.path} on its own Validation split: ROC-AUC {validation['roc_auc']:.4f}, balanced "
              f"accuracy {validation['balanced_accuracy']:.4f} ({validation['n_real']} real, "
              f"{validation['n_fake']} fake images)", file=sys.stderr)
    if args.explain:
        print(f"{len(options.explain.rows)} heatmaps in {args.explain}, listed in "
              f"{args.explain / 'explain.csv'}", file=sys.stderr)
    return 0 if scored else 2


def run_watch(args: argparse.Namespace) -> int:
    from deepfake_detector.apps import faces
    from deepfake_detector.apps import watch
    from deepfake_detector.model import inference

    source = watch.open_source(args.source)  # a wrong SOURCE is said before the model loads
    try:
        scorer, threshold = inference.load_scorer(args.model, args.threshold)
    except BaseException:
        source.capture.release()
        raise
    _warn_about(scorer)
    finder = None if args.no_detect else faces.FaceTracker(every=args.detect_every, background=True)
    options = watch.Options(threshold=threshold, finder=finder, margin=args.margin, window=args.window,
                            interval=args.interval, seconds=args.seconds, record=args.record,
                            show_fps=args.show_fps, format=args.format, stall=args.stall)
    try:
        watch.watch(source, scorer, options, sys.stdout)
    finally:
        if finder is not None:
            finder.close()
    return 0


def run_export(args: argparse.Namespace) -> int:
    from deepfake_detector.apps import export
    from deepfake_detector.model import inference

    output = args.output or export.default_output(args.model, args.format)
    entrypoint.load_tensorflow()  # quietly, before tf2onnx imports it
    if args.format == "onnx":
        export.require_onnx()  # a missing package fails before the model loads
    scorer = inference.Scorer.load(args.model)
    images, source = export.check_images(scorer, args.check_images, args.check_count, paths.PROCESSED)
    report = export.export(scorer, args.format, output, images)
    check = report["check"]
    print(f"wrote {output} ({args.format}, {report['size_bytes'] / 2**20:.1f} MiB); on {source} its P(fake) "
          f"differs from the Keras model's by at most {check['max_abs_difference']:.2g} "
          f"(tolerance {check['tolerance']:g})", file=sys.stderr)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from deepfake_detector.apps import serve
    from deepfake_detector.apps import webapp

    limits = serve.Limits(upload_bytes=int(args.max_upload_mb * 2**20), pixels=args.max_pixels,
                          video_seconds=args.max_video_seconds, queue=args.queue,
                          read_seconds=args.read_timeout, upload_seconds=args.upload_timeout)
    sock = webapp.listen(args.host, args.port)  # a port in use is said at once, before the model loads
    try:
        service = serve.Service(args.model, args.threshold, limits, fps=args.fps)
    except BaseException:
        sock.close()
        raise
    where = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}/"
    print(f"serving {args.model} (threshold {service.threshold:.4f}) at {where}; Ctrl-C stops",
          file=sys.stderr)
    _warn_about(service.scorer)
    if args.host not in webapp.LOOPBACK:
        print(f"warning: listening on {args.host}: anyone who can reach this port can upload files and use "
              "this machine's CPU (no login, no TLS); see the README", file=sys.stderr)
    webapp.run(service, args.host, sock)
    return 0


def main(argv: list[str] | None = None) -> None:
    # C++ errors too: every file TensorFlow or OpenCV can't read is a row or a line in our own words
    entrypoint.quiet_libraries(tf_level="3")
    args = parser().parse_args(argv)
    entrypoint.run(lambda: sys.exit(args.run(args)))


if __name__ == "__main__":
    main()
