"""Read, validate and merge the hand-made label files into the one table that training reads.

Layout (see labels/GUIDE.md):
- ``labels/annotations/*.csv``: one file per annotator or batch, so that nobody edits another's file;
- ``labels/adjudicated.csv``: decisions on units where annotators disagree;
- ``labels/examples/*.csv``: codebook example sentences the team wrote (``source`` = ``codebook``);
  they train the model but never enter an evaluation.

Merge rule (implemented only in `merge`): an adjudicated row decides its unit. Otherwise the
annotators' rows for a unit (matched by ``text_hash``) must agree on the primary domain; the merged
label is that primary followed by the secondary ids any of them gave, in order, at most three.
Units whose primaries differ and that no adjudication decides are conflicts: `check` reports them
and they are left out of training until someone adjudicates them.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from pipeline.ingest import fold
from pipeline.segment import text_hash
from pipeline.taxonomy import domain_ids, suggest_id

COLUMNS = ["sent_id", "text_hash", "doc", "text", "domains", "annotator", "note", "updated_at"]
OPTIONAL_COLUMNS = ["source"]
REQUIRED = ["text", "domains", "annotator"]
MAX_DOMAINS = 3
EXAMPLE_SOURCE = "codebook"


@dataclass(frozen=True)
class Issue:
    """One finding of the validator; `level` is "error" (blocks) or "warning"."""

    file: str
    line: int
    level: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.level}: {self.message}"


def split_domains(value: str) -> list[str]:
    return [d.strip() for d in str(value or "").replace("｜", "|").split("|") if d.strip()]


def label_files(labels_dir: str | Path) -> dict[str, list[Path]]:
    root = Path(labels_dir)
    adjudicated = root / "adjudicated.csv"
    return {
        "annotation": sorted((root / "annotations").glob("*.csv")),
        "adjudicated": [adjudicated] if adjudicated.exists() else [],
        "codebook": sorted((root / "examples").glob("*.csv")),
    }


def read_label_file(path: str | Path, kind: str = "annotation") -> tuple[pd.DataFrame, list[Issue]]:
    """Parse and validate one label file. Rows with errors are dropped from the returned frame."""
    path = Path(path)
    name = str(path)
    issues: list[Issue] = []
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return _empty(), [Issue(name, 0, "error", f"cannot read ({exc.strerror})")]
    if not raw.startswith(b"\xef\xbb\xbf"):
        issues.append(Issue(name, 0, "warning", "no UTF-8 BOM: Excel and WPS may show the Chinese text garbled"))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return _empty(), [Issue(name, line, "error", "not UTF-8 (save it as 'CSV UTF-8')")]
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        return _empty(), issues + [Issue(name, 1, "error", f"missing column(s): {', '.join(missing)} "
                                                            f"(expected {','.join(COLUMNS)})")]
    if header[: len(COLUMNS)] != COLUMNS:
        issues.append(Issue(name, 1, "warning", f"columns out of the standard order {','.join(COLUMNS)}"))
    known = set(domain_ids())
    rows, seen_ids, seen_hashes = [], {}, {}
    for lineno, fields in enumerate(reader, 2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            issues.append(Issue(name, lineno, "error", f"{len(fields)} fields, header has {len(header)}"))
            continue
        row = dict(zip(header, (f.strip() for f in fields)))
        bad = [f"empty '{c}'" for c in REQUIRED if not row.get(c)]
        ids = split_domains(row.get("domains", ""))
        for d in ids:
            if d not in known:
                hint = suggest_id(d)
                bad.append(f"unknown domain id '{d}'" + (f" (did you mean '{hint}'?)" if hint else ""))
        if len(ids) > MAX_DOMAINS:
            bad.append(f"{len(ids)} domain ids; at most {MAX_DOMAINS} (primary first)")
        if len(set(ids)) != len(ids):
            bad.append("the same id twice in 'domains'")
        computed = text_hash(fold([row.get("text", "")])[0])
        if row.get("text_hash") and row["text_hash"] != computed:
            bad.append(f"text_hash {row['text_hash']} does not match the text (expected {computed}); "
                       "was the text edited?")
        for key, seen, label in ((row.get("sent_id"), seen_ids, "sent_id"), (computed, seen_hashes, "text")):
            if key and key in seen:
                bad.append(f"duplicate row: same {label} as line {seen[key]}")
            elif key:
                seen[key] = lineno
        if bad:
            issues.extend(Issue(name, lineno, "error", msg) for msg in bad)
            continue
        rows.append({
            "sent_id": row.get("sent_id", ""), "text_hash": computed, "doc": row.get("doc", ""),
            "text": row["text"], "domains": ids, "annotator": row["annotator"], "note": row.get("note", ""),
            "updated_at": row.get("updated_at", ""), "source": row.get("source") or kind,
            "file": name, "line": lineno,
        })
    return (pd.DataFrame(rows) if rows else _empty()), issues


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=COLUMNS + ["source", "file", "line"])


def read_all(labels_dir: str | Path) -> tuple[dict[str, pd.DataFrame], list[Issue]]:
    """Every label file under labels_dir, by kind (annotation, adjudicated, codebook)."""
    frames, issues = {}, []
    for kind, paths in label_files(labels_dir).items():
        parts = []
        for path in paths:
            frame, found = read_label_file(path, kind)
            parts.append(frame)
            issues.extend(found)
        frames[kind] = pd.concat(parts, ignore_index=True) if parts else _empty()
    return frames, issues


def merge(annotations: pd.DataFrame, adjudicated: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the merge rule. Returns (merged labels of real text, unresolved conflicts)."""
    decided = {r.text_hash: r for r in adjudicated.itertuples()}
    merged, conflicts = [], []
    for h, group in annotations.groupby("text_hash", sort=False):
        first = group.iloc[0]
        annotators = sorted(set(group["annotator"]))
        if h in decided:
            r = decided[h]
            merged.append(_merged_row(first, r.domains, annotators, "adjudicated"))
            continue
        primaries = {d[0] for d in group["domains"]}
        if len(primaries) > 1:
            conflicts.append({"text_hash": h, "sent_id": first["sent_id"], "doc": first["doc"], "text": first["text"],
                              "labels": "; ".join(f"{a}={'|'.join(d)}" for a, d in zip(group["annotator"], group["domains"])),
                              "where": ", ".join(f"{f}:{ln}" for f, ln in zip(group["file"], group["line"]))})
            continue
        domains: list[str] = []
        for ids in group["domains"]:
            domains.extend(d for d in ids if d not in domains)
        merged.append(_merged_row(first, domains[:MAX_DOMAINS], annotators, "annotation"))
    return pd.DataFrame(merged, columns=MERGED_COLUMNS), pd.DataFrame(conflicts)


