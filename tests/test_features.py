"""Features: the vectorised n-gram hasher against a plain-Python reference, and context smoothing."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.features import CharNgramHasher
from pipeline.model import smooth_in_documents

MASK = (1 << 64) - 1


def reference_bucket(gram: str, n_features: int) -> int:
    """The hasher's arithmetic spelled out one n-gram at a time with Python integers."""
    h = 0
    for ch in gram:
        h = (h * 0x100000001B3 + ord(ch)) & MASK
    h = (h + len(gram) * 0x9E3779B9) & MASK
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & MASK
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & MASK
    h ^= h >> 31
    return h % n_features


def reference_counts(text: str, lo: int, hi: int, n_features: int) -> dict[int, int]:
    counts: dict[int, int] = {}
    for k in range(lo, hi + 1):
        for i in range(len(text) - k + 1):
            b = reference_bucket(text[i:i + k], n_features)
            counts[b] = counts.get(b, 0) + 1
    return counts


@pytest.mark.parametrize("lo, hi", [(1, 3), (2, 4), (1, 1)])
def test_hasher_matches_reference(lo: int, hi: int) -> None:
    texts = ["加强生态保护修复。", "", "PM2.5浓度下降3.2%", "𠀀extension-B 字", "推进", "推进"]
    matrix = CharNgramHasher((lo, hi), 1024).transform(texts)
    assert matrix.shape == (len(texts), 1024)
    for row, text in enumerate(texts):
        got = {int(c): int(v) for c, v in zip(matrix[row].indices, matrix[row].data)}
        assert got == reference_counts(text, lo, hi, 1024), text


def test_hasher_dedupes_repeated_texts_without_changing_rows() -> None:
    hasher = CharNgramHasher((1, 2), 4096)
    repeated = hasher.transform(pd.Series(["一是稳增长", "二是促改革", "一是稳增长", None]))
    single = [hasher.transform([t]).toarray() for t in ["一是稳增长", "二是促改革", "一是稳增长", ""]]
    np.testing.assert_array_equal(repeated.toarray(), np.vstack(single))


def test_smoothing_hand_checked() -> None:
    proba = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    docs, index = ["a", "a", "a", "b"], [0, 1, 2, 0]
    out = smooth_in_documents(proba, docs, index, weight=0.5, window=1)
    # unit 1 of doc a: neighbours are both [1,0] -> 0.5*[0,1] + 0.5*[1,0]
    np.testing.assert_allclose(out[1], [0.5, 0.5])
    # unit 0: one neighbour [0,1] -> 0.5*[1,0] + 0.5*[0,1]
    np.testing.assert_allclose(out[0], [0.5, 0.5])
    # doc b has a single unit: unchanged, and no leakage from doc a
    np.testing.assert_allclose(out[3], [0.5, 0.5])
    # input order is kept even when index is shuffled
    shuffled = smooth_in_documents(proba[[2, 0, 1, 3]], ["a", "a", "a", "b"], [2, 0, 1, 0], 0.5, 1)
    np.testing.assert_allclose(shuffled, out[[2, 0, 1, 3]])
    np.testing.assert_allclose(smooth_in_documents(proba, docs, index, 0.0, 3), proba)


def test_other_weight_asks_more_evidence_for_other() -> None:
    from conftest import TINY_PARAMS, TINY_TRAINING
    from pipeline.model import build_estimator

    rows = [(t, d) for d, texts in TINY_TRAINING.items() for t in texts] * 2
    frame = pd.DataFrame(rows, columns=["text", "primary"]).assign(heading="")
    plain = build_estimator(TINY_PARAMS).fit(frame, frame["primary"])
    weighted = build_estimator({**TINY_PARAMS, "other_weight": 0.5}).fit(frame, frame["primary"])
    units = pd.DataFrame({"text": ["请予审议。", "加强生态保护修复。"], "heading": ""})
    p, q = plain.predict_proba(units), weighted.predict_proba(units)
    k = list(plain.classes_).index("other")
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    assert (q[:, k] < p[:, k]).all()
    expected = p[:, k] * 0.5 / (p[:, k] * 0.5 + (1 - p[:, k]))
    np.testing.assert_allclose(q[:, k], expected, rtol=1e-6)
