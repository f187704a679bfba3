"""Metrics, threshold and curves against values worked out by hand (Fake = 1 is positive)."""

from __future__ import annotations

import numpy as np
import pytest

from deepfake_detector.evaluation import metrics as evaluation


def test_threshold_maximises_balanced_accuracy_on_the_given_split():
    labels = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.5, 0.9])
    # cut 0.5 → TPR 1, FPR 1/4 → 0.875; cut 0.9 → 0.75; cut 0.6 → 0.5 + 0.375 = 0.625 (worse);
    # any cut in (0.3, 0.5] does as well as 0.5, and the midpoint keeps a margin to both
    assert evaluation.choose_threshold(labels, scores) == pytest.approx(0.4)


def test_summary_counts_fake_as_positive():
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.2, 0.7, 0.8, 0.4, 0.9])
    summary = evaluation.summarize(labels, scores, threshold=0.5)
    assert summary["confusion"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}
    assert summary["recall"] == pytest.approx(2 / 3)
    assert summary["precision"] == pytest.approx(2 / 3)
    assert summary["n_real"] == 2 and summary["n_fake"] == 3
    assert summary["accuracy_at_0_5"] == pytest.approx(3 / 5)
    assert summary["roc_auc"] == pytest.approx(5 / 6)


def test_equal_error_rate_of_a_perfect_and_a_reversed_detector():
    labels = np.array([0, 0, 1, 1])
    assert evaluation.equal_error_rate(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    assert evaluation.equal_error_rate(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 1.0


def test_equal_error_rate_where_the_rates_cross():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 5000)
    scores = np.concatenate([rng.normal(0, 1, 5000), rng.normal(2, 1, 5000)])
    # two unit Gaussians 2 apart cross at 1: EER = P(N(0,1) > 1) ≈ 0.1587
    assert evaluation.equal_error_rate(labels, scores) == pytest.approx(0.1587, abs=0.01)


def test_curves_are_thinned_and_keep_their_ends():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 5000)
    scores = np.clip(labels * 0.3 + rng.random(5000) * 0.7, 0, 1)
    roc = evaluation.roc_points(labels, scores, max_points=50)
    assert len(roc) <= 50
    assert (roc[0]["fpr"], roc[0]["tpr"]) == (0.0, 0.0) and (roc[-1]["fpr"], roc[-1]["tpr"]) == (1.0, 1.0)
    assert len(evaluation.pr_points(labels, scores, max_points=50)) <= 50


def test_confusion_rows_use_class_names():
    rows = evaluation.confusion_rows(np.array([0, 1]), np.array([0.9, 0.9]), 0.5)
    assert rows == [{"actual": "Real", "predicted": "Fake"}, {"actual": "Fake", "predicted": "Fake"}]
