"""Domain shares as attention research needs them: of policy content, with intervals, and corrected
for the classifier's known confusions.

- **Policy shares** (`share_<id>`) are over a document's *policy* units: `other` (greetings,
  headings without policy content, page furniture) is left out of the denominator, as the
  Comparative Agendas Project measures shares of policy content. The shares of all units stay
  available as `share_all_<id>` (with `share_all_other`).
- **Intervals** are 95% Wilson score intervals (`wilson`): the units of a document are treated as
  draws from the government's attention distribution. Consecutive sentences tend to share a
  domain, so units are not independent and these intervals are lower bounds of the uncertainty;
  comparisons across several documents (`pipeline.compare`) resample documents instead.
  Character shares get a Wilson interval at Kish's effective sample size (long sentences weigh more).
- **Adjusted shares** (`adj_share_<id>`) undo the classifier's average confusions: adjusted
  classify-and-count (Forman 2008; Buonaccorsi 2010, ch. 3), ``p = argmin ||M p - q||`` over the
  simplex, where ``q`` are the observed all-units shares and ``M[i, j] = P(pred = i | true = j)``
  comes from the leave-one-document-out confusion matrix the train stage ships with the model.
  Their interval is a parametric bootstrap over both the document's units and the confusion
  counts (`adjusted_interval`). `measure_quantification` measures, held out, whether this helps.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from pipeline.metadata import typed

NON_POLICY = "other"
DECIMALS = 4


def policy_ids(ids: Sequence[str]) -> list[str]:
    """The domains that count as policy content (every id but `other`)."""
    return [d for d in ids if d != NON_POLICY]


@dataclass(frozen=True)
class ShareSettings:
    """`params.yaml: shares`: interval level, bootstrap replicates and their seed."""

    level: float = 0.95
    bootstrap: int = 1000          # group comparisons (cheap: vectorised)
    adjusted_bootstrap: int = 1000  # adjusted shares of each document (a least-squares solve per replicate)
    seed: int = 13

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "ShareSettings":
        d = d or {}
        return cls(float(d.get("level", cls.level)), int(d.get("bootstrap", cls.bootstrap)),
                   int(d.get("adjusted_bootstrap", cls.adjusted_bootstrap)), int(d.get("seed", cls.seed)))

    @property
    def z(self) -> float:
        return NormalDist().inv_cdf(0.5 + self.level / 2)

    @property
    def tails(self) -> tuple[float, float]:
        """Percentiles (0–100) that bound a central interval at `level`."""
        return 50 * (1 - self.level), 50 * (1 + self.level)

    def rng(self, key: str) -> np.random.Generator:
        """A generator seeded by `seed` and `key` (a document id, a group): an interval does not depend
        on what else is in the batch or on the order of documents."""
        digest = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")
        return np.random.default_rng([self.seed, digest])


def wilson(k: Any, n: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of the proportion k/n (elementwise; NaN where n is 0).

    Unlike the Wald interval it stays inside [0, 1] and keeps its coverage for shares near 0 or 1,
    which most domain shares of a single report are."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def to_policy(shares: np.ndarray, ids: Sequence[str]) -> np.ndarray:
    """All-units share vector(s) → policy shares: `other` dropped, the rest renormalised to sum 1."""
    shares = np.asarray(shares, dtype=float)
    keep = [i for i, d in enumerate(ids) if d != NON_POLICY]
    policy = shares[..., keep]
    total = policy.sum(axis=-1, keepdims=True)
    return np.divide(policy, total, out=np.zeros_like(policy), where=total > 0)


# ---------------------------------------------------------------- adjustment

def misclassification_matrix(confusion: np.ndarray) -> np.ndarray:
    """``M[i, j] = P(pred = i | true = j)`` from confusion counts ``C[true, pred]``.

    A domain never seen as gold has no evidence of how it is confused: its column is the identity."""
    counts = np.swapaxes(np.asarray(confusion, dtype=float), -1, -2)  # also a stack of matrices
    support = counts.sum(axis=-2, keepdims=True)
    eye = np.eye(counts.shape[-1])
    return np.where(support > 0, counts / np.where(support > 0, support, 1), eye)


_SUM_WEIGHT = 1e3  # weight of the sum-to-one row in the constrained least squares


def _augmented(matrix: np.ndarray) -> np.ndarray:
    """M (or a stack of them) with the weighted sum-to-one row below it."""
    ones = np.full(matrix.shape[:-2] + (1, matrix.shape[-1]), _SUM_WEIGHT)
    return np.concatenate([matrix, ones], axis=-2)


def _solve(augmented: np.ndarray, q: np.ndarray) -> np.ndarray:
    p, _ = nnls(augmented, np.append(q, _SUM_WEIGHT))
    return p / p.sum() if p.sum() > 0 else q


def adjust(observed: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Adjusted classify-and-count: the share vector p ≥ 0, Σp = 1, whose expected observed shares
    ``M p`` are closest (least squares) to `observed`. Solved as non-negative least squares with a
    heavily weighted sum-to-one row, then renormalised: deterministic, no optimiser tolerance."""
    observed = np.asarray(observed, dtype=float)
    if observed.sum() <= 0:
        return np.zeros_like(observed)
    return _solve(_augmented(matrix), observed / observed.sum())


