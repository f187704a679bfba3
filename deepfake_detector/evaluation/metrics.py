"""Scores → metrics, the decision threshold, and plots. Fake = 1 is the positive class throughout.

The threshold is chosen on Validation only (maximum balanced accuracy) and then applied, unchanged,
to Test, which is only ever scored. Every number comes from scikit-learn.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from deepfake_detector import CLASS_NAMES


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score cut (predict Fake when score >= cut) with the best balanced accuracy.

    Every cut between the best-scoring validation score and the next lower one gives the same
    validation result; the midpoint leaves a margin on both sides instead of sitting on one image.
    """
    fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    balanced = (tpr + 1 - fpr) / 2
    best = int(np.argmax(balanced[1:])) + 1  # thresholds[0] is +inf: "never say fake"
    if best + 1 < len(thresholds):
        return float((thresholds[best] + thresholds[best + 1]) / 2)
    return float(thresholds[best])


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """Where the false-positive rate meets the false-negative rate (interpolated on the ROC)."""
    fpr, tpr, _ = skm.roc_curve(labels, scores)
    fnr = 1 - tpr
    i = int(np.argmax(fnr <= fpr))  # first point where the curves have crossed
    if i == 0:
        return float((fpr[0] + fnr[0]) / 2)
    # linear interpolation between points i-1 and i of (fpr - fnr), which changes sign there
    d0, d1 = fpr[i - 1] - fnr[i - 1], fpr[i] - fnr[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def summarize(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=float)
    predicted = (scores >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    both = len(np.unique(labels)) == 2
    return {
        "roc_auc": float(skm.roc_auc_score(labels, scores)) if both else None,
        "average_precision": float(skm.average_precision_score(labels, scores)) if both else None,
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, predicted)),
        "precision": float(skm.precision_score(labels, predicted, zero_division=0)),
        "recall": float(skm.recall_score(labels, predicted, zero_division=0)),
        "f1": float(skm.f1_score(labels, predicted, zero_division=0)),
        "eer": equal_error_rate(labels, scores) if both else None,
        "log_loss": float(skm.log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "accuracy_at_0_5": float(skm.accuracy_score(labels, (scores >= 0.5).astype(int))),
        "n_real": int((labels == 0).sum()),
        "n_fake": int((labels == 1).sum()),
        "ece": expected_calibration_error(labels, scores),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }


CALIBRATION_BINS = 10


def _calibration(labels, scores, bins: int):
    """(fraction fake, mean P(fake), images) per non-empty bin of equal width: sklearn's
    calibration_curve, plus the bin counts it leaves out (with its own binning)."""
    from sklearn.calibration import calibration_curve

    scores = np.asarray(scores, dtype=float)
    fraction, mean_score = calibration_curve(labels, scores, n_bins=bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], scores), minlength=bins)
    return fraction, mean_score, counts[counts > 0]


def expected_calibration_error(labels, scores, bins: int = CALIBRATION_BINS) -> float:
    """ECE: the image-weighted mean gap between P(fake) and the fraction of fakes, over equal-width
    score bins. 0 = a score of 0.8 means 80% fakes; a detector can rank well and still be far off."""
    fraction, mean_score, counts = _calibration(labels, scores, bins)
    return float(np.sum(counts / counts.sum() * np.abs(fraction - mean_score)))


def reliability_points(labels, scores, bins: int = CALIBRATION_BINS) -> list[dict]:
    """The reliability diagram: per non-empty bin, mean P(fake), fraction of fakes, images."""
    fraction, mean_score, counts = _calibration(labels, scores, bins)
    return [{"mean_score": round(float(m), 6), "fraction_fake": round(float(f), 6), "images": int(n)}
            for f, m, n in zip(fraction, mean_score, counts)]


def _thin(rows: list[dict], max_points: int) -> list[dict]:
    if len(rows) <= max_points:
        return rows
    keep = np.unique(np.linspace(0, len(rows) - 1, max_points).round().astype(int))
    return [rows[i] for i in keep]


def roc_points(labels, scores, max_points: int) -> list[dict]:
    fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=True)
    rows = [{"fpr": round(float(f), 6), "tpr": round(float(t), 6),
             "threshold": round(float(min(h, 1.0)), 6)} for f, t, h in zip(fpr, tpr, thresholds)]
    return _thin(rows, max_points)


def pr_points(labels, scores, max_points: int) -> list[dict]:
    precision, recall, thresholds = skm.precision_recall_curve(labels, scores, drop_intermediate=True)
    rows = [{"recall": round(float(r), 6), "precision": round(float(p), 6),
             "threshold": round(float(h), 6)} for p, r, h in zip(precision, recall, [*thresholds, 1.0])]
    return _thin(rows, max_points)


def confusion_rows(labels, scores, threshold: float) -> list[dict]:
    """One row per image, class names as text: what ``dvc plots``' confusion template counts."""
    predicted = (np.asarray(scores) >= threshold).astype(int)
    return [{"actual": CLASS_NAMES[a], "predicted": CLASS_NAMES[p]} for a, p in zip(labels, predicted)]


def save_pngs(curves: dict, confusion: dict, threshold: float, folder) -> None:
    """ROC (validation and test) and the test confusion matrix as PNGs, for people who open files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepfake_detector.core.files import save_figure

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    for split, (labels, scores) in curves.items():
        fpr, tpr, _ = skm.roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{split} (AUC {skm.roc_auc_score(labels, scores):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate (fake caught)",
           title="ROC, Fake = positive")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, folder / "roc.png")

    cells = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=100)
    ax.imshow(cells, cmap="Blues")
    for (row, col), count in np.ndenumerate(cells):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > cells.max() / 2 else "black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES,
           xlabel="predicted", ylabel="actual", title=f"Test, threshold {threshold:.3f}")
    fig.tight_layout()
    save_figure(fig, folder / "confusion_test.png")


def save_reliability_png(curves: dict, folder) -> None:
    """The reliability diagram of each split (``curves``: split -> (labels, scores)) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepfake_detector.core.files import save_figure

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    for split, (labels, scores) in curves.items():
        points = reliability_points(labels, scores)
        ax.plot([p["mean_score"] for p in points], [p["fraction_fake"] for p in points], marker="o",
                label=f"{split} (ECE {expected_calibration_error(labels, scores):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="mean P(fake) in the bin", ylabel="fraction of fakes in the bin", xlim=(0, 1),
           ylim=(0, 1), title="Reliability (perfect calibration: the diagonal)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    save_figure(fig, folder / "reliability.png")
