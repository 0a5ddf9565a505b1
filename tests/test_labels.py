"""The label validator and merge rule, on deliberately broken files."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from conftest import write_labels
from pipeline import labels
from pipeline.agreement import agreement, cohen_kappa, krippendorff_alpha_nominal
from pipeline.labels import COLUMNS, check


def errors(issues):
    return [str(i) for i in issues if i.level == "error"]


def test_unknown_id_gets_did_you_mean(tmp_path: Path, label_row) -> None:
    write_labels(tmp_path / "annotations" / "a.csv", [label_row("推进生态修复。", "ecolgy")])
    issues, _ = check(tmp_path)
    assert any("a.csv:2" in e and "did you mean 'ecology'" in e for e in errors(issues))


def test_four_ids_rejected(tmp_path: Path, label_row) -> None:
    write_labels(tmp_path / "annotations" / "a.csv", [label_row("某句。", "economy|industry|urban|risk")])
    assert any("at most 3" in e for e in errors(check(tmp_path)[0]))


def test_missing_column_and_no_bom(tmp_path: Path, label_row) -> None:
    write_labels(tmp_path / "annotations" / "a.csv", [label_row("某句。", "economy")], bom=False,
                 columns=[c for c in COLUMNS if c != "annotator"])
    issues, _ = check(tmp_path)
    assert any("missing column(s): annotator" in e for e in errors(issues))
    assert any("no UTF-8 BOM" in str(i) for i in issues)


def test_bom_file_is_clean(tmp_path: Path, label_row) -> None:
    write_labels(tmp_path / "annotations" / "a.csv", [label_row("某句。", "economy")])
    issues, merged = check(tmp_path)
    assert issues == [] and merged.loc[0, "primary"] == "economy"


def test_conflict_needs_adjudication(tmp_path: Path, label_row) -> None:
    write_labels(tmp_path / "annotations" / "a.csv", [label_row("争议句。", "urban", "ann1")])
    write_labels(tmp_path / "annotations" / "b.csv", [label_row("争议句。", "agriculture|urban", "ann2")])
    issues, merged = check(tmp_path)
    assert any("conflicting labels" in e for e in errors(issues)) and merged.empty
    write_labels(tmp_path / "adjudicated.csv", [label_row("争议句。", "agriculture", "judge")])
    issues, merged = check(tmp_path)
    assert errors(issues) == [] and merged.loc[0, "domains"] == ["agriculture"]


def test_agreeing_primaries_merge_secondaries(tmp_path: Path, label_row) -> None:
    write_labels(tmp_path / "annotations" / "a.csv", [label_row("合并句。", "agriculture", "ann1")])
    write_labels(tmp_path / "annotations" / "b.csv", [label_row("合并句。", "agriculture|education", "ann2")])
    _, merged = check(tmp_path)
    assert merged.loc[0, "domains"] == ["agriculture", "education"]


def test_stale_text_is_reported(tmp_path: Path, label_row) -> None:
    write_labels(tmp_path / "annotations" / "a.csv", [label_row("旧的句子。", "economy")])
    units = pd.DataFrame({"text_hash": ["0000000000000000"]})
    assert any("stale" in e for e in errors(check(tmp_path, units)[0]))


def test_duplicate_rows_in_a_file(tmp_path: Path, label_row) -> None:
    write_labels(tmp_path / "annotations" / "a.csv", [label_row("同句。", "economy"), label_row("同句。", "economy")])
    assert any("a.csv:3" in e and "duplicate" in e for e in errors(check(tmp_path)[0]))


def test_agreement_statistics_on_a_hand_checked_case() -> None:
    # two coders, 4 units, agree on 3: po=0.75, pe=(2/4*1/4)+(2/4*3/4)... computed by hand below
    a, b = ["x", "x", "y", "y"], ["x", "x", "y", "x"]
    pe = (2 / 4) * (3 / 4) + (2 / 4) * (1 / 4)
    assert abs(cohen_kappa(a, b) - (0.75 - pe) / (1 - pe)) < 1e-9
    assert krippendorff_alpha_nominal([["x", "x"], ["y", "y"]]) == 1.0


def test_committed_labels_pass_check() -> None:
    root = Path(__file__).resolve().parents[1]
    issues, merged = check(root / "labels")
    assert errors(issues) == [] and len(merged) >= 800
    frames, _ = labels.read_all(root / "labels")
    assert frames["codebook"]["domains"].map(lambda d: d[0]).value_counts().min() >= 80


def test_agreement_separates_primary_from_full_label_lists() -> None:
    frame = pd.DataFrame({
        "text_hash": ["h1", "h1", "h2", "h2", "h3", "h3", "h4"],
        "sent_id": ["d:1", "d:1", "d:2", "d:2", "d:3", "d:3", "d:4"],
        "text": ["甲。", "甲。", "乙。", "乙。", "丙。", "丙。", "丁。"],
        "annotator": ["a", "b", "a", "b", "a", "b", "a"],
        "domains": [["urban"], ["urban", "ecology"], ["economy"], ["economy"], ["risk"], ["governance"], ["party"]],
    })
    result = agreement(frame)
    assert result["units"] == 3  # h4 has one annotator only
    assert result["exact_label_agreement"] == round(1 / 3, 4)  # only h2's lists are identical
    assert result["pairs"]["a~b"]["raw_agreement"] == round(2 / 3, 4)  # primaries agree on h1 and h2
    assert list(result["disagreements"]["sent_id"]) == ["d:3"]
