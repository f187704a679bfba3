"""`make report` (and CI's job summary): this workspace's run against a base revision, in Markdown.

    python -m deepfake_detector.evaluation.report --base main --output report.md

Writes ``report.md`` with `dvc metrics diff <base> --md` and `dvc params diff <base> --md`, and a
folder beside it (``report/``) with the pictures it shows: ROC, the test confusion matrix, training
curves (drawn here from dvclive's per-epoch files), the reliability diagram and the confident
mistakes. The base must be a git revision this clone has (CI fetches main first: a shallow clone has
no main, and `dvc metrics diff main` would fail).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from deepfake_detector.core import entrypoint
from deepfake_detector.core import paths
from deepfake_detector.core.errors import UserError
from deepfake_detector.core.files import atomic_open, save_figure

PICTURES = {  # file in metrics/plots -> its caption
    "roc.png": "ROC (validation, test)",
    "confusion_test.png": "Confusion matrix (test, at the validation threshold)",
    "reliability.png": "Reliability diagram (calibration)",
    "mistakes_test.jpg": "Most confident mistakes (test)",
}
CURVES = "training_curves.png"


def _dvc(*args: str) -> str:
    dvc = Path(sys.executable).with_name("dvc")
    command = [str(dvc) if dvc.exists() else "dvc", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"report: `dvc {' '.join(args)}` failed: {detail}")
    return result.stdout.strip()


def check_base(base: str) -> None:
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        raise UserError(f"report: git revision {base!r} not found in this clone; fetch it first "
                        f"(`git fetch origin {base}:{base}`) or pass another --base")


def save_training_curves(live: Path, dest: Path) -> bool:
    """Loss and ROC-AUC per epoch, train and validation, from dvclive's TSV files; False if none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    folder = live / "plots" / "metrics"
    if not folder.is_dir():
        return False
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=100)
    for ax, metric in zip(axes, ("loss", "auc")):
        for part, name in (("train", "train"), ("eval", "validation")):
            tsv = folder / part / f"{metric}.tsv"
            if tsv.is_file():
                frame = pd.read_csv(tsv, sep="\t")
                ax.plot(frame["step"] + 1, frame[metric], marker="o", label=name)
        ax.set(xlabel="epoch", title={"loss": "loss", "auc": "ROC-AUC"}[metric])
        ax.legend()
    fig.tight_layout()
    save_figure(fig, dest)
    return True


def build(base: str, output: Path) -> Path:
    check_base(base)
    images = output.with_suffix("")  # report.md -> report/
    images.mkdir(parents=True, exist_ok=True)
    lines = [f"# deepfake-detector: this run against `{base}`", "",
             "Conventions: Real = 0, Fake = 1, scores are P(fake); `robustness.*` is Test under a "
             "corruption, `extra.*` other labelled sets, `ece` the calibration error.", "",
             "## Metrics", "",
             _dvc("metrics", "diff", base, "--md") or f"No metric differs from `{base}`.", "",
             "## Params", "", _dvc("params", "diff", base, "--md") or f"No params differ from `{base}`.", ""]
    shown = []
    for name, caption in PICTURES.items():
        source = paths.PLOTS / name
        if source.is_file():
            shutil.copyfile(source, images / name)
            shown.append((name, caption))
    if save_training_curves(paths.TRAIN_LIVE, images / CURVES):
        shown.insert(2, (CURVES, "Training curves (per epoch)"))
    if shown:
        lines += ["## Plots", ""]
        for name, caption in shown:
            lines += [f"### {caption}", "", f"![{caption}]({images.name}/{name})", ""]
    with atomic_open(output) as handle:
        handle.write("\n".join(lines))
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="git revision to compare with (default: main)")
    parser.add_argument("--output", type=Path, default=Path("report.md"), help="the Markdown file")
    args = parser.parse_args(argv)
    print(f"report: {build(args.base, args.output)}")


if __name__ == "__main__":
    entrypoint.run(main)
