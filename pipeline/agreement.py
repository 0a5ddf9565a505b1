"""Agreement between annotators and counts over the label files (`policy-domains labels stats`).

Agreement is measured on the primary domain of units two or more annotators labelled (Cohen's
kappa per pair, Krippendorff's alpha over all), plus the share of units whose full id lists agree.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from pipeline.labels import merge, read_all


def cohen_kappa(a: Iterable[str], b: Iterable[str]) -> float:
    a, b = list(a), list(b)
    cats = sorted(set(a) | set(b))
    if not a:
        return float("nan")
    po = np.mean([x == y for x, y in zip(a, b)])
    pe = sum((a.count(c) / len(a)) * (b.count(c) / len(b)) for c in cats)
    return float((po - pe) / (1 - pe)) if pe < 1 else 1.0


def krippendorff_alpha_nominal(units: list[list[str]]) -> float:
    """Krippendorff's alpha for nominal data; each item is the list of values coders gave one unit."""
    units = [u for u in units if len(u) >= 2]
    cats = sorted({v for u in units for v in u})
    index = {c: i for i, c in enumerate(cats)}
    coincidence = np.zeros((len(cats), len(cats)))
    for u in units:
        m = len(u)
        for i, x in enumerate(u):
            for j, y in enumerate(u):
                if i != j:
                    coincidence[index[x], index[y]] += 1 / (m - 1)
    n = coincidence.sum()
    if n <= 1:
        return float("nan")
    totals = coincidence.sum(axis=1)
    observed = n - np.trace(coincidence)
    expected = (n * n - (totals ** 2).sum()) / (n - 1)
    return float(1 - observed / expected) if expected else 1.0


def agreement(annotations: pd.DataFrame) -> dict:
    """Primary-domain agreement on units labelled by two or more annotators, and the disagreements."""
    multi = annotations.groupby("text_hash").filter(lambda g: g["annotator"].nunique() >= 2)
    if multi.empty:
        return {"units": 0, "kappa": None, "alpha": None, "exact_label_agreement": None, "pairs": {},
                "disagreements": pd.DataFrame()}
    prim = multi.assign(primary=multi["domains"].map(lambda d: d[0]))
    by_unit = prim.groupby("text_hash")
    alpha = krippendorff_alpha_nominal([list(g["primary"]) for _, g in by_unit])
    pairs: dict[str, dict] = {}
    wide = prim.pivot_table(index="text_hash", columns="annotator", values="primary", aggfunc="first")
    names = list(wide.columns)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = wide[[a, b]].dropna()
            if len(both):
                pairs[f"{a}~{b}"] = {"units": len(both), "kappa": round(cohen_kappa(both[a], both[b]), 4),
                                     "raw_agreement": round(float((both[a] == both[b]).mean()), 4)}
    disagreements = []
    for h, g in by_unit:
        if g["primary"].nunique() > 1:
            disagreements.append({"text_hash": h, "sent_id": g["sent_id"].iloc[0], "text": g["text"].iloc[0],
                                  "labels": "; ".join(f"{a}={'|'.join(d)}" for a, d in zip(g["annotator"], g["domains"]))})
    kappas = [p["kappa"] for p in pairs.values()]
    # primaries can agree while secondaries differ: the share of units whose full id lists are identical
    same_set = by_unit["domains"].agg(lambda ds: len({"|".join(d) for d in ds}) == 1)
    return {"units": int(by_unit.ngroups), "kappa": round(float(np.mean(kappas)), 4) if kappas else None,
            "alpha": round(alpha, 4), "exact_label_agreement": round(float(same_set.mean()), 4),
            "pairs": pairs, "disagreements": pd.DataFrame(disagreements)}


def stats(labels_dir: str | Path, units: pd.DataFrame | None = None) -> dict:
    """Counts per domain, annotator and document; corpus coverage; agreement."""
    frames, _ = read_all(labels_dir)
    ann, adj, ex = frames["annotation"], frames["adjudicated"], frames["codebook"]
    merged, conflicts = merge(ann, adj)
    out = {
        "annotation_rows": len(ann), "labelled_units": len(merged), "unresolved_conflicts": len(conflicts),
        "per_domain": merged["primary"].value_counts().to_dict() if len(merged) else {},
        "per_annotator": ann["annotator"].value_counts().to_dict() if len(ann) else {},
        "per_document": merged["doc"].value_counts().to_dict() if len(merged) else {},
        "examples": {"rows": len(ex),
                     "per_domain": ex["domains"].map(lambda d: d[0]).value_counts().to_dict() if len(ex) else {},
                     "per_author": ex["annotator"].value_counts().to_dict() if len(ex) else {}},
        "agreement": agreement(ann),
    }
    if units is not None:
        total = len(units)
        covered = int(units["text_hash"].isin(set(merged["text_hash"])).sum())
        out["coverage"] = {"units": total, "labelled": covered, "share": round(covered / total, 4) if total else 0.0}
    return out
