"""Honest evaluation: leave-one-document-out over annotated real text, candidates and baselines.

Every figure comes from predicting units of a document the model did not see. Codebook examples
may join the training side of a fold (``use_examples``) but never the test side. The table holds
each candidate classifier with and without examples, the majority and spaCy textcat baselines,
and the heading-context and word-feature ablations, all on the same folds.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from pipeline.labels import EXAMPLE_SOURCE
from pipeline.taxonomy import domain_ids
from pipeline.train import fit

Fitter = Callable[[pd.DataFrame], Any]


def metrics(gold: pd.Series, gold_sets: pd.Series, pred: np.ndarray, min_support: int = 10) -> dict[str, Any]:
    """Accuracy, lenient accuracy, macro/weighted F1 and per-domain P/R/F1 of primary predictions.

    Macro-F1 averages over the domains present in the gold labels; ``macro_f1_supported`` only over
    domains with at least `min_support` gold units (small classes make macro-F1 noisy).
    """
    gold = pd.Series(gold).reset_index(drop=True)
    pred = np.asarray(pred)
    present = [d for d in domain_ids() if (gold == d).any()]
    supported = [d for d in present if (gold == d).sum() >= min_support]
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=domain_ids(), zero_division=0)
    per_domain = {d: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                      "f1": round(float(f[i]), 4), "support": int(s[i])} for i, d in enumerate(domain_ids())}
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


def lodo(table: pd.DataFrame, fitter: Fitter, use_examples: bool, train_filter: Callable | None = None) -> pd.DataFrame:
    """Out-of-fold predictions: for each annotated document, train without it and predict it."""
    real = table[table["source"] != EXAMPLE_SOURCE]
    examples = table[table["source"] == EXAMPLE_SOURCE]
    parts = []
    for doc in sorted(real["doc"].unique()):
        test = real[real["doc"] == doc]
        train_real = real[real["doc"] != doc]
        if train_filter is not None:
            train_real = train_filter(train_real)
        train = pd.concat([train_real, examples]) if use_examples else train_real
        model = fitter(train)
        proba = model.predict_proba(test)
        part = test[["text_hash", "doc", "text", "primary", "domains"]].copy()
        part["pred"] = np.array(domain_ids())[proba.argmax(axis=1)]
        part["confidence"] = proba.max(axis=1)
        for i, d in enumerate(domain_ids()):
            part[f"p_{d}"] = proba[:, i]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def score(oof: pd.DataFrame, min_support: int) -> dict[str, Any]:
    result = metrics(oof["primary"], oof["domains"], oof["pred"].to_numpy(), min_support)
    result["per_document"] = {doc: round(float((g["pred"] == g["primary"]).mean()), 4)
                              for doc, g in oof.groupby("doc")}
    return result


def sklearn_fitter(params: dict[str, Any], classifier: str | None = None, **overrides: Any) -> Fitter:
    merged = {**params, **overrides}
    return lambda train: fit(train, merged, classifier)


# ---------------------------------------------------------------- spaCy textcat baseline

class TextcatModel:
    """A spaCy bag-of-words textcat over jieba tokens, trained from scratch: the spaCy baseline."""

    def __init__(self, epochs: int = 8, seed: int = 0) -> None:
        self.epochs, self.seed = epochs, seed

    def fit(self, train: pd.DataFrame) -> "TextcatModel":
        import random

        import spacy
        from spacy.training import Example

        spacy.util.fix_random_seed(self.seed)
        nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": "jieba"}}})
        textcat = nlp.add_pipe("textcat", config={"model": {
            "@architectures": "spacy.TextCatBOW.v3", "exclusive_classes": True, "ngram_size": 2,
            "no_output_layer": False, "length": 262144}})
        for d in domain_ids():
            textcat.add_label(d)
        docs = list(nlp.pipe(train["text"].astype(str).tolist()))
        examples = [Example.from_dict(doc, {"cats": {d: float(d == y) for d in domain_ids()}})
                    for doc, y in zip(docs, train["primary"])]
        optimizer = nlp.initialize(lambda: examples)
        rng = random.Random(self.seed)
        for _ in range(self.epochs):
            rng.shuffle(examples)
            for start in range(0, len(examples), 32):
                nlp.update(examples[start:start + 32], sgd=optimizer, drop=0.1)
        self.nlp = nlp
        return self

    def predict_proba(self, units: pd.DataFrame) -> np.ndarray:
        docs = self.nlp.pipe(units["text"].astype(str).tolist())
        return np.array([[doc.cats.get(d, 0.0) for d in domain_ids()] for doc in docs])


def majority_fitter() -> Fitter:
    class Majority:
        def fit(self, train: pd.DataFrame) -> "Majority":
            counts = train["primary"].value_counts()
            self.proba = np.array([counts.get(d, 0) for d in domain_ids()], dtype=float) / counts.sum()
            return self

        def predict_proba(self, units: pd.DataFrame) -> np.ndarray:
            return np.tile(self.proba, (len(units), 1))

    return lambda train: Majority().fit(train)


# ---------------------------------------------------------------- the whole evaluation

def evaluate(table: pd.DataFrame, train_params: dict[str, Any], eval_params: dict[str, Any],
             progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Run every configured comparison on the same LODO folds; returns metrics and the OOF table."""
    min_support = int(eval_params.get("min_support", 10))
    use_examples = bool(train_params.get("use_examples", True))
    chosen = train_params.get("classifier", "logreg")
    rows, results = [], {}

    def run(name: str, fitter: Fitter, examples: bool, kind: str) -> pd.DataFrame:
        progress(f"LODO: {name} ({'with' if examples else 'without'} examples)")
        oof = lodo(table, fitter, examples)
        m = score(oof, min_support)
        key = f"{name}{'+examples' if examples else ''}"
        results[key] = m
        rows.append({"model": name, "kind": kind, "examples": examples, "accuracy": m["accuracy"],
                     "lenient_accuracy": m["lenient_accuracy"], "macro_f1": m["macro_f1"],
                     "macro_f1_supported": m["macro_f1_supported"], "weighted_f1": m["weighted_f1"]})
        return oof

    shipped = run(chosen, sklearn_fitter(train_params, chosen), use_examples, "shipped")
    has_examples = (table["source"] == EXAMPLE_SOURCE).any()
    for name in [chosen] + [c for c in eval_params.get("candidates", []) if c != chosen]:
        for examples in ([True, False] if has_examples else [False]):
            if name == chosen and examples == use_examples:
                continue
            run(name, sklearn_fitter(train_params, name), examples, "candidate")
    with_heading = bool(train_params.get("heading_features", True))
    run(f"{chosen} {'without' if with_heading else 'with'} heading",
        sklearn_fitter(train_params, chosen, heading_features=not with_heading), use_examples, "ablation")
    if train_params.get("word_features", False):
        run(f"{chosen} without words", sklearn_fitter(train_params, chosen, word_features=False),
            use_examples, "ablation")
    else:
        run(f"{chosen} with jieba words", sklearn_fitter(train_params, chosen, word_features=True),
            use_examples, "ablation")
    if float(train_params.get("context_smoothing", 0)) > 0:
        run(f"{chosen} without context smoothing", sklearn_fitter(train_params, chosen, context_smoothing=0.0),
            use_examples, "ablation")
    baselines = eval_params.get("baselines", [])
    if "majority" in baselines:
        run("majority", majority_fitter(), use_examples, "baseline")
    if "spacy_textcat" in baselines:
        epochs, seed = int(eval_params.get("textcat_epochs", 8)), int(train_params.get("seed", 0))
        run("spacy_textcat", lambda train: TextcatModel(epochs, seed).fit(train), use_examples, "baseline")

    table_df = pd.DataFrame(rows)
    shipped_row = table_df.iloc[0]
    best = table_df.sort_values("macro_f1", ascending=False).iloc[0]
    baseline_best = table_df[table_df["kind"] == "baseline"]["macro_f1"].max() if baselines else float("-inf")
    headline = results[f"{chosen}{'+examples' if use_examples else ''}"]
    return {
        "headline": {k: headline[k] for k in ("units", "accuracy", "lenient_accuracy", "macro_f1",
                                              "macro_f1_supported", "weighted_f1")},
        "protocol": "leave-one-document-out over annotated real text; codebook examples never evaluated",
        "model": chosen, "use_examples": use_examples,
        "per_domain": headline["per_domain"], "per_document": headline["per_document"],
        "supported_domains": headline["supported_domains"],
        "selection": {"best_by_macro_f1": f"{best['model']}{' +examples' if best['examples'] else ''}",
                      "shipped_beats_baselines": bool(shipped_row["macro_f1"] > baseline_best),
                      "shipped_is_best": bool(shipped_row["macro_f1"] >= best["macro_f1"])},
        "table": rows,
        "_oof": shipped,
    }