def adjusted_interval(counts: np.ndarray, confusion: np.ndarray, ids: Sequence[str], settings: ShareSettings,
                      key: str) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of adjusted *policy* shares under a parametric bootstrap that redraws both
    the document's unit counts (multinomial) and each gold domain's row of the confusion counts, so
    the interval carries the uncertainty of the correction itself (few gold units of a domain → wide).
    Uses `settings.adjusted_bootstrap` replicates (each solves a small constrained least squares)."""
    counts = np.asarray(counts, dtype=float)
    n, reps = int(counts.sum()), settings.adjusted_bootstrap
    if n == 0 or reps <= 0:
        nan = np.full(len(policy_ids(ids)), np.nan)
        return nan, nan
    rng = settings.rng(key)
    confusion = np.asarray(confusion, dtype=float)
    support = confusion.sum(axis=1)
    observed = rng.multinomial(n, counts / n, size=reps)
    # redrawn confusion counts: replicate × gold × predicted (a gold domain never seen stays empty)
    redrawn = np.stack([rng.multinomial(int(s), row / s, size=reps) if s > 0 else np.zeros((reps, len(row)))
                        for s, row in zip(support, confusion)], axis=1)
    augmented = _augmented(misclassification_matrix(redrawn))
    draws = np.array([_solve(a, q) for a, q in zip(augmented, observed / n)])
    low, high = np.percentile(to_policy(draws, ids), settings.tails, axis=0)
    return low, high


# ---------------------------------------------------------------- per-document summary

@dataclass
class Summary:
    """Per-document counts accumulated chunk by chunk (the summary never needs all rows), turned into
    shares with intervals by `frame`.

    `meta_columns` are copied from each document's first row; `confusion` (counts ``C[true, pred]``
    over `ids`, from leave-one-document-out) adds adjusted shares; `cap` (domain id → CAP code, or
    None for no counterpart) adds Comparative Agendas Project shares; `coverage` counts rows whose
    `confident` flag is set."""

    ids: list[str]
    meta_columns: Sequence[str] = ()
    settings: ShareSettings = field(default_factory=ShareSettings)
    confusion: np.ndarray | None = None
    cap: Mapping[str, int | None] | None = None
    coverage: bool = False
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, rows: pd.DataFrame) -> None:
        """Count a chunk of rows into their documents: units, characters and squared characters per
        domain (in `ids` order), counted for all documents of the chunk at once."""
        codes, docs = pd.factorize(rows["doc"], sort=False)
        domains = pd.Categorical(rows["domain"], categories=self.ids).codes
        if (domains < 0).any():
            unknown = sorted(set(rows["domain"][domains < 0]))
            raise ValueError(f"domain(s) {unknown} are not among the model's {self.ids}")
        lengths = np.fromiter(map(len, rows["text"]), dtype=float, count=len(rows))
        k, cells = len(self.ids), codes * len(self.ids) + domains

        def per_doc_and_domain(weights: np.ndarray | None = None) -> np.ndarray:
            return np.rint(np.bincount(cells, weights, minlength=len(docs) * k)).astype(np.int64).reshape(-1, k)

        n, c, c2 = per_doc_and_domain(), per_doc_and_domain(lengths), per_doc_and_domain(lengths ** 2)
        confident = np.bincount(codes, rows["confident"].to_numpy(dtype=float), minlength=len(docs)) \
            if self.coverage and "confident" in rows else np.zeros(len(docs))
        firsts = np.unique(codes, return_index=True)[1]  # each document's first row in the chunk
        for i, doc in enumerate(docs):
            entry = self.docs.get(doc)
            if entry is None:
                entry = self.docs[doc] = {**self._empty(),
                                          "meta": {m: rows[m].iloc[firsts[i]] for m in self.meta_columns if m in rows}}
            entry["sentences"] += int(n[i].sum())
            entry["chars"] += int(c[i].sum())
            entry["confident"] += int(confident[i])
            entry["n"] += n[i]
            entry["c"] += c[i]
            entry["c2"] += c2[i]

    def frame(self) -> pd.DataFrame:
        """One row per document: `doc`, metadata, counts, then every share with `_low`/`_high` bounds.

        Columns: `sentences` (units), `policy_sentences` (units not `other`), `chars`, `coverage`
        (with a confidence threshold), `n_<id>` (units per domain), `share_<id>` (of policy units),
        `adj_share_<id>` (adjusted, with a model that ships its confusion matrix), `share_all_<id>`
        (of all units), `char_share_<id>` (of characters), `cap_unmapped` and `cap_share_<code>`
        (with a crosswalk)."""
        records = [self._row(doc, e) for doc, e in self.docs.items()]
        if not records:
            return pd.DataFrame(columns=list(self._row("", self._empty()).keys()))
        frame = pd.DataFrame(records)
        return frame.assign(**{c: typed(frame[c]) for c in self.meta_columns})

    def _empty(self) -> dict[str, Any]:
        """A document's counts before its first row: `n`, `c`, `c2` per domain, in `ids` order."""
        k = len(self.ids)
        return {"sentences": 0, "chars": 0, "confident": 0, "n": np.zeros(k, np.int64), "c": np.zeros(k, np.int64),
                "c2": np.zeros(k, np.int64), "meta": {}}

    def _row(self, doc: str, e: dict[str, Any]) -> dict[str, Any]:
        ids, pol, level = self.ids, policy_ids(self.ids), self.settings.level
        counts = dict(zip(ids, e["n"].tolist()))
        n = e["n"].astype(float)
        policy_n = np.array([counts[d] for d in pol], dtype=float)
        row: dict[str, Any] = {"doc": doc, **{c: e["meta"].get(c) for c in self.meta_columns}}
        row.update(sentences=e["sentences"], policy_sentences=int(policy_n.sum()), chars=e["chars"])
        if self.coverage:
            row["coverage"] = _r(e["confident"] / e["sentences"]) if e["sentences"] else None
        row.update({f"n_{d}": counts[d] for d in ids})
        row.update(_with_bounds("share", pol, policy_n, policy_n.sum(), level))
        if self.confusion is not None:
            adjusted = to_policy(adjust(n, misclassification_matrix(self.confusion)), ids) if n.sum() else \
                np.zeros(len(pol))
            low, high = adjusted_interval(n, self.confusion, ids, self.settings, doc)
            row.update(_columns("adj_share", pol, adjusted, low, high))
        row.update(_with_bounds("share_all", ids, n, n.sum(), level))
        chars, squares = e["c"].astype(float), e["c2"].astype(float)
        # Kish's effective sample size of a character-weighted proportion: (Σw)² / Σw²
        n_eff = chars.sum() ** 2 / squares.sum() if squares.sum() else 0.0
        share = chars / chars.sum() if chars.sum() else np.zeros(len(ids))
        low, high = wilson(share * n_eff, n_eff, level)
        row.update(_columns("char_share", ids, share, low, high))
        if self.cap is not None:
            row.update(cap_shares(counts, self.cap, level))
        return row


