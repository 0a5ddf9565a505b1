"""Shares: policy vs all-units, Wilson intervals against hand-computed values, adjusted
classify-and-count where the right answer is known, and the held-out measurement of share error."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.shares import (ShareSettings, Summary, adjust, adjusted_interval, measure_quantification,
                             misclassification_matrix, to_policy, wilson)

IDS = ["economy", "ecology", "other"]


def test_wilson_matches_hand_computed_values() -> None:
    # z = 1.959964; 5/20: centre (0.25 + z²/40) / (1 + z²/20) = 0.29028, half-width 0.17842
    low, high = wilson([5, 0, 10, 0], [20, 10, 10, 0])
    assert low[:3] == pytest.approx([0.1119, 0.0, 0.7225], abs=1e-4)
    assert high[:3] == pytest.approx([0.4687, 0.2775, 1.0], abs=1e-4)
    assert np.isnan(low[3]) and np.isnan(high[3])  # no units: no interval
    low90, high90 = wilson(5, 20, level=0.90)
    assert low90 > low[0] and high90 < high[0]


def test_policy_shares_leave_other_out() -> None:
    assert to_policy(np.array([0.3, 0.2, 0.5]), IDS) == pytest.approx([0.6, 0.4])
    assert to_policy(np.array([0.0, 0.0, 1.0]), IDS) == pytest.approx([0.0, 0.0])  # all `other`: no policy content


def test_misclassification_matrix_columns_are_gold_domains() -> None:
    confusion = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])  # C[true, pred]; `other` never gold
    m = misclassification_matrix(confusion)
    assert m[:, 0] == pytest.approx([0.8, 0.2, 0.0])  # P(pred | true = economy)
    assert m[:, 1] == pytest.approx([0.1, 0.9, 0.0])
    assert m[:, 2] == pytest.approx([0.0, 0.0, 1.0])  # no evidence: identity
    stack = misclassification_matrix(np.stack([confusion, confusion]))
    assert stack.shape == (2, 3, 3) and stack[1] == pytest.approx(m)


def test_adjustment_recovers_known_shares() -> None:
    truth = np.array([0.5, 0.3, 0.2])
    m = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.2], [0.1, 0.1, 0.7]])
    observed = m @ truth  # what a classifier with these confusions reports on average
    assert adjust(observed, m) == pytest.approx(truth, abs=1e-9)
    assert adjust(observed * 250, m) == pytest.approx(truth, abs=1e-9)  # counts work as well as shares
    # observed shares no true shares could produce: the closest point on the simplex, never negative
    p = adjust(np.array([0.02, 0.9, 0.08]), m)
    assert (p >= 0).all() and p.sum() == pytest.approx(1.0) and p[0] == 0.0


def test_adjusted_interval_covers_truth_and_is_reproducible() -> None:
    truth = np.array([0.5, 0.3, 0.2])
    confusion = np.array([[160, 20, 20], [10, 80, 10], [10, 20, 70]])  # C[true, pred]
    m = misclassification_matrix(confusion)
    counts = np.round(m @ truth * 2000)
    settings = ShareSettings(adjusted_bootstrap=300)
    low, high = adjusted_interval(counts, confusion, IDS, settings, "doc-a")
    policy_truth = to_policy(truth, IDS)
    assert (low <= policy_truth).all() and (policy_truth <= high).all()
    again = adjusted_interval(counts, confusion, IDS, settings, "doc-a")
    assert low == pytest.approx(again[0]) and high == pytest.approx(again[1])  # seeded by the document id


def test_summary_columns_and_intervals() -> None:
    rows = pd.DataFrame({"doc": ["a"] * 10, "year": ["2024"] * 10, "text": ["加强生态保护修复。"] * 10,
                         "domain": ["ecology"] * 4 + ["economy"] * 2 + ["other"] * 4})
    confusion = np.array([[9, 1, 0], [1, 9, 0], [0, 1, 9]])
    summary = Summary(IDS, ["year"], ShareSettings(adjusted_bootstrap=50), confusion,
                      cap={"economy": 1, "ecology": 7, "other": None})
    summary.add(rows.iloc[:6])
    summary.add(rows.iloc[6:])  # chunk by chunk
    row = summary.frame().iloc[0]
    assert row["year"] == 2024 and str(summary.frame()["year"].dtype) == "Int64"  # CSV text becomes a number
    assert (row["sentences"], row["policy_sentences"], row["n_other"]) == (10, 6, 4)
    assert row["share_ecology"] == pytest.approx(4 / 6, abs=1e-4) and "share_other" not in row
    assert row["share_all_ecology"] == pytest.approx(0.4) and row["share_all_other"] == pytest.approx(0.4)
    low, high = wilson(4, 6)
    assert (row["share_ecology_low"], row["share_ecology_high"]) == pytest.approx((float(low), float(high)), abs=1e-4)
    assert row["adj_share_ecology_low"] <= row["adj_share_ecology"] <= row["adj_share_ecology_high"]
    assert row["char_share_ecology_low"] <= row["char_share_ecology"] <= row["char_share_ecology_high"]
    assert row["cap_share_7"] == pytest.approx(4 / 6, abs=1e-4) and row["cap_unmapped"] == 0.0


def _oof(confused: float, docs: int = 4, seed: int = 0) -> pd.DataFrame:
    """Made-up out-of-fold rows: in every document a share `confused` of gold `economy` is predicted
    `ecology` (a classifier's steady confusion), everything else right."""
    rng = np.random.default_rng(seed)
    parts = []
    for d in range(docs):
        gold = ["economy"] * (40 + 10 * d) + ["ecology"] * (30 - 5 * d) + ["other"] * 20
        pred = [("ecology" if g == "economy" and rng.random() < confused else g) for g in gold]
        frame = pd.DataFrame({"doc": f"d{d}", "primary": gold, "pred": pred})
        for i in IDS:
            frame[f"p_{i}"] = (frame["pred"] == i).astype(float) * 0.8 + 0.1
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def test_quantification_measurement_zero_for_a_perfect_classifier() -> None:
    result = measure_quantification(_oof(0.0), IDS)
    assert result["share_mae_raw"] == 0.0 and result["share_mae_adjusted"] == 0.0
    assert set(result["per_document"]) == {"d0", "d1", "d2", "d3"}


def test_adjustment_helps_against_a_steady_confusion() -> None:
    result = measure_quantification(_oof(0.3), IDS)
    assert result["share_mae_raw"] > 0.05
    assert result["share_mae_adjusted"] < 0.5 * result["share_mae_raw"]
    assert set(result["methods"]) == {"raw", "adjusted", "probabilistic", "probabilistic_adjusted"}