def confusion(oof: pd.DataFrame) -> pd.DataFrame:
    ids = domain_ids()
    return pd.DataFrame(confusion_matrix(oof["primary"], oof["pred"], labels=ids), index=ids, columns=ids)


def _subsample(train: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A fraction of each domain's units, never fewer than two where the fold has two (a calibrated
    model needs two per domain; a plain random draw can leave a rare domain with one)."""
    keep = [i for _, g in train.groupby("primary")
            for i in g.sample(n=min(len(g), max(2, round(fraction * len(g)))), random_state=seed).index]
    return train.loc[sorted(keep)]


def learning_curve(table: pd.DataFrame, train_params: dict[str, Any], fractions: list[float],
                   min_support: int = 10) -> pd.DataFrame:
    """LODO metrics when only a fraction of the labelled real units of the training folds is used,
    with and without the codebook examples (without them the curve shows what labels alone buy)."""
    seed = int(train_params.get("seed", 0))
    real = table[table["source"] != EXAMPLE_SOURCE]
    mean_train = float(np.mean([len(real) - n for n in real["doc"].value_counts()]))
    rows = []
    for fraction in fractions:
        sample = (lambda t, f=fraction: _subsample(t, f, seed)) if fraction < 1 else None
        row: dict[str, Any] = {"fraction": fraction, "labelled_units": round(mean_train * fraction)}
        for examples, suffix in ((True, ""), (False, "_without_examples")):
            m = score(lodo(table, sklearn_fitter(train_params), examples, sample), min_support)
            row.update({f"accuracy{suffix}": m["accuracy"], f"macro_f1{suffix}": m["macro_f1"]})
        rows.append(row)
    return pd.DataFrame(rows)


def write_outputs(result: dict[str, Any], table: pd.DataFrame, params: dict[str, Any], eval_dir: Any,
                  metrics_path: Any, progress: Callable[[str], None] = lambda s: None) -> list[Any]:
    """metrics.json, the evaluation table, per-domain report, confusion and learning-curve data and PNGs."""
    import json
    from pathlib import Path

    from pipeline import charts
    from pipeline.io import atomic_path, write_text

    eval_dir = Path(eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    oof = result.pop("_oof")
    write_text(metrics_path, json.dumps(result, ensure_ascii=False, indent=2))
    table_df = pd.DataFrame(result["table"])
    per_domain = pd.DataFrame(result["per_domain"]).T.rename_axis("domain").reset_index()
    cm = confusion(oof)
    progress("learning curve")
    curve = learning_curve(table, params["train"], list(params["evaluate"].get("learning_curve_points", [1.0])),
                           int(params["evaluate"].get("min_support", 10)))
    files = {
        "table.csv": table_df, "per_domain.csv": per_domain, "learning_curve.csv": curve,
        "confusion.csv": oof[["primary", "pred"]].rename(columns={"primary": "actual", "pred": "predicted"}),
    }
    written = []
    for name, frame in files.items():
        with atomic_path(eval_dir / name) as tmp:
            frame.to_csv(tmp, index=False)
        written.append(eval_dir / name)
    with atomic_path(eval_dir / "oof.parquet") as tmp:
        oof.drop(columns=["domains"]).assign(domains=oof["domains"].map("|".join)).to_parquet(tmp)
    written.append(eval_dir / "oof.parquet")
    written.append(charts.heatmap(cm, f"Confusion matrix, leave-one-document-out ({len(oof)} units)",
                                  eval_dir / "confusion.png", xlabel="predicted", ylabel="gold"))
    written.append(charts.lines(curve, "labelled_units", ["accuracy", "macro_f1", "accuracy_without_examples",
                                                          "macro_f1_without_examples"],
                                "Learning curve (LODO)", eval_dir / "learning_curve.png",
                                "labelled real units in training"))
    return written