def _r(value: float) -> float:
    return round(float(value), DECIMALS)


def _columns(prefix: str, ids: Sequence[str], share: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, Any]:
    """`<prefix>_<id>`, `<prefix>_<id>_low`, `<prefix>_<id>_high` for each id, side by side."""
    out: dict[str, Any] = {}
    for d, s, lo, hi in zip(ids, share, low, high):
        out[f"{prefix}_{d}"] = _r(s)
        out[f"{prefix}_{d}_low"] = None if np.isnan(lo) else _r(lo)
        out[f"{prefix}_{d}_high"] = None if np.isnan(hi) else _r(hi)
    return out


def _with_bounds(prefix: str, ids: Sequence[str], k: np.ndarray, n: float, level: float) -> dict[str, Any]:
    """Shares k/n with Wilson bounds, as `_columns`."""
    share = k / n if n else np.zeros(len(ids))
    low, high = wilson(k, np.full(len(ids), n), level)
    return _columns(prefix, ids, share, low, high)


def cap_shares(counts: Mapping[str, int], cap: Mapping[str, int | None], level: float = 0.95) -> dict[str, Any]:
    """Comparative Agendas Project major-topic shares of a document's policy units that have a CAP
    counterpart (`cap_share_<code>` with bounds), and `cap_unmapped`: the share of policy units
    whose domain has none (e.g. `party`), which those shares leave out."""
    codes = sorted({c for c in cap.values() if c is not None})
    k = np.array([sum(n for d, n in counts.items() if cap.get(d) == code) for code in codes], dtype=float)
    policy = sum(n for d, n in counts.items() if d != NON_POLICY)
    out = {"cap_unmapped": _r((policy - k.sum()) / policy) if policy else None}
    out.update(_with_bounds("cap_share", [str(c) for c in codes], k, k.sum(), level))
    return out


