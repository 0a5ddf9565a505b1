"""Fit the domain classifier on everything that is labelled, measure it held out, and write it with
its model card.

Training data is only what is committed under `labels/`: merged annotations and adjudications of
real report units (joined to their units for the heading context) plus, when
`train.use_examples` is true, the team's codebook examples.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from sklearn.base import clone

from pipeline.errors import LabelError
from pipeline.evaluate import FINDINGS_KEYS, PROTOCOL, Evaluation, evaluate, has_two_documents
from pipeline.heldout import write_heldout
from pipeline.io import write_text
from pipeline.labels import split_examples, training_table
from pipeline.model import DomainClassifier, build_estimator, save_model

# secondary-domain thresholds tried (params.yaml evaluate.secondary_threshold_grid overrides)
DEFAULT_THRESHOLD_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


def held_out_metrics(evaluation: Evaluation | None) -> dict[str, Any]:
    """The card's copy of the leave-one-document-out figures of exactly this configuration."""
    if evaluation is None:
        return {"note": "fewer than two annotated documents: no held-out figures"}
    result = evaluation.scores
    keep = ("units", "accuracy", "lenient_accuracy", "macro_f1", "macro_f1_supported", "weighted_f1", "per_document")
    findings = {k: evaluation.headline[k] for k in FINDINGS_KEYS if k in evaluation.headline}
    threshold = evaluation.findings.get("multilabel", {}).get("secondary_threshold")
    return {"protocol": PROTOCOL, **{k: result[k] for k in keep}, **findings,
            **({"secondary_threshold": threshold} if threshold is not None else {}),
            "per_domain_f1": {d: m["f1"] for d, m in result["per_domain"].items() if m["support"]}}


def model_card(table: pd.DataFrame, params: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    real, _ = split_examples(table)
    return {
        "name": "policy-domains",
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
    lines = [f"# Model card: {card['name']}", "", f"- task: {card['task']}", f"- intended use: {card['intended_use']}",
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
        if "label_set_f1" in metrics:
            lines += ["", f"Secondary domains: score ≥ {metrics['secondary_threshold']}; label-set F1 "
                          f"{metrics['label_set_f1']} (nested). Share error per report (mean absolute, policy shares): "
                          f"raw {metrics['share_mae_raw']}, adjusted {metrics['share_mae_adjusted']}."]
    else:
        lines.append(metrics["note"])
    lines += ["", "## Parameters", "", "```", *(f"{k}: {v}" for k, v in card["params"].items()), "```", ""]
    return "\n".join(lines)


@dataclass
class Trained:
    """What a training run produced: the fitted model, its card, and its held-out evaluation."""

    model: DomainClassifier
    card: dict[str, Any]
    evaluation: Evaluation | None


def train(units: pd.DataFrame, labels_dir: str | Path, model_dir: str | Path,
          params: dict[str, Any], min_support: int = 10,
          threshold_grid: Sequence[float] = DEFAULT_THRESHOLD_GRID) -> Trained:
    """Fit on all labels, measure the same configuration leave-one-document-out, save model + card
    and what the held-out run taught (`heldout.json`: confusions, secondary-domain threshold).

    The saved files hold no timestamp, commit or run id (those go to MLflow), so the same labels
    and params give byte-identical files and `dvc repro` leaves `dvc.lock` unchanged."""
    use_examples = bool(params.get("use_examples", True))
    table = training_table(labels_dir, units, include_examples=use_examples)
    if table.empty:
        raise LabelError(f"no labelled units under {labels_dir}: annotate some first (see labels/GUIDE.md)")
    estimator = build_estimator(params)
    model = clone(estimator).fit(table, table["primary"])
    evaluation = evaluate(table, estimator, use_examples, min_support, threshold_grid) \
        if has_two_documents(table) else None
    card = model_card(table, params, held_out_metrics(evaluation))
    save_model(model, model_dir, card)
    write_text(Path(model_dir) / "model_card.md", card_markdown(card))
    if evaluation is not None:
        write_heldout(evaluation.heldout(), model_dir)
    return Trained(model, card, evaluation)
