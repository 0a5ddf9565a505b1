"""Fit the domain classifier on everything that is labelled and write it, with its model card.

Training data is only what is committed under `labels/`: merged annotations and adjudications of
real report units (joined to their units for the heading context) plus, when
`train.use_examples` is true, the team's codebook examples.
"""
from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import labels as labels_mod
from pipeline.config import project_root
from pipeline.model import DomainClassifier, build_estimator, save_model

TRAIN_COLUMNS = ["text_hash", "doc", "index", "text", "heading", "domains", "primary", "source"]


def training_table(labels_dir: str | Path, units: pd.DataFrame, include_examples: bool = True,
                   strict: bool = True) -> pd.DataFrame:
    """Labelled units with the context the model reads; examples have no heading and own 'docs'."""
    merged = labels_mod.load_labels(labels_dir, include_examples=include_examples, units=units, strict=strict)
    context = units.drop_duplicates("text_hash").set_index("text_hash").reindex(columns=["heading", "doc", "index"])
    real = merged[merged["source"] != labels_mod.EXAMPLE_SOURCE].copy()
    real["heading"] = real["text_hash"].map(context["heading"]).fillna("")
    real["doc"] = real["text_hash"].map(context["doc"]).fillna(real["doc"])
    real["index"] = real["text_hash"].map(context["index"])
    examples = merged[merged["source"] == labels_mod.EXAMPLE_SOURCE].copy()
    examples["heading"] = ""
    return pd.concat([real, examples], ignore_index=True)[TRAIN_COLUMNS]


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fit(table: pd.DataFrame, params: dict[str, Any], classifier: str | None = None) -> DomainClassifier:
    target = table["primary"]
    return build_estimator(params, classifier).fit(table, target)


def model_card(table: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    real = table[table["source"] != labels_mod.EXAMPLE_SOURCE]
    return {
        "name": "policy-domains",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "task": "primary policy domain of each sentence of Chinese government reports (17 ids)",
        "training_data": {
            "labelled_units": int(len(real)),
            "codebook_examples": int(len(table) - len(real)),
            "documents": sorted(real["doc"].unique().tolist()),
            "per_domain": table["primary"].value_counts().sort_index().to_dict(),
            "per_domain_real_text": real["primary"].value_counts().sort_index().to_dict(),
        },
        "params": params,
        "metrics": "filled in by the evaluate stage (see metrics.json)",
        "intended_use": "research on policy attention; not for decisions about individuals",
    }


def train(units: pd.DataFrame, labels_dir: str | Path, model_dir: str | Path,
          params: dict[str, Any]) -> tuple[DomainClassifier, dict[str, Any]]:
    """Fit on all labels and save model + card; returns both."""
    table = training_table(labels_dir, units, include_examples=bool(params.get("use_examples", True)))
    if table.empty:
        raise ValueError(f"no labelled units under {labels_dir}: annotate some first (see labels/GUIDE.md)")
    model = fit(table, params)
    card = model_card(table, params)
    save_model(model, model_dir, card)
    return model, card