# ---------------------------------------------------------------- held-out measurement

def _counts(labels: pd.Series, ids: Sequence[str]) -> np.ndarray:
    return labels.value_counts().reindex(list(ids), fill_value=0).to_numpy(dtype=float)


def confusion_counts(gold: pd.Series, pred: pd.Series, ids: Sequence[str]) -> np.ndarray:
    """``C[true, pred]`` over `ids` (the shipped model's order)."""
    table = pd.crosstab(pd.Categorical(gold, categories=ids), pd.Categorical(pred, categories=ids), dropna=False)
    return table.reindex(index=ids, columns=ids, fill_value=0).to_numpy(dtype=float)


def measure_quantification(oof: pd.DataFrame, ids: Sequence[str]) -> dict[str, Any]:
    """How far each held-out report's estimated shares are from its gold shares, by method.

    For each annotated report, the correction uses only the *other* reports' out-of-fold rows (the
    confusion matrix a user of a model trained without this report would have). Methods: `raw`
    (classify and count), `adjusted` (adjusted classify and count), `probabilistic` (mean of the
    scores, Bella et al. 2010) and `probabilistic_adjusted` (the same corrected with mean scores
    per gold domain). Errors are mean absolute errors over domains of the policy shares (the
    default shares) and of the all-units shares, averaged over reports."""
    ids = list(ids)
    proba_cols = [f"p_{d}" for d in ids]
    methods = ("raw", "adjusted", "probabilistic", "probabilistic_adjusted")
    per_doc: dict[str, dict[str, Any]] = {}
    for doc, held in oof.groupby("doc", sort=True):
        rest = oof[oof["doc"] != doc]
        gold = _counts(held["primary"], ids) / len(held)
        raw = _counts(held["pred"], ids) / len(held)
        mean_scores = held[proba_cols].to_numpy().mean(axis=0)
        # mean score vector per gold domain: the probabilistic version of M
        by_gold = rest.groupby("primary")[proba_cols].mean().reindex(ids)
        soft_m = np.where(by_gold.notna().to_numpy().T, by_gold.fillna(0).to_numpy().T, np.eye(len(ids)))
        estimates = {"raw": raw,
                     "adjusted": adjust(raw, misclassification_matrix(confusion_counts(rest["primary"], rest["pred"], ids))),
                     "probabilistic": mean_scores / mean_scores.sum(),
                     "probabilistic_adjusted": adjust(mean_scores, soft_m)}
        per_doc[str(doc)] = {"units": int(len(held)), **{
            m: {"policy_mae": _r(np.abs(to_policy(est, ids) - to_policy(gold, ids)).mean()),
                "all_units_mae": _r(np.abs(est - gold).mean())} for m, est in estimates.items()}}
    mean = {m: {k: _r(np.mean([d[m][k] for d in per_doc.values()])) for k in ("policy_mae", "all_units_mae")}
            for m in methods}
    return {"protocol": "each annotated report held out; shares of its units by the model trained without it, "
                        "corrected with the other reports' out-of-fold confusions; error = mean absolute "
                        "difference from the gold shares over domains, averaged over reports",
            "share_mae_raw": mean["raw"]["policy_mae"], "share_mae_adjusted": mean["adjusted"]["policy_mae"],
            "methods": mean, "per_document": per_doc}
