"""Comparisons across groups of documents (years, places, levels of government): one tidy table of
shares with intervals, a difference between two groups, and their charts.

A group's share of a domain is pooled over its documents' units (units of the domain / units of
the group). Its interval comes from a two-stage bootstrap that respects how the data were made:
the documents of the group are resampled (between-document variation: two reports of one year
differ more than their sentences suggest), and each drawn document's shares are redrawn from a
Dirichlet posterior of its unit counts (within-document variation, with a prior of total mass 1
spread over the domains, so that a zero count still gets a non-zero upper bound). With one
document per group this is close to the Wilson interval of the summary; with several it is wider
where documents disagree. Differences between two groups use the same draws.

Input is the summary `classify --summary` writes (its `n_<id>` unit counts and metadata columns).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from pipeline import charts
from pipeline.crosswalk import load_crosswalk
from pipeline.errors import UsageError
from pipeline.io import read_table, write_table
from pipeline.metadata import typed
from pipeline.shares import ShareSettings, policy_ids

MEASURES = ("policy", "all", "cap")
_CELLS_PER_BATCH = 2_000_000  # bootstrap draws are made in batches of at most this many numbers


def read_summary(path: str | Path) -> pd.DataFrame:
    """A `classify --summary` table, checked to have its per-domain unit counts."""
    frame = read_table(path)
    if "doc" not in frame or not any(c.startswith("n_") for c in frame.columns):
        raise UsageError(f"{path}: not a classify summary (no doc and n_<domain> columns); write one with "
                         "`policy-domains classify ... --summary FILE`")
    return frame


def summary_domains(summary: pd.DataFrame) -> list[str]:
    """The domain ids of a summary, in its column order."""
    return [c[2:] for c in summary.columns if c.startswith("n_")]


def counts(summary: pd.DataFrame, measure: str = "policy") -> tuple[pd.DataFrame, list[str]]:
    """Documents × categories unit counts and the categories: policy domains (`other` left out),
    all domains, or CAP major topics (domains without a CAP counterpart left out)."""
    if measure not in MEASURES:
        raise UsageError(f"unknown measure '{measure}' ({', '.join(MEASURES)})")
    ids = summary_domains(summary)
    n = summary[[f"n_{d}" for d in ids]].set_axis(ids, axis=1).fillna(0).astype(float)
    if measure == "all":
        return n, ids
    if measure == "policy":
        return n[policy_ids(ids)], policy_ids(ids)
    codes = load_crosswalk(ids).codes()
    topics = sorted({c for c in codes.values() if c is not None})
    cap = pd.DataFrame({str(t): n[[d for d in ids if codes[d] == t]].sum(axis=1) for t in topics})
    return cap, list(cap.columns)


@dataclass(frozen=True)
class GroupShares:
    """Shares per group (tidy `table`) and the bootstrap draws behind their intervals."""

    by: str
    groups: list[Any]
    categories: list[str]
    table: pd.DataFrame
    draws: dict[Any, np.ndarray]
    point: dict[Any, np.ndarray]  # unrounded shares, for differences

    @property
    def numeric(self) -> bool:
        return all(isinstance(g, (int, float, np.integer, np.floating)) for g in self.groups)


def _draws(group_counts: np.ndarray, settings: ShareSettings, key: str) -> np.ndarray:
    """Bootstrap replicates (replicates × categories) of a group's pooled shares: documents resampled,
    each drawn document's shares from Dirichlet(counts + 1/K), weighted by its units."""
    docs, k = group_counts.shape
    rng = settings.rng(key)
    sizes = group_counts.sum(axis=1)
    out = np.empty((settings.bootstrap, k))
    batch = max(1, _CELLS_PER_BATCH // max(docs * k, 1))
    for start in range(0, settings.bootstrap, batch):
        reps = min(batch, settings.bootstrap - start)
        pick = rng.integers(0, docs, size=(reps, docs))
        gamma = rng.gamma(group_counts[pick] + 1.0 / k)
        shares = gamma / gamma.sum(axis=2, keepdims=True)
        weight = sizes[pick][..., None]
        total = weight.sum(axis=1)
        out[start:start + reps] = np.divide((shares * weight).sum(axis=1), total, out=np.zeros((reps, k)),
                                            where=total > 0)
    return out


def group_shares(summary: pd.DataFrame, by: str, settings: ShareSettings | None = None,
                 measure: str = "policy") -> GroupShares:
    """Pooled shares per value of the metadata column `by`, with bootstrap intervals; documents
    without a value for `by` are left out (count them with `summary[by].isna()`)."""
    settings = settings or ShareSettings()
    if by not in summary:
        meta = [c for c in summary.columns if c not in ("doc", "sentences", "policy_sentences", "chars", "coverage")
                and not re.match(r"(n|share|adj_share|char_share|cap_share|share_all)_|cap_unmapped", c)]
        raise UsageError(f"the summary has no column '{by}'; metadata columns: {', '.join(meta) or 'none'} "
                         "(attach some with classify --meta or --documents)")
    n, categories = counts(summary, measure)
    key = typed(summary[by])
    groups = sorted(key.dropna().unique().tolist(), key=lambda g: (isinstance(g, str), g))
    rows, draws, point = [], {}, {}
    for group in groups:
        members = (key == group).fillna(False).to_numpy()
        c = n[members].to_numpy()
        total = c.sum()
        draws[group] = _draws(c, settings, f"{by}={group}")
        point[group] = c.sum(axis=0) / total if total else np.full(len(categories), np.nan)
        low, high = np.percentile(draws[group], settings.tails, axis=0)
        for i, cat in enumerate(categories):
            rows.append({"group": group, "domain": cat, "share": _round(point[group][i]),
                         "low": _round(low[i]), "high": _round(high[i]),
                         "units": int(c[:, i].sum()), "group_units": int(total), "documents": int(members.sum())})
    table = pd.DataFrame(rows, columns=["group", "domain", "share", "low", "high", "units", "group_units", "documents"])
    return GroupShares(by, groups, categories, table, draws, point)


def _find(shares: GroupShares, wanted: str) -> Any:
    for group in shares.groups:
        if str(group) == str(wanted):
            return group
    raise UsageError(f"no group '{wanted}' in column '{shares.by}' (groups: {', '.join(map(str, shares.groups))})")


def difference(shares: GroupShares, a: str, b: str, level: float = 0.95) -> pd.DataFrame:
    """Share of group `b` minus share of group `a`, per category, with a bootstrap interval."""
    ga, gb = _find(shares, a), _find(shares, b)
    diff = shares.draws[gb] - shares.draws[ga]
    low, high = np.percentile(diff, (50 * (1 - level), 50 * (1 + level)), axis=0)
    share_a, share_b = shares.point[ga], shares.point[gb]
    rows = [{"domain": cat, "share_a": _round(share_a[i]), "share_b": _round(share_b[i]),
             "difference": _round(share_b[i] - share_a[i]), "low": _round(low[i]), "high": _round(high[i])}
            for i, cat in enumerate(shares.categories)]
    return pd.DataFrame(rows).assign(group_a=ga, group_b=gb)


def _round(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def wide(shares: GroupShares, column: str) -> pd.DataFrame:
    """groups × categories of one column of the tidy table; on an integer axis (years) every missing
    value between the first and last group is a row of NaN, so lines break instead of bridging gaps."""
    frame = shares.table.pivot(index="group", columns="domain", values=column)[shares.categories]
    frame = frame.reindex(shares.groups).astype(float)
    if shares.numeric and all(float(g).is_integer() for g in shares.groups) and len(shares.groups) > 1:
        full = range(int(min(shares.groups)), int(max(shares.groups)) + 1)
        if len(full) <= 20 * len(shares.groups):  # a sparse axis (codes, not years) keeps its values
            frame = frame.reindex(list(full))
    return frame


def category_labels(categories: Sequence[str], measure: str) -> dict[str, str]:
    """Chart labels: Chinese domain names, or CAP topic names."""
    if measure == "cap":
        from pipeline.crosswalk import CAP_TOPICS

        return {c: f"{c} {CAP_TOPICS[int(c)]}" for c in categories}
    from pipeline.taxonomy import zh_names

    names = zh_names()
    return {c: names.get(c, c) for c in categories}


def _slug(value: Any) -> str:
    return re.sub(r"[^\w.-]+", "-", str(value)).strip("-") or "group"


def write_comparison(shares: GroupShares, out_dir: str | Path, pair: tuple[str, str] | None = None,
                     measure: str = "policy", level: float = 0.95) -> dict[str, Path]:
    """The tidy table (CSV), one trend chart per category, the small multiples and, for a pair of
    groups (default: the first and the last), the difference table and chart."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = category_labels(shares.categories, measure)
    paths: dict[str, Path] = {}
    table = out / f"shares_by_{_slug(shares.by)}.csv"
    write_table(shares.table, table)
    paths["table"] = table
    share, low, high = (wide(shares, c) for c in ("share", "low", "high"))
    what = {"policy": "政策内容句子占比", "all": "全部句子占比", "cap": "CAP 主题占比"}[measure]
    paths["small_multiples"] = charts.small_multiples(share, low, high, labels, f"{what}（按 {shares.by}，{level:.0%} 区间）",
                                                      out / "small_multiples.png", numeric=shares.numeric)
    for cat in shares.categories:
        paths[f"trend_{cat}"] = charts.trend(share[cat], low[cat], high[cat], f"{labels[cat]}：{what}",
                                             out / "trends" / f"{_slug(cat)}.png", numeric=shares.numeric, xlabel=shares.by)
    if pair is None and len(shares.groups) >= 2:
        pair = (str(shares.groups[0]), str(shares.groups[-1]))
    if pair is not None:
        diff = difference(shares, *pair, level=level)
        a, b = diff["group_a"].iloc[0], diff["group_b"].iloc[0]
        stem = f"difference_{_slug(a)}_vs_{_slug(b)}"
        write_table(diff.drop(columns=["group_a", "group_b"]), out / f"{stem}.csv")
        paths["difference_table"] = out / f"{stem}.csv"
        paths["difference"] = charts.difference(diff.set_index("domain"), labels,
                                                f"{b} 减 {a}（{shares.by}；{level:.0%} 区间）", out / f"{stem}.png")
    return paths
