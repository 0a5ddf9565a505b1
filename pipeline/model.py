"""The domain classifier as a scikit-learn estimator, its baselines, and safe persistence.

`DomainClassifier` wraps a Pipeline (features → linear model → calibration) and always answers
over all 17 ids, in taxonomy order, even for domains absent from a training fold. Units that come
with their place in a document (`doc` and `index` columns) are then smoothed with their
neighbours' probabilities: consecutive sentences of a report mostly share a domain (72% of the
annotated seed units do), which a sentence alone cannot see. Models are saved
with skops (no pickle) and a SHA-256 recorded beside them; `load_model` refuses a file whose hash
differs or that contains types outside an explicit trusted list.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from pipeline.errors import LabelError, ModelError, ModelIntegrityError, UsageError
from pipeline.features import build_features, model_input
from pipeline.io import atomic_path, write_text
from pipeline.taxonomy import domain_ids, taxonomy_path

MODEL_FILE = "model.skops"
CHECKSUM_FILE = "model.sha256"


def make_classifier(name: str, C: float = 1.0, class_weight: str | None = None, seed: int = 0) -> BaseEstimator:
    """A linear classifier by name (params.yaml `train.classifier`), calibrated where it needs it."""
    weight = class_weight or None
    if name == "logreg":
        # saga: ~2 s on the seed training set, where lbfgs took minutes on 260k hashed features
        return LogisticRegression(C=C, class_weight=weight, solver="saga", max_iter=300, tol=1e-4, random_state=seed)
    if name == "svm":
        return LinearSVC(C=C / 8, class_weight=weight, random_state=seed)
    if name == "cnb":
        return ComplementNB(alpha=0.3)
    if name == "ensemble":
        return VotingClassifier([
            ("logreg", make_classifier("logreg", C, class_weight, seed)),
            ("svm", _calibrated(make_classifier("svm", C, class_weight, seed), "sigmoid", 3)),
            ("cnb", make_classifier("cnb")),
        ], voting="soft")
    raise UsageError(f"unknown classifier '{name}' (logreg, svm, cnb, ensemble)")


def _calibrated(estimator: BaseEstimator, method: str, cv: int) -> BaseEstimator:
    return CalibratedClassifierCV(estimator, method=method, cv=cv, ensemble=False)


class DomainClassifier(ClassifierMixin, BaseEstimator):
    """Units frame in, probabilities over all domain ids out (a scikit-learn estimator).

    Every hyperparameter is a keyword argument whose default is defined here and nowhere else;
    `params.yaml` (section `train`) is where a user changes them. `domains` fixes the score
    columns (the taxonomy order); without it the classes are the sorted labels seen in `fit`.
    """

    def __init__(self, *, domains: Sequence[str] | None = None, classifier: str = "svm", C: float = 16.0,
                 class_weight: str | None = "balanced", char_ngram_min: int = 1, char_ngram_max: int = 3,
                 char_features: int = 2 ** 18, word_features: bool = False, word_weight: float = 1.0,
                 word_tokenizer: str = "jieba", heading_features: bool = False, heading_weight: float = 0.5,
                 context_smoothing: float = 0.5, context_window: int = 3, other_weight: float = 0.8,
                 calibration: str = "sigmoid", calibration_cv: int = 3, seed: int = 13) -> None:
        self.domains = domains
        self.classifier = classifier
        self.C = C
        self.class_weight = class_weight
        self.char_ngram_min = char_ngram_min
        self.char_ngram_max = char_ngram_max
        self.char_features = char_features
        self.word_features = word_features
        self.word_weight = word_weight
        self.word_tokenizer = word_tokenizer
        self.heading_features = heading_features
        self.heading_weight = heading_weight
        self.context_smoothing = context_smoothing
        self.context_window = context_window
        self.other_weight = other_weight
        self.calibration = calibration
        self.calibration_cv = calibration_cv
        self.seed = seed

    def _pipeline(self, y: np.ndarray) -> Pipeline:
        clf = make_classifier(self.classifier, float(self.C), self.class_weight, int(self.seed))
        method, cv = self.calibration, int(self.calibration_cv)
        counts = pd.Series(y).value_counts()
        if self.classifier == "svm" and method != "none" and counts.min() >= cv:
            clf = _calibrated(clf, method, cv)
        elif self.classifier == "svm":  # too few examples to calibrate: still need probabilities
            if counts.min() < 2:
                rare = ", ".join(f"{d} ({n})" for d, n in counts[counts < 2].items())
                raise LabelError(f"too few training units for a probability model: {rare}; the SVM needs at least "
                                 "2 per domain present (add labels or codebook examples, or drop the domain)")
            clf = _calibrated(clf, "sigmoid", max(2, min(cv, int(counts.min()))))
        features = build_features(
            char_ngram_range=(int(self.char_ngram_min), int(self.char_ngram_max)),
            char_features=int(self.char_features), word_features=bool(self.word_features),
            word_tokenizer=self.word_tokenizer, word_weight=float(self.word_weight),
            heading_features=bool(self.heading_features), heading_weight=float(self.heading_weight))
        return Pipeline([("features", features), ("clf", clf)])

    def fit(self, units: pd.DataFrame, y: Any) -> "DomainClassifier":
        y = np.asarray(y)
        self.classes_ = np.array(list(self.domains) if self.domains is not None else sorted(set(y)))
        unknown = set(y) - set(self.classes_)
        if unknown:
            raise LabelError(f"labels outside the domain list: {sorted(unknown)}")
        self.pipeline_ = self._pipeline(y).fit(model_input(units), y)
        return self

    def predict_proba(self, units: pd.DataFrame) -> np.ndarray:
        proba = self.pipeline_.predict_proba(model_input(units))
        full = np.zeros((len(units), len(self.classes_)))
        seen = list(self.pipeline_.classes_)
        full[:, [list(self.classes_).index(c) for c in seen]] = proba
        if {"doc", "index"} <= set(units.columns):
            full = smooth_in_documents(full, units["doc"], units["index"], float(self.context_smoothing),
                                       int(self.context_window))
        if self.other_weight != 1.0 and "other" in self.classes_:
            # `other` is what unfamiliar text falls back to; a weight < 1 asks for more evidence
            full[:, list(self.classes_).index("other")] *= float(self.other_weight)
            full /= np.maximum(full.sum(axis=1, keepdims=True), 1e-12)
        return full

    def predict(self, units: pd.DataFrame) -> np.ndarray:
        return self.classes_[self.predict_proba(units).argmax(axis=1)]


def smooth_in_documents(proba: np.ndarray, docs: Any, index: Any, weight: float, window: int) -> np.ndarray:
    """Mix each unit's probabilities with its neighbours' within the same document.

    ``(1 - weight) * own + weight * neighbours``, where the neighbours up to `window` units away on
    each side count 1, 1/2, 1/4 … by distance. Units are ordered by `index` inside each `doc`; a
    unit with no neighbour keeps its own probabilities. Rows come back in the input order.
    """
    if weight <= 0 or window <= 0 or len(proba) < 2:
        return proba
    doc_codes = pd.factorize(pd.Series(docs).astype(str), sort=False)[0]
    order = np.lexsort((np.asarray(index, dtype=float), doc_codes))
    ordered, same_doc = proba[order], doc_codes[order]
    context = np.zeros_like(ordered)
    for distance in range(1, window + 1):
        if distance >= len(ordered):
            break
        linked = (same_doc[distance:] == same_doc[:-distance])[:, None] * 0.5 ** (distance - 1)
        context[distance:] += ordered[:-distance] * linked
        context[:-distance] += ordered[distance:] * linked
    total = context.sum(axis=1, keepdims=True)
    has = total[:, 0] > 0
    mixed = ordered.copy()
    mixed[has] = (1 - weight) * ordered[has] + weight * context[has] / total[has]
    out = np.empty_like(mixed)
    out[order] = mixed
    return out


# Keys of params.yaml's `train` section that choose the training data, not the estimator.
TRAINING_DATA_KEYS = ("use_examples",)


def build_estimator(params: Mapping[str, Any], domains: Sequence[str] | None = None,
                    **overrides: Any) -> DomainClassifier:
    """The classifier configured by params.yaml's `train` section (plus overrides), over `domains`
    (default: the taxonomy's ids). An unknown key is an error, so a typo never silently does nothing."""
    settings = {k: v for k, v in {**params, **overrides}.items() if k not in TRAINING_DATA_KEYS}
    unknown = sorted(set(settings) - set(DomainClassifier._get_param_names()))
    if unknown:
        raise UsageError(f"params.yaml train: unknown key(s) {', '.join(unknown)} "
                         f"(known: {', '.join(DomainClassifier._get_param_names())})")
    settings.pop("domains", None)
    return DomainClassifier(domains=tuple(domains or domain_ids()), **settings)


# ---------------------------------------------------------------- persistence

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def trusted_types() -> list[str]:
    """Every type a saved model may contain; anything else makes `load_model` refuse the file."""
    return [
        "pipeline.model.DomainClassifier",
        "pipeline.features.jieba_words",
        "pipeline.features.hanlp_words",
        "pipeline.features.CharNgramHasher",
        "sklearn.compose._column_transformer.ColumnTransformer",
        "sklearn.feature_extraction.text.HashingVectorizer",
        "sklearn.feature_extraction.text.TfidfTransformer",
        "sklearn.pipeline.Pipeline",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.svm._classes.LinearSVC",
        "sklearn.naive_bayes.ComplementNB",
        "sklearn.ensemble._voting.VotingClassifier",
        "sklearn.calibration.CalibratedClassifierCV",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.isotonic.IsotonicRegression",
        "sklearn.preprocessing._label.LabelEncoder",
        "sklearn.utils._bunch.Bunch",
        "builtins.slice",
        "numpy.float64", "numpy.int64", "numpy.dtype", "numpy.ndarray",
        "scipy.sparse._csr.csr_matrix",
    ]


def save_model(model: DomainClassifier, model_dir: str | Path, card: dict[str, Any] | None = None) -> Path:
    """Write model.skops, its checksum and (optionally) the model card, each atomically."""
    import skops.io as sio

    model_dir = Path(model_dir)
    target = model_dir / MODEL_FILE  # atomic_path makes the folder
    with atomic_path(target) as tmp:
        tmp.write_bytes(canonical_skops(sio.dumps(model)))
    write_text(model_dir / CHECKSUM_FILE, f"{_sha256(target)}  {MODEL_FILE}\n")
    if card is not None:
        write_text(model_dir / "model_card.json", json.dumps(card, ensure_ascii=False, indent=2, default=str))
    return target


_EPOCH = (1980, 1, 1, 0, 0, 0)


def canonical_skops(data: bytes) -> bytes:
    """The same skops archive with reproducible bytes: skops names each array file and `__id__` by
    the object's memory address and stamps zip entries with the current time, so two trainings of
    the same model would differ. Addresses are renumbered in order of appearance, entries sorted
    and dated 1980-01-01; loading reads names from the schema, so the model itself is unchanged."""
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        schema = json.loads(src.read("schema.json"))
        numbers: dict[int, int] = {}
        renamed: dict[str, str] = {}

        def number(value: int) -> int:
            return numbers.setdefault(value, len(numbers) + 1)

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if isinstance(node.get("__id__"), int):
                    node["__id__"] = number(node["__id__"])
                if isinstance(node.get("file"), str):
                    stem, dot, suffix = node["file"].partition(".")
                    new = f"{number(int(stem))}{dot}{suffix}" if stem.isdigit() else node["file"]
                    renamed[node["file"]] = new
                    node["file"] = new
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(schema)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as dst:
            entries = {"schema.json": json.dumps(schema, indent=2).encode("utf-8")}
            entries.update({renamed.get(n, n): src.read(n) for n in src.namelist() if n != "schema.json"})
            for name in sorted(entries):
                dst.writestr(zipfile.ZipInfo(name, date_time=_EPOCH), entries[name])
    return out.getvalue()


def _expected_sha256(sums: Path, path: Path) -> str:
    try:
        words = sums.read_bytes().decode("ascii").split()
    except (OSError, UnicodeDecodeError):
        words = []
    if not words or not re.fullmatch(r"[0-9a-f]{64}", words[0]):
        raise ModelIntegrityError(f"{sums}: empty or not a SHA-256 checksum, so {path.name} cannot be verified; "
                                  "refusing to load it (retrain with `dvc repro`, or restore both files)")
    return words[0]


def load_model(model_dir: str | Path) -> DomainClassifier:
    """Load a saved model after checking its SHA-256, that it holds only trusted types, and that it is
    a `DomainClassifier` over the taxonomy's ids (a model for another domain list would mislabel
    every score column)."""
    import skops.io as sio

    model_dir = Path(model_dir)
    path = model_dir / MODEL_FILE if model_dir.is_dir() else model_dir
    sums = path.parent / CHECKSUM_FILE
    if not path.exists():
        raise ModelError(f"{path}: no model here; run `dvc repro` (or `make run`) to train one, or pass --model DIR")
    if not sums.exists():
        raise ModelIntegrityError(f"{path}: no {CHECKSUM_FILE} beside the model; refusing to load an unverified file")
    expected = _expected_sha256(sums, path)
    try:
        actual = _sha256(path)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model ({exc.strerror or exc})") from None
    if actual != expected:
        raise ModelIntegrityError(f"{path}: checksum mismatch (expected {expected[:12]}…, got {actual[:12]}…); "
                                  "the file was modified or corrupted, refusing to load it")
    try:
        untrusted = set(sio.get_untrusted_types(file=path)) - set(trusted_types())
        if untrusted:
            raise ModelIntegrityError(f"{path}: contains untrusted types {sorted(untrusted)}; refusing to load it")
        model = sio.load(path, trusted=trusted_types())
    except ModelIntegrityError:
        raise
    except Exception as exc:  # noqa: BLE001 - skops parsing a broken archive can raise anything
        raise ModelIntegrityError(f"{path}: not a readable skops model ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); retrain with `dvc repro`") from None
    return _checked(model, path)


def _checked(model: Any, path: Path) -> DomainClassifier:
    if not isinstance(model, DomainClassifier):
        raise ModelError(f"{path}: holds a {type(model).__name__}, not a policy-domains model; retrain with "
                         "`dvc repro` or pass --model DIR of one")
    ids = [str(c) for c in getattr(model, "classes_", [])]
    # inside a project the model must answer over its taxonomy; a model served or shipped on its own
    # (MLflow, Spark executors) has no taxonomy file beside it and carries its own domain list
    if taxonomy_path().exists() and ids != domain_ids():
        raise ModelError(f"{path}: trained for {len(ids)} domain id(s) ({', '.join(ids[:5])}{', …' if len(ids) > 5 else ''}) "
                         f"that are not the {len(domain_ids())} of labels/taxonomy.yaml in their order; retrain with "
                         "`dvc repro` after changing the taxonomy")
    return model
