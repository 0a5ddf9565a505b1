"""Multi-label domains: ranking, label sets, label-set F1, the threshold search and the `domains`
field that classify writes from the threshold shipped with the model."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.classify import run_batch
from pipeline.heldout import HeldOut, read_heldout, write_heldout
from pipeline.io import read_table
from pipeline.multilabel import label_sets, measure, ranked, select_threshold, set_f1
from pipeline.taxonomy import domain_ids

IDS = ["economy", "ecology", "education", "other"]


def test_ranked_keeps_the_ids_order_on_ties() -> None:
    names, scores = ranked(np.array([[0.1, 0.4, 0.4, 0.1]]), IDS)
    assert list(names[0]) == ["ecology", "education", "economy"] and list(scores[0]) == [0.4, 0.4, 0.1]


def test_label_sets_add_runners_up_above_the_threshold() -> None:
    names, scores = ranked(np.array([[0.6, 0.25, 0.1, 0.05], [0.9, 0.05, 0.03, 0.02]]), IDS)
    assert label_sets(names, scores, 0.2) == ["economy|ecology", "economy"]
    assert label_sets(names, scores, 0.05) == ["economy|ecology|education", "economy|ecology"]
    assert label_sets(names, scores, None) == ["economy", "economy"]


def test_set_f1_is_example_based() -> None:
    assert set_f1([["a"]], [["a", "b"]]) == pytest.approx(2 / 3)
    assert set_f1([["a", "b"], ["c"]], [["a", "b"], ["d"]]) == pytest.approx(0.5)


def test_threshold_search_prefers_fewer_labels_on_a_tie() -> None:
    names, scores = ranked(np.array([[0.6, 0.3, 0.05, 0.05]] * 2), IDS)
    gold = [["economy", "ecology"], ["economy", "ecology"]]
    threshold, f1 = select_threshold(names, scores, gold, [0.1, 0.2, 0.3, 0.5])
    assert threshold == 0.3 and f1 == 1.0  # 0.1, 0.2 and 0.3 are all perfect: the highest wins


def test_measure_is_nested_and_reports_the_primary_only_baseline() -> None:
    rows = []
    for doc in ("a", "b", "c"):
        rows += [{"doc": doc, "p_economy": 0.6, "p_ecology": 0.35, "p_education": 0.03, "p_other": 0.02,
                  "domains": ["economy", "ecology"]},
                 {"doc": doc, "p_economy": 0.8, "p_ecology": 0.1, "p_education": 0.05, "p_other": 0.05,
                  "domains": ["economy"]}]
    result = measure(pd.DataFrame(rows), IDS, [0.05, 0.2, 0.4])
    assert result["secondary_threshold"] == 0.2 and result["label_set_f1"] == 1.0
    assert result["label_set_f1_primary_only"] == pytest.approx((2 / 3 + 1) / 2, abs=1e-4)
    assert set(result["per_document"]) == {"a", "b", "c"}


@pytest.mark.parametrize("threshold, most", [(0.0, 3), (1.01, 1)])
def test_classify_writes_the_domains_field(threshold: float, most: int, tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    ids = domain_ids()
    write_heldout(HeldOut(tuple(ids), np.eye(len(ids)) * 5, threshold, {}), model_dir)
    assert read_heldout(model_dir).secondary_threshold == threshold
    (tmp_path / "r.txt").write_text("加强生态保护修复。发展先进制造业集群。办好人民满意的教育。", encoding="utf-8")
    run_batch([tmp_path / "r.txt"], tmp_path / "o.csv", model_dir=model_dir)
    rows = read_table(tmp_path / "o.csv")
    sets = rows["domains"].str.split("|")
    assert (sets.map(len) == most).all() and (sets.str[0] == rows["domain"]).all()
    if most == 3:
        assert (sets.str[1] == rows["domain_2"]).all() and (sets.str[2] == rows["domain_3"]).all()
    assert (rows["score_2"] >= rows["score_3"]).all() and (rows["confidence"] >= rows["score_2"]).all()
