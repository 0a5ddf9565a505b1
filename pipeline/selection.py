"""Model selection on the same leave-one-document-out folds: candidates, ablations, baselines and
the learning curve.

Each row answers one question about the shipped configuration: would another classifier do better
(`candidates`), does each design choice earn its place (heading block, jieba words, context
smoothing), how far above trivial and off-the-shelf models is it (majority, spaCy textcat), and
would more labels still help (learning curve, with and without the codebook examples).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from pipeline.evaluate import Evaluation, lodo, score, write_csv
from pipeline.io import write_text
from pipeline.labels import is_example, split_examples
from pipeline.model import build_estimator


class MajorityModel(ClassifierMixin, BaseEstimator):
    """Always the training set's domain shares: the floor every model must clear."""

    def __init__(self, domains: Sequence[str] = ()) -> None:
        self.domains = domains

    def fit(self, units: pd.DataFrame, y: Any) -> "MajorityModel":
        counts = pd.Series(np.asarray(y)).value_counts()
        self.classes_ = np.array(list(self.domains))
        self.proba_ = np.array([counts.get(d, 0) for d in self.classes_], dtype=float) / counts.sum()
        return self

    def predict_proba(self, units: pd.DataFrame) -> np.ndarray:
        return np.tile(self.proba_, (len(units), 1))


class TextcatModel(ClassifierMixin, BaseEstimator):
    """A spaCy bag-of-words textcat over jieba tokens, trained from scratch: the spaCy baseline."""

    def __init__(self, domains: Sequence[str] = (), epochs: int = 8, seed: int = 0) -> None:
        self.domains = domains
        self.epochs = epochs
        self.seed = seed

    def fit(self, units: pd.DataFrame, y: Any) -> "TextcatModel":
        import spacy
        from spacy.training import Example

        spacy.util.fix_random_seed(self.seed)
        self.classes_ = np.array(list(self.domains))
        nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": "jieba"}}})
        textcat = nlp.add_pipe("textcat", config={"model": {
            "@architectures": "spacy.TextCatBOW.v3", "exclusive_classes": True, "ngram_size": 2,
            "no_output_layer": False, "length": 262144}})
        for d in self.classes_:
            textcat.add_label(str(d))
        docs = list(nlp.pipe(units["text"].astype(str).tolist()))
        examples = [Example.from_dict(doc, {"cats": {str(d): float(d == label) for d in self.classes_}})
                    for doc, label in zip(docs, np.asarray(y))]
        optimizer = nlp.initialize(lambda: examples)
        rng = random.Random(self.seed)
        for _ in range(self.epochs):
            rng.shuffle(examples)
            for start in range(0, len(examples), 32):
                nlp.update(examples[start:start + 32], sgd=optimizer, drop=0.1)
        self.nlp_ = nlp
        return self

    def predict_proba(self, units: pd.DataFrame) -> np.ndarray:
        docs = self.nlp_.pipe(units["text"].astype(str).tolist())
        return np.array([[doc.cats.get(str(d), 0.0) for d in self.classes_] for doc in docs])


@dataclass
class Comparison:
    """The comparison table (one row per configuration), what it says about selection, and the curve."""

    rows: list[dict[str, Any]]
    selection: dict[str, Any]
    curve: pd.DataFrame

    def summary(self) -> dict[str, Any]:
        return {"selection": self.selection, "table": self.rows}


