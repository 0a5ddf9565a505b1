"""Feature blocks of the classifier: character n-grams, jieba words, and the heading as context.

Every block hashes its features (no vocabulary to build or ship). Character n-grams, the block
that matters, are hashed by `CharNgramHasher` in vectorised numpy over a whole batch at once:
scikit-learn's `HashingVectorizer` builds each n-gram as a Python string, which made feature
extraction about 90% of prediction time and kept the model under 20,000 sentences/s.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.pipeline import Pipeline

from pipeline.errors import UsageError
from pipeline.ingest import normalise_many

TEXT, HEADING = "text_norm", "heading_norm"

# splitmix64 finaliser constants: spread the polynomial n-gram codes evenly over the buckets
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_BASE = np.uint64(0x100000001B3)
_SALT = 0x9E3779B9  # separates n-gram orders: "ab" as a bigram never hashes like a code point


def _mix(h: np.ndarray) -> np.ndarray:
    h ^= h >> np.uint64(30)
    h *= _MIX1
    h ^= h >> np.uint64(27)
    h *= _MIX2
    h ^= h >> np.uint64(31)
    return h


class CharNgramHasher(TransformerMixin, BaseEstimator):
    """Counts of hashed character n-grams (`ngram_range` inclusive) as a CSR matrix.

    Stateless like `HashingVectorizer`, but computed on the code points of the whole batch with
    numpy: the hash of every n-gram is a rolling polynomial over the code points, mixed and taken
    modulo `n_features`. Repeated texts (headings repeat for every unit under them) are hashed once.
    """

    def __init__(self, ngram_range: tuple[int, int] = (1, 3), n_features: int = 2 ** 18) -> None:
        self.ngram_range = ngram_range
        self.n_features = n_features

    def fit(self, X: Iterable[str], y: Any = None) -> "CharNgramHasher":
        return self

    def transform(self, X: Iterable[str]) -> sp.csr_matrix:
        codes, uniques = pd.factorize(pd.Series(list(X), dtype=object).fillna(""), sort=False)
        matrix = self._hash([str(u) for u in uniques])
        return matrix if len(uniques) == len(codes) else matrix[codes]

    def _hash(self, texts: list[str]) -> sp.csr_matrix:
        lo, hi = self.ngram_range
        n = len(texts)
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
        points = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        total = points.size
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        row = np.repeat(np.arange(n, dtype=np.int64), lengths)
        local = np.arange(total, dtype=np.int64) - starts[row]
        room = lengths[row] - local  # characters from each position to the end of its text
        counts = [np.maximum(lengths - k + 1, 0) for k in range(lo, hi + 1)]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.sum(counts, axis=0), out=indptr[1:])
        indices = np.empty(int(indptr[-1]), dtype=np.int32)
        slot = indptr[:-1].copy()  # where each row's n-grams of the current order go
        rolling = points.copy()
        with np.errstate(over="ignore"):  # uint64 wrap-around is the hash's arithmetic
            for k in range(1, hi + 1):
                if k > 1:
                    rolling[: total - k + 1] *= _BASE
                    rolling[: total - k + 1] += points[k - 1:]
                if k < lo:
                    continue
                at = np.flatnonzero(room >= k)
                buckets = _mix(rolling[at] + np.uint64(k * _SALT)) % np.uint64(self.n_features)
                indices[slot[row[at]] + local[at]] = buckets.astype(np.int32)
                slot += counts[k - lo]
        matrix = sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(n, self.n_features))
        matrix.sum_duplicates()
        return matrix


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


def _unigrams_and_bigrams(words: tuple[str, ...] | list[str]) -> list[str]:
    return list(words) + [f"{a} {b}" for a, b in zip(words, words[1:])]


def jieba_words(text: str) -> list[str]:
    """Word unigrams and bigrams from jieba (cached per text: annotated units recur across runs)."""
    return _unigrams_and_bigrams(_cut(text))


def hanlp_words(text: str) -> list[str]:
    """Word unigrams and bigrams from the optional local HanLP model (`word_tokenizer: hanlp`)."""
    from pipeline.hanlp_tokenizer import hanlp_words as tokenize

    return _unigrams_and_bigrams(tokenize([text])[0])


WORD_TOKENIZERS = {"jieba": jieba_words, "hanlp": hanlp_words}


def model_input(units: pd.DataFrame) -> pd.DataFrame:
    """The two columns the model reads, from any units frame (headings normalised once each)."""
    if TEXT in units:
        text = units[TEXT].fillna("").astype(str).tolist()
    else:
        text = normalise_many(units["text"].fillna("").astype(str).tolist())
    headings = units["heading"].fillna("").astype(str) if "heading" in units else pd.Series([""] * len(units))
    unique = headings.unique().tolist()
    lookup = dict(zip(unique, normalise_many(unique)))
    # object columns: pandas 3 would make Arrow-backed strings, which the hashers iterate slowly
    return pd.DataFrame({TEXT: pd.Series(text, dtype=object, index=units.index),
                         HEADING: pd.Series(headings.map(lookup).tolist(), dtype=object, index=units.index)})


def _tfidf(hasher: BaseEstimator) -> Pipeline:
    return Pipeline([("hash", hasher), ("tfidf", TfidfTransformer(sublinear_tf=True))])


def build_features(char_ngram_range: tuple[int, int] = (1, 3), char_features: int = 2 ** 18,
                   word_features: bool = False, word_tokenizer: str = "jieba", word_weight: float = 1.0,
                   heading_features: bool = False, heading_weight: float = 0.5) -> ColumnTransformer:
    """The feature union `DomainClassifier` asks for: character n-grams, optionally jieba/HanLP words
    and the heading as its own block."""
    blocks = [("char", _tfidf(CharNgramHasher(char_ngram_range, char_features)), TEXT)]
    weights = {"char": 1.0}
    if word_features:
        if word_tokenizer not in WORD_TOKENIZERS:
            raise UsageError(f"unknown word_tokenizer '{word_tokenizer}' ({', '.join(WORD_TOKENIZERS)})")
        words = HashingVectorizer(analyzer=WORD_TOKENIZERS[word_tokenizer], n_features=char_features // 2,
                                  alternate_sign=False, norm=None, lowercase=False)
        blocks.append(("word", _tfidf(words), TEXT))
        weights["word"] = word_weight
    if heading_features:
        blocks.append(("heading", _tfidf(CharNgramHasher((1, 2), char_features // 4)), HEADING))
        weights["heading"] = heading_weight
    return ColumnTransformer(blocks, transformer_weights=weights, sparse_threshold=1.0)
