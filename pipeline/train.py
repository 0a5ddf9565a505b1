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
from pipeline.io import write_text
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


def held_out_metrics(table: pd.DataFrame, params: dict[str, Any], min_support: int = 10) -> dict[str, Any]:
    """Leave-one-document-out figures of exactly this configuration, for the card beside the model.

    The evaluate stage compares candidates and baselines on the same folds; this is only the
    shipped model's row, so that the card travels with the model it describes.
    """
    from pipeline.evaluate import lodo, score, sklearn_fitter

    real = table[table["source"] != labels_mod.EXAMPLE_SOURCE]
    if real["doc"].nunique() < 2:
        return {"note": "fewer than two annotated documents: no held-out figures"}
    result = score(lodo(table, sklearn_fitter(params), bool(params.get("use_examples", True))), min_support)
    keep = ("units", "accuracy", "lenient_accuracy", "macro_f1", "macro_f1_supported", "weighted_f1", "per_document")
    return {"protocol": "leave-one-document-out over annotated real text; codebook examples never evaluated",
            **{k: result[k] for k in keep},
            "per_domain_f1": {d: m["f1"] for d, m in result["per_domain"].items() if m["support"]}}


def model_card(table: pd.DataFrame, params: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
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
        "metrics": metrics,
        "intended_use": "research on policy attention across places and years; not for decisions about individuals",
        "limitations": "trained on five local reports (Jiangxi, Zhejiang, Henan) and team-written examples; "
                       "national, older or traditional-character reports are further from the training data",
    }


def card_markdown(card: dict[str, Any]) -> str:
    """The card as a page a person reads (the JSON beside it is for programs)."""
    data, metrics = card["training_data"], card["metrics"]
    lines = [f"# Model card: {card['name']}", "", f"- created: {card['created']}", f"- git commit: {card['git_commit']}",
             f"- task: {card['task']}", f"- intended use: {card['intended_use']}",
             f"- limitations: {card['limitations']}", "", "## Training data", "",
             f"{data['labelled_units']} hand-labelled units from {len(data['documents'])} documents "
             f"({', '.join(data['documents'])}) and {data['codebook_examples']} codebook examples.", "",
             "| domain | all training rows | real-text units |", "|---|---|---|"]
    lines += [f"| {d} | {n} | {data['per_domain_real_text'].get(d, 0)} |" for d, n in data["per_domain"].items()]
    lines += ["", "## Held-out metrics", ""]
    if "accuracy" in metrics:
        lines += [metrics["protocol"], "", "| accuracy | lenient accuracy | macro-F1 | macro-F1 (≥10 units) | weighted-F1 |",
                  "|---|---|---|---|---|",
                  f"| {metrics['accuracy']} | {metrics['lenient_accuracy']} | {metrics['macro_f1']} | "
                  f"{metrics['macro_f1_supported']} | {metrics['weighted_f1']} |", "",
                  "Per-domain F1: " + ", ".join(f"{d} {f}" for d, f in metrics["per_domain_f1"].items())]
    else:
        lines.append(metrics["note"])
    lines += ["", "## Parameters", "", "```", *(f"{k}: {v}" for k, v in card["params"].items()), "```", ""]
    return "\n".join(lines)


def train(units: pd.DataFrame, labels_dir: str | Path, model_dir: str | Path,
          params: dict[str, Any], min_support: int = 10) -> tuple[DomainClassifier, dict[str, Any]]:
    """Fit on all labels, measure the same configuration held out, save model + card; returns both."""
    table = training_table(labels_dir, units, include_examples=bool(params.get("use_examples", True)))
    if table.empty:
        raise ValueError(f"no labelled units under {labels_dir}: annotate some first (see labels/GUIDE.md)")
    model = fit(table, params)
    card = model_card(table, params, held_out_metrics(table, params, min_support))
    save_model(model, model_dir, card)
    write_text(Path(model_dir) / "model_card.md", card_markdown(card))
    return model, card
