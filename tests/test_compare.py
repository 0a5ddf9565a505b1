"""Comparisons across groups: pooled shares, intervals that see between-document variation, gaps for
missing years, differences between two groups, and the `compare` command's files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import compare as cmp
from pipeline.cli import app
from pipeline.shares import ShareSettings, wilson
from pipeline.taxonomy import domain_ids

POLICY = [d for d in domain_ids() if d != "other"]


def summary(rows: list[tuple[str, object, dict[str, int]]]) -> pd.DataFrame:
    """A made-up `classify --summary`: (doc, year, unit counts by domain)."""
    return pd.DataFrame([{"doc": doc, "year": year, **{f"n_{d}": counts.get(d, 0) for d in domain_ids()}}
                         for doc, year, counts in rows])


def test_pooled_shares_and_gaps_for_missing_years() -> None:
    frame = summary([("a", 2019, {"economy": 30, "ecology": 10, "other": 60}),
                     ("b", 2019, {"economy": 10, "ecology": 30}),
                     ("c", 2022, {"economy": 20, "ecology": 20}),
                     ("d", None, {"economy": 5})])
    shares = cmp.group_shares(frame, "year", ShareSettings(bootstrap=500))
    assert shares.groups == [2019, 2022] and shares.numeric
    table = shares.table.set_index(["group", "domain"])
    assert table.loc[(2019, "economy"), "share"] == 0.5 and table.loc[(2019, "economy"), "documents"] == 2
    assert table.loc[(2019, "economy"), "units"] == 40 and table.loc[(2019, "economy"), "group_units"] == 80
    assert set(shares.table["domain"]) == set(POLICY)  # `other` is not policy content
    wide = cmp.wide(shares, "share")
    assert list(wide.index) == [2019, 2020, 2021, 2022]  # every year on the axis ...
    assert wide.loc[[2020, 2021]].isna().all().all()  # ... and the missing ones are gaps, not lines


def test_intervals_widen_when_documents_disagree() -> None:
    """Two documents of one group that disagree (75% vs 25%) make the group's share less certain than
    the same units in one document would: the unit is a sentence within a document."""
    settings = ShareSettings(bootstrap=2000)
    agree = cmp.group_shares(summary([("a", 1, {"economy": 50, "ecology": 50}),
                                      ("b", 1, {"economy": 50, "ecology": 50})]), "year", settings)
    disagree = cmp.group_shares(summary([("a", 1, {"economy": 75, "ecology": 25}),
                                         ("b", 1, {"economy": 25, "ecology": 75})]), "year", settings)

    def width(shares: cmp.GroupShares) -> float:
        row = shares.table.set_index("domain").loc["economy"]
        assert row["share"] == 0.5
        return row["high"] - row["low"]

    assert width(disagree) > 1.5 * width(agree)
    low, high = wilson(100, 200)  # one group, documents alike: close to the Wilson interval of the units
    assert width(agree) == pytest.approx(float(high - low), rel=0.25)


def test_difference_between_two_groups() -> None:
    frame = summary([("a", "north", {"economy": 80, "ecology": 20}), ("b", "north", {"economy": 70, "ecology": 30}),
                     ("c", "south", {"economy": 30, "ecology": 70}), ("d", "south", {"economy": 20, "ecology": 80})])
    shares = cmp.group_shares(frame, "year", ShareSettings(bootstrap=1000))
    assert not shares.numeric
    diff = cmp.difference(shares, "north", "south").set_index("domain")
    assert diff.loc["ecology", "difference"] == pytest.approx(0.5)
    assert 0 < diff.loc["ecology", "low"] < 0.5 < diff.loc["ecology", "high"]
    assert diff.loc["economy", "high"] < 0 and diff.loc["education", "difference"] == 0
    with pytest.raises(Exception, match="no group 'west'"):
        cmp.difference(shares, "north", "west")


def test_compare_command_writes_table_and_charts(tmp_path: Path) -> None:
    frame = summary([(f"d{y}", y, {"economy": 10 + y % 7, "ecology": 5 + y % 3, "party": 2}) for y in
                     (2015, 2016, 2018, 2019, 2020)])
    frame.to_csv(tmp_path / "s.csv", index=False)
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(tmp_path / "s.csv"), "--by", "year", "--groups", "2016", "2020",
                                 "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "cmp" / "shares_by_year.csv")
    assert list(table.columns) == ["group", "domain", "share", "low", "high", "units", "group_units", "documents"]
    assert len(table) == 5 * len(POLICY)
    for name in ("small_multiples.png", "difference_2016_vs_2020.png", "difference_2016_vs_2020.csv",
                 "trends/economy.png"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0, name
    result = runner.invoke(app, ["compare", str(tmp_path / "s.csv"), "--by", "place", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "no column 'place'" in result.output.replace("\n", "")
    result = runner.invoke(app, ["compare", str(tmp_path / "s.csv"), "--by", "year", "--measure", "cap",
                                 "--out", str(tmp_path / "cap")])
    assert result.exit_code == 0, result.output
    cap = pd.read_csv(tmp_path / "cap" / "shares_by_year.csv")
    assert set(cap["domain"].astype(str)) >= {"1", "7"} and np.isclose(cap.groupby("group")["share"].sum(), 1).all()
