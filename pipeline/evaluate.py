"""Honest evaluation: leave-one-document-out over annotated real text.

Every figure comes from predicting units of a document the model did not see. Codebook examples
may join the training side of a fold (``use_examples``) but never the test side. Any estimator
with ``fit(units, y)``, ``predict_proba(units)`` and ``classes_`` can be scored; each fold fits a
fresh clone, so nothing leaks between folds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from pipeline import multilabel
from pipeline.heldout import HeldOut
from pipeline.io import atomic_path, write_text
from pipeline.labels import split_examples
from pipeline.shares import confusion_counts, measure_quantification

PROTOCOL = "leave-one-document-out over annotated real text; codebook examples never evaluated"
HEADLINE_KEYS = ("units", "accuracy", "lenient_accuracy", "macro_f1", "macro_f1_supported", "weighted_f1")
# measured by the train stage beyond the primary domain: label sets and share errors
FINDINGS_KEYS = ("label_set_f1", "share_mae_raw", "share_mae_adjusted")


def metrics(gold: pd.Series, gold_sets: pd.Series, pred: np.ndarray, domains: Sequence[str],
            min_support: int = 10) -> dict[str, Any]:
    """Accuracy, lenient accuracy, macro/weighted F1 and per-domain P/R/F1 of primary predictions.

    Macro-F1 averages over the domains present in the gold labels; ``macro_f1_supported`` only over
    domains with at least `min_support` gold units (small classes make macro-F1 noisy).
    """
    gold = pd.Series(gold).reset_index(drop=True)
    pred = np.asarray(pred)
    domains = list(domains)
    present = [d for d in domains if (gold == d).any()]
    supported = [d for d in present if (gold == d).sum() >= min_support]
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=domains, zero_division=0)
    per_domain = {d: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                      "f1": round(float(f[i]), 4), "support": int(s[i])} for i, d in enumerate(domains)}
    lenient = np.mean([pr in gs for pr, gs in zip(pred, gold_sets)]) if len(pred) else 0.0
    return {
        "units": int(len(gold)),
        "accuracy": round(float(accuracy_score(gold, pred)), 4),
        "lenient_accuracy": round(float(lenient), 4),
        "macro_f1": round(float(f1_score(gold, pred, labels=present, average="macro", zero_division=0)), 4),
        "macro_f1_supported": round(float(f1_score(gold, pred, labels=supported, average="macro",
                                                   zero_division=0)), 4) if supported else None,
        "weighted_f1": round(float(f1_score(gold, pred, labels=present, average="weighted", zero_division=0)), 4),
        "supported_domains": supported,
        "per_domain": per_domain,
    }


def lodo(table: pd.DataFrame, estimator: BaseEstimator, use_examples: bool = True,
         train_filter: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> pd.DataFrame:
    """Out-of-fold predictions: for each annotated document, fit a clone without it and predict it.

    `train_filter` thins the real units of each training fold (the learning curve uses it)."""
    real, examples = split_examples(table)
    parts = []
    for doc in sorted(real["doc"].unique()):
        test = real[real["doc"] == doc]
        train_real = real[real["doc"] != doc]
        if train_filter is not None:
            train_real = train_filter(train_real)
        train = pd.concat([train_real, examples]) if use_examples else train_real
        model = clone(estimator).fit(train, train["primary"])
        proba = model.predict_proba(test)
        ids = [str(c) for c in model.classes_]
        part = test[["text_hash", "doc", "text", "primary", "domains"]].copy()
        part["pred"] = np.array(ids)[proba.argmax(axis=1)]
        part["confidence"] = proba.max(axis=1)
        for i, d in enumerate(ids):
            part[f"p_{d}"] = proba[:, i]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def oof_domains(oof: pd.DataFrame) -> list[str]:
    """The domain ids of an out-of-fold table, in score-column order."""
    return [c[2:] for c in oof.columns if c.startswith("p_")]


def score(oof: pd.DataFrame, min_support: int = 10) -> dict[str, Any]:
    """Metrics of an out-of-fold table, plus accuracy per held-out document."""
    result = metrics(oof["primary"], oof["domains"], oof["pred"].to_numpy(), oof_domains(oof), min_support)
    result["per_document"] = {doc: round(float((g["pred"] == g["primary"]).mean()), 4)
                              for doc, g in oof.groupby("doc")}
    return result


def has_two_documents(table: pd.DataFrame) -> bool:
    return split_examples(table)[0]["doc"].nunique() >= 2


@dataclass
class Evaluation:
    """One configuration scored leave-one-document-out: its figures and its out-of-fold table."""

    model: str
    use_examples: bool
    scores: dict[str, Any]
    oof: pd.DataFrame
    # `multilabel` (secondary-domain threshold, label-set F1) and `quantification` (share errors):
    # measured for the shipped configuration only (`evaluate(..., threshold_grid=...)`)
    findings: dict[str, Any] = field(default_factory=dict)

    @property
    def headline(self) -> dict[str, Any]:
        flat = {"label_set_f1": self.findings.get("multilabel", {}).get("label_set_f1"),
                **{k: self.findings.get("quantification", {}).get(k) for k in FINDINGS_KEYS[1:]}}
        return {**{k: self.scores[k] for k in HEADLINE_KEYS}, **{k: v for k, v in flat.items() if v is not None}}

    def summary(self) -> dict[str, Any]:
        """Everything but the out-of-fold rows, as JSON-ready data."""
        return {"protocol": PROTOCOL, "model": self.model, "use_examples": self.use_examples,
                "headline": self.headline, "per_domain": self.scores["per_domain"],
                "per_document": self.scores["per_document"],
                "supported_domains": self.scores["supported_domains"], **self.findings}

    def heldout(self) -> HeldOut:
        """The record `classify` uses: confusion counts and the secondary-domain threshold."""
        ids = oof_domains(self.oof)
        return HeldOut(tuple(ids), confusion_counts(self.oof["primary"], self.oof["pred"], ids),
                       self.findings.get("multilabel", {}).get("secondary_threshold"),
                       {k: v for k, v in self.headline.items() if k in ("units", *FINDINGS_KEYS)})


def evaluate(table: pd.DataFrame, estimator: BaseEstimator, use_examples: bool = True,
             min_support: int = 10, threshold_grid: Sequence[float] | None = None) -> Evaluation:
    """Score one configuration leave-one-document-out on the labelled table; with `threshold_grid`,
    also choose the secondary-domain threshold and measure label sets and share errors."""
    oof = lodo(table, estimator, use_examples)
    name = str(getattr(estimator, "classifier", type(estimator).__name__))
    findings = {}
    if threshold_grid is not None:
        ids = oof_domains(oof)
        findings = {"multilabel": multilabel.measure(oof, ids, threshold_grid),
                    "quantification": measure_quantification(oof, ids)}
    return Evaluation(name, use_examples, score(oof, min_support), oof, findings)


def confusion(oof: pd.DataFrame) -> pd.DataFrame:
    ids = oof_domains(oof)
    return pd.DataFrame(confusion_matrix(oof["primary"], oof["pred"], labels=ids), index=ids, columns=ids)


def write_evaluation(evaluation: Evaluation, eval_dir: str | Path, metrics_path: str | Path) -> list[Path]:
    """The headline (`metrics.json`: small, kept in git, what `dvc metrics diff` compares), the full
    figures (`evaluation.json`), the per-domain report, the out-of-fold rows and the confusion matrix."""
    from pipeline import charts

    eval_dir = Path(eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    write_text(metrics_path, json.dumps(evaluation.headline, indent=2) + "\n")
    write_text(eval_dir / "evaluation.json", json.dumps(evaluation.summary(), ensure_ascii=False, indent=2))
    oof = evaluation.oof
    per_domain = pd.DataFrame(evaluation.scores["per_domain"]).T.rename_axis("domain").reset_index()
    written = [Path(metrics_path), eval_dir / "evaluation.json", write_csv(per_domain, eval_dir / "per_domain.csv"),
               write_csv(oof[["primary", "pred"]].rename(columns={"primary": "actual", "pred": "predicted"}),
                         eval_dir / "confusion.csv")]
    with atomic_path(eval_dir / "oof.parquet") as tmp:
        oof.drop(columns=["domains"]).assign(domains=oof["domains"].map("|".join)).to_parquet(tmp)
    written.append(eval_dir / "oof.parquet")
    written.append(charts.heatmap(confusion(oof), f"Confusion matrix, leave-one-document-out ({len(oof)} units)",
                                  eval_dir / "confusion.png", xlabel="predicted", ylabel="gold"))
    return written


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path