MERGED_COLUMNS = ["text_hash", "sent_id", "doc", "text", "domains", "primary", "annotators", "source"]


def _merged_row(first: pd.Series, domains: list[str], annotators: list[str], source: str) -> dict:
    return {"text_hash": first["text_hash"], "sent_id": first["sent_id"], "doc": first["doc"],
            "text": first["text"], "domains": list(domains), "primary": domains[0],
            "annotators": "|".join(annotators), "source": source}


def examples_table(examples: pd.DataFrame) -> pd.DataFrame:
    """Codebook examples in the merged shape; each is its own 'document' for grouping."""
    rows = [_merged_row(r, r["domains"], [r["annotator"]], EXAMPLE_SOURCE) for _, r in examples.iterrows()]
    return pd.DataFrame(rows, columns=MERGED_COLUMNS)


def check(labels_dir: str | Path, units: pd.DataFrame | None = None) -> tuple[list[Issue], pd.DataFrame]:
    """Validate every label file; with `units`, also flag annotation rows that match no unit (stale).

    Returns (issues, merged labels). Errors mean the files need fixing before training.
    """
    frames, issues = read_all(labels_dir)
    ann, adj = frames["annotation"], frames["adjudicated"]
    if units is not None and len(ann):
        current = set(units["text_hash"])
        for r in pd.concat([ann, adj]).itertuples():
            if r.text_hash not in current:
                issues.append(Issue(r.file, r.line, "error",
                                    f"stale: text of {r.sent_id or 'this row'} matches no unit of the corpus "
                                    "(re-segmented or edited?)"))
    if len(adj):
        labelled = set(ann["text_hash"])
        for r in adj.itertuples():
            if r.text_hash not in labelled:
                issues.append(Issue(r.file, r.line, "warning", "adjudicates a unit no annotation file labels"))
    merged, conflicts = merge(ann, adj)
    for c in conflicts.itertuples():
        issues.append(Issue(c.where.split(":")[0], int(c.where.split(", ")[0].rsplit(":", 1)[1]), "error",
                            f"conflicting labels for {c.sent_id} ({c.labels}) and no row in adjudicated.csv "
                            f"decides them (also at {c.where})"))
    return issues, merged


def load_labels(labels_dir: str | Path, include_examples: bool = True, units: pd.DataFrame | None = None,
                strict: bool = True) -> pd.DataFrame:
    """The single source of training truth: merged real-text labels, plus examples if asked.

    With ``strict`` any validation error raises, so nothing trains on files that fail `labels check`.
    """
    issues, merged = check(labels_dir, units)
    errors = [i for i in issues if i.level == "error"]
    if strict and errors:
        shown = "\n".join(str(e) for e in errors[:20])
        raise ValueError(f"{len(errors)} label error(s); run `policy-domains labels check`:\n{shown}")
    if include_examples:
        frames, _ = read_all(labels_dir)
        merged = pd.concat([merged, examples_table(frames["codebook"])], ignore_index=True)
    return merged


# ---------------------------------------------------------------- agreement

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
        return {"units": 0, "kappa": None, "alpha": None, "pairs": {}, "disagreements": pd.DataFrame()}
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
