"""The CAP crosswalk: the shipped file is complete and honest about lossy cells; the loader refuses a
missing or doubled id; `--cap` adds CAP topics to rows and CAP shares to the summary."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.crosswalk import CAP_TOPICS, default_path, load_crosswalk
from pipeline.errors import LabelError
from pipeline.io import read_table
from pipeline.taxonomy import domain_ids

HEADER = "id,cap_code,cap_topic,fit,note\n"


def test_shipped_crosswalk_maps_every_id_once() -> None:
    crosswalk = load_crosswalk(domain_ids())
    assert list(crosswalk.links) == domain_ids()
    codes = crosswalk.codes()
    assert codes["party"] is None and codes["other"] is None  # no CAP counterpart, said so
    assert codes["education"] == 6 and codes["health"] == 3 and codes["ecology"] == 7
    fits = {d: link.fit for d, link in crosswalk.links.items()}
    assert fits["party"] == "none" and fits["education"] == "exact" and fits["reform_opening"] == "partial"
    assert all(link.note for link in crosswalk.links.values())  # every cell explains itself
    assert set(codes.values()) - {None} <= set(CAP_TOPICS)


def _write(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "cap.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def _shipped_rows() -> list[str]:
    return default_path().read_text(encoding="utf-8-sig").splitlines()[1:]


def test_loader_rejects_a_missing_id(tmp_path: Path) -> None:
    rows = [r for r in _shipped_rows() if not r.startswith("party,")]
    with pytest.raises(LabelError, match=r"cap\.csv: no row for id\(s\) party"):
        load_crosswalk(domain_ids(), _write(tmp_path, rows))


def test_loader_rejects_a_doubled_id(tmp_path: Path) -> None:
    rows = _shipped_rows() + ["economy,15,Domestic Commerce,partial,twice"]
    with pytest.raises(LabelError, match=r"cap\.csv:19: id 'economy' appears again \(first at line 2\)"):
        load_crosswalk(domain_ids(), _write(tmp_path, rows))


@pytest.mark.parametrize("row, message", [
    ("economy,11,Macroeconomics,partial,x", "'11' is not a CAP major topic code"),
    ("economy,1,Macro,partial,x", "CAP 1 is 'Macroeconomics', not 'Macro'"),
    ("economy,1,Macroeconomics,close,x", "fit 'close' is not one of exact, partial, none"),
    ("economy,,,partial,x", "an empty cap_code needs fit 'none'"),
    ("economi,1,Macroeconomics,partial,x", "unknown domain id 'economi'"),
])
def test_loader_names_the_line_of_a_bad_cell(row: str, message: str, tmp_path: Path) -> None:
    rows = [row if r.startswith("economy,") else r for r in _shipped_rows()]
    with pytest.raises(LabelError, match="cap.csv:2: " + message.replace("(", r"\(").replace(")", r"\)")):
        load_crosswalk(domain_ids(), _write(tmp_path, rows))


def test_cap_option_adds_topics_to_rows_and_shares_to_the_summary(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "r.txt").write_text("各位代表：\n加强生态保护修复。治理大气污染。办好人民满意的教育。发展先进制造业集群。",
                                    encoding="utf-8")
    result = CliRunner().invoke(app, ["classify", str(tmp_path / "r.txt"), "--out", str(tmp_path / "o.parquet"),
                                      "--summary", str(tmp_path / "s.csv"), "--model", str(tiny_model_dir), "--cap"])
    assert result.exit_code == 0, result.output
    rows = read_table(tmp_path / "o.parquet")
    codes, topics = load_crosswalk(domain_ids()).codes(), load_crosswalk(domain_ids()).topics()
    for domain, code, topic in rows[["domain", "cap_code", "cap_topic"]].itertuples(index=False):
        assert (pd.isna(code) and codes[domain] is None) or code == codes[domain]
        assert topic == topics[domain]
    mapped = rows[rows["cap_code"].notna()]
    summary = read_table(tmp_path / "s.csv").iloc[0]
    for code, n in mapped["cap_code"].value_counts().items():
        assert summary[f"cap_share_{code}"] == pytest.approx(n / len(mapped), abs=1e-4)
        assert summary[f"cap_share_{code}_low"] < summary[f"cap_share_{code}"] <= summary[f"cap_share_{code}_high"]
    policy = rows[rows["domain"] != "other"]
    assert summary["cap_unmapped"] == pytest.approx(1 - len(mapped) / len(policy), abs=1e-4)