def compare_models(table: pd.DataFrame, train_params: dict[str, Any], eval_params: dict[str, Any],
            shipped: Evaluation, progress: Callable[[str], None] = lambda s: None) -> Comparison:
    """Score every configured alternative on the shipped model's folds; `shipped` is its row."""
    min_support = int(eval_params["min_support"])
    use_examples = bool(train_params.get("use_examples", True))
    chosen = shipped.model
    domains = list(shipped.scores["per_domain"])
    rows: list[dict[str, Any]] = []

    def add(name: str, kind: str, examples: bool, m: dict[str, Any]) -> None:
        rows.append({"model": name, "kind": kind, "examples": examples,
                     **{k: m[k] for k in ("accuracy", "lenient_accuracy", "macro_f1", "macro_f1_supported",
                                          "weighted_f1")}})

    def run(name: str, estimator: BaseEstimator, examples: bool, kind: str) -> None:
        progress(f"LODO: {name} ({'with' if examples else 'without'} examples)")
        add(name, kind, examples, score(lodo(table, estimator, examples), min_support))

    add(chosen, "shipped", use_examples, shipped.scores)
    has_examples = bool(is_example(table).any())
    for name in [chosen] + [c for c in eval_params.get("candidates", []) if c != chosen]:
        for examples in ([True, False] if has_examples else [False]):
            if name == chosen and examples == use_examples:
                continue
            run(name, build_estimator(train_params, classifier=name), examples, "candidate")
    for label, override in _ablations(train_params, chosen):
        run(label, build_estimator(train_params, **override), use_examples, "ablation")
    baselines = eval_params.get("baselines", [])
    if "majority" in baselines:
        run("majority", MajorityModel(domains), use_examples, "baseline")
    if "spacy_textcat" in baselines:
        run("spacy_textcat", TextcatModel(domains, int(eval_params["textcat_epochs"]), int(train_params["seed"])),
            use_examples, "baseline")

    frame = pd.DataFrame(rows)
    best = frame.sort_values("macro_f1", ascending=False).iloc[0]
    baseline_best = frame.loc[frame["kind"] == "baseline", "macro_f1"].max() if baselines else float("-inf")
    selection = {"best_by_macro_f1": f"{best['model']}{' +examples' if best['examples'] else ''}",
                 "shipped_beats_baselines": bool(shipped.scores["macro_f1"] > baseline_best),
                 "shipped_is_best": bool(shipped.scores["macro_f1"] >= best["macro_f1"])}
    progress("learning curve")
    curve = learning_curve(table, train_params, list(eval_params["learning_curve_points"]), min_support)
    return Comparison(rows, selection, curve)


def _ablations(train_params: dict[str, Any], chosen: str) -> list[tuple[str, dict[str, Any]]]:
    """Each design choice flipped on its own: (row name, override)."""
    heading = bool(train_params.get("heading_features"))
    words = bool(train_params.get("word_features"))
    out = [(f"{chosen} {'without' if heading else 'with'} heading", {"heading_features": not heading}),
           (f"{chosen} {'without words' if words else 'with jieba words'}", {"word_features": not words})]
    if float(train_params.get("context_smoothing", 0)) > 0:
        out.append((f"{chosen} without context smoothing", {"context_smoothing": 0.0}))
    return out


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
    seed = int(train_params["seed"])
    real, _ = split_examples(table)
    mean_train = float(np.mean([len(real) - n for n in real["doc"].value_counts()]))
    estimator = build_estimator(train_params)
    rows = []
    for fraction in fractions:
        sample = (lambda t, f=fraction: _subsample(t, f, seed)) if fraction < 1 else None
        row: dict[str, Any] = {"fraction": fraction, "labelled_units": round(mean_train * fraction)}
        for examples, suffix in ((True, ""), (False, "_without_examples")):
            m = score(lodo(table, estimator, examples, sample), min_support)
            row.update({f"accuracy{suffix}": m["accuracy"], f"macro_f1{suffix}": m["macro_f1"]})
        rows.append(row)
    return pd.DataFrame(rows)


def write_comparison(comparison: Comparison, out_dir: str | Path) -> list[Path]:
    """comparison.json (selection + table), the table as CSV, and the learning curve (CSV and PNG)."""
    from pipeline import charts

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curve = comparison.curve
    write_text(out_dir / "comparison.json", json.dumps(comparison.summary(), ensure_ascii=False, indent=2))
    return [out_dir / "comparison.json", write_csv(pd.DataFrame(comparison.rows), out_dir / "table.csv"),
            write_csv(curve, out_dir / "learning_curve.csv"),
            charts.lines(curve, "labelled_units", ["accuracy", "macro_f1", "accuracy_without_examples",
                                                   "macro_f1_without_examples"],
                         "Learning curve (LODO)", out_dir / "learning_curve.png", "labelled real units in training")]
