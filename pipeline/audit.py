"""Find labels that may be wrong: rank them by how confidently a model that never saw their
document disagrees (confident learning with cleanlab). It changes nothing: a person reviews the
list and corrects a label in the annotator's file or in `adjudicated.csv`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import LabelError, UsageError
from pipeline.evaluate import has_two_documents, lodo, oof_domains
from pipeline.io import read_table, write_table
from pipeline.labels import check, split_domains, training_table
from pipeline.model import build_estimator

AUDIT_COLUMNS = ["rank", "text", "doc", "sent_id", "given", "suggestion", "label_quality", "p_given",
                 "p_suggestion", "cleanlab_issue", "annotators", "text_hash"]


def audit(labels_dir: str | Path, units: pd.DataFrame, params: dict[str, Any],
          oof: pd.DataFrame | None = None, include_agreeing: bool = False) -> pd.DataFrame:
    """Labels of real text ranked by how likely they are wrong, from document-held-out predictions.

    Probabilities come from leave-one-document-out fits (`evaluate.lodo`, so no label judges
    itself) unless `oof` (the evaluate stage's oof.parquet) is given. cleanlab's confident learning
    flags likely issues (`find_label_issues`) and scores every label (`get_label_quality_scores`,
    self-confidence: the held-out probability of the given primary). By default only labels whose
    primary the model does not predict are listed; flagged ones first, then by quality, lowest first.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    _, merged = check(labels_dir)
    if oof is None:
        use_examples = bool(params.get("use_examples", True))
        table = training_table(labels_dir, units, include_examples=use_examples, strict=False)
        if not has_two_documents(table):
            raise LabelError("audit needs labelled units from at least two documents (it holds one out at a time)")
        oof = lodo(table, build_estimator(params), use_examples)
    ids = oof_domains(oof)
    proba = oof[[f"p_{d}" for d in ids]].to_numpy(dtype=float)
    given = oof["primary"].map(ids.index).to_numpy()
    present = np.unique(given)  # cleanlab needs every class it scores to occur among the labels
    sub = proba[:, present]
    sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
    compact = np.searchsorted(present, given)
    quality = get_label_quality_scores(compact, sub, method="self_confidence")
    flagged = find_label_issues(compact, sub, filter_by="prune_by_noise_rate") if len(present) > 1 \
        else np.zeros(len(oof), dtype=bool)
    best = proba.argmax(axis=1)
    domains = oof["domains"].map(lambda d: d if isinstance(d, list) else split_domains(d))
    info = merged.set_index("text_hash") if len(merged) else pd.DataFrame(columns=["sent_id", "annotators"])
    out = pd.DataFrame({
        "text": oof["text"], "doc": oof["doc"],
        "sent_id": oof["text_hash"].map(info["sent_id"]).fillna(""),
        "given": domains.map("|".join), "suggestion": np.asarray(ids)[best],
        "label_quality": np.round(quality, 4), "p_given": np.round(proba[np.arange(len(oof)), given], 4),
        "p_suggestion": np.round(proba.max(axis=1), 4), "cleanlab_issue": flagged,
        "annotators": oof["text_hash"].map(info["annotators"]).fillna(""), "text_hash": oof["text_hash"],
    })
    if not include_agreeing:
        disagrees = [s not in d for s, d in zip(out["suggestion"], domains)]
        out = out[np.asarray(disagrees) | out["cleanlab_issue"].to_numpy()]
    out = out.sort_values(["cleanlab_issue", "label_quality"], ascending=[False, True], kind="stable")
    out.insert(0, "rank", range(1, len(out) + 1))
    return out[AUDIT_COLUMNS].reset_index(drop=True)


def read_oof(path: str | Path) -> pd.DataFrame:
    """The evaluate stage's out-of-fold table (its `domains` column is stored as 'a|b')."""
    oof = read_table(path)
    missing = {"text", "doc", "text_hash", "primary", "domains"} - set(oof.columns)
    if missing or not any(str(c).startswith("p_") for c in oof.columns):
        raise UsageError(f"{path}: not an out-of-fold table of `policy-domains train` (missing "
                         f"{', '.join(sorted(missing)) or 'p_<domain> columns'}); use reports/eval/oof.parquet")
    oof["domains"] = oof["domains"].map(split_domains)
    return oof


def write_audit(frame: pd.DataFrame, path: str | Path) -> Path:
    """The review queue, by extension; as CSV (UTF-8 with BOM) with spreadsheet-safe cells."""
    write_table(frame, path)
    return Path(path)
