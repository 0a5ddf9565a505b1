"""Feature blocks of the classifier: character n-grams, jieba words, and the heading as context.

All blocks hash their features (no vocabulary to build or ship), so transforming a batch is one
pass of Python-level n-gram generation plus C-level hashing, which is where the time goes.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.pipeline import Pipeline

from pipeline.ingest import normalise_many

TEXT, HEADING = "text_norm", "heading_norm"


@lru_cache(maxsize=1)
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


@lru_cache(maxsize=200_000)
def _cut(text: str) -> tuple[str, ...]:
    return tuple(w for w in _jieba().lcut(text, HMM=False) if w.strip())


def jieba_words(text: str) -> list[str]:
    """Word unigrams and bigrams from jieba (cached per text: annotated units recur across runs)."""
    words = _cut(text)
    return list(words) + [f"{a} {b}" for a, b in zip(words, words[1:])]


def model_input(units: pd.DataFrame) -> pd.DataFrame:
    """The two columns the model reads, from any units frame (headings normalised once each)."""
    if TEXT in units:
        text = units[TEXT].fillna("").astype(str).tolist()
    else:
        text = normalise_many(units["text"].fillna("").astype(str).tolist())
    headings = units["heading"].fillna("").astype(str) if "heading" in units else pd.Series([""] * len(units))
    unique = headings.unique().tolist()
    lookup = dict(zip(unique, normalise_many(unique)))
    return pd.DataFrame({TEXT: text, HEADING: headings.map(lookup).tolist()}, index=units.index)


def _hashed(analyzer: Any, n_features: int, ngram_range: tuple[int, int] = (1, 1)) -> Pipeline:
    return Pipeline([
        ("hash", HashingVectorizer(analyzer=analyzer, ngram_range=ngram_range, n_features=n_features,
                                   alternate_sign=False, norm=None, lowercase=False)),
        ("tfidf", TfidfTransformer(sublinear_tf=True)),
    ])


def build_features(params: dict[str, Any]) -> ColumnTransformer:
    """The feature union selected by params (train section of params.yaml)."""
    lo, hi = int(params.get("char_ngram_min", 1)), int(params.get("char_ngram_max", 3))
    n = int(params.get("char_features", 2 ** 18))
    blocks = [("char", _hashed("char", n, (lo, hi)), TEXT)]
    weights = {"char": 1.0}
    if params.get("word_features", True):
        blocks.append(("word", _hashed(jieba_words, n // 2), TEXT))
        weights["word"] = float(params.get("word_weight", 1.0))
    if params.get("heading_features", True):
        blocks.append(("heading", _hashed("char", n // 4, (1, 2)), HEADING))
        weights["heading"] = float(params.get("heading_weight", 0.5))
    return ColumnTransformer(blocks, transformer_weights=weights, sparse_threshold=1.0)
